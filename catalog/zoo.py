"""Reading zoos: :func:`open_zoo` and :class:`Zoo`.

Metadata comes back as one Arrow table; weights are read straight from memory-mapped
safetensors shards, contiguous rows as one slice, and checked against each row's sha256.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from catalog.errors import WeightzooError, ZooFormatError
from catalog.format import CORE_COLUMNS, PART_FIX, Manifest, core_column_problems, read_manifest, read_parquet
from catalog.network import NetworkSpec
from catalog.openers import open_url, url_scheme
from catalog.paths import safe_join
from catalog.sidecar import KEY, checked_sidecar_paths, join_sidecars, read_sidecar_file

if TYPE_CHECKING:
    from torch import Tensor

    from catalog.loading import ShardFile
    from catalog.modules import SpecNetwork
    from catalog.query import QueryEngine
    from catalog.selection import Selection
    from catalog.verify import VerifyReport


def open_zoo(path: str | os.PathLike, **kwargs) -> Zoo:
    """Open a zoo directory, or a URL through its registered opener (:mod:`catalog.openers`;
    the ``hub`` package provides ``hf://datasets/ORG/NAME@REV``).

    Args:
        path: a local zoo directory, or a URL such as ``hf://datasets/ORG/NAME@REV``.
        **kwargs: passed to the URL's opener.
    """
    text = str(path)
    if url_scheme(text) is not None:
        return open_url(text, **kwargs)
    if kwargs:
        raise WeightzooError(f"open_zoo: {sorted(kwargs)} apply to URLs only, not to a local zoo")
    return Zoo(path)


class Zoo:
    """An opened zoo.

    Args:
        root: the zoo directory.
    """

    #: Where :attr:`root` is, as ``zoo info`` names the bytes under it (a subclass whose root is
    #: a cache of a remote zoo says so).
    LOCAL_COPY = "on disk"

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.manifest: Manifest = read_manifest(self.root)
        self._shard_files: dict[str, ShardFile] = {}

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
        # safe_join: a models/ folder that links out of the zoo is refused, not read through
        return [safe_join(self.root, f.path, "part") for f in self.manifest.part_files()]

    @cached_property
    def sidecar_paths(self) -> list[Path]:
        """The zoo's sidecar tables (analysis metrics, embeddings; see :mod:`catalog.sidecar`),
        checked for SQL to join (:func:`~catalog.sidecar.checked_sidecar_paths`).

        Raises:
            ZooFormatError: a listed table's file is missing (the message says how to recompute it),
                or it would not join as one row per model.
        """
        # cached, as :attr:`table` is: the check reads every part's footer and each sidecar's keys
        return checked_sidecar_paths(self.root, self.manifest)

    def _part_schema(self, path: Path, entry) -> pa.Schema:
        """One metadata part's columns, from its footer, its core columns' types checked."""
        if not path.is_file():
            raise ZooFormatError(f"{path} is listed in the manifest but missing; re-pull or rebuild the zoo")
        schema = read_parquet(path, f"metadata part {entry.path} of {self.root}", schema_only=True)
        # A core column of another type is refused, not read: a weights_row of 0.5 loaded row 0.
        bad = core_column_problems(schema, [c for c in CORE_COLUMNS if c in schema.names])
        if bad:
            raise ZooFormatError(f"metadata part {entry.path} of {self.root}: {bad[0]}; {PART_FIX}")
        return schema

    def _read_part(self, path: Path, entry, columns: Iterable[str] | None = None) -> pa.Table:
        """One metadata part, its core columns checked from its footer (:meth:`_part_schema`):
        every column, or only those of ``columns`` it has (in the file's order)."""
        schema = self._part_schema(path, entry)
        names = None if columns is None else [n for n in schema.names if n in set(columns)]
        return read_parquet(path, f"metadata part {entry.path} of {self.root}", names)

    def _concat(self, tables: list[pa.Table] | list[pa.Schema]) -> pa.Table | pa.Schema:
        """The parts' tables (or schemas) as one, a column of a type that differs refused."""
        try:
            if tables and isinstance(tables[0], pa.Schema):
                return pa.unify_schemas(tables, promote_options="default")
            return pa.concat_tables(tables, promote_options="default")
        except pa.ArrowException as e:  # a column whose type differs between parts
            raise ZooFormatError(f"the metadata parts of {self.root} do not agree on their columns' types "
                                 f"({str(e).strip().splitlines()[0]}); {PART_FIX}") from e

    def read_table(self, columns: Iterable[str] | None = None) -> pa.Table:
        """Metadata rows (one per model checkpoint) as one Arrow table, with the sidecar columns
        joined in by ``model_id`` (NULL where a model has no value): every column, or only those
        of ``columns`` (a column the zoo lacks is left out). A sidecar table of which no column is
        asked for is not read: an embeddings table can be most of a zoo's metadata.

        Args:
            columns: the columns to read (default: all, as :attr:`table`).
        """
        parts = self.part_paths
        if not parts:
            return pa.table({})
        entries = self.manifest.part_files()
        if columns is None:
            models = self._concat([self._read_part(p, e) for p, e in zip(parts, entries)])
            sidecars = [read_sidecar_file(self.root, f) for f in self.manifest.sidecar_files()]
            return join_sidecars(models, sidecars) if sidecars else models
        wanted = list(dict.fromkeys(columns))
        sidecars = []
        # sidecar_paths: checked as read_sidecar_file checks, from keys and schemas
        for path, entry in zip(self.sidecar_paths, self.manifest.sidecar_files()):
            label = f"sidecar table {entry.path}"
            names = [n for n in read_parquet(path, label, schema_only=True).names if n in wanted and n != KEY]
            if names:
                sidecars.append(read_parquet(path, label, [KEY, *names]))
        # model_id always: the key of the join, and a table of no column would lose its rows
        models = self._concat([self._read_part(p, e, [*wanted, KEY]) for p, e in zip(parts, entries)])
        table = join_sidecars(models, sidecars) if sidecars else models
        return table.select([c for c in table.column_names if c in wanted])

    @cached_property
    def table(self) -> pa.Table:
        """All metadata rows (one per model checkpoint) as one Arrow table, with the columns of
        the zoo's sidecar tables joined in by ``model_id`` (NULL where a model has no value).
        Every column is read: :meth:`read_table` reads some, :attr:`schema` the columns alone."""
        return self.read_table()

    @cached_property
    def schema(self) -> pa.Schema:
        """The columns of :attr:`table` with their types, from the files' footers alone (no rows
        read but the sidecars' ``model_id`` keys, checked)."""
        parts = self.part_paths
        if not parts:
            return pa.schema([])
        fields = list(self._concat([self._part_schema(p, e) for p, e in zip(parts, self.manifest.part_files())]))
        for path, entry in zip(self.sidecar_paths, self.manifest.sidecar_files()):
            fields += [f for f in read_parquet(path, f"sidecar table {entry.path}", schema_only=True) if f.name != KEY]
        return pa.schema(fields)

    @property
    def num_rows(self) -> int:
        """The number of metadata rows, from the parts' footers (no column read)."""
        if "table" in self.__dict__:
            return self.table.num_rows
        return sum(self._read_part(p, e, []).num_rows for p, e in zip(self.part_paths, self.manifest.part_files()))

    def __len__(self) -> int:
        return self.num_rows

    def __repr__(self) -> str:
        return f"Zoo({self.name!r}, rows={len(self)}, architectures={len(self.manifest.architectures)})"

    def info(self) -> dict:
        """What ``zoo info`` shows, as a JSON-able dict: name, path, format version, counts
        (rows, runs, architectures, status) from the metadata itself, each architecture's
        family, parameter count and :meth:`~catalog.network.NetworkSpec.summary`, the columns
        with their Arrow types, the zoo's size (``size_bytes``: the files its manifest lists) and the
        bytes under :attr:`root` (``local_bytes``; ``local_copy`` says where that is: on disk, or
        an ``hf://`` zoo's local cache), metric summaries at each run's last checkpoint (status ok),
        and the zoo's source (for a pulled zoo).
        """
        from catalog.card import METRIC_COLUMNS, metric_summary

        # Only the columns it reports from: an embeddings sidecar (thousands of floats a row)
        # is not read, its columns' names and types come from the footers.
        m, schema = self.manifest, self.schema
        table = self.read_table(["run_id", "status", "checkpoint", *METRIC_COLUMNS])
        status: dict[str, int] = {}
        if "status" in table.column_names:
            for s in table.column("status").to_pylist():
                status[s] = status.get(s, 0) + 1
        runs = len(set(table.column("run_id").to_pylist())) if table.num_rows else 0
        return {
            "name": m.name, "path": str(self.root), "format_version": m.format_version,
            "complete": m.complete,
            "counts": {"rows": table.num_rows, "runs": runs, "architectures": len(m.architectures),
                       "status": status},
            "architectures": {a: {"family": s.family, "n_params": s.n_params, "summary": s.summary()}
                              for a, s in self.architectures.items()},
            "columns": {f.name: str(f.type) for f in schema},
            # The zoo's size is what its manifest lists (every file with its bytes): the bytes under
            # root are only what is here, e.g. the parts an hf:// zoo downloaded so far.
            "size_bytes": sum(f.bytes for f in m.files),
            "local_bytes": sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file()),
            "local_copy": self.LOCAL_COPY,
            "metrics": metric_summary(table),
            "source": m.source,
        }

    # ------------------------------------------------------------------------------ weights
    def _shard_file(self, rel: str) -> ShardFile:
        """The parsed header of a weight shard (cached), for positioned row reads."""
        from catalog.loading import open_shard  # torch: only when weights are read

        shard = self._shard_files.get(rel)
        if shard is None:
            shard = self._shard_files[rel] = open_shard(self.root, self.manifest, rel)
        return shard

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
        from catalog.loading import check_rows, read_shard_rows

        rows = np.asarray(list(rows), dtype=np.int64)
        spec = self.network_spec(arch_id)
        out = read_shard_rows(self._shard_file(shard), spec, rows)
        if checksums is not None:
            if len(checksums) != len(rows):
                raise WeightzooError(f"read_rows: {len(rows)} rows but {len(checksums)} checksums")
            check_rows([out[n] for n in spec.param_names], list(checksums), rows.tolist(), shard,
                       str(self.root))
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
        from catalog.modules import build_module

        r = self.row(model_id)
        return build_module(self.network_spec(r["arch_id"]), self.state_dict(model_id))

    # ------------------------------------------------------------------------------ queries
    @property
    def engine(self) -> QueryEngine:
        """The read-only DuckDB engine over this zoo's metadata (made on first use)."""
        engine = self.__dict__.get("_engine")
        if engine is None:
            from catalog.query import QueryEngine

            # Rows copied into DuckDB (compact): an opened zoo answers many queries, and in place
            # they were 5-6x slower (bench_query, 200,000 rows: 21 vs 3.6 ms). The copy holds every
            # sidecar column too, a zoo's large embeddings included (see the README's limits).
            engine = QueryEngine.over_zoos({self.name: self}, zoo_column=False)
            self.__dict__["_engine"] = engine
        return engine

    def select(self, where: str | None = None, order_by: str | None = None,
               limit: int | None = None, columns: list[str] | None = None) -> Selection:
        """Rows of this zoo's ``models`` table, without writing SQL.

        Args:
            where: a SQL condition, e.g. ``"test_acc > 0.9 AND activation = 'relu'"``
                (default: all rows).
            order_by: a SQL ordering, e.g. ``"test_acc DESC"`` (default: storage order).
            limit: at most this many rows (default: all).
            columns: the columns to return (default: all; weights stay loadable either way).

        Returns:
            a :class:`~catalog.selection.Selection`; ``.stacked()``, ``.state_dicts()`` and
            ``.modules()`` load the weights.
        """
        return self.engine.select(where=where, order_by=order_by, limit=limit, columns=columns)

    def sql(self, query: str) -> Selection:
        """Run one read-only ``SELECT ... FROM models ...`` over this zoo's metadata."""
        return self.engine.sql(query)

    def verify(self, check_weights: bool = True, progress: bool = False) -> VerifyReport:
        """Check files, rows and weights against the manifest (see :func:`catalog.verify.verify_zoo`)."""
        from catalog.verify import verify_zoo

        return verify_zoo(self.root, check_weights=check_weights, progress=progress)

    def close(self) -> None:
        self._shard_files.clear()
        engine = self.__dict__.pop("_engine", None)
        if engine is not None:
            engine.close()
