"""Seed pairs: the rows of a metadata table that differ only in their seed, and per-row means of
a pairwise metric (``cka_seed``, ``mc_linear``, ``avg_acc_delta``, ...)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from catalog.errors import WeightzooError
from weightspace.analysis._table import Table, check_columns, column_names, n_rows, values


def seed_pairs(table: Table, group_by_columns: Sequence[str], seed_column: str = "seed") -> np.ndarray:
    """Every pair of rows that agree on ``group_by_columns`` (and ``arch_id``) but not on the seed.

    Pass as ``group_by_columns`` every column that makes two runs different experiments: the
    hyperparameters and ``checkpoint`` (so a run's epoch-3 row is paired with the other seeds'
    epoch-3 rows), never ``run_id``, ``model_id`` or a metric. ``arch_id`` is added when the
    table has it. Nulls compare equal to each other.

    Args:
        table: a ``pyarrow.Table`` (e.g. ``Selection.table``) or ``{column: sequence}``.
        group_by_columns: the columns that must agree.
        seed_column: the column that must differ (default ``"seed"``).

    Returns:
        ``int64 [M, 2]`` row indices ``(i, j)``, ``i < j``, grouped by configuration in order of
        first appearance.

    Raises:
        WeightzooError: a column is unknown; two rows agree on every group column *and* the
            seed (a column that tells them apart is missing, e.g. ``checkpoint``); or no
            configuration has two seeds (a pairwise metric has nothing to compare).
    """
    group = list(dict.fromkeys(group_by_columns))
    if seed_column in group:
        raise WeightzooError(f"{seed_column!r} is the seed column; leave it out of group_by_columns")
    if "arch_id" in column_names(table) and "arch_id" not in group:
        group.append("arch_id")
    check_columns(table, [*group, seed_column])
    cols = [values(table, c) for c in group]
    seeds = values(table, seed_column)
    configs: dict[tuple, list[int]] = {}
    for i in range(n_rows(table)):
        configs.setdefault(tuple(c[i] for c in cols), []).append(i)
    pairs = []
    for key, rows in configs.items():
        seen: dict[object, int] = {}
        for i in rows:
            if seeds[i] in seen:
                where = ", ".join(f"{c}={v!r}" for c, v in zip(group, key))
                raise WeightzooError(
                    f"rows {seen[seeds[i]]} and {i} agree on every group column ({where}) and on "
                    f"{seed_column}={seeds[i]!r}; add the column that tells them apart (e.g. "
                    f"checkpoint) to group_by_columns")
            seen[seeds[i]] = i
        pairs += [(a, b) for k, a in enumerate(rows) for b in rows[k + 1:]]
    if not pairs:
        raise WeightzooError(
            f"no two rows differ only in {seed_column!r} (grouped by {', '.join(group)}): every "
            f"configuration has a single seed, so there are no seed pairs for a pairwise metric; "
            f"build the zoo with at least two seeds per configuration")
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def mean_over_pairs(pairs: Tensor | np.ndarray, pair_values: Tensor, n: int) -> Tensor:
    """Each row's mean of a pairwise value over the pairs it belongs to (NaN for rows in none).

    Args:
        pairs: ``[M, 2]`` row indices (from :func:`seed_pairs`).
        pair_values: ``[M]`` one value per pair.
        n: the number of rows.

    Shapes:
        returns ``[n]`` in ``pair_values``' dtype.
    """
    pairs = torch.as_tensor(np.asarray(pairs), dtype=torch.long).reshape(-1, 2)
    if pair_values.shape != (pairs.shape[0],):
        raise WeightzooError(f"got {tuple(pair_values.shape)} values for {pairs.shape[0]} pairs")
    total = torch.zeros(n, dtype=pair_values.dtype).index_add_(0, pairs[:, 0], pair_values)
    total.index_add_(0, pairs[:, 1], pair_values)
    count = torch.zeros(n, dtype=pair_values.dtype).index_add_(
        0, pairs.flatten(), torch.ones(pairs.numel(), dtype=pair_values.dtype))
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, float("nan")))
