"""Session-scoped tiny zoos for the weightspace training tests (built in seconds)."""

from __future__ import annotations

import pytest

TINY_DIGITS = {
    "name": "tiny-digits",
    "dataset": {"name": "digits", "test_fraction": 0.25},
    "architecture": {"name": "mlp", "hidden": [8], "activation": "relu"},
    "training": {"epochs": 3, "batch_size": 64, "optimizer": "adam", "checkpoints": [0, 1, 3]},
    "grid": {"lr": [0.0003, 0.003, 0.03], "seed": [0, 1, 2, 3, 4, 5]},
}


@pytest.fixture(scope="session")
def tiny_digits_zoo(zoo_factory):
    return zoo_factory(TINY_DIGITS)
