"""What every importer shares: source columns as typed zoo columns, stable ids, architecture
options (``--arch``), and writing groups of models through :class:`catalog.writer.ZooWriter`.

An importer turns models that already exist into zoo rows: it never trains. It reads its source
one model (or one chunk of rows) at a time and hands ``{param: Tensor[N, *shape]}`` batches of
one architecture to the writer, so no source is ever held in memory whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import Tensor

from catalog.errors import WeightzooError
from catalog.format import CORE_COLUMNS, Manifest, parse_json, read_manifest, recount
from catalog.network import DTYPES, NetworkSpec
from catalog.paths import safe_join
from catalog.writer import ZooWriter

#: Models written per part (and shard) by the importers: bounds memory, keeps shards modest.
ROWS_PER_PART = 256

#: Columns an importer adds to every row: where the model came from.
PROVENANCE_COLUMNS = ("source_layout", "source_path")

_TORCH_TO_DTYPE = {getattr(torch, name): name for name in DTYPES}


class SourceError(WeightzooError):
    """A source that cannot be imported: the message says what is wrong and what to do."""


class InferredArchitectureWarning(UserWarning):
    """An import took a layer order from a file's tensors, which record no forward order (the
    message names the architecture, lists the order and says how to confirm or change it with
    ``--arch``)."""


@dataclass(frozen=True)
class OrderNote:
    """A layer order an import took from a file, for :func:`warn_notes`.

    Args:
        where: the file (or snapshot) it was taken from.
        layers: the order, ``"fc1 (linear 16->16) -> fc2 (linear 16->3)"``.
        what: how it was taken (default: inferred from the tensors).
    """

    where: str
    layers: str
    what: str = "layer order inferred from the file"


#: An :class:`OrderNote` as shown, once per architecture: kept to a line or two, since every
#: import of a state dict (e.g. the README's hf-models example) shows it.
ORDER_NOTE = ("{arch_id} ({where}{more}): {what}: {layers}. State dicts record no forward order: confirm or "
              "change it with --arch SPEC.json listing the layers in forward order")
#: Notes :func:`warn_notes` shows in full; the rest are counted in one more line.
NOTES_SHOWN = 5


def warn_notes(notes: Sequence[tuple[str, OrderNote, int]]) -> None:
    """Show each ``(arch_id, note, models)`` as an :class:`InferredArchitectureWarning` (``models``:
    how many models have that architecture), one per architecture (the first note; files whose
    tensors come in another order can give one architecture twice), at most :data:`NOTES_SHOWN`."""
    merged: dict[str, list] = {}
    for arch_id, note, models in notes:
        merged.setdefault(arch_id, [note, 0])[1] += models
    shown = list(merged.items())
    for arch_id, (note, models) in shown[:NOTES_SHOWN]:
        more = f" and {models - 1} more model{'s' if models > 2 else ''}" if models > 1 else ""
        warnings.warn(ORDER_NOTE.format(arch_id=arch_id, where=note.where, more=more, what=note.what,
                                        layers=note.layers), InferredArchitectureWarning, stacklevel=2)
    if len(shown) > NOTES_SHOWN:
        warnings.warn(f"{len(shown) - NOTES_SHOWN} more architectures took their layer order from the files "
                      f"likewise; give --arch if a forward order differs", InferredArchitectureWarning,
                      stacklevel=2)


def stable_id(text: str, prefix: str = "") -> str:
    """A short stable id: ``prefix`` plus the first 16 hex digits of ``sha256(text)``."""
    return prefix + hashlib.sha256(text.encode()).hexdigest()[:16]


def column_name(name: str) -> str:
    """A source column's name as a zoo column: characters other than letters, digits and ``_``
    become ``_`` (``config.lr`` -> ``config_lr``, so SQL needs no quoting), and a name that a
    zoo's core columns use gets a ``source_`` prefix."""
    out = re.sub(r"[^0-9A-Za-z_]", "_", str(name).strip()) or "column"
    if out[0].isdigit():
        out = "c_" + out
    return "source_" + out if out in CORE_COLUMNS else out


def column_names(fields: Iterable[Any], taken: Iterable[str] = (), prefix: str = "source_") -> dict[Any, str]:
    """``{field: column}`` for a source's metadata ``fields`` (the union over all its models, so
    every row names a field alike), injective and unique case-insensitively (DuckDB's names are:
    ``Seed`` and ``seed`` would be one column in a query).

    A field whose :func:`column_name` is itself (``test_acc``, ``Seed``) keeps it; the others
    (``test.acc``) take their :func:`column_name`. A name already ``taken`` (the importer's own
    columns, the core columns, a field placed before; compared case-insensitively) becomes
    ``<prefix><name>``, then ``<prefix><name>_2``, ... Fields are placed in a fixed order, those
    keeping their own name first, then by name, so the columns do not depend on key order.
    :func:`warn_renames` says which fields were renamed so.
    """
    used = {t.casefold() for t in (*CORE_COLUMNS, *taken)}
    out: dict[Any, str] = {}
    for field in sorted(set(fields), key=lambda f: (column_name(f) != str(f), str(f))):
        base = column_name(field)
        name, k = base, 1
        while name.casefold() in used:
            k += 1
            name = f"{prefix}{base}" if k == 2 else f"{prefix}{base}_{k - 1}"
        used.add(name.casefold())
        out[field] = name
    return out


def warn_renames(columns: Mapping[Any, str], where: str, expected: Iterable[Any] = ()) -> None:
    """One warning listing the fields of ``columns`` (:func:`column_names`) that took another
    name than their :func:`column_name` because that was taken (``expected`` ones left out)."""
    skip = set(expected)
    renamed = [f"{f!r} -> {c}" for f, c in columns.items() if c != column_name(f) and f not in skip]
    if renamed:
        warnings.warn(f"{where}: metadata fields whose column names would clash (names are compared ignoring "
                      f"case) were renamed: {', '.join(renamed)}; query them by these names", stacklevel=3)


def rows_schema(rows: Sequence[Mapping]) -> tuple[list[dict], pa.Schema]:
    """Every row with every column (missing values ``None``) and one Arrow type per non-core
    column inferred over all rows, so every part of the zoo has the same schema.

    Raises:
        SourceError: a column mixes types that have no common type (e.g. text and numbers).
    """
    keys: list[str] = list(dict.fromkeys(k for r in rows for k in r))
    full = [{k: r.get(k) for k in keys} for r in rows]
    fields = []
    for k in keys:
        if k in CORE_COLUMNS:
            continue
        values = [r[k] for r in full]
        try:
            typ = pa.array(values).type
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            try:  # e.g. ints and strings: keep the column, as text
                values = [None if v is None else str(v) for v in values]
                for r, v in zip(full, values):
                    r[k] = v
                typ = pa.string()
            except Exception as e:  # pragma: no cover - str() of a JSON value does not fail
                raise SourceError(f"metadata column {k!r} mixes types that cannot share a column: {e}") from e
        if pa.types.is_null(typ):
            typ = pa.string()
        fields.append(pa.field(k, typ))
    return full, pa.schema(fields)


def check_activation(activation: str | None) -> None:
    """Check ``--activation`` before anything is read (``None``: not given).

    Raises:
        SourceError: a name that is no activation a zoo architecture expresses (the message
            lists the valid ones).
    """
    from catalog.nodes import ACTIVATIONS

    if activation is not None and activation not in ACTIVATIONS:
        raise SourceError(f"--activation {activation!r} is not an activation a zoo architecture expresses; "
                          f"give one of {', '.join(ACTIVATIONS)}")


def torch_dtype_name(t: Tensor, where: str) -> str:
    if t.dtype not in _TORCH_TO_DTYPE:
        raise SourceError(f"{where}: dtype {t.dtype} is not a weight dtype a zoo holds "
                           f"({', '.join(DTYPES)})")
    return _TORCH_TO_DTYPE[t.dtype]


def builds_as_chain(spec: NetworkSpec) -> bool:
    """True for a chain: :class:`catalog.network.SpecNetwork` rebuilds a chain with any valid
    parameter names (``layers.{i}.*``, ``seq.0.weight``, ``fc1.weight``), so every chain an
    importer infers stays one."""
    return spec.is_chain


def storable(spec: NetworkSpec) -> NetworkSpec:
    """The spec as written to the zoo: as it is. A chain keeps the source's own parameter names
    and stays a chain (format v1), the form chain metanetworks (dws, nfn) read; a graph stays a
    graph. (Before chains carried any names, such chains were stored as graphs.)"""
    return spec


def finish_import(writer: ZooWriter) -> Manifest:
    """Recount the zoo from its parts, then :meth:`ZooWriter.finish` it.

    The writer adds each part's distinct runs to ``counts["runs"]``, so a run whose checkpoints
    land in two parts (a group flushed mid-run, or an import resumed mid-run) would count
    twice; the rows, runs and statuses are recounted from every part before the manifest is
    marked complete."""
    tables = (pq.read_table(safe_join(writer.root, f.path, "part"), columns=["run_id", "status"])
              for f in writer.manifest.part_files())
    writer.manifest.counts = recount(writer.manifest.counts, tables, len(writer.manifest.architectures))
    return writer.finish()


def dataset_entry(dataset: str | Mapping | None) -> tuple[dict | None, dict[str, dict]]:
    """``(build spec "dataset" entry, manifest "datasets" facts)`` for ``--dataset``: a registered
    dataset name (``digits``), its JSON config (``{"name": "digits", "test_fraction": 0.25}``)
    or a mapping; ``(None, {})`` for none. Recorded so :func:`zoo_builders.datasets.load_zoo_dataset`
    (and ``zoo verify --recompute``) load the data the models were evaluated on.

    Raises:
        SourceError: an unknown dataset (the message lists the valid ones) or bad JSON.
    """
    from zoo_builders.datasets import DatasetConfig, load_dataset

    if dataset is None:
        return None, {}
    if isinstance(dataset, str) and dataset.strip().startswith("{"):
        dataset = parse_json(dataset, f"--dataset {dataset!r}", SourceError)
    try:
        cfg = DatasetConfig.from_dict(dict(dataset) if isinstance(dataset, Mapping) else {"name": str(dataset)})
        data = load_dataset(cfg)
    except WeightzooError as e:
        raise SourceError(f"--dataset: {e}") from e
    entry = {k: v for k, v in cfg.__dict__.items() if v is not None}
    return entry, {data.name: data.describe()}


def rename_chain(spec: NetworkSpec, names: Sequence[tuple[str, str | None]], family: str | None = None
                 ) -> NetworkSpec:
    """``spec`` with layer ``i`` named ``names[i] = (weight, bias)`` (a preset's layout with a
    source's parameter names)."""
    layers = tuple(replace(layer, weight=w, bias=b) for layer, (w, b) in zip(spec.layers, names))
    return NetworkSpec(family or spec.family, spec.input_shape, layers, dtype=spec.dtype, meta=dict(spec.meta))


def parse_arch_options(options: Sequence[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``["channels=[16,16,16]", "kernel_size=3"]`` (values read as JSON where they parse,
    text otherwise) or a mapping -> ``{option: value}``."""
    if options is None:
        return {}
    if isinstance(options, Mapping):
        return dict(options)
    out: dict[str, Any] = {}
    for item in options:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise SourceError(f"architecture option {item!r} is not KEY=VALUE (e.g. channels=[16,16,16])")
        try:
            out[key.strip()] = parse_json(value, f"architecture option {key.strip()}", SourceError)
        except SourceError:
            out[key.strip()] = value
    return out


def resolve_arch(arch: str | Path | Mapping | NetworkSpec, options: Mapping[str, Any],
                 input_shape: Sequence[int] | None, n_outputs: int, activation: str | None) -> NetworkSpec:
    """A chain or graph spec from ``--arch``: a :class:`NetworkSpec`, a spec dict, a path to a
    spec JSON file (``zoo.json``'s architecture form), or a preset architecture name of
    :mod:`zoo_builders.architectures` with ``options``; presets need ``input_shape``.

    Raises:
        SourceError: an unknown preset (the message lists the valid ones), a bad option, a
            missing input shape, an unreadable spec file.
    """
    from zoo_builders.architectures import ARCHITECTURES, make_architecture

    if isinstance(arch, NetworkSpec):
        return arch
    if isinstance(arch, Mapping):
        return _spec_of(arch, "the --arch spec")
    text = str(arch)
    path = Path(text)
    if text.endswith(".json") or (path.suffix and path.exists()):
        if not path.is_file():
            raise SourceError(f"--arch {text}: no such spec file")
        data = parse_json(path.read_bytes(), f"--arch {text}", SourceError)
        return _spec_of(data, f"--arch {text}")
    if text not in ARCHITECTURES:
        raise SourceError(f"unknown architecture {text!r}; give a preset ({', '.join(sorted(ARCHITECTURES))}) "
                           f"or a spec JSON file")
    opts = dict(options)
    if activation is not None and "activation" not in opts and "activation" in _fields(ARCHITECTURES[text]):
        opts["activation"] = activation
    if input_shape is None:
        raise SourceError(f"--arch {text}: give the input shape of one example (--input-shape, e.g. 1,28,28)")
    _, cfg = make_architecture({"name": text, **opts})
    return cfg.network_spec(tuple(int(s) for s in input_shape), n_outputs)


def _spec_of(data: Any, what: str) -> NetworkSpec:
    """``data`` (from ``--arch``) as a :class:`NetworkSpec`; errors name ``what``, not a manifest.

    Raises:
        SourceError: ``data`` is not a JSON object or not a valid spec.
    """
    form = "a NetworkSpec object, the form of zoo.json's architectures or of the spec in architectures.jsonl"
    if not isinstance(data, Mapping):
        raise SourceError(f"{what} holds a JSON {type(data).__name__}, not {form}")
    try:
        return NetworkSpec.from_dict(data, new=True)  # a new spec: refused as one built in Python
    except WeightzooError as e:
        raise SourceError(f"{what} is not a valid NetworkSpec ({form}): {e}") from e


def _fields(cls: type) -> list[str]:
    from dataclasses import fields

    return [f.name for f in fields(cls)]


@contextmanager
def no_empty_zoo_on_error(out: str | os.PathLike) -> Iterator[None]:
    """If the body fails, remove ``out`` when this import created it and wrote no model into
    it (a bad source leaves nothing behind); a zoo with written parts stays, to resume."""
    out = Path(out)
    created = not out.exists()
    try:
        yield
    except BaseException:
        if created and out.is_dir():
            try:
                empty = not read_manifest(out).files
            except WeightzooError:
                empty = False
            if empty:
                shutil.rmtree(out, ignore_errors=True)
        raise


@contextmanager
def no_partial_export(out: str | os.PathLike) -> Iterator[None]:
    """If the body fails, remove what an export into ``out`` (new, or empty) wrote: the folders
    it created, ``out``'s missing parents included, or, for an ``out`` that existed (and was
    empty, as exports require), everything in it. An export is whole or absent."""
    out = Path(out)
    top = out if not out.exists() else None
    while top is not None and not top.parent.exists():
        top = top.parent  # the outermost folder this export creates
    try:
        yield
    except BaseException:
        if top is not None:
            shutil.rmtree(top, ignore_errors=True)
        elif out.is_dir():
            for p in out.iterdir():
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink()
        raise


class GroupWriter:
    """Buffers models per architecture and writes a part every :data:`ROWS_PER_PART` models.

    Args:
        writer: the open zoo writer.
        schema: the non-core column types (from :func:`rows_schema`).
        rows_per_part: models per part (default :data:`ROWS_PER_PART`).
    """

    def __init__(self, writer: ZooWriter, schema: pa.Schema, rows_per_part: int = ROWS_PER_PART) -> None:
        self.writer, self.schema, self.rows_per_part = writer, schema, rows_per_part
        self._buf: dict[str, tuple[list[dict[str, Tensor]], list[dict]]] = {}
        self.written = 0

    def add(self, spec: NetworkSpec, tensors: Mapping[str, Tensor], row: Mapping) -> None:
        """Queue one model (``tensors`` unstacked, ``{name: Tensor[*shape]}``)."""
        arch_id = self.writer.add_architecture(spec)
        models, rows = self._buf.setdefault(arch_id, ([], []))
        models.append(dict(tensors))
        rows.append(dict(row))
        if len(rows) >= self.rows_per_part:
            self._flush(arch_id)

    def add_stacked(self, spec: NetworkSpec, stacked: Mapping[str, Tensor], rows: Sequence[Mapping]) -> None:
        """Write ``len(rows)`` models at once (``{name: Tensor[N, *shape]}``)."""
        arch_id = self.writer.add_architecture(spec)
        self.writer.write_part(arch_id, stacked, list(rows), self.schema)
        self.written += len(rows)

    def _flush(self, arch_id: str) -> None:
        models, rows = self._buf.pop(arch_id, ([], []))
        if not rows:
            return
        names = self.writer.manifest.network_spec(arch_id).param_names
        stacked = {n: torch.stack([m[n] for m in models]) for n in names}
        self.writer.write_part(arch_id, stacked, rows, self.schema)
        self.written += len(rows)

    def flush(self) -> None:
        for arch_id in list(self._buf):
            self._flush(arch_id)


class RunWriter:
    """Buffers whole runs (every checkpoint of one training run) per architecture and writes a
    part once :data:`ROWS_PER_PART` models are buffered, never splitting a run across parts, so
    a run is either wholly in the zoo or not at all (:meth:`ZooWriter.done_run_ids` then says
    which runs a resumed import skips, and the manifest's run count stays exact).

    Args:
        writer: the open zoo writer.
        schema: the non-core column types (from :func:`rows_schema`).
        rows_per_part: models per part, at least (a run longer than that is one part).
    """

    def __init__(self, writer: ZooWriter, schema: pa.Schema, rows_per_part: int = ROWS_PER_PART) -> None:
        self.writer, self.schema, self.rows_per_part = writer, schema, rows_per_part
        self._buf: dict[str, tuple[list[dict[str, Tensor]], list[dict]]] = {}
        self.written = 0

    def add_run(self, spec: NetworkSpec, models: Sequence[Mapping[str, Tensor]], rows: Sequence[Mapping]) -> None:
        """Queue one run: ``models[i]`` (``{name: Tensor[*shape]}``) is described by ``rows[i]``."""
        if len(models) != len(rows):
            raise ValueError(f"add_run: {len(models)} models but {len(rows)} rows")
        arch_id = self.writer.add_architecture(spec)
        buf_models, buf_rows = self._buf.setdefault(arch_id, ([], []))
        buf_models.extend(dict(m) for m in models)
        buf_rows.extend(dict(r) for r in rows)
        if len(buf_rows) >= self.rows_per_part:
            self._flush(arch_id)

    def _flush(self, arch_id: str) -> None:
        models, rows = self._buf.pop(arch_id, ([], []))
        if not rows:
            return
        names = self.writer.manifest.network_spec(arch_id).param_names
        stacked = {n: torch.stack([m[n] for m in models]) for n in names}  # [N, *shape]
        self.writer.write_part(arch_id, stacked, rows, self.schema)
        self.written += len(rows)

    def flush(self) -> None:
        """Write every buffered run."""
        for arch_id in list(self._buf):
            self._flush(arch_id)


def json_scalar(value: Any) -> Any:
    """A JSON value as a column value: scalars and lists of scalars as they are, objects (and
    lists holding objects) as their JSON text, so one column never mixes nested types."""
    if isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, dict | list) for v in value)):
        return json.dumps(value, sort_keys=True)
    return value
