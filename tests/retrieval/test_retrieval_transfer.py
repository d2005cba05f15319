"""retrieval.transfer: the closed-form ridge probe and linear-probe accuracy."""

from __future__ import annotations

import pytest
import torch
from sklearn.linear_model import Ridge

from catalog.errors import WeightzooError
from catalog.network import LayerSpec, NetworkSpec
from retrieval import fit_ridge_probe, linear_probe_accuracy
from zoo_builders import load_dataset


def test_ridge_probe_equals_sklearn_ridge_on_standardized_features() -> None:
    # sklearn's Ridge centres X and y and leaves the intercept unpenalized: the same problem
    # as fit_ridge_probe with alpha = ridge * N on features standardized beforehand.
    g = torch.Generator().manual_seed(0)
    f = torch.randn(2, 50, 4, generator=g, dtype=torch.float64) * torch.tensor([1.0, 5.0, 0.1, 2.0])
    y = torch.arange(50) % 3
    w, mean, std = fit_ridge_probe(f, y, 3, ridge=0.1)
    for p in range(2):
        z = ((f[p] - mean[p]) / std[p]).numpy()
        ref = Ridge(alpha=0.1 * 50).fit(z, torch.nn.functional.one_hot(y, 3).double().numpy())
        assert torch.allclose(w[p, :-1], torch.from_numpy(ref.coef_.T), atol=1e-10)
        assert torch.allclose(w[p, -1], torch.from_numpy(ref.intercept_), atol=1e-10)


def _identity_vs_dead_population() -> tuple[NetworkSpec, dict[str, torch.Tensor]]:
    """2 -> 2 -> 3 networks; model 0's hidden layer is the identity (features = inputs), model
    1's is all zero (constant features)."""
    spec = NetworkSpec("mlp", (2,), (LayerSpec("linear", 2, 2, "l0.w", "l0.b"),
                                     LayerSpec("linear", 2, 3, "l1.w", "l1.b")))
    params = {"l0.w": torch.stack([torch.eye(2), torch.zeros(2, 2)]), "l0.b": torch.zeros(2, 2),
              "l1.w": torch.randn(2, 3, 2, generator=torch.Generator().manual_seed(0)),
              "l1.b": torch.zeros(2, 3)}
    return spec, params


def test_linear_probe_accuracy_of_informative_and_dead_features() -> None:
    spec, params = _identity_vs_dead_population()
    blobs = load_dataset({"name": "blobs", "n_classes": 3, "noise": 0.1})
    acc = linear_probe_accuracy(spec, params, (blobs.x_train, blobs.y_train),
                                (blobs.x_test, blobs.y_test))
    assert acc.shape == (2,)
    assert float(acc[0]) > 0.95
    # Constant features: the probe is its bias alone, the mean one-hot target, so it predicts
    # the training set's most frequent class for every test example.
    majority = int(torch.bincount(blobs.y_train).argmax())
    assert float(acc[1]) == pytest.approx(float((blobs.y_test == majority).double().mean()))


def test_diverged_model_gets_nan_and_bad_input_raises() -> None:
    spec, params = _identity_vs_dead_population()
    params["l0.w"][1, 0, 0] = float("nan")
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(0))
    y = torch.arange(20) % 2
    acc = linear_probe_accuracy(spec, params, (x, y), (x, y))
    assert torch.isfinite(acc[0]) and torch.isnan(acc[1])
    with pytest.raises(WeightzooError, match="1 distinct class"):
        linear_probe_accuracy(spec, params, (x, torch.zeros(20, dtype=torch.long)), (x, y))
    with pytest.raises(WeightzooError, match="ridge must be > 0"):
        linear_probe_accuracy(spec, params, (x, y), (x, y), ridge=0.0)
    with pytest.raises(WeightzooError, match="19 examples"):
        linear_probe_accuracy(spec, params, (x, y[:19]), (x, y))
