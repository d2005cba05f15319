"""Analyze a zoo: the landscape metrics of every selected model, stored with the zoo (``zoo
analyze``), and plots of any column of a zoo (``zoo plot``).

:func:`analyze_zoo` runs metrics from :data:`METRICS` on the selected rows of a zoo built by
``zoo build`` (classifiers; the data is the exact split the zoo was built on,
:func:`zoo_builders.load_zoo_dataset`) and stores each metric's columns in the sidecar table
``analysis/<metric>.parquet`` (:func:`catalog.sidecar.write_sidecar`), so ``zoo query`` can
filter and sort on them:

| metric | columns | per | data |
| --- | --- | --- | --- |
| ``hessian`` | ``hessian_{top_eig,trace}_{train,test}`` | model | ``batches x batch_size`` train / test examples |
| ``cka`` | ``cka_seed`` | seed pair | ``cka_batches x cka_batch_size`` test examples |
| ``connectivity`` | ``mc_linear``, ``mc_bezier`` (``..._aligned`` with ``align``) | seed pair | test (bend: train) |
| ``averaging`` | ``avg_acc_delta`` (pairs aligned by weight matching) | seed pair | test split |
| ``subspace`` | ``subspace_proj_acc``, ``subspace_proj_error`` and a spectrum figure | the selection | test split |

Which rows: those matching ``where``, with ``status = 'ok'``, at one checkpoint per run (the
last by default). A seed pair is two rows that agree on every hyperparameter axis of the build
spec (and the checkpoint and architecture) but not on ``seed``; a pairwise metric is computed
per pair and each row gets the mean over its pairs. Randomness (Lanczos start vectors,
Rademacher vectors, Bezier data order, weight-matching layer order) is seeded per model from
its ``model_id`` (per pair from both ids; :func:`model_seed`), so a model's value does not
depend on which other models are analyzed with it, nor on how they are chunked.

A pairwise metric's table also records each row's partners (``<metric>_partners``: their seeds),
since its mean depends on which partners are selected; the ``subspace`` table records each row's
selection (``subspace_selection``: a digest of the model_ids of its architecture's selected rows),
since its values depend on all of them.

Re-running skips rows whose columns are already stored (``force`` recomputes them) and were
computed over the same partners (pairwise metrics) or the same selection (``subspace``) as the
current selection gives them: a wider or narrower ``where`` computes those rows again, so the
stored values do not depend on the order of runs. The ``subspace`` metric is computed for all the
selected rows of an architecture at once, whenever any of them is not done. Values that are
undefined (NaN) are stored as NULL.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor

from catalog.errors import WeightzooError, format_bytes
from catalog.execution import eval_pass_examples, graph_population_values, reuse_freed_memory
from catalog.lock import ZooLock
from catalog.network import NetworkSpec, population_forward
from catalog.paths import check_output_path
from catalog.selection import Selection
from catalog.sidecar import check_sidecar_writable, sidecar_path, stored_sidecar, write_sidecar
from catalog.zoo import Zoo, open_zoo
from weightspace.analysis.alignment import align_to
from weightspace.analysis.averaging import avg_acc_delta
from weightspace.analysis.cka import linear_cka
from weightspace.analysis.connectivity import bezier_barrier, linear_barrier
from weightspace.analysis.evaluation import EVAL_BATCH
from weightspace.analysis.hessian import LANCZOS_BASIS, hessian_top_eig, hessian_trace
from weightspace.analysis.pairs import mean_over_pairs, seed_pairs
from weightspace.analysis.phase import PhaseGrid, line_plot, phase_heatmap, plot_label, scatter_plot
from weightspace.analysis.subspace import SubspaceResult, plot_spectrum, subspace_analysis
from weightspace.memory import MEMORY_SHARE

#: The sidecar group of the analysis tables.
GROUP = "analysis"
#: Plot kinds of :func:`plot_zoo`.
PLOT_KINDS = ("heatmap", "line", "scatter")
#: Layer-chain families the metrics support: cross-entropy classifiers (graph classifiers too).
CLASSIFIER_FAMILIES = ("mlp", "cnn")
#: Bytes the Hessian metrics hold per activation value per example: the gradient graph over all
#: ``batches * batch_size`` examples stays alive for the Hessian-vector products. Peak memory of
#: 8 and 16 models on 640 examples measured 4.3-4.9x the float32 activations for a ResNet-8 and
#: 7.3-7.6x for a ViT (attention keeps scores and softmax too): 8 floats.
HESSIAN_BYTES_PER_ACTIVATION = 8 * 4
#: Share of the available memory the Hessian metrics plan to use for one chunk of models: the
#: share every step sized from files is held to (:data:`weightspace.memory.MEMORY_SHARE`).
HESSIAN_MEMORY_SHARE = MEMORY_SHARE


@dataclass(frozen=True)
class AnalyzeConfig:
    """Settings of :func:`analyze_zoo` (defaults follow the Phase-Transition Model Zoo).

    Args:
        batches: Hessian data: this many batches ... (default ``10``)
        batch_size: ... of this many examples (default ``64``); also the Bezier training
            mini-batch.
        hessian_iters: maximum Lanczos steps of the top eigenvalue, one Hessian-vector product
            each (default ``100``).
        hessian_tol: relative residual tolerance of the top eigenvalue (default ``1e-4``, not
            PyHessian's ``1e-3``, which bounds power iteration's change per step; see
            :func:`~weightspace.analysis.hessian.hessian_top_eig`).
        trace_samples: Hutchinson Rademacher vectors (default ``100``; about 4% standard error).
        cka_batches: CKA data: this many batches ... (default ``10``)
        cka_batch_size: ... of this many test examples (default ``128``).
        cka_layer: compare hidden representations instead of the logits (default ``None``:
            logits): a layer chain's hidden layer index (its neuron values; column
            ``cka_seed_layer<i>``), or a graph's node name (its output, flattened per example,
            e.g. ``"layer2.0.relu2"``; column ``cka_seed_node_<name>`` with ``_`` for dots).
        align: also compute ``mc_linear_aligned`` / ``mc_bezier_aligned`` after aligning the
            second network of each pair to the first by weight matching (default ``False``).
        linear_points: points along the line, endpoints included (default ``11``).
        bezier_bends: Bezier control points counting the endpoints (default ``3``).
        bezier_epochs: epochs training the bend (default ``10``).
        bezier_lr: Adam learning rate of the bend (default ``1e-2``).
        bezier_points: evaluation points along the curve (default ``5``).
        subspace_variance: project onto the rank explaining this variance (default ``0.9``).
        subspace_folds: folds of the held-out projection (default ``5``).
        seed: mixed into every model's seed (default ``0``).
        chunk: most models (or pairs) computed as one population (default ``64``; bounds memory).
    """

    batches: int = 10
    batch_size: int = 64
    hessian_iters: int = 100
    hessian_tol: float = 1e-4
    trace_samples: int = 100
    cka_batches: int = 10
    cka_batch_size: int = 128
    cka_layer: int | str | None = None
    align: bool = False
    linear_points: int = 11
    bezier_bends: int = 3
    bezier_epochs: int = 10
    bezier_lr: float = 1e-2
    bezier_points: int = 5
    subspace_variance: float = 0.9
    subspace_folds: int = 5
    seed: int = 0
    chunk: int = 64

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "cka_layer":
                index = isinstance(v, int) and not isinstance(v, bool) and v >= 0
                if v is not None and not index and not (isinstance(v, str) and v.strip()):
                    raise WeightzooError(f"cka_layer must be a chain's hidden layer index >= 0, a graph's node "
                                         f"name, or None, got {v!r}")
            elif f.name == "align":
                if not isinstance(v, bool):
                    raise WeightzooError(f"align must be True or False, got {v!r}")
            elif f.name == "seed":
                if not isinstance(v, int) or isinstance(v, bool):
                    raise WeightzooError(f"seed must be an integer, got {v!r}")
            elif f.type == "int":
                if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                    raise WeightzooError(f"{f.name} must be a positive integer, got {v!r}")
            elif f.type == "float":
                if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v) or v <= 0:
                    raise WeightzooError(f"{f.name} must be a positive number, got {v!r}")
        if not 0 < self.hessian_tol < 1:
            raise WeightzooError(f"hessian_tol must be in (0, 1), got {self.hessian_tol!r}")
        if not 0 < self.subspace_variance <= 1:
            raise WeightzooError(f"subspace_variance must be in (0, 1], got {self.subspace_variance!r}")
        if self.subspace_folds < 2:
            raise WeightzooError(f"subspace_folds must be >= 2, got {self.subspace_folds}")
        if self.linear_points < 2 or self.bezier_points < 2:
            raise WeightzooError("linear_points and bezier_points must be >= 2 (the endpoints)")
        if self.bezier_bends < 3:
            raise WeightzooError(f"bezier_bends counts the endpoints and must be >= 3, got {self.bezier_bends}")

    @classmethod
    def with_overrides(cls, base: AnalyzeConfig | None, overrides: dict) -> AnalyzeConfig:
        """``base`` (default: the defaults) with the given fields changed; unknown names raise."""
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(overrides) - set(valid))
        if unknown:
            raise WeightzooError(f"unknown analysis option(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
        return replace(base or cls(), **overrides)


# ================================================================================ metrics
@dataclass
class _Arch:
    """The work on one architecture's selected rows.

    ``table``: the rows' metadata (``{column: list}``); ``pending``: rows to compute (bool
    ``[R]``); ``pairs``: seed pairs ``[M, 2]`` over the rows (pairwise metrics).
    """

    arch_id: str
    spec: NetworkSpec
    selection: Selection
    table: dict[str, list]
    pending: np.ndarray
    pairs: np.ndarray | None = None
    _weights: dict[int, dict[str, Tensor]] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return self.table["model_id"]

    def weights(self, rows: np.ndarray) -> dict[str, Tensor]:
        """The stacked weights of ``rows`` (row positions), loaded once per row."""
        missing = [int(r) for r in rows if int(r) not in self._weights]
        if missing:
            batch = self.selection.take(missing).stacked(self.arch_id)
            for i, r in enumerate(missing):
                self._weights[r] = {k: v[i] for k, v in batch.items()}
        return {p.name: torch.stack([self._weights[int(r)][p.name] for r in rows])
                for p in self.spec.params}


@dataclass
class _Context:
    """What every metric computation shares."""

    zoo: Zoo
    config: AnalyzeConfig
    data: object  # zoo_builders.Dataset
    out_dir: Path
    progress: bool
    subspace: dict[str, SubspaceResult] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    _runs: dict | None = None
    _aligned: dict[tuple[str, str], dict[str, Tensor]] = field(default_factory=dict)

    def x(self, spec: NetworkSpec, split: str) -> Tensor:
        x = self.data.x_train if split == "train" else self.data.x_test
        return x.reshape(-1, *spec.input_shape).to(spec.torch_dtype)

    def y(self, split: str) -> Tensor:
        return self.data.y_train if split == "train" else self.data.y_test

    def runs(self) -> dict:
        """``{run_id: RunConfig}`` of the zoo's build spec (read on first use)."""
        if self._runs is None:
            from zoo_builders.spec import BuildSpec

            self._runs = {r.run_id: r for r in BuildSpec.from_dict(self.zoo.manifest.spec).runs()}
        return self._runs


@dataclass(frozen=True)
class Metric:
    """One analysis metric: its sidecar table is ``analysis/<name>.parquet``.

    ``kind``: ``"model"`` (one value per row), ``"pair"`` (per seed pair, averaged per row) or
    ``"selection"`` (depends on all selected rows of an architecture).
    """

    name: str
    kind: str
    description: str
    columns: Callable[[AnalyzeConfig], list[str]]
    compute: Callable[[_Context, _Arch, Callable[[int], None]], dict[str, np.ndarray]]


def model_seed(key: str, seed: int = 0) -> int:
    """A 63-bit seed from a model id (or ``"<id_a>|<id_b>"`` for a pair) and a global seed."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _chunks(n: int, size: int) -> list[np.ndarray]:
    return [np.arange(s, min(n, s + size)) for s in range(0, n, size)]


def _nan_column(n: int) -> np.ndarray:
    return np.full(n, np.nan)


# ------------------------------------------------------------------------------ hessian
def _training_subset(run, n_full: int) -> Tensor:
    """The training examples a run trained on: the builder's seeded subsample for
    ``train_fraction < 1`` (as :func:`zoo_builders.train.train_classifiers` draws it)."""
    from zoo_builders.train import member_generator

    n_sub = max(1, round(run.training.train_fraction * n_full))
    if n_sub >= n_full:
        return torch.arange(n_full)
    return torch.randperm(n_full, generator=member_generator(run, "subset"))[:n_sub].sort().values


def hessian_model_bytes(spec: NetworkSpec, n_examples: int) -> int:
    """Memory the Hessian metrics of one model of ``spec`` on ``n_examples`` examples plan for:
    :data:`HESSIAN_BYTES_PER_ACTIVATION` per activation value per example, plus 16 copies of
    its trained parameters (products, random vectors, gradients) and twice the Lanczos basis of
    :data:`~weightspace.analysis.hessian.LANCZOS_BASIS` vectors (it is copied when members
    converge)."""
    trained = sum(p.numel for p in spec.params if p.trainable)
    copies = 16 + 2 * LANCZOS_BASIS
    return HESSIAN_BYTES_PER_ACTIVATION * spec.activation_numel * n_examples + copies * 4 * trained


def hessian_chunk(spec: NetworkSpec, n_examples: int, most: int, available: int) -> int:
    """How many models the Hessian metrics compute at once: at most ``most``, and as many as
    :data:`HESSIAN_MEMORY_SHARE` of ``available`` bytes holds (:func:`hessian_model_bytes`).

    Raises:
        WeightzooError: not even one model fits; the message names the examples to cut.
    """
    per_model = hessian_model_bytes(spec, n_examples)
    fit = int(available * HESSIAN_MEMORY_SHARE // per_model)
    if fit < 1:
        raise WeightzooError(
            f"the Hessian metrics of one {spec.family} model ({spec.arch_id}) on {n_examples} examples need "
            f"about {format_bytes(per_model)} (the gradient graph of every example), more than half the "
            f"{format_bytes(available)} available: use fewer examples (--batches or --batch-size; "
            f"examples = batches x batch size)")
    return min(most, fit)


def _hessian(ctx: _Context, arch: _Arch, tick: Callable[[int], None]) -> dict[str, np.ndarray]:
    from zoo_builders.build import available_memory

    cfg, spec = ctx.config, arch.spec
    rows = np.flatnonzero(arch.pending)
    out = {c: _nan_column(len(arch.ids)) for c in _hessian_columns(cfg)}
    n_want = cfg.batches * cfg.batch_size
    available = available_memory()
    size = hessian_chunk(spec, n_want, cfg.chunk, available)
    if size < min(cfg.chunk, len(rows)):
        warnings.warn(f"hessian: {size} {spec.family} models at a time, not {cfg.chunk}: each needs about "
                      f"{format_bytes(hessian_model_bytes(spec, n_want))} on {n_want} examples, and half the "
                      f"{format_bytes(available)} available is planned for", stacklevel=2)
    x_train, y_train = ctx.x(spec, "train"), ctx.y("train")
    x_test, y_test = ctx.x(spec, "test")[:n_want], ctx.y("test")[:n_want]
    fractions = arch.table["train_fraction"] if "train_fraction" in arch.table else [1.0] * len(arch.ids)
    # Members with the same training-set size share one computation (their batches differ).
    by_fraction: dict[float, list[int]] = {}
    for r in rows:
        by_fraction.setdefault(float(fractions[r]), []).append(int(r))
    for fraction, members in by_fraction.items():
        members = np.asarray(members)
        for chunk in _chunks(len(members), size):
            idx = members[chunk]
            params = arch.weights(idx)
            seeds = [model_seed(arch.ids[r], cfg.seed) for r in idx]
            if fraction < 1.0:
                runs = ctx.runs()
                subsets = [_training_subset(runs[arch.table["run_id"][r]], len(x_train)) for r in idx]
                pick = torch.stack([s[:n_want] for s in subsets])  # [P, N] each run's own examples
                xs, ys = x_train[pick], y_train[pick]
            else:
                xs, ys = x_train[:n_want], y_train[:n_want]
            for split, (x, y) in (("train", (xs, ys)), ("test", (x_test, y_test))):
                eig = hessian_top_eig(spec, params, x, y, iters=cfg.hessian_iters, tol=cfg.hessian_tol,
                                      seed=seeds)
                tr = hessian_trace(spec, params, x, y, samples=cfg.trace_samples, seed=seeds)
                out[f"hessian_top_eig_{split}"][idx] = eig.double().numpy()
                out[f"hessian_trace_{split}"][idx] = tr.double().numpy()
            tick(len(idx))
    return out


def _hessian_columns(cfg: AnalyzeConfig) -> list[str]:
    return ["hessian_top_eig_train", "hessian_trace_train", "hessian_top_eig_test", "hessian_trace_test"]


# ------------------------------------------------------------------------------ pairs
def _active_pairs(arch: _Arch) -> np.ndarray:
    """The seed pairs with at least one pending row (so a pending row's mean is over all its
    pairs)."""
    pairs = arch.pairs
    return pairs[arch.pending[pairs[:, 0]] | arch.pending[pairs[:, 1]]]


def _pair_seeds(arch: _Arch, pairs: np.ndarray, seed: int) -> list[int]:
    return [model_seed(f"{arch.ids[a]}|{arch.ids[b]}", seed) for a, b in pairs]


def partners_column(metric: str) -> str:
    """The column of a pairwise metric's table that records, per row, the seeds of the partners
    its values are the mean over (e.g. ``cka_partners``)."""
    return f"{metric}_partners"


def selection_column(metric: str) -> str:
    """The column of a selection metric's table that records, per row, the selection its values
    were computed over (e.g. ``subspace_selection``, see :func:`_selection_digests`)."""
    return f"{metric}_selection"


def _selection_digests(arch: _Arch) -> list[str]:
    """Per row, the digest of the selection a selection metric computes it over: sha256 (16 hex
    digits) of the sorted model_ids of the architecture's selected rows, the same for every row.
    A digest rather than the ids themselves: every row would otherwise hold the whole list."""
    digest = hashlib.sha256("\n".join(sorted(arch.ids)).encode()).hexdigest()[:16]
    return [digest] * len(arch.ids)


def _partner_seeds(arch: _Arch) -> list[list[int]]:
    """Per row, the sorted seeds of its seed partners among the selected rows (``[]``: none).

    Partners agree with the row on every axis but the seed, and no two share a seed
    (:func:`~weightspace.analysis.pairs.seed_pairs` refuses that), so their seeds name them.
    """
    seeds = arch.table["seed"]
    out: list[list[int]] = [[] for _ in arch.ids]
    for a, b in arch.pairs:
        out[a].append(seeds[b])
        out[b].append(seeds[a])
    return [sorted(p) for p in out]


def _per_row(arch: _Arch, pairs: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each row's mean over its pairs (NaN for rows in none)."""
    return mean_over_pairs(pairs, torch.as_tensor(values, dtype=torch.float64), len(arch.ids)).numpy()


def _cka_column(cfg: AnalyzeConfig) -> str:
    layer = cfg.cka_layer
    if layer is None:
        return "cka_seed"
    if isinstance(layer, str):
        return "cka_seed_node_" + re.sub(r"[^0-9a-z]+", "_", layer.lower()).strip("_")
    return f"cka_seed_layer{layer}"


def _representation(spec: NetworkSpec, params: dict[str, Tensor], x: Tensor, layer: int | str | None) -> Tensor:
    """``[P, N, D]`` logits, the neuron values of a chain's hidden layer ``layer``, or a graph
    node's output flattened per example; computed in passes over the examples, like evaluation
    (:func:`~catalog.execution.eval_pass_examples`), so that the activations held stay bounded
    however many examples and networks (all 1,280 at once: 2 GB for 64 small ViTs)."""
    n_pop = next(iter(params.values())).shape[0]
    step = eval_pass_examples(n_pop, EVAL_BATCH)

    def one_pass(xb: Tensor) -> Tensor:
        if layer is None:
            return population_forward(spec, params, xb)
        if isinstance(layer, str):
            return graph_population_values(spec, params, xb, [layer])[layer].flatten(2)
        acts: list[Tensor] = []
        population_forward(spec, params, xb, activations=acts)
        return acts[layer]

    with torch.no_grad():
        return torch.cat([one_pass(x[i:i + step]) for i in range(0, x.shape[0], step)], 1)


def _check_cka_layer(layer: int | str | None, spec: NetworkSpec, arch_id: str) -> None:
    """A user error unless ``layer`` names a hidden representation of ``spec``."""
    if layer is None:
        return
    if spec.is_chain:
        if isinstance(layer, str):
            raise WeightzooError(f"cka_layer {layer!r} names a node of a graph; {arch_id} is a {spec.family} layer "
                                 f"chain: give a hidden layer index 0..{len(spec.layers) - 2}")
        if layer >= len(spec.layers) - 1:
            raise WeightzooError(f"cka_layer {layer} is not a hidden layer of {arch_id} "
                                 f"(hidden layers 0..{len(spec.layers) - 2}); leave it out for the logits")
        return
    hidden = [n.name for n in spec.nodes[:-1]]
    if not isinstance(layer, str) or layer not in hidden:
        what = f"is a layer index; {arch_id} is a {spec.family} graph" if not isinstance(layer, str) else \
            f"is not a node of {arch_id} (before its output)"
        raise WeightzooError(f"cka_layer {layer!r} {what}: give a node name, one of {', '.join(hidden)}")


def _cka(ctx: _Context, arch: _Arch, tick: Callable[[int], None]) -> dict[str, np.ndarray]:
    cfg, spec = ctx.config, arch.spec
    _check_cka_layer(cfg.cka_layer, spec, arch.arch_id)
    n = cfg.cka_batches * cfg.cka_batch_size
    x = ctx.x(spec, "test")[:n]
    pairs = _active_pairs(arch)
    values = np.empty(len(pairs))
    for chunk in _chunks(len(pairs), cfg.chunk):
        p = pairs[chunk]
        reps = _representation(spec, arch.weights(p.reshape(-1)), x, cfg.cka_layer)  # [2M, N, D]
        values[chunk] = linear_cka(reps[0::2], reps[1::2]).numpy()
        tick(len(chunk))
    return {_cka_column(cfg): _per_row(arch, pairs, values)}


def _aligned(ctx: _Context, arch: _Arch, pairs: np.ndarray) -> dict[str, Tensor]:
    """Network b of each pair aligned to network a by weight matching (cached per pair)."""
    keys = [(arch.ids[a], arch.ids[b]) for a, b in pairs]
    todo = [i for i, k in enumerate(keys) if k not in ctx._aligned]
    if todo:
        sub = pairs[todo]
        b = align_to(arch.spec, arch.weights(sub[:, 0]), arch.weights(sub[:, 1]),
                     seed=_pair_seeds(arch, sub, ctx.config.seed))
        for j, i in enumerate(todo):
            ctx._aligned[keys[i]] = {k: v[j] for k, v in b.items()}
    return {p.name: torch.stack([ctx._aligned[k][p.name] for k in keys]) for p in arch.spec.params}


def _connectivity_columns(cfg: AnalyzeConfig) -> list[str]:
    cols = ["mc_linear", "mc_bezier"]
    return cols + (["mc_linear_aligned", "mc_bezier_aligned"] if cfg.align else [])


def _connectivity(ctx: _Context, arch: _Arch, tick: Callable[[int], None]) -> dict[str, np.ndarray]:
    cfg, spec = ctx.config, arch.spec
    x_train, y_train = ctx.x(spec, "train"), ctx.y("train")
    x_test, y_test = ctx.x(spec, "test"), ctx.y("test")
    pairs = _active_pairs(arch)
    values = {c: np.empty(len(pairs)) for c in _connectivity_columns(cfg)}
    for chunk in _chunks(len(pairs), cfg.chunk):
        p = pairs[chunk]
        a = arch.weights(p[:, 0])
        seeds = _pair_seeds(arch, p, cfg.seed)
        seconds = {"": arch.weights(p[:, 1])}
        if cfg.align:
            seconds["_aligned"] = _aligned(ctx, arch, p)
        for suffix, b in seconds.items():
            line = linear_barrier(spec, a, b, x_test, y_test, points=cfg.linear_points, bn_x=x_train)
            curve = bezier_barrier(spec, a, b, x_train, y_train, x_test, y_test, n_bends=cfg.bezier_bends,
                                   epochs=cfg.bezier_epochs, batch_size=cfg.batch_size, lr=cfg.bezier_lr,
                                   points=cfg.bezier_points, seed=seeds)
            values[f"mc_linear{suffix}"][chunk] = line.mc.double().numpy()
            values[f"mc_bezier{suffix}"][chunk] = curve.mc.double().numpy()
        tick(len(chunk))
    return {c: _per_row(arch, pairs, v) for c, v in values.items()}


def _averaging(ctx: _Context, arch: _Arch, tick: Callable[[int], None]) -> dict[str, np.ndarray]:
    spec = arch.spec
    x_test, y_test = ctx.x(spec, "test"), ctx.y("test")
    pairs = _active_pairs(arch)
    values = np.empty(len(pairs))
    for chunk in _chunks(len(pairs), ctx.config.chunk):
        p = pairs[chunk]
        b = _aligned(ctx, arch, p)
        values[chunk] = avg_acc_delta(spec, arch.weights(p[:, 0]), b, x_test, y_test, align=False,
                                      bn_x=ctx.x(spec, "train")).double().numpy()
        tick(len(chunk))
    return {"avg_acc_delta": _per_row(arch, pairs, values)}


# ------------------------------------------------------------------------------ subspace
def _subspace(ctx: _Context, arch: _Arch, tick: Callable[[int], None]) -> dict[str, np.ndarray]:
    cfg, spec = ctx.config, arch.spec
    rows = np.arange(len(arch.ids))
    if len(rows) < 2:
        raise WeightzooError(f"subspace: architecture {arch.arch_id} has {len(rows)} selected model; "
                             f"a subspace analysis needs at least 2")
    result = subspace_analysis(spec, arch.weights(rows), ctx.x(spec, "test"), ctx.y("test"),
                               project_variance=cfg.subspace_variance, folds=cfg.subspace_folds,
                               seed=cfg.seed, bn_x=ctx.x(spec, "train"))
    figure = ctx.out_dir / f"{ctx.zoo.root.resolve().name}-subspace-{arch.arch_id}.png"  # "." has no name
    plot_spectrum(result, figure)
    ctx.subspace[arch.arch_id] = result
    ctx.figures.append(figure)
    tick(len(rows))
    return {"subspace_proj_acc": result.projected_accuracy.double().numpy(),
            "subspace_proj_error": result.projection_error.mean(1).numpy()}


METRICS: dict[str, Metric] = {
    "hessian": Metric("hessian", "model", "Hessian top eigenvalue and trace on train and test data",
                      _hessian_columns, _hessian),
    "cka": Metric("cka", "pair", "linear CKA of logits between seed runs", lambda c: [_cka_column(c)], _cka),
    "connectivity": Metric("connectivity", "pair", "mode connectivity (line, Bezier curve) of seed pairs",
                           _connectivity_columns, _connectivity),
    "averaging": Metric("averaging", "pair", "accuracy of the aligned weight average of seed pairs",
                        lambda c: ["avg_acc_delta"], _averaging),
    "subspace": Metric("subspace", "selection", "per-layer weight spectra and held-out projected accuracy",
                       lambda c: ["subspace_proj_acc", "subspace_proj_error"], _subspace),
}


def parse_metrics(metrics: str | Sequence[str] | None) -> list[str]:
    """Metric names from a list or a comma-separated string (``None`` or ``"all"``: every
    metric); unknown names raise, listing the valid ones."""
    if metrics is None:
        return list(METRICS)
    names = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    names = [n.strip() for n in names if n.strip()]
    if names == ["all"]:
        return list(METRICS)
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise WeightzooError(f"unknown metric {', '.join(map(repr, unknown)) or '(none given)'}; valid "
                             f"metrics: {', '.join(METRICS)} (or all)")
    return list(dict.fromkeys(names))


# ================================================================================ results
@dataclass
class MetricReport:
    """What one metric did: rows computed now and already stored, its table and figures."""

    metric: str
    sidecar: str
    columns: list[str]
    computed: int
    skipped: int
    seconds: float
    figures: list[Path] = field(default_factory=list)
    #: architectures left out, each with the reason (e.g. a subspace of a single selected model)
    left_out: list[str] = field(default_factory=list)


@dataclass
class AnalyzeResult:
    """The outcome of :func:`analyze_zoo`.

    ``table``: ``model_id`` and every requested column for the selected rows (stored values,
    new and old); ``subspace``: the :class:`SubspaceResult` per architecture computed now.
    """

    zoo: Path
    rows: int
    excluded: int
    reports: list[MetricReport]
    table: pa.Table
    subspace: dict[str, SubspaceResult] = field(default_factory=dict)

    @property
    def figures(self) -> list[Path]:
        return [f for r in self.reports for f in r.figures]

    def summary(self) -> list[dict]:
        """Per column: rows with a value, min, mean and max over the selected rows."""
        out = []
        for name in self.table.column_names[1:]:
            v = np.asarray([np.nan if x is None else x for x in self.table.column(name).to_pylist()],
                           dtype=np.float64)
            ok = v[~np.isnan(v)]
            out.append({"column": name, "rows": int(len(ok)),
                        "min": float(ok.min()) if len(ok) else None,
                        "mean": float(ok.mean()) if len(ok) else None,
                        "max": float(ok.max()) if len(ok) else None})
        return out


# ================================================================================ selection
def _check_classifiers(zoo: Zoo) -> None:
    spec = zoo.manifest.spec
    task = (spec.get("task") or {}) if isinstance(spec.get("task"), dict) else {"name": spec.get("task")}
    families = {s.family for s in zoo.architectures.values()}
    if task.get("name") == "inr" or "siren" in families:
        raise WeightzooError(
            f"zoo {zoo.name!r} holds implicit neural representations (SIRENs fitting images), not "
            f"classifiers; the landscape metrics need cross-entropy classifiers (e.g. a zoo built "
            f"from the digits-mlp or phase-cnn preset)")
    chains = {s.family for s in zoo.architectures.values() if s.is_chain}
    unsupported = sorted(chains - set(CLASSIFIER_FAMILIES))
    if unsupported:
        raise WeightzooError(f"zoo {zoo.name!r} has architectures of family {', '.join(unsupported)}; "
                             f"the landscape metrics support {', '.join(CLASSIFIER_FAMILIES)} classifiers "
                             f"and graph classifiers (resnet, vgg, transformer, ...)")


def _axis_columns(zoo: Zoo, columns: Sequence[str] = ()) -> list[str]:
    """The metadata columns of the build spec's hyperparameter axes, ``seed`` excluded: the
    top-level ``grid``/``random`` and, in a heterogeneous spec, each family's ``grid``/``random``
    and those of its ``training`` overrides that are among ``columns`` (``checkpoints`` is not)."""
    spec = zoo.manifest.spec
    parts = [spec, *(f for f in (spec.get("families") or []) if isinstance(f, dict))]
    axes = [a for part in parts for a in [*(part.get("grid") or {}),
                                          *(a for a in (part.get("random") or {})
                                            if a not in ("samples", "sampler_seed"))]]
    # a family's own training settings set it apart from another family of the same architecture
    axes += [k for part in parts[1:] if isinstance(part.get("training"), dict) for k in part["training"]
             if k in columns]
    return [a.split(".", 1)[1] if a.startswith(("architecture.", "training.")) else a
            for a in dict.fromkeys(axes) if a.split(".")[-1] != "seed"]


def _parse_checkpoint(checkpoint: int | str | None) -> int | str | None:
    if checkpoint is None or checkpoint in ("last", "all"):
        return None if checkpoint == "last" else checkpoint
    if isinstance(checkpoint, str) and checkpoint.lstrip("-").isdigit():
        checkpoint = int(checkpoint)
    if not isinstance(checkpoint, int) or isinstance(checkpoint, bool) or checkpoint < 0:
        raise WeightzooError(f"checkpoint must be an epoch >= 0, 'last' or 'all', got {checkpoint!r}")
    return checkpoint


def _filter_rows(table: pa.Table, checkpoint: int | str | None, ok_only: bool) -> np.ndarray:
    """Row positions at the chosen checkpoint (``None``: each run's last) with status ok."""
    keep = np.ones(table.num_rows, dtype=bool)
    if ok_only and "status" in table.column_names:
        keep &= np.asarray([s == "ok" for s in table.column("status").to_pylist()])
    if "checkpoint" not in table.column_names or checkpoint == "all":
        return np.flatnonzero(keep)
    cps = np.asarray(table.column("checkpoint").to_pylist())
    if checkpoint is None:
        runs = table.column("run_id").to_pylist()
        last: dict[str, int] = {}
        for r, c in zip(runs, cps):
            last[r] = max(last.get(r, c), c)
        keep &= np.asarray([c == last[r] for r, c in zip(runs, cps)])
    else:
        at = cps == checkpoint
        if not at.any():
            raise WeightzooError(f"no selected row is at checkpoint {checkpoint}; the checkpoints are "
                                 f"{', '.join(map(str, sorted(set(cps.tolist()))))}")
        keep &= at
    return np.flatnonzero(keep)


def _stored(zoo: Zoo, name: str, warn: bool = True) -> pa.Table | None:
    """The stored table of metric ``name``; ``None`` if there is none, or if its file is not the one
    the manifest lists (an interrupted write: its rows are computed again, see
    :func:`catalog.sidecar.stored_sidecar`)."""
    return stored_sidecar(zoo.root, zoo.manifest, sidecar_path(GROUP, name), warn=warn)


#: What each row's stored values were computed over: ``(column, value per row, its Arrow type)``,
#: e.g. ``("cka_partners", [[1, 2], [0, 2], ...], list<int64>)`` or ``("subspace_selection",
#: ["3f2a...", ...], string)``.
_Basis = tuple[str, list, pa.DataType]


def _done(stored: pa.Table | None, ids: list[str], columns: list[str],
          partners: _Basis | None = None) -> np.ndarray:
    """Which of ``ids`` have a non-null value in every one of ``columns`` of ``stored``.

    ``partners``: what a row's values were computed over (a pairwise metric's partners, the
    subspace's selection); a row is done only if its stored values were computed over exactly
    this (a row stored without it, before it was recorded, is not).
    """
    if stored is None or any(c not in stored.column_names for c in columns):
        return np.zeros(len(ids), dtype=bool)
    for c in columns:
        stored = stored.filter(pc.is_valid(stored.column(c)))
    idx = pc.index_in(pa.array(ids, pa.string()), value_set=stored.column("model_id"))
    done = np.asarray(idx.is_valid().to_pylist(), dtype=bool)
    if partners is not None:
        column, seeds, _ = partners
        if column not in stored.column_names:
            return np.zeros(len(ids), dtype=bool)
        done &= np.asarray([old == new for old, new in zip(stored.column(column).take(idx).to_pylist(), seeds)])
    return done


def _rows_table(ids: list[str], values: dict[str, np.ndarray], rows: np.ndarray,
                stored: pa.Table | None, partners: _Basis | None = None) -> pa.Table:
    """``model_id`` and the values of ``rows``, NaN as NULL, plus the other stored columns of
    those models (a written row replaces the stored one whole).

    ``partners``: what the values were computed over (see :data:`_Basis`), stored with them. A
    row records one partner set (or selection), so its other stored columns (e.g. CKA of another
    layer) are kept only if they were computed over the same; otherwise they become NULL, to be
    computed again when asked for, rather than be taken for values over the new partners.
    """
    out = {"model_id": pa.array([ids[r] for r in rows], pa.string())}
    for c, v in values.items():
        sub = v[rows]
        out[c] = pa.array(sub, pa.float64(), mask=np.isnan(sub))
    if partners is not None:
        column, seeds, typ = partners
        out[column] = pa.array([seeds[r] for r in rows], typ)
    table = pa.table(out)
    if stored is not None:
        idx = pc.index_in(table.column("model_id"), value_set=stored.column("model_id"))
        stale = None
        if partners is not None:
            old = (stored.column(partners[0]).take(idx).to_pylist() if partners[0] in stored.column_names
                   else [None] * len(rows))
            stale = pa.array([o != n for o, n in zip(old, out[partners[0]].to_pylist())], pa.bool_())
        for c in stored.column_names:
            if c not in out:
                kept = stored.column(c).take(idx)
                if stale is not None:
                    kept = pc.if_else(stale, pa.nulls(len(rows), kept.type), kept)
                table = table.append_column(stored.schema.field(c), kept)
    return table


# ================================================================================ analyze
def analyze_zoo(
    zoo: str | os.PathLike | Zoo,
    metrics: str | Sequence[str] | None = None,
    where: str | None = None,
    checkpoint: int | str | None = None,
    out: str | os.PathLike | None = None,
    force: bool = False,
    progress: bool = True,
    config: AnalyzeConfig | None = None,
    **options,
) -> AnalyzeResult:
    """Compute landscape metrics for the selected models of a zoo and store them with it.

    Args:
        zoo: a zoo directory (built by ``zoo build``) or an opened local :class:`Zoo`.
        metrics: names from :data:`METRICS`, a list or comma-separated (default: all).
        where: a SQL condition selecting rows, e.g. ``"lr = 0.01"`` (default: all).
        checkpoint: the epoch to analyze, ``"last"`` (default ``None``: each run's last) or
            ``"all"``.
        out: the directory of figures (the subspace spectrum; default: next to the zoo).
        force: recompute rows whose values are already stored (default ``False``).
        progress: show a progress bar per metric (default ``True``).
        config: an :class:`AnalyzeConfig` (default: its defaults).
        **options: :class:`AnalyzeConfig` fields overriding ``config``, e.g. ``batches=2``.

    Returns:
        an :class:`AnalyzeResult`.

    Raises:
        WeightzooError: an unknown metric or option; a zoo of INRs or of another
            non-classifier family; a zoo not built by ``zoo build``; no selected row; a pairwise
            metric on a selection without seed pairs.
    """
    from tqdm.auto import tqdm

    from zoo_builders.datasets import load_zoo_dataset

    names = parse_metrics(metrics)
    cfg = AnalyzeConfig.with_overrides(config, options)
    checkpoint = _parse_checkpoint(checkpoint)
    if out is not None and "subspace" in names:  # its figures: a location that cannot take them fails now
        check_output_path(out, "out", None, directory=True, flag="--out")
    reuse_freed_memory()  # population passes over whole splits (83 -> 72 s: 16 ViTs, hessian + averaging)
    z = zoo if isinstance(zoo, Zoo) else open_zoo(zoo)
    if not z.root.is_dir():
        raise WeightzooError(f"analyze needs a local zoo directory; pull {z.name!r} first (zoo pull)")
    _check_classifiers(z)
    # The results go into the zoo: its write lock is held for the whole run, so a zoo that another
    # process is writing, or that cannot be written, fails now instead of after the work, and no
    # other writer comes between the computation and its write.
    with ZooLock(z.root, "zoo analyze") as lock:
        check_sidecar_writable(z.root, GROUP)
        data = load_zoo_dataset(z)  # raises for a zoo without a build spec
        selection = z.select(where=where)
        if len(selection) == 0:
            raise WeightzooError(f"no row of zoo {z.name!r} matches where={where!r}")
        keep = _filter_rows(selection.table, checkpoint, ok_only=True)
        excluded = len(selection) - len(keep)
        if len(keep) == 0:
            raise WeightzooError(f"no selected row of zoo {z.name!r} has status 'ok' at the chosen checkpoint")
        selection = selection.take(keep)
        ctx = _Context(z, cfg, data, Path(out) if out is not None else z.root.resolve().parent, progress)
        if out is None and "subspace" in names:
            check_output_path(ctx.out_dir, "out", None, directory=True, flag="--out; default: the zoo's folder")
        axes = _axis_columns(z, selection.table.column_names)

        # Plan everything first, so bad input fails before anything is computed.
        archs: list[_Arch] = []
        for arch_id, sel in selection.by_arch().items():
            cols = ["model_id", "run_id", "checkpoint", "seed", *axes,
                    *(["train_fraction"] if "train_fraction" in sel.columns else [])]
            missing = [c for c in cols if c not in sel.columns]
            if missing:
                raise WeightzooError(
                    f"zoo {z.name!r} lacks the column(s) {', '.join(missing)} that zoo analyze reads (each run's "
                    "seed and its build spec's axes): analyze zoos trained by `zoo build`; zoos written by "
                    "`zoo generate` or `zoo import` do not record how their networks were trained")
            table = {c: sel.column(c) for c in dict.fromkeys(cols)}
            archs.append(_Arch(arch_id, z.network_spec(arch_id), sel, table, np.zeros(len(sel), bool)))
        plans: list[tuple[Metric, list[str], pa.Table | None]] = []
        left_out: dict[str, dict[str, str]] = {}  # metric -> {arch_id: why it is left out}
        for name in names:
            metric = METRICS[name]
            columns = metric.columns(cfg)
            stored = _stored(z, name)
            if metric.kind == "pair":
                for arch in archs:
                    if arch.pairs is None:
                        arch.pairs = _seed_pairs(arch, axes, name)
            if name == "cka":
                for arch in archs:
                    _check_cka_layer(cfg.cka_layer, arch.spec, arch.arch_id)
            if metric.kind == "selection":
                left_out[name] = {a.arch_id: f"{len(a.ids)} selected model, needs at least 2"
                                  for a in archs if len(a.ids) < 2}
                if len(left_out[name]) == len(archs):
                    raise WeightzooError(
                        f"{name}: every selected architecture has a single selected model "
                        f"({', '.join(left_out[name])}); a {name} analysis needs at least 2 models of an "
                        f"architecture: widen --where")
                if left_out[name]:
                    warnings.warn(f"{name}: left out architecture(s) {', '.join(left_out[name])}: a single selected "
                                  f"model each (a {name} analysis needs at least 2)", stacklevel=2)
            plans.append((metric, columns, stored))

        reports = []
        for metric, columns, stored in plans:
            t0 = time.perf_counter()
            partners: dict[str, _Basis] = {}  # arch_id -> what each row's values are computed over
            for arch in archs:
                # A row's value is its mean over its partners in this selection (pair), or is
                # computed from every selected model of its architecture (subspace): a row stored
                # over other partners or another selection (a narrower or wider --where before) is
                # computed again, so that the stored value does not depend on the order of runs.
                if metric.kind == "pair":
                    partners[arch.arch_id] = (partners_column(metric.name), _partner_seeds(arch),
                                              pa.list_(pa.int64()))
                elif metric.kind == "selection":
                    partners[arch.arch_id] = (selection_column(metric.name), _selection_digests(arch), pa.string())
                done = _done(stored, arch.ids, columns, partners.get(arch.arch_id))
                arch.pending = np.ones(len(arch.ids), bool) if force else ~done
                if metric.kind == "selection" and arch.pending.any():
                    arch.pending[:] = True
            total = sum(len(_active_pairs(a)) if metric.kind == "pair" else int(a.pending.sum()) for a in archs)
            computed = skipped = 0
            figures_before = len(ctx.figures)
            with tqdm(total=total, desc=f"analyze {metric.name}", disable=not progress,
                      unit="pair" if metric.kind == "pair" else "model") as bar:
                for arch in archs:
                    skipped += int((~arch.pending).sum())
                    if not arch.pending.any() or arch.arch_id in left_out.get(metric.name, {}):
                        continue
                    values = metric.compute(ctx, arch, bar.update)
                    # Rows without any value (e.g. no seed pair) are left out, not stored as NULLs.
                    has_value = np.any([~np.isnan(v) for v in values.values()], axis=0)
                    rows = np.flatnonzero(arch.pending & has_value)
                    if len(rows):
                        new_rows = _rows_table(arch.ids, values, rows, stored, partners.get(arch.arch_id))
                        write_sidecar(z.root, GROUP, metric.name, new_rows, lock=lock)
                    computed += len(rows)
            reports.append(MetricReport(metric.name, sidecar_path(GROUP, metric.name), columns, computed,
                                        skipped, time.perf_counter() - t0, ctx.figures[figures_before:],
                                        [f"{a} ({why})" for a, why in left_out.get(metric.name, {}).items()]))

        fresh = Zoo(z.root)  # the manifest now lists the written tables
        ids = [i for a in archs for i in a.ids]
        table = pa.table({"model_id": pa.array(ids, pa.string())})
        for metric, columns, _ in plans:
            stored = _stored(fresh, metric.name, warn=False)
            for c in columns:
                if stored is not None and c in stored.column_names:
                    idx = pc.index_in(table.column("model_id"), value_set=stored.column("model_id"))
                    table = table.append_column(c, stored.column(c).take(idx))
                else:
                    table = table.append_column(c, pa.nulls(len(ids), pa.float64()))
    if z is not zoo:
        z.close()
    return AnalyzeResult(z.root, len(ids), excluded, reports, table, ctx.subspace)


def _seed_pairs(arch: _Arch, axes: list[str], metric: str) -> np.ndarray:
    try:
        return seed_pairs(arch.table | {"arch_id": [arch.arch_id] * len(arch.ids)},
                          [*axes, "checkpoint"])
    except WeightzooError as e:
        raise WeightzooError(f"metric {metric!r} compares seed pairs, but on {arch.arch_id}: {e}") from None


# ================================================================================ plots
def plot_zoo(
    zoo: str | os.PathLike | Zoo,
    x: str,
    y: str | None = None,
    metric: str | None = None,
    out: str | os.PathLike = "fig.png",
    kind: str = "heatmap",
    agg: str = "mean",
    log: bool = False,
    where: str | None = None,
    checkpoint: int | str | None = None,
):
    """Plot a column of a zoo's ``models`` table (metadata and analysis columns).

    - ``heatmap``: ``metric`` aggregated (``agg``, e.g. the mean over seeds) over every
      ``x`` x ``y`` cell (:func:`~weightspace.analysis.phase.phase_heatmap`);
    - ``line``: ``metric`` aggregated at each ``x``, one line per value of ``y`` (optional);
    - ``scatter``: every row's (``x``, ``metric``), coloured by ``y`` (optional).

    Args:
        zoo: a zoo directory or URL, or an opened :class:`Zoo`.
        x: the horizontal axis column, e.g. ``width``.
        y: the vertical axis of a heatmap (e.g. ``batch_size``); the groups of a line or
            scatter plot.
        metric: the plotted column, e.g. ``hessian_trace_train``.
        out: the figure to write (``.png``).
        kind: one of :data:`PLOT_KINDS` (default ``heatmap``).
        agg: aggregation of a cell or point (default ``mean``; see
            :data:`~weightspace.analysis.phase.AGGREGATIONS`).
        log: plot ``log10`` of what is plotted (default ``False``): of the aggregate of a cell or
            point (``log10(mean)``, not the mean of ``log10`` values), of each row in a scatter plot.
        where: a SQL condition selecting rows (default: all).
        checkpoint: rows at this epoch; ``"all"``; default ``None``: each run's last checkpoint,
            or every checkpoint when ``x`` or ``y`` is ``checkpoint``.

    Returns:
        what :func:`phase_heatmap` / :func:`line_plot` / :func:`scatter_plot` return.
    """
    if kind not in PLOT_KINDS:
        raise WeightzooError(f"unknown plot kind {kind!r}; valid: {', '.join(PLOT_KINDS)}")
    if metric is None:
        raise WeightzooError("name the plotted column with metric (--metric), e.g. hessian_trace_train")
    if kind == "heatmap" and y is None:
        raise WeightzooError("a heatmap needs a y column (--y), e.g. batch_size")
    checkpoint = _parse_checkpoint(checkpoint)
    check_output_path(out, "out", None, flag="--out")  # before any work: a figure that cannot be written fails now
    if checkpoint is None and "checkpoint" in (x, y):
        checkpoint = "all"
    z = zoo if isinstance(zoo, Zoo) else open_zoo(zoo)
    table = z.select(where=where).table
    names = table.column_names
    unknown = [c for c in (x, y, metric) if c is not None and c not in names]
    if unknown:
        raise WeightzooError(f"unknown column {', '.join(map(repr, unknown))} in zoo {z.name!r}; its "
                             f"columns: {', '.join(names)}")
    if table.num_rows == 0:
        raise WeightzooError(f"no row of zoo {z.name!r} matches where={where!r}")
    table = table.take(pa.array(_filter_rows(table, checkpoint, ok_only=False)))
    if kind == "heatmap":
        return phase_heatmap(table, x, y, metric, agg=agg, log=log, out=out)
    data = {c: table.column(c).to_pylist() for c in dict.fromkeys(c for c in (x, y, metric) if c)}
    if kind == "line":
        return line_plot(data, x, metric, group=y, agg=agg, out=out, log=log)
    return scatter_plot(data, x, metric, group=y, out=out, log=log)


def plot_summary(result: PhaseGrid | dict, kind: str, x: str, y: str | None, metric: str, agg: str = "mean",
                 log: bool = False, out: str | os.PathLike = "fig.png") -> list[str]:
    """The lines ``zoo plot`` prints for ``result``, what :func:`plot_zoo` returned for these
    arguments: what was plotted, named as the figure names it (:func:`plot_label`: ``log10
    mean test_loss`` is log10 of the mean), and a heatmap's cells left out for a diverged run."""
    if kind == "heatmap":
        lines = [f"wrote a heatmap of {plot_label(metric, agg, log)} over {x} x {y} to {out}"]
        n_div = int((result.diverged > 0).sum()) if result.diverged is not None else 0
        if n_div:
            lines.append(f"{n_div} cell(s) hold a diverged run ({metric} is NaN): left out, hatched")
        return lines
    shown = plot_label(metric, agg if kind == "line" else None, log)
    return [f"wrote a {kind} plot of {shown} vs {x}" + (f" per {y}" if y else "") + f" to {out}"]
