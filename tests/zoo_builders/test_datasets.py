"""zoo_builders.datasets: the exact split a zoo was built on, and its bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from zoo_helpers import write_zoo

from catalog.errors import WeightzooError
from catalog.format import MANIFEST_NAME
from zoo_builders import load_dataset, load_zoo_dataset


def test_zoo_dataset_is_the_stratified_split_of_the_spec(tiny_zoo: Path) -> None:
    data = load_zoo_dataset(tiny_zoo)
    # The spec says digits with test_fraction 0.25: 1,797 images -> ceil(0.25 * 1797) = 450 test.
    assert (len(data.y_train), len(data.y_test)) == (1347, 450)
    again = load_dataset({"name": "digits", "test_fraction": 0.25, "split_seed": 0})
    assert torch.equal(data.x_test, again.x_test) and torch.equal(data.y_train, again.y_train)
    # Stratified: every class keeps its share of the test split within one example.
    counts = torch.bincount(data.y_test, minlength=10).float()
    full = torch.bincount(torch.cat([data.y_train, data.y_test]), minlength=10).float()
    assert torch.all((counts - 0.25 * full).abs() <= 1.0)


def test_zoo_without_a_build_spec_is_refused(tmp_path: Path) -> None:
    root = write_zoo(tmp_path / "z", "z", range(2))
    with pytest.raises(WeightzooError, match="not built by `zoo build`"):
        load_zoo_dataset(root)


def test_changed_data_is_detected(tiny_zoo: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_zoo, copy)
    manifest = json.loads((copy / MANIFEST_NAME).read_text())
    manifest["datasets"]["digits"]["n_test"] = 449
    (copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(WeightzooError, match="n_test = 450 but zoo .* was built on n_test = 449"):
        load_zoo_dataset(copy)
