"""LEEP: the log expected empirical prediction (Nguyen et al., 2020, "LEEP: A New Measure to
Evaluate Transferability of Learned Representations").

The source model's softmax outputs ``theta(x) [N, Z]`` on the target examples (``Z`` source
classes) give the empirical joint ``P(y, z) = 1/N sum_i theta(x_i)_z 1[y_i = y]``, the
conditional ``P(y | z) = P(y, z) / P(z)``, and the "expected empirical predictor"
``p(y | x) = sum_z P(y | z) theta(x)_z``. LEEP is its mean log-likelihood on the target
labels, ``1/N sum_i log p(y_i | x_i)`` (always <= 0; higher = better expected transfer).

Argument order (a known pitfall of published numbers): **source probabilities first, target
labels second**; probabilities that are not rows on the simplex (e.g. logits) are refused.
"""

from __future__ import annotations

import torch
from torch import Tensor

from catalog.errors import WeightzooError
from retrieval._checks import ArrayLike, as_float, as_labels, ndim

#: How far a row of ``probs`` may be from summing to one (float32 softmax rounding).
_SIMPLEX_TOL = 1e-3


def _check_probs(probs: ArrayLike, dims: int) -> Tensor:
    if ndim(probs) == dims - 1:
        raise WeightzooError(
            f"leep takes (probs, labels): probs must be the source model's softmax outputs "
            f"{'[N, C_source]' if dims == 2 else '[P, N, C_source]'}, got a {dims - 1}-D array "
            f"first; were the arguments swapped?")
    p = as_float(probs, "probs", dims)
    if (p < 0).any() or ((p.sum(-1) - 1).abs() > _SIMPLEX_TOL).any():
        raise WeightzooError("probs must be probabilities (non-negative rows summing to 1): pass "
                             "the source model's softmax outputs, not logits")
    return p


def leep_population(probs: ArrayLike, labels: ArrayLike) -> Tensor:
    """LEEP of every model of a population.

    Args:
        probs: ``[P, N, Z]`` each source model's softmax outputs on the target examples.
        labels: ``[N]`` the target task's class indices.

    Shapes:
        returns ``[P]`` float64.
    """
    theta = _check_probs(probs, 3)
    n = theta.shape[1]
    y = as_labels(labels, "labels", n)
    onehot = torch.nn.functional.one_hot(y).to(torch.float64)              # [N, C]
    joint = torch.einsum("nc,pnz->pcz", onehot, theta) / n                   # P(y, z): [P, C, Z]
    pz = joint.sum(1, keepdim=True)                                          # P(z):    [P, 1, Z]
    # A source class never predicted (P(z) = 0) has theta_z = 0 on every example: it adds 0.
    cond = torch.where(pz > 0, joint / pz.clamp_min(1e-300), torch.zeros_like(joint))  # P(y | z)
    eep = torch.einsum("pnz,pcz->pnc", theta, cond)                         # p(y | x) for every y
    picked = eep.gather(2, y.view(1, n, 1).expand(theta.shape[0], n, 1)).squeeze(2)  # [P, N]
    return torch.log(picked).mean(1)


def leep(probs: ArrayLike, labels: ArrayLike) -> float:
    """LEEP of one source model on a target task.

    Args:
        probs: ``[N, C_source]`` the source model's softmax outputs on the target examples.
        labels: ``[N]`` the target task's class indices.
    """
    return float(leep_population(_check_probs(probs, 2).unsqueeze(0), labels)[0])
