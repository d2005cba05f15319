"""Shared checks for the analysis functions: stacked populations, data batches, member seeds.

Private to :mod:`weightspace.analysis`; every public function validates its input through here,
so a wrong shape is reported the same way everywhere (as a :class:`WeightzooError`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec

Params = Mapping[str, Tensor]


def population_size(spec: NetworkSpec, params: Params, what: str = "params") -> int:
    """Check that ``params`` is a stacked ``{name: Tensor[P, *shape]}`` population of ``spec``
    and return ``P``."""
    missing = [p.name for p in spec.params if p.name not in params]
    if missing:
        raise WeightzooError(
            f"{what} lacks {missing} required by the {spec.family!r} NetworkSpec; pass the full "
            f"stacked parameter dict (Selection.stacked())")
    n = None
    for p in spec.params:
        t = params[p.name]
        if not isinstance(t, Tensor) or tuple(t.shape[1:]) != p.shape:
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise WeightzooError(
                f"{what}[{p.name!r}] has shape {shape}; the NetworkSpec expects "
                f"[P, {', '.join(map(str, p.shape))}] (a stack of P networks)")
        if n is None:
            n = t.shape[0]
        elif t.shape[0] != n:
            raise WeightzooError(f"{what}[{p.name!r}] holds {t.shape[0]} networks but others hold {n}")
    if not n:
        raise WeightzooError(f"{what} holds no networks (P = 0)")
    return int(n)


def same_population(spec: NetworkSpec, params_a: Params, params_b: Params) -> int:
    """Check two populations of ``spec`` with the same number of members; return it."""
    m = population_size(spec, params_a, "params_a")
    n = population_size(spec, params_b, "params_b")
    if m != n:
        raise WeightzooError(f"params_a holds {m} networks but params_b holds {n}; pass one pair "
                             f"per row (the same number of networks in both)")
    return m


def data_batch(spec: NetworkSpec, x: Tensor | Sequence[Tensor],
               y: Tensor | Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """One ``(x [N, *input_shape], y [N])`` from a tensor or a sequence of batches."""
    if not isinstance(x, Tensor):
        x = torch.cat(list(x)) if len(x) else torch.empty(0)
    if not isinstance(y, Tensor):
        y = torch.cat(list(y)) if len(y) else torch.empty(0, dtype=torch.long)
    if tuple(x.shape[1:]) != spec.input_shape or x.shape[0] == 0:
        raise WeightzooError(
            f"x has shape {tuple(x.shape)}; expected [N, {', '.join(map(str, spec.input_shape))}] "
            f"with N > 0 (inputs shared by every network)")
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise WeightzooError(f"y has shape {tuple(y.shape)}; expected [{x.shape[0]}] (one class "
                             f"index per example of x)")
    if y.dtype.is_floating_point:
        raise WeightzooError("y holds floats; the analysis metrics need integer class labels")
    y = y.long()
    if int(y.min()) < 0 or int(y.max()) >= spec.n_outputs:
        raise WeightzooError(f"y holds labels in [{int(y.min())}, {int(y.max())}] but the networks "
                             f"have {spec.n_outputs} outputs")
    return x.to(spec.torch_dtype), y


def population_data(spec: NetworkSpec, x: Tensor | Sequence[Tensor], y: Tensor | Sequence[Tensor],
                    n_pop: int) -> tuple[Tensor, Tensor]:
    """Data shared by every member, ``(x [N, *input_shape], y [N])`` (see :func:`data_batch`), or
    one batch per member, ``(x [P, N, *input_shape], y [P, N])`` (e.g. each run's own training
    subsample)."""
    if not (isinstance(x, Tensor) and x.dim() == len(spec.input_shape) + 2):
        return data_batch(spec, x, y)
    if x.shape[0] != n_pop or tuple(x.shape[2:]) != spec.input_shape or x.shape[1] == 0:
        raise WeightzooError(
            f"x has shape {tuple(x.shape)}; per-member data must be [{n_pop}, N, "
            f"{', '.join(map(str, spec.input_shape))}] with N > 0 (one batch per network)")
    if not isinstance(y, Tensor) or tuple(y.shape) != tuple(x.shape[:2]):
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise WeightzooError(f"y has shape {shape}; expected [{n_pop}, {x.shape[1]}] (one class index "
                             f"per example of each network's batch)")
    flat_x, flat_y = data_batch(spec, x.flatten(0, 1), y.flatten())  # checks the labels
    return flat_x.view_as(x), flat_y.view(y.shape)


def member_seeds(seed: int | Sequence[int], n: int) -> list[int]:
    """Per-member seeds: ``seed + i`` for member ``i``, or one given seed per member."""
    if isinstance(seed, int):
        return [seed + i for i in range(n)]
    seeds = [int(s) for s in seed]
    if len(seeds) != n:
        raise WeightzooError(f"got {len(seeds)} seeds for {n} networks; pass one int or one seed "
                             f"per network")
    return seeds


def take(params: Params, index: Tensor | slice) -> dict[str, Tensor]:
    """The members at ``index`` of a stacked population."""
    return {k: v[index] for k, v in params.items()}
