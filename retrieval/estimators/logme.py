"""LogME: the log of the maximum evidence of a Bayesian linear model on a model's features
(You et al., 2021, "LogME: Practical Assessment of Pre-trained Models for Transfer Learning").

For each target class ``c`` the one-hot column ``y_c = 1[labels == c]`` is regressed on the
features ``F [N, D]`` with the model ``y_c ~ N(F w, 1/beta)``, ``w ~ N(0, 1/alpha I)``. The
evidence ``log p(y_c | F, alpha, beta)`` is maximized over ``(alpha, beta)`` by MacKay's
fixed-point iteration, written in the SVD ``F = U S V^T`` (``sigma = S^2``, ``x = U^T y_c``)::

    t = alpha / beta
    gamma = sum sigma / (sigma + t)               effective number of parameters
    |m|^2 = sum sigma x^2 / (sigma + t)^2          squared norm of the posterior mean
    |y - F m|^2 = sum x^2 t^2 / (sigma + t)^2 + (|y|^2 - |x|^2)
    alpha <- gamma / |m|^2,   beta <- (N - gamma) / |y - F m|^2

stopping when ``t`` changes by less than ``tol`` (relative) or after ``max_iter`` rounds. The
score is the evidence divided by ``N``, averaged over the classes. Defaults (``max_iter=11``,
``tol=1e-3``, ``1e-5`` guards in the updates) follow the reference implementation
(github.com/thuml/LogME, ``LogME._fit_fixed_point``); two details differ, both so that the
returned number is exactly the log marginal likelihood at the returned ``(alpha, beta)``:

- the evidence is evaluated at the final ``(alpha, beta)`` with ``|m|^2`` and the residual
  recomputed there (the reference reuses the values of the previous round);
- ``log det(alpha I + beta F^T F)`` counts all ``D`` directions: when ``D > N`` (or ``F`` is
  rank deficient) the ``D - rank`` null directions add ``log alpha`` each (the reference sums
  over the nonzero singular values only). For ``N > D`` and full-rank features the two agree.

Also unlike the reference, classes are the labels present (the reference loops over
``0..max(labels)``, which scores absent classes too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from retrieval._checks import ArrayLike, as_float, as_labels, ndim

#: Guard added to the denominators of the alpha/beta updates (as in the reference code).
_GUARD = 1e-5
#: Eigenvalues of F^T F below this fraction of the largest count as zero (rank deficiency).
_RANK_TOL = 1e-10


@dataclass(frozen=True)
class LogMEFit:
    """The fitted Bayesian linear models of :func:`logme_fit`.

    Shapes:
        ``score [P]`` (mean over classes), ``evidence [P, C]`` (per class, divided by ``N``),
        ``alpha [P, C]`` (prior precision), ``beta [P, C]`` (noise precision),
        ``classes [C]`` (the label values, in order), ``iterations [P, C]``.
    """

    score: Tensor
    evidence: Tensor
    alpha: Tensor
    beta: Tensor
    classes: Tensor
    iterations: Tensor


def _evidence(alpha: Tensor, beta: Tensor, sigma: Tensor, x2: Tensor, res_x2: Tensor,
              n: int, d: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Evidence / N, gamma, |m|^2 and |y - F m|^2 at ``(alpha, beta)``.

    Shapes:
        ``alpha, beta, res_x2 [P, C]``, ``sigma [P, k, 1]``, ``x2 [P, k, C]``; returns four ``[P, C]``.
    """
    t = (alpha / beta).unsqueeze(1)                              # [P, 1, C]
    gamma = (sigma / (sigma + t)).sum(1)                         # [P, C]
    m2 = (sigma * x2 / (sigma + t) ** 2).sum(1)
    res2 = (x2 * (t / (sigma + t)) ** 2).sum(1) + res_x2
    k = sigma.shape[1]
    # log det(alpha I_D + beta F^T F): k directions with sigma, D - k null ones with log alpha.
    logdet = torch.log(alpha.unsqueeze(1) + beta.unsqueeze(1) * sigma).sum(1) + (d - k) * torch.log(alpha)
    ev = (d / 2 * torch.log(alpha) + n / 2 * torch.log(beta) - 0.5 * logdet
          - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * math.log(2 * math.pi))
    return ev / n, gamma, m2, res2


def _spectrum(f: Tensor, onehot: Tensor) -> tuple[Tensor, Tensor]:
    """``sigma = S^2`` and ``x^2 = (U^T y)^2`` of the thin SVD ``F = U S V^T``.

    With more examples than features (the usual case) this goes through the ``D x D`` Gram
    matrix, as the reference does, so no ``[P, N, D]`` factor ``U`` is ever held:
    ``U^T y = S^-1 V^T F^T y``. Directions with (relatively) zero variance carry no ``x``.

    Shapes:
        ``f [P, N, D]``, ``onehot [N, C]`` -> ``sigma [P, k, 1]``, ``x2 [P, k, C]``,
        ``k = min(N, D)``.
    """
    n, d = f.shape[1:]
    if n > d:
        sigma, v = torch.linalg.eigh(f.transpose(1, 2) @ f)               # ascending, [P, D]
        sigma = sigma.clamp_min(0.0)
        proj = v.transpose(1, 2) @ (f.transpose(1, 2) @ onehot)           # V^T F^T y: [P, D, C]
        keep = sigma > sigma.amax(1, keepdim=True) * _RANK_TOL
        x2 = torch.where(keep.unsqueeze(-1), proj ** 2 / sigma.clamp_min(1e-300).unsqueeze(-1), 0.0)
        return sigma.unsqueeze(-1), x2
    u, s, _ = torch.linalg.svd(f, full_matrices=False)                    # [P, N, k], [P, k]
    return (s ** 2).unsqueeze(-1), (u.transpose(1, 2) @ onehot) ** 2


def logme_fit(features: ArrayLike, labels: ArrayLike, max_iter: int = 11,
              tol: float = 1e-3) -> LogMEFit:
    """LogME of a population of models, with the fitted ``(alpha, beta)`` of every class.

    Args:
        features: each model's features on the task's examples, ``[P, N, D]`` (or ``[N, D]``
            for one model).
        labels: the task's class indices ``[N]`` (at least two classes).
        max_iter: fixed-point rounds at most (default ``11``, the reference's).
        tol: stop when ``alpha / beta`` changes by less than this fraction (default ``1e-3``).

    Shapes:
        see :class:`LogMEFit`; ``P = 1`` for ``[N, D]`` features.
    """
    f = as_float(features, "features", 3 if ndim(features) == 3 else 2)
    if f.dim() == 2:
        f = f.unsqueeze(0)
    n_pop, n, d = f.shape
    y = as_labels(labels, "labels", n)
    classes = torch.unique(y)
    onehot = (y.unsqueeze(1) == classes.unsqueeze(0)).to(torch.float64)   # [N, C]
    sigma, x2 = _spectrum(f, onehot)                                      # [P, k, 1], [P, k, C]
    # |y|^2 - |x|^2: the part of y outside the span of F (clamped: rounding can make it < 0).
    res_x2 = (onehot.sum(0) - x2.sum(1)).clamp_min(0.0)                   # [P, C]

    shape = (n_pop, classes.numel())
    alpha = torch.ones(shape, dtype=torch.float64)
    beta = torch.ones(shape, dtype=torch.float64)
    active = torch.ones(shape, dtype=torch.bool)
    iters = torch.zeros(shape, dtype=torch.int64)
    for _ in range(max_iter):
        _, gamma, m2, res2 = _evidence(alpha, beta, sigma, x2, res_x2, n, d)
        new_alpha = gamma / (m2 + _GUARD)
        new_beta = (n - gamma) / (res2 + _GUARD)
        t_old, t_new = alpha / beta, new_alpha / new_beta
        # Every (model, class) pair iterates on its own: a converged pair keeps its values.
        alpha = torch.where(active, new_alpha, alpha)
        beta = torch.where(active, new_beta, beta)
        iters += active.to(torch.int64)
        active &= (t_new - t_old).abs() / t_old > tol
        if not active.any():
            break
    evidence, *_ = _evidence(alpha, beta, sigma, x2, res_x2, n, d)
    return LogMEFit(evidence.mean(1), evidence, alpha, beta, classes, iters)


def logme_population(features: ArrayLike, labels: ArrayLike) -> Tensor:
    """LogME of every model of a population (higher = better expected transfer).

    Args:
        features: ``[P, N, D]``, each model's features (e.g. penultimate layer) on the task.
        labels: the task's class indices ``[N]``.

    Shapes:
        returns ``[P]`` float64.
    """
    return logme_fit(as_float(features, "features", 3), labels).score


def logme(features: ArrayLike, labels: ArrayLike) -> float:
    """LogME of one model: mean over classes of the maximum evidence / N.

    Args:
        features: ``[N, D]`` the model's features on the task's examples.
        labels: ``[N]`` the task's class indices.
    """
    return float(logme_fit(as_float(features, "features", 2), labels).score[0])
