"""Model embeddings stored with a zoo: :func:`embed_zoo` (``zoo embed``) and
:func:`read_embeddings`.

Every method maps each model to one vector. The vectors of a zoo are one sidecar table,
``embeddings/<method>.parquet`` (:mod:`catalog.sidecar`): ``model_id`` and a ``FLOAT[d]``
column ``emb_<method>``, listed in ``zoo.json`` with its sha256, so ``zoo verify`` checks it,
``zoo push``/``zoo pull`` carry it and ``zoo query`` sees the column in ``models``. The vector
column's Arrow field metadata (key :data:`META_KEY`) holds the method's **config**, everything
that defines the embedding space (the probe set, a metanetwork's weights, standardization
constants), as JSON: a later run adds vectors only in the same space, and a search rebuilds
the same probes from it.

Methods (:data:`EMBEDDINGS`):

- ``behavior``: the model's softmax outputs on a fixed, seeded probe set
  (:func:`~retrieval.embeddings.behavior_embedding`; Know2Vec-style black-box probing).
  ``d = n_probes * n_outputs``. A task embeds in the same space
  (:func:`~retrieval.embeddings.task_embedding`), which is what ``zoo search --method
  behavior`` compares.
- ``statnn``: per-tensor weight statistics (mean, variance, quartiles;
  :func:`~retrieval.embeddings.statnn_embedding`), each column standardized with the mean and
  standard deviation of the models embedded by the first run (stored in the config and
  reused by later runs, so vectors of every run share one scale).
- ``weights``: the invariant trunk of a trained metanetwork (a ``zoo train`` run directory):
  the permutation-invariant features its head reads (:func:`metanetwork_trunk`).

Re-running a method skips the models that already have a vector. Diverged models get a row
of NaN (a search skips them).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor

from catalog.errors import WeightzooError
from catalog.format import parse_json, sha256_file
from catalog.lock import ZooLock
from catalog.network import NetworkSpec
from catalog.sidecar import (
    check_sidecar_writable,
    read_sidecar_file,
    sidecar_path,
    stored_sidecar,
    write_sidecar,
)
from catalog.zoo import Zoo, open_zoo
from retrieval._checks import check_not_inr
from retrieval.embeddings import behavior_embedding, statnn_embedding
from retrieval.probes import DEFAULT_PROBES, probe_set
from retrieval.tasks import TaskSpec

#: The sidecar group of embedding tables.
GROUP = "embeddings"
#: The Arrow field-metadata key of an embedding column's config.
META_KEY = "weightzoo.embedding"
#: Rows loaded and embedded at once.
CHUNK = 1024


def embedding_column(method: str) -> str:
    """The vector column of a method's table: ``emb_<method>``."""
    return f"emb_{method}"


# ================================================================================ the methods
class Embedder:
    """One method bound to its options: ``config`` (JSON-able, stored with the vectors) and
    :meth:`embed` for a batch of one architecture."""

    #: Config keys derived from the vectors rather than chosen (not compared between runs).
    derived: tuple[str, ...] = ()

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def embed(self, spec: NetworkSpec, params: Mapping[str, Tensor]) -> Tensor:
        """Shapes: ``{name: Tensor[B, *shape]}`` -> ``[B, d]`` float32."""
        raise NotImplementedError

    def finish(self, vectors: Tensor, stored: dict[str, Any] | None) -> Tensor:
        """Post-process every new vector at once (e.g. standardize); fills derived config keys."""
        return vectors


class BehaviorEmbedder(Embedder):
    """``behavior``: softmax outputs on ``n_probes`` inputs of the probe task."""

    def __init__(self, zoo: Zoo, probe: str | None, n_probes: int, seed: int, **_: Any) -> None:
        if probe is None:
            cfg = zoo.manifest.spec.get("dataset") if zoo.manifest.spec else None
            if not cfg:
                raise WeightzooError(
                    f"zoo {zoo.name!r} records no build dataset to draw probes from; pass --probe "
                    f"DATASET (e.g. --probe digits), the inputs the models were trained on")
            task = TaskSpec.parse(cfg)
        else:
            task = TaskSpec.parse(probe)
        super().__init__({"method": "behavior", "probe": str(task), "n_probes": int(n_probes),
                          "seed": int(seed), "temperature": 1.0})
        self.probes = probe_set(task.load(), n_probes, seed)

    def embed(self, spec: NetworkSpec, params: Mapping[str, Tensor]) -> Tensor:
        n_out = spec.n_outputs
        if self.config.setdefault("n_outputs", n_out) != n_out:
            raise WeightzooError(
                f"embedding dimension mismatch: architecture {spec.arch_id} has {n_out} outputs but "
                f"other models have {self.config['n_outputs']}, so their behaviour embeddings "
                f"differ in dimension; embed them separately with where=\"arch_id = '...'\" (--where)")
        return behavior_embedding(spec, params, self.probes)


class StatNNEmbedder(Embedder):
    """``statnn``: standardized per-tensor statistics of the weights."""

    derived = ("center", "scale")

    def __init__(self, zoo: Zoo, **_: Any) -> None:
        super().__init__({"method": "statnn", "quantiles": [0.0, 0.25, 0.5, 0.75, 1.0]})

    def embed(self, spec: NetworkSpec, params: Mapping[str, Tensor]) -> Tensor:
        return statnn_embedding(spec, params, self.config["quantiles"])

    def finish(self, vectors: Tensor, stored: dict[str, Any] | None) -> Tensor:
        if stored is not None and "center" in stored:
            center = torch.tensor(stored["center"], dtype=torch.float64)
            scale = torch.tensor(stored["scale"], dtype=torch.float64)
        else:
            ok = vectors[torch.isfinite(vectors).all(1)].double()
            if ok.shape[0] == 0:
                raise WeightzooError("every selected model has non-finite weights; nothing to standardize")
            center = ok.mean(0)
            scale = ok.std(0, unbiased=False)
            # A statistic that is the same for every model carries nothing: scale 1 keeps it 0.
            scale = torch.where(scale > 1e-12, scale, torch.ones_like(scale))
        self.config["center"] = [float(c) for c in center]
        self.config["scale"] = [float(s) for s in scale]
        return ((vectors.double() - center) / scale).float()


#: The metanetwork attribute whose *input* is the invariant trunk's output, per registry name.
TRUNK_HEADS = {"statnn": "mlp", "dws": "head", "nfn": "head", "gmn": "readout"}


@torch.no_grad()
def metanetwork_trunk(trained: Any, params: Mapping[str, Tensor], spec: NetworkSpec | None = None) -> Tensor:
    """The invariant features a trained metanetwork's head reads (its trunk's output).

    The weights are normalized as in training, the metanetwork runs in eval mode, and the
    input of its head module (:data:`TRUNK_HEADS`: the pooled invariant features of ``dws``,
    ``nfn`` and ``gmn``, the weight statistics of ``statnn``) is returned.

    Args:
        trained: a :class:`~weightspace.trained.TrainedMetanetwork`.
        params: ``{name: Tensor[B, *shape]}`` raw weights.
        spec: their architecture (default: the metanetwork's).

    Shapes:
        returns ``[B, F]`` float32.
    """
    net = trained.net
    head_name = TRUNK_HEADS.get(net.name)
    if head_name is None or not net.invariant:
        raise WeightzooError(
            f"metanetwork {net.name!r} has no permutation-invariant trunk to embed with; use a run "
            f"of one of: {', '.join(TRUNK_HEADS)}")
    captured: list[Tensor] = []
    hook = getattr(net, head_name).register_forward_pre_hook(
        lambda _module, args: captured.append(args[0].detach()))
    was_training = net.training
    net.eval()
    try:
        trained.raw_output(params, spec)
    finally:
        hook.remove()
        net.train(was_training)
    return captured[-1].flatten(1).float()


class WeightsEmbedder(Embedder):
    """``weights``: the invariant trunk of a trained metanetwork run."""

    def __init__(self, zoo: Zoo, run: str | os.PathLike | None, **_: Any) -> None:
        from weightspace.trained import WEIGHTS_FILE, TrainedMetanetwork

        if run is None:
            raise WeightzooError("method 'weights' needs --run RUN_DIR: the output directory of "
                                 "`zoo train` whose metanetwork embeds the weights")
        self.trained = TrainedMetanetwork.load(run)
        name = self.trained.net.name
        if name not in TRUNK_HEADS or not self.trained.net.invariant:
            raise WeightzooError(
                f"{run}: metanetwork {name!r} has no permutation-invariant trunk to embed with; "
                f"train one of: {', '.join(TRUNK_HEADS)}")
        super().__init__({"method": "weights", "metanetwork": name,
                          "run_sha256": sha256_file(Path(run) / WEIGHTS_FILE),
                          "run": str(Path(run).resolve())})

    def embed(self, spec: NetworkSpec, params: Mapping[str, Tensor]) -> Tensor:
        return metanetwork_trunk(self.trained, params, spec)


@dataclass(frozen=True)
class EmbeddingMethod:
    """A registered embedding method.

    Args:
        name: the registry name (the table is ``embeddings/<name>.parquet``).
        make: ``make(zoo, probe=, n_probes=, seed=, run=) -> Embedder``.
        summary: one line for help texts.
        searchable: whether a task embeds in the same space (``zoo search --method NAME``).
    """

    name: str
    make: Callable[..., Embedder]
    summary: str
    searchable: bool = False


EMBEDDINGS: dict[str, EmbeddingMethod] = {
    m.name: m for m in (
        EmbeddingMethod("behavior", BehaviorEmbedder,
                        "softmax outputs on a seeded probe set (tasks embed in the same space)", True),
        EmbeddingMethod("statnn", StatNNEmbedder, "standardized per-tensor weight statistics"),
        EmbeddingMethod("weights", WeightsEmbedder,
                        "the invariant trunk of a trained metanetwork (--run RUN_DIR)"),
    )
}


def get_embedding_method(name: str) -> EmbeddingMethod:
    """The registered embedding method ``name``; the error lists the valid ones."""
    if name not in EMBEDDINGS:
        raise WeightzooError(f"unknown embedding method {name!r}; valid methods: {', '.join(EMBEDDINGS)}")
    return EMBEDDINGS[name]


# ================================================================================ reading
@dataclass
class StoredEmbeddings:
    """A zoo's vectors of one method.

    Args:
        method: the method name.
        table: ``model_id`` and the ``FLOAT[d]`` column :attr:`column`.
        config: the method's config (see the module docstring).
    """

    method: str
    table: pa.Table
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def column(self) -> str:
        return embedding_column(self.method)

    @property
    def dim(self) -> int:
        return int(self.table.schema.field(self.column).type.list_size)

    @property
    def model_ids(self) -> list[str]:
        return self.table.column("model_id").to_pylist()

    def vectors(self, model_ids: list[str] | None = None) -> Tensor:
        """The vectors, in table order or for ``model_ids`` (NaN rows for ids without one).

        Shapes:
            returns ``[N, d]`` float32.
        """
        col = self.table.column(self.column).combine_chunks()
        flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        vecs = torch.from_numpy(flat.reshape(len(col), self.dim).copy())
        if model_ids is None:
            return vecs
        idx = pc.index_in(pa.array(model_ids, pa.string()), value_set=self.table.column("model_id"))
        pos = idx.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        out = torch.full((len(model_ids), self.dim), float("nan"))
        have = np.flatnonzero(pos >= 0)
        out[torch.from_numpy(have)] = vecs[torch.from_numpy(pos[have])]
        return out


def _open(zoo: Zoo | str | os.PathLike) -> Zoo:
    return zoo if isinstance(zoo, Zoo) else open_zoo(zoo)


def read_embeddings(zoo: Zoo | str | os.PathLike, method: str, required: bool = True) -> StoredEmbeddings | None:
    """The stored vectors of ``method`` in a zoo.

    Args:
        zoo: an opened zoo or its directory.
        method: a registered method name.
        required: raise when the zoo has none (default ``True``); else return ``None``.
    """
    get_embedding_method(method)
    z = _open(zoo)
    rel = sidecar_path(GROUP, method)
    entry = next((f for f in z.manifest.sidecar_files() if f.path == rel), None)
    if entry is None:
        if not required:
            return None
        raise WeightzooError(f"zoo {z.name!r} has no {method} embeddings ({rel}); compute them "
                             f"first: zoo embed {z.root} --method {method}")
    return _stored_embeddings(read_sidecar_file(z.root, entry), method, rel)


def _stored_embeddings(table: pa.Table, method: str, rel: str) -> StoredEmbeddings:
    """The vectors of ``method`` in its sidecar ``table`` (at ``rel``), checked."""
    column = embedding_column(method)
    if column not in table.column_names:
        raise WeightzooError(f"{rel} has no column {column!r}; recompute it with zoo embed --method {method}")
    typ = table.schema.field(column).type
    if not pa.types.is_fixed_size_list(typ):
        raise WeightzooError(f"{rel}: column {column!r} has type {typ}, not FLOAT[d]")
    meta = table.schema.field(column).metadata or {}
    raw = meta.get(META_KEY.encode())
    config = parse_json(raw, f"{rel}: the metadata of column {column!r}", WeightzooError,
                        f"recompute it with zoo embed --method {method}") if raw else {}
    return StoredEmbeddings(method, table.select(["model_id", column]), config)


# ================================================================================ writing
@dataclass(frozen=True)
class EmbedResult:
    """What :func:`embed_zoo` did.

    Args:
        method: the method.
        path: the sidecar table's path in the zoo.
        column: the vector column.
        dim: the vectors' dimension ``d``.
        embedded: models embedded now.
        skipped: selected models that already had a vector.
        diverged: selected models left out because their vector is not finite (diverged weights or outputs).
        config: the method's config as stored.
    """

    method: str
    path: str
    column: str
    dim: int
    embedded: int
    skipped: int
    config: dict[str, Any]
    diverged: int = 0


def _same_space(method: EmbeddingMethod, embedder: Embedder, stored: dict[str, Any]) -> None:
    ignore = set(embedder.derived) | {"run", "n_outputs"}
    want = {k: v for k, v in embedder.config.items() if k not in ignore}
    have = {k: v for k, v in stored.items() if k not in ignore}
    if want != have:
        diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        detail = "; ".join(f"{k}: stored {have.get(k)!r}, now {want.get(k)!r}" for k in diff)
        raise WeightzooError(
            f"the zoo's {method.name} embeddings were computed with other options ({detail}); "
            f"re-run with the stored options so every vector lives in one space")


def embed_zoo(zoo: Zoo | str | os.PathLike, method: str, where: str | None = None,
              probe: str | None = None, n_probes: int | None = None, seed: int | None = None,
              run: str | os.PathLike | None = None, chunk: int = CHUNK,
              progress: bool = False) -> EmbedResult:
    """Compute one vector per model and store them with the zoo (``embeddings/<method>.parquet``).

    Models that already have a vector of this method are skipped, so re-running after the zoo
    grew embeds only the new models. Options that define the space (probe task, ``n_probes``,
    ``seed``, the metanetwork run) must match the stored ones; left out, they are taken from
    the stored table.

    Args:
        zoo: an opened local zoo or its directory.
        method: a registered method (:data:`EMBEDDINGS`: ``behavior``, ``statnn``, ``weights``).
        where: a SQL condition on ``models`` selecting the models to embed (default: all).
        probe: ``behavior``: the task whose training inputs are the probes, as a task string
            (:mod:`retrieval.tasks`; default: the stored one, else the dataset the zoo was
            built on).
        n_probes: ``behavior``: number of probe inputs (default: the stored number, else
            :data:`DEFAULT_PROBES`).
        seed: ``behavior``: seed of the probe draw (default: the stored seed, else ``0``).
        run: ``weights``: a ``zoo train`` run directory (default: the stored run's path).
        chunk: models loaded and embedded at once (default :data:`CHUNK`).
        progress: a progress bar over the models (default ``False``).

    Returns:
        an :class:`EmbedResult`.

    Raises:
        WeightzooError: an unknown method, a missing option, a ``where`` that selects no model,
            vectors whose dimension differs between architectures or from the stored ones, or
            options other than the stored ones.
    """
    m = get_embedding_method(method)
    z = _open(zoo)
    if not isinstance(chunk, int) or chunk < 1:
        raise WeightzooError(f"chunk must be a positive integer, got {chunk!r}")
    if m.name == "behavior":
        check_not_inr(z, "zoo embed --method behavior")
    # The vectors go into the zoo: its write lock is held for the whole run, so a zoo that another
    # process is writing, or that cannot be written, fails now instead of after the work.
    with ZooLock(z.root, f"zoo embed --method {m.name}") as lock:
        check_sidecar_writable(z.root, GROUP)
        return _embed_locked(z, m, lock, where, probe, n_probes, seed, run, chunk, progress)


def _embed_locked(z: Zoo, m: EmbeddingMethod, lock: ZooLock, where: str | None, probe: str | None,
                  n_probes: int | None, seed: int | None, run: str | os.PathLike | None, chunk: int,
                  progress: bool) -> EmbedResult:
    """:func:`embed_zoo`'s work, under the zoo's lock ``lock``."""
    from tqdm.auto import tqdm

    rel = sidecar_path(GROUP, m.name)
    # A table whose file is not the one zoo.json lists (an interrupted write) is embedded again
    # and rewritten (catalog.sidecar.stored_sidecar), never taken as done.
    table = stored_sidecar(z.root, z.manifest, rel)
    stored = _stored_embeddings(table, m.name, rel) if table is not None else None
    # Options left out take the stored table's values (then its defaults): a plain re-run
    # continues in the same space.
    have = stored.config if stored is not None else {}
    options = {"probe": probe if probe is not None else have.get("probe"),
               "n_probes": n_probes if n_probes is not None else have.get("n_probes", DEFAULT_PROBES),
               "seed": seed if seed is not None else have.get("seed", 0),
               "run": run if run is not None else have.get("run")}
    embedder = m.make(z, **options)
    if stored is not None:
        _same_space(m, embedder, stored.config)
    sel = z.select(where=where, order_by="model_id")
    if len(sel) == 0:
        raise WeightzooError(f"where={where!r} (--where) selects no model of zoo {z.name!r}" if where else
                             f"zoo {z.name!r} has no models to embed")
    ids = sel.column("model_id")
    done = set(stored.model_ids) if stored is not None else set()
    todo = [i for i, mid in enumerate(ids) if mid not in done]
    column = embedding_column(m.name)
    if not todo:
        return EmbedResult(m.name, rel, column, stored.dim, 0, len(ids), stored.config)
    rows = sel.take(todo)
    out_ids: list[str] = []
    parts: list[Tensor] = []
    first_arch, diverged = "", 0
    with tqdm(total=len(rows), desc=f"embed {m.name}", unit="model", disable=not progress) as bar:
        for positions in rows.positions_by_arch().values():
            group = rows.take(positions)
            spec = group.network_spec
            for start in range(0, len(group), chunk):
                part = group.take(np.arange(start, min(start + chunk, len(group))))
                vecs = embedder.embed(spec, part.stacked())
                if parts and vecs.shape[1] != parts[0].shape[1]:
                    raise WeightzooError(
                        f"embedding dimension mismatch: {m.name} gives {vecs.shape[1]}-dimensional "
                        f"vectors for architecture {spec.arch_id} but {parts[0].shape[1]} for {first_arch}, "
                        f"and a zoo holds one {m.name} space: embed the models of one kind only (where="
                        f"\"arch_id = '{first_arch}'\", --where), or use --method behavior, which embeds every "
                        f"architecture with the same outputs in one space")
                first_arch = first_arch or spec.arch_id
                ok = torch.isfinite(vecs).all(1)  # a diverged model's vector is not stored (nor standardized)
                diverged += int((~ok).sum())
                parts.append(vecs[ok].float())
                out_ids += [mid for mid, keep in zip(part.column("model_id"), ok.tolist()) if keep]
                bar.update(len(part))
    if not out_ids and stored is not None:  # only diverged models were left to embed
        return EmbedResult(m.name, rel, column, stored.dim, 0, len(ids) - len(todo), stored.config, diverged)
    if not out_ids:
        raise WeightzooError(f"every selected model ({diverged}) has a non-finite {m.name} vector (diverged "
                             f"weights or outputs); nothing to embed: select models that trained (where=\"status "
                             f"= 'ok'\", --where)")
    vectors = torch.cat(parts)
    if stored is not None and vectors.shape[1] != stored.dim:
        raise WeightzooError(
            f"embedding dimension mismatch: {rel} holds {stored.dim}-dimensional vectors but these "
            f"models give {vectors.shape[1]}, and a zoo holds one {m.name} space: embed only models of the "
            f"stored kind (e.g. the same number of outputs or parameter tensors), use --method behavior "
            f"(one space for every architecture with the same outputs), or replace the stored vectors "
            f"(zoo drop ZOO {sidecar_path(GROUP, m.name).removesuffix('.parquet')}, then embed these)")
    vectors = embedder.finish(vectors, stored.config if stored is not None else None)
    config = dict(embedder.config)
    table = embeddings_sidecar(out_ids, vectors, m.name, config)
    write_sidecar(z.root, GROUP, m.name, table, lock=lock)
    return EmbedResult(m.name, rel, column, int(vectors.shape[1]), len(out_ids), len(ids) - len(todo), config,
                       diverged)


def embeddings_sidecar(model_ids: list[str], vectors: Tensor, method: str, config: dict[str, Any]) -> pa.Table:
    """The sidecar table of ``method``: ``model_id`` and ``emb_<method>`` (``FLOAT[d]``, the
    config in its field metadata).

    Shapes:
        ``vectors [N, d]``.
    """
    a = vectors.detach().cpu().float().numpy()
    if a.ndim != 2 or a.shape[0] != len(model_ids):
        raise WeightzooError(f"{len(model_ids)} model ids for vectors of shape {list(a.shape)}")
    arr = pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1), pa.float32()), a.shape[1])
    meta = {META_KEY: json.dumps(_jsonable(config), sort_keys=True)}
    f = pa.field(embedding_column(method), arr.type, metadata=meta)
    return pa.table({"model_id": pa.array(model_ids, pa.string())}).append_column(f, arr)


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    return x
