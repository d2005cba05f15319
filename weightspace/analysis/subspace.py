"""Shared weight subspaces (after the Universal Weight Subspace study): per layer (for a graph
architecture, per node with trained parameters), the singular-value spectrum of a population's
stacked weights, the ranks that explain given
fractions of the variance, and how well each model survives projection onto the subspace
spanned by the *other* models.

A layer's vector is its weight and bias flattened, one row per model; rows are centered by the
population mean before the SVD, so the spectrum describes how models *differ* (the mean is part
of every projection). Held-out projection uses K-fold cross-fitting rather than exact
leave-one-out: the models are split (seeded) into ``folds`` folds and each fold is projected
onto the mean and top-``k`` right singular vectors of the other folds, ``k`` the rank explaining
``project_variance`` of *their* variance. That costs ``folds`` SVDs instead of ``N`` and
differs from leave-one-out only in holding out ``N / folds`` models at once (``folds=None``
gives exact leave-one-out).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec
from weightspace.analysis._plotting import new_figure, save
from weightspace.analysis._population import Params, population_size
from weightspace.analysis.evaluation import population_loss_accuracy, recompute_batch_norm


@dataclass(frozen=True)
class SubspaceResult:
    """Spectra, ranks and held-out projections of a population's layers.

    Shapes:
        ``layers``: ``L`` labels, e.g. ``"layer 0: linear 64->32"``; ``singular_values``: one
        ``[min(N - 1, D_l)]`` tensor per layer (descending); ``explained``: one such
        cumulative variance fraction per layer; ``ranks``: ``{variance: [L] ints}``;
        ``fold``: ``[N]`` each model's fold; ``projection_ranks``: ``[folds, L]`` the ``k``
        used per fold and layer; ``projection_error``: ``[N, L]`` the part of each model's
        deviation from the other folds' mean left out of their subspace, ``|w - proj(w)| /
        |w - mean|``; ``accuracy``, ``projected_accuracy``: ``[N]`` (``None`` without data).
    """

    layers: list[str]
    singular_values: list[Tensor]
    explained: list[Tensor]
    ranks: dict[float, list[int]]
    project_variance: float
    fold: Tensor
    projection_ranks: Tensor
    projection_error: Tensor
    accuracy: Tensor | None = None
    projected_accuracy: Tensor | None = None


def explained_variance(singular_values: Tensor) -> Tensor:
    """Cumulative fraction of the variance explained by the top ``1..r`` components.

    Shapes:
        ``[r]`` -> ``[r]`` (``float64``; all ones if the variance is zero: there is nothing to
        explain, and :func:`rank_for_variance` is 0).
    """
    var = singular_values.double().square()
    total = var.sum()
    if total <= 0:
        return torch.ones_like(var)
    return var.cumsum(0) / total


def rank_for_variance(singular_values: Tensor, variance: float) -> int:
    """The smallest ``k`` whose top-``k`` components explain at least ``variance`` of the total:
    0 when the singular values are all zero (data without variance, e.g. one model or identical
    ones, is its mean: projecting onto it needs no direction).

    Args:
        singular_values: ``[r]`` descending singular values of centered data.
        variance: a fraction in ``(0, 1]``.
    """
    if not 0 < variance <= 1:
        raise WeightzooError(f"variance must be a fraction in (0, 1], got {variance}")
    if not bool((singular_values != 0).any()):
        # The SVD of all-zero data still returns unit vectors: any rank >= 1 would project onto
        # an arbitrary direction.
        return 0
    cum = explained_variance(singular_values)
    # Tolerate rounding: rank-k data explains 1 - 1e-16 at k, not exactly 1.
    return int((cum < variance - 1e-9).sum()) + 1


def _layers(spec: NetworkSpec) -> list[tuple[str, list[str]]]:
    """``(label, parameter names)`` per layer: a chain's layers (weight and bias); a graph's nodes
    with trained parameters (a convolution's weight and bias, a norm's scale and shift, an
    attention's projections, ...; batch-norm running statistics are not trained, so not part)."""
    if spec.is_chain:
        return [(f"layer {i}: {layer.kind} {layer.in_features}->{layer.out_features}",
                 [layer.weight] + ([layer.bias] if layer.bias is not None else []))
                for i, layer in enumerate(spec.layers)]
    trained = {p.name for p in spec.params if p.trainable}
    out = []
    for node in spec.nodes:
        names = [f"{node.name}.{suffix}" for suffix, _, _ in node.param_shapes()]
        names = [n for n in names if n in trained]
        if names:
            out.append((f"{node.name}: {node.KIND}", names))
    return out


def layer_matrices(spec: NetworkSpec, params: Params) -> tuple[list[str], list[Tensor]]:
    """Each layer's weight and bias (a graph node's trained parameters) flattened into one row
    per model.

    Shapes:
        returns ``L`` labels and ``L`` tensors ``[N, D_l]``.
    """
    n = population_size(spec, params)
    labels, mats = [], []
    for label, names in _layers(spec):
        mats.append(torch.cat([params[k].reshape(n, -1) for k in names], 1))
        labels.append(label)
    return labels, mats


def _basis(rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mean ``[D]``, singular values ``[r]`` and right singular vectors ``[r, D]`` of centered rows.

    Singular values no larger than the rounding of the mean are zero: identical float64 rows
    centered by their computed mean differ by a few ulps, which is not variance (float32 weights
    held in float64 center to exact zeros).
    """
    mean = rows.mean(0)
    _, s, vh = torch.linalg.svd(rows - mean, full_matrices=False)
    # The mean of n rows rounds each entry by at most about n eps times the entries, so centering
    # noise stays below n eps |rows|_F (identical rows, n = 3..200: at most 0.1 of it); real
    # differences between models are many orders of magnitude larger.
    noise = rows.shape[0] * torch.finfo(rows.dtype).eps * rows.norm()
    return mean, torch.where(s > noise, s, torch.zeros_like(s)), vh


def subspace_analysis(
    spec: NetworkSpec, params: Params, x: Tensor | Sequence[Tensor] | None = None,
    y: Tensor | Sequence[Tensor] | None = None, variances: Sequence[float] = (0.9, 0.99),
    project_variance: float = 0.9, folds: int | None = 5, seed: int = 0,
    bn_x: Tensor | Sequence[Tensor] | None = None,
) -> SubspaceResult:
    """Per-layer spectra and ranks of a population, and its held-out projections.

    Args:
        spec: the shared architecture.
        params: ``{name: Tensor[N, *shape]}`` the selected models (``N >= 2``).
        x: inputs ``[M, *input_shape]`` to measure accuracy before and after projection
            (optional, with ``y``).
        y: labels ``[M]``.
        variances: fractions of variance whose ranks to report (default ``(0.9, 0.99)``).
        project_variance: each fold is projected onto the top-``k`` subspace of the other
            folds, ``k`` explaining this fraction of their variance (default ``0.9``).
        folds: number of folds (default ``5``; at most ``N``); ``None``: leave-one-out.
        seed: seed of the fold assignment (default ``0``).
        bn_x: for networks with batch norm, when ``x`` is given (required there): inputs, e.g.
            the training data, to recompute the projected networks' statistics from.

    Shapes:
        returns a :class:`SubspaceResult`.
    """
    n = population_size(spec, params)
    if n < 2:
        raise WeightzooError(f"a subspace analysis needs at least 2 models, got {n}")
    if (x is None) != (y is None):
        raise WeightzooError("pass both x and y (to measure projected accuracy) or neither")
    batch_norm = any(not p.trainable for p in spec.params)
    if x is not None and batch_norm and bn_x is None:
        raise WeightzooError(f"{spec.family} architecture {spec.arch_id} has batch norm: pass bn_x, inputs "
                             f"(e.g. the training data) to recompute the projected networks' statistics from")
    n_folds = n if folds is None else min(int(folds), n)
    if n_folds < 2:
        raise WeightzooError(f"folds must be at least 2 (or None for leave-one-out), got {folds}")
    rank_for_variance(torch.ones(1), project_variance)  # validates the fraction
    labels, mats = layer_matrices(spec, {k: v.detach().double() for k, v in params.items()})

    # Centering leaves at most N - 1 nonzero singular values.
    spectra = [_basis(m)[1][:n - 1] for m in mats]
    ranks = {float(v): [rank_for_variance(s, v) for s in spectra] for v in variances}

    fold = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) % n_folds
    projected = [torch.empty_like(m) for m in mats]
    error = torch.zeros(n, len(mats), dtype=torch.float64)
    used = torch.zeros(n_folds, len(mats), dtype=torch.long)
    for f in range(n_folds):
        held = fold == f
        for li, m in enumerate(mats):
            mean, s, vh = _basis(m[~held])
            k = rank_for_variance(s, project_variance)
            used[f, li] = k
            basis = vh[:k]  # [k, D]
            dev = m[held] - mean
            proj = mean + (dev @ basis.T) @ basis
            projected[li][held] = proj
            norm = dev.norm(dim=1)
            error[held, li] = torch.where(norm > 0, (m[held] - proj).norm(dim=1) / norm.clamp_min(1e-300),
                                          torch.zeros_like(norm))

    acc = proj_acc = None
    if x is not None:
        new: dict[str, Tensor] = dict(params)
        for (_, names), rows in zip(_layers(spec), projected):
            offset = 0
            for k in names:
                t = params[k]
                new[k] = rows[:, offset:offset + t[0].numel()].reshape(t.shape).to(t.dtype)
                offset += t[0].numel()
        if batch_norm:  # a projected network's statistics are not its own: recompute them
            new.update(recompute_batch_norm(spec, new, bn_x))
        _, acc = population_loss_accuracy(spec, params, x, y)
        _, proj_acc = population_loss_accuracy(spec, new, x, y)
    return SubspaceResult(labels, spectra, [explained_variance(s) for s in spectra], ranks,
                          float(project_variance), fold, used, error, acc, proj_acc)


def plot_spectrum(result: SubspaceResult, out: str | os.PathLike) -> Path:
    """Plot each layer's singular values (log scale) against the component index, marking the
    rank that explains 90% (or the first reported fraction) of the variance.

    Args:
        result: a :func:`subspace_analysis` result.
        out: the image file to write (``.png``).

    Returns:
        the written path.
    """
    return save(_spectrum_figure(result), out)


def _layer_colors(n: int) -> list:
    """``n`` distinct colours: tab10, tab20, then evenly spaced along a continuous colour map."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["turbo"](i / (n - 1)) for i in range(n)]


def _spectrum_figure(result: SubspaceResult) -> Any:
    """The figure of :func:`plot_spectrum`: one colour per layer, the legend outside the axes."""
    n = len(result.layers)
    cols = 1 if n <= 24 else 2
    fig = new_figure(6.4 + 2.6 * cols, max(4.8, 0.2 * -(-n // cols) + 1.5))
    ax = fig.add_subplot()
    marked = min(result.ranks) if result.ranks else None
    colors = _layer_colors(n)
    for li, (label, s) in enumerate(zip(result.layers, result.singular_values)):
        idx = torch.arange(1, len(s) + 1)
        line, = ax.plot(idx.numpy(), s.clamp_min(1e-12).numpy(), marker=".", label=label, color=colors[li])
        k = result.ranks[marked][li] if marked is not None else 0
        if k > 0:  # rank 0 (no variance) has no component to mark
            ax.plot([k], [float(s[k - 1].clamp_min(1e-12))], marker="o", markersize=9,
                    markerfacecolor="none", color=line.get_color())
    ax.set_yscale("log")
    ax.set_xlabel("component (singular value index)")
    ax.set_ylabel("singular value of centered weights")
    title = f"Per-layer weight spectrum of {len(result.fold)} models"
    if marked is not None:
        title += f" (circles: rank for {marked:.0%} variance)"
    ax.set_title(title, fontsize=10)
    if n:
        fig.legend(loc="outside right upper", fontsize=7, ncols=cols)  # beside the data, never over it
    ax.grid(True, which="both", alpha=0.3)
    return fig
