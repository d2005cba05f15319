"""Integrity checks of a zoo directory: :func:`verify_zoo` (the ``zoo verify`` command).

Checked, in order:

1. every file the manifest lists exists and has the recorded size and sha256;
2. every Parquet part has the core columns with their types, the recorded row count, known
   ``arch_id``/``status`` values, the architecture's ``n_params``, unique ``model_id`` values,
   and a ``weights_shard``/``weights_row`` that point into a listed shard of the same
   architecture (no two rows sharing one);
3. every shard holds exactly the architecture's tensors, with its dtype and shapes and the
   recorded row count;
4. every row's weights hash to its ``sha256``;
5. the manifest's ``counts`` (rows, runs, architectures, rows per status) match what the
   parts hold;
6. every sidecar table (``analysis/``, ``embeddings/``) has a unique ``model_id`` naming
   models of the zoo, the recorded row count, and columns found nowhere else in the zoo.

Problems (which make the zoo unusable or wrong) name the file or row; warnings (harmless:
leftover temp files, files the manifest does not list, shard rows no metadata row uses) do not
fail the check. ``stats/`` (normalization caches) and the dataset card are not data and are
ignored.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors import safe_open

from catalog.errors import ZooFormatError
from catalog.format import (
    CARD_NAME,
    CORE_COLUMNS,
    DATA_FOLDERS,
    MANIFEST_NAME,
    STATUSES,
    TMP_PREFIX,
    FileEntry,
    Manifest,
    core_column_problems,
    read_manifest,
    sha256_file,
)
from catalog.loading import SAFETENSORS_DTYPES, stacked_sha256
from catalog.network import NetworkSpec
from catalog.paths import safe_join
from catalog.sidecar import missing_sidecar_fix, read_sidecar_file

#: Top-level entries of a zoo directory that verification ignores (caches and the card).
IGNORED = ("stats", CARD_NAME, MANIFEST_NAME, ".cache", ".git", ".gitattributes")
#: Rows hashed per read when checking weights (bounds memory on large shards).
VERIFY_CHUNK_ROWS = 4096

#: What to do about problems, for a zoo whose origin is unknown.
REPAIR_HINT = ("run the same `zoo build` again to retrain and rewrite missing or corrupt files "
               "(built zoos), or `zoo pull` it again (pulled zoos)")

#: What to do when only sidecar tables (derived data) have problems.
SIDECAR_REPAIR_HINT = "drop each table named above with `zoo drop` and compute it again, as its line says"


def repair_hint(manifest: Manifest) -> str:
    """What to run to repair the zoo of ``manifest``: the exact ``zoo pull`` for a pulled zoo
    (its ``source`` says the repo and commit), else :data:`REPAIR_HINT`."""
    src = manifest.source
    repo, commit = src.get("repo_id"), src.get("commit")
    if not (isinstance(repo, str) and isinstance(commit, str)):
        return REPAIR_HINT
    where = src.get("pulled_where")
    where = f' --where "{where}"' if isinstance(where, str) and where else ""
    return f"pull it again into a new directory: `zoo pull {repo} --revision {commit}{where} --out DIR`"


@dataclass
class Problem:
    """One finding: the file (zoo-relative path) and, for row problems, the row's ``model_id``."""

    path: str
    message: str
    model_id: str | None = None

    def __str__(self) -> str:
        where = self.path + (f" [model_id={self.model_id}]" if self.model_id is not None else "")
        return f"{where}: {self.message}"


@dataclass
class VerifyReport:
    """The result of :func:`verify_zoo`. ``ok`` is true when there are no problems."""

    root: str
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    files_checked: int = 0
    rows_checked: int = 0
    weights_checked: int = 0
    repair_hint: str = REPAIR_HINT

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        state = "OK" if self.ok else f"{len(self.problems)} problem(s)"
        return (f"{self.root}: {state}; {self.files_checked} files, {self.rows_checked} rows, "
                f"{self.weights_checked} rows' weights checked, {len(self.warnings)} warning(s)")


def verify_zoo(root: str | os.PathLike, check_weights: bool = True,
               progress: bool = False) -> VerifyReport:
    """Check a zoo's files, rows and weights against its manifest.

    Args:
        root: the zoo directory.
        check_weights: hash every row's weights (default ``True``; the slow part).
        progress: show a progress bar over shards (default ``False``).

    Raises:
        ZooNotFoundError, ZooFormatError: there is no readable manifest (nothing else can be
            checked without it).
    """
    root = Path(root)
    manifest = read_manifest(root)
    report = VerifyReport(str(root), repair_hint=repair_hint(manifest))
    present = _check_files(root, manifest, report)
    _check_unlisted(root, manifest, report)
    shard_rows = _check_shards(root, manifest, report, present)
    used = _check_parts(root, manifest, report, present)
    _check_sidecars(root, manifest, report, present)
    for shard, n in shard_rows.items():
        unused = n - len(used.get(shard, ()))
        if unused > 0:
            report.warnings.append(Problem(shard, f"{unused} of {n} rows are used by no metadata row"))
    if check_weights:
        _check_weights(root, manifest, report, present, shard_rows, progress)
    sidecars = {f.path for f in manifest.sidecar_files()}
    if report.problems and all(p.path in sidecars for p in report.problems):
        report.repair_hint = SIDECAR_REPAIR_HINT  # derived tables: no rebuild or pull needed
    return report


# ================================================================================ files
def _check_files(root: Path, manifest: Manifest, report: VerifyReport) -> set[str]:
    """Existence, size and sha256 of every listed file; returns the files that exist (a file
    with a wrong checksum is still read by the later checks, to name its bad rows)."""
    present = set()  # (a file listed twice is refused by read_manifest already)
    for entry in manifest.files:
        report.files_checked += 1
        try:
            p = safe_join(root, entry.path, "file")
        except ZooFormatError as e:  # a symbolic link that leads out of the zoo
            report.problems.append(Problem(entry.path, str(e)))
            continue
        if not p.is_file():
            fix = missing_sidecar_fix(root, entry.path) if entry.kind == "sidecar" else "re-pull or rebuild the zoo"
            report.problems.append(Problem(entry.path, f"missing (listed in the manifest); {fix}"))
            continue
        present.add(entry.path)
        size = p.stat().st_size
        if size != entry.bytes:
            report.problems.append(Problem(entry.path, f"has {size} bytes, the manifest says {entry.bytes}"))
            continue
        digest = sha256_file(p)
        if digest != entry.sha256:
            report.problems.append(Problem(
                entry.path, f"sha256 {digest[:12]}... does not match the manifest's "
                            f"{entry.sha256[:12]}...; the file is corrupt or was modified"))
    return present


def _check_unlisted(root: Path, manifest: Manifest, report: VerifyReport) -> None:
    listed = {f.path for f in manifest.files}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if rel.parts[0] in IGNORED or not p.is_file():
            continue
        rel_s = rel.as_posix()
        if p.name.startswith(TMP_PREFIX):
            report.warnings.append(Problem(rel_s, "leftover temp file of an interrupted write (safe to delete)"))
        elif rel_s not in listed and rel.parts[0] in DATA_FOLDERS:
            report.warnings.append(Problem(rel_s, "not listed in the manifest, so not part of the zoo"))


# ================================================================================ shards
def _check_shards(root: Path, manifest: Manifest, report: VerifyReport,
                  present: set[str]) -> dict[str, int]:
    """Structure of each present shard; returns ``{shard path: rows}`` of the usable ones."""
    usable: dict[str, int] = {}
    for entry in manifest.shard_files():
        if entry.path not in present:
            continue
        spec = _spec(manifest, entry, report)
        if spec is None:
            continue
        try:
            handle = safe_open(str(safe_join(root, entry.path, "weight shard")), framework="pt")
        except Exception as e:  # safetensors raises its own error types
            report.problems.append(Problem(entry.path, f"not a readable safetensors file ({e})"))
            continue
        keys = set(handle.keys())
        wanted = spec.param_names
        bad = False
        if keys != set(wanted):
            extra, missing = sorted(keys - set(wanted)), [n for n in wanted if n not in keys]
            report.problems.append(Problem(
                entry.path, f"tensors do not match architecture {entry.arch_id}: missing {missing}, "
                            f"unexpected {extra}"))
            bad = True
        dtype = SAFETENSORS_DTYPES[spec.dtype][0]
        for p in spec.params:
            if p.name not in keys:
                continue
            sl = handle.get_slice(p.name)
            shape = tuple(sl.get_shape())
            if shape != (entry.rows, *p.shape):
                report.problems.append(Problem(
                    entry.path, f"tensor {p.name} has shape {shape}, expected {(entry.rows, *p.shape)}"))
                bad = True
            if sl.get_dtype() != dtype:
                report.problems.append(Problem(
                    entry.path, f"tensor {p.name} has dtype {sl.get_dtype()}, expected {dtype}"))
                bad = True
        if not bad:
            usable[entry.path] = entry.rows
    return usable


def _spec(manifest: Manifest, entry: FileEntry, report: VerifyReport) -> NetworkSpec | None:
    if entry.arch_id not in manifest.architectures:
        report.problems.append(Problem(entry.path, f"architecture {entry.arch_id!r} is not in the manifest"))
        return None
    try:
        return manifest.network_spec(entry.arch_id)
    except Exception as e:  # a malformed spec is reported, not raised
        report.problems.append(Problem(MANIFEST_NAME, f"architecture {entry.arch_id}: {e}"))
        return None


# ================================================================================ sidecars
def _check_sidecars(root: Path, manifest: Manifest, report: VerifyReport, present: set[str]) -> None:
    """Each sidecar table: readable, a unique ``model_id`` key naming models of the zoo, the
    recorded row count, and no column that the models table or another sidecar has too."""
    entries = [e for e in manifest.sidecar_files() if e.path in present]
    if not entries:
        return
    model_ids: set = set()
    columns: dict[str, str] = {}
    for entry in manifest.part_files():
        if entry.path in present:
            try:
                table = pq.read_table(safe_join(root, entry.path, "part"), columns=["model_id"])
            except Exception:  # reported by _check_parts
                continue
            model_ids.update(table.column("model_id").to_pylist())
            for name in pq.read_schema(safe_join(root, entry.path, "part")).names:
                columns.setdefault(name, "the models table")
    for entry in entries:
        try:
            table = read_sidecar_file(root, entry)
        except Exception as e:  # unreadable Parquet or a bad key column
            report.problems.append(Problem(entry.path, f"not a usable sidecar table ({e})"))
            continue
        if table.num_rows != entry.rows:
            report.problems.append(Problem(entry.path, f"has {table.num_rows} rows, the manifest says {entry.rows}"))
        unknown = [m for m in table.column("model_id").to_pylist() if m not in model_ids]
        if unknown:
            report.problems.append(Problem(entry.path, f"{len(unknown)} model_id(s) are not models of "
                                                       f"the zoo, e.g. {unknown[0]!r}"))
        for name in table.column_names:
            if name != "model_id" and name in columns:
                report.problems.append(Problem(entry.path, f"column {name!r} is also in {columns[name]}"))
            columns.setdefault(name, entry.path)


# ================================================================================ parts
def _check_parts(root: Path, manifest: Manifest, report: VerifyReport,
                 present: set[str]) -> dict[str, set[int]]:
    """Schema and row consistency; returns the shard rows each shard's metadata uses."""
    shards = {f.path: f for f in manifest.shard_files()}
    used: dict[str, set[int]] = {}
    ids: Counter = Counter()
    types: dict[str, tuple[pa.DataType, str]] = {}
    sizes = {}
    for arch, d in manifest.architectures.items():
        try:
            sizes[arch] = NetworkSpec.from_dict(d).n_params
        except Exception as e:  # a malformed spec is reported, not raised
            report.problems.append(Problem(MANIFEST_NAME, f"architecture {arch}: {e}"))
    total = 0
    runs: set = set()
    statuses: Counter = Counter()
    all_read = True  # counts are compared only when every part could be read
    for entry in manifest.part_files():
        if entry.path not in present:
            all_read = False
            continue
        try:
            table = pq.read_table(safe_join(root, entry.path, "part"))
        except Exception as e:  # pyarrow raises several error types for bad files
            report.problems.append(Problem(entry.path, f"not a readable Parquet file ({e})"))
            all_read = False
            continue
        if not _check_schema(entry.path, table.schema, report, types):
            all_read = False
            continue
        total += table.num_rows
        runs.update(table.column("run_id").to_pylist())
        statuses.update(table.column("status").to_pylist())
        if table.num_rows != entry.rows:
            report.problems.append(Problem(
                entry.path, f"has {table.num_rows} rows, the manifest says {entry.rows}"))
        cols = {c: table.column(c).to_pylist() for c in CORE_COLUMNS}
        ids.update(cols["model_id"])
        for i in range(table.num_rows):
            _check_row(entry.path, {c: cols[c][i] for c in cols}, manifest, sizes, shards, used,
                       report)
        report.rows_checked += table.num_rows
    for model_id, n in ids.items():
        if n > 1:
            report.problems.append(Problem("models/", f"model_id appears in {n} rows", model_id))
    _check_counts(manifest, report, total if all_read else None, runs, statuses)
    return used


def _check_counts(manifest: Manifest, report: VerifyReport, rows: int | None, runs: set,
                  statuses: Counter) -> None:
    """The manifest's ``counts`` against what the parts hold (``rows`` is ``None`` when some
    part could not be read: its problem is reported already, and the row counts cannot agree)."""
    counts = manifest.counts

    def compare(key: str, actual: int, what: str) -> None:
        if key not in counts:
            if actual:
                report.problems.append(Problem(
                    MANIFEST_NAME, f"counts.{key} is missing, but {what.format(n=actual)}"))
        elif counts[key] != actual:
            report.problems.append(Problem(
                MANIFEST_NAME, f"counts.{key} is {counts[key]}, but {what.format(n=actual)}"))

    compare("architectures", len(manifest.architectures), "the manifest lists {n} architectures")
    if rows is None:
        return
    compare("rows", rows, "the parts listed in the manifest hold {n} rows")
    compare("runs", len(runs), "the parts hold {n} runs")
    keys = {k[len("status_"):] for k in counts if k.startswith("status_")} | set(statuses)
    for status in sorted(keys, key=str):
        compare(f"status_{status}", statuses.get(status, 0),
                f"the parts hold {{n}} rows with status {status!r}")


def _check_schema(path: str, schema: pa.Schema, report: VerifyReport,
                  types: dict[str, tuple[pa.DataType, str]]) -> bool:
    problems = core_column_problems(schema)
    report.problems.extend(Problem(path, problem) for problem in problems)
    for f in schema:
        if f.name in types:
            other, where = types[f.name]
            if other != f.type and not (_numeric(other) and _numeric(f.type)) and not pa.types.is_null(f.type) \
                    and not pa.types.is_null(other):
                report.problems.append(Problem(
                    path, f"column {f.name!r} has type {f.type} here but {other} in {where}; "
                          f"queries over both parts cannot agree on its type"))
        else:
            types[f.name] = (f.type, path)
    return not problems


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _check_row(path: str, row: dict, manifest: Manifest, sizes: dict[str, int],
               shards: dict[str, FileEntry], used: dict[str, set[int]], report: VerifyReport) -> None:
    mid = row["model_id"]
    for col in CORE_COLUMNS:
        if row[col] is None:
            report.problems.append(Problem(path, f"{col} is NULL", mid))
            return
    if row["status"] not in STATUSES:
        report.problems.append(Problem(path, f"status {row['status']!r} is not one of {STATUSES}", mid))
    arch = row["arch_id"]
    if arch not in manifest.architectures:
        report.problems.append(Problem(path, f"arch_id {arch!r} is not in the manifest", mid))
        return
    n_params = sizes.get(arch)
    if n_params is not None and row["n_params"] != n_params:
        report.problems.append(Problem(path, f"n_params {row['n_params']} but {arch} has {n_params}", mid))
    shard = row["weights_shard"]
    entry = shards.get(shard)
    if entry is None:
        report.problems.append(Problem(path, f"weights_shard {shard} is not a shard the manifest lists", mid))
        return
    if entry.arch_id != arch:
        report.problems.append(Problem(
            path, f"row of {arch} points into {shard}, a shard of {entry.arch_id}", mid))
        return
    r = row["weights_row"]
    if not 0 <= r < entry.rows:
        report.problems.append(Problem(path, f"weights_row {r} is outside {shard} (0..{entry.rows - 1})", mid))
        return
    rows = used.setdefault(shard, set())
    if r in rows:
        report.problems.append(Problem(path, f"weights_row {r} of {shard} is used by another row too", mid))
    rows.add(r)


# ================================================================================ weights
def _check_weights(root: Path, manifest: Manifest, report: VerifyReport, present: set[str],
                   shard_rows: dict[str, int], progress: bool) -> None:
    wanted: dict[str, list[tuple[int, str, str]]] = {}
    for entry in manifest.part_files():
        if entry.path not in present:
            continue
        try:
            t = pq.read_table(safe_join(root, entry.path, "part"),
                              columns=["model_id", "weights_shard", "weights_row", "sha256"])
        except Exception:  # already reported by _check_parts
            continue
        if core_column_problems(t.schema, t.column_names):  # reported by _check_parts: a float
            continue  # weights_row is no row index
        for mid, shard, r, sha in zip(*(t.column(c).to_pylist() for c in t.column_names)):
            if shard in shard_rows and r is not None and 0 <= r < shard_rows[shard]:
                wanted.setdefault(shard, []).append((r, sha, mid))
    shards = {f.path: f for f in manifest.shard_files()}
    items = sorted(wanted.items())
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="verifying weights", unit="shard")
    for shard, rows in items:
        spec = manifest.network_spec(shards[shard].arch_id)
        rows.sort()
        handle = safe_open(str(safe_join(root, shard, "weight shard")), framework="pt")
        slices = [handle.get_slice(n) for n in spec.param_names]
        idx = np.array([r for r, _, _ in rows], dtype=np.int64)
        for start in range(0, shards[shard].rows, VERIFY_CHUNK_ROWS):
            stop = min(start + VERIFY_CHUNK_ROWS, shards[shard].rows)
            lo, hi = np.searchsorted(idx, [start, stop])
            if lo == hi:
                continue
            block = [sl[start:stop] for sl in slices]
            digests = stacked_sha256(block)
            for r, sha, mid in rows[lo:hi]:
                if digests[r - start] != sha:
                    report.problems.append(Problem(
                        shard, f"weights of row {r} do not match the row's sha256 (the bytes were "
                               f"changed); re-pull or rebuild the zoo", mid))
            report.weights_checked += int(hi - lo)
