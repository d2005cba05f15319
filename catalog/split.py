"""Train/val/test splits by training run: :func:`split_by_run`.

All checkpoints of one training run share a ``run_id``; they are near-copies of each other,
so a split by row would leak a run's weights from train into test. Here whole runs are
assigned to one split each.

Different runs can also hold the very same network: the initializations (checkpoint 0) of runs
that share a seed but differ in, say, the learning rate, or the common checkpoints of runs that
differ only in ``epochs``. Runs linked by a row of equal ``sha256`` (the weights' checksum) are
therefore kept in one split together; a zoo where no two runs share a network splits exactly
as it did before this rule.
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


#: The column whose equal values link runs into one split: the weights' checksum.
LINK_COLUMN = "sha256"


def split_by_run(table: pa.Table, fractions: Sequence[float] = (0.8, 0.1, 0.1),
                 seed: int = 0, key: Sequence[str] = ("run_id",),
                 link: str | None = LINK_COLUMN) -> dict[str, np.ndarray]:
    """Assign whole training runs to train/val/test; runs that share a network go together.

    Runs linked by equal ``link`` values (the same weights under two run ids), directly or
    through other runs, form a group. The groups, each named by its first run name, are sorted,
    shuffled with ``seed`` and cut at the cumulative fractions of the runs (a group counts its
    runs and falls in the split its middle lies in), so the split depends only on the set of
    runs (and links), the fractions and the seed, never on the row order or on which
    checkpoints were selected. Without links every group is one run and this is the plain
    split by run: the cuts at the fractions rounded to whole runs.

    Args:
        table: rows with the ``key`` columns (and ``link``, if it is to count).
        fractions: ``(train, val, test)`` shares of the runs (default ``(0.8, 0.1, 0.1)``).
        seed: the shuffle's seed (default ``0``; negative seeds too, as torch takes them).
        key: the columns that identify a run (default ``("run_id",)``; add ``"zoo"`` for rows
            of several zoos, whose run ids may collide).
        link: the column whose equal values keep their runs in one split (default
            ``"sha256"``); ignored when ``table`` lacks it, and NULLs link nothing (rows
            without a checksum split by run alone); ``None``: split by run alone.

    Returns:
        ``{"train": positions, "val": positions, "test": positions}``: sorted ``int64`` row
        positions into ``table``; every row is in exactly one split, all rows of a run in the
        same one, and so are all rows with the same ``link`` value.
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
    links = table.column(link) if link is not None and link in table.column_names else None
    first = _linked_runs(codes, order, links)  # [runs] the first run (by name) of each run's group
    groups, group_of_run = np.unique(first, return_inverse=True)
    sizes = np.bincount(group_of_run, minlength=len(groups))  # runs per group
    # Without links, groups are runs (named by themselves) and this is the shuffle by run as it
    # always was: a group's middle rank + 0.5 lies before a cut exactly when its rank does.
    g_order = np.argsort(names[groups], kind="stable")
    perm = np.random.default_rng(_rng_seed(seed)).permutation(len(groups))
    shuffled = g_order[perm]  # groups in shuffled order
    middle = np.empty(len(groups), dtype=np.float64)
    middle[shuffled] = np.cumsum(sizes[shuffled]) - sizes[shuffled] / 2
    cuts = np.rint(np.cumsum(fr) * len(names)).astype(np.int64)
    split_of_run = np.searchsorted(cuts, middle, side="right")[group_of_run]
    split_of_row = split_of_run[codes]
    return {s: np.flatnonzero(split_of_row == i).astype(np.int64) for i, s in enumerate(SPLITS)}


def runs_sharing_networks(table: pa.Table, key: Sequence[str] = ("run_id",), link: str = LINK_COLUMN) -> int:
    """How many runs of ``table`` hold a network (equal ``link`` value) that another run holds too,
    and so are split together with it by :func:`split_by_run` (``0`` without a ``link`` column)."""
    _check_key(table, key)
    if table.num_rows == 0 or link not in table.column_names:
        return 0
    enc = _run_keys(table, key).combine_chunks().dictionary_encode()
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    order = np.argsort(np.asarray(enc.dictionary.to_pylist(), dtype=object), kind="stable")
    _, group_of_run, sizes = np.unique(_linked_runs(codes, order, table.column(link)), return_inverse=True,
                                       return_counts=True)
    return int((sizes[group_of_run] > 1).sum())


def _linked_runs(codes: np.ndarray, order: np.ndarray, links: pa.ChunkedArray | None) -> np.ndarray:
    """Per run, the first run (in ``order``, i.e. by name) of the group of runs linked to it by
    rows with equal non-null ``links`` values, directly or through other runs (union-find).

    Shapes:
        ``codes``: ``[rows]`` run per row; ``order``: ``[runs]`` runs sorted by name;
        returns ``[runs]`` run indices.
    """
    n = len(order)
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    parent = np.arange(n)
    if links is None or links.null_count == len(links):
        return parent
    valid = links.is_valid().to_numpy(zero_copy_only=False)
    value = links.combine_chunks().dictionary_encode().indices.to_numpy(zero_copy_only=False)
    pairs = np.unique(np.stack([value[valid].astype(np.int64), codes[valid]], 1), axis=0)  # (value, run)
    # consecutive rows of the same value link their runs; most zoos have none
    same = np.flatnonzero(pairs[1:, 0] == pairs[:-1, 0])

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for k in same.tolist():
        a, b = find(int(pairs[k, 1])), find(int(pairs[k + 1, 1]))
        if a != b:  # the root stays the run that comes first by name
            a, b = (a, b) if position[a] < position[b] else (b, a)
            parent[b] = a
    return np.asarray([find(i) for i in range(n)], dtype=np.int64)


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
               key: Sequence[str] = ("run_id",), link: str | None = LINK_COLUMN) -> dict[str, str]:
    """The split of every run: ``{run: "train" | "val" | "test"}``, as :func:`split_by_run`
    assigns it (a run of several ``key`` columns is named by their values joined with NUL;
    ``link`` as there).

    Use it to label rows that were not in ``table`` (e.g. other checkpoints of the same runs)
    with the split their run was in; see :func:`runs_fingerprint` to check that a split was
    reproduced exactly.
    """
    positions = split_by_run(table, fractions, seed, key, link)
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
