import math

import numpy as np
import pyarrow as pa
import pytest
import torch

from catalog.errors import WeightzooError
from weightspace.analysis import mean_over_pairs, seed_pairs


def _table():
    return {
        "model_id": ["m0", "m1", "m2", "m3", "m4", "m5", "m6"],
        "arch_id": ["a", "a", "a", "a", "b", "b", "a"],
        "lr": [0.1, 0.1, 0.1, 0.01, 0.1, 0.1, 0.01],
        "seed": [0, 1, 2, 0, 0, 1, 1],
        "test_acc": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3],
    }


def test_seed_pairs_group_by_hyperparameters_and_arch():
    pairs = seed_pairs(_table(), ["lr"])
    assert pairs.tolist() == [[0, 1], [0, 2], [1, 2], [3, 6], [4, 5]]
    assert pairs.dtype == np.int64
    # A pyarrow table (Selection.table) gives the same pairs.
    assert seed_pairs(pa.table(_table()), ["lr"]).tolist() == pairs.tolist()


def test_seed_pairs_errors():
    with pytest.raises(WeightzooError, match="unknown column 'width'.*model_id, arch_id, lr"):
        seed_pairs(_table(), ["width"])
    t = {**_table(), "lr": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]}
    with pytest.raises(WeightzooError, match="no two rows differ only in 'seed'"):
        seed_pairs(t, ["lr"])
    t = {**_table(), "checkpoint": [0, 0, 0, 0, 0, 0, 0]}
    t = {k: v + v[:1] for k, v in t.items()}  # row 7 repeats row 0
    with pytest.raises(WeightzooError, match="rows 0 and 7 agree.*checkpoint"):
        seed_pairs(t, ["lr"])
    with pytest.raises(WeightzooError, match="seed column"):
        seed_pairs(_table(), ["lr", "seed"])


def test_mean_over_pairs():
    pairs = np.array([[0, 1], [0, 2], [1, 2]])
    got = mean_over_pairs(pairs, torch.tensor([1.0, 2.0, 4.0]), 4)
    assert got[:3].tolist() == [1.5, 2.5, 3.0]
    assert math.isnan(float(got[3]))
