"""retrieval.estimators.leep: a hand computation, the population form and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from catalog.errors import WeightzooError
from retrieval.estimators import leep, leep_population

# Four target examples, three source classes, two target classes.
THETA = [[0.6, 0.3, 0.1],
         [0.2, 0.6, 0.2],
         [0.1, 0.2, 0.7],
         [0.5, 0.1, 0.4]]
LABELS = [0, 0, 1, 1]


def test_leep_by_hand() -> None:
    # Joint P(y, z) = 1/4 sum of theta rows of class y:
    #   y=0 (rows 1, 2): z = (0.8, 0.9, 0.3) / 4;   y=1 (rows 3, 4): z = (0.6, 0.3, 1.1) / 4
    # P(z) = (1.4, 1.2, 1.4) / 4, so
    #   P(y=0 | z) = (4/7, 3/4, 3/14),   P(y=1 | z) = (3/7, 1/4, 11/14).
    # Expected empirical prediction of each example's true label, sum_z P(y_i | z) theta_iz:
    #   row 1: 0.6*4/7 + 0.3*3/4 + 0.1*3/14  = 16.5/28
    #   row 2: 0.2*4/7 + 0.6*3/4 + 0.2*3/14  = 17/28
    #   row 3: 0.1*3/7 + 0.2*1/4 + 0.7*11/14 = 18/28
    #   row 4: 0.5*3/7 + 0.1*1/4 + 0.4*11/14 = 15.5/28
    expected = sum(math.log(v / 28) for v in (16.5, 17, 18, 15.5)) / 4
    assert leep(THETA, LABELS) == pytest.approx(expected, abs=1e-12)
    assert leep(torch.tensor(THETA), torch.tensor(LABELS)) == pytest.approx(expected, abs=1e-7)


def test_population_equals_one_model_at_a_time_and_perfect_source_scores_zero() -> None:
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(3, 50, 7, generator=g), -1)
    y = torch.randint(0, 4, (50,), generator=g)
    pop = leep_population(probs, y)
    for p in range(3):
        assert float(pop[p]) == pytest.approx(leep(probs[p], y), abs=1e-12)
    # A source model whose confident output is the target label: P(y | z) is the identity.
    assert leep(torch.nn.functional.one_hot(y, 4).double(), y) == pytest.approx(0.0, abs=1e-12)


def test_bad_input_raises() -> None:
    with pytest.raises(WeightzooError, match="were the arguments swapped"):
        leep(LABELS, THETA)
    with pytest.raises(WeightzooError, match="not logits"):
        leep([[2.0, -1.0, 0.5]] * 4, LABELS)
    with pytest.raises(WeightzooError, match="1 distinct class"):
        leep(THETA, [1, 1, 1, 1])
    with pytest.raises(WeightzooError, match="3 examples but the features/outputs have 4"):
        leep(THETA, [0, 1, 1])
    with pytest.raises(WeightzooError, match="NaN"):
        leep([[float("nan"), 0.5, 0.5]] + THETA[1:], LABELS)
