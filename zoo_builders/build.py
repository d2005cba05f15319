"""``zoo build``: expand a spec into runs, group them into populations, train each population
as one vectorized computation and append it to the zoo. Finished populations are on disk (and
in the manifest) before the next one starts, so an interrupted build resumes where it stopped.

Populations train in this process one after another (the default), or in parallel on an
executor (:mod:`zoo_builders.executors`: a local process pool, or Ray); either way this
process alone writes the zoo, committing each population as it comes back. Which executor
trained a population changes nothing in its rows or weights.
"""

from __future__ import annotations

import os
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch
from tqdm.auto import tqdm

from catalog.errors import WeightzooError, format_bytes
from catalog.network import NetworkSpec
from catalog.nodes import short_repr
from catalog.paths import check_output_path
from catalog.writer import Repair, ZooWriter, existing_manifest, find_damaged, read_distinct
from zoo_builders.datasets import Dataset, load_build_dataset, zoo_dataset_facts
from zoo_builders.executors import Executor, make_executor
from zoo_builders.spec import BuildSpec, RunConfig
from zoo_builders.train import PopulationResult, ProgressFn, train_classifiers, train_inrs

#: Largest population trained as one computation unless --max-population says otherwise.
#: Larger populations make intermediate tensors exceed glibc's mmap threshold, so every
#: elementwise op pays fresh page faults (measured: SIREN steps 2.7x slower per network at 500).
DEFAULT_MAX_POPULATION = 256
#: Share of available memory one population may plan to use.
MEMORY_SHARE = 0.25
#: Torch threads a build trains with unless --threads says otherwise. Populations are already
#: vectorized, and builds scale out as one process per core. Threads that wait for a busy core
#: cost far more than they gain: on a 2-core machine with other work (load 3-6), the digits-mlp
#: preset took 15.5 s with 1 thread and 118 s with torch's default 2, same sha256s (see also
#: benchmarks/bench_build.py, which times both).
DEFAULT_THREADS = 1
#: The row column recording the torch thread count a run trained with.
THREADS_COLUMN = "torch_threads"
#: Share of the available memory that the populations training at once on a local pool may
#: plan to use together (each plans at most MEMORY_SHARE, so two of the largest fit).
INFLIGHT_MEMORY_SHARE = 0.5
#: Bytes one parameter needs while training, at the least: its float32 value, its gradient and
#: two optimizer states. A spec with a model whose parameters alone need more memory than is
#: available is refused before anything is written (see :func:`check_model_sizes`).
MIN_TRAIN_BYTES_PER_PARAM = 16
#: Largest weight shard a build writes: a population whose weights are larger is written as
#: several parts. Far below the Hub's per-file limits (50 GB, 20 GB recommended), and small
#: enough that a partial pull (which downloads whole shards) fetches little it does not need.
MAX_SHARD_BYTES = 2 << 30


@dataclass
class Population:
    """Runs trained together: same architecture and the same step structure."""

    arch_id: str
    net: NetworkSpec
    runs: list[RunConfig]
    steps: int
    #: What training it plans to use (see :func:`member_bytes`).
    memory_bytes: int = 0
    #: The hyperparameter columns of the whole zoo (see :func:`hparam_schema`): its rows are
    #: written with all of them, not only its family's (``None``: the rows' own columns).
    columns: pa.Schema | None = None

    @property
    def key(self) -> str:
        t = self.runs[0].training
        return (f"{self.arch_id} opt={t.optimizer} bs={t.batch_size} epochs={t.epochs} "
                f"train_fraction={t.train_fraction}")


@dataclass
class BuildPlan:
    """What a build trains: the spec's runs, minus those already in the zoo, as populations.

    Args:
        spec: the build spec.
        runs: every run of the spec.
        populations: the runs still to train, grouped.
        skipped_runs: runs already in the zoo.
        dataset_info: facts about the dataset.
        repaired: damaged files dropped from the zoo (for a dry run: that would be dropped);
            their runs are among those to train.
        threads: the torch thread count this build trains with.
        other_threads: the counts the zoo's rows trained with other than ``threads`` (``None``
            for rows written before rows recorded it): CNNs and ResNets round differently with
            another count, so a zoo resumed with one is no longer reproducible at a single count.
    """

    spec: BuildSpec
    runs: list[RunConfig]
    populations: list[Population]
    skipped_runs: int = 0
    dataset_info: dict = field(default_factory=dict)
    repaired: list[Repair] = field(default_factory=list)
    threads: int = DEFAULT_THREADS
    other_threads: list[int | None] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(len(p.runs) * len(p.runs[0].training.checkpoints) for p in self.populations)

    def describe(self) -> str:
        """The plan for a person: counts, then each population with the values it covers of
        every hyperparameter that varies across the spec's runs."""
        lines = [f"zoo {self.spec.name!r}: {len(self.runs)} runs"
                 + (f" ({self.skipped_runs} already built)" if self.skipped_runs else ""),
                 f"populations to train: {len(self.populations)}; rows to write: {self.rows}"]
        lines += [f"damaged, to drop and rebuild: {r.path} ({r.reason})" for r in self.repaired]
        if self.populations and self.other_threads:
            lines.append(f"note: {self.threads_note()}")
        varying = varying_axes(self.runs)
        for i, p in enumerate(self.populations):
            lines.append(f"  [{i}] {len(p.runs):5d} runs  {p.net.n_params:7d} params  {p.key}")
            # Only the population's own columns: another family's fields would print as None.
            own = [k for k in varying if k in p.runs[0].hparams() or k == "image"]
            if own:
                values = [_axis_values(r, own) for r in p.runs]
                axes = " ".join(f"{k}={_format_values([v[k] for v in values])}" for k in own)
                lines.append(f"      {axes}")
        return "\n".join(lines)


    def threads_note(self) -> str:
        """What resuming with another thread count than the zoo's rows used means."""
        counts = ", ".join("unrecorded" if t is None else str(t) for t in self.other_threads)
        same = next((t for t in self.other_threads if t is not None), None)
        return (f"the zoo's rows trained with torch threads {counts}; this build trains with {self.threads}. "
                f"Convolutions and batch norm round differently with another count, so its runs would "
                f"differ in the last bits from the same runs at that count"
                + (f"; pass --threads {same} to keep one count" if same is not None else ""))


def _axis_values(run: RunConfig, keys: list[str]) -> dict:
    hp = {**run.hparams(), "image": run.image_index}
    return {k: hp.get(k) for k in keys}


def varying_axes(runs: list[RunConfig]) -> list[str]:
    """The hyperparameter columns (and ``image`` for INR runs) whose value is not the same for
    every run, in column order; ``depth``/``width`` are left out when ``hidden`` varies."""
    if not runs:
        return []
    # Every family's columns (a heterogeneous spec's runs do not all have the same ones).
    columns = list(dict.fromkeys(k for r in runs for k in r.hparams()))
    values = [_axis_values(r, [*columns, "image"]) for r in runs]
    keys = [k for k in values[0] if len({repr(v[k]) for v in values}) > 1]
    if "hidden" in keys:
        keys = [k for k in keys if k not in ("depth", "width")]
    return keys


def _format_values(values: list) -> str:
    """``[0, 1, 2, 3]`` -> ``0..3``; ``[0.01, 0.001, 0.01]`` -> ``0.001,0.01``."""
    unique = sorted({repr(v): v for v in values}.values(),
                    key=lambda v: (type(v).__name__, tuple(v) if isinstance(v, list) else v))
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in unique)
    if ints and len(unique) > 2 and unique[-1] - unique[0] == len(unique) - 1:
        return f"{unique[0]}..{unique[-1]}"
    return ",".join(str(v).replace(" ", "") for v in unique)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def available_memory() -> int:
    """Bytes of memory available now (``MemAvailable``), or 4 GiB when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def member_bytes(net: NetworkSpec, run: RunConfig, n_train: int, image_pixels: int = 0) -> int:
    """A generous estimate of the memory one member needs while training."""
    n_ckpt = len(run.training.checkpoints)
    params = net.n_params * 4 * (4 + n_ckpt)  # weights, grads, 2 optimizer states, snapshots
    if image_pixels:
        acts = image_pixels * sum(net.layer_widths) * 4 * 4
    else:
        # Activations of a training batch and of one evaluation chunk, forward + backward.
        per_example = net.activation_numel * 4
        acts = per_example * (run.training.batch_size * 3 + 512 * 2)
        acts += n_train * 8 * 2  # data order and subsample indices
    return params + acts


def check_model_sizes(spec: BuildSpec, data_shape: tuple[int, ...], n_classes: int) -> None:
    """Refuse a spec with an architecture too large to train here: one whose parameters need more
    than the available memory at :data:`MIN_TRAIN_BYTES_PER_PARAM` each (a lower bound: the
    activations come on top).

    Raises:
        WeightzooError: naming the architecture (its family and the fields the spec sets), its
            parameter count, the bytes it needs and the bytes available; or a network that cannot
            be built (a size beyond what torch takes), naming the same and the node at fault.
    """
    available = available_memory()
    for where, arch in _spec_architectures(spec):
        try:
            net = arch.network_spec(data_shape, n_classes)
        except WeightzooError as e:
            # The error names a node or layer of the generated network (out_channels of
            # 'conv1'); say which family and which of the spec's fields made it.
            raise type(e)(f"{where}: {e}") from e
        need = net.n_params * MIN_TRAIN_BYTES_PER_PARAM
        if need > available:
            raise WeightzooError(
                f"{where}: architecture {net.arch_id} has {net.n_params:,} parameters: training one needs at "
                f"least {format_bytes(need)} ({MIN_TRAIN_BYTES_PER_PARAM} bytes a parameter: weights, "
                f"gradients, two optimizer states), more than the {format_bytes(available)} of memory "
                f"available; make it smaller")


def _spec_architectures(spec: BuildSpec) -> list[tuple[str, Any]]:
    """``(where, config)`` for each distinct architecture of ``spec``: ``where`` names it as the
    spec wrote it, its family (``families[1] (resnet ...)`` in a heterogeneous spec) and the fields
    it sets away from their defaults (``width_multiplier=1e+18``), for messages."""
    out: dict[Any, str] = {}
    families = spec.families or [spec]
    for i, fam in enumerate(families):
        for name, arch in fam.architectures():
            if arch in out:
                continue
            set_fields = ", ".join(f"{f.name}={_field_repr(getattr(arch, f.name))}" for f in fields(arch)
                                   if f.default is MISSING or getattr(arch, f.name) != f.default)
            if spec.families:
                out[arch] = f"families[{i}] ({name}{', ' + set_fields if set_fields else ''})"
            else:
                out[arch] = f"architecture {name}{f' ({set_fields})' if set_fields else ''}"
    return [(where, arch) for arch, where in out.items()]


def _field_repr(value: Any) -> str:
    """A field's value for a message: tuples as lists, huge integers shortened."""
    if isinstance(value, tuple):
        return "[" + ", ".join(map(short_repr, value)) + "]"
    return short_repr(value)


def plan_build(spec: BuildSpec, data_shape: tuple[int, ...], n_classes: int, n_train: int,
               done: set[str] | None = None, max_population: int | None = None) -> BuildPlan:
    """Group the spec's runs (minus ``done``) into populations."""
    runs = spec.runs()
    todo = [r for r in runs if not done or r.run_id not in done]
    groups: OrderedDict[tuple, list[RunConfig]] = OrderedDict()
    nets: dict[str, NetworkSpec] = {}
    for r in todo:
        net = r.arch.network_spec(data_shape, n_classes)
        nets[net.arch_id] = net
        t = r.training
        key = (net.arch_id, t.optimizer, t.batch_size, t.epochs, t.train_fraction, t.checkpoints)
        groups.setdefault(key, []).append(r)
    pixels = 1
    for s in data_shape[1:]:
        pixels *= s
    budget = available_memory() * MEMORY_SHARE
    columns = hparam_schema(runs)  # every run's, built or not: a resumed build writes the same columns
    pops = []
    for key, members in groups.items():
        net = nets[key[0]]
        per = member_bytes(net, members[0], n_train, pixels if spec.task.name == "inr" else 0)
        cap = max(1, min(max_population or DEFAULT_MAX_POPULATION, int(budget // max(per, 1))))
        t = members[0].training
        if spec.task.name == "inr":
            steps = t.epochs
        else:
            n_sub = max(1, round(t.train_fraction * n_train))
            steps = t.epochs * -(-n_sub // t.batch_size)
        # Split into near-equal chunks of at most ``cap`` members.
        n_chunks = -(-len(members) // cap)
        size = -(-len(members) // n_chunks)
        for i in range(0, len(members), size):
            chunk = members[i:i + size]
            pops.append(Population(key[0], net, chunk, steps, per * len(chunk), columns))
    return BuildPlan(spec, runs, pops, skipped_runs=len(runs) - len(todo))


def _rows(pop: Population, result: PopulationResult, data: Dataset, image_labels: list[int] | None) -> list[dict]:
    rows = []
    for snap in result.snapshots:
        for i, run in enumerate(pop.runs):
            row = {"model_id": f"{run.run_id}-{snap.checkpoint:05d}", "run_id": run.run_id,
                   "checkpoint": snap.checkpoint,
                   "status": "diverged" if snap.diverged[i] else "ok",
                   **run.hparams()}
            if run.image_index is not None:
                row["image_index"] = run.image_index
                row["label"] = image_labels[i] if image_labels is not None else None
            row.update(snap.metrics[i])
            row["population_size"] = len(pop.runs)
            row[THREADS_COLUMN] = result.threads
            # Wall-clock seconds of the population up to this checkpoint, shared by its members.
            row["wall_seconds"] = snap.seconds / len(pop.runs)
            rows.append(row)
    return rows


def _value_type(v: object) -> pa.DataType | None:
    """The column type of one metadata value (``None`` for a value whose type is inferred)."""
    if isinstance(v, bool):
        return pa.bool_()
    if isinstance(v, int):
        return pa.int64()
    if isinstance(v, float):
        return pa.float64()
    if isinstance(v, list):
        return pa.list_(pa.int64())
    if isinstance(v, str):
        return pa.string()
    return None


def row_schema(rows: list[dict]) -> pa.Schema:
    """Stable column types of metadata rows whatever the values of one part (e.g. an all-zero
    float axis, or a string column that is null in the first part)."""
    fields = []
    for k, v in rows[0].items():
        typ = _value_type(v)
        if typ is not None:
            fields.append(pa.field(k, typ))
    return pa.schema(fields)


def hparam_schema(runs: list[RunConfig]) -> pa.Schema:
    """The hyperparameter columns of ``runs`` together, in order of first appearance, each with
    one type over every run's value (ints and floats: float64; only ``None``: null).

    A heterogeneous spec's families have different fields. Every part of the zoo is written with
    all of them (null where a row's family has no such field), so the parts share one schema:
    🤗 ``datasets.load_dataset`` reads every ``models/*.parquet`` with the first part's columns
    and fails on a part whose columns differ. weightzoo's own reader merges either way.
    """
    kinds: dict[str, set] = {}
    for r in runs:
        for k, v in r.hparams().items():
            typ = _value_type(v) if v is not None else None
            kinds.setdefault(k, set())
            if typ is not None:
                kinds[k].add(typ)
    fields = []
    for k, types in kinds.items():
        if types == {pa.int64(), pa.float64()}:
            types = {pa.float64()}
        if len(types) > 1:  # no common type (no registered architecture has one): inferred per part
            continue
        fields.append(pa.field(k, types.pop() if types else pa.null()))
    return pa.schema(fields)


def with_columns(rows: list[dict], columns: pa.Schema | None,
                 lead: tuple[str, ...] = ("model_id", "run_id", "checkpoint", "status"),
                 ) -> tuple[list[dict], pa.Schema]:
    """``rows`` with every column of ``columns`` (``None`` where a row lacks it; after the
    ``lead`` columns, in ``columns``' order) and the schema to write them with (``columns``'
    types win). A row's own values are unchanged.

    Args:
        rows: metadata rows of one population.
        columns: the zoo's hyperparameter columns (:func:`hparam_schema`); ``None``: ``rows``
            as they are, with :func:`row_schema`.
        lead: the columns the rows have before their hyperparameters.
    """
    if columns is None:
        return rows, row_schema(rows)
    # For a one-family zoo this is the row's own key order: its parts are written as before.
    full = [{**{k: r[k] for k in lead if k in r}, **{k: r.get(k) for k in columns.names}, **r} for r in rows]
    types = {f.name: f for f in row_schema(full)}
    types.update((f.name, f) for f in columns)
    return full, pa.schema(list(types.values()))


def _inr_images(data: Dataset, runs: list[RunConfig]) -> tuple[torch.Tensor, list[int]]:
    """The target images of INR runs. ``image_index`` counts over the dataset's training
    images followed by its test images."""
    x = torch.cat([data.x_train, data.x_test])
    y = torch.cat([data.y_train, data.y_test])
    idx = [r.image_index for r in runs]
    if max(idx) >= x.shape[0]:
        raise WeightzooError(f"task.images + task.offset exceed the {x.shape[0]} images of {data.name!r}")
    return x[idx].reshape(len(idx), *x.shape[-2:]), [int(y[i]) for i in idx]


def build_zoo(spec: BuildSpec | dict | str | os.PathLike, out: str | os.PathLike,
              max_population: int | None = None, quiet: bool = False, dry_run: bool = False,
              threads: int | None = None, workers: int | str | None = None,
              executor: str | Executor | None = None, address: str | None = None) -> BuildPlan:
    """Build (or resume building) the zoo described by ``spec`` into ``out``.

    A resume first checks every file the zoo lists (size and sha256) and drops the damaged ones
    (see :meth:`ZooWriter.repair`), so their runs are trained again; the plan's ``repaired``
    names them.

    Args:
        spec: a :class:`BuildSpec`, its dict form, a YAML path or a preset name.
        out: the zoo directory: new, or this spec's zoo (resumed); not inside another zoo or
            another command's output (see :func:`catalog.paths.check_output_path`).
        max_population: most runs trained in one computation (default: as many as fit, up to
            :data:`DEFAULT_MAX_POPULATION`).
        quiet: no progress bars.
        dry_run: plan only: an existing zoo at ``out`` is read (not locked, not changed) to
            count the runs already built; nothing is trained or written.
        threads: torch threads to train with, restored afterwards (default
            :data:`DEFAULT_THREADS`); with workers, each worker's. Not part of any run's
            identity.
        workers: processes training populations in parallel on this machine (``"auto"``:
            one per core); default 1: train in this process. With ``executor="ray"``: the
            CPUs of the local Ray cluster started for the build.
        executor: ``"local"`` (default) or ``"ray"`` (populations become Ray tasks; needs
            ``pip install 'weightzoo[ray]'``), or an :class:`~zoo_builders.executors.Executor`.
        address: the Ray cluster to use (default: ``RAY_ADDRESS``, else a local cluster
            started for the build).

    Returns:
        the plan that was (or would be) carried out.
    """
    if not isinstance(spec, BuildSpec):
        spec = BuildSpec.load(spec)
    if max_population is not None and max_population < 1:
        raise WeightzooError(f"--max-population must be >= 1, got {max_population}")
    threads = DEFAULT_THREADS if threads is None else threads
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise WeightzooError(f"--threads must be an integer >= 1, got {threads!r}")
    # Before any work: a zoo is written nowhere inside another zoo or command output (the zoo
    # itself, resumed, is fine). A dry run writes nothing, so it may read a read-only zoo.
    check_output_path(out, "out", "zoo", flag="--out", writable=not dry_run)
    data = load_build_dataset(spec, out)  # a resume reads the very data the zoo was started on
    if spec.task.name == "inr":
        data_shape = tuple(data.x_train.shape[1:])
        if len(data_shape) != 3 or data_shape[0] != 1:
            raise WeightzooError(f"task 'inr' needs grayscale images; dataset {data.name!r} gives {list(data_shape)}")
    else:
        data_shape = data.input_shape
    check_model_sizes(spec, data_shape, data.n_classes)  # before the zoo directory is made
    out = Path(out)

    def plan_for(done: set[str], repaired: list[Repair], recorded_threads: set) -> BuildPlan:
        plan = plan_build(spec, data_shape, data.n_classes, int(data.x_train.shape[0]), done, max_population)
        plan.dataset_info = data.describe()
        plan.repaired = repaired
        plan.threads = threads
        plan.other_threads = sorted(recorded_threads - {threads}, key=lambda t: (t is None, t or 0))
        return plan

    if dry_run:
        return plan_for(*_resume_state(out, spec))
    if isinstance(executor, Executor):
        pool: Executor | None = executor
    else:  # checked (and Ray imported) before the zoo is locked or anything is trained
        pool = make_executor(executor, workers, address, threads)
    with torch_threads(threads), ZooWriter(out, spec.name, spec.to_dict(),
                                           datasets={data.name: zoo_dataset_facts(data, out)}) as writer:
        repaired = writer.repair()
        parts = writer.manifest.part_files()
        seen = read_distinct(out, parts, ["run_id", THREADS_COLUMN])
        plan = plan_for(seen["run_id"], repaired, seen[THREADS_COLUMN])
        if plan.populations and plan.other_threads:
            warnings.warn(plan.threads_note(), stacklevel=2)
        if pool is None:
            _train(plan, data, writer, quiet)
        else:
            with pool:
                _train_on(pool, plan, data, writer, quiet)
        writer.finish()
    return plan


def _resume_state(out: Path, spec: BuildSpec) -> tuple[set[str], list[Repair], set]:
    """What a build at ``out`` would keep, read without the lock and without changing anything:
    the runs already built, the damaged files it would drop, and the thread counts the kept
    rows trained with."""
    manifest = existing_manifest(out, spec.name, spec.to_dict())  # refuses what a build refuses
    if manifest is None:
        return set(), [], set()
    repaired = find_damaged(out, manifest)
    dropped = {r.path for r in repaired}
    kept = [f for f in manifest.part_files() if f.path not in dropped]
    seen = read_distinct(out, kept, ["run_id", THREADS_COLUMN])
    return seen["run_id"], repaired, seen[THREADS_COLUMN]


def _train(plan: BuildPlan, data: Dataset, writer: ZooWriter, quiet: bool) -> None:
    """Train the plan's populations one by one, each written to the zoo before the next."""
    spec = plan.spec
    total_steps = sum(p.steps for p in plan.populations)
    with tqdm(total=total_steps, disable=quiet, unit="step", desc=f"build {spec.name}") as bar:
        for i, pop in enumerate(plan.populations):
            bar.set_postfix_str(f"population {i + 1}/{len(plan.populations)} ({len(pop.runs)} runs)")
            trained = train_population(pop, data, spec.task.name, progress=bar.update)
            commit_population(writer, pop, trained)


def _train_on(pool: Executor, plan: BuildPlan, data: Dataset, writer: ZooWriter,
              quiet: bool) -> None:
    """Train the plan's populations on ``pool``; commit each as it comes back.

    One bar for the whole build: populations done of all, and models (runs) per minute.
    """
    pops = plan.populations
    tasks = [(p, plan.spec.task.name) for p in pops]
    budget = available_memory() * INFLIGHT_MEMORY_SHARE
    start, models = time.monotonic(), 0
    with tqdm(total=len(pops), disable=quiet, unit="population",
              desc=f"build {plan.spec.name}") as bar:
        bar.set_postfix_str(f"on {pool.label}")
        for i, trained in pool.map_unordered(_train_task, data, tasks,
                                             [p.memory_bytes for p in pops], budget):
            commit_population(writer, pops[i], trained)
            models += len(pops[i].runs)
            rate = models / max(time.monotonic() - start, 1e-9) * 60
            bar.set_postfix_str(f"{models} models, {rate:.1f} models/min")
            bar.update(1)


@dataclass
class TrainedPopulation:
    """A trained population as it is written: rows ordered by ``(run_id, checkpoint)``, so a
    run's checkpoints sit next to each other in the shard, and its weights in that order.

    Pickles as plain bytes (the tensors' raw memory), so it travels between processes and
    machines without torch's shared-memory machinery and arrives bit for bit.

    Shapes:
        weights: ``{param name: Tensor[len(rows), *shape]}``.
    """

    rows: list[dict]
    weights: dict[str, torch.Tensor]

    def __getstate__(self) -> dict:
        raw = {k: (str(v.dtype).removeprefix("torch."), tuple(v.shape),
                   v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
               for k, v in self.weights.items()}
        return {"rows": self.rows, "weights": raw}

    def __setstate__(self, state: dict) -> None:
        import numpy as np

        self.rows = state["rows"]
        self.weights = {k: torch.from_numpy(np.require(data, requirements="W"))
                        .view(getattr(torch, dtype)).reshape(shape)
                        for k, (dtype, shape, data) in state["weights"].items()}


def train_population(pop: Population, data: Dataset, task: str,
                     progress: ProgressFn | None = None) -> TrainedPopulation:
    """Train one population and lay out its rows and weights for :func:`commit_population`.

    Args:
        pop: the population.
        data: the build's dataset.
        task: the spec's task name (``"classify"`` or ``"inr"``).
        progress: called with the number of steps done since the last call.
    """
    labels = None
    if task == "inr":
        images, labels = _inr_images(data, pop.runs)
        result = train_inrs(pop.net, pop.runs, images, progress=progress)
    else:
        result = train_classifiers(pop.net, pop.runs, data, progress=progress)
    rows = _rows(pop, result, data, labels)
    order = sorted(range(len(rows)), key=lambda j: (rows[j]["run_id"], rows[j]["checkpoint"]))
    # Rows of one run sit next to each other in the shard: a run's checkpoints load as one slice.
    weights = {}
    for name in pop.net.param_names:
        stacked = torch.cat([s.weights[name] for s in result.snapshots])  # [C * P, ...]
        weights[name] = stacked[torch.tensor(order)]
    return TrainedPopulation([rows[j] for j in order], weights)


def _train_task(data: Dataset, task: tuple[Population, str]) -> TrainedPopulation:
    """What an executor's worker runs for one population."""
    pop, task_name = task
    return train_population(pop, data, task_name)


def commit_population(writer: ZooWriter, pop: Population, trained: TrainedPopulation) -> None:
    """Write a trained population to the zoo: one part (and shard), or several when its
    weights exceed :data:`MAX_SHARD_BYTES` (split between runs, never inside one)."""
    arch_id = writer.add_architecture(pop.net)
    rows, schema = with_columns(trained.rows, pop.columns)
    per_row = sum(t[0].numel() * t.element_size() for t in trained.weights.values())
    max_rows = max(1, MAX_SHARD_BYTES // max(per_row, 1))
    start = 0
    while start < len(rows):
        end = min(start + max_rows, len(rows))
        while start < end < len(rows) and rows[end]["run_id"] == rows[end - 1]["run_id"]:
            end -= 1  # keep a run's checkpoints in one shard
        if end == start:  # one run alone is over the cap: it still goes in one shard
            end = start + 1
            while end < len(rows) and rows[end]["run_id"] == rows[start]["run_id"]:
                end += 1
        weights = {k: v[start:end] for k, v in trained.weights.items()}
        writer.write_part(arch_id, weights, rows[start:end], schema)
        start = end
