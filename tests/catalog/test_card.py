"""catalog.card: the dataset card's YAML header and contents."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from zoo_helpers import mlp_spec, random_weights

from catalog.card import metric_summary, render_card, size_category
from catalog.writer import ZooWriter
from catalog.zoo import open_zoo


def test_size_categories() -> None:
    assert size_category(0) == "n<1K"
    assert size_category(999) == "n<1K"
    assert size_category(1000) == "1K<n<10K"
    assert size_category(2_500_000) == "1M<n<10M"


def test_card_header_points_datasets_at_the_parquet_parts(multi_arch_dir: Path) -> None:
    text = render_card(multi_arch_dir, repo_id="org/wide")
    _, header, body = text.split("---", 2)
    meta = yaml.safe_load(header)
    assert meta["configs"][0]["data_files"] == [{"split": "train", "path": "models/*.parquet"}]
    assert meta["size_categories"] == ["n<1K"]
    assert "mlp 4-6-3, relu, 51 params" in body and "mlp 4-8-3, relu, 67 params" in body
    assert 'open_zoo("hf://datasets/org/wide")' in body and "by_arch()" in body


def test_metric_summary_uses_ok_rows_of_the_last_checkpoint(zoo_dir: Path) -> None:
    table = open_zoo(zoo_dir).table
    # Last checkpoint is 2; ok runs are those with r % 5 != 4; acc = 0.1 + 0.8 * ((7r + 6) % 11) / 10.
    accs = [round(0.1 + 0.8 * ((r * 7 + 6) % 11) / 10, 4) for r in range(12) if r % 5 != 4]
    got = metric_summary(table)["test_acc"]
    assert got["min"] == min(accs) and got["max"] == max(accs)
    assert abs(got["mean"] - sum(accs) / len(accs)) < 1e-12


def test_metric_summary_takes_each_runs_last_checkpoint() -> None:
    """Families train for different epochs: family a's runs end at checkpoint 1, family b's at 4.
    The zoo's largest checkpoint (4) left family a out of the summary; each run's last counts."""
    import pyarrow as pa

    rows = [("a0", 0, 0.1, "ok"), ("a0", 1, 0.70, "ok"), ("a1", 0, 0.1, "ok"), ("a1", 1, 0.84, "ok"),
            ("b0", 0, 0.1, "ok"), ("b0", 4, 0.24, "ok"), ("b1", 0, 0.1, "ok"), ("b1", 4, 0.32, "ok"),
            ("c0", 0, 0.5, "ok"), ("c0", 4, 0.9, "diverged")]  # diverged at its end: not summarized by ckpt 0
    table = pa.table({"run_id": [r[0] for r in rows], "checkpoint": [r[1] for r in rows],
                      "test_acc": [r[2] for r in rows], "status": [r[3] for r in rows]})
    got = metric_summary(table)["test_acc"]
    assert (got["min"], got["max"]) == (0.24, 0.84)
    assert abs(got["mean"] - (0.70 + 0.84 + 0.24 + 0.32) / 4) < 1e-12


def test_card_and_info_say_the_metrics_are_at_each_runs_last_checkpoint(zoo_dir: Path) -> None:
    from click.testing import CliRunner

    from zoo_cli.main import cli

    assert "## Metrics at each run's last checkpoint (status ok)" in render_card(zoo_dir)
    out = CliRunner().invoke(cli, ["info", str(zoo_dir)]).output
    assert "metrics at each run's last checkpoint (status ok):" in out


def _family_columns_zoo(root: Path) -> Path:
    """Two architectures whose parts have different columns, as ``families:`` zoos were written
    before every part got the zoo's full column set (``kernel_size`` / ``depth`` per family)."""
    w = ZooWriter(root, "fams", {"name": "fams", "test": True})
    for i, (hidden, extra) in enumerate([(8, {"kernel_size": 3}), (6, {"depth": 8})]):
        spec = mlp_spec(hidden=hidden)
        arch = w.add_architecture(spec)
        rows = [{"model_id": f"h{hidden}-r{r}", "run_id": f"h{hidden}-r{r}", "checkpoint": 0, "status": "ok",
                 "test_acc": 0.5, **extra} for r in range(3)]
        w.write_part(arch, random_weights(spec, len(rows), seed=i), rows)
    w.finish()
    return root


def test_parts_with_different_columns_get_one_config_each(tmp_path: Path) -> None:
    """``datasets`` reads a config's files with one schema: one default config over parts whose
    columns differ failed with "column names don't match"; each column set is its own config."""
    import datasets

    root = _family_columns_zoo(tmp_path / "fams")
    text = (root / "README.md").read_text()
    meta = yaml.safe_load(text.split("---", 2)[1])
    configs = {c["config_name"]: c["data_files"] for c in meta["configs"]}
    # both architectures are mlps: the second column set's config gets a suffix
    assert configs == {"mlp": [{"split": "train", "path": "models/part-00000.parquet"}],
                       "mlp-2": [{"split": "train", "path": "models/part-00001.parquet"}]}
    assert 'load_dataset("ORG/NAME", "mlp", split="train")' in text and "one config per set of columns" in text
    rows = [datasets.load_dataset(str(root), name, split="train", cache_dir=str(tmp_path / "ds"))
            for name in configs]
    assert [r.num_rows for r in rows] == [3, 3]
    assert "kernel_size" in rows[0].column_names and "depth" in rows[1].column_names
    with pytest.raises(ValueError, match="Config name is missing"):  # not a CastError deep in a build
        datasets.load_dataset(str(root), split="train", cache_dir=str(tmp_path / "ds"))


def test_parts_with_the_same_columns_keep_the_default_config(zoo_dir: Path) -> None:
    meta = yaml.safe_load(render_card(zoo_dir).split("---", 2)[1])
    assert meta["configs"] == [{"config_name": "default",
                                "data_files": [{"split": "train", "path": "models/*.parquet"}]}]
