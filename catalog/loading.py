"""Reading rows of weight shards fast, and checking them against their checksums.

A shard stores each parameter as one tensor ``[rows_in_shard, *shape]``. Reading a set of rows
sorts them, reads the covering range (or each run of consecutive rows) as one slice of the
memory-mapped file, and then puts the rows in the order asked for. Checksums are computed per
row over the raw little-endian bytes of each parameter in NetworkSpec order, exactly as
:func:`catalog.format.weights_sha256` does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from catalog.errors import IntegrityError
from catalog.network import NetworkSpec

#: Read one slice covering ``[min_row, max_row]`` when at most this many times as many rows
#: as requested lie in that range; otherwise read each run of consecutive rows separately.
DENSE_READ_FACTOR = 4


def row_bytes(tensors: Sequence[Tensor]) -> list[np.ndarray]:
    """Views of stacked tensors as ``uint8`` matrices ``[N, numel * itemsize]``.

    Works for every dtype (bfloat16 included) because it reinterprets bytes rather than
    converting values.

    Shapes:
        each input ``[N, *shape]`` -> ``[N, prod(shape) * itemsize]`` (no copy when contiguous).
    """
    out = []
    for t in tensors:
        t = t.detach().cpu().contiguous()
        n = t.shape[0]
        out.append(t.reshape(n, -1).view(torch.uint8).numpy() if t.numel() else
                   np.zeros((n, 0), dtype=np.uint8))
    return out


def stacked_sha256(tensors: Sequence[Tensor]) -> list[str]:
    """Per-row sha256 of a stacked batch, parameters in the given order.

    Args:
        tensors: the parameters of one architecture, in NetworkSpec order, each ``[N, *shape]``.

    Returns:
        ``N`` hex digests, equal to :func:`catalog.format.weights_sha256` of each row.
    """
    arrays = row_bytes(tensors)
    n = arrays[0].shape[0] if arrays else 0
    out = []
    for i in range(n):
        h = hashlib.sha256()
        for a in arrays:
            h.update(a[i])
        out.append(h.hexdigest())
    return out


def check_rows(tensors: Sequence[Tensor], expected: Sequence[str], rows: Sequence[int],
               shard: str, root: str) -> None:
    """Raise :class:`IntegrityError` naming the first rows whose bytes do not match.

    Args:
        tensors: the read parameters, each ``[N, *shape]``, in NetworkSpec order.
        expected: ``N`` expected sha256 hex digests.
        rows: the ``N`` shard row indices (for the message).
        shard: the shard's path in the zoo (for the message).
        root: the zoo directory (for the message).
    """
    got = stacked_sha256(tensors)
    bad = [int(rows[i]) for i, (g, w) in enumerate(zip(got, expected)) if g != w]
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
        raise IntegrityError(
            f"weights of {len(bad)} row(s) of {shard} do not match their recorded sha256 "
            f"(rows {shown}); the shard is corrupt or was modified. Run `zoo verify {root}`, "
            f"then re-pull or rebuild the zoo (or pass verify=False to load anyway)")


def read_shard_rows(handle, spec: NetworkSpec, rows: np.ndarray, shard: str) -> dict[str, Tensor]:
    """Read ``rows`` of one open safetensors shard, in the order given.

    Args:
        handle: a ``safetensors.safe_open(..., framework="pt")`` handle on the shard.
        spec: the shard's architecture.
        rows: ``int64`` row indices; duplicates and any order are allowed.
        shard: the shard's path (for error messages).

    Shapes:
        returns ``{name: Tensor[len(rows), *shape]}`` for every parameter of ``spec``.
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    out: dict[str, Tensor] = {}
    if len(rows) == 0:
        return {p.name: torch.empty((0, *p.shape), dtype=spec.torch_dtype) for p in spec.params}
    uniq, inverse = np.unique(rows, return_inverse=True)
    lo, hi = int(uniq[0]), int(uniq[-1])
    in_order = len(uniq) == len(rows) and bool(np.all(np.diff(rows) > 0))
    dense = (hi - lo + 1) <= DENSE_READ_FACTOR * len(uniq)
    if not dense:
        breaks = np.flatnonzero(np.diff(uniq) != 1) + 1
        starts = np.concatenate([[0], breaks])
        ends = np.concatenate([breaks, [len(uniq)]])
    for p in spec.params:
        try:
            sl = handle.get_slice(p.name)
        except Exception as e:  # safetensors raises its own error type for a missing key
            raise IntegrityError(
                f"{shard} has no tensor {p.name!r} although its architecture needs it; the shard "
                f"is corrupt: run `zoo verify`") from e
        stored = tuple(sl.get_shape())
        if stored[1:] != tuple(p.shape):
            raise IntegrityError(
                f"{shard}: tensor {p.name!r} has per-model shape {stored[1:]}, but the "
                f"architecture says {tuple(p.shape)}; the shard is corrupt: run `zoo verify`")
        if lo < 0 or hi >= stored[0]:
            raise IntegrityError(
                f"{shard} holds {stored[0]} rows but row {hi if hi >= stored[0] else lo} was "
                f"asked for; the metadata and the shard disagree: run `zoo verify`")
        if dense:
            block = sl[lo:hi + 1]
            if len(uniq) != hi - lo + 1:
                block = block[torch.from_numpy(uniq - lo)]
        else:
            block = torch.cat([sl[int(uniq[s]):int(uniq[e - 1]) + 1] for s, e in zip(starts, ends)])
        out[p.name] = block if in_order else block[torch.from_numpy(inverse)]
    return out
