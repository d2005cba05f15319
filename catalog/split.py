"""Train/val/test splits by training run: :func:`split_by_run`.

All checkpoints of one training run share a ``run_id``; they are near-copies of each other,
so a split by row would leak a run's weights from train into test. Here whole runs are
assigned to one split each.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from catalog.errors import WeightzooError

#: The split names, in the order of the ``fractions`` tuple.
SPLITS = ("train", "val", "test")


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate ``(train, val, test)`` fractions: three non-negative numbers summing to 1."""
    try:
        values = tuple(float(f) for f in fractions)
    except (TypeError, ValueError) as e:
        raise WeightzooError(f"fractions must be three numbers (train, val, test), got {fractions!r}") from e
    if len(values) != 3:
        raise WeightzooError(
            f"fractions must be three numbers (train, val, test), got {len(values)}: {fractions!r}")
    if any(f < 0 or not math.isfinite(f) for f in values) or not math.isclose(sum(values), 1.0, abs_tol=1e-6):
        raise WeightzooError(
            f"fractions must be non-negative and sum to 1, got {fractions!r} (sum {sum(values):g})")
    return values  # type: ignore[return-value]


def split_by_run(table: pa.Table, fractions: Sequence[float] = (0.8, 0.1, 0.1),
                 seed: int = 0, key: Sequence[str] = ("run_id",)) -> dict[str, np.ndarray]:
    """Assign whole training runs to train/val/test.

    The distinct runs are sorted, shuffled with ``seed`` and cut at the cumulative fractions
    (rounded to whole runs), so the split depends only on the set of runs, the fractions and
    the seed, never on the row order or on which checkpoints were selected.

    Args:
        table: rows with the ``key`` columns.
        fractions: ``(train, val, test)`` shares of the runs (default ``(0.8, 0.1, 0.1)``).
        seed: the shuffle's seed (default ``0``; negative seeds too, as torch takes them).
        key: the columns that identify a run (default ``("run_id",)``; add ``"zoo"`` for rows
            of several zoos, whose run ids may collide).

    Returns:
        ``{"train": positions, "val": positions, "test": positions}``: sorted ``int64`` row
        positions into ``table``; every row is in exactly one split, and all rows of a run
        in the same one.
    """
    fr = check_fractions(fractions)
    _check_key(table, key)
    if table.num_rows == 0:
        return {s: np.zeros(0, dtype=np.int64) for s in SPLITS}
    run = _run_keys(table, key)
    enc = run.combine_chunks().dictionary_encode()
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    names = np.asarray(enc.dictionary.to_pylist(), dtype=object)
    order = np.argsort(names, kind="stable")  # sorted run names: independent of row order
    perm = np.random.default_rng(_rng_seed(seed)).permutation(len(names))
    rank = np.empty(len(names), dtype=np.int64)
    rank[order[perm]] = np.arange(len(names))  # position of each run in the shuffled list
    cuts = np.rint(np.cumsum(fr) * len(names)).astype(np.int64)
    split_of_run = np.searchsorted(cuts, rank, side="right")
    split_of_row = split_of_run[codes]
    return {s: np.flatnonzero(split_of_row == i).astype(np.int64) for i, s in enumerate(SPLITS)}


def _rng_seed(seed: int) -> int:
    """``seed`` as numpy's generators take it: they refuse negative seeds, so one is read as the
    64-bit pattern torch's ``manual_seed`` reads it as (``seed + 2**64``); a seed >= 0 is itself,
    so the splits of non-negative seeds are unchanged."""
    seed = int(seed)
    return seed + 2**64 if seed < 0 else seed


def _check_key(table: pa.Table, key: Sequence[str]) -> None:
    missing = [k for k in key if k not in table.column_names]
    if missing:
        raise WeightzooError(
            f"splitting by run needs the column(s) {missing}; select them (or SELECT *)")


def _run_keys(table: pa.Table, key: Sequence[str]) -> pa.ChunkedArray:
    """One string per row naming its run (the ``key`` columns joined)."""
    cols = [table.column(k) for k in key]
    for k, c in zip(key, cols):
        if c.null_count:
            raise WeightzooError(f"{c.null_count} rows have a NULL {k}; cannot split them by run")
    run = cols[0].cast(pa.string())
    for c in cols[1:]:
        run = pc.binary_join_element_wise(c.cast(pa.string()), run, "\x00")
    return run


def run_splits(table: pa.Table, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
               key: Sequence[str] = ("run_id",)) -> dict[str, str]:
    """The split of every run: ``{run: "train" | "val" | "test"}``, as :func:`split_by_run`
    assigns it (a run of several ``key`` columns is named by their values joined with NUL).

    Use it to label rows that were not in ``table`` (e.g. other checkpoints of the same runs)
    with the split their run was in; see :func:`runs_fingerprint` to check that a split was
    reproduced exactly.
    """
    positions = split_by_run(table, fractions, seed, key)
    runs = _run_keys(table, key).to_pylist() if table.num_rows else []
    return {runs[i]: s for s, pos in positions.items() for i in pos.tolist()}


def row_runs(table: pa.Table, key: Sequence[str] = ("run_id",)) -> list[str]:
    """The run of every row, named as :func:`run_splits` names them."""
    _check_key(table, key)
    return _run_keys(table, key).to_pylist() if table.num_rows else []


def runs_fingerprint(runs: Iterable[str]) -> str:
    """A short sha256 of a set of run names (order and repeats do not matter): recorded with a
    trained model per split, it tells whether a split recomputed later is the same."""
    blob = "\n".join(sorted(set(runs))).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
