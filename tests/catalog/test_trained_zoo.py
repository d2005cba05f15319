"""On a zoo trained by the real builder, a loaded module computes what the trained model did:
its accuracy on the test split equals the recorded ``test_acc``."""

from __future__ import annotations

import pytest
import torch

from catalog import WeightDataset, open_zoo

SPEC = {"name": "t", "dataset": {"name": "digits", "test_fraction": 0.25},
        "architecture": {"name": "mlp", "hidden": [16], "activation": "relu"},
        "training": {"epochs": 2, "batch_size": 32, "optimizer": "adam", "checkpoints": [0, 2]},
        "grid": {"lr": [0.01], "seed": [0, 1]}}


@pytest.fixture(scope="module")
def trained_zoo(zoo_factory):
    return zoo_factory(SPEC)


def test_loaded_modules_reproduce_test_accuracy(trained_zoo):
    from zoo_builders import load_zoo_dataset

    zoo = open_zoo(trained_zoo)
    data = load_zoo_dataset(zoo)  # the split the builder used, read from the zoo's own spec
    sel = zoo.select(where="status = 'ok'", order_by="test_acc DESC")
    assert len(sel) == 4
    n = len(data.y_test)
    for module, recorded in zip(sel.modules(), sel.column("test_acc")):
        with torch.no_grad():
            correct = int((module(data.x_test).argmax(-1) == data.y_test).sum())
        assert correct == round(recorded * n), (correct / n, recorded)
    assert max(sel.column("test_acc")) > 0.5  # trained: far above chance (0.1)


def test_trained_zoo_verifies_and_feeds_a_dataset(trained_zoo):
    zoo = open_zoo(trained_zoo)
    assert zoo.verify().ok
    last = zoo.select(where="checkpoint = 2")
    ds = WeightDataset(last, ["test_acc"], fractions=(0.5, 0.5, 0.0), cache_stats=False)
    assert len(ds) == 1 and ds[0][0]["layers.0.weight"].shape == (16, 64)
