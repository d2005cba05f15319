"""Linear centered kernel alignment (CKA, Kornblith et al. 2019) between representations.

``CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` for column-centered ``X [N, D1]``,
``Y [N, D2]`` (the same ``N`` examples): 1 for representations that agree up to an orthogonal
transform and an isotropic scaling, 0 for orthogonal ones. The issue's ``cka_seed`` is the mean
CKA of a run's logits (``population_forward`` output, or a hidden layer's neuron values from its
``activations=`` list) against each other seed of its configuration
(:func:`~weightspace.analysis.pairs.seed_pairs`, :func:`~weightspace.analysis.pairs.mean_over_pairs`)::

    logits = population_forward(spec, params, x_test)            # [R, N, C]
    pairs = torch.as_tensor(seed_pairs(table, hyperparameters))  # [M, 2]
    cka = linear_cka(logits[pairs[:, 0]], logits[pairs[:, 1]])   # [M]
    cka_seed = mean_over_pairs(pairs, cka, len(logits))          # [R]
"""

from __future__ import annotations

import torch
from torch import Tensor

from catalog.errors import WeightzooError


def linear_cka(x: Tensor, y: Tensor) -> Tensor:
    """Linear CKA between representations of the same examples, batched over leading dims.

    Computed in ``float64``: in feature space (``D x D`` cross-covariances) when ``N`` exceeds
    the widths, else with ``N x N`` Gram matrices (the same number, ``||Y^T X||_F^2 =
    <X X^T, Y Y^T>_F``). A representation that is constant over the examples gives NaN.

    Args:
        x: ``[..., N, D1]`` one representation per row of the batch.
        y: ``[..., N, D2]`` (leading dims broadcast against ``x``'s).

    Shapes:
        returns ``[...]`` in ``float64``.
    """
    if x.dim() < 2 or y.dim() < 2 or x.shape[-2] != y.shape[-2]:
        raise WeightzooError(f"linear_cka needs [..., N, D] representations of the same N examples; "
                             f"got {tuple(x.shape)} and {tuple(y.shape)}")
    x = x.double()
    y = y.double()
    x = x - x.mean(-2, keepdim=True)
    y = y - y.mean(-2, keepdim=True)
    n, d1, d2 = x.shape[-2], x.shape[-1], y.shape[-1]
    if n > max(d1, d2):
        cross = (y.transpose(-1, -2) @ x).square().sum((-1, -2))
        xx = torch.linalg.matrix_norm(x.transpose(-1, -2) @ x)
        yy = torch.linalg.matrix_norm(y.transpose(-1, -2) @ y)
    else:
        kx, ky = x @ x.transpose(-1, -2), y @ y.transpose(-1, -2)
        cross = (kx * ky).sum((-1, -2))
        xx, yy = torch.linalg.matrix_norm(kx), torch.linalg.matrix_norm(ky)
    denom = xx * yy
    return torch.where(denom > 0, cross / denom.clamp_min(torch.finfo(torch.float64).tiny),
                       torch.full_like(denom, float("nan")))
