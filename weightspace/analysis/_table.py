"""Column access for metadata tables: a ``pyarrow.Table`` (e.g. ``Selection.table``) or a plain
``{column: sequence}`` mapping, read into numpy; unknown columns name the valid ones.

Private to :mod:`weightspace.analysis`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from catalog.errors import WeightzooError

#: A metadata table: ``pyarrow.Table`` or ``{column name: sequence of values}``.
Table = Any


def column_names(table: Table) -> list[str]:
    if hasattr(table, "column_names"):
        return list(table.column_names)
    if isinstance(table, Mapping):
        return list(table)
    raise WeightzooError(f"expected a table (pyarrow.Table or a dict of columns), got "
                         f"{type(table).__name__}")


def n_rows(table: Table) -> int:
    if hasattr(table, "num_rows"):
        return int(table.num_rows)
    lengths = {len(v) for v in table.values()}
    if len(lengths) > 1:
        raise WeightzooError(f"the table's columns have different lengths {sorted(lengths)}")
    return lengths.pop() if lengths else 0


def check_columns(table: Table, names: Sequence[str], role: str = "column") -> None:
    """Raise a :class:`WeightzooError` naming the valid columns if any of ``names`` is missing."""
    valid = column_names(table)
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise WeightzooError(f"unknown {role} {', '.join(map(repr, unknown))}; the table's columns: "
                             f"{', '.join(valid)}")


def values(table: Table, name: str) -> list:
    """One column as a Python list; list values (e.g. ``hidden``, ``channels``) become tuples,
    so every value can key a group or an axis."""
    check_columns(table, [name])
    col = table.column(name).to_pylist() if hasattr(table, "num_rows") else table[name]
    return [tuple(v) if isinstance(v, list) else v
            for v in (col.tolist() if isinstance(col, np.ndarray) else col)]


def numeric(table: Table, name: str) -> np.ndarray:
    """One column as ``float64`` (nulls become NaN); a non-numeric column raises."""
    vals = values(table, name)
    try:
        return np.array([np.nan if v is None else v for v in vals], dtype=np.float64)
    except (TypeError, ValueError):
        raise WeightzooError(f"column {name!r} is not numeric (e.g. {vals[0]!r}); pick a numeric "
                             f"column") from None
