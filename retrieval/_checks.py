"""Input checks shared by the estimators, embeddings and ranking (private).

Every check raises :class:`~catalog.errors.WeightzooError` with a message that names the
argument and says what was expected: estimators are called on user data, so nothing here
``assert``-s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec

ArrayLike = Tensor | np.ndarray


def ndim(x: ArrayLike) -> int:
    """The number of dimensions of an array, tensor or nested list."""
    return x.dim() if isinstance(x, Tensor) else np.ndim(x)


def as_float(x: ArrayLike, name: str, dims: int) -> Tensor:
    """``x`` as a float64 tensor with ``dims`` dimensions and only finite values."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
    if t.dim() != dims:
        raise WeightzooError(f"{name} must have {dims} dimensions, got shape {list(t.shape)}")
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64, torch.int16, torch.uint8)):
        raise WeightzooError(f"{name} must be numeric, got dtype {t.dtype}")
    t = t.detach().to(torch.float64)
    if t.numel() == 0:
        raise WeightzooError(f"{name} is empty (shape {list(t.shape)})")
    bad = ~torch.isfinite(t)
    if bad.any():
        kind = "NaN" if torch.isnan(t).any() else "infinite"
        raise WeightzooError(f"{name} contains {int(bad.sum())} {kind} value(s); drop those "
                             f"examples or models (diverged networks give NaN outputs)")
    return t


def as_labels(y: ArrayLike, name: str, n: int | None = None, dims: int = 1,
              min_classes: int = 2) -> Tensor:
    """``y`` as an int64 tensor of class indices (non-negative integers).

    Args:
        n: the number of examples the labels must match (last dimension), if known.
        dims: 1 for ``[N]``, 2 for ``[P, N]``.
        min_classes: the fewest distinct classes allowed (in each row for ``dims == 2``).
    """
    t = torch.as_tensor(np.asarray(y) if not isinstance(y, Tensor) else y).detach()
    if t.dim() != dims:
        want = "[N]" if dims == 1 else "[P, N]"
        raise WeightzooError(f"{name} must be class indices of shape {want}, got shape {list(t.shape)}")
    if t.numel() == 0:
        raise WeightzooError(f"{name} is empty")
    if t.is_floating_point():
        if not torch.isfinite(t).all():
            raise WeightzooError(f"{name} contains NaN or infinite values; labels must be class indices")
        if not (t == t.round()).all():
            raise WeightzooError(f"{name} must be integer class indices, got non-integer values "
                                 f"(did you pass probabilities or features as labels?)")
    elif t.dtype == torch.bool:
        t = t.to(torch.int64)
    t = t.to(torch.int64)
    if (t < 0).any():
        raise WeightzooError(f"{name} must be non-negative class indices, got min {int(t.min())}")
    if n is not None and t.shape[-1] != n:
        raise WeightzooError(f"{name} has {t.shape[-1]} examples but the features/outputs have {n}; "
                             f"they must describe the same examples, in the same order")
    if min_classes > 1:
        rows = t.reshape(-1, t.shape[-1])
        counts = [int(torch.unique(r).numel()) for r in rows]
        if min(counts) < min_classes:
            raise WeightzooError(f"{name} has {min(counts)} distinct class(es); a task needs at least "
                                 f"{min_classes} classes to score transfer")
    return t


def check_params(spec: NetworkSpec, params: Mapping[str, Tensor]) -> int:
    """Check that ``params`` is a stacked batch ``{name: Tensor[P, *shape]}`` of ``spec``;
    return ``P``."""
    missing = [p.name for p in spec.params if p.name not in params]
    if missing:
        raise WeightzooError(f"parameter batch lacks {missing} required by the NetworkSpec "
                             f"({spec.summary()}); pass Selection.stacked() of one architecture")
    n_pop: int | None = None
    for p in spec.params:
        t = params[p.name]
        if tuple(t.shape[1:]) != p.shape:
            raise WeightzooError(f"parameter {p.name!r} has shape {list(t.shape)}; the NetworkSpec "
                                 f"expects [P, {', '.join(map(str, p.shape))}] (a stack of networks)")
        if n_pop is None:
            n_pop = int(t.shape[0])
        elif t.shape[0] != n_pop:
            raise WeightzooError(f"parameter {p.name!r} holds {t.shape[0]} networks but others hold {n_pop}")
    if not n_pop:
        raise WeightzooError("the parameter batch holds no networks")
    return n_pop


def as_inputs(spec: NetworkSpec, x: ArrayLike, name: str = "x") -> Tensor:
    """Inputs ``[N, ...]`` reshaped to ``[N, *spec.input_shape]`` in the spec's dtype.

    Inputs whose examples have the right number of values but another layout (e.g. flat
    ``[N, 64]`` for an MLP built on ``(1, 8, 8)`` digits) are reshaped, as the trainer does;
    any other shape is refused, since a model only means something on the inputs it was
    trained on.
    """
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).detach()
    if t.dim() < 2 or t.shape[0] == 0:
        raise WeightzooError(f"{name} must be a batch of examples [N, *input_shape], got shape {list(t.shape)}")
    want = spec.input_shape
    if tuple(t.shape[1:]) != want:
        if int(np.prod(t.shape[1:])) != int(np.prod(want)):
            raise WeightzooError(
                f"{name} examples have shape {list(t.shape[1:])} but the models take "
                f"{list(want)}: the task's inputs must match the models' input (same dataset "
                f"family, or an input adapter)")
        t = t.reshape(t.shape[0], *want)
    t = t.to(spec.torch_dtype)
    if not torch.isfinite(t).all():
        raise WeightzooError(f"{name} contains NaN or infinite values")
    return t


def check_not_inr(zoo: Any, what: str) -> None:
    """A user error if ``zoo`` (an opened :class:`~catalog.Zoo`) holds implicit neural representations:
    ``what`` (e.g. ``zoo search``) reads classifiers' outputs on a labelled task."""
    spec = zoo.manifest.spec or {}
    task = spec.get("task")
    name = task.get("name") if isinstance(task, dict) else task
    if name == "inr" or any(s.family == "siren" for s in zoo.architectures.values()):
        raise WeightzooError(
            f"zoo {zoo.name!r} holds implicit neural representations (SIRENs fitting images), not classifiers; "
            f"{what} reads classifiers' outputs on a labelled task. For INRs, embed their weights instead "
            f"(zoo embed ZOO --method statnn) or train a metanetwork on them (zoo train)")
