"""Helpers shared by the catalog tests (files' hashes, corrupting a shard row)."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from catalog.format import read_manifest, sha256_file, write_manifest


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (to prove nothing changed)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def flip_weight_byte(shard: Path, tensor: str, row: int) -> None:
    """Change one byte of ``tensor[row]`` inside a safetensors file, in place."""
    data = bytearray(shard.read_bytes())
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    info = header[tensor]
    start, end = info["data_offsets"]
    rows = info["shape"][0]
    per_row = (end - start) // rows
    pos = 8 + header_len + start + row * per_row
    data[pos] ^= 0xFF
    shard.write_bytes(bytes(data))


def rewrite_part(root: Path, part: str, table: pa.Table) -> None:
    """Replace a Parquet part and fix its manifest entry (so only row checks can catch it)."""
    path = root / part
    pq.write_table(table, path)
    manifest = read_manifest(root)
    for f in manifest.files:
        if f.path == part:
            f.sha256, f.bytes, f.rows = sha256_file(path), path.stat().st_size, table.num_rows
    write_manifest(root, manifest)
