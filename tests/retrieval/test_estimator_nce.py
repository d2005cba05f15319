"""retrieval.estimators.nce: a hand computation, argument order, population form, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from catalog.errors import WeightzooError
from retrieval.estimators import nce, nce_population

SOURCE = [0, 0, 1, 1]   # the source model's argmax predictions z
TARGET = [0, 1, 1, 1]   # the target labels y


def test_nce_by_hand() -> None:
    # P(z, y): (0, 0) = 1/4, (0, 1) = 1/4, (1, 1) = 1/2;  P(z) = (1/2, 1/2).
    # -H(Y | Z) = 1/4 log(1/2) + 1/4 log(1/2) + 1/2 log(1) = -log(2) / 2.
    assert nce(SOURCE, TARGET) == pytest.approx(-math.log(2) / 2, abs=1e-12)


def test_argument_order_matters() -> None:
    # Swapped, the same numbers give -H(Z | Y): P(y) = (1/4, 3/4), so
    # 1/4 log(1) + 1/4 log(1/3) + 1/2 log(2/3).
    swapped = 0.25 * math.log(1 / 3) + 0.5 * math.log(2 / 3)
    assert nce(TARGET, SOURCE) == pytest.approx(swapped, abs=1e-12)
    assert nce(TARGET, SOURCE) != pytest.approx(nce(SOURCE, TARGET))


def test_population_and_extremes() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (40,), generator=g)
    z = torch.randint(0, 5, (3, 40), generator=g)
    pop = nce_population(z, y)
    for p in range(3):
        assert float(pop[p]) == pytest.approx(nce(z[p], y), abs=1e-12)
    # A source that determines the target scores 0; one constant prediction scores -H(Y).
    assert nce(y + 2, y) == pytest.approx(0.0, abs=1e-12)
    p_y = torch.bincount(y).double() / 40
    assert nce(torch.zeros(40, dtype=torch.long), y) == pytest.approx(float((p_y * p_y.log()).sum()))


def test_bad_input_raises() -> None:
    with pytest.raises(WeightzooError, match="target_labels has 1 distinct class"):
        nce(SOURCE, [1, 1, 1, 1])
    with pytest.raises(WeightzooError, match="3 examples but the features/outputs have 4"):
        nce(SOURCE, TARGET[:3])
    with pytest.raises(WeightzooError, match="NaN"):
        nce([0.0, float("nan"), 1.0, 1.0], TARGET)
    with pytest.raises(WeightzooError, match="non-negative"):
        nce([0, -1, 1, 1], TARGET)
