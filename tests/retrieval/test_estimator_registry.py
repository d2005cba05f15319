"""retrieval.estimators.registry: every estimator by name; unknown names list the valid ones."""

from __future__ import annotations

import pytest

from catalog.errors import WeightzooError
from retrieval.estimators import ESTIMATORS, INPUTS, get_estimator


def test_registry_names_and_inputs() -> None:
    assert set(ESTIMATORS) == {"logme", "hscore", "leep", "nce"}
    assert {e.reads for e in ESTIMATORS.values()} <= set(INPUTS)
    assert get_estimator("leep").reads == "probs"
    assert get_estimator(ESTIMATORS["nce"]) is ESTIMATORS["nce"]


def test_unknown_estimator_lists_the_valid_names() -> None:
    with pytest.raises(WeightzooError, match="unknown estimator 'logmee'; valid estimators: "
                                             "logme, hscore, leep, nce"):
        get_estimator("logmee")
