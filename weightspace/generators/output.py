"""Generated networks are a zoo: :func:`generate_zoo` (``zoo generate``).

It selects the training networks of one architecture from a source zoo, trains a generator on
them (or loads one from a run directory), samples ``n`` networks, evaluates each on the source
zoo's dataset with the builder's own metric code (classifiers: ``train_loss``, ``train_acc``,
``test_loss``, ``test_acc``, ``ggap`` as :func:`zoo_builders.train.evaluate_classifier` computes
them at build time; INRs: ``mse`` and ``psnr`` against a target image), and writes them with
:class:`~catalog.writer.ZooWriter`. The result opens, queries, verifies and pushes like any zoo.

Each row carries:

| column | value |
| --- | --- |
| ``generator`` | the method name (``noise``, ``hyperrep``, ...) |
| ``generator_hparams`` | the method's hyperparameters as JSON; scalar ones also as ``generator_<name>`` |
| ``generator_seed`` / ``sample_index`` | the sampling seed and the sample's position |
| ``source_zoo`` / ``source_manifest_sha256`` | the source zoo's name and :func:`zoo_content_sha256` |
| ``source_where`` | the condition that selected the training networks |
| ``<condition column>`` | the condition value a conditional method sampled for (e.g. ``lr``) |
| architecture columns | those constant over the training networks (``activation``, ``hidden``, ...) |

``model_id`` is ``<key>-<sample index>`` where ``key`` hashes the method, its hyperparameters,
the source (zoo content, selection), the seed and the condition, so ids are stable (the same
command gives the same ids) and the samples of two different generations never collide;
``run_id`` equals ``model_id`` (every sample is its own "run") and ``checkpoint`` is 0.
Networks with batch norm are written with running statistics recomputed from the source
training split (:func:`with_batch_norm_statistics`), whatever statistics the generator sampled.
The manifest's ``spec`` holds a ``generated`` record (what generated the zoo, from what) and the
source's ``dataset`` / ``task`` / ``architecture``, so :func:`zoo_builders.load_zoo_dataset`
loads the exact data of the source and the dataset card says the zoo is generated.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec, population_forward
from catalog.paths import NAME_PATTERN, check_output_path
from catalog.selection import Selection, describe_differences, name_some
from catalog.writer import ZooWriter, existing_manifest
from catalog.zoo import Zoo, open_zoo
from weightspace.generators.base import MIN_TRAINING_MODELS, Generator, accepts_data, load_generator
from weightspace.generators.registry import build_generator, generator_hparams, get_generator
from zoo_builders.datasets import Dataset, load_zoo_dataset

#: Examples per batch when batch-norm statistics of generated networks are recomputed.
BN_BATCH = 128


@dataclass
class GenerateResult:
    """What :func:`generate_zoo` did.

    Args:
        out: the generated zoo's directory.
        method: the generator's name.
        n_train: training networks (of the selection) the generator learned from (0 if loaded
            and not refitted).
        rows: the generated zoo's rows written now.
        metrics: mean of each metric column over the written rows with status ok.
        diverged: written rows that are not ok: non-finite weights, outputs or metrics.
        saved_to: the run directory the generator was saved to, if any.
        loaded_from: the run directory the generator was loaded from, if any.
    """

    out: Path
    method: str
    n_train: int
    rows: int
    metrics: dict[str, float] = field(default_factory=dict)
    diverged: int = 0
    saved_to: Path | None = None
    loaded_from: Path | None = None

    def report_lines(self) -> list[str]:
        """What ``zoo generate`` prints: what was trained (or loaded) and written, how many of the
        generated networks are not ok (diverged), and the means of the ok ones' metrics, saying
        over how many (a diverged network's loss is inf or NaN and would swamp any mean). Numbers
        too wide for their fixed form get 3 significant digits, as in ``zoo eval-gen``'s table."""
        from weightspace.generators.evaluate import format_number

        trained = f"trained on {self.n_train} networks" if self.n_train else f"loaded from {self.loaded_from}"
        lines = [f"{self.method}: {trained}; wrote {self.rows} networks to {self.out}"]
        if self.diverged:
            lines.append(f"{self.diverged} of {self.rows} generated networks not ok (diverged), left out of the means")
        n_ok = self.rows - self.diverged
        over = f" over the {n_ok} ok network{'s' if n_ok != 1 else ''}"
        m = self.metrics
        if "test_acc" in m:
            lines.append(f"mean test_acc {format_number(100 * m['test_acc'], 2)}%, "
                         f"test_loss {format_number(m['test_loss'], 4)}{over}")
        elif "psnr" in m:
            lines.append(f"mean psnr {format_number(m['psnr'], 2)} dB, mse {format_number(m['mse'], 5)}{over}")
        if self.saved_to is not None:
            lines.append(f"generator saved to {self.saved_to} (reuse with --load)")
        return lines


# ================================================================================ source identity
def zoo_content_sha256(zoo: Zoo) -> str:
    """A sha256 naming a zoo's networks: its name, build spec, architectures, and the paths
    and sha256s of its metadata parts and weight shards (canonical JSON).

    Sidecar tables (``zoo analyze`` results, embeddings) and counts are left out on purpose:
    analyzing the source zoo after generating from it must not make ``zoo eval-gen`` think
    the training networks changed.
    """
    m = zoo.manifest
    files = sorted((f.path, f.sha256) for f in m.files if f.kind in ("part", "shard"))
    blob = json.dumps({"name": m.name, "spec": m.spec, "architectures": m.architectures,
                       "files": files}, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


# ================================================================================ selection
def select_training_set(zoo: Zoo, where: str | None, *, min_models: int = MIN_TRAINING_MODELS) -> Selection:
    """The rows of ``zoo`` matching ``where`` with status ``ok``, of exactly one architecture,
    at least ``min_models`` of them.

    Raises:
        WeightzooError: the rows span several architectures (listed, with how they differ),
            or there are too few.
    """
    sel = zoo.select(where=where)
    status = sel.metadata(["status"]).column("status")
    keep = np.flatnonzero(pc.fill_null(pc.equal(status, "ok"), False).to_numpy(zero_copy_only=False))
    if len(keep) != len(sel):
        sel = sel.take(keep)
    what = f"where={where!r} (--where)" if where else "the whole zoo"  # the argument, then the CLI option
    archs = sel.arch_ids if len(sel) else []
    if len(archs) > 1:
        counts = sel.positions_by_arch()
        listing = name_some([f"{a} ({len(counts[a])} models)" for a in archs])
        raise WeightzooError(
            f"{what} selects {len(archs)} architectures of zoo {zoo.name!r}: {listing}; they differ "
            f"in {describe_differences(sel.network_specs)}. A generator learns one architecture: "
            f"narrow the selection (where=, --where), e.g. add \"arch_id = '{archs[0]}'\"")
    if len(sel) < min_models:
        raise WeightzooError(
            f"{what} selects {len(sel)} models with status 'ok' from zoo {zoo.name!r}; a generator "
            f"needs at least {min_models} to train on: widen the selection (where=, --where)")
    return sel


def check_condition(table: pa.Table, condition: Mapping[str, float], method: str, conditional: bool) -> dict:
    """``condition`` as ``{column: float}``, checked against the training rows' columns.

    Raises:
        WeightzooError: a condition for an unconditional method, or a column that is absent,
            not numeric, or a value that is not a finite number.
    """
    if not condition:
        return {}
    if not conditional:
        raise WeightzooError(
            f"generator {method!r} is not conditional; drop the condition (condition=, --condition); "
            f"conditional methods: {', '.join(_conditional_names()) or 'none registered'}")
    out = {}
    for col, value in condition.items():
        if col not in table.column_names:
            numeric = [f.name for f in table.schema if _is_numeric(f.type)]
            raise WeightzooError(
                f"condition column {col!r} is not a column of the selected models; numeric columns: "
                f"{', '.join(numeric)}")
        typ = table.schema.field(col).type
        if not _is_numeric(typ):
            raise WeightzooError(
                f"condition column {col!r} has type {typ}; a generator conditions on numeric columns "
                f"only (e.g. lr, weight_decay, test_acc)")
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise WeightzooError(f"condition {col}={value!r} (condition=, --condition) is not a number") from None
        if not math.isfinite(v):
            raise WeightzooError(f"condition {col}={value!r} (condition=, --condition) is not a finite number")
        out[col] = v
    return out


def parse_conditions(items: Sequence[str]) -> dict[str, str]:
    """``["lr=0.01", ...]`` -> ``{"lr": "0.01"}`` (values checked by :func:`check_condition`)."""
    out = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip() or not value.strip():
            raise WeightzooError(f"condition {item!r} is not COLUMN=VALUE, e.g. condition=['lr=0.005'] "
                                 f"(--condition lr=0.005)")
        out[key.strip()] = value.strip()
    return out


def _condition_columns(cls: type[Generator], hparams: Mapping[str, Any]) -> list[str]:
    """The columns a conditional generator conditions on: its ``condition`` hyperparameter as
    given, else its constructor's default (empty if it has none)."""
    import inspect

    value = hparams.get("condition")
    if value is None:
        param = inspect.signature(cls.__init__).parameters.get("condition")
        value = None if param is None or param.default is param.empty else param.default
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(c) for c in value]


def _is_numeric(typ: pa.DataType) -> bool:
    return pa.types.is_integer(typ) or pa.types.is_floating(typ)


def _conditional_names() -> list[str]:
    from weightspace.generators.registry import generator_names

    return [n for n in generator_names() if get_generator(n).conditional]


# ================================================================================ evaluation
def task_name(zoo: Zoo) -> str:
    """``"inr"`` or ``"classify"``, from the zoo's build spec."""
    task = zoo.manifest.spec.get("task") or {}
    return (task.get("name") if isinstance(task, dict) else str(task)) or "classify"


def evaluate_networks(spec: NetworkSpec, params: Mapping[str, Tensor], data: Dataset, task: str,
                      images: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """The build-time metrics of each network, as a zoo row holds them.

    Classifiers get ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc`` and ``ggap``
    (computed by the builder's :func:`zoo_builders.train.evaluate_classifier` on the full
    splits). INRs (``task == "inr"``) get ``mse`` and ``psnr`` against the closest of the
    target ``images`` (indices over the dataset's training then test images, as
    ``image_index`` counts at build time) and that image's ``image_index``.

    Args:
        spec: the architecture.
        params: ``{name: Tensor[P, *shape]}``.
        data: the source zoo's dataset.
        task: ``"classify"`` or ``"inr"``.
        images: INR target image indices (required for INRs).

    Shapes:
        returns ``P`` dicts; ``status`` is ``"diverged"`` where weights or any metric are not
        finite (a NaN accuracy means outputs that are not finite, even where the loss is).
    """
    from weightspace.generators.evaluate import models_per_pass
    from zoo_builders.train import EVAL_CHUNK, evaluate_classifier, psnr

    n = next(iter(params.values())).shape[0]
    finite = torch.ones(n, dtype=torch.bool)
    for v in params.values():
        finite &= torch.isfinite(v).flatten(1).all(1)
    rows: list[dict[str, Any]] = []
    if task == "inr":
        if not images:
            raise WeightzooError("evaluating INRs needs the target images' indices")
        x = torch.cat([data.x_train, data.x_test])
        h, w = x.shape[-2:]
        from catalog.coordinates import image_coordinates

        coords = image_coordinates(h, w).to(spec.torch_dtype)                   # [HW, 2]
        targets = x[list(images)].reshape(len(images), -1).double()             # [K, HW]
        per_pass = models_per_pass(spec, h * w)  # every pixel of the image in one pass
        for start in range(0, n, per_pass):
            chunk = {k: v[start:start + per_pass] for k, v in params.items()}
            with torch.no_grad():
                out = population_forward(spec, chunk, coords).reshape(-1, h * w).double()  # [p, HW]
            mse = torch.cdist(out, targets).pow(2) / (h * w)                   # [p, K]
            best, which = mse.min(1)
            for b, k in zip(best.tolist(), which.tolist()):
                rows.append({"mse": b, "psnr": float(psnr(torch.tensor(b))), "image_index": int(images[k])})
    else:
        x_tr = data.x_train.reshape(-1, *spec.input_shape)
        x_te = data.x_test.reshape(-1, *spec.input_shape)
        # The builder's evaluation runs 512 examples at a time; bound the networks per pass so
        # that a CNN population's activations stay within a few hundred MB.
        per_pass = models_per_pass(spec, EVAL_CHUNK)
        for start in range(0, n, per_pass):
            chunk = {k: v[start:start + per_pass] for k, v in params.items()}
            tr_loss, tr_acc = evaluate_classifier(spec, chunk, x_tr.to(spec.torch_dtype), data.y_train)
            te_loss, te_acc = evaluate_classifier(spec, chunk, x_te.to(spec.torch_dtype), data.y_test)
            for i in range(len(tr_loss)):
                rows.append({"train_loss": float(tr_loss[i]), "train_acc": float(tr_acc[i]),
                             "test_loss": float(te_loss[i]), "test_acc": float(te_acc[i]),
                             "ggap": float(tr_acc[i] - te_acc[i])})
    for i, row in enumerate(rows):
        # Every metric, not only the loss: outputs of -inf in a wrong class leave the loss finite
        # and the accuracy NaN, and an "ok" row with a NaN accuracy made the mean test_acc NaN.
        ok = bool(finite[i]) and all(math.isfinite(v) for k, v in row.items() if k != "image_index")
        row["status"] = "ok" if ok else "diverged"
    return rows


def with_batch_norm_statistics(spec: NetworkSpec, params: Mapping[str, Tensor], data: Dataset) -> dict[str, Tensor]:
    """``params`` with every network's batch-norm running statistics recomputed from the source
    dataset's training split (:func:`weightspace.analysis.recompute_batch_norm`, Garipov et al.'s
    ``bn_update``); the trained parameters are returned as given, and a spec without batch norm
    unchanged.

    Running statistics are not weights but a function of the weights and the data: a generator's
    sampled statistics need not fit the weights sampled with them (a per-entry Gaussian even
    draws negative variances), so every generated network, and every network ``eval-gen``
    compares, gets the statistics of its own weights. Recomputing ignores the given statistics,
    so it is idempotent, and a copy of a training network gets the same statistics as the
    training network.

    Shapes:
        ``{name: Tensor[P, *shape]}`` -> the same.
    """
    if all(p.trainable for p in spec.params):
        return dict(params)
    from weightspace.analysis.evaluation import recompute_batch_norm
    from weightspace.generators.evaluate import models_per_pass

    n = next(iter(params.values())).shape[0]
    per_pass = models_per_pass(spec, BN_BATCH)
    x = data.x_train.reshape(-1, *spec.input_shape)
    parts = [recompute_batch_norm(spec, {k: v[s:s + per_pass] for k, v in params.items()}, x, BN_BATCH)
             for s in range(0, n, per_pass)]
    return {**params, **{k: torch.cat([part[k] for part in parts]) for k in parts[0]}}


# ================================================================================ generation
def _architecture_columns(zoo: Zoo, table: pa.Table) -> dict[str, Any]:
    """Architecture columns (``architecture``, ``dataset``, the family's fields, ``depth``,
    ``width``) whose value is the same for every training network, to copy to each sample."""
    names = {"architecture", "dataset", "depth", "width"}
    arch = zoo.manifest.spec.get("architecture")
    if isinstance(arch, dict) and "name" in arch:
        try:
            from zoo_builders.architectures import make_architecture

            names |= set(asdict(make_architecture(dict(arch))[1]))
        except (WeightzooError, TypeError):
            names |= set(arch)
    out = {}
    for name in table.column_names:
        if name in names:
            values = table.column(name).to_pylist()
            if values and all(v == values[0] for v in values) and values[0] is not None:
                out[name] = values[0]
    return out


def _zoo_name(out: Path, source: str, method: str) -> str:
    name = out.name
    return name if NAME_PATTERN.fullmatch(name) else f"{source}-{method}"


def generate_zoo(zoo: Zoo | str | os.PathLike, method: str | None, where: str | None, n: int,
                 out: str | os.PathLike, *, condition: Mapping[str, Any] | Sequence[str] | None = None,
                 hparams: Mapping[str, Any] | Sequence[str] | None = None, load_from: str | os.PathLike | None = None,
                 save_to: str | os.PathLike | None = None, seed: int = 0,
                 quiet: bool = False) -> GenerateResult:
    """Train (or load) a generator on one architecture of ``zoo`` and write ``n`` samples as a zoo.

    Args:
        zoo: the source zoo (opened, or its path / URL).
        method: a registered generator name (see ``generator_names()``); with ``load_from``
            ``None`` means the loaded generator's method.
        where: SQL condition selecting the training networks (rows with status ``ok`` only);
            with ``load_from``, ``None`` means the condition the generator was trained with.
        n: networks to sample.
        out: the generated zoo's directory (new, or a generated zoo of the same settings, which
            gains the samples it does not hold yet).
        condition: ``{column: value}`` or ``["column=value", ...]`` (``--condition lr=0.005``)
            for conditional methods.
        hparams: the method's hyperparameters, ``{name: value}`` or ``["name=value", ...]``
            (text values are typed by :func:`~weightspace.generators.registry.parse_hparams`).
        load_from: a generator run directory to sample from instead of training.
        save_to: write the trained generator's run directory here.
        seed: seed of training and sampling (default ``0``).
        quiet: no progress bars.

    Raises:
        WeightzooError: several architectures, fewer than 10 networks, a condition column that
            is absent or not numeric, a condition for an unconditional method, a loaded
            generator for another architecture or method, a zoo whose dataset is unknown.
    """
    from weightspace.generators.registry import parse_hparams
    from zoo_builders.build import row_schema

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise WeightzooError(f"n={n!r} (--n) must be an integer >= 1")
    out = check_output_path(out, "out", "zoo", flag="--out")  # before any work
    if save_to is not None:
        save_to = check_output_path(save_to, "save_to", "generator", flag="--save-to")
        a, b = Path(save_to).resolve(), out.resolve()
        if a == b or a.is_relative_to(b) or b.is_relative_to(a):
            raise WeightzooError(f"save_to={str(save_to)!r} (--save-to) and out={str(out)!r} (--out) overlap; "
                                 f"the generator and the generated zoo need separate directories")
    src = zoo if isinstance(zoo, Zoo) else open_zoo(zoo)
    content = zoo_content_sha256(src)
    gen: Generator | None = None
    if load_from is not None:
        gen = load_generator(load_from)
        if method is not None and method != gen.name:
            raise WeightzooError(f"{load_from} holds a {gen.name!r} generator, not {method!r}; drop method "
                                 f"(method=, --method) or give method={gen.name!r} (--method {gen.name})")
        if hparams:
            raise WeightzooError("hyperparameters (hparams=, --hparam) apply to a generator being trained; a "
                                 "loaded generator keeps the ones it was trained with: drop them")
        method = gen.name
        trained_on = (gen.source.get("zoo"), gen.source.get("manifest_sha256"))
        if trained_on[0] is not None and trained_on != (src.name, content):
            raise WeightzooError(
                f"{load_from} holds a generator trained on zoo {trained_on[0]!r} (content sha256 "
                f"{str(trained_on[1])[:12]}...), not on zoo {src.name!r} ({content[:12]}...); the generated "
                f"zoo records the zoo its generator learned from: pass that zoo as ZOO")
        if where is None:
            where = gen.source.get("where")
    if method is None:
        raise WeightzooError("give a method (method=, --method NAME) or a generator to load (load_from=, --load DIR)")
    cls = get_generator(method)
    typed = parse_hparams(method, hparams) if hparams else {}
    sel = select_training_set(src, where)
    spec = sel.network_spec
    table = sel.table
    if condition is not None and not isinstance(condition, Mapping):
        condition = parse_conditions(condition)
    cond = check_condition(table, condition or {}, method, cls.conditional)
    if cls.conditional and not cond:  # before any training: sampling needs the values
        cols = _condition_columns(cls, gen.hparams if gen is not None else typed)
        col = cols[0] if cols else "COLUMN"
        raise WeightzooError(
            f"generator {method!r} is conditional: give the value(s) to generate for, e.g. "
            f"condition={{{col!r}: VALUE}} (--condition {col}=VALUE)" + (f"; it conditions on {', '.join(cols)}"
                                                                          if cols else ""))
    if cond and "condition" in generator_hparams(method) and "condition" not in typed and gen is None:
        # A conditional method trains on the columns it is asked to condition on (mip's `condition`).
        typed["condition"] = list(cond)
    data = load_zoo_dataset(src)  # before training: a zoo without a known dataset fails fast

    train_now = gen is None
    if gen is None:
        gen = build_generator(method, spec, **typed)
        gen.source = {"zoo": src.name, "manifest_sha256": content, "where": where, "n_models": len(sel),
                      "seed": seed}
    elif gen.spec.arch_id != spec.arch_id:
        raise WeightzooError(
            f"{load_from} holds a generator for architecture {gen.spec.arch_id}, but the selection "
            f"is architecture {spec.arch_id}; select that architecture (where=, --where)")

    key_blob = json.dumps({"method": method, "hparams": gen.hparams, "source": content, "where": where,
                           "fit": gen.source, "seed": seed, "condition": cond}, sort_keys=True, default=str)
    key = "gen-" + hashlib.sha256(key_blob.encode()).hexdigest()[:12]
    generated = {"method": method, "hparams": gen.hparams, "seed": seed, "where": where, "condition": cond,
                 "source_zoo": src.name, "source_manifest_sha256": content,
                 "trained_on": gen.source}
    if not all(p.trainable for p in spec.params):
        generated["batch_norm_statistics"] = "recomputed from the source training split"
    zoo_spec = {"name": _zoo_name(out, src.name, method), "generated": generated,
                **{k: src.manifest.spec[k] for k in ("dataset", "task", "architecture")
                   if k in src.manifest.spec}}
    existing_manifest(out, zoo_spec["name"], zoo_spec)  # refuses another zoo at --out before any training

    n_train = 0
    if train_now:
        extra = {"data": data} if accepts_data(gen) else {}
        gen.fit(sel.stacked(), table, seed=seed, progress=not quiet, **extra)
        n_train = len(sel)
    saved = gen.save(save_to) if save_to is not None else None
    samples = gen.sample(n, seed=seed, condition=cond or None)
    if task_name(src) == "classify":
        samples = with_batch_norm_statistics(spec, samples, data)
    images = None
    if task_name(src) == "inr":
        images = [int(cond["image_index"])] if "image_index" in cond else \
            sorted({int(v) for v in table.column("image_index").to_pylist() if v is not None})
    metrics = evaluate_networks(spec, samples, data, task_name(src), images)

    arch_cols = _architecture_columns(src, table)
    scalar_hp = {f"generator_{k}": v for k, v in gen.hparams.items()
                 if isinstance(v, (int, float, str, bool))}
    rows = []
    for i in range(n):
        mid = f"{key}-{i:05d}"
        status = metrics[i].pop("status")
        rows.append({"model_id": mid, "run_id": mid, "checkpoint": 0, "status": status,
                     "generator": method, "generator_hparams": json.dumps(gen.hparams, sort_keys=True),
                     **scalar_hp, "generator_seed": seed, "sample_index": i, "source_zoo": src.name,
                     "source_manifest_sha256": content, "source_where": where or "",
                     **arch_cols, **cond, **metrics[i]})
    datasets = dict(src.manifest.datasets)
    with ZooWriter(out, zoo_spec["name"], zoo_spec, datasets=datasets) as writer:
        done = writer.done_run_ids()
        todo = [i for i, r in enumerate(rows) if r["run_id"] not in done]
        if todo:
            arch_id = writer.add_architecture(spec)
            idx = torch.tensor(todo)
            writer.write_part(arch_id, {k: v[idx] for k, v in samples.items()}, [rows[i] for i in todo],
                              row_schema(rows))
        writer.finish()
    written = [rows[i] for i in todo]
    ok = [r for r in written if r["status"] == "ok"]
    summary = {}
    for col in ("test_acc", "test_loss", "mse", "psnr"):
        vals = [r[col] for r in ok if col in r]
        if vals:
            summary[col] = float(np.mean(vals))
    return GenerateResult(out, method, n_train, len(written), summary, len(written) - len(ok), saved,
                          None if train_now else Path(load_from))
