"""Writing zoos: :class:`ZooWriter` appends (weights, metadata) parts atomically.

Every part is one safetensors shard (one architecture, rows stacked) plus one Parquet file of
its metadata rows. Both are written under a temp name and renamed; the manifest, which lists
every file with its sha256, is rewritten last. A file that is not in the manifest is not part of
the zoo, so a crash at any point leaves the zoo readable and a later writer resumes it.

A writer holds the zoo's :class:`~catalog.lock.ZooLock` from creation to :meth:`ZooWriter.finish`
or :meth:`ZooWriter.close`, so two writers never interleave. A new zoo's manifest (empty,
``complete: false``) is written at once, so the directory is recognisably this zoo from the
first moment. On resume, :meth:`ZooWriter.repair` checks every listed file against the manifest
and drops the damaged ones (with the files written together with them), so their runs are
written again.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from torch import Tensor

from catalog.errors import WeightzooError, ZooFormatError
from catalog.format import (
    CARD_NAME,
    CORE_COLUMNS,
    MANIFEST_NAME,
    PART_TEMPLATE,
    SHARD_TEMPLATE,
    STATUSES,
    TMP_PREFIX,
    FileEntry,
    Manifest,
    atomic_path,
    atomic_write_bytes,
    read_manifest,
    recount,
    save_safetensors,
    sha256_file,
    write_manifest,
)
from catalog.loading import stacked_sha256
from catalog.lock import LOCK_NAME, ZooLock
from catalog.network import NetworkSpec
from catalog.paths import check_name, safe_dir, safe_join


@dataclass(frozen=True)
class Repair:
    """A listed file that a resume drops from the zoo, and why (its runs are written again).

    Args:
        path: the zoo-relative path.
        reason: e.g. ``"missing"``, ``"sha256 ... does not match the manifest"``, or
            ``"written with models/part-00003.parquet, which is dropped"``.
    """

    path: str
    reason: str


class ZooWriter:
    """Create a zoo directory, or reopen one to add to it; one writer per directory at a time.

    The lock is taken before anything is read or removed, and held until :meth:`finish` or
    :meth:`close` (or the end of a ``with`` block). A directory holding only this format's
    files without a manifest (a crash before the first manifest write) is reused.

    Args:
        root: the zoo directory.
        name: the zoo's name.
        spec: the build spec as a JSON-able dict (stored in the manifest; compared on reopen).
        datasets: facts about the datasets used, stored in the manifest (default none).
        command: what this writer is doing, shown to a writer refused by the lock (default:
            this process's command line).

    Raises:
        ZooLockedError: another process (or another writer) is writing ``root``.
        WeightzooError: ``root`` holds a different zoo (another name or spec), or a directory
            that is not empty and holds files that are not this format's.
    """

    def __init__(self, root: str | os.PathLike, name: str, spec: Mapping,
                 datasets: Mapping[str, dict] | None = None, command: str | None = None) -> None:
        self.root = Path(root)
        spec = dict(spec)
        self._lock = ZooLock(self.root, command)
        try:
            manifest = existing_manifest(self.root, name, spec)
            if manifest is None:
                manifest = Manifest(name=name, spec=spec, datasets=dict(datasets or {}))
                write_manifest(self.root, manifest)
            self.manifest = manifest
            # What finish() compares with: a finished zoo left as it was is not written again.
            self._opened = manifest.to_dict()
            self.remove_strays()
        except BaseException:
            self._lock.release()
            raise

    def close(self) -> None:
        """Release the lock (idempotent). What was written stays; an unfinished zoo resumes."""
        self._lock.release()

    def __enter__(self) -> ZooWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------ state
    def remove_strays(self) -> list[Path]:
        """Delete temp files and data files the manifest does not list (left by a crash)."""
        listed = {f.path for f in self.manifest.files}
        removed = []
        for sub in ("models", "weights"):
            # Checked first: through a symbolic link this would delete files outside the zoo.
            base = safe_dir(self.root, sub, "data folder")
            if not base.exists():
                continue
            for p in sorted(base.rglob("*")):
                if p.is_file() and p.relative_to(self.root).as_posix() not in listed:
                    p.unlink()
                    removed.append(p)
        for p in self.root.glob(TMP_PREFIX + "*"):
            p.unlink()
            removed.append(p)
        return removed

    def done_run_ids(self) -> set[str]:
        """run_ids whose rows are already in the zoo."""
        return read_run_ids(self.root, self.manifest.part_files())

    def done_model_ids(self) -> set[str]:
        """model_ids whose rows are already in the zoo (a resumed import skips them)."""
        return read_distinct(self.root, self.manifest.part_files(), ["model_id"])["model_id"]

    def repair(self) -> list[Repair]:
        """Drop every listed file that is missing or does not match its size and sha256, with
        the files written together with it (a part and its shard), from the manifest and the
        disk; fix the counts and mark the zoo unfinished. The dropped rows' runs are then no
        longer done, so a resumed build trains them again.

        Returns:
            what was dropped, in manifest order (empty when every file is intact).
        """
        self._check_open()
        repairs = find_damaged(self.root, self.manifest)
        if not repairs:
            return []
        dropped = {r.path for r in repairs}
        self.manifest.files = [f for f in self.manifest.files if f.path not in dropped]
        self.manifest.complete = False
        self._recount()
        write_manifest(self.root, self.manifest)
        self.remove_strays()
        return repairs

    def _recount(self) -> None:
        """Rows, runs and statuses from the parts the manifest lists."""
        tables = (pq.read_table(safe_join(self.root, f.path, "part"), columns=["run_id", "status"])
                  for f in self.manifest.part_files())
        self.manifest.counts = recount(self.manifest.counts, tables, len(self.manifest.architectures))

    def _check_open(self) -> None:
        if not self._lock.held:
            raise RuntimeError(f"this ZooWriter of {self.root} is closed (finish() or close() was called)")

    def add_architecture(self, spec: NetworkSpec) -> str:
        arch_id = check_name(spec.arch_id, "arch_id", "rename the architecture's family")  # weights/<arch_id>/
        self.manifest.architectures.setdefault(arch_id, spec.to_dict())
        # The lowest version that holds every architecture: chain-only zoos stay version 1.
        self.manifest.format_version = max(self.manifest.format_version, spec.format_version)
        return arch_id

    # ------------------------------------------------------------------------------ writing
    def write_part(self, arch_id: str, weights: Mapping[str, Tensor], rows: Sequence[Mapping],
                   schema: pa.Schema | None = None) -> None:
        """Append ``len(rows)`` models of one architecture.

        Args:
            arch_id: an architecture added with :meth:`add_architecture`.
            weights: ``{param name: Tensor[N, *shape]}`` for every parameter of the spec.
            rows: ``N`` metadata dicts; each needs ``model_id``, ``run_id``, ``checkpoint`` and
                ``status``; the writer fills ``arch_id``, ``n_params``, ``weights_shard``,
                ``weights_row`` and ``sha256``.
            schema: optional Arrow schema for the non-core columns (types inferred otherwise).
        """
        self._check_open()
        net = self.manifest.network_spec(arch_id)
        names = net.param_names
        missing = [n for n in names if n not in weights]
        if missing:
            raise ZooFormatError(f"write_part: weights lack parameters {missing}")
        n = len(rows)
        for p in net.params:
            t = weights[p.name]
            if tuple(t.shape) != (n, *p.shape):
                raise ZooFormatError(
                    f"write_part: {p.name} has shape {tuple(t.shape)}, expected {(n, *p.shape)}")
        for r in rows:
            if r.get("status") not in STATUSES:
                raise ZooFormatError(f"row {r.get('model_id')}: status must be one of {STATUSES}")

        # The first free names: after a repair dropped a file, its name is free again.
        listed = {f.path for f in self.manifest.files}
        shard_rel = _first_free(SHARD_TEMPLATE, listed, arch_id=arch_id)
        part_rel = _first_free(PART_TEMPLATE, listed)

        tensors = {k: weights[k].detach().to(net.torch_dtype).contiguous().cpu() for k in names}
        checksums = stacked_sha256([tensors[k] for k in names])
        full_rows = []
        for i, r in enumerate(rows):
            full_rows.append({**r, "arch_id": arch_id, "n_params": net.n_params,
                              "weights_shard": shard_rel, "weights_row": i, "sha256": checksums[i]})
        table = _rows_to_table(full_rows, schema)

        with atomic_path(safe_join(self.root, shard_rel, "weight shard")) as tmp:
            save_safetensors(tensors, tmp, {"arch_id": arch_id, "rows": str(n)})
            shard_entry = FileEntry(shard_rel, sha256_file(tmp), tmp.stat().st_size, n, "shard", arch_id)
        with atomic_path(safe_join(self.root, part_rel, "part")) as tmp:
            pq.write_table(table, tmp, compression="zstd")
            part_entry = FileEntry(part_rel, sha256_file(tmp), tmp.stat().st_size, n, "part", arch_id)
        # The manifest goes last: only now do the two files become part of the zoo.
        self.manifest.files += [shard_entry, part_entry]
        counts = self.manifest.counts
        counts["rows"] = counts.get("rows", 0) + n
        counts["runs"] = counts.get("runs", 0) + len({r["run_id"] for r in rows})
        counts["architectures"] = len(self.manifest.architectures)
        for r in rows:
            key = f"status_{r['status']}"
            counts[key] = counts.get(key, 0) + 1
        write_manifest(self.root, self.manifest)

    def finish(self, card: str | None = None) -> Manifest:
        """Write the zoo's dataset card, mark the zoo complete and release the lock.

        The card is written before the manifest that marks the zoo complete: a card that cannot
        be rendered leaves the zoo unfinished (``zoo build`` again finishes it), never a zoo
        marked complete without its ``README.md``.

        A zoo that was complete when this writer opened it and whose manifest is still the same
        (a rebuild that trained nothing: no part written, nothing repaired) is left untouched, so
        a no-op build keeps every file's bytes and mtime, and a card written by an older weightzoo
        (a v1 zoo's) stays as it is. Only a missing card, or a ``card`` given that differs from
        the one on disk, is written then.
        """
        from catalog.card import render_card  # local: the card reads the finished zoo

        self._check_open()
        try:
            card_path = self.root / CARD_NAME
            done = replace(self.manifest, complete=True)  # written only once the card is
            if done.to_dict() == self._opened:
                if not card_path.is_file() or (card is not None and card_path.read_bytes() != card.encode()):
                    text = card if card is not None else render_card(self.root, manifest=done)
                    atomic_write_bytes(card_path, text.encode())
                self.manifest = done
                return self.manifest
            text = card if card is not None else render_card(self.root, manifest=done)
            atomic_write_bytes(card_path, text.encode())
            write_manifest(self.root, done)  # last: only now is the zoo complete
            self.manifest = done
        finally:
            self.close()
        return self.manifest


# ================================================================================ resuming
def existing_manifest(root: Path, name: str, spec: Mapping) -> Manifest | None:
    """The manifest a writer of zoo ``name`` built from ``spec`` resumes at ``root``, or ``None``
    to start afresh. Read-only.

    Raises:
        WeightzooError: ``root`` holds another zoo with data, or files not of this format.
    """
    if (root / MANIFEST_NAME).is_file():
        manifest = read_manifest(root)
        if manifest.name == name and manifest.spec == dict(spec):
            return manifest
        if manifest.files or manifest.complete:
            what = "name" if manifest.name != name else "spec"
            raise WeightzooError(
                f"{root} already holds zoo {manifest.name!r} built from a different {what}; "
                f"choose another output directory, or delete {root} to rebuild it")
        return None  # a zoo that never got any data: nothing to lose by starting over
    foreign = _foreign_files(root)
    if foreign:
        raise WeightzooError(
            f"{root} exists, is not empty and holds no zoo (e.g. {foreign}); choose an empty or "
            f"new output directory")
    return None


def find_damaged(root: Path, manifest: Manifest) -> list[Repair]:
    """The listed files a resume must drop: missing, or not the size and sha256 the manifest
    records, plus the files written together with them (:meth:`ZooWriter.write_part` writes a
    shard and then the part whose rows point into it, and lists them in that order). Read-only.
    """
    bad: dict[str, str] = {}
    for f in manifest.files:
        p = safe_join(root, f.path, "file")
        if not p.is_file():
            bad[f.path] = "missing"
        elif (size := p.stat().st_size) != f.bytes:
            bad[f.path] = f"size {size} bytes, the manifest says {f.bytes}"
        elif (digest := sha256_file(p)) != f.sha256:
            bad[f.path] = f"sha256 {digest[:12]}... does not match the manifest's {f.sha256[:12]}..."
    if not bad:
        return []
    files = manifest.files
    for i, f in enumerate(files):  # a damaged part's shard (its own rows cannot be trusted)
        prev = files[i - 1] if i else None
        if (f.kind == "part" and f.path in bad and prev is not None and prev.kind == "shard"
                and prev.arch_id == f.arch_id and prev.rows == f.rows and prev.path not in bad):
            bad[prev.path] = f"written with {f.path}, which is dropped"
    dropped_shards = {f.path for f in manifest.shard_files() if f.path in bad}
    if dropped_shards:  # intact parts whose rows point into a dropped shard
        for f in manifest.part_files():
            if f.path in bad:
                continue
            shards = set(pq.read_table(safe_join(root, f.path, "part"), columns=["weights_shard"]).column(0)
                         .to_pylist())
            hit = sorted(shards & dropped_shards)
            if hit:
                bad[f.path] = f"written with {hit[0]}, which is dropped"
    return [Repair(f.path, bad[f.path]) for f in files if f.path in bad]


def read_run_ids(root: Path, parts: Sequence[FileEntry]) -> set[str]:
    """The run_ids of the rows in ``parts``."""
    return read_distinct(root, parts, ["run_id"])["run_id"]


def read_distinct(root: Path, parts: Sequence[FileEntry], columns: Sequence[str]) -> dict[str, set]:
    """``{column: its distinct values}`` over the rows of ``parts``, each part read once (a part
    without a column, e.g. one written before it existed, adds ``None`` to that column's set)."""
    out: dict[str, set] = {c: set() for c in columns}
    for f in parts:
        part = pq.ParquetFile(safe_join(root, f.path, "part"))  # one open: its footer gives the schema
        present = [c for c in columns if c in part.schema_arrow.names]
        table = part.read(columns=present)
        for c in columns:
            if c in present:
                out[c].update(table.column(c).to_pylist())
            else:
                out[c].add(None)
    return out


def _template_regex(template: str) -> re.Pattern:
    pattern = re.escape(template)
    pattern = pattern.replace(re.escape("{index:05d}"), r"\d+").replace(re.escape("{arch_id}"), r"[^/]+")
    return re.compile(pattern)


_DATA_FILES = (_template_regex(PART_TEMPLATE), _template_regex(SHARD_TEMPLATE))


def _foreign_files(root: Path) -> str | None:
    """The first file under ``root`` that this format would not have written, if any."""
    if not root.exists():
        return None
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_dir():
            if len(rel.parts) == 1 and rel.parts[0] not in ("models", "weights"):
                return rel.as_posix() + "/"
            continue
        ours = (p.name.startswith(TMP_PREFIX) or rel.as_posix() in (CARD_NAME, LOCK_NAME)
                or any(r.fullmatch(rel.as_posix()) for r in _DATA_FILES))
        if not ours:
            return rel.as_posix()
    return None


def _first_free(template: str, listed: set[str], **fields) -> str:
    index = 0
    while (path := template.format(index=index, **fields)) in listed:
        index += 1
    return path


def _rows_to_table(rows: Sequence[Mapping], schema: pa.Schema | None) -> pa.Table:
    columns: dict[str, list] = {}
    for key in list(CORE_COLUMNS) + [k for k in rows[0] if k not in CORE_COLUMNS]:
        columns[key] = [r.get(key) for r in rows]
    arrays, out_fields = [], []
    for key, values in columns.items():
        if key in CORE_COLUMNS:
            typ = pa.type_for_alias(CORE_COLUMNS[key])
        elif schema is not None and key in schema.names:
            typ = schema.field(key).type
        else:
            typ = None
        arr = pa.array(values, type=typ)
        arrays.append(arr)
        out_fields.append(pa.field(key, arr.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(out_fields))
