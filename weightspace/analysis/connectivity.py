"""Mode connectivity: loss and accuracy along a path between two networks, and the ``mc`` score.

Sign convention (Yang et al. 2021, "Taxonomizing local versus global structure in neural
network loss landscapes", as used by the Phase-Transition Model Zoo's ``ModeConnectivity``):
with ``k`` the point of the path furthest from the mean of the two endpoints' values,

- on the loss: ``mc = (L_0 + L_1) / 2 - L_k``,
- on the accuracy: ``mc = A_k - (A_0 + A_1) / 2``,

so in both **negative = a barrier** (the path is worse than its endpoints) and positive = the
path is better than its endpoints (e.g. networks not yet converged). The issue's
``v[k] - (v0 + v1) / 2`` is this with ``v`` a higher-is-better value (accuracy, or minus the
loss). ``k`` ranges over every evaluated point, endpoints included, as in the reference: when
the endpoints' values differ by more than twice the barrier, ``|mc|`` is half their difference.

Networks with batch norm (graph architectures): each point's running statistics are recomputed
from training data before it is evaluated (:func:`~weightspace.analysis.evaluation.recompute_batch_norm`,
Garipov et al.'s ``bn_update``), and the Bezier curve trains in training mode (batch statistics),
as in the reference.

Both paths are evaluated for all pairs and all points as one population (``M`` pairs x ``T``
points members) of :func:`~catalog.network.population_forward`; the Bezier curves of all pairs
are trained together (each pair's loss depends only on its own bend, so the summed loss trains
every pair independently, and each pair's random ``t`` comes from its own generator).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from catalog.errors import WeightzooError
from catalog.execution import graph_population_forward
from catalog.network import NetworkSpec, population_forward
from weightspace.analysis._population import Params, data_batch, member_seeds, same_population
from weightspace.analysis.evaluation import EVAL_BATCH, population_loss_accuracy, recompute_batch_norm


def mode_connectivity(values: Tensor, higher_is_better: bool = False) -> Tensor:
    """The ``mc`` score of values along paths (see the module docstring for the sign).

    Args:
        values: ``[..., T]`` values at ``T >= 2`` points, endpoints first and last.
        higher_is_better: ``False`` for a loss (default), ``True`` for an accuracy.

    Shapes:
        returns ``[...]``.
    """
    if values.shape[-1] < 2:
        raise WeightzooError(f"a path needs at least 2 points (its endpoints), got {values.shape[-1]}")
    mid = (values[..., :1] + values[..., -1:]) / 2
    k = (values - mid).abs().argmax(-1, keepdim=True)
    diff = (values.gather(-1, k) - mid).squeeze(-1)
    return diff if higher_is_better else -diff


@dataclass(frozen=True)
class PathResult:
    """Loss and accuracy along ``M`` paths at ``T`` points.

    Shapes:
        ``t [T]`` (0 = network a, 1 = network b), ``loss [M, T]``, ``accuracy [M, T]``;
        ``bends``: for a Bezier curve, ``{name: Tensor[M, n_bends - 2, *shape]}`` the trained
        inner control points (``None`` for a line).
    """

    t: Tensor
    loss: Tensor
    accuracy: Tensor
    bends: dict[str, Tensor] | None = None

    @property
    def mc(self) -> Tensor:
        """``[M]`` ``mc`` on the loss (negative = barrier)."""
        return mode_connectivity(self.loss)

    @property
    def mc_accuracy(self) -> Tensor:
        """``[M]`` ``mc`` on the accuracy (negative = barrier)."""
        return mode_connectivity(self.accuracy, higher_is_better=True)


def _check_points(points: int) -> Tensor:
    if not isinstance(points, int) or points < 2:
        raise WeightzooError(f"points must be an integer >= 2 (the endpoints and what lies between), "
                             f"got {points!r}")
    return torch.linspace(0.0, 1.0, points)


def _bernstein(t: Tensor, n_bends: int) -> Tensor:
    """``[..., n_bends]`` Bezier coefficients ``C(n-1, k) t^k (1-t)^(n-1-k)`` for ``t [...]``."""
    n = n_bends - 1
    k = torch.arange(n_bends, dtype=t.dtype)
    binom = torch.tensor([math.comb(n, int(i)) for i in k], dtype=t.dtype)
    t = t.unsqueeze(-1)
    return binom * t ** k * (1 - t) ** (n - k)


def _curve(controls: dict[str, Tensor], coef: Tensor) -> dict[str, Tensor]:
    """Points ``sum_k coef[m, j, k] controls[m, k]`` for every pair ``m`` and point ``j``,
    flattened to a population ``[M * J, *shape]``.

    ``controls``: ``{name: [M, K, *shape]}``, ``coef``: ``[M, J, K]``.
    """
    out = {}
    for name, c in controls.items():
        m, k = c.shape[:2]
        pts = torch.einsum("mjk,mkd->mjd", coef.to(c.dtype), c.reshape(m, k, -1))
        out[name] = pts.reshape(m * coef.shape[1], *c.shape[2:])
    return out


def _has_batch_norm(spec: NetworkSpec) -> bool:
    return any(not p.trainable for p in spec.params)


def _evaluate(spec: NetworkSpec, controls: dict[str, Tensor], t: Tensor, x: Tensor, y: Tensor,
              batch_size: int, bends: dict[str, Tensor] | None, bn_x: Tensor | None) -> PathResult:
    m = next(iter(controls.values())).shape[0]
    coef = _bernstein(t, next(iter(controls.values())).shape[1]).expand(m, -1, -1)
    with torch.no_grad():
        pop = _curve(controls, coef)
    if _has_batch_norm(spec):
        pop.update(recompute_batch_norm(spec, pop, bn_x))
    loss, acc = population_loss_accuracy(spec, pop, x, y, batch_size)
    return PathResult(t, loss.view(m, -1), acc.view(m, -1), bends)


def linear_barrier(
    spec: NetworkSpec, params_a: Params, params_b: Params, x: Tensor | Sequence[Tensor],
    y: Tensor | Sequence[Tensor], points: int = 11, batch_size: int = EVAL_BATCH,
    bn_x: Tensor | Sequence[Tensor] | None = None,
) -> PathResult:
    """Loss and accuracy along the straight line ``(1 - t) a + t b`` between paired networks.

    Args:
        spec: the shared architecture (a classifier).
        params_a: ``{name: Tensor[M, *shape]}`` first network of each pair.
        params_b: ``{name: Tensor[M, *shape]}`` second network of each pair (aligned to the
            first or not: see :func:`~weightspace.analysis.alignment.align_to`).
        x: inputs ``[N, *input_shape]`` (or a sequence of batches).
        y: labels ``[N]`` (or a sequence of batches).
        points: evenly spaced ``t`` in ``[0, 1]``, endpoints included (default ``11``).
        batch_size: examples per forward pass (default :data:`EVAL_BATCH`).
        bn_x: for networks with batch norm (required there): inputs, e.g. the training data, to
            recompute every point's running statistics from.

    Shapes:
        returns a :class:`PathResult` with ``loss``/``accuracy`` ``[M, points]``; ``.mc`` is
        ``mc_linear``.
    """
    same_population(spec, params_a, params_b)
    x, y = data_batch(spec, x, y)
    t = _check_points(points)
    if _has_batch_norm(spec) and bn_x is None:
        raise WeightzooError(f"{spec.family} architecture {spec.arch_id} has batch norm: pass bn_x, inputs "
                             f"(e.g. the training data) to recompute each point's running statistics from")
    controls = {p.name: torch.stack([params_a[p.name], params_b[p.name]], 1) for p in spec.params}
    return _evaluate(spec, controls, t, x, y, batch_size, None, bn_x)


def bezier_barrier(
    spec: NetworkSpec, params_a: Params, params_b: Params,
    x_train: Tensor | Sequence[Tensor], y_train: Tensor | Sequence[Tensor],
    x_eval: Tensor | Sequence[Tensor], y_eval: Tensor | Sequence[Tensor],
    n_bends: int = 3, epochs: int = 10, batch_size: int = 64, lr: float = 1e-2,
    points: int = 5, seed: int | Sequence[int] = 0, eval_batch_size: int = EVAL_BATCH,
) -> PathResult:
    """Loss and accuracy along a Bezier curve between paired networks, its bends trained to
    minimize the expected training loss over the curve (Garipov et al. 2018).

    The curve ``gamma(t) = sum_k C(n-1, k) t^k (1-t)^(n-1-k) theta_k`` has ``n_bends`` control
    points counting the two fixed endpoints (Garipov's ``num_bends``; the issue's "3 bends" is a
    quadratic curve with one trained control point). The inner points start on the straight line
    (so an untrained curve *is* the line) and are trained with Adam for ``epochs`` passes over
    the training data in shuffled mini-batches, each step at one ``t ~ U(0, 1)`` per pair.

    Args:
        spec: the shared architecture (a classifier).
        params_a: ``{name: Tensor[M, *shape]}`` first network of each pair.
        params_b: ``{name: Tensor[M, *shape]}`` second network of each pair.
        x_train: training inputs ``[N, *input_shape]`` (or a sequence of batches).
        y_train: training labels ``[N]``.
        x_eval: evaluation inputs ``[N', *input_shape]`` (the reference evaluates on test data).
        y_eval: evaluation labels ``[N']``.
        n_bends: control points including the endpoints, ``>= 3`` (default ``3``).
        epochs: passes over the training data (default ``10``).
        batch_size: training mini-batch size (default ``64``).
        lr: Adam learning rate (default ``1e-2``).
        points: evenly spaced evaluation ``t`` in ``[0, 1]``, endpoints included (default ``5``).
        seed: pair ``i`` shuffles the data and draws its ``t`` from a generator seeded
            ``seed + i`` (default ``0``), or give one seed per pair.
        eval_batch_size: examples per evaluation forward pass (default :data:`EVAL_BATCH`).

    Shapes:
        returns a :class:`PathResult` with ``loss``/``accuracy`` ``[M, points]`` on the evaluation
        data and the trained ``bends``; ``.mc`` is ``mc_bezier``.
    """
    m = same_population(spec, params_a, params_b)
    x_train, y_train = data_batch(spec, x_train, y_train)
    x_eval, y_eval = data_batch(spec, x_eval, y_eval)
    t_eval = _check_points(points)
    if not isinstance(n_bends, int) or n_bends < 3:
        raise WeightzooError(f"n_bends counts the endpoints and must be >= 3, got {n_bends!r}")
    if not isinstance(epochs, int) or epochs < 0:
        raise WeightzooError(f"epochs must be an integer >= 0, got {epochs!r}")
    gens = [torch.Generator().manual_seed(s) for s in member_seeds(seed, m)]
    n = x_train.shape[0]
    a = {p.name: params_a[p.name].detach() for p in spec.params}
    b = {p.name: params_b[p.name].detach() for p in spec.params}
    frac = torch.arange(1, n_bends - 1, dtype=spec.torch_dtype) / (n_bends - 1)
    inner = {k: (a[k].unsqueeze(1) + (b[k] - a[k]).unsqueeze(1)
                 * frac.view(1, -1, *([1] * (a[k].dim() - 1))))
             for k in a}  # [M, n_bends - 2, *shape], on the line
    trained = [p.name for p in spec.params if p.trainable]  # batch-norm statistics are not trained
    for k in trained:
        inner[k].requires_grad_()
    opt = torch.optim.Adam([inner[k] for k in trained], lr=lr)
    batch_norm = _has_batch_norm(spec)
    for _ in range(epochs):
        # Each pair shuffles the data and draws its t from its own generator, so its curve
        # does not depend on which other pairs are trained alongside it.
        perms = torch.stack([torch.randperm(n, generator=g) for g in gens])  # [M, N]
        t_steps = torch.stack([torch.rand(math.ceil(n / batch_size), generator=g)
                               for g in gens], 1)  # [steps, M]
        for step, start in enumerate(range(0, n, batch_size)):
            idx = perms[:, start:start + batch_size]  # [M, B]
            coef = _bernstein(t_steps[step], n_bends).unsqueeze(1)  # [M, 1, n_bends]
            controls = {k: torch.cat([a[k].unsqueeze(1), inner[k], b[k].unsqueeze(1)], 1) for k in a}
            if batch_norm:  # training mode: batch statistics, as the reference trains its curves
                out = graph_population_forward(spec, _curve(controls, coef), x_train[idx], training=True)[0]
            else:
                out = population_forward(spec, _curve(controls, coef), x_train[idx])  # [M, B, C]
            # Sum over pairs of each pair's mean loss: every pair's bend gets its own gradient.
            loss = F.cross_entropy(out.flatten(0, 1), y_train[idx].flatten(), reduction="sum")
            opt.zero_grad()
            (loss / idx.shape[1]).backward()
            opt.step()
    bends = {k: v.detach() for k, v in inner.items()}
    controls = {k: torch.cat([a[k].unsqueeze(1), bends[k], b[k].unsqueeze(1)], 1) for k in a}
    return _evaluate(spec, controls, t_eval, x_eval, y_eval, eval_batch_size, bends, x_train)
