"""A zoo made of some rows of another: what a partial pull (``zoo pull --where``) keeps.

The kept rows' weight shards are kept whole (byte-identical to the Hub's, so their sha256 is
unchanged); Parquet parts are filtered to the kept rows. Files are renumbered so the result
follows the path templates with no gaps (``part-00000``, ``part-00001`` ...; shards per
architecture likewise), which keeps it a regular zoo that ``zoo build`` could add to. Rows of
a kept shard that no kept metadata row uses stay in the shard; ``zoo verify`` notes them as a
warning, not a problem. Sidecar tables (analysis metrics, embeddings) keep the kept models' rows
(and their columns, as an empty table, when no kept model has a row).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from catalog.format import (
    PART_TEMPLATE,
    SHARD_TEMPLATE,
    FileEntry,
    Manifest,
    atomic_path,
    recount,
    sha256_file,
)
from catalog.paths import safe_join


def subset_zoo(src: Path, dst: Path, manifest: Manifest, model_ids: Collection[str]) -> Manifest:
    """Move the files of ``src`` that hold ``model_ids`` into ``dst`` as a zoo of those rows.

    Args:
        src: a zoo directory holding every part of ``manifest`` and every shard the kept rows
            use (files are moved out of it).
        dst: the new zoo directory (created).
        manifest: the manifest of ``src``.
        model_ids: the ``model_id`` of each row to keep.

    Returns:
        the new zoo's manifest (not yet written: the caller adds its ``source`` and writes it).

    Raises:
        ZooFormatError: a path made from the manifest (a file path, ``weights/<arch_id>/...``)
            would lead outside ``src`` or ``dst`` (every path is made with
            :func:`catalog.paths.safe_join`, whatever checked the manifest before).
    """
    keep = pa.array(sorted(set(model_ids)), type=pa.string())
    parts: list[tuple[FileEntry, pa.Table]] = []
    used_shards: set[str] = set()
    for entry in manifest.part_files():
        table = pq.read_table(safe_join(src, entry.path, "part"))
        kept = table.filter(pc.is_in(table.column("model_id").cast(pa.string()), value_set=keep))
        if kept.num_rows:
            parts.append((entry, kept if kept.num_rows < table.num_rows else table))
            used_shards.update(kept.column("weights_shard").to_pylist())

    renamed: dict[str, str] = {}
    per_arch: Counter = Counter()
    for entry in manifest.shard_files():
        if entry.path in used_shards:
            renamed[entry.path] = SHARD_TEMPLATE.format(arch_id=entry.arch_id, index=per_arch[entry.arch_id])
            per_arch[entry.arch_id] += 1

    # Every destination is checked before anything moves: a bad one leaves src and dst as they were.
    moves = [(safe_join(src, entry.path, "weight shard"), safe_join(dst, renamed[entry.path], "weight shard"),
              entry) for entry in manifest.shard_files() if entry.path in renamed]
    new_paths: dict[str, FileEntry] = {}
    for source, target, entry in moves:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        new_paths[entry.path] = replace(entry, path=renamed[entry.path])
    tables = []
    for index, (entry, table) in enumerate(parts):
        rel = PART_TEMPLATE.format(index=index)
        target = safe_join(dst, rel, "part")
        target.parent.mkdir(parents=True, exist_ok=True)
        shards = table.column("weights_shard").to_pylist()
        relinked = [renamed[s] for s in shards]
        if table.num_rows == entry.rows and relinked == shards:
            os.replace(safe_join(src, entry.path, "part"), target)  # unchanged: keep the bytes (and the sha256)
            new_paths[entry.path] = replace(entry, path=rel)
        else:
            i = table.schema.get_field_index("weights_shard")
            table = table.set_column(i, table.schema.field(i), pa.array(relinked, type=table.schema.field(i).type))
            with atomic_path(target) as tmp:
                pq.write_table(table, tmp, compression="zstd")
                new_paths[entry.path] = replace(entry, path=rel, sha256=sha256_file(tmp),
                                                bytes=tmp.stat().st_size, rows=table.num_rows)
        tables.append(table.select(["run_id", "arch_id", "status"]))

    # Sidecar tables keep the rows of the kept models (same path; unchanged bytes when all stay).
    # A table none of whose rows is kept stays, empty, with its schema: its columns are columns of
    # the zoo (NULL for every kept model), so the --where that chose these rows (`hessian_trace IS
    # NULL`) still runs on the pulled zoo.
    for entry in manifest.sidecar_files():
        source, target = safe_join(src, entry.path, "sidecar table"), safe_join(dst, entry.path, "sidecar table")
        side = pq.read_table(source)
        kept = side.filter(pc.is_in(side.column("model_id").cast(pa.string()), value_set=keep))
        target.parent.mkdir(parents=True, exist_ok=True)
        if kept.num_rows == side.num_rows:
            os.replace(source, target)
            new_paths[entry.path] = entry
        else:
            with atomic_path(target) as tmp:
                pq.write_table(kept, tmp, compression="zstd")
                new_paths[entry.path] = replace(entry, sha256=sha256_file(tmp), bytes=tmp.stat().st_size,
                                                rows=kept.num_rows)

    archs = {a for t in tables for a in t.column("arch_id").to_pylist()}
    counts = recount(manifest.counts, tables, len(archs))
    return replace(
        manifest,
        architectures={a: d for a, d in manifest.architectures.items() if a in archs},
        counts=counts,
        files=[new_paths[f.path] for f in manifest.files if f.path in new_paths],
        source=dict(manifest.source),
    )
