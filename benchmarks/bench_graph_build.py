"""Population training of graph architectures (ResNet with batch norm, a small ViT) vs. a
per-model loop, side by side in one process, with the builder's thread count.

The same runs (hyperparameters, initial weights, data order, steps) are trained once by
weightzoo's vectorized population trainer (``vmap`` over members, per-member batch norm) and
once one model at a time: the spec's ``nn.Module`` (:func:`catalog.network.build_module`, in
train mode) with ``torch.optim.Adam``. Writes models/minute for both, their ratio and both
mean test accuracies to ``benchmarks/results/bench_graph_build.json``.

    python benchmarks/bench_graph_build.py [--quick]   # --quick: a smoke run, *_quick.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import torch
from bench_common import train_alone

from catalog.network import NetworkSpec, build_module
from zoo_builders import BuildSpec, load_dataset, train_classifiers
from zoo_builders.build import DEFAULT_THREADS, torch_threads
from zoo_builders.init import init_params
from zoo_builders.spec import RunConfig
from zoo_builders.train import member_generator

RESULTS = Path(__file__).parent / "results" / "bench_graph_build.json"
QUICK_RESULTS = RESULTS.with_name("bench_graph_build_quick.json")


def per_model(net: NetworkSpec, runs: list[RunConfig], data) -> list[float]:
    """Each run alone: the spec's module, torch.optim.Adam, the run's own data order."""
    x_train = data.x_train.reshape(-1, *net.input_shape)
    x_test = data.x_test.reshape(-1, *net.input_shape)
    accs = []
    for run in runs:
        model = build_module(net, init_params(net, run.training.init, member_generator(run, "init")))
        opt = torch.optim.Adam(model.parameters(), lr=run.training.lr, weight_decay=run.training.weight_decay)
        accs.append(train_alone(model, opt, member_generator(run, "data"), run.training.epochs,
                                run.training.batch_size, x_train, data.y_train, x_test, data.y_test))
    return accs


def case(name: str, spec: dict) -> dict:
    s = BuildSpec.load(spec)
    runs = s.runs()
    data = load_dataset(s.dataset)
    net = runs[0].arch.network_spec(data.input_shape, data.n_classes)
    t0 = time.perf_counter()
    res = train_classifiers(net, runs, data)
    t_pop = time.perf_counter() - t0
    pop_acc = [m["test_acc"] for m in res.snapshots[-1].metrics]
    t0 = time.perf_counter()
    loop_acc = per_model(net, runs, data)
    t_loop = time.perf_counter() - t0
    pop_rate, loop_rate = len(runs) / t_pop * 60, len(runs) / t_loop * 60
    row = {"case": name, "threads": DEFAULT_THREADS, "runs": len(runs), "n_params": net.n_params,
           "summary": net.summary(),
           "steps_per_run": runs[0].training.epochs * math.ceil(data.x_train.shape[0] / runs[0].training.batch_size),
           "population_seconds": t_pop, "per_model_seconds": t_loop,
           "population_models_per_minute": pop_rate, "per_model_models_per_minute": loop_rate,
           "speedup": pop_rate / loop_rate,
           "population_mean_test_acc": sum(pop_acc) / len(pop_acc),
           "per_model_mean_test_acc": sum(loop_acc) / len(loop_acc)}
    print(f"{name:12s} runs={len(runs):3d}  population {pop_rate:7.1f} models/min  per-model "
          f"{loop_rate:7.1f} models/min  x{row['speedup']:.1f}   test_acc "
          f"{row['population_mean_test_acc']:.4f} vs {row['per_model_mean_test_acc']:.4f}", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs (a smoke test)")
    args = ap.parse_args()
    seeds = list(range(4 if args.quick else 16))
    training = {"epochs": 1 if args.quick else 3, "batch_size": 64, "optimizer": "adam"}
    cases = {
        "resnet8-bn": {"name": "b-resnet", "dataset": {"name": "digits", "test_fraction": 0.25},
                       "architecture": {"name": "resnet", "depth": 8, "width_multiplier": 0.25},
                       "training": training, "grid": {"lr": [0.01], "seed": seeds}},
        "vit": {"name": "b-vit", "dataset": {"name": "digits", "test_fraction": 0.25},
                "architecture": {"name": "transformer", "patch_size": 2, "dim": 16, "depth": 2},
                "training": training, "grid": {"lr": [0.003], "seed": seeds}},
    }
    load_before = os.getloadavg()[0]
    with torch_threads(DEFAULT_THREADS):
        rows = [case(name, spec) for name, spec in cases.items()]
    results = QUICK_RESULTS if args.quick else RESULTS
    results.parent.mkdir(parents=True, exist_ok=True)
    out = {"benchmark": "bench_graph_build", "torch": torch.__version__, "machine": platform.machine(),
           "cpus": os.cpu_count(), "quick": args.quick,
           # Other processes slow both sides; the per-model loop (many small ops) usually more.
           "load_avg_1m": [load_before, os.getloadavg()[0]], "target_speedup": 3, "results": rows}
    results.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {results}")


if __name__ == "__main__":
    main()
