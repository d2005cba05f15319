"""The flat-vector representation: every parameter of a network concatenated in spec order."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec


def _check_params(spec: NetworkSpec, params: Mapping[str, Tensor]) -> int:
    """Check that ``params`` is a ``{name: Tensor[B, *shape]}`` batch of ``spec``; return ``B``."""
    missing = [p.name for p in spec.params if p.name not in params]
    if missing:
        raise WeightzooError(
            f"parameter batch lacks {missing} required by the {spec.family!r} NetworkSpec; "
            f"pass the full stacked parameter dict (Selection.stacked())")
    batch = None
    for p in spec.params:
        t = params[p.name]
        if tuple(t.shape[1:]) != p.shape:
            raise WeightzooError(
                f"parameter {p.name!r} has shape {tuple(t.shape)}; the NetworkSpec expects "
                f"[B, {', '.join(map(str, p.shape))}] (a batch of networks)")
        if batch is None:
            batch = t.shape[0]
        elif t.shape[0] != batch:
            raise WeightzooError(
                f"parameter {p.name!r} holds {t.shape[0]} networks but others hold {batch}")
    return int(batch or 0)


def params_to_flat(spec: NetworkSpec, params: Mapping[str, Tensor]) -> Tensor:
    """Concatenate a batch of networks' parameters into flat vectors, in ``spec.params`` order.

    Args:
        spec: the networks' architecture.
        params: ``{name: Tensor[B, *shape]}``.

    Shapes:
        returns ``[B, spec.n_params]``.
    """
    batch = _check_params(spec, params)
    return torch.cat([params[p.name].reshape(batch, -1) for p in spec.params], dim=1)


def flat_to_params(spec: NetworkSpec, flat: Tensor) -> dict[str, Tensor]:
    """Split flat vectors back into a parameter dict (the inverse of :func:`params_to_flat`).

    Args:
        spec: the networks' architecture.
        flat: ``[B, spec.n_params]``.

    Shapes:
        returns ``{name: Tensor[B, *shape]}``.
    """
    if flat.dim() != 2 or flat.shape[1] != spec.n_params:
        raise WeightzooError(
            f"flat weights of shape {tuple(flat.shape)} do not match the NetworkSpec's "
            f"{spec.n_params} parameters; expected [B, {spec.n_params}]")
    out: dict[str, Tensor] = {}
    offset = 0
    for p in spec.params:
        out[p.name] = flat[:, offset:offset + p.numel].reshape(flat.shape[0], *p.shape)
        offset += p.numel
    return out
