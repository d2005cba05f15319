"""The persistent local catalog: many zoos' metadata in one DuckDB file.

``zoo catalog add ZOO`` copies a zoo's metadata rows into the catalog file (and remembers the
zoo's path and manifest checksum); ``zoo query --catalog "SQL"`` then queries all catalogued
zoos at once, as the table ``models`` with a ``zoo`` column, without reading their Parquet
files. The file lives under the user's data directory, or where ``WEIGHTZOO_CATALOG`` (a file
path) or ``WEIGHTZOO_HOME`` (a directory) point.

Queries open the file read-only and locked down exactly like in-memory queries
(:mod:`catalog.query`). A zoo whose manifest changed since it was added is re-indexed before
the next catalog query.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import duckdb

from catalog.errors import QueryError, WeightzooError, ZooNotFoundError
from catalog.format import MANIFEST_NAME, read_manifest, sha256_file
from catalog.openers import url_scheme
from catalog.paths import safe_join
from catalog.query import TABLE, ZOO_COLUMN, QueryEngine, lock_down, parts_select, union_select
from catalog.sidecar import checked_sidecar_paths

#: Environment variable naming the catalog file itself.
ENV_CATALOG = "WEIGHTZOO_CATALOG"
#: Environment variable naming weightzoo's data directory (the catalog is ``catalog.duckdb`` in it).
ENV_HOME = "WEIGHTZOO_HOME"
CATALOG_FILE = "catalog.duckdb"
_SCHEMA = "zoo_data"


def default_catalog_path() -> Path:
    """``$WEIGHTZOO_CATALOG``, else ``$WEIGHTZOO_HOME/catalog.duckdb``, else the platform's user
    data directory for ``weightzoo`` (e.g. ``~/.local/share/weightzoo/catalog.duckdb``)."""
    if os.environ.get(ENV_CATALOG):
        return Path(os.environ[ENV_CATALOG]).expanduser()
    if os.environ.get(ENV_HOME):
        return Path(os.environ[ENV_HOME]).expanduser() / CATALOG_FILE
    from platformdirs import user_data_dir

    return Path(user_data_dir("weightzoo")) / CATALOG_FILE


@dataclass
class CatalogEntry:
    """One catalogued zoo. ``state`` is ``ok``, ``changed`` (re-indexed on the next query) or
    ``missing`` (its rows stay queryable; its weights cannot be loaded)."""

    name: str
    path: str
    rows: int
    manifest_sha256: str
    added_at: str
    state: str = "ok"


def _manifest_sha(root: Path) -> str | None:
    p = root / MANIFEST_NAME
    return sha256_file(p) if p.is_file() else None


def _table_name(name: str) -> str:
    return f"{_SCHEMA}.z_{hashlib.sha256(name.encode()).hexdigest()[:16]}"


class LocalCatalog:
    """The persistent catalog file.

    Args:
        path: the DuckDB file (default :func:`default_catalog_path`).
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else default_catalog_path()

    # ------------------------------------------------------------------------------ writing
    def _connect_rw(self) -> duckdb.DuckDBPyConnection:
        fix = f"set {ENV_HOME} (a folder) or {ENV_CATALOG} (a file) to a place you can write"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # e.g. a read-only HOME: the default catalog lives under it
            raise WeightzooError(f"cannot create the catalog's folder {self.path.parent}: {e.strerror or e}; "
                                 f"{fix}") from e
        # DuckDB writes a journal beside the file: both must be writable (its own error would
        # blame another `zoo` command)
        for what, path in (("its folder", self.path.parent), ("the file", self.path)):
            if path.exists() and not os.access(path, os.W_OK | (os.X_OK if path.is_dir() else 0)):
                raise WeightzooError(f"cannot write the catalog {self.path}: {what} {path} is not writable; {fix}")
        try:
            con = duckdb.connect(str(self.path))
        except duckdb.Error as e:
            raise WeightzooError(
                f"cannot open the catalog {self.path} for writing ({str(e).splitlines()[0]}); "
                f"is another `zoo` command using it? Set {ENV_CATALOG} to use another file") from e
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {_SCHEMA}")
        con.execute("CREATE TABLE IF NOT EXISTS zoos (name VARCHAR PRIMARY KEY, path VARCHAR, "
                    "rows BIGINT, manifest_sha256 VARCHAR, added_at VARCHAR)")
        return con

    def add(self, zoo_path: str | os.PathLike, name: str | None = None) -> CatalogEntry:
        """Index a zoo (or re-index it, if that name already holds the same path).

        Args:
            zoo_path: the zoo directory.
            name: the name queries see in the ``zoo`` column (default: the zoo's own name).

        Raises:
            WeightzooError: ``zoo_path`` is a URL (the catalog indexes local directories);
                ``name`` is taken by a zoo at another path; the zoo is already catalogued under
                another name (its rows would be counted twice); or a column's type clashes with
                another zoo's (see :func:`catalog.query.union_select`).
        """
        if url_scheme(str(zoo_path)) is not None:
            # the catalog remembers a path to load weights from later: a URL has none
            raise WeightzooError(
                f"the catalog indexes local zoo directories, not URLs like {str(zoo_path)!r}; download "
                f"the zoo first (`zoo pull ORG/NAME --out DIR`), then `zoo catalog add DIR`")
        root = Path(zoo_path).resolve()
        manifest = read_manifest(root)
        name = name or manifest.name
        if not name.strip():
            raise WeightzooError("a catalog name cannot be empty")
        con = self._connect_rw()
        try:
            row = con.execute("SELECT path FROM zoos WHERE name = ?", [name]).fetchone()
            if row is not None and row[0] != str(root):
                raise WeightzooError(
                    f"the catalog already has a zoo named {name!r} (at {row[0]}); pass --name to "
                    f"add {root} under another name, or `zoo catalog remove {name}` first")
            other = con.execute("SELECT name FROM zoos WHERE path = ? AND name <> ?", [str(root), name]).fetchone()
            if other is not None:
                # two names for one directory would put each of its rows in `models` twice
                raise WeightzooError(
                    f"{root} is already in the catalog as {other[0]!r}; re-index it with "
                    f"`zoo catalog add {root} --name {other[0]}`, or `zoo catalog remove {other[0]}` "
                    f"first to catalogue it as {name!r}")
            return self._index(con, name, root)
        finally:
            con.close()

    def _index(self, con: duckdb.DuckDBPyConnection, name: str, root: Path) -> CatalogEntry:
        manifest = read_manifest(root)
        parts = [safe_join(root, f.path, "part") for f in manifest.part_files()]
        for p in parts:
            if not p.is_file():
                raise WeightzooError(f"{p} is listed in the manifest but missing; run `zoo verify {root}`")
        sha = _manifest_sha(root) or ""
        table = _table_name(name)
        sidecars = [str(p) for p in checked_sidecar_paths(root, manifest)]
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(f"CREATE OR REPLACE TABLE {table} AS "
                        f"{parts_select([str(p) for p in parts], sidecar_paths=sidecars)}")
            rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            con.execute("DELETE FROM zoos WHERE name = ?", [name])
            added = time.strftime("%Y-%m-%dT%H:%M:%S")
            con.execute("INSERT INTO zoos VALUES (?, ?, ?, ?, ?)", [name, str(root), rows, sha, added])
            self._rebuild_view(con)
            con.execute("COMMIT")
        except WeightzooError as e:  # e.g. a column whose type clashes with another zoo's
            con.execute("ROLLBACK")
            raise WeightzooError(f"cannot add {root} to the catalog {self.path}: {e}") from e
        except duckdb.Error as e:
            con.execute("ROLLBACK")
            raise WeightzooError(f"cannot index {root}: {str(e).splitlines()[0]}; run `zoo verify {root}`") from e
        return CatalogEntry(name, str(root), rows, sha, added)

    def _rebuild_view(self, con: duckdb.DuckDBPyConnection) -> None:
        names = [r[0] for r in con.execute("SELECT name FROM zoos ORDER BY name").fetchall()]
        if names:
            body = union_select(con, {n: f"SELECT * FROM {_table_name(n)}" for n in names}, zoo_column=True)
        else:
            body = f"SELECT NULL::VARCHAR AS {ZOO_COLUMN} WHERE false"
        con.execute(f"CREATE OR REPLACE VIEW {TABLE} AS {body}")

    def remove(self, name: str) -> None:
        """Forget a zoo (its files are not touched).

        Raises:
            WeightzooError: no zoo of that name (the message lists the names).
        """
        con = self._connect_rw()
        try:
            if con.execute("SELECT 1 FROM zoos WHERE name = ?", [name]).fetchone() is None:
                names = [r[0] for r in con.execute("SELECT name FROM zoos ORDER BY name").fetchall()]
                raise WeightzooError(
                    f"no zoo named {name!r} in the catalog {self.path}; catalogued: "
                    f"{', '.join(names) or 'none'}")
            con.execute("BEGIN TRANSACTION")
            con.execute(f"DROP TABLE IF EXISTS {_table_name(name)}")
            con.execute("DELETE FROM zoos WHERE name = ?", [name])
            self._rebuild_view(con)
            con.execute("COMMIT")
        finally:
            con.close()

    # ------------------------------------------------------------------------------ reading
    def list(self) -> list[CatalogEntry]:
        """The catalogued zoos, by name, with their current state."""
        if not self.path.is_file():
            return []
        con = self._connect_ro()
        try:
            rows = con.execute("SELECT name, path, rows, manifest_sha256, added_at FROM zoos "
                               "ORDER BY name").fetchall()
        finally:
            con.close()
        out = []
        for name, path, n, sha, added in rows:
            current = _manifest_sha(Path(path))
            state = "missing" if current is None else ("ok" if current == sha else "changed")
            out.append(CatalogEntry(name, path, n, sha, added, state))
        return out

    def refresh(self) -> list[str]:
        """Re-index every zoo whose manifest changed since it was added; returns their names."""
        stale = [e for e in self.list() if e.state == "changed"]
        if not stale:
            return []
        con = self._connect_rw()
        try:
            for e in stale:
                self._index(con, e.name, Path(e.path))
        finally:
            con.close()
        return [e.name for e in stale]

    def _connect_ro(self) -> duckdb.DuckDBPyConnection:
        try:
            return duckdb.connect(str(self.path), read_only=True)
        except duckdb.Error as e:
            raise WeightzooError(
                f"cannot open the catalog {self.path} ({str(e).splitlines()[0]}); is another "
                f"`zoo catalog` command writing it?") from e

    def engine(self, refresh: bool = True) -> QueryEngine:
        """A read-only :class:`QueryEngine` over every catalogued zoo.

        Args:
            refresh: first re-index zoos whose manifest changed (default ``True``).

        Raises:
            QueryError: the catalog is empty.
        """
        entries = self.list()
        if not entries:
            raise QueryError(
                f"the catalog {self.path} is empty; add zoos with `zoo catalog add ZOO` (set "
                f"{ENV_CATALOG} or {ENV_HOME} to use another catalog)")
        if refresh:
            try:
                self.refresh()
            except WeightzooError as e:
                warnings.warn(f"could not re-index changed zoos ({e}); querying the old index",
                              stacklevel=2)
        for e in entries:
            if e.state == "missing":
                warnings.warn(f"zoo {e.name!r} is gone from {e.path}; its rows come from the "
                              f"index and its weights cannot be loaded", stacklevel=2)
        con = self._connect_ro()
        lock_down(con)
        paths = {e.name: e.path for e in entries}
        opened: dict = {}

        def resolve(name: str | None):
            from catalog.zoo import Zoo

            if name is None:
                raise QueryError("rows of a catalog query need their `zoo` column to load weights")
            if name not in paths:
                raise QueryError(f"no zoo named {name!r} in the catalog; catalogued: "
                                 f"{', '.join(sorted(paths))}")
            if name not in opened:
                if not Path(paths[name]).is_dir():
                    raise ZooNotFoundError(
                        f"zoo {name!r} was catalogued from {paths[name]}, which no longer exists; "
                        f"`zoo catalog remove {name}`, or add it again from its new place")
                opened[name] = Zoo(paths[name])
            return opened[name]

        return QueryEngine(con, resolve, True, f"the catalog {self.path}")

