import math

import pytest
import torch

from catalog.errors import WeightzooError
from weightspace.analysis import linear_cka


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("n,d", [(50, 10), (8, 20)], ids=["feature-space", "gram"])
def test_cka_of_a_representation_with_itself_is_one(n, d):
    x = _rand(3, n, d)
    torch.testing.assert_close(linear_cka(x, x), torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("n,d", [(50, 10), (8, 20)], ids=["feature-space", "gram"])
def test_cka_invariant_to_orthogonal_transforms_and_isotropic_scaling(n, d):
    x, y = _rand(n, d, seed=1), _rand(n, 7, seed=2) + _rand(n, d, seed=1)[:, :7]
    q, _ = torch.linalg.qr(_rand(d, d, seed=3))
    base = linear_cka(x, y)
    assert 0.05 < float(base) < 0.95
    assert abs(float(linear_cka(x @ q, y)) - float(base)) < 1e-6
    assert abs(float(linear_cka(3.7 * x, 0.02 * y)) - float(base)) < 1e-6
    assert abs(float(linear_cka(x + 5.0, y - 2.0)) - float(base)) < 1e-6  # centered


def test_cka_hand_computed():
    # X's rows are +-e1, +-e2 (centered); Y keeps X's first column:
    # ||Y^T X||^2 = |[2, 0]|^2 = 4, ||X^T X||_F = ||2 I||_F = 2 sqrt(2), ||Y^T Y||_F = 2.
    x = torch.tensor([[1.0, 0], [0, 1], [-1, 0], [0, -1]])
    assert float(linear_cka(x, x[:, :1])) == pytest.approx(4 / (2 * math.sqrt(2) * 2), abs=1e-12)
    # One feature each: CKA is the squared correlation, here of [1, 2, 3] and [1, 0, 0]: 3/4.
    a, b = torch.tensor([[1.0], [2], [3]]), torch.tensor([[1.0], [0], [0]])
    assert float(linear_cka(a, b)) == pytest.approx(0.75, abs=1e-12)


def test_cka_is_batched_and_nan_for_constant():
    x, y = _rand(4, 30, 5, seed=4), _rand(4, 30, 6, seed=5)
    batched = linear_cka(x, y)
    assert batched.shape == (4,)
    for i in range(4):
        assert float(batched[i]) == pytest.approx(float(linear_cka(x[i], y[i])), abs=1e-12)
    assert math.isnan(float(linear_cka(torch.ones(5, 2), _rand(5, 2))))
    with pytest.raises(WeightzooError, match="same N"):
        linear_cka(_rand(5, 2), _rand(6, 2))
