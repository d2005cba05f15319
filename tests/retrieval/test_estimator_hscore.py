"""retrieval.estimators.hscore: hand computations (with and without shrinkage), bad input."""

from __future__ import annotations

import pytest
import torch

from catalog.errors import WeightzooError
from retrieval.estimators import hscore, hscore_population

# Four examples, two classes; feature 2 varies within class 1 only.
FEATURES = [[0.0, 0.0], [2.0, 0.0], [4.0, 1.0], [6.0, -1.0]]
LABELS = [0, 0, 1, 1]


def test_hscore_by_hand_one_feature() -> None:
    # f = (0, 2, 4, 6), mean 3: cov(f) = (9 + 1 + 1 + 9) / 3 = 20/3.
    # E[f | y] = (1, 1, 5, 5): cov = (4 + 4 + 4 + 4) / 3 = 16/3.  H = (16/3) / (20/3) = 0.8.
    assert hscore([[0.0], [2.0], [4.0], [6.0]], LABELS) == pytest.approx(0.8, abs=1e-12)


def test_hscore_by_hand_two_correlated_features() -> None:
    # cov(f) = [[20/3, -2/3], [-2/3, 2/3]] (cross term ((-1)(1) + (3)(-1)) / 3 = -2/3), det 4,
    # inverse = 1/4 [[2/3, 2/3], [2/3, 20/3]]. The class means of feature 2 are both 0, so
    # cov(E[f|y]) = [[16/3, 0], [0, 0]] and H = 1/4 * 2/3 * 16/3 = 8/9.
    assert hscore(FEATURES, LABELS) == pytest.approx(8 / 9, abs=1e-12)


def test_hscore_full_shrinkage_by_hand() -> None:
    # shrinkage 1 replaces cov(f) by tr(cov(f))/D I = (20/3 + 2/3)/2 I = 11/3 I:
    # H = tr(cov(E[f|y])) / (11/3) = (16/3) / (11/3) = 16/11.
    assert hscore(FEATURES, LABELS, shrinkage=1.0) == pytest.approx(16 / 11, abs=1e-12)


def test_constant_feature_is_ignored_by_the_pseudo_inverse() -> None:
    # A dead unit (constant column) leaves cov(f) singular: the pseudo-inverse drops it.
    with_dead = [[a, b, 5.0] for a, b in FEATURES]
    assert hscore(with_dead, LABELS) == pytest.approx(8 / 9, abs=1e-9)


def test_population_equals_one_model_at_a_time() -> None:
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(3, 30, 4, generator=g)
    y = torch.arange(30) % 3
    pop = hscore_population(feats, y, shrinkage=0.1)
    for p in range(3):
        assert float(pop[p]) == pytest.approx(hscore(feats[p], y, shrinkage=0.1), abs=1e-12)


def test_bad_input_raises() -> None:
    with pytest.raises(WeightzooError, match="1 distinct class"):
        hscore(FEATURES, [0, 0, 0, 0])
    with pytest.raises(WeightzooError, match="5 examples but the features/outputs have 4"):
        hscore(FEATURES, LABELS + [1])
    with pytest.raises(WeightzooError, match="infinite"):
        hscore([[float("inf"), 0.0]] + FEATURES[1:], LABELS)
    with pytest.raises(WeightzooError, match="shrinkage must be in"):
        hscore(FEATURES, LABELS, shrinkage=2.0)
