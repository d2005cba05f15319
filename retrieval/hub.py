"""The retrieval hub: a zoo of models trained on many source tasks, the ground truth of how
well each transfers to a task, and a ranker trained on both.

**Building** (:func:`build_hub`). A build spec trains every run on one dataset, so a hub is
built from a *template* spec (the preset ``retrieval-hub``: architectures, hyperparameter grid,
training, and the base dataset) and a list of *source tasks* (:mod:`retrieval.tasks` strings,
default :data:`SOURCE_TASKS`): every run of the template is trained once per source task,
with the population trainer, and all of them are written into one zoo. A row's ``run_id``
hashes the source task with the run's configuration, and the column ``source_task`` says
which task it was trained on. The zoo's manifest records the template spec with the list of
source tasks (``source_tasks``), so rebuilding into the same directory resumes, and the
template's dataset is the zoo's dataset (the default probe set of ``zoo embed``).

Source tasks must share the template dataset's input shape and label space: the default
ones are class subsets of digits (labels unchanged, so output ``j`` is digit ``j`` for every
model). Tasks from other datasets (moons, blobs, mnist1d) would need input adapters and a
shared label space; the hub leaves them out rather than inventing those.

**Ground truth** (:func:`transfer_ground_truth`): a model's transfer to a task is its
linear-probe accuracy (:func:`~retrieval.transfer.linear_probe_accuracy`: frozen
penultimate features, closed-form ridge probe fitted on the task's training split, accuracy
on its test split), computed for a whole architecture's population at once. Fine-tuning is
not used: a probe has no learning rate, epochs or seed to tune.

**Ranker** (:func:`train_ranker`): (model, task, ground truth) triples over the hub's models
and a list of training tasks train a :class:`~retrieval.ranker.TrainedRanker`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from catalog.errors import WeightzooError
from catalog.paths import check_output_path
from catalog.writer import ZooWriter
from catalog.zoo import Zoo, open_zoo
from retrieval.embed import CHUNK, read_embeddings
from retrieval.ranker import RankerConfig, TrainedRanker, TrainingTask, fit_ranker
from retrieval.tasks import TaskSpec, load_task
from retrieval.transfer import DEFAULT_RIDGE, linear_probe_accuracy
from retrieval.zoo_search import ZooScores, candidates, ranker_inputs
from zoo_builders.build import (
    DEFAULT_THREADS,
    THREADS_COLUMN,
    Population,
    plan_build,
    torch_threads,
    with_columns,
)
from zoo_builders.datasets import Dataset, load_build_dataset, zoo_dataset_facts
from zoo_builders.spec import BuildSpec, RunConfig
from zoo_builders.train import train_classifiers

#: The template preset of the hub.
HUB_PRESET = "retrieval-hub"

#: Source tasks of the default hub: class subsets and pairings of digits (labels unchanged).
SOURCE_TASKS = (
    "digits:classes=0,1,2,3,4", "digits:classes=5,6,7,8,9",
    "digits:classes=0,2,4,6,8", "digits:classes=1,3,5,7,9",
    "digits:classes=0,1,2", "digits:classes=3,4,5,6", "digits:classes=7,8,9",
    "digits:classes=0,3,6,9", "digits:classes=1,4,7", "digits:classes=2,5,8",
    "digits",
)

#: Held-out query tasks of the benchmark: class subsets of digits that are no source task, as
#: few-shot tasks: 10% of their examples (~18 per class) to fit the probe and score the
#: estimators, 90% to measure the probe's accuracy.
QUERY_TASKS = (
    "digits:test_fraction=0.9:classes=0,6,8", "digits:test_fraction=0.9:classes=3,5,8",
    "digits:test_fraction=0.9:classes=1,7,9", "digits:test_fraction=0.9:classes=2,3,7",
    "digits:test_fraction=0.9:classes=4,6,9", "digits:test_fraction=0.9:classes=0,1,5,8",
    "digits:test_fraction=0.9:classes=2,4,6,7,9", "digits:test_fraction=0.9:classes=1,3,5,7,8",
)


# ================================================================================ building
def hub_run_id(task: TaskSpec, run: RunConfig) -> str:
    """The ``run_id`` of a template run trained on a source task."""
    blob = json.dumps({"source_task": str(task), "run": run.to_dict()}, sort_keys=True,
                      separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class HubBuild:
    """What :func:`build_hub` did.

    Args:
        path: the hub zoo.
        source_tasks: the source tasks (canonical strings).
        runs: runs in the hub (template runs x source tasks).
        trained: runs trained now (the others were already there).
    """

    path: Path
    source_tasks: tuple[str, ...]
    runs: int
    trained: int


def build_hub(out: str | os.PathLike, template: str | os.PathLike | dict = HUB_PRESET,
              source_tasks: Sequence[str] = SOURCE_TASKS, name: str | None = None,
              max_population: int | None = None, threads: int | None = None,
              quiet: bool = False) -> HubBuild:
    """Train every run of ``template`` on every source task into one zoo at ``out``.

    An interrupted build resumes: runs already in the zoo are skipped (damaged files are
    dropped and retrained, as ``zoo build`` does).

    Args:
        out: the hub zoo directory: a new one, or an existing hub to resume; never inside a
            zoo or another command's output (see :func:`catalog.paths.check_output_path`).
        template: a build spec (preset name, YAML path or dict) with task ``classify``
            (default: the preset ``retrieval-hub``).
        source_tasks: task strings (:mod:`retrieval.tasks`) over the template dataset's
            inputs and labels (default :data:`SOURCE_TASKS`).
        name: the zoo's name (default: the template's).
        max_population: most runs trained in one computation (default: the builder's).
        threads: torch threads (default :data:`~zoo_builders.build.DEFAULT_THREADS`).
        quiet: no progress bar.
    """
    from tqdm.auto import tqdm

    # Before any work: never a hub inside a zoo (a nested zoo.json would be taken for part of
    # it) or inside another command's output; OUT may be an existing zoo, to resume.
    check_output_path(out, "out", "zoo", flag="OUT")
    spec = template if isinstance(template, BuildSpec) else BuildSpec.load(template)
    if spec.task.name != "classify":
        raise WeightzooError(f"a retrieval hub trains classifiers; template {spec.name!r} has task "
                             f"{spec.task.name!r}")
    tasks = [TaskSpec.parse(t) for t in source_tasks]
    if not tasks:
        raise WeightzooError("a hub needs at least one source task")
    names = [str(t) for t in tasks]
    if len(set(names)) != len(names):
        raise WeightzooError(f"source tasks repeat: {sorted({n for n in names if names.count(n) > 1})}")
    name = name or spec.name
    hub_spec = {**spec.to_dict(), "name": name, "source_tasks": names}
    # A resumed hub whose npz file is fingerprinted: that very file, or a refusal (as zoo build).
    base = load_build_dataset(spec, out, name, hub_spec)
    datas: list[Dataset] = []
    for task in tasks:
        data = task.load()
        if data.input_shape != base.input_shape or data.n_classes != base.n_classes:
            raise WeightzooError(
                f"source task {task} has inputs {list(data.input_shape)} and {data.n_classes} "
                f"classes but the template dataset {base.name!r} has {list(base.input_shape)} and "
                f"{base.n_classes}; every model of a hub reads the same inputs and labels")
        # A source task on the template's npz path reads it from the current directory: on a
        # resume from elsewhere that may be another file than the one the hub recorded.
        if (base.info.get("sha256") and task.dataset.name == "npz" and task.dataset.path == spec.dataset.path
                and data.info.get("sha256") != base.info["sha256"]):
            raise WeightzooError(
                f"source task {task} reads {data.info['file']} (sha256 {data.info['sha256'][:12]}...), but "
                f"the hub at {out} was built on {base.info['file']} (sha256 {base.info['sha256'][:12]}...); "
                f"refusing to resume it on other data: run from the directory where {task.dataset.path} "
                f"is that file")
        datas.append(data)
    threads = DEFAULT_THREADS if threads is None else threads
    runs = spec.runs()
    trained = 0
    with torch_threads(threads), ZooWriter(out, name, hub_spec,
                                           datasets={base.name: zoo_dataset_facts(base, out)}) as writer:
        writer.repair()
        done = writer.done_run_ids()
        plans = []
        for task, data in zip(tasks, datas):
            task_done = {r.run_id for r in runs if hub_run_id(task, r) in done}
            plan = plan_build(spec, base.input_shape, base.n_classes, int(data.x_train.shape[0]),
                              task_done, max_population)
            plans.append((task, data, plan))
        total = sum(p.steps for _, _, plan in plans for p in plan.populations)
        with tqdm(total=total, disable=quiet, unit="step", desc=f"build hub {name}") as bar:
            for task, data, plan in plans:
                for pop in plan.populations:
                    arch_id = writer.add_architecture(pop.net)
                    result = train_classifiers(pop.net, pop.runs, data, progress=bar.update)
                    _write_population(writer, arch_id, task, pop, result)
                    trained += len(pop.runs)
        writer.finish()
    return HubBuild(Path(out), tuple(names), len(runs) * len(tasks), trained)


def _write_population(writer: ZooWriter, arch_id: str, task: TaskSpec, pop: Population, result: Any) -> None:
    runs, param_names = pop.runs, pop.net.param_names
    rows, weights = [], []
    for snap in result.snapshots:
        for i, run in enumerate(runs):
            rid = hub_run_id(task, run)
            row = {"model_id": f"{rid}-{snap.checkpoint:05d}", "run_id": rid,
                   "checkpoint": snap.checkpoint,
                   "status": "diverged" if snap.diverged[i] else "ok",
                   "source_task": str(task), **run.hparams(), **snap.metrics[i],
                   "population_size": len(runs), THREADS_COLUMN: result.threads,
                   "wall_seconds": snap.seconds / len(runs)}
            rows.append(row)
    # Rows of one run next to each other, as zoo build writes them.
    order = sorted(range(len(rows)), key=lambda j: (rows[j]["run_id"], rows[j]["checkpoint"]))
    for name in param_names:
        stacked = torch.cat([s.weights[name] for s in result.snapshots])
        weights.append((name, stacked[torch.tensor(order)]))
    # Every part with the zoo's columns (a template with families: each family's, null in the others').
    rows, schema = with_columns([rows[j] for j in order], pop.columns,
                                ("model_id", "run_id", "checkpoint", "status", "source_task"))
    writer.write_part(arch_id, dict(weights), rows, schema)


# ================================================================================ ground truth
def transfer_ground_truth(zoo: Zoo | str | os.PathLike, task: Any, where: str | None = None,
                          ridge: float = DEFAULT_RIDGE, chunk: int = CHUNK) -> ZooScores:
    """Every candidate model's linear-probe accuracy on a task: the retrieval ground truth.

    Args:
        zoo: an opened zoo or its directory.
        task: a task string, :class:`~retrieval.tasks.TaskSpec` or loaded dataset.
        where: a SQL condition selecting the models (default: all).
        ridge: the probe's ridge penalty (default :data:`~retrieval.transfer.DEFAULT_RIDGE`).
        chunk: models loaded at once (default :data:`~retrieval.embed.CHUNK`).

    Returns:
        :class:`~retrieval.zoo_search.ZooScores` with method ``linear_probe``: accuracies in
        ``[0, 1]`` (NaN for diverged models).
    """
    z = zoo if isinstance(zoo, Zoo) else open_zoo(zoo)
    data = load_task(task)
    sel = candidates(z, where)
    acc = torch.full((len(sel),), float("nan"), dtype=torch.float64)
    for positions in sel.positions_by_arch().values():
        group = sel.take(positions)
        spec = group.network_spec
        for start in range(0, len(group), chunk):
            idx = np.arange(start, min(start + chunk, len(group)))
            acc[torch.from_numpy(positions[idx])] = linear_probe_accuracy(
                spec, group.take(idx).stacked(), (data.x_train, data.y_train),
                (data.x_test, data.y_test), ridge)
    return ZooScores("linear_probe", data.name, sel.column("model_id"), acc)


# ================================================================================ the ranker
def training_task(zoo: Zoo, task: Any, config: RankerConfig, where: str | None = None,
                  ground_truth: Tensor | None = None) -> TrainingTask:
    """One task's ranker features over the hub's models and their ground truth.

    Args:
        zoo: the hub (with behaviour embeddings).
        task: the task.
        config: the ranker config (its estimators and ``k``).
        where: the models (default: all).
        ground_truth: ``[P]`` precomputed ground truth in candidate order (default: computed
            with :func:`transfer_ground_truth`).
    """
    data = load_task(task)
    sel = candidates(zoo, where)
    stored = read_embeddings(zoo, "behavior")
    feats = ranker_inputs(stored, sel, data, config.estimators, config.k)
    gt = ground_truth if ground_truth is not None else transfer_ground_truth(zoo, data, where).scores
    if gt.shape[0] != len(sel):
        raise WeightzooError(f"ground truth has {gt.shape[0]} values for {len(sel)} models")
    return TrainingTask(data.name, feats, gt)


def train_ranker(hub: Zoo | str | os.PathLike, tasks: Sequence[Any] = SOURCE_TASKS,
                 config: RankerConfig | None = None, where: str | None = None,
                 out: str | os.PathLike | None = None, progress: bool = False) -> TrainedRanker:
    """Train a ranker on a hub: for every task, every model's features and linear-probe
    ground truth.

    Args:
        hub: the hub zoo, with behaviour embeddings (``zoo embed HUB --method behavior``).
        tasks: the training tasks (default :data:`SOURCE_TASKS`).
        config: a :class:`~retrieval.ranker.RankerConfig` (default: the defaults).
        where: the models to train on (default: all).
        out: a directory to save the ranker in (default: not saved).
        progress: a progress bar over the epochs.
    """
    if out is not None:
        check_output_path(out, "out", "ranker", flag="--out")  # before any work
    z = hub if isinstance(hub, Zoo) else open_zoo(hub)
    cfg = config or RankerConfig()
    stored = read_embeddings(z, "behavior")
    train = [training_task(z, t, cfg, where) for t in tasks]
    ranker = fit_ranker(train, int(stored.config["n_outputs"]), cfg, stored.config, progress)
    ranker.info["hub"] = z.name
    if out is not None:
        ranker.save(out)
    return ranker
