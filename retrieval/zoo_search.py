"""Which model of a zoo should I use for my task? :func:`search_zoo` (``zoo search``) and
:func:`score_zoo`.

A search scores the zoo's models (all, or those a ``where`` condition selects) for a labelled
task (:mod:`retrieval.tasks`) with one method (:data:`SEARCH_METHODS`) and returns the best
``k``, best first:

- an **estimator** (``logme``, ``hscore``, ``leep``, ``nce``): every model runs on the task's
  training examples and the estimator scores its features or outputs
  (:mod:`retrieval.estimators`); no stored embeddings needed;
- ``behavior``: the task is embedded on the probe set the zoo's behaviour embeddings were
  computed with (:func:`~retrieval.embeddings.task_embedding`) and the models are ranked by
  cosine similarity, one DuckDB scan over the stored vectors (:class:`~retrieval.search.EmbeddingIndex`);
- ``ranker``: a trained :class:`~retrieval.ranker.TrainedRanker` scores the pair (stored
  behaviour embedding, task embedding), plus the estimator scores it was trained with.

Higher scores are better for every method.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor

from catalog.errors import WeightzooError
from catalog.selection import Selection
from catalog.zoo import Zoo, open_zoo
from retrieval._checks import as_labels, check_not_inr
from retrieval.embed import CHUNK, EMBEDDINGS, StoredEmbeddings, read_embeddings
from retrieval.embeddings import task_embedding
from retrieval.estimators.registry import ESTIMATORS, get_estimator
from retrieval.features import read_models
from retrieval.probes import probe_set
from retrieval.rank import rank_models
from retrieval.ranker import RankerFeatures, TrainedRanker, ranker_features
from retrieval.search import EmbeddingIndex
from retrieval.tasks import TaskSpec, load_task
from zoo_builders.datasets import Dataset

#: Every method a search can rank by.
SEARCH_METHODS = (*ESTIMATORS, "behavior", "ranker")
#: Task-embedding neighbours per probe unless a ranker says otherwise.
DEFAULT_K_NEIGHBOURS = 5


def check_method(method: str) -> str:
    """``method`` if a search can rank by it; otherwise an error listing the valid methods."""
    if method in SEARCH_METHODS:
        return method
    if method in EMBEDDINGS:
        raise WeightzooError(
            f"method={method!r} (--method): a task cannot be embedded in the {method} space (it describes "
            f"models only); search with one of: {', '.join(SEARCH_METHODS)}")
    raise WeightzooError(f"unknown search method {method!r}; valid methods: {', '.join(SEARCH_METHODS)}")


# ================================================================================ pieces
def _open(zoo: Zoo | str | os.PathLike) -> Zoo:
    return zoo if isinstance(zoo, Zoo) else open_zoo(zoo)


def candidates(zoo: Zoo, where: str | None) -> Selection:
    """The rows a search ranks (all, or those ``where`` selects), ordered by ``model_id`` so
    that two calls list the same models in the same order."""
    sel = zoo.select(where=where, order_by="model_id")
    if len(sel) == 0:
        # where= is this function's argument, --where the CLI option that passes it.
        raise WeightzooError(f"where={where!r} (--where) selects no model of zoo {zoo.name!r}" if where
                             else f"zoo {zoo.name!r} has no models")
    return sel


def estimator_scores(sel: Selection, estimators: Sequence[str], task_x: Tensor, task_y: Tensor,
                     chunk: int = CHUNK) -> Tensor:
    """Every estimator's score for every row of a selection, each model run once.

    Args:
        sel: the models (any architectures with the task's input shape).
        estimators: registered estimator names.
        task_x: ``[N, *input_shape]`` the task's examples.
        task_y: ``[N]`` their labels.
        chunk: models loaded at once (default :data:`~retrieval.embed.CHUNK`).

    Shapes:
        returns ``[P, E]`` float64 in selection order (NaN for diverged models).
    """
    ests = [get_estimator(e) for e in estimators]
    y = as_labels(task_y, "task labels", len(task_x))
    out = torch.full((len(sel), len(ests)), float("nan"), dtype=torch.float64)
    for positions in sel.positions_by_arch().values():
        group = sel.take(positions)
        spec = group.network_spec
        for start in range(0, len(group), chunk):
            idx = np.arange(start, min(start + chunk, len(group)))
            readout = read_models(spec, group.take(idx).stacked(), task_x)
            ok = (torch.isfinite(readout.logits).flatten(1).all(1)
                  & torch.isfinite(readout.features).flatten(1).all(1))
            rows = torch.from_numpy(positions[idx])
            for j, est in enumerate(ests):
                if ok.any():
                    vals = torch.full((len(idx),), float("nan"), dtype=torch.float64)
                    vals[ok] = est.population(getattr(readout, est.reads)[ok], y).to(torch.float64)
                    out[rows, j] = vals
    return out


@lru_cache(maxsize=8)
def _probes(probe: str, n: int, seed: int) -> Tensor:
    return probe_set(TaskSpec.parse(probe).load(), n, seed)


def task_vector(stored: StoredEmbeddings, data: Dataset, k: int = DEFAULT_K_NEIGHBOURS) -> Tensor:
    """The task's embedding in the space of a zoo's stored behaviour embeddings (same probes).

    Shapes:
        returns ``[d]`` float32, ``d = stored.dim``.
    """
    cfg = stored.config
    missing = [key for key in ("probe", "n_probes", "seed", "n_outputs") if key not in cfg]
    if stored.method != "behavior" or missing:
        raise WeightzooError(f"the zoo's {stored.method} embeddings do not record their probe set "
                             f"({', '.join(missing) or 'not behaviour embeddings'}); recompute them "
                             f"with zoo embed --method behavior")
    probes = _probes(cfg["probe"], int(cfg["n_probes"]), int(cfg["seed"]))
    vec = task_embedding(data.x_train, data.y_train, probes, int(cfg["n_outputs"]),
                         min(k, int(data.x_train.shape[0])))
    if vec.shape[0] != stored.dim:
        raise WeightzooError(
            f"embedding dimension mismatch: the task embeds in {vec.shape[0]} dimensions but the "
            f"stored behaviour embeddings have {stored.dim}; recompute them with zoo embed")
    return vec


def ranker_inputs(stored: StoredEmbeddings, sel: Selection, data: Dataset,
                  estimators: Sequence[str] = (), k: int = DEFAULT_K_NEIGHBOURS,
                  chunk: int = CHUNK) -> RankerFeatures:
    """A ranker's features for every row of ``sel`` and the task ``data``: the stored
    behaviour embeddings, the task's embedding on the same probes and the estimators' scores.

    Args:
        stored: the zoo's behaviour embeddings.
        sel: the candidate models.
        data: the task.
        estimators: estimator scores to add (default none).
        k: task-embedding neighbours per probe (default :data:`DEFAULT_K_NEIGHBOURS`).
        chunk: models loaded at once for the estimators.
    """
    t = task_vector(stored, data, k)
    m = stored.vectors(sel.column("model_id"))
    est = None
    if estimators:
        est = estimator_scores(sel, estimators, data.x_train, data.y_train, chunk).float()
    return ranker_features(m, t, int(stored.config["n_outputs"]), est)


def check_ranker_fits(ranker: TrainedRanker, stored: StoredEmbeddings) -> None:
    """A ranker reads behaviour embeddings of models with its number of outputs."""
    n_out = int(stored.config.get("n_outputs", -1))
    if n_out != ranker.n_outputs:
        raise WeightzooError(
            f"embedding dimension mismatch: the ranker reads behaviour embeddings of models with "
            f"{ranker.n_outputs} outputs but the zoo's have {n_out}")


# ================================================================================ scoring
@dataclass
class ZooScores:
    """One method's score for every candidate model.

    Shapes:
        ``scores [P]`` float64, aligned with ``model_ids``; NaN where a model has no score
        (diverged, or no stored embedding).
    """

    method: str
    task: str
    model_ids: list[str]
    scores: Tensor
    missing: int = 0


def _task_data(task: Any) -> Dataset:
    return load_task(task)


def score_zoo(zoo: Zoo | str | os.PathLike, task: Any, method: str, where: str | None = None,
              ranker: TrainedRanker | str | os.PathLike | None = None,
              chunk: int = CHUNK) -> ZooScores:
    """Score every candidate model of a zoo for a task with one method.

    Args:
        zoo: an opened zoo or its directory.
        task: a task string (``digits:classes=0,1,2``), :class:`~retrieval.tasks.TaskSpec`,
            dataset config or loaded :class:`~zoo_builders.datasets.Dataset`.
        method: one of :data:`SEARCH_METHODS`.
        where: a SQL condition selecting the candidates (default: every model).
        ranker: ``ranker`` only: a :class:`~retrieval.ranker.TrainedRanker` or its directory.
        chunk: models loaded at once (default :data:`~retrieval.embed.CHUNK`).
    """
    method = check_method(method)
    z = _open(zoo)
    check_not_inr(z, "zoo search")
    data = _task_data(task)
    sel = candidates(z, where)
    ids = sel.column("model_id")
    if method in ESTIMATORS:
        scores = estimator_scores(sel, [method], data.x_train, data.y_train, chunk)[:, 0]
        return ZooScores(method, data.name, ids, scores)
    stored = read_embeddings(z, "behavior")
    missing = len(ids) - int(pc.sum(pc.is_in(pa.array(ids, pa.string()),
                                             value_set=stored.table.column("model_id"))).as_py() or 0)
    if method == "behavior":
        t = task_vector(stored, data)
        e = stored.vectors(ids).double()
        scores = (e @ t.double()) / (e.norm(dim=1) * t.double().norm()).clamp_min(1e-300)
        return ZooScores(method, data.name, ids, scores, missing)
    if ranker is None:
        raise WeightzooError("method='ranker' (--method ranker) needs a trained ranker or its directory "
                             "(ranker=, --ranker DIR)")
    r = ranker if isinstance(ranker, TrainedRanker) else TrainedRanker.load(ranker)
    check_ranker_fits(r, stored)
    feats = ranker_inputs(stored, sel, data, r.config.estimators, r.config.k, chunk)
    return ZooScores(method, data.name, ids, r.predict(feats), missing)


# ================================================================================ search
@dataclass
class SearchResult:
    """The best models of a zoo for a task.

    Args:
        task: the task (canonical string).
        method: the method.
        table: ``rank, model_id, score`` and the requested columns, best first.
        candidates: models considered.
        missing: candidates without a stored embedding (``behavior``/``ranker``), left out.
        seconds: wall time of the search.
    """

    task: str
    method: str
    table: pa.Table
    candidates: int
    missing: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "method": self.method, "candidates": self.candidates,
                "missing": self.missing, "notes": self.notes, "seconds": round(self.seconds, 4),
                "results": self.table.to_pylist()}


def _with_columns(zoo: Zoo, ranked: pa.Table, columns: Sequence[str]) -> pa.Table:
    if not columns:
        return ranked
    table = zoo.table
    bad = [c for c in columns if c not in table.column_names]
    if bad:
        raise WeightzooError(f"the zoo has no column(s) {bad} (columns=, --columns); its columns: "
                             f"{', '.join(table.column_names)}")
    idx = pc.index_in(ranked.column("model_id"), value_set=table.column("model_id"))
    for c in columns:
        if c not in ranked.column_names:
            ranked = ranked.append_column(c, table.column(c).take(idx))
    return ranked


def search_zoo(zoo: Zoo | str | os.PathLike, task: Any, method: str = "logme", k: int = 10,
               where: str | None = None, columns: Sequence[str] = (),
               ranker: TrainedRanker | str | os.PathLike | None = None,
               chunk: int = CHUNK) -> SearchResult:
    """The ``k`` models of a zoo predicted to do best on a task, best first.

    Args:
        zoo: an opened zoo or its directory.
        task: a task string (``digits:classes=0,1,2``; see :mod:`retrieval.tasks`), a
            :class:`~retrieval.tasks.TaskSpec` or a loaded dataset.
        method: one of :data:`SEARCH_METHODS` (default ``logme``).
        k: how many models to return (default ``10``).
        where: a SQL condition selecting the candidates (default: every model).
        columns: metadata columns to return with each model (default none).
        ranker: ``ranker`` only: a trained ranker or its directory.
        chunk: models loaded at once (default :data:`~retrieval.embed.CHUNK`).

    Raises:
        WeightzooError: an unknown method, a task with one class or inputs the models do not
            take, a zoo without the embeddings the method needs, an embedding dimension
            mismatch, unknown columns.
    """
    t0 = time.perf_counter()
    method = check_method(method)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise WeightzooError(f"k must be a positive integer, got {k!r}")
    z = _open(zoo)
    check_not_inr(z, "zoo search")
    notes: list[str] = []
    if method == "behavior":
        # The fast path: one DuckDB scan over the stored vectors.
        data = _task_data(task)
        stored = read_embeddings(z, "behavior")
        t = task_vector(stored, data)
        table = stored.table
        n_cand = table.num_rows
        missing = 0
        if where is not None:
            ids = candidates(z, where).column("model_id")
            keep = pc.is_in(table.column("model_id"), value_set=pa.array(ids, pa.string()))
            table = table.filter(keep)
            n_cand, missing = len(ids), len(ids) - table.num_rows
        else:
            missing = int(z.manifest.counts.get("rows", table.num_rows)) - table.num_rows
        with EmbeddingIndex(table, column=stored.column) as index:
            top = index.nearest(t, k)
        ranked = pa.table({"rank": pa.array(range(1, top.num_rows + 1), pa.int64()),
                           "model_id": top.column("model_id"),
                           "score": top.column("similarity").cast(pa.float64())})
        task_name = data.name
    else:
        scores = score_zoo(z, task, method, where, ranker, chunk)
        unscored = int(torch.isnan(scores.scores).sum()) - scores.missing
        if unscored > 0:
            notes.append(f"{unscored} candidate model(s) have no {method} score (diverged: non-finite weights "
                         f"or outputs) and were left out")
        order = rank_models(scores.scores)[:k].tolist()
        order = [i for i in order if not torch.isnan(scores.scores[i])]
        ranked = pa.table({"rank": pa.array(range(1, len(order) + 1), pa.int64()),
                           "model_id": pa.array([scores.model_ids[i] for i in order], pa.string()),
                           "score": pa.array([float(scores.scores[i]) for i in order], pa.float64())})
        n_cand, missing, task_name = len(scores.model_ids), scores.missing, scores.task
    ranked = _with_columns(z, ranked, list(columns))
    return SearchResult(task_name, method, ranked, n_cand, missing, time.perf_counter() - t0, notes)
