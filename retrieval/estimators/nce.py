"""NCE: negative conditional entropy (Tran et al., 2019, "Transferability and Hardness of
Supervised Classification Tasks").

The source model's hard predictions ``z_i = argmax theta(x_i)`` on the target examples and the
target labels ``y_i`` give the empirical joint ``P(z, y)``; the score is
``-H(Y | Z) = sum_{z, y} P(z, y) log P(y | z)`` (<= 0; ``0`` when the source predictions
determine the target label).

Argument order (a known pitfall of published numbers): **source labels first, target labels
second**. Both are class indices, so a swap cannot be detected: ``nce(z, y)`` is
``-H(Y | Z)``, ``nce(y, z)`` is ``-H(Z | Y)``, a different number.
"""

from __future__ import annotations

import torch
from torch import Tensor

from retrieval._checks import ArrayLike, as_labels


def nce_population(source_labels: ArrayLike, target_labels: ArrayLike) -> Tensor:
    """NCE of every model of a population.

    Args:
        source_labels: ``[P, N]`` each source model's predicted source class (argmax of its
            outputs) on the target examples.
        target_labels: ``[N]`` the target task's class indices.

    Shapes:
        returns ``[P]`` float64.
    """
    z = as_labels(source_labels, "source_labels", dims=2, min_classes=1)
    y = as_labels(target_labels, "target_labels", z.shape[1])
    n_pop, n = z.shape
    n_y = int(y.max()) + 1
    n_z = int(z.max()) + 1
    # Count (z, y) pairs per model with one scatter: cell index z * n_y + y.
    cells = z * n_y + y.unsqueeze(0)
    joint = torch.zeros(n_pop, n_z * n_y, dtype=torch.float64)
    joint.scatter_add_(1, cells, torch.ones_like(cells, dtype=torch.float64))
    joint = joint.view(n_pop, n_z, n_y) / n                                  # P(z, y)
    pz = joint.sum(2, keepdim=True)                                          # P(z)
    ratio = torch.where(joint > 0, joint / pz.clamp_min(1e-300), torch.ones_like(joint))
    return (joint * torch.log(ratio)).sum((1, 2))                            # 0 log 0 = 0


def nce(source_labels: ArrayLike, target_labels: ArrayLike) -> float:
    """NCE of one source model on a target task.

    Args:
        source_labels: ``[N]`` the source model's predicted class (argmax) on each target example.
        target_labels: ``[N]`` the target task's class indices.
    """
    z = as_labels(source_labels, "source_labels", min_classes=1)
    return float(nce_population(z.unsqueeze(0), target_labels)[0])
