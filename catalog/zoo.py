"""Reading zoos: :func:`open_zoo` and :class:`Zoo`.

Metadata comes back as one Arrow table; weights are read straight from memory-mapped
safetensors shards, contiguous rows as one slice, and checked against each row's sha256.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors import safe_open
from torch import Tensor

from catalog.errors import IntegrityError, WeightzooError, ZooFormatError
from catalog.format import Manifest, read_manifest, rows_sha256
from catalog.network import NetworkSpec, SpecNetwork, build_module


def open_zoo(path: str | os.PathLike, **kwargs) -> Zoo:
    """Open a zoo directory (or, with the ``hub`` package, an ``hf://datasets/ORG/NAME@REV`` URL).

    Args:
        path: a local zoo directory, or an ``hf://`` URL.
        **kwargs: passed to the Hub loader for ``hf://`` URLs.
    """
    text = str(path)
    if text.startswith("hf://"):
        try:
            from hub import load_zoo_url  # optional layer above catalog
        except ImportError as e:  # pragma: no cover - hub ships with weightzoo
            raise WeightzooError("opening hf:// zoos needs the weightzoo `hub` package") from e
        return load_zoo_url(text, **kwargs)
    return Zoo(path)


def contiguous_runs(rows: np.ndarray) -> list[tuple[int, int, int]]:
    """Split sorted-or-not row indices into runs of consecutive indices.

    Returns ``(position_in_input, start_row, length)`` for each run, in input order.
    """
    runs = []
    i = 0
    n = len(rows)
    while i < n:
        j = i + 1
        while j < n and rows[j] == rows[j - 1] + 1:
            j += 1
        runs.append((i, int(rows[i]), j - i))
        i = j
    return runs


class Zoo:
    """An opened zoo.

    Args:
        root: the zoo directory.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.manifest: Manifest = read_manifest(self.root)
        self._handles: dict[str, object] = {}

    # ------------------------------------------------------------------------------ metadata
    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def architectures(self) -> dict[str, NetworkSpec]:
        return {a: self.manifest.network_spec(a) for a in self.manifest.architectures}

    def network_spec(self, arch_id: str) -> NetworkSpec:
        return self.manifest.network_spec(arch_id)

    @property
    def part_paths(self) -> list[Path]:
        return [self.root / f.path for f in self.manifest.part_files()]

    @cached_property
    def table(self) -> pa.Table:
        """All metadata rows (one per model checkpoint) as one Arrow table."""
        parts = self.part_paths
        if not parts:
            return pa.table({})
        tables = []
        for p in parts:
            if not p.is_file():
                raise ZooFormatError(f"{p} is listed in the manifest but missing; re-pull or rebuild the zoo")
            tables.append(pq.read_table(p))
        return pa.concat_tables(tables, promote_options="default")

    def __len__(self) -> int:
        return self.table.num_rows

    def __repr__(self) -> str:
        return f"Zoo({self.name!r}, rows={len(self)}, architectures={len(self.manifest.architectures)})"

    # ------------------------------------------------------------------------------ weights
    def _shard(self, rel: str):
        handle = self._handles.get(rel)
        if handle is None:
            path = self.root / rel
            if not path.is_file():
                raise ZooFormatError(f"weight shard {rel} is missing from {self.root}; re-pull or rebuild the zoo")
            try:
                handle = safe_open(str(path), framework="pt")
            except Exception as e:  # safetensors raises its own error types for bad headers
                raise IntegrityError(f"weight shard {rel} cannot be read ({e}); run `zoo verify`") from e
            self._handles[rel] = handle
        return handle

    def read_rows(self, shard: str, rows: Iterable[int], arch_id: str,
                  checksums: list[str] | None = None) -> dict[str, Tensor]:
        """Read rows of one shard as a stacked batch, in the order given.

        Args:
            shard: the shard's path relative to the zoo (the ``weights_shard`` column).
            rows: row indices in that shard (the ``weights_row`` column).
            arch_id: the shard's architecture.
            checksums: optional expected per-row sha256; a mismatch raises ``IntegrityError``.

        Shapes:
            returns ``{name: Tensor[len(rows), *shape]}``.
        """
        rows = np.asarray(list(rows), dtype=np.int64)
        spec = self.network_spec(arch_id)
        handle = self._shard(shard)
        runs = contiguous_runs(rows)
        out: dict[str, Tensor] = {}
        for p in spec.params:
            sl = handle.get_slice(p.name)
            n_stored = sl.get_shape()[0]
            if len(rows) and (rows.max() >= n_stored or rows.min() < 0):
                raise IntegrityError(f"{shard} has {n_stored} rows; a row index in {rows.tolist()} is out of range")
            if len(runs) == 1:
                _, start, length = runs[0]
                out[p.name] = sl[start:start + length]
            else:
                pieces = [sl[start:start + length] for _, start, length in runs]
                out[p.name] = torch.cat(pieces) if pieces else torch.empty(0, *p.shape)
        if checksums is not None:
            got = rows_sha256(out, spec.param_names)
            for i, (g, want) in enumerate(zip(got, checksums)):
                if g != want:
                    raise IntegrityError(
                        f"weights of row {int(rows[i])} in {shard} do not match their sha256 (the shard "
                        f"is corrupt or was modified); run `zoo verify {self.root}` and re-pull or rebuild")
        return out

    def row(self, model_id: str) -> dict:
        """The metadata of one model checkpoint by ``model_id``."""
        ids = self.table.column("model_id")
        import pyarrow.compute as pc

        idx = pc.index(ids, model_id).as_py()
        if idx < 0:
            raise WeightzooError(f"no model {model_id!r} in zoo {self.name!r}; list ids with `zoo query`")
        return self.table.slice(idx, 1).to_pylist()[0]

    def state_dict(self, model_id: str, verify: bool = True) -> dict[str, Tensor]:
        """One model's weights as a state dict (keys are the NetworkSpec's parameter names)."""
        r = self.row(model_id)
        batch = self.read_rows(r["weights_shard"], [r["weights_row"]], r["arch_id"],
                               [r["sha256"]] if verify else None)
        return {k: v[0] for k, v in batch.items()}

    def module(self, model_id: str) -> SpecNetwork:
        """One model rebuilt as an ``nn.Module`` with its weights loaded (eval mode)."""
        r = self.row(model_id)
        return build_module(self.network_spec(r["arch_id"]), self.state_dict(model_id))

    def close(self) -> None:
        self._handles.clear()


def rows_by_shard(table: pa.Table) -> Mapping[str, np.ndarray]:
    """Group a metadata table's row positions by ``weights_shard``."""
    shards = table.column("weights_shard").to_numpy(zero_copy_only=False)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(shards):
        groups.setdefault(s, []).append(i)
    return {k: np.asarray(v) for k, v in groups.items()}
