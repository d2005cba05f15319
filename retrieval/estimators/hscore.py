"""H-score (Bao et al., 2019, "An Information-Theoretic Approach to Transferability in Task
Transfer Learning").

``H(f) = tr(cov(f)^+ cov(E[f | y]))``: how much of the features' variance lies between the
target classes, measured in the metric of the features' own covariance. Both covariances
are sample covariances over the ``N`` examples (``E[f | y]`` is the class mean of each
example's class, as in the authors' code); the normalisation cancels.

The inverse is a **pseudo-inverse** (``torch.linalg.pinv``, Hermitian, default rank
tolerance), so constant or collinear features (dead ReLU units) do not blow up the score. An
optional **shrinkage** ``s`` replaces ``cov(f)`` by ``(1 - s) cov(f) + s tr(cov(f))/D I`` before
inverting (the shrinkage estimator of Ibrahim et al., 2022, "Newer is not always better",
which stabilises H-score when ``D`` is large against ``N``); the default ``0`` is the original.
"""

from __future__ import annotations

import torch
from torch import Tensor

from catalog.errors import WeightzooError
from retrieval._checks import ArrayLike, as_float, as_labels


def hscore_population(features: ArrayLike, labels: ArrayLike, shrinkage: float = 0.0) -> Tensor:
    """H-score of every model of a population (higher = better expected transfer).

    Args:
        features: ``[P, N, D]`` each model's features on the target examples.
        labels: ``[N]`` the target task's class indices.
        shrinkage: weight ``s`` in ``[0, 1]`` of the scaled identity mixed into ``cov(f)``
            (default ``0``: the plain pseudo-inverse).

    Shapes:
        returns ``[P]`` float64.
    """
    if not 0.0 <= shrinkage <= 1.0:
        raise WeightzooError(f"hscore shrinkage must be in [0, 1], got {shrinkage}")
    f = as_float(features, "features", 3)
    n_pop, n, d = f.shape
    y = as_labels(labels, "labels", n)
    f = f - f.mean(1, keepdim=True)
    cov_f = f.transpose(1, 2) @ f / (n - 1)                                   # [P, D, D]
    onehot = torch.nn.functional.one_hot(y).to(torch.float64)                 # [N, C]
    counts = onehot.sum(0).clamp_min(1.0)                                     # absent classes: 0 rows
    means = torch.einsum("nc,pnd->pcd", onehot, f) / counts.view(1, -1, 1)    # class means [P, C, D]
    g = means[:, y]                                                           # E[f | y_i]: [P, N, D]
    cov_g = g.transpose(1, 2) @ g / (n - 1)                                   # (f centred, so g is too)
    if shrinkage > 0:
        scale = torch.diagonal(cov_f, dim1=1, dim2=2).sum(1) / d
        eye = torch.eye(d, dtype=torch.float64)
        cov_f = (1 - shrinkage) * cov_f + shrinkage * scale.view(-1, 1, 1) * eye
    inv = torch.linalg.pinv(cov_f, hermitian=True)
    return torch.diagonal(inv @ cov_g, dim1=1, dim2=2).sum(1)


def hscore(features: ArrayLike, labels: ArrayLike, shrinkage: float = 0.0) -> float:
    """H-score of one model.

    Args:
        features: ``[N, D]`` the model's features on the target examples.
        labels: ``[N]`` the target task's class indices.
        shrinkage: see :func:`hscore_population` (default ``0``).
    """
    return float(hscore_population(as_float(features, "features", 2).unsqueeze(0), labels, shrinkage)[0])
