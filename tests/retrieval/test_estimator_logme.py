"""retrieval.estimators.logme: the evidence is the Gaussian marginal likelihood, at a maximum."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from sklearn.linear_model import BayesianRidge

from catalog.errors import WeightzooError
from retrieval.estimators import logme, logme_fit, logme_population


def _case(n: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random features and 3-class labels that depend linearly on them (plus noise)."""
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, 3, generator=g, dtype=torch.float64)
    y = (f @ w + 0.5 * torch.randn(n, 3, generator=g, dtype=torch.float64)).argmax(1)
    return f, y


def _log_marginal(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """log N(y; 0, I/beta + F F^T/alpha) / N: the Bayesian linear model y = F w + noise with
    w ~ N(0, I/alpha), noise ~ N(0, I/beta), w integrated out, evaluated directly."""
    n = f.shape[0]
    cov = np.eye(n) / beta + f @ f.T / alpha
    return float(multivariate_normal(np.zeros(n), cov).logpdf(y)) / n


@pytest.mark.parametrize(("n", "d"), [(40, 4), (8, 12)])  # N > D, and D > N (null directions)
def test_evidence_is_the_marginal_likelihood_at_the_fitted_alpha_beta(n: int, d: int) -> None:
    f, y = _case(n, d)
    fit = logme_fit(f, y)
    direct = []
    for j, c in enumerate(fit.classes.tolist()):
        a, b = float(fit.alpha[0, j]), float(fit.beta[0, j])
        direct.append(_log_marginal(f.numpy(), (y == c).double().numpy(), a, b))
        assert float(fit.evidence[0, j]) == pytest.approx(direct[-1], abs=1e-10)
    assert logme(f, y) == pytest.approx(np.mean(direct), abs=1e-10)


def test_rank_deficient_features_still_give_the_marginal_likelihood() -> None:
    # A duplicated column (a dead or copied unit): F^T F is singular, one null direction.
    f, y = _case(40, 4)
    f = torch.cat([f, f[:, :1]], 1)
    fit = logme_fit(f, y)
    for j, c in enumerate(fit.classes.tolist()):
        a, b = float(fit.alpha[0, j]), float(fit.beta[0, j])
        direct = _log_marginal(f.numpy(), (y == c).double().numpy(), a, b)
        assert float(fit.evidence[0, j]) == pytest.approx(direct, abs=1e-8)


def test_fixed_point_maximizes_the_evidence() -> None:
    f, y = _case(40, 4)
    fit = logme_fit(f, y, max_iter=500, tol=1e-12)
    assert (fit.iterations < 500).all()  # converged
    for j, c in enumerate(fit.classes.tolist()):
        a, b = float(fit.alpha[0, j]), float(fit.beta[0, j])
        yc = (y == c).double().numpy()
        best = _log_marginal(f.numpy(), yc, a, b)
        for fa in (0.8, 1.0, 1.25):
            for fb in (0.8, 1.0, 1.25):
                assert _log_marginal(f.numpy(), yc, a * fa, b * fb) <= best + 1e-12


def test_fixed_point_agrees_with_sklearn_bayesian_ridge() -> None:
    # BayesianRidge maximizes the same evidence by MacKay's updates; with flat hyperpriors and
    # no intercept its lambda_ is LogME's alpha and its alpha_ is LogME's beta (LogME's 1e-5
    # guards in the updates move the fixed point by ~1e-3 relative).
    f, y = _case(40, 4)
    fit = logme_fit(f, y, max_iter=500, tol=1e-12)
    for j, c in enumerate(fit.classes.tolist()):
        br = BayesianRidge(fit_intercept=False, alpha_1=0, alpha_2=0, lambda_1=0, lambda_2=0,
                           tol=1e-14, max_iter=10_000).fit(f.numpy(), (y == c).double().numpy())
        assert float(fit.alpha[0, j]) == pytest.approx(br.lambda_, rel=1e-2)
        assert float(fit.beta[0, j]) == pytest.approx(br.alpha_, rel=1e-3)


def test_population_equals_one_model_at_a_time() -> None:
    feats = torch.stack([_case(30, 5, seed)[0] for seed in range(3)])   # [3, 30, 5]
    _, y = _case(30, 5)
    pop = logme_population(feats, y)
    assert pop.shape == (3,)
    for p in range(3):
        assert float(pop[p]) == pytest.approx(logme(feats[p], y), abs=1e-12)


def test_informative_features_score_higher() -> None:
    g = torch.Generator().manual_seed(1)
    y = torch.arange(60) % 3
    noise = torch.randn(60, 6, generator=g)
    informative = noise.clone()
    informative[:, :3] += 3 * torch.nn.functional.one_hot(y, 3)
    assert logme(informative, y) > logme(noise, y)


def test_bad_input_raises() -> None:
    f, y = _case(20, 3)
    with pytest.raises(WeightzooError, match="1 distinct class"):
        logme(f, torch.zeros(20, dtype=torch.long))
    with pytest.raises(WeightzooError, match="19 examples but the features/outputs have 20"):
        logme(f, y[:19])
    bad = f.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(WeightzooError, match="features contains 1 NaN"):
        logme(bad, y)
    with pytest.raises(WeightzooError, match="features must have 2 dimensions"):
        logme(f[:, 0], y)
    with pytest.raises(WeightzooError, match="non-integer"):
        logme(f, y.double() + 0.5)
