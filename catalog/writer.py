"""Writing zoos: :class:`ZooWriter` appends (weights, metadata) parts atomically.

Every part is one safetensors shard (one architecture, rows stacked) plus one Parquet file of
its metadata rows. Both are written under a temp name and renamed; the manifest, which lists
every file with its sha256, is rewritten last. A file that is not in the manifest is not part of
the zoo, so a crash at any point leaves the zoo readable and a later writer resumes it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from safetensors.torch import save_file
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
    atomic_write_bytes,
    read_manifest,
    rows_sha256,
    sha256_file,
    tmp_path_for,
    write_manifest,
)
from catalog.network import NetworkSpec


class ZooWriter:
    """Create a zoo directory, or reopen one to add to it.

    Args:
        root: the zoo directory.
        name: the zoo's name.
        spec: the build spec as a JSON-able dict (stored in the manifest; compared on reopen).
        datasets: facts about the datasets used, stored in the manifest (default none).

    Raises:
        WeightzooError: ``root`` holds a different zoo (another name or spec), or a non-zoo
            directory that is not empty.
    """

    def __init__(self, root: str | os.PathLike, name: str, spec: Mapping,
                 datasets: Mapping[str, dict] | None = None) -> None:
        self.root = Path(root)
        spec = dict(spec)
        if (self.root / MANIFEST_NAME).is_file():
            manifest = read_manifest(self.root)
            if manifest.name != name or manifest.spec != spec:
                what = "name" if manifest.name != name else "spec"
                raise WeightzooError(
                    f"{self.root} already holds zoo {manifest.name!r} built from a different {what}; "
                    f"choose another --out directory, or delete {self.root} to rebuild it")
            self.manifest = manifest
        else:
            if self.root.exists() and any(p.name != CARD_NAME for p in self.root.iterdir()
                                          if not p.name.startswith(TMP_PREFIX)):
                raise WeightzooError(
                    f"{self.root} exists, is not empty and holds no zoo; choose an empty or new "
                    f"--out directory")
            self.manifest = Manifest(name=name, spec=spec, datasets=dict(datasets or {}))
        self.remove_strays()

    # ------------------------------------------------------------------------------ state
    def remove_strays(self) -> list[Path]:
        """Delete temp files and data files the manifest does not list (left by a crash)."""
        listed = {f.path for f in self.manifest.files}
        removed = []
        for sub in ("models", "weights"):
            base = self.root / sub
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
        done: set[str] = set()
        for f in self.manifest.part_files():
            table = pq.read_table(self.root / f.path, columns=["run_id"])
            done.update(table.column("run_id").to_pylist())
        return done

    def add_architecture(self, spec: NetworkSpec) -> str:
        arch_id = spec.arch_id
        self.manifest.architectures.setdefault(arch_id, spec.to_dict())
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

        shard_index = sum(1 for f in self.manifest.shard_files() if f.arch_id == arch_id)
        part_index = len(self.manifest.part_files())
        shard_rel = SHARD_TEMPLATE.format(arch_id=arch_id, index=shard_index)
        part_rel = PART_TEMPLATE.format(index=part_index)

        tensors = {k: weights[k].detach().to(net.torch_dtype).contiguous().cpu() for k in names}
        checksums = rows_sha256(tensors, names)
        full_rows = []
        for i, r in enumerate(rows):
            full_rows.append({**r, "arch_id": arch_id, "n_params": net.n_params,
                              "weights_shard": shard_rel, "weights_row": i, "sha256": checksums[i]})
        table = _rows_to_table(full_rows, schema)

        shard_path = self.root / shard_rel
        tmp = tmp_path_for(shard_path)
        try:
            save_file(tensors, str(tmp), metadata={"arch_id": arch_id, "rows": str(n)})
            _fsync(tmp)
            shard_entry = FileEntry(shard_rel, sha256_file(tmp), tmp.stat().st_size, n, "shard", arch_id)
            os.replace(tmp, shard_path)
        finally:
            tmp.unlink(missing_ok=True)
        part_path = self.root / part_rel
        tmp = tmp_path_for(part_path)
        try:
            pq.write_table(table, tmp, compression="zstd")
            _fsync(tmp)
            part_entry = FileEntry(part_rel, sha256_file(tmp), tmp.stat().st_size, n, "part", arch_id)
            os.replace(tmp, part_path)
        finally:
            tmp.unlink(missing_ok=True)
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
        """Mark the zoo complete and (re)write its dataset card."""
        from catalog.card import render_card  # local: the card reads the finished zoo

        self.manifest.complete = True
        write_manifest(self.root, self.manifest)
        text = card if card is not None else render_card(self.root)
        atomic_write_bytes(self.root / CARD_NAME, text.encode())
        return self.manifest


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


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
