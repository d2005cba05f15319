"""Model averaging: how the weight average of two networks performs against the networks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec
from weightspace.analysis._population import Params, data_batch, same_population
from weightspace.analysis.alignment import align_to
from weightspace.analysis.evaluation import EVAL_BATCH, population_loss_accuracy, recompute_batch_norm


def avg_acc_delta(
    spec: NetworkSpec, params_a: Params, params_b: Params, x: Tensor | Sequence[Tensor],
    y: Tensor | Sequence[Tensor], align: bool = True, max_iter: int = 100,
    seed: int | Sequence[int] = 0, batch_size: int = EVAL_BATCH,
    bn_x: Tensor | Sequence[Tensor] | None = None,
) -> Tensor:
    """Accuracy of the weight average ``(a + b') / 2`` minus the mean accuracy of ``a`` and
    ``b`` for each pair, ``b'`` being ``b`` aligned to ``a`` by weight matching (or ``b`` itself).

    Negative: averaging loses accuracy (the networks sit in different basins); near 0: they
    are linearly connected. All ``3M`` networks (``a``, ``b'``, the averages) run as one
    population.

    Args:
        spec: the shared architecture (a classifier).
        params_a: ``{name: Tensor[M, *shape]}`` first network of each pair.
        params_b: ``{name: Tensor[M, *shape]}`` second network of each pair.
        x: inputs ``[N, *input_shape]`` (or a sequence of batches).
        y: labels ``[N]`` (or a sequence of batches).
        align: align ``b`` to ``a`` first (git re-basin weight matching; default ``True``).
        max_iter: weight-matching sweeps (default ``100``).
        seed: weight-matching seed (see :func:`~weightspace.analysis.alignment.weight_matching`).
        batch_size: examples per forward pass (default :data:`EVAL_BATCH`).
        bn_x: for networks with batch norm (required there): inputs, e.g. the training data,
            to recompute the three networks' running statistics from (an average's
            interpolated statistics are not its own).

    Shapes:
        returns ``[M]``.
    """
    m = same_population(spec, params_a, params_b)
    x, y = data_batch(spec, x, y)
    batch_norm = any(not p.trainable for p in spec.params)
    if batch_norm and bn_x is None:
        raise WeightzooError(f"{spec.family} architecture {spec.arch_id} has batch norm: pass bn_x, inputs "
                             f"(e.g. the training data) to recompute the averaged network's statistics from")
    b = align_to(spec, params_a, params_b, max_iter, seed) if align else params_b
    pop = {p.name: torch.cat([params_a[p.name], b[p.name], (params_a[p.name] + b[p.name]) / 2])
           for p in spec.params}
    if batch_norm:
        pop.update(recompute_batch_norm(spec, pop, bn_x))
    _, acc = population_loss_accuracy(spec, pop, x, y, batch_size)
    acc_a, acc_b, acc_avg = acc.view(3, m)
    return acc_avg - (acc_a + acc_b) / 2
