"""Sizes read from files, checked against memory before torch allocates them.

A zoo's ``zoo.json`` and a run directory's ``config.json`` come from anywhere, and some of their
numbers size tensors: an architecture's ``input_shape`` sizes probe inputs, a saved
metanetwork's ``hidden`` sizes every layer it rebuilds. A crafted number (``hidden:
2000000000``) made ``zoo predict`` ask torch for terabytes and die with a traceback, or, worse,
succeed on a large machine and swap. As ``zoo analyze --metrics hessian`` does
(:func:`weightspace.analysis.run.hessian_chunk`), the memory a step needs is compared with half
the memory available (:data:`MEMORY_SHARE`) first, and a step that cannot fit is refused with a
message that names the number to change:

- :func:`check_bytes` when the bytes can be estimated up front (probe inputs);
- :func:`allocation_limit` around code that builds modules from a config, whose sizes only the
  code knows: every tensor it creates is counted as it is requested, and the one that would pass
  the limit is refused before it is allocated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch.overrides import TorchFunctionMode

from catalog.errors import WeightzooError, format_bytes

#: Share of the available memory one step may plan for (as the Hessian metrics' share).
MEMORY_SHARE = 0.5


def memory_budget() -> tuple[int, int]:
    """``(budget, available)``: :data:`MEMORY_SHARE` of the bytes available now, and those bytes."""
    from zoo_builders.build import available_memory  # local: weightspace imports the builders lazily

    available = available_memory()
    return int(available * MEMORY_SHARE), available


def check_bytes(need: int, what: str, fix: str) -> None:
    """Refuse a step that needs ``need`` bytes, more than :func:`memory_budget` allows.

    Args:
        need: the bytes the step would allocate.
        what: what needs them, naming the numbers they come from (e.g. ``"probes=4: 4 probe inputs
            of shape [1, 8, 8]"``).
        fix: what to do instead.

    Raises:
        WeightzooError: ``"<what> need(s) about <bytes>, more than half the <bytes> available; <fix>"``.
    """
    budget, available = memory_budget()
    if need > budget:
        raise WeightzooError(f"{what} need about {format_bytes(need)}, more than half the {format_bytes(available)} "
                             f"of memory available; {fix}")


class AllocationLimitError(WeightzooError):
    """A block under :func:`allocation_limit` asked for more memory than it may use."""


@contextmanager
def allocation_limit(what: str, fix: str) -> Iterator[None]:
    """Refuse, before torch allocates it, the tensor that would take the block's tensors past
    :func:`memory_budget`.

    Counts what torch's size-taking factories (``torch.empty``, ``zeros``, ``randn``, ...,
    ``Tensor.new_empty``, ...) are asked for: how modules create their parameters and buffers.
    Memory freed inside the block is not subtracted (an over-estimate, for building a model).

    Args:
        what: what the block builds, naming the numbers that size it (e.g. ``"the mlp metanetwork
            of run/config.json (hidden=2000000000, depth=2)"``).
        fix: what to do instead.

    Raises:
        AllocationLimitError: ``"<what> needs more than <budget>, half the <available> of memory
            available (it asked for a tensor of <shape>, ...); <fix>"``.
    """
    budget, available = memory_budget()
    with _Counter(budget) as counter:
        try:
            yield
        except _OverLimit as e:
            raise AllocationLimitError(
                f"{what} needs more than {format_bytes(budget)}, half the {format_bytes(available)} of memory "
                f"available (it asked for a tensor of {_shape_text(e.shape)}, {format_bytes(e.nbytes)}, with "
                f"{format_bytes(counter.total)} allocated before); {fix}") from None


class _OverLimit(Exception):
    def __init__(self, shape: Sequence[int], nbytes: int) -> None:
        super().__init__()
        self.shape, self.nbytes = tuple(shape), nbytes


def _sizes(args: tuple, kwargs: dict, first: int = 0) -> Sequence[int] | None:
    """The size a factory is asked for: ``f(2, 3)``, ``f((2, 3))``, ``f([2, 3])`` or
    ``f(size=(2, 3))``, its size starting at positional ``first``; ``None`` if it is not one."""
    if "size" in kwargs:
        size = kwargs["size"]
    elif len(args) == first + 1 and isinstance(args[first], Sequence):
        size = args[first]
    else:
        size = args[first:]
    if isinstance(size, int):
        size = (size,)
    if not isinstance(size, Sequence) or not all(isinstance(n, int) for n in size):
        return None
    return size


def _randint_size(args: tuple, kwargs: dict) -> Sequence[int] | None:
    if "size" in kwargs:
        return _sizes((), kwargs)
    return _sizes(args[-1:], {}) if args else None  # randint(high, size) / randint(low, high, size)


def _eye_size(args: tuple, kwargs: dict) -> Sequence[int] | None:
    n = args[0] if args else kwargs.get("n")
    m = args[1] if len(args) > 1 and isinstance(args[1], int) else kwargs.get("m", n)
    return (n, m) if isinstance(n, int) and isinstance(m, int) else None


#: Factories by what their size is: ``(args, kwargs) -> shape`` (``None``: not understood, let through).
_SIZED: dict[Callable, Callable[[tuple, dict], Sequence[int] | None]] = {
    **{f: _sizes for f in (torch.empty, torch.zeros, torch.ones, torch.rand, torch.randn)},
    torch.full: lambda a, k: _sizes(a[:1], k),
    torch.empty_strided: lambda a, k: _sizes(a[:1], k),
    torch.randint: _randint_size,
    torch.eye: _eye_size,
    torch.randperm: lambda a, k: _sizes(a[:1], {}),
}
#: Factories whose values are integers (``int64`` unless a dtype is given).
_INTEGER = frozenset({torch.randint, torch.randperm})
#: ``tensor.new_*(size)``: the dtype is the tensor's, unless given.
_NEW: dict[Callable, Callable[[tuple, dict], Sequence[int] | None]] = {
    **{f: (lambda a, k: _sizes(a, k, first=1))
       for f in (torch.Tensor.new_empty, torch.Tensor.new_zeros, torch.Tensor.new_ones)},
    torch.Tensor.new_full: lambda a, k: _sizes(a[1:2], k),
}


class _Counter(TorchFunctionMode):
    """Counts the bytes torch's factories are asked for; raises :class:`_OverLimit` before the
    one that would pass ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit, self.total = limit, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        sized = _SIZED.get(func) or _NEW.get(func)
        shape = sized(args, kwargs) if sized is not None else None
        if shape is not None and all(n >= 0 for n in shape):
            dtype = kwargs.get("dtype")
            if not isinstance(dtype, torch.dtype):
                own = func in _NEW and args and isinstance(args[0], torch.Tensor)
                dtype = (args[0].dtype if own else torch.int64 if func in _INTEGER
                         else torch.get_default_dtype())
            nbytes = math.prod(shape) * dtype.itemsize
            if self.total + nbytes > self.limit:
                raise _OverLimit(shape, nbytes)
            self.total += nbytes
        return func(*args, **kwargs)


def _shape_text(shape: Sequence[int]) -> str:
    return "shape [" + ", ".join(f"{n:,}" for n in shape) + "]"
