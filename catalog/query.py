"""Read-only SQL over zoo metadata: :class:`QueryEngine`.

A ``QueryEngine`` is a DuckDB database whose table ``models`` holds the metadata rows of one
or more zoos (for several zoos, with a ``zoo`` column naming each row's zoo; columns a zoo
lacks are NULL). ``models`` is either a table the rows are copied into once, when the engine
is made (and compacted: fastest for many queries), or a view that reads the Parquet parts in
place on every query (no copy: fastest for one query, what ``zoo query`` runs). Either way the
connection is then locked down:

- only a single ``SELECT`` statement is accepted (``UPDATE``, ``DELETE``, ``COPY``, ``ATTACH``,
  ``INSTALL``, ``SET``, ``PRAGMA``, ... are rejected before they run);
- every query runs inside a ``READ ONLY`` transaction that is always rolled back. A statement
  of type ``SELECT`` can still write: ``WITH d AS (DELETE FROM models RETURNING *) SELECT ...``
  parses as a SELECT, and so do UPDATE/INSERT CTEs, nested anywhere in the query. Looking for
  them in the statement text or parse tree would be a list of cases to keep up to date with
  DuckDB's grammar; a read-only transaction is enforced by DuckDB itself on every write to the
  database, whatever statement or operator attempts it, so it cannot be bypassed from SQL (a
  single statement cannot end its own transaction);
- file system access, extension loading and Python replacement scans are disabled, and the
  configuration is locked, so even a statement that got past the first check could not read
  or write any file.

The zoo's own files are only ever read, so no query can modify or delete a zoo. A copying
engine reads them with DuckDB's Parquet reader before the lock. An in-place engine cannot use
that reader after the lock (DuckDB's file access is all or nothing: a path allowed for reading
is allowed for ``COPY ... TO`` too), so the view reads the parts through Arrow datasets
registered before the lock: DuckDB pushes each query's columns and filters into them, and
Parquet row-group statistics skip the parts whose ranges miss a filter (one part holds one
population: one ``arch_id``, optimizer, batch size, ... each), without reading their data.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa

from catalog.errors import QueryError, WeightzooError
from catalog.format import CORE_COLUMNS

if TYPE_CHECKING:
    from catalog.selection import Selection
    from catalog.zoo import Zoo

#: The name of the table every query sees.
TABLE = "models"
#: The column naming each row's zoo when an engine spans several zoos.
ZOO_COLUMN = "zoo"
#: What a zoo's own column named ``zoo`` is called in a multi-zoo view, where ``zoo`` names the
#: row's zoo (a zoo's metadata may well have such a column, e.g. an importer's source zoo).
SOURCE_ZOO_COLUMN = "source_zoo"
#: Columns that locate a row's weights (besides the zoo).
LOCATE_COLUMNS = ("model_id", "arch_id", "weights_shard", "weights_row", "sha256")

_DUCK_TYPES = {"string": "VARCHAR", "int64": "BIGINT"}
_LOCKDOWN = (
    "SET python_enable_replacements = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET enable_external_access = false",
    "SET lock_configuration = true",
)


#: Every user query runs in this transaction (then rolled back): DuckDB refuses any write in it.
_BEGIN_READ_ONLY = "BEGIN TRANSACTION READ ONLY"
#: How DuckDB refuses a write to the view of an in-place engine (its rows cannot change).
_IN_PLACE_WRITE = re.compile(r"Can only (?:delete from|update|insert into) base table|"
                             r"\bis not an? table\b")
#: The prefix of the Arrow datasets an in-place engine registers (they name its errors).
_IN_PLACE_SOURCE = "__zoo"
_WRITE_REFUSED = (
    "not allowed: the query tries to change the table `models` (e.g. a DELETE, UPDATE or INSERT "
    "inside WITH); zoo queries are read-only: write a SELECT that only reads (zoos are changed "
    "by `zoo build`, never by a query)")


def sql_string(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + str(text).replace("'", "''") + "'"


def sql_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + str(name).replace('"', '""') + '"'


def lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """Disable file access, extensions and replacement scans on ``con``, then lock its settings."""
    for stmt in _LOCKDOWN:
        con.execute(stmt)


def parts_select(part_paths: Sequence[str], zoo_name: str | None = None,
                 sidecar_paths: Sequence[str] = ()) -> str:
    """A ``SELECT`` over a zoo's Parquet parts (plus a constant ``zoo`` column if named), with
    the columns of its sidecar tables left-joined on ``model_id``.

    A zoo without parts gives an empty result with the core columns.
    """
    files = "[" + ", ".join(sql_string(p) for p in part_paths) + "]"
    return _select_from(f"read_parquet({files}, union_by_name = true)" if part_paths else None,
                        zoo_name, [f"read_parquet({sql_string(p)})" for p in sidecar_paths])


def _select_from(parts: str | None, zoo_name: str | None, sidecars: Sequence[str]) -> str:
    """:func:`parts_select` over any table expressions: ``parts`` (``None``: no parts) and one
    per sidecar table."""
    zoo = f"{sql_string(zoo_name)} AS {ZOO_COLUMN}, " if zoo_name is not None else ""
    if parts is None:
        cols = ", ".join(f"NULL::{_DUCK_TYPES[t]} AS {c}" for c, t in CORE_COLUMNS.items())
        return f"SELECT {zoo}{cols} WHERE false"
    joins = "".join(f" LEFT JOIN {src} AS s{i} USING (model_id)" for i, src in enumerate(sidecars))
    return f"SELECT {zoo}* FROM {parts} AS m{joins}"


def _type_kind(duck_type: str) -> str:
    """``scalar``, ``list`` (DuckDB ``T[]`` and ``T[n]``), ``struct``, ``map`` or ``union``."""
    t = duck_type.strip().upper()
    if t.endswith("]"):
        return "list"
    for kind in ("STRUCT", "MAP", "UNION"):
        if t.startswith(kind + "(") or t == kind:
            return kind.lower()
    return "scalar"


def union_select(con: duckdb.DuckDBPyConnection, selects: Mapping[str, str], zoo_column: bool) -> str:
    """One ``SELECT`` over the union (by column name) of each zoo's ``SELECT``, with a ``zoo``
    column naming each row's zoo if ``zoo_column``.

    A zoo's own column named ``zoo`` is kept as ``source_zoo`` there (``zoo`` names the row's zoo).
    Only the selects' column types are read (``DESCRIBE``), not their rows.

    Raises:
        QueryError: a zoo has both ``zoo`` and ``source_zoo`` columns; or a column has types in
            two zoos that DuckDB cannot combine (a list in one, a number in the other: every query
            touching it would fail with a bare "Unimplemented type for cast").
    """
    seen: dict[str, tuple[str, str]] = {}  # column -> (first zoo holding it, its type there)
    parts = []
    for name, select in selects.items():
        types = {r[0]: r[1] for r in con.execute(f"DESCRIBE {select}").fetchall()}
        rename = ""
        if zoo_column and ZOO_COLUMN in types:
            if SOURCE_ZOO_COLUMN in types:
                raise QueryError(
                    f"zoo {name!r} has columns named both {ZOO_COLUMN!r} and {SOURCE_ZOO_COLUMN!r}; "
                    f"with other zoos its {ZOO_COLUMN!r} column is shown as {SOURCE_ZOO_COLUMN!r}, "
                    f"which is taken: query it on its own, or rename one of the columns")
            types[SOURCE_ZOO_COLUMN] = types.pop(ZOO_COLUMN)
            rename = f" RENAME ({sql_ident(ZOO_COLUMN)} AS {sql_ident(SOURCE_ZOO_COLUMN)})"
        for col, typ in types.items():
            other = seen.setdefault(col, (name, typ))
            # scalars of different types combine (int + double -> double, anything + text ->
            # text); a list, struct or map does not combine with another kind
            if _type_kind(other[1]) != _type_kind(typ):
                raise QueryError(
                    f"column {col!r} is {other[1]} in zoo {other[0]!r} but {typ} in zoo {name!r}, "
                    f"so their rows cannot share one `{TABLE}` table; query the zoos separately, or "
                    f"rename or cast the column in one of them")
        parts.append(f"SELECT {sql_string(name)} AS {ZOO_COLUMN}, *{rename} FROM ({select})"
                     if zoo_column else select)
    return " UNION ALL BY NAME ".join(parts)


def arrow_dataset(paths: Sequence[str]):
    """The Parquet files ``paths`` as one ``pyarrow.dataset.Dataset`` whose schema unifies
    theirs by column name, as DuckDB's ``union_by_name`` does (a column missing from a file is
    NULL there; ``int64`` and ``double`` make ``double``).

    Raises:
        pyarrow.ArrowException: a file is not Parquet, or the schemas do not unify.
    """
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    factory = ds.FileSystemDatasetFactory(pafs.LocalFileSystem(), [str(p) for p in paths],
                                          ds.ParquetFileFormat())
    return factory.finish(factory.inspect(promote_options="permissive", fragments=None))


def check_statement(sql: str) -> str:
    """Accept exactly one read-only ``SELECT`` statement and return its text.

    Raises:
        QueryError: a syntax error (with DuckDB's message), several statements, or a statement
            that is not a ``SELECT``.
    """
    if not sql or not sql.strip():
        raise QueryError("the query is empty; write a SELECT over the table `models`")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise QueryError(f"SQL syntax error: {_first_lines(e)}") from e
    if len(statements) != 1:
        raise QueryError(
            f"the query holds {len(statements)} statements; run exactly one SELECT at a time")
    stmt = statements[0]
    if stmt.type != duckdb.StatementType.SELECT:
        kind = stmt.type.name.replace("_", " ")
        raise QueryError(
            f"{kind} statements are not allowed: zoo queries are read-only and accept only "
            f"SELECT (zoos are changed by `zoo build`, never by a query)")
    if _writing_node(sql) is not None:
        raise QueryError(_WRITE_REFUSED)
    return sql.strip().rstrip(";").strip()


_PARSER: duckdb.DuckDBPyConnection | None = None
_PARSER_LOCK = threading.Lock()
#: Words in the type of a parse-tree node that writes (``DELETE_QUERY_NODE`` of a writing CTE).
_WRITING_NODE_WORDS = ("INSERT", "UPDATE", "DELETE", "MERGE")


def _writing_node(sql: str) -> str | None:
    """The type of the first data-modifying node in ``sql``'s parse tree (DuckDB's
    ``json_serialize_sql``), or ``None``.

    This only gives a clear error early; what makes queries read-only is the READ ONLY
    transaction they run in (see the module docstring), which also covers anything this check
    does not recognise.
    """
    global _PARSER
    with _PARSER_LOCK:
        try:
            if _PARSER is None:
                _PARSER = duckdb.connect(":memory:")
                lock_down(_PARSER)
            (text,) = _PARSER.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
        except duckdb.Error:
            return None  # not serializable: the transaction still refuses any write
    try:
        stack: list = [json.loads(text)]
    except RecursionError:  # ~300 nested calls nest the tree past Python's stack: as above
        return None
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            kind = node.get("type")
            if (isinstance(kind, str) and kind.endswith("_NODE")
                    and any(w in kind for w in _WRITING_NODE_WORDS)):
                return kind
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None


def _first_lines(error: Exception, n: int = 6) -> str:
    return " ".join(line.strip() for line in str(error).strip().splitlines()[:n] if line.strip())


def _register_in_place(con: duckdb.DuckDBPyConnection, zoos: Mapping[str, Zoo]) -> dict[str, str] | None:
    """Register each zoo's Parquet files on ``con`` as Arrow datasets (see the module
    docstring) and return each zoo's ``SELECT`` over them, for :func:`union_select`. Returns
    ``None``, with nothing registered, when some zoo's parts do not unify (the caller copies
    instead)."""
    selects, sources = {}, {}
    try:
        for k, (name, z) in enumerate(zoos.items()):
            parts = f"{_IN_PLACE_SOURCE}{k}_parts" if z.part_paths else None
            if parts is not None:
                sources[parts] = arrow_dataset(z.part_paths)
            sidecars = []
            for j, p in enumerate(z.sidecar_paths):
                sidecars.append(f"{_IN_PLACE_SOURCE}{k}_sidecar{j}")
                sources[sidecars[-1]] = arrow_dataset([p])
            selects[name] = _select_from(parts, None, sidecars)
    except (pa.ArrowException, OSError):
        return None
    for view, dataset in sources.items():
        con.register(view, dataset)
    return selects


def _unknown_in_result(unknown: Sequence[str], result_columns: Sequence[str]) -> str:
    """The message for columns that the --where/--order-by/--columns shortcuts name but the
    result of the user's SQL (which they filter) lacks."""
    return (f"unknown column(s) {', '.join(map(repr, unknown))} in --where/--order-by/--columns: with SQL, "
            f"they filter the SQL's result, whose columns are: {', '.join(result_columns)}; select the "
            f"column in the SQL, or put the condition in the SQL itself")


class QueryEngine:
    """A read-only DuckDB view of one or more zoos' metadata as the table ``models``.

    Make one with :meth:`over_zoos` (rows copied into memory, or read in place) or through
    :meth:`catalog.store.LocalCatalog.engine` (rows from the persistent catalog file).

    Args:
        con: a DuckDB connection that already holds ``models`` and is locked down.
        resolve: maps a row's zoo name (``None`` for a single-zoo engine) to its :class:`Zoo`,
            to load weights.
        multi: whether ``models`` has a ``zoo`` column.
        label: what the engine covers, for messages.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, resolve: Callable[[str | None], Zoo],
                 multi: bool, label: str) -> None:
        self.con = con
        self._resolve = resolve
        self.multi = multi
        self.label = label
        self._columns: list[str] | None = None

    # ------------------------------------------------------------------------------ making
    @classmethod
    def over_zoos(cls, zoos: Zoo | Sequence[Zoo] | Mapping[str, Zoo],
                  zoo_column: bool | None = None, compact: bool = True) -> QueryEngine:
        """An in-memory engine over the given zoos.

        Args:
            zoos: one zoo, a list of zoos (named by their manifest names, made unique with a
                ``-2``, ``-3`` ... suffix), or ``{name: zoo}``.
            zoo_column: add the ``zoo`` column (default: only for more than one zoo).
            compact: copy the rows into DuckDB and compress them once (a ``CHECKPOINT``;
                default ``True``): scans are then 2-3x faster than over Parquet, worth it for
                an engine that answers many queries. ``False``: no copy, queries read the
                Parquet files in place (an engine for one query, e.g. ``zoo query``: about
                10x faster to make on 1M rows). Zoos whose parts' columns do not unify are
                copied either way.
        """
        from catalog.zoo import Zoo

        if isinstance(zoos, Zoo):
            zoos = [zoos]
        if not isinstance(zoos, Mapping):
            named: dict[str, Zoo] = {}
            for z in zoos:
                name, k = z.name, 2
                while name in named:
                    name, k = f"{z.name}-{k}", k + 1
                named[name] = z
            zoos = named
        if not zoos:
            raise QueryError("no zoo to query; name at least one zoo directory")
        multi = len(zoos) > 1 if zoo_column is None else zoo_column
        for z in zoos.values():
            for p in z.part_paths:
                if not p.is_file():
                    raise WeightzooError(
                        f"{p} is listed in the manifest of {z.root} but missing; re-pull or "
                        f"rebuild the zoo (and run `zoo verify`)")
        con = duckdb.connect(":memory:")
        try:
            selects = None if compact else _register_in_place(con, zoos)
            kind = "VIEW" if selects is not None else "TABLE"
            if selects is None:
                selects = {name: parts_select([str(p) for p in z.part_paths],
                                              sidecar_paths=[str(p) for p in z.sidecar_paths])
                           for name, z in zoos.items()}
            con.execute(f"CREATE {kind} {TABLE} AS {union_select(con, selects, multi)}")
            if kind == "TABLE" and compact:
                con.execute("CHECKPOINT")
        except WeightzooError:
            con.close()
            raise
        except duckdb.Error as e:
            con.close()
            raise WeightzooError(f"cannot read the zoos' Parquet metadata: {_first_lines(e)}; "
                                 f"run `zoo verify`") from e
        lock_down(con)
        by_name = dict(zoos)
        only = next(iter(by_name.values()))

        def resolve(name: str | None) -> Zoo:
            if name is None:
                if multi:
                    raise QueryError("rows of a multi-zoo query need their `zoo` column")
                return only
            if name not in by_name:
                raise QueryError(f"no zoo named {name!r} in this query; zoos: {', '.join(by_name)}")
            return by_name[name]

        label = ", ".join(str(z.root) for z in by_name.values())
        return cls(con, resolve, multi, label)

    # ------------------------------------------------------------------------------ queries
    @property
    def columns(self) -> list[str]:
        """The columns of ``models``, in order."""
        if self._columns is None:
            rows = self.con.execute(f"DESCRIBE {TABLE}").fetchall()
            self._columns = [r[0] for r in rows]
        return self._columns

    def zoo(self, name: str | None = None) -> Zoo:
        """The zoo behind rows whose ``zoo`` column is ``name`` (``None`` for a single zoo)."""
        return self._resolve(name)

    def execute(self, sql: str) -> pa.Table:
        """Run one read-only ``SELECT`` and return its rows.

        Raises:
            QueryError: a non-SELECT statement, a syntax error (DuckDB's message), an unknown
                column (the message lists the available ones), or any other failure.
        """
        text = check_statement(sql)
        return self._run(text)

    def _run(self, text: str, params: Mapping | None = None, source_columns: Sequence[str] | None = None
             ) -> pa.Table:
        """Run ``text`` inside a read-only transaction that is always rolled back.

        ``source_columns``: ``text`` filters the result of the user's SQL, whose columns these are
        (an unknown column is then reported against them, not against ``models``).
        """
        try:
            self.con.execute(_BEGIN_READ_ONLY)
        except duckdb.Error as e:
            raise QueryError(f"cannot start a read-only query on {self.label}: {_first_lines(e)}") from e
        try:
            rel = self.con.sql(text, params=dict(params)) if params else self.con.sql(text)
            return rel.to_arrow_table()
        except duckdb.TransactionException as e:
            if "read-only" not in str(e):
                raise QueryError(f"query failed: {_first_lines(e)}") from e
            raise QueryError(_WRITE_REFUSED) from e
        except duckdb.BinderException as e:
            raise self._binder_error(e, source_columns) from e
        except duckdb.ParserException as e:
            raise QueryError(f"SQL syntax error: {_first_lines(e)}") from e
        except duckdb.CatalogException as e:
            if _IN_PLACE_WRITE.search(str(e)):
                raise QueryError(_WRITE_REFUSED) from e
            msg = _first_lines(e, 1).rstrip(".!")
            raise QueryError(f"{msg}. Queries see one table, `{TABLE}`, with columns: "
                             f"{', '.join(self.columns)}") from e
        except duckdb.PermissionException as e:
            raise QueryError(
                f"not allowed: {_first_lines(e, 1).rstrip('.')}. Queries can only read the table "
                f"`{TABLE}`; file access, ATTACH and extensions are disabled") from e
        except duckdb.Error as e:
            if _IN_PLACE_SOURCE in str(e):  # an in-place engine could not read a part
                raise QueryError(f"cannot read the zoo's Parquet metadata: {_first_lines(e)}; "
                                 f"run `zoo verify`") from e
            raise QueryError(f"query failed: {_first_lines(e)}") from e
        finally:
            try:
                self.con.execute("ROLLBACK")
            except duckdb.Error:  # pragma: no cover - nothing to undo, and nothing was written
                pass

    def _binder_error(self, e: Exception, source_columns: Sequence[str] | None = None) -> QueryError:
        text = str(e)
        if "data-modifying" in text or _IN_PLACE_WRITE.search(text):
            # DuckDB refuses writing CTEs that are not at the top level, and writes to a view
            return QueryError(_WRITE_REFUSED)
        m = re.search(r'(?:Referenced column|does not have a column named) "([^"]+)"', text)
        if m and source_columns is not None:
            return QueryError(_unknown_in_result([m.group(1)], source_columns))
        if m:
            return QueryError(
                f"unknown column {m.group(1)!r}; the columns of `{TABLE}` are: "
                f"{', '.join(self.columns)}")
        return QueryError(f"query failed: {_first_lines(e)}")

    def build_select(self, where: str | None = None, order_by: str | None = None,
                     limit: int | None = None, columns: Sequence[str] | None = None,
                     source: str | None = None) -> str:
        """The SQL for a shortcut query (see :meth:`select`).

        Args:
            source: a SQL query to filter instead of the whole table (wrapped as a subquery).

        Raises:
            QueryError: an unknown column in ``columns``, ``where`` or ``order_by``; with
                ``source``, the message says they filter its result and lists its columns.
        """
        source_columns = None
        if source is not None:
            # only binds the SQL (no rows are read): errors in it are reported against `models`
            described = self._run(f"DESCRIBE {check_statement(source)}")
            source_columns = described.column("column_name").to_pylist()
        if columns:
            if source_columns is not None:
                unknown = [c for c in columns if c not in source_columns]
                if unknown:
                    raise QueryError(_unknown_in_result(unknown, source_columns))
            else:
                unknown = [c for c in columns if c not in self.columns]
                if unknown:
                    raise QueryError(
                        f"unknown column(s) {', '.join(map(repr, unknown))}; the columns of "
                        f"`{TABLE}` are: {', '.join(self.columns)}")
            cols = ", ".join(sql_ident(c) for c in columns)
        else:
            cols = "*"
        frm = TABLE if source is None else f"({check_statement(source)}) AS q"
        sql = f"SELECT {cols} FROM {frm}"
        if where and where.strip():
            sql += f"\nWHERE {where}"
        if order_by and order_by.strip():
            sql += f"\nORDER BY {order_by}"
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise QueryError(f"limit must be a non-negative integer, got {limit!r}")
            sql += f"\nLIMIT {limit}"
        if source_columns is not None and (where or order_by):
            self._run(f"DESCRIBE {sql}", source_columns=source_columns)  # an unknown column, named clearly
        return sql

    def select(self, where: str | None = None, order_by: str | None = None,
               limit: int | None = None, columns: Sequence[str] | None = None) -> Selection:
        """Rows of ``models`` without writing SQL.

        Args:
            where: a SQL boolean expression, e.g. ``"test_acc > 0.9 AND activation = 'relu'"``
                (default: all rows).
            order_by: a SQL ordering, e.g. ``"test_acc DESC"`` (default: storage order).
            limit: at most this many rows (default: all).
            columns: the columns to return (default: all).
        """
        return self.sql(self.build_select(where, order_by, limit, columns))

    def sql(self, query: str) -> Selection:
        """Run a read-only ``SELECT`` over ``models`` and wrap its rows as a :class:`Selection`."""
        from catalog.selection import Selection

        return Selection(self.execute(query), self)

    def lookup(self, model_ids: Sequence[str], zoos: Sequence[str] | None,
               columns: Sequence[str]) -> pa.Table:
        """``columns`` of the rows with the given keys, one output row per key, in key order.

        Args:
            model_ids: the ``model_id`` of each wanted row.
            zoos: the ``zoo`` of each wanted row (multi-zoo engines), or ``None`` to match by
                ``model_id`` alone.
            columns: columns to return.

        Raises:
            QueryError: a key matches no row, or (without ``zoos``) several zoos' rows.
        """
        unknown = [c for c in columns if c not in self.columns]
        if unknown:
            raise QueryError(f"unknown column(s) {', '.join(map(repr, unknown))}; the columns of "
                             f"`{TABLE}` are: {', '.join(self.columns)}")
        if any(m is None for m in model_ids):
            raise QueryError("some rows have a NULL model_id, so their weights cannot be located")
        cols = ", ".join(f"m.{sql_ident(c)}" for c in columns)
        on = "m.model_id = q.model_id"
        keys = "unnest($ids) AS model_id"
        params: dict = {"ids": list(model_ids)}
        if zoos is not None:
            keys += f", unnest($zoos) AS {ZOO_COLUMN}"
            on += f" AND m.{ZOO_COLUMN} = q.{ZOO_COLUMN}"
            params["zoos"] = list(zoos)
        sql = (f"SELECT q.pos AS __pos, {cols} FROM (SELECT {keys}, "
               f"generate_subscripts($ids, 1) AS pos) AS q JOIN {TABLE} AS m ON {on} "
               f"ORDER BY q.pos")
        table = self._run(sql, params)
        counts = np.bincount(table.column("__pos").to_numpy(), minlength=len(model_ids) + 1)[1:]
        missing = np.flatnonzero(counts == 0)
        if len(missing):
            raise QueryError(
                f"{len(missing)} model_id(s) are not in {self.label} (e.g. "
                f"{model_ids[int(missing[0])]!r}); their weights cannot be located")
        several = np.flatnonzero(counts > 1)
        if len(several):
            raise QueryError(
                f"model_id {model_ids[int(several[0])]!r} is in several zoos; include the "
                f"`{ZOO_COLUMN}` column in the query so each row names its zoo")
        return table.drop_columns(["__pos"])

    def close(self) -> None:
        self.con.close()

    def __repr__(self) -> str:
        return f"QueryEngine({self.label})"


def query_zoos(paths: Sequence[str], sql: str) -> Selection:
    """Open several zoos and run one read-only query over their union (with a ``zoo`` column)."""
    from catalog.zoo import open_zoo

    return QueryEngine.over_zoos([open_zoo(p) for p in paths]).sql(sql)
