"""Reading rows of weight shards fast, and checking them against their checksums.

A shard is a safetensors file that stores each parameter as one tensor
``[rows_in_shard, *shape]``, so the rows ``a..b`` of a parameter are one contiguous byte range
of the file. :class:`ShardFile` parses the shard's header once and reads each run of
consecutive rows with one positioned read (``preadv``) straight into its place in the output
batch: no per-model file, no intermediate copy, no page-fault storm from faulting in a
memory map. Scattered rows are read as the range (or runs) covering them and then gathered.

Checksums are per row, over the raw little-endian bytes of each parameter in NetworkSpec
order, exactly as :func:`catalog.format.weights_sha256` computes them.
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from catalog.errors import IntegrityError, ZooFormatError
from catalog.format import Manifest, parse_json
from catalog.network import NetworkSpec
from catalog.paths import safe_join

#: safetensors dtype names of the dtypes a NetworkSpec may use, and their sizes in bytes.
SAFETENSORS_DTYPES = {"float32": ("F32", 4), "float64": ("F64", 8), "float16": ("F16", 2),
                      "bfloat16": ("BF16", 2)}
#: Read runs of rows straight into place when they average at least this many rows;
#: otherwise read the rows' covering range once and gather.
MIN_DIRECT_RUN = 8
#: For scattered rows, read one block covering ``[min_row, max_row]`` when it holds at most
#: this many times as many rows as requested; otherwise read each run of requested rows.
DENSE_READ_FACTOR = 4
#: Most threads that hash rows in parallel, and the batch size (bytes) from which they do.
HASH_THREADS = 4
PARALLEL_HASH_BYTES = 16 << 20
#: Largest safetensors header accepted (a corrupt length field must not allocate gigabytes).
MAX_HEADER_BYTES = 100 << 20


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lies in a safetensors file."""

    dtype: str
    shape: tuple[int, ...]
    offset: int  # absolute byte offset of the data in the file
    nbytes: int


#: Batches at least this large are allocated on transparent huge pages where the OS allows.
HUGEPAGE_MIN_BYTES = 8 << 20
_HUGEPAGE = 2 << 20


def _libc_madvise():
    """``madvise`` from the C library, or ``None`` where it (or MADV_HUGEPAGE) is missing."""
    import ctypes
    import mmap

    if not hasattr(mmap, "MADV_HUGEPAGE"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return lambda addr, length: fn(addr, length, mmap.MADV_HUGEPAGE)


_MADVISE = _libc_madvise() if os.name == "posix" else None


def empty_batch(shape: Sequence[int], dtype: torch.dtype) -> Tensor:
    """``torch.empty(shape)``, backed by transparent huge pages when large.

    Filling fresh memory costs one page fault per 4 KiB page, and on virtual machines those
    faults dominate: writing 200 MB into a new tensor took 0.45-0.55 s here, against about
    0.2 s once the range is advised for 2 MiB pages. Only the advice is given (the memory is
    an ordinary tensor); where the OS refuses it, nothing changes.
    """
    t = torch.empty(tuple(shape), dtype=dtype)
    nbytes = t.numel() * t.element_size()
    if _MADVISE is not None and nbytes >= HUGEPAGE_MIN_BYTES:
        start = -(-t.data_ptr() // _HUGEPAGE) * _HUGEPAGE
        end = (t.data_ptr() + nbytes) // _HUGEPAGE * _HUGEPAGE
        if end > start:
            _MADVISE(start, end - start)  # advice only: a failure leaves ordinary pages
    return t


class ShardFile:
    """The parsed header of one weight shard, and positioned reads of its rows.

    Args:
        path: the shard file.
        name: its path inside the zoo (for messages).
        spec: the architecture the manifest lists the shard under (default ``None``: not
            known); :meth:`check` then refuses reading it as any other architecture.
        arch_id: that architecture's id, for messages (default ``None``).

    Raises:
        IntegrityError: the file is not a well-formed safetensors file.
    """

    def __init__(self, path: str | os.PathLike, name: str, spec: NetworkSpec | None = None,
                 arch_id: str | None = None) -> None:
        self.path = Path(path)
        self.name = name
        self.spec = spec
        self.arch_id = arch_id
        size = self.path.stat().st_size
        try:
            with open(self.path, "rb") as f:
                head = f.read(8)
                (n,) = struct.unpack("<Q", head) if len(head) == 8 else (None,)
                if n is None or n > min(size - 8, MAX_HEADER_BYTES):
                    raise ValueError("bad header length")
                header = parse_json(f.read(n), f"weight shard {name} is not a readable safetensors file: its header",
                                    IntegrityError, "run `zoo verify`, then re-pull or rebuild the zoo")
            if not isinstance(header, dict):
                raise ValueError("the header is not a JSON object")
            tensors = {}
            for key, info in header.items():
                if key == "__metadata__":
                    continue
                start, end = (int(x) for x in info["data_offsets"])
                tensors[key] = TensorEntry(str(info["dtype"]), tuple(int(s) for s in info["shape"]),
                                           8 + n + start, end - start)
                if end < start or 8 + n + end > size:
                    raise ValueError(f"tensor {key} lies outside the file")
        except (ValueError, KeyError, TypeError, OSError) as e:
            raise IntegrityError(
                f"weight shard {name} is not a readable safetensors file ({e}); run `zoo verify`, "
                f"then re-pull or rebuild the zoo") from e
        self.tensors: dict[str, TensorEntry] = tensors
        self._checked: dict[str, int] = {}

    def check(self, spec: NetworkSpec) -> int:
        """Check the shard holds ``spec``'s parameters (dtype, shapes); returns its row count.

        Raises:
            ZooFormatError: the shard belongs to another architecture than ``spec`` (rows whose
                ``weights_shard`` points into a shard of another ``arch_id``).
            IntegrityError: its tensors do not match ``spec``.
        """
        arch = spec.arch_id
        if arch in self._checked:
            return self._checked[arch]
        if self.spec is not None and spec != self.spec:
            raise ZooFormatError(
                f"rows of architecture {arch} point into {self.name}, a weight shard of "
                f"architecture {self.arch_id or self.spec.arch_id}: a row's weights_shard must be "
                f"a shard of its own arch_id; the metadata is corrupt or was edited: run "
                f"`zoo verify`, then rebuild or re-pull the zoo")
        want_dtype, itemsize = SAFETENSORS_DTYPES[spec.dtype]
        rows = None
        for p in spec.params:
            t = self.tensors.get(p.name)
            if t is None:
                raise IntegrityError(
                    f"{self.name} has no tensor {p.name!r} although its architecture needs it; "
                    f"the shard is corrupt: run `zoo verify`")
            if t.dtype != want_dtype or tuple(t.shape[1:]) != tuple(p.shape) or not t.shape:
                raise IntegrityError(
                    f"{self.name}: tensor {p.name!r} is {t.dtype} {list(t.shape)}, but the "
                    f"architecture says {want_dtype} [rows, {', '.join(map(str, p.shape))}]; the "
                    f"shard is corrupt: run `zoo verify`")
            if t.nbytes != math.prod(t.shape) * itemsize:
                raise IntegrityError(f"{self.name}: tensor {p.name!r} has a wrong byte size; run `zoo verify`")
            if rows is not None and t.shape[0] != rows:
                raise IntegrityError(f"{self.name}: its tensors disagree on the row count; run `zoo verify`")
            rows = t.shape[0]
        self._checked[arch] = int(rows or 0)
        return self._checked[arch]

    def read_runs(self, name: str, runs: Sequence[tuple[int, int, int]], dst: np.ndarray) -> None:
        """Copy ``length`` rows from shard row ``src`` to ``dst[dst_row:]`` for each run.

        Args:
            name: the tensor.
            runs: ``(src_row, dst_row, length)`` triples.
            dst: ``uint8`` rows ``[N, row_bytes]`` (see :func:`row_bytes`), written in place.
        """
        t = self.tensors[name]
        per_row = t.nbytes // t.shape[0] if t.shape[0] else 0
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for src, at, length in runs:
                view = memoryview(dst[at:at + length].reshape(-1))
                offset = t.offset + src * per_row
                while len(view):
                    got = os.preadv(fd, [view], offset)
                    if got <= 0:
                        raise IntegrityError(f"{self.name} ended early; the file is truncated: run `zoo verify`")
                    view, offset = view[got:], offset + got
        finally:
            os.close(fd)


def open_shard(root: str | os.PathLike, manifest: Manifest, rel: object) -> ShardFile:
    """The weight shard a row's ``weights_shard`` names, in the zoo at ``root``.

    ``weights_shard`` comes from the zoo's Parquet metadata, so it is trusted only as far as
    the manifest agrees: it must be a path the manifest lists as a weight shard (a value such
    as ``../x`` never is), the path is joined with :func:`catalog.paths.safe_join`, and the
    shard is tied to the architecture the manifest lists it under (see :meth:`ShardFile.check`).

    Args:
        root: the zoo directory.
        manifest: its manifest.
        rel: the row's ``weights_shard``.

    Raises:
        ZooFormatError: ``rel`` is not a listed weight shard, or the file is missing.
        IntegrityError: the file is not a readable safetensors file.
    """
    entry = manifest.shard_entry(rel) if isinstance(rel, str) else None
    if entry is None:
        raise ZooFormatError(
            f"a row's weights_shard {rel!r} is not a weight shard listed in the manifest of "
            f"{root}; loading reads only the zoo's own shards. The metadata is corrupt or was "
            f"crafted to read outside the zoo: run `zoo verify {root}`, then rebuild or re-pull "
            f"the zoo")
    path = safe_join(root, entry.path, "weight shard")
    if not path.is_file():
        raise ZooFormatError(f"weight shard {entry.path} is missing from {root}; re-pull or rebuild the zoo")
    return ShardFile(path, entry.path, manifest.network_spec(entry.arch_id), entry.arch_id)


def row_bytes(tensors: Sequence[Tensor]) -> list[np.ndarray]:
    """Views of stacked tensors as ``uint8`` matrices ``[N, numel * itemsize]``.

    Works for every dtype (bfloat16 included) because it reinterprets bytes rather than
    converting values. A contiguous CPU tensor is viewed, not copied (writes go through).

    Shapes:
        each input ``[N, *shape]`` -> ``[N, prod(shape) * itemsize]``.
    """
    out = []
    for t in tensors:
        t = t.detach().cpu().contiguous()
        n = t.shape[0]
        out.append(t.reshape(n, -1).view(torch.uint8).numpy() if t.numel() else
                   np.zeros((n, 0), dtype=np.uint8))
    return out


def _runs(src: np.ndarray, dst: np.ndarray) -> list[tuple[int, int, int]]:
    """Maximal runs where both ``src`` and ``dst`` step by one: ``(src, dst, length)``."""
    if len(src) == 0:
        return []
    brk = np.flatnonzero((np.diff(src) != 1) | (np.diff(dst) != 1)) + 1
    starts = np.concatenate([[0], brk])
    ends = np.concatenate([brk, [len(src)]])
    return [(int(src[s]), int(dst[s]), int(e - s)) for s, e in zip(starts, ends)]


def read_rows_into(shard: ShardFile, spec: NetworkSpec, rows: np.ndarray,
                   out: dict[str, Tensor], positions: np.ndarray) -> None:
    """``out[name][positions[i]] = shard[name][rows[i]]`` for every parameter of ``spec``.

    Args:
        shard: the open shard.
        spec: its architecture.
        rows: ``int64`` shard rows; any order, duplicates allowed.
        out: contiguous ``{name: Tensor[N, *shape]}`` batches, written in place.
        positions: ``int64`` positions in ``out``, one per row.
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    positions = np.asarray(positions, dtype=np.int64).reshape(-1)
    n_stored = shard.check(spec)
    if len(rows) == 0:
        return
    lo, hi = int(rows.min()), int(rows.max())
    if lo < 0 or hi >= n_stored:
        raise IntegrityError(
            f"{shard.name} holds {n_stored} rows but row {hi if hi >= n_stored else lo} was asked "
            f"for; the metadata and the shard disagree: run `zoo verify`")
    direct = _runs(rows, positions)
    if len(direct) * MIN_DIRECT_RUN <= len(rows):
        for p in spec.params:
            shard.read_runs(p.name, direct, row_bytes([out[p.name]])[0])
        return
    # Scattered rows: read what covers them into a temporary batch, then gather.
    uniq = np.unique(rows)
    if (hi - lo + 1) <= DENSE_READ_FACTOR * len(uniq):
        block_rows = np.arange(lo, hi + 1)
        where = rows - lo
    else:
        block_rows = uniq
        where = np.searchsorted(uniq, rows)
    runs = _runs(block_rows, np.arange(len(block_rows)))
    take, put = torch.from_numpy(where), torch.from_numpy(positions)
    for p in spec.params:
        tmp = torch.empty((len(block_rows), *p.shape), dtype=spec.torch_dtype)
        shard.read_runs(p.name, runs, row_bytes([tmp])[0])
        out[p.name].index_copy_(0, put, tmp.index_select(0, take))


def read_shard_rows(shard: ShardFile, spec: NetworkSpec, rows: np.ndarray) -> dict[str, Tensor]:
    """Read ``rows`` of one shard, in the order given.

    Shapes:
        returns ``{name: Tensor[len(rows), *shape]}`` for every parameter of ``spec``.
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    out = {p.name: empty_batch((len(rows), *p.shape), spec.torch_dtype) for p in spec.params}
    read_rows_into(shard, spec, rows, out, np.arange(len(rows)))
    return out


#: Rows per unit of work when loading a batch (about this many bytes each), so that reading
#: one unit overlaps with hashing another.
LOAD_CHUNK_BYTES = 8 << 20
#: Most threads that load a batch (read + hash units in parallel).
LOAD_THREADS = 4


def load_batch(spec: NetworkSpec, n: int,
               parts: Sequence[tuple[ShardFile, str, np.ndarray, np.ndarray]],
               expected: Sequence[str] | None) -> dict[str, Tensor]:
    """Read rows of several shards into one batch, checking each row's sha256.

    The work is cut into units of about :data:`LOAD_CHUNK_BYTES` (consecutive shard rows),
    run on a few threads: positioned reads and ``hashlib`` both release the GIL, so reading one
    unit overlaps with hashing another.

    Args:
        spec: the architecture of every row.
        n: the batch size.
        parts: ``(shard, zoo root, shard rows, batch positions)`` per shard; together the
            positions cover ``0..n-1``.
        expected: the sha256 of each batch position, or ``None`` not to check.

    Raises:
        IntegrityError: rows whose bytes do not match their sha256 (naming shard and rows).

    Shapes:
        returns ``{name: Tensor[n, *shape]}``.
    """
    out = {p.name: empty_batch((n, *p.shape), spec.torch_dtype) for p in spec.params}
    row_nbytes = max(1, sum(p.numel for p in spec.params) * SAFETENSORS_DTYPES[spec.dtype][1])
    chunk = max(64, LOAD_CHUNK_BYTES // row_nbytes)
    units = []
    for shard, root, rows, positions in parts:
        order = np.argsort(rows, kind="stable")  # units cover ranges of shard rows
        rows, positions = rows[order], positions[order]
        for a in range(0, len(rows), chunk):
            units.append((shard, root, rows[a:a + chunk], positions[a:a + chunk]))
    tensors = [out[name] for name in spec.param_names]

    def work(unit: tuple[ShardFile, str, np.ndarray, np.ndarray]) -> list[tuple[str, str, int]]:
        shard, root, rows, positions = unit
        read_rows_into(shard, spec, rows, out, positions)
        if expected is None:
            return []
        got = stacked_sha256(tensors, positions, threads=1)
        return [(shard.name, root, int(r)) for r, i, g in zip(rows, positions, got) if g != expected[i]]

    threads = min(LOAD_THREADS, os.cpu_count() or 1, len(units))
    if threads > 1 and n * row_nbytes >= PARALLEL_HASH_BYTES:
        with ThreadPoolExecutor(threads) as pool:
            bad = [b for found in pool.map(work, units) for b in found]
    else:
        bad = [b for unit in units for b in work(unit)]
    if bad:
        shard, root, _ = bad[0]
        rows = sorted(r for s, _, r in bad if s == shard)
        others = len({s for s, _, _ in bad}) - 1
        shown = ", ".join(map(str, rows[:10])) + (" ..." if len(rows) > 10 else "")
        raise IntegrityError(
            f"weights of {len(rows)} row(s) of {shard} do not match their recorded sha256 "
            f"(rows {shown})" + (f", and of rows in {others} other shard(s)" if others else "")
            + f"; the shard is corrupt or was modified. Run `zoo verify {root}`, then re-pull "
              f"or rebuild the zoo (or pass verify=False to load anyway)")
    return out


def stacked_sha256(tensors: Sequence[Tensor], positions: Sequence[int] | None = None,
                   threads: int | None = None) -> list[str]:
    """Per-row sha256 of a stacked batch, parameters in the given order.

    Args:
        tensors: the parameters of one architecture, in NetworkSpec order, each ``[N, *shape]``.
        positions: hash only these rows (default: all).
        threads: hashing threads (default: up to :data:`HASH_THREADS`, and one for batches
            under :data:`PARALLEL_HASH_BYTES`); ``hashlib`` releases the GIL on large rows.

    Returns:
        one hex digest per row, equal to :func:`catalog.format.weights_sha256` of the row.
    """
    arrays = row_bytes(tensors)
    n = arrays[0].shape[0] if arrays else 0
    pos = list(range(n)) if positions is None else [int(i) for i in positions]
    if threads is None:
        total = sum(a.shape[1] for a in arrays) * len(pos)
        threads = min(HASH_THREADS, os.cpu_count() or 1) if total >= PARALLEL_HASH_BYTES else 1

    def digest(chunk: Sequence[int]) -> list[str]:
        out = []
        for i in chunk:
            h = hashlib.sha256()
            for a in arrays:
                h.update(a[i])
            out.append(h.hexdigest())
        return out

    if threads <= 1 or len(pos) < 2 * threads:
        return digest(pos)
    step = -(-len(pos) // (threads * 4))
    chunks = [pos[i:i + step] for i in range(0, len(pos), step)]
    with ThreadPoolExecutor(threads) as pool:
        return [d for part in pool.map(digest, chunks) for d in part]


def check_rows(tensors: Sequence[Tensor], expected: Sequence[str], rows: Sequence[int],
               shard: str, root: str, positions: Sequence[int] | None = None) -> None:
    """Raise :class:`IntegrityError` naming the rows whose bytes do not match their sha256.

    Args:
        tensors: the read parameters, each ``[N, *shape]``, in NetworkSpec order.
        expected: the expected sha256 hex digest of each checked row.
        rows: the shard row index of each checked row (for the message).
        shard: the shard's path in the zoo (for the message).
        root: the zoo directory (for the message).
        positions: the rows of ``tensors`` to check (default: all, in order).
    """
    got = stacked_sha256(tensors, positions)
    bad = [int(rows[i]) for i, (g, w) in enumerate(zip(got, expected)) if g != w]
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
        raise IntegrityError(
            f"weights of {len(bad)} row(s) of {shard} do not match their recorded sha256 "
            f"(rows {shown}); the shard is corrupt or was modified. Run `zoo verify {root}`, "
            f"then re-pull or rebuild the zoo (or pass verify=False to load anyway)")
