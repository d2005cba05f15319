"""retrieval.probes: the probe set is a seeded, repeatable draw from a training split."""

from __future__ import annotations

import pytest
import torch

from catalog.errors import WeightzooError
from retrieval import probe_set


def test_probe_set_is_deterministic_and_from_the_training_split(digits) -> None:
    a = probe_set("digits", n=32, seed=0)
    assert a.shape == (32, 1, 8, 8) and a.dtype == torch.float32
    assert torch.equal(a, probe_set({"name": "digits"}, n=32, seed=0))
    assert torch.equal(a, probe_set(digits, n=32, seed=0))
    assert not torch.equal(a, probe_set("digits", n=32, seed=1))
    # The documented draw: randperm over the training split, seeded.
    order = torch.randperm(digits.x_train.shape[0], generator=torch.Generator().manual_seed(0))[:32]
    assert torch.equal(a, digits.x_train[order])


def test_bad_requests_raise() -> None:
    with pytest.raises(WeightzooError, match="only 160 training examples"):
        probe_set({"name": "blobs", "n_samples": 200}, n=500)
    with pytest.raises(WeightzooError, match="positive integer"):
        probe_set("digits", n=0)
    with pytest.raises(WeightzooError, match="unknown dataset 'digitz'; valid datasets:"):
        probe_set("digitz")
