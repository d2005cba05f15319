"""catalog.zoo: Zoo.info() and single-model access."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from catalog import open_zoo
from catalog.errors import WeightzooError


def test_info_counts_come_from_the_rows(zoo_dir: Path) -> None:
    info = open_zoo(zoo_dir).info()
    # 12 runs x 3 checkpoints; runs 4 and 9 (r % 5 == 4) are diverged: 2 x 3 = 6 rows.
    assert info["counts"] == {"rows": 36, "runs": 12, "architectures": 1,
                              "status": {"ok": 30, "diverged": 6}}
    assert info["columns"]["test_acc"] == "double" and info["size_bytes"] > 0
    (arch,) = info["architectures"].values()
    assert arch == {"family": "mlp", "n_params": 67, "summary": "mlp 4-8-3, relu, 67 params"}
    assert set(info["metrics"]) == {"test_acc", "train_acc", "test_loss"}


def test_info_distinguishes_architectures(multi_arch_dir: Path) -> None:
    summaries = [a["summary"] for a in open_zoo(multi_arch_dir).info()["architectures"].values()]
    assert sorted(summaries) == ["mlp 4-6-3, relu, 51 params", "mlp 4-8-3, relu, 67 params"]


def test_state_dict_and_module_of_one_model(zoo_dir: Path) -> None:
    zoo = open_zoo(zoo_dir)
    model_id = zoo.table.column("model_id")[5].as_py()
    sd = zoo.state_dict(model_id)
    module = zoo.module(model_id)
    for name, value in module.state_dict().items():
        torch.testing.assert_close(value, sd[name])
    with pytest.raises(WeightzooError, match="no model 'nope'"):
        zoo.row("nope")
