"""retrieval.tasks: the task-spec syntax, its canonical string, the class filter, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from catalog.errors import WeightzooError
from retrieval import TaskSpec, load_task, parse_task
from zoo_builders import DatasetConfig, load_dataset


def test_parse_and_canonical_string() -> None:
    t = parse_task("digits:classes=8,3:test_fraction=0.5")
    assert t.dataset == DatasetConfig("digits", test_fraction=0.5)
    assert t.classes == (3, 8)
    # Options in field order, defaults left out, classes last; the string parses back.
    assert str(t) == "digits:test_fraction=0.5:classes=3,8"
    assert parse_task(str(t)) == t
    assert str(parse_task("digits")) == "digits"
    assert parse_task("blobs:n_classes=4:split_seed=3").dataset == DatasetConfig("blobs", n_classes=4, split_seed=3)
    assert parse_task("data/x.npz").dataset == DatasetConfig("npz", path="data/x.npz")
    assert parse_task({"name": "digits", "classes": [1, 0]}).classes == (0, 1)
    assert TaskSpec.parse(t) is t
    assert t.to_dict()["classes"] == [3, 8]


def test_class_subset_keeps_labels_and_n_classes() -> None:
    full = load_dataset("digits")
    data = load_task("digits:classes=3,8")
    assert data.name == "digits:classes=3,8"
    assert data.n_classes == full.n_classes == 10  # labels are not renumbered
    assert set(data.y_train.unique().tolist()) == set(data.y_test.unique().tolist()) == {3, 8}
    keep = torch.isin(full.y_train, torch.tensor([3, 8]))
    assert torch.equal(data.x_train, full.x_train[keep]) and torch.equal(data.y_train, full.y_train[keep])


def test_npz_task(tmp_path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "t.npz"
    np.savez(path, x_train=rng.random((20, 4), dtype=np.float32), y_train=np.arange(20) % 3,
             x_test=rng.random((6, 4), dtype=np.float32), y_test=np.arange(6) % 3)
    data = load_task(str(path))
    assert data.x_train.shape == (20, 4) and data.n_classes == 3
    assert load_task(f"npz:path={path}:classes=0,2").y_train.unique().tolist() == [0, 2]


@pytest.mark.parametrize("text, message", [
    ("digits:classes=3", "at least two classes"),
    ("digits:classes=3,12", r"has no class\(es\) \[12\]; its classes: 0..9"),
    ("digits:classes=3,3", "lists a class twice"),
    ("digits:classes=a,b", "comma-separated class indices"),
    ("mnist2:classes=1,2", "unknown dataset 'mnist2'; valid datasets: blobs, digits"),
    ("digits:colour=red", "unknown option 'colour'; valid options: classes, test_fraction"),
    ("digits:test_fraction=half", "must be a number"),
    ("digits:split_seed=1.5", "must be an integer"),
    ("digits:classes", "is not OPTION=VALUE"),
    ("digits:split_seed=1:split_seed=2", "given twice"),
    ("", "a task is a dataset spec"),
])
def test_bad_task_specs(text: str, message: str) -> None:
    with pytest.raises(WeightzooError, match=message):
        load_task(text)


def test_a_loaded_dataset_with_one_class_is_refused() -> None:
    import dataclasses

    data = load_dataset("digits")
    one = dataclasses.replace(data, y_train=torch.zeros_like(data.y_train))
    with pytest.raises(WeightzooError, match="1 class in its training split"):
        load_task(one)
