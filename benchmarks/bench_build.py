"""Population training vs. a plain per-model PyTorch loop, side by side in one process.

For an MLP population (digits), a SIREN population (digits images), a CNN population (digits)
and two graph architectures (digits: a ResNet-8 with batch norm, a small ViT), the same runs
(same hyperparameters, initial weights, data order and steps) are trained once with weightzoo's
vectorized population trainer and once one model at a time with ``nn.Module`` + ``torch.optim``
(layer chains as ``nn.Sequential`` of torch layers; graphs as the spec's own module,
:func:`catalog.network.build_module`, in train mode: batch norm with batch statistics; the ViT
also a third time as torch's own layers, :class:`TorchViT`). Both
sides end with what a zoo row records: each run's loss and accuracy on the training and the test
split (the loop computed test accuracy alone before, a quarter of the evaluation work). Writes
models/minute for both, their ratio and both final mean accuracies (PSNR for SIRENs) to
``benchmarks/results/bench_build.json``. For the graph architectures it also times a per-model
step on 2 examples and on a full batch: the share of a step that is per-step overhead bounds what
a population, whose kernels do each member's arithmetic as the loop does, can gain
(``overhead_only_speedup``).

Every case runs twice: with torch's default thread count and with the builder's
(:data:`zoo_builders.build.DEFAULT_THREADS`, what ``zoo build`` uses without ``--threads``);
``threads_side_by_side`` in the JSON puts the two next to each other.

    python benchmarks/bench_build.py [--quick]   # --quick: a smoke run, writes bench_build_quick.json

``--workers`` measures something else, the executors: one spec built with ``zoo build``'s
serial path (``--workers 1``), a local pool of 2 workers and Ray on a local 2-CPU cluster,
side by side: models/minute end to end and after start-up (the pool's spawn and imports,
until the first population starts training in a worker; for Ray that includes ``ray.init``,
also reported on its own), whether the three
zoos hold the same sha256 per model, and the load average. Writes bench_build_workers.json
(bench_build_workers_quick.json with --quick).

    python benchmarks/bench_build.py --workers [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_common import train_alone
from torch import nn

from catalog.network import NetworkSpec, build_module
from zoo_builders import BuildSpec, load_dataset, train_classifiers, train_inrs
from zoo_builders.build import DEFAULT_THREADS, _inr_images, torch_threads
from zoo_builders.init import init_params
from zoo_builders.spec import RunConfig
from zoo_builders.train import image_coordinates, member_generator, psnr

RESULTS = Path(__file__).parent / "results" / "bench_build.json"
QUICK_RESULTS = RESULTS.with_name("bench_build_quick.json")
WORKERS_RESULTS = RESULTS.with_name("bench_build_workers.json")
WORKERS_TARGET = 1.7  # 2 workers over 1, on an otherwise idle 2-core machine
#: Each side runs this many times by default (``--repeats``), the two alternating, and their
#: medians are compared (every run gives the same result). Load from other work comes and goes:
#: alternating exposes both sides to it alike, and a median drops a run it hit. One pass of each
#: measured the ViT's 2-thread ratio anywhere from 2.8x to 3.8x across back-to-back runs.
REPEATS = 3


class Sine(nn.Module):
    def __init__(self, omega: float) -> None:
        super().__init__()
        self.omega = omega

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.omega * x)


def plain_module(net: NetworkSpec) -> nn.Sequential:
    """The network as a researcher would write it: nn.Sequential of torch layers."""
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "identity": nn.Identity, "gelu": nn.GELU}
    mods: list[nn.Module] = []
    for layer in net.layers:
        if layer.kind == "linear":
            mods += [nn.Flatten(), nn.Linear(layer.in_features, layer.out_features)]
        else:
            conv = nn.Conv2d if layer.kind == "conv2d" else nn.Conv1d
            mods.append(conv(layer.in_features, layer.out_features, layer.kernel_size, layer.stride, layer.padding))
        mods.append(Sine(layer.omega) if layer.activation == "sin" else acts[layer.activation]())
        if layer.pool == "global_avg":
            mods.append(nn.AdaptiveAvgPool2d(1) if layer.kind == "conv2d" else nn.AdaptiveAvgPool1d(1))
    return nn.Sequential(*mods)


class TorchViT(nn.Module):
    """The benchmark's ViT as a researcher writes it with torch's layers: patches cut by a
    reshape (a ``Conv2d`` with stride ``patch_size`` is the other common way, with the same
    parameters), ``nn.Linear`` embedding, a learned position embedding, ``depth`` pre-norm
    ``nn.TransformerEncoderLayer`` blocks (``nn.MultiheadAttention`` inside), ``nn.LayerNorm``,
    the mean over tokens and an ``nn.Linear`` head: the function of the ``transformer`` spec
    (:class:`zoo_builders.graph_architectures.TransformerConfig`) for images, without dropout."""

    def __init__(self, arch, net: NetworkSpec) -> None:
        super().__init__()
        if len(net.input_shape) != 3 or arch.dropout > 0:
            raise SystemExit("TorchViT: image transformers without dropout only")
        self.patch = arch.patch_size
        c = net.input_shape[0]
        tokens = math.prod(s // self.patch for s in net.input_shape[1:])
        self.embed = nn.Linear(c * self.patch ** 2, arch.dim)
        self.pos = nn.Parameter(torch.zeros(tokens, arch.dim))
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(arch.dim, arch.heads, arch.dim * arch.mlp_ratio, dropout=0.0,
                                       activation=arch.activation, batch_first=True, norm_first=True)
            for _ in range(arch.depth))
        self.norm = nn.LayerNorm(arch.dim)
        self.head = nn.Linear(arch.dim, net.n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape                                                   # [B, C, H, W]
        p = self.patch
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)   # (c, row, col) per patch
        x = self.embed(x.reshape(b, (h // p) * (w // p), c * p * p)) + self.pos  # [B, T, E]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(1))                                 # [B, n_outputs]

    #: The spec's parameter names -> this module's (``blocks.<i>.`` prefixes kept).
    RENAMES = {"pos.weight": "pos", ".attn.": ".self_attn.", ".mlp.fc1.": ".linear1.", ".mlp.fc2.": ".linear2."}

    def load_spec_params(self, params: dict[str, torch.Tensor]) -> None:
        own = dict(self.named_parameters())
        for name, value in params.items():
            for old, new in self.RENAMES.items():
                name = name.replace(old, new)
            with torch.no_grad():
                own.pop(name).copy_(value)
        if own:
            raise SystemExit(f"TorchViT: no spec parameter for {sorted(own)}")


def torch_vit(net: NetworkSpec, run: RunConfig) -> TorchViT:
    """:class:`TorchViT` with ``run``'s initial weights, checked to compute the spec's function
    (the spec's own module on the same weights: outputs equal to float rounding)."""
    init = init_params(net, run.training.init, member_generator(run, "init"))
    model = TorchViT(run.arch, net)
    model.load_spec_params(init)
    x = torch.randn(8, *net.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        gap = (model.train()(x) - build_module(net, init).train()(x)).abs().max().item()
    if gap > 1e-4:
        raise SystemExit(f"TorchViT computes another function than the spec (max difference {gap:.2e})")
    return model


def load_init(module: nn.Sequential, net: NetworkSpec, run: RunConfig) -> None:
    init = init_params(net, run.training.init, member_generator(run, "init"))
    params = [p for p in module.parameters()]
    for p, name in zip(params, net.param_names):
        with torch.no_grad():
            p.copy_(init[name])


def optimizer(module: nn.Module, run: RunConfig) -> torch.optim.Optimizer:
    t = run.training
    if t.optimizer == "sgd":
        return torch.optim.SGD(module.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    return torch.optim.Adam(module.parameters(), lr=t.lr, weight_decay=t.weight_decay)


def per_model_classifiers(net: NetworkSpec, runs: list[RunConfig], data, torch_layers: bool = False) -> list[float]:
    """Each run alone, in its own data order: a chain as ``nn.Sequential`` of torch layers, a
    graph as the spec's module (``build_module``), or with ``torch_layers`` a transformer as
    :class:`TorchViT`; all from the run's initial weights."""
    x_train = data.x_train.reshape(-1, *net.input_shape)
    x_test = data.x_test.reshape(-1, *net.input_shape)
    accs = []
    for run in runs:
        if torch_layers:
            model = torch_vit(net, run)
        elif net.is_chain:
            model = plain_module(net)
            load_init(model, net, run)
        else:
            model = build_module(net, init_params(net, run.training.init, member_generator(run, "init")))
        accs.append(train_alone(model, optimizer(model, run), member_generator(run, "data"), run.training.epochs,
                                run.training.batch_size, x_train, data.y_train, x_test, data.y_test)["test_acc"])
    return accs


def per_model_inrs(net: NetworkSpec, runs: list[RunConfig], images: torch.Tensor) -> list[float]:
    coords = image_coordinates(*images.shape[1:])
    out = []
    for run, img in zip(runs, images):
        model = plain_module(net)[1:]  # no Flatten before the first layer: coords are [N, 2]
        load_init(model, net, run)
        opt = optimizer(model, run)
        target = img.reshape(-1, 1)
        for _ in range(run.training.epochs):
            loss = F.mse_loss(model(coords), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            out.append(float(psnr(F.mse_loss(model(coords), target))))
    return out


def case(name: str, spec: dict, threads: int, repeats: int = REPEATS) -> dict:
    with torch_threads(threads):
        return _case(name, spec, threads, repeats)


def _case(name: str, spec: dict, threads: int, repeats: int) -> dict:
    s = BuildSpec.load(spec)
    runs = s.runs()
    data = load_dataset(s.dataset)
    inr = s.task.name == "inr"
    shape = tuple(data.x_train.shape[1:])
    net = runs[0].arch.network_spec(shape, data.n_classes)
    metric = "psnr" if inr else "test_acc"
    images = _inr_images(data, runs)[0] if inr else None
    # A transformer has a third side: the loop over torch's own layers (TorchViT); the spec's
    # module attends with weightzoo's small-matrix kernels and is faster than that.
    torch_layers = runs[0].arch_name == "transformer"
    pop_times, loop_times, torch_times = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = train_inrs(net, runs, images) if inr else train_classifiers(net, runs, data)
        pop_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        loop_metric = per_model_inrs(net, runs, images) if inr else per_model_classifiers(net, runs, data)
        loop_times.append(time.perf_counter() - t0)
        if torch_layers:
            t0 = time.perf_counter()
            torch_metric = per_model_classifiers(net, runs, data, torch_layers=True)
            torch_times.append(time.perf_counter() - t0)
    t_pop, t_loop = statistics.median(pop_times), statistics.median(loop_times)
    pop_metric = [m[metric] for m in res.snapshots[-1].metrics]
    pop_rate, loop_rate = len(runs) / t_pop * 60, len(runs) / t_loop * 60
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    row = {
        "case": name, "threads": threads, "repeats": repeats, "runs": len(runs), "n_params": net.n_params,
        "summary": net.summary(),
        "steps_per_run":
            runs[0].training.epochs * (1 if inr else math.ceil(data.x_train.shape[0] / runs[0].training.batch_size)),
        "population_seconds": t_pop, "population_seconds_each": pop_times, "per_model_seconds": t_loop,
        "per_model_seconds_each": loop_times,
        "population_models_per_minute": pop_rate, "per_model_models_per_minute": loop_rate,
        "speedup": pop_rate / loop_rate, "metric": metric,
        "population_mean": mean(pop_metric), "per_model_mean": mean(loop_metric),
    }
    if torch_layers:
        t_torch = statistics.median(torch_times)
        row.update(per_model_torch_layers_seconds=t_torch, per_model_torch_layers_seconds_each=torch_times,
                   per_model_torch_layers_models_per_minute=len(runs) / t_torch * 60,
                   speedup_vs_torch_layers=t_torch / t_pop, per_model_torch_layers_mean=mean(torch_metric))
    if not (inr or net.is_chain):
        # How much of a per-model step is per-step overhead (dispatch, autograd bookkeeping):
        # a step on 2 examples costs about only that. A population's kernels do each member's
        # arithmetic as the per-model loop does, so removing that overhead, and nothing else,
        # would give a speedup of about t_batch / (t_batch - t_2).
        t_small, t_batch = (step_ms(net, data, b) for b in (2, runs[0].training.batch_size))
        row.update(per_model_step_ms={"2": t_small, str(runs[0].training.batch_size): t_batch},
                   overhead_only_speedup=t_batch / max(t_batch - t_small, 1e-9))
    print(f"{name:10s} threads={threads} runs={len(runs):4d}  population {pop_rate:9.1f} models/min  "
          f"per-model {loop_rate:8.1f} "
          f"models/min  x{row['speedup']:.1f}   {metric}: {row['population_mean']:.4f} vs {row['per_model_mean']:.4f}",
          flush=True)
    if torch_layers:
        print(f"{'':10s} per-model with torch's layers "
              f"{row['per_model_torch_layers_models_per_minute']:8.1f} models/min  "
              f"x{row['speedup_vs_torch_layers']:.1f}   {metric}: {row['per_model_torch_layers_mean']:.4f}", flush=True)
    return row


def step_ms(net: NetworkSpec, data, batch: int, repeats: int = 60) -> float:
    """Median milliseconds of one training step (forward, backward, Adam) of a graph spec's
    module on ``batch`` training examples."""
    model = build_module(net, init_params(net, "default", torch.Generator().manual_seed(0))).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = data.x_train[:batch].reshape(batch, *net.input_shape)
    y = data.y_train[:batch]
    times = []
    for i in range(repeats + 5):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 5:  # warm-up steps are not counted
            times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2]


def _timed_call(shared, task):
    """Run ``fn(shared, inner)`` for ``task = (fn, inner)``; return when it started, the CPU
    seconds it took, and its result."""
    fn, inner = task
    started, cpu = time.time(), time.process_time()
    result = fn(shared, inner)
    return started, time.process_time() - cpu, result


class _Timed:
    """An executor that notes when the first population started training in a worker (the
    time before that, spawning, imports and connecting, is its start-up) and the CPU seconds
    its workers spent training."""

    first_start: float | None = None
    worker_cpu_s = 0.0

    def map_unordered(self, fn, shared, tasks, costs=None, budget=None):
        wrapped = [(fn, t) for t in tasks]
        for i, (started, cpu, result) in super().map_unordered(_timed_call, shared, wrapped, costs, budget):
            self.first_start = started if self.first_start is None else min(self.first_start, started)
            self.worker_cpu_s += cpu
            yield i, result


def workers_row(quick: bool) -> dict:
    """The same spec built serially, on 2 local workers and on a local 2-CPU Ray cluster."""
    import shutil
    import tempfile

    from catalog import open_zoo
    from zoo_builders import build_zoo
    from zoo_builders.executors import LocalPool, RayExecutor

    class TimedPool(_Timed, LocalPool):
        pass

    class TimedRay(_Timed, RayExecutor):
        pass

    k = 4 if quick else 1
    spec = {"name": "b-workers", "dataset": {"name": "digits", "test_fraction": 0.25},
            "architecture": {"name": "mlp", "hidden": [32, 32]},
            "training": {"epochs": 24 // k, "batch_size": 32, "optimizer": "adam", "checkpoints": [24 // k]},
            "grid": {"lr": [0.001, 0.003], "weight_decay": [0.0, 0.0001],
                     "activation": ["relu", "tanh"], "seed": list(range(32 // k))}}
    max_population = 32 // k  # 8 equal populations, so both workers stay busy to the end
    tmp = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    rows, shas = [], {}
    load = [round(x, 2) for x in os.getloadavg()]
    try:
        def run(label: str, executor=None) -> dict:
            out = tmp / label
            t0, wall0, cpu0 = time.perf_counter(), time.time(), time.process_time()
            plan = build_zoo(spec, out, max_population=max_population, quiet=True, executor=executor)
            total = time.perf_counter() - t0
            cpu = time.process_time() - cpu0 + getattr(executor, "worker_cpu_s", 0.0)
            runs = sum(len(p.runs) for p in plan.populations)
            shas[label] = {r["model_id"]: r["sha256"] for r in open_zoo(out).table.to_pylist()}
            first = getattr(executor, "first_start", None)
            return {"executor": label, "runs": runs, "populations": len(plan.populations),
                    "total_s": round(total, 2), "models_per_minute": round(runs / total * 60, 1),
                    # driver + training in the workers (not the workers' start-up)
                    "cpu_s": round(cpu, 2), "models_per_cpu_minute": round(runs / cpu * 60, 1),
                    # until the first population started training in a worker
                    "startup_s": round(first - wall0, 2) if first is not None else 0.0}

        rows.append(run("workers=1"))
        rows.append(run("workers=2", TimedPool(2)))
        try:
            ray_ex = TimedRay(workers=2)
        except Exception as e:  # Ray not installed: say so in the results
            rows.append({"executor": "ray", "skipped": str(e)})
        else:
            row = run("ray", ray_ex)
            row["ray_init_s"] = round(ray_ex.startup_seconds or 0.0, 2)
            rows.append(row)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for r in rows:
        if "total_s" in r:
            busy = max(r["total_s"] - r["startup_s"], 1e-9)
            r["models_per_minute_after_startup"] = round(r["runs"] / busy * 60, 1)
    base = rows[0]
    speedups = {}
    for r in rows[1:]:
        if "total_s" in r:
            speedups[r["executor"]] = {
                "end_to_end": round(r["models_per_minute"] / base["models_per_minute"], 2),
                "after_startup": round(r["models_per_minute_after_startup"]
                                       / base["models_per_minute_after_startup"], 2)}
    same = all(v == shas["workers=1"] for v in shas.values())
    for r in rows:
        if "total_s" in r:
            print(f"{r['executor']:10s} {r['runs']} runs in {r['populations']} populations: "
                  f"{r['total_s']:6.1f} s, {r['models_per_minute']:7.1f} models/min "
                  f"({r['models_per_minute_after_startup']:7.1f} after {r['startup_s']:.1f} s start-up; "
                  f"{r['cpu_s']:.1f} CPU s)", flush=True)
        else:
            print(f"{r['executor']:10s} skipped: {r['skipped']}")
    print(f"speed-up over 1 worker: {speedups}; same sha256 per model: {same}; "
          f"load average before/after: {load} / {[round(x, 2) for x in os.getloadavg()]}")
    return {"benchmark": "bench_build --workers", "torch": torch.__version__,
            "machine": platform.machine(), "cpus": os.cpu_count(), "quick": quick,
            "threads_per_worker": DEFAULT_THREADS,
            # On a shared machine the other processes take cores the second worker needs, so
            # the speed-up measured under load understates what an idle machine gives. Where the
            # kernel shares CPU between sessions (sched_autogroup_enabled = 1), a build's workers
            # share one session's slice: under load, more workers cannot get more CPU at all.
            # cpu_s shows what the work itself costs on each executor.
            "sched_autogroup_enabled": _autogroup(),
            "load_avg_before": load, "load_avg_after": [round(x, 2) for x in os.getloadavg()],
            "target_speedup_2_workers": WORKERS_TARGET, "results": rows, "speedup": speedups,
            "same_sha256_per_model": same}


def _autogroup() -> int | None:
    try:
        return int(Path("/proc/sys/kernel/sched_autogroup_enabled").read_text())
    except (OSError, ValueError):
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs (a smoke test)")
    ap.add_argument("--workers", action="store_true",
                    help="compare the executors (serial, 2 local workers, Ray) instead")
    ap.add_argument("--cases", nargs="+", metavar="CASE",
                    help="run only these cases (mlp, siren, cnn, resnet8-bn, vit); their rows replace "
                         "the same cases' rows in the result file, the others are kept")
    ap.add_argument("--repeats", type=int, default=REPEATS,
                    help=f"runs of each side, alternating, whose medians are compared (default {REPEATS})")
    args = ap.parse_args()
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be >= 1, got {args.repeats}")
    if args.workers:
        out = workers_row(args.quick)
        path = WORKERS_RESULTS.with_name("bench_build_workers_quick.json") if args.quick else WORKERS_RESULTS
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {path}")
        return
    k = 4 if args.quick else 1
    grid_seeds = list(range(16 // k))
    graph_epochs = 1 if args.quick else 3
    # the final checkpoint only, as the other cases (the per-model loop evaluates once, at the end)
    graph_training = {"epochs": graph_epochs, "batch_size": 64, "optimizer": "adam", "checkpoints": [graph_epochs]}
    cases = {
        "mlp": {"name": "b-mlp", "dataset": {"name": "digits", "test_fraction": 0.25},
                "architecture": {"name": "mlp", "hidden": [32, 32]},
                "training": {"epochs": 5, "batch_size": 32, "optimizer": "adam", "checkpoints": [5]},
                "grid": {"lr": [0.001, 0.003], "weight_decay": [0.0, 0.0001], "activation": ["relu", "tanh"],
                         "seed": grid_seeds}},
        "siren": {"name": "b-siren", "dataset": {"name": "digits"},
                  "architecture": {"name": "siren", "hidden": [32, 32]},
                  "task": {"name": "inr", "images": 256 // k},
                  "training": {"epochs": 200, "optimizer": "adam", "lr": 0.001, "checkpoints": [200]}},
        "cnn": {"name": "b-cnn", "dataset": {"name": "digits", "test_fraction": 0.25},
                "architecture": {"name": "cnn", "channels": [8, 8, 8]},
                "training": {"epochs": 5, "batch_size": 32, "optimizer": "adam", "checkpoints": [5]},
                "grid": {"lr": [0.003, 0.01], "seed": list(range(32 // k))}},
        # graph architectures (format v2): population under vmap with per-member batch norm
        "resnet8-bn": {"name": "b-resnet", "dataset": {"name": "digits", "test_fraction": 0.25},
                       "architecture": {"name": "resnet", "depth": 8, "width_multiplier": 0.25},
                       "training": graph_training, "grid": {"lr": [0.01], "seed": list(range(64 // k))}},
        "vit": {"name": "b-vit", "dataset": {"name": "digits", "test_fraction": 0.25},
                "architecture": {"name": "transformer", "patch_size": 2, "dim": 16, "depth": 2},
                "training": graph_training, "grid": {"lr": [0.003], "seed": list(range(64 // k))}},
    }
    if args.cases:
        unknown = sorted(set(args.cases) - set(cases))
        if unknown:
            raise SystemExit(f"--cases: unknown {unknown}; valid: {', '.join(cases)}")
        cases = {name: spec for name, spec in cases.items() if name in args.cases}
    settings = {"torch_default": torch.get_num_threads(), "builder_default": DEFAULT_THREADS}
    load_before = os.getloadavg()[0]
    rows = [case(name, spec, threads, args.repeats) for name, spec in cases.items()
            for threads in dict.fromkeys(settings.values())]
    results = QUICK_RESULTS if args.quick else RESULTS
    results.parent.mkdir(parents=True, exist_ok=True)
    out = {"benchmark": "bench_build", "torch": torch.__version__, "thread_settings": settings,
           "machine": platform.machine(), "cpus": os.cpu_count(), "quick": args.quick,
           # Other processes on the machine slow both sides; the per-model loop (many small ops)
           # usually more, so figures taken under load overstate the ratio. They slow the
           # setting with more threads than free cores most of all.
           "load_avg_1m": [load_before, os.getloadavg()[0]],
           "targets": {"mlp": 15, "siren": 4, "cnn": 2.5, "resnet8-bn": 3, "vit": 3}, "results": rows,
           "threads_side_by_side": side_by_side(rows, settings)}
    if args.cases and results.is_file():
        out = merge_cases(json.loads(results.read_text()), out, settings)
    results.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {results}")


def merge_cases(old: dict, new: dict, settings: dict[str, int]) -> dict:
    """``new`` (some cases) over ``old`` (a previous result file): the new cases' rows replace
    theirs, the other cases' rows are kept, each with the run it came from (``run``: its load
    average and torch version), since they were measured at different times."""
    ran = {r["case"] for r in new["results"]}
    record = {k: new[k] for k in ("torch", "load_avg_1m", "quick")}
    kept = [r for r in old.get("results", []) if r["case"] not in ran]
    for r in kept:
        r.setdefault("threads", old.get("threads"))  # files before per-row threads had one setting
        r.setdefault("run", {k: old.get(k) for k in record})
    rows = kept + [{**r, "run": record} for r in new["results"]]
    # thread comparisons within one run only
    pairs = [e for e in old.get("threads_side_by_side", []) if e["case"] not in ran]
    merged = {k: v for k, v in old.items() if k != "threads"}
    return {**merged, **new, "results": rows, "threads_side_by_side": pairs + side_by_side(new["results"], settings),
            "targets": {**old.get("targets", {}), **new["targets"]}}


def side_by_side(rows: list[dict], settings: dict[str, int]) -> list[dict]:
    """Per case: models/minute (population and per-model) under each thread setting."""
    out = []
    for name in dict.fromkeys(r["case"] for r in rows):
        by = {r["threads"]: r for r in rows if r["case"] == name}
        entry = {"case": name}
        for key in ("population_models_per_minute", "per_model_models_per_minute"):
            entry[key] = {label: by[n][key] for label, n in settings.items()}
        default, builder = by[settings["torch_default"]], by[settings["builder_default"]]
        entry["population_builder_vs_torch_default"] = (
            builder["population_models_per_minute"] / default["population_models_per_minute"])
        out.append(entry)
    return out


if __name__ == "__main__":
    main()
