"""Sidecar tables: columns computed after a zoo was built, stored with it.

Analysis metrics (``zoo analyze``) and model embeddings (``zoo embed``) are tables keyed by
``model_id``, one Parquet file each at ``<group>/<name>.parquet`` (:data:`SIDECAR_TEMPLATE`,
groups :data:`SIDECAR_GROUPS`). Like parts and shards they are listed in ``zoo.json`` with
their sha256, so ``zoo verify`` checks them and ``zoo push`` / ``zoo pull`` carry them (a
partial pull keeps the rows of the pulled models). Queries see their columns joined into the
``models`` table (a left join on ``model_id``: a model without a value gets NULL), and so do
:attr:`Zoo.table <catalog.zoo.Zoo.table>` and selections.

Writing is one mechanism for every producer: :func:`write_sidecar` takes the zoo's write lock
(or is given it by a producer that holds it for its whole run), merges the new rows into the
table (a row of a model already there replaces it: a re-run updates), writes the file
atomically and then the manifest. :func:`delete_sidecar` removes a table (``zoo drop``). A
column may appear in only one place: a sidecar column named like a metadata column or a column
of another sidecar is refused.

The file is renamed into place before the manifest lists its new sha256, so an interruption
between the two leaves a file that the manifest does not describe. Producers therefore read
their stored rows with :func:`stored_sidecar`, which takes such a file for absent: its rows are
computed again and the table is rewritten, and the manifest with it (never trusted, never left
as it is).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from catalog.errors import WeightzooError, ZooFormatError
from catalog.format import (
    SIDECAR_GROUPS,
    SIDECAR_TEMPLATE,
    FileEntry,
    Manifest,
    atomic_path,
    read_manifest,
    read_parquet,
    sha256_file,
    write_manifest,
)
from catalog.lock import ZooLock
from catalog.paths import check_name, safe_join

#: The key column of every sidecar table.
KEY = "model_id"


def sidecar_path(group: str, name: str) -> str:
    """The zoo-relative path of the sidecar table ``name`` in ``group``, validated."""
    if group not in SIDECAR_GROUPS:
        raise WeightzooError(f"unknown sidecar group {group!r}; valid groups: {', '.join(SIDECAR_GROUPS)}")
    check_name(name, "sidecar table name")
    return SIDECAR_TEMPLATE.format(group=group, name=name)


#: The command that writes each group's tables.
SIDECAR_WRITERS = {"analysis": "zoo analyze", "embeddings": "zoo embed"}


def missing_sidecar_fix(root: str | os.PathLike, rel: str) -> str:
    """What to do about the listed sidecar table ``rel`` whose file is gone: it is derived
    data, so drop its entry and compute it again (every reader of the zoo joins it, so nothing
    else runs while it is listed)."""
    group = rel.partition("/")[0]
    return (f"`zoo drop {root} {rel.removesuffix('.parquet')}` removes its entry, then "
            f"`{SIDECAR_WRITERS.get(group, 'the command that wrote it')}` computes it again "
            f"(or pull the zoo again)")


def existing_sidecar_path(root: str | os.PathLike, rel: str) -> Path:
    """The file of the listed sidecar table ``rel``, checked to lie in the zoo and exist."""
    path = safe_join(Path(root), rel, "sidecar table")
    if not path.is_file():
        raise ZooFormatError(f"sidecar table {rel} is listed in the manifest but missing from {root}; "
                             f"{missing_sidecar_fix(root, rel)}")
    return path


def checked_sidecar_paths(root: str | os.PathLike, manifest: Manifest) -> list[Path]:
    """The files of the zoo's listed sidecar tables, for SQL that joins them into ``models``
    (:mod:`catalog.query`, the persistent catalog), checked as :func:`read_sidecar_file` and
    :func:`join_sidecars` check the tables they join, from the files' keys and schemas alone.

    SQL's ``LEFT JOIN ... USING (model_id)`` checks nothing itself: it repeats a model's row
    once per copy of its id in a sidecar (every row of ``zoo query`` and ``select()`` doubled),
    and renames a sidecar column named like a column of ``models`` (``sha256`` -> ``sha256_1``),
    where :attr:`Zoo.table <catalog.zoo.Zoo.table>` and ``zoo verify`` refuse the zoo.

    Raises:
        ZooFormatError: a listed file is missing or not Parquet, its ``model_id`` is not a
            unique string key, or a column of it is a column of the metadata parts or of an
            earlier sidecar.
    """
    root = Path(root)
    if not manifest.sidecar_files():
        return []  # nothing to check: no part footer need be read
    taken: dict[str, str] = {}  # column -> where it is already
    for f in manifest.part_files():
        schema = read_parquet(safe_join(root, f.path, "metadata part"), f"metadata part {f.path}", schema_only=True)
        taken.update((name, "the models table") for name in schema.names if name not in taken)
    paths = []
    for entry in manifest.sidecar_files():
        path = existing_sidecar_path(root, entry.path)
        fix = missing_sidecar_fix(root, entry.path)
        schema = read_parquet(path, f"sidecar table {entry.path}", schema_only=True, advice=fix)
        ids = read_parquet(path, f"sidecar table {entry.path}", [KEY], advice=fix).column(KEY) \
            if KEY in schema.names else None  # (only the key column: embeddings are large)
        _check_sidecar(schema, ids, entry.path, fix)
        for name in schema.names:
            if name != KEY and name in taken:
                raise ZooFormatError(f"sidecar table {entry.path}: column {name!r} clashes with a column of "
                                     f"{taken[name]}; {fix}")
            taken.setdefault(name, entry.path)
        paths.append(path)
    return paths


def read_sidecar_file(root: str | os.PathLike, entry: FileEntry) -> pa.Table:
    """The table of one listed sidecar file (checked: a unique string ``model_id`` key)."""
    path = existing_sidecar_path(root, entry.path)
    table = read_parquet(path, f"sidecar table {entry.path}", advice=missing_sidecar_fix(root, entry.path))
    check_sidecar_table(table, entry.path)
    return table


def sidecar_matches(root: str | os.PathLike, entry: FileEntry) -> bool:
    """Whether the file of the listed sidecar ``entry`` is the one the manifest lists (its size
    and sha256); ``False`` for a missing file."""
    path = safe_join(Path(root), entry.path, "sidecar table")
    return path.is_file() and path.stat().st_size == entry.bytes and sha256_file(path) == entry.sha256


def stored_sidecar(root: str | os.PathLike, manifest: Manifest, rel: str, warn: bool = True) -> pa.Table | None:
    """The stored rows of the sidecar table ``rel`` for a producer that adds to it: ``None`` when
    the manifest does not list it, or when its file is not the one the manifest lists.

    A file that differs from its manifest entry is what an interrupted :func:`write_sidecar`
    leaves (the new file renamed in, the manifest not yet written), or a file changed by hand:
    neither is trusted, so its rows are computed again and written over it, which repairs the
    manifest too.

    Args:
        root: the zoo directory.
        manifest: its manifest.
        rel: the table's path, e.g. ``"analysis/cka.parquet"``.
        warn: warn when the file is set aside (default ``True``).

    Raises:
        ZooFormatError: the listed file is missing, or not a sidecar table.
    """
    entry = next((f for f in manifest.sidecar_files() if f.path == rel), None)
    if entry is None:
        return None
    existing_sidecar_path(root, rel)  # a listed file that is gone is reported with its fix
    if not sidecar_matches(root, entry):
        if warn:
            warnings.warn(f"{rel} in {root} is not the file zoo.json lists (a write was interrupted, or it was "
                          f"changed): set aside; the table is rewritten from the rows computed now (run again "
                          f"for any other columns it held)", stacklevel=2)
        return None
    return read_sidecar_file(root, entry)


def check_sidecar_table(table: pa.Table, label: str) -> None:
    """A sidecar table must have a unique, non-null string ``model_id`` and other columns."""
    _check_sidecar(table.schema, table.column(KEY) if KEY in table.column_names else None, label)


def _check_sidecar(schema: pa.Schema, ids: pa.ChunkedArray | None, label: str, fix: str = "") -> None:
    """:func:`check_sidecar_table` from a table's ``schema`` and its ``model_id`` column; ``fix``
    (what to do) ends the message."""
    problem = None
    if KEY not in schema.names or ids is None:
        problem = f"has no {KEY!r} column"
    elif not (pa.types.is_string(schema.field(KEY).type) or pa.types.is_large_string(schema.field(KEY).type)):
        problem = f"{KEY!r} must be strings, not {schema.field(KEY).type}"
    elif ids.null_count:
        problem = f"has rows without a {KEY}"
    elif pc.count_distinct(ids).as_py() != len(ids):
        problem = f"lists a {KEY} more than once"
    elif len(schema.names) < 2:
        problem = f"has no column besides {KEY!r}"
    if problem is not None:
        sep = ": " if problem.startswith("'") else " "
        raise ZooFormatError(f"sidecar table {label}{sep}{problem}" + (f"; {fix}" if fix else ""))


def sidecar_columns(root: str | os.PathLike, manifest: Manifest) -> dict[str, str]:
    """``{column: sidecar path}`` of every sidecar column of the zoo (``model_id`` excluded)."""
    out: dict[str, str] = {}
    for entry in manifest.sidecar_files():
        schema = pq.read_schema(safe_join(Path(root), entry.path, "sidecar table"))
        for name in schema.names:
            if name != KEY:
                out[name] = entry.path
    return out


def join_sidecars(models: pa.Table, sidecars: Sequence[pa.Table]) -> pa.Table:
    """``models`` with the columns of each sidecar appended, matched on ``model_id``.

    A left join that keeps ``models``' row order; models a sidecar lacks get NULLs. Done by
    index rather than Arrow's hash join, which refuses list columns (embeddings).
    """
    for side in sidecars:
        idx = pc.index_in(models.column(KEY), value_set=side.column(KEY))  # [rows], null = absent
        for name in side.column_names:
            if name == KEY:
                continue
            if name in models.column_names:
                raise ZooFormatError(f"sidecar column {name!r} clashes with a column of the models table")
            models = models.append_column(side.schema.field(name), side.column(name).take(idx))
    return models


def write_sidecar(root: str | os.PathLike, group: str, name: str, table: pa.Table,
                  command: str | None = None, lock: ZooLock | None = None) -> FileEntry:
    """Add rows to (or create) the sidecar table ``<group>/<name>.parquet`` of the zoo at ``root``.

    Rows of models already in the table replace them; the others are kept (unless the file is
    not the one the manifest lists: see :func:`stored_sidecar`). The result is written
    atomically, then the manifest lists it with its new sha256.

    Args:
        root: the zoo directory.
        group: one of :data:`~catalog.format.SIDECAR_GROUPS` (``analysis``, ``embeddings``).
        name: the table's name (a file name: letters, digits, ``.``, ``_``, ``-``).
        table: ``model_id`` (string) plus the columns to store.
        command: what is writing, shown to another writer refused by the zoo lock.
        lock: the zoo's lock, when the caller holds it for a longer run (``zoo analyze`` and
            ``zoo embed`` take it before they compute, so that a zoo being written by another
            process fails before the work, not after); default: taken for this write.

    Returns:
        the table's manifest entry.

    Raises:
        WeightzooError: a bad group or name, a table without ``model_id`` or with duplicate
            ids, ids that are not models of the zoo, a column that already exists elsewhere
            in the zoo, or new columns whose types differ from the stored table's.
    """
    root = Path(root)
    rel = sidecar_path(group, name)
    check_sidecar_table(table, rel)
    with _held(root, lock, command):
        manifest = read_manifest(root)
        _check_ids(root, manifest, table, rel)
        _check_columns(root, manifest, table, rel)
        # Rows stored by a write that was interrupted before its manifest are not kept (see
        # stored_sidecar): the table starts again from the new rows, and the manifest follows.
        old = stored_sidecar(root, manifest, rel, warn=False)
        if old is not None:
            table = _merge(old, table, rel)
        target = safe_join(root, rel, "sidecar table")
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        entry = FileEntry(rel, sha256_file(target), target.stat().st_size, table.num_rows, "sidecar")
        manifest.files = [f for f in manifest.files if f.path != rel] + [entry]
        write_manifest(root, manifest)
    return entry


def check_sidecar_writable(root: str | os.PathLike, group: str) -> None:
    """Refuse, before any work, a zoo whose sidecar tables of ``group`` cannot be written: the
    zoo directory (the manifest is replaced there) or an existing ``<group>/`` folder is not
    writable. (Holding the zoo's :class:`~catalog.lock.ZooLock` proves the zoo directory is.)

    Raises:
        WeightzooError: naming the folder and what to do.
    """
    for folder in (Path(root), Path(root) / group):
        if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
            raise WeightzooError(f"cannot write the zoo's {folder} (its permissions, or a read-only file system): "
                                 f"make it writable, or work on a copy of the zoo")


@contextmanager
def _held(root: Path, lock: ZooLock | None, command: str | None) -> Iterator[ZooLock]:
    """``lock`` if the caller holds the lock of ``root``, else a new lock held for the block."""
    if lock is None:
        with ZooLock(root, command) as taken:
            yield taken
        return
    if not lock.held or lock.root.resolve() != root.resolve():
        raise RuntimeError(f"write_sidecar got a lock of {lock.root} ({'held' if lock.held else 'released'}), "
                           f"not the held lock of {root}")
    yield lock


def delete_sidecar(root: str | os.PathLike, table: str, command: str | None = None) -> FileEntry:
    """Remove the sidecar table ``table`` (``"<group>/<name>"``, e.g. ``"analysis/cka"``, with or
    without ``.parquet``) from the zoo at ``root``: its columns leave the ``models`` table.

    The manifest stops listing it first, then the file goes, so an interruption leaves at most
    an unlisted file, never a listed one that is missing.

    Returns:
        the removed table's manifest entry.

    Raises:
        WeightzooError: a malformed name, or no such table (the message lists the zoo's tables).
    """
    root = Path(root)
    group, sep, name = table.removesuffix(".parquet").partition("/")
    if not sep:
        raise WeightzooError(f"sidecar table {table!r} is not <group>/<name> (e.g. analysis/cka); groups: "
                             f"{', '.join(SIDECAR_GROUPS)}")
    rel = sidecar_path(group, name)
    with ZooLock(root, command):
        manifest = read_manifest(root)
        entry = next((f for f in manifest.sidecar_files() if f.path == rel), None)
        if entry is None:
            listed = [f.path.removesuffix(".parquet") for f in manifest.sidecar_files()]
            raise WeightzooError(f"zoo at {root} has no sidecar table {rel}; its tables: "
                                 f"{', '.join(listed) or 'none'}")
        target = safe_join(root, rel, "sidecar table")
        manifest.files = [f for f in manifest.files if f.path != rel]
        write_manifest(root, manifest)
        target.unlink(missing_ok=True)
    return entry


def _check_ids(root: Path, manifest: Manifest, table: pa.Table, rel: str) -> None:
    parts = [pq.read_table(safe_join(root, f.path, "metadata part"), columns=[KEY])
             for f in manifest.part_files()]
    known = pa.concat_tables(parts).column(KEY) if parts else pa.chunked_array([], pa.string())
    unknown = pc.filter(table.column(KEY), pc.invert(pc.is_in(table.column(KEY), value_set=known)))
    if len(unknown):
        raise WeightzooError(
            f"{rel}: {len(unknown)} model_id(s) are not models of this zoo, e.g. "
            f"{unknown[0].as_py()!r}; compute the table from this zoo's rows")


def _check_columns(root: Path, manifest: Manifest, table: pa.Table, rel: str) -> None:
    model_columns: set[str] = set()
    for f in manifest.part_files():
        model_columns.update(pq.read_schema(safe_join(root, f.path, "metadata part")).names)
    elsewhere = {c: p for c, p in sidecar_columns(root, manifest).items() if p != rel}
    for column in table.column_names:
        if column == KEY:
            continue
        if column in model_columns:
            raise WeightzooError(f"{rel}: column {column!r} is already a metadata column of the zoo; "
                                 f"name it differently")
        if column in elsewhere:
            raise WeightzooError(f"{rel}: column {column!r} is already stored in {elsewhere[column]}; "
                                 f"name it differently")


def _merge(old: pa.Table, new: pa.Table, rel: str) -> pa.Table:
    """``old`` rows not in ``new``, then ``new``; columns are the union (absent -> NULL)."""
    for name in set(old.column_names) & set(new.column_names):
        a, b = old.schema.field(name).type, new.schema.field(name).type
        if a != b:
            raise WeightzooError(f"{rel}: column {name!r} is stored as {a} but the new rows have {b}; "
                                 f"keep the type (or delete the table to recompute it)")
    kept = old.filter(pc.invert(pc.is_in(old.column(KEY), value_set=new.column(KEY))))
    return pa.concat_tables([kept, new], promote_options="default")
