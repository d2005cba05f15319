"""Writing query results: an aligned text table, CSV, JSON or Parquet."""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from catalog.errors import QueryError
from catalog.paths import check_output_path

FORMATS = ("table", "csv", "json", "parquet")
#: Formats inferred from the extension of ``--out`` (other extensions need ``--format``). Only
#: file formats: the ``table`` is the terminal's view (at most :data:`TABLE_MAX_ROWS` rows,
#: rounded values), so a file in it would not hold the result it claims to.
SUFFIX_FORMATS = {"csv": "csv", "json": "json", "parquet": "parquet", "pq": "parquet"}
#: Rows a ``table`` shows before it elides the middle.
TABLE_MAX_ROWS = 50


def _file_formats() -> str:
    """How messages offer the file formats as the argument and its CLI option."""
    return f"fmt= (--format) {'|'.join(f for f in FORMATS if f != 'table')}"


def _table_to_file_error() -> QueryError:
    """The error for ``fmt="table"`` (``--format table``) with ``out``: a file gets every row, unrounded."""
    return QueryError(
        f"fmt='table' (--format table) is the terminal's view (at most {TABLE_MAX_ROWS} rows, values rounded), "
        f"not a file format; out (--out) gets every row at full precision as .csv, .json or .parquet: name the "
        f"file {', '.join('*.' + k for k in SUFFIX_FORMATS)}, or pass {_file_formats()}")


def format_for(out: str | os.PathLike | None, fmt: str | None, is_terminal: bool) -> str:
    """The output format: ``fmt`` if given, else from ``out``'s extension (see
    :data:`SUFFIX_FORMATS`; any other extension is an error, never a silent CSV), else ``table``
    on a terminal and ``csv`` otherwise. A file (``out``) is never a ``table``.

    Raises:
        QueryError: an unknown ``fmt``, ``table`` with ``out``, or an ``out`` extension that names
            no file format (e.g. ``.txt``).
    """
    if fmt is not None:
        if fmt not in FORMATS:
            raise QueryError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
        if fmt == "table" and out is not None:
            raise _table_to_file_error()
        return fmt
    if out is not None:
        suffix = Path(out).suffix.lower().lstrip(".")
        if suffix in SUFFIX_FORMATS:
            return SUFFIX_FORMATS[suffix]
        raise QueryError(
            f"cannot tell the format of out={str(out)!r} (--out) from its extension "
            f"{('.' + suffix) if suffix else '(none)'}; name the file "
            f"{', '.join('*.' + k for k in SUFFIX_FORMATS)}, or pass {_file_formats()}")
    return "table" if is_terminal else "csv"


def _cell(v: object) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def render_table(table: pa.Table, max_rows: int = TABLE_MAX_ROWS) -> str:
    """An aligned plain-text table (at most ``max_rows`` rows; the middle is elided)."""
    names = table.column_names
    n = table.num_rows
    if n > max_rows:
        head = table.slice(0, max_rows // 2).to_pylist()
        tail = table.slice(n - max_rows // 2).to_pylist()
        rows = [[_cell(r[c]) for c in names] for r in head]
        rows.append(["..."] * len(names))
        rows += [[_cell(r[c]) for c in names] for r in tail]
    else:
        rows = [[_cell(r[c]) for c in names] for r in table.to_pylist()]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(names)]
    numeric = [pa.types.is_integer(t) or pa.types.is_floating(t) for t in table.schema.types]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w)
                         for c, w, num in zip(cells, widths, numeric)).rstrip()

    out = [line(names), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    out.append(f"({n} row{'s' if n != 1 else ''}"
               + (f", {max_rows} shown; use --format csv or --out for all" if n > max_rows else "")
               + ")")
    return "\n".join(out) + "\n"


def _json_value(v: object) -> object:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _json_value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_value(x) for x in v]
    return v


def render_json(table: pa.Table) -> str:
    """A JSON array of row objects, one row per line (NaN/inf become null)."""
    rows = [json.dumps(_json_value(r), default=str) for r in table.to_pylist()]
    return "[" + ",\n".join(rows) + "]\n" if rows else "[]\n"


def render_csv(table: pa.Table) -> str:
    """CSV with a header row; nested values (lists, structs, maps) are written as JSON."""
    for i, f in enumerate(table.schema):
        if pa.types.is_nested(f.type):
            values = [None if v is None else json.dumps(_json_value(v), default=str)
                      for v in table.column(i).to_pylist()]
            table = table.set_column(i, f.name, pa.array(values, type=pa.string()))
    buf = io.BytesIO()
    pacsv.write_csv(table, buf)
    return buf.getvalue().decode()


def check_result_output(out: str | os.PathLike | None, fmt: str | None, is_terminal: bool) -> str:
    """Check where and how a query result will be written, before the query runs: the format
    (:func:`format_for`) and the file ``out`` (:func:`~catalog.paths.check_output_path`: never
    inside a zoo, and writable), so a bad ``--out`` fails before any work.

    Returns:
        the output format.

    Raises:
        QueryError: an unknown format or extension.
        OutputPathError: ``out`` lies inside a zoo or cannot be written.
    """
    fmt = format_for(out, fmt, is_terminal)
    if out is not None:
        check_output_path(out, "out", None, flag="--out")
    return fmt


def write_result(table: pa.Table, fmt: str, out: str | os.PathLike | None) -> str | None:
    """Write ``table`` as ``fmt`` to the file ``out`` (checked first, see
    :func:`check_result_output`), or, without one, return it as text.

    Raises:
        QueryError: ``parquet`` without ``out`` (binary output needs a file), or ``table`` with
            ``out`` (a file holds every row, unrounded: see :func:`format_for`).
        OutputPathError: ``out`` lies inside a zoo or cannot be written.
    """
    if fmt == "table" and out is not None:
        raise _table_to_file_error()
    if out is not None:
        check_output_path(out, "out", None, flag="--out")
    if fmt == "parquet":
        if out is None:
            raise QueryError("fmt='parquet' (--format parquet) writes a binary file; give it a path with "
                             "out= (--out)")
        pq.write_table(table, str(out))
        return None
    text = {"table": render_table, "csv": render_csv, "json": render_json}[fmt](table)
    if out is None:
        return text
    Path(out).write_text(text)
    return None
