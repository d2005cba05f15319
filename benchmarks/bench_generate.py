"""Weight generators vs memorization baselines (issue 11), side by side in one run.

On three zoos - the ``digits-mlp`` preset (the 144 ReLU MLPs, final checkpoint),
``digits-cnn-lr`` (500 small CNNs on digits: 5 learning rates x 100 seeds, one architecture,
written here) and ``digits-resnet-bn`` (100 ResNet-8s with batch norm: 4 learning rates x 25
seeds, a graph architecture; every network scored with batch-norm statistics recomputed from
the training split, as ``zoo generate`` and ``zoo eval-gen`` do) - every method trains on the
selected networks and samples 100 networks:
the learned generators ``hyperrep``, ``pdiff`` and ``mip`` (conditioned on ``lr``, sampled at
the grid value whose runs have the best mean test accuracy), and the baselines of Zeng et al.
(2025): ``noise`` at the sigmas ``zoo eval-gen`` uses, ``average`` (k = 16), ``gaussian``.
Each is scored with ``weightspace.generators.evaluate`` on the source test split: accuracy
(mean, max), mean max-IoU of misprediction sets against every training network, mean min-L2
to the training weights, and wall time (fit + sample). The training networks are scored too
(each against the others), with the mean accuracy of their top 30 %.

``mip`` at held-out conditions: (a) trained without the runs at the middle grid lr and sampled
there, compared with the real runs at that lr and at its two neighbouring grid values; (b) the
fully trained ``mip`` sampled at the geometric midpoint of two grid values (never a grid value),
compared with the real runs at those two values.

Targets (issue 11), checked and written to the JSON: a learned generator lies above the noise
curve (its mean accuracy above the noise baselines' accuracy interpolated, in max-IoU, at its
own mean max-IoU); its mean accuracy is within 1 point of the top-30 % training networks; mip
at the held-out lr is within 2 points of the mean of the real runs at the neighbouring values.

Zoos are built once into ``benchmarks/.cache/`` (idempotent) and reused. Results go to
``benchmarks/results/bench_generate.json`` and ``bench_generate.png`` (accuracy vs max-IoU per
method, the plot of Zeng et al.); ``--quick`` (tiny zoos and settings, a smoke run) writes
``bench_generate_quick.*``.

    python benchmarks/bench_generate.py [--quick] [--methods hyperrep,mip,...]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_common import environment

from catalog import open_zoo
from catalog.format import atomic_write_bytes
from catalog.network import NetworkSpec
from weightspace.generators import build_generator, generator_hparams, generator_names
from weightspace.generators.base import accepts_data
from weightspace.generators.evaluate import DEFAULT_SIGMAS, flatten, max_iou, min_l2, mispredictions
from weightspace.generators.output import with_batch_norm_statistics
from zoo_builders import build_zoo, load_zoo_dataset

ROOT = Path(__file__).resolve().parent
CACHE = ROOT / ".cache"
RESULTS = ROOT / "results"

LEARNED = ("hyperrep", "pdiff", "mip")
BASELINES = ("noise", "average", "gaussian")
#: Fraction of the best training networks the accuracy target compares with.
TOP_FRACTION = 0.3

#: The CNN zoo: 5 learning rates x 100 seeds of one architecture (builds in ~30 s here).
CNN_SPEC = {
    "name": "digits-cnn-lr",
    "description": "500 small CNNs on scikit-learn digits, 5 learning rates x 100 seeds (bench_generate)",
    "dataset": {"name": "digits", "test_fraction": 0.25},
    "architecture": {"name": "cnn", "channels": [8, 8, 8], "kernel_size": 3, "activation": "relu"},
    "training": {"epochs": 10, "batch_size": 32, "optimizer": "adam", "checkpoints": [10]},
    "grid": {"lr": [0.001, 0.002, 0.004, 0.008, 0.016], "seed": list(range(100))},
}
#: A graph zoo: ResNet-8s with batch norm (residual streams, running statistics), 4 learning rates
#: x 25 seeds. Samples get batch-norm statistics recomputed from the training split, as
#: ``zoo generate`` writes them; the training networks are scored with recomputed ones too.
RESNET_SPEC = {
    "name": "digits-resnet-bn-lr",
    "description": "100 ResNet-8s with batch norm on scikit-learn digits, 4 learning rates x 25 seeds (bench_generate)",
    "dataset": {"name": "digits", "test_fraction": 0.25},
    "architecture": {"name": "resnet", "depth": 8, "width_multiplier": 0.25, "batchnorm": True},
    "training": {"epochs": 3, "batch_size": 64, "optimizer": "adam", "checkpoints": [3]},
    "grid": {"lr": [0.001, 0.003, 0.01, 0.03], "seed": list(range(25))},
}
#: --quick: tiny zoos of the same two families.
QUICK_MLP_SPEC = {
    "name": "bench-generate-mlp-quick",
    "dataset": {"name": "digits", "test_fraction": 0.25},
    "architecture": {"name": "mlp", "hidden": [16], "activation": "relu"},
    "training": {"epochs": 4, "batch_size": 64, "optimizer": "adam", "checkpoints": [4]},
    "grid": {"lr": [0.001, 0.003, 0.01, 0.03], "seed": [0, 1, 2, 3]},
}
QUICK_CNN_SPEC = {
    "name": "bench-generate-cnn-quick",
    "dataset": {"name": "digits", "test_fraction": 0.25},
    "architecture": {"name": "cnn", "channels": [4, 4, 4], "kernel_size": 3, "activation": "relu"},
    "training": {"epochs": 3, "batch_size": 64, "optimizer": "adam", "checkpoints": [3]},
    "grid": {"lr": [0.002, 0.004, 0.008, 0.016, 0.032], "seed": [0, 1, 2]},
}
QUICK_RESNET_SPEC = {
    "name": "bench-generate-resnet-quick",
    "dataset": {"name": "digits", "test_fraction": 0.25},
    "architecture": {"name": "resnet", "depth": 8, "width_multiplier": 0.25, "batchnorm": True},
    "training": {"epochs": 1, "batch_size": 64, "optimizer": "adam", "checkpoints": [1]},
    "grid": {"lr": [0.003, 0.01, 0.03], "seed": [0, 1, 2, 3, 4]},  # 10 left when mip holds one lr out
}

#: Hyperparameters per method (full run); a name the method does not take is dropped.
FULL_HPARAMS: dict[str, dict[str, Any]] = {
    "mip": {"condition": ["lr"], "steps": 1500, "batch_models": 32, "batch_examples": 256},
}
CNN_HPARAMS: dict[str, dict[str, Any]] = {
    # CNN forward passes of 32 networks cost more here: fewer examples per step.
    "mip": {"condition": ["lr"], "steps": 1200, "batch_models": 32, "batch_examples": 128},
}
RESNET_HPARAMS: dict[str, dict[str, Any]] = {
    "mip": {"condition": ["lr"], "steps": 1200, "batch_models": 32, "batch_examples": 128},
    # hyperrep's graph defaults (hyperrep.GRAPH_TRAINING), spelled out: the rows were measured so.
    "hyperrep": {"epochs": 200, "lr": 0.01},
}
QUICK_HPARAMS: dict[str, dict[str, Any]] = {
    "mip": {"condition": ["lr"], "steps": 30, "batch_models": 8, "batch_examples": 64, "hidden": 16},
    "hyperrep": {"epochs": 2, "d_model": 16, "d_latent": 4},
    "pdiff": {"ae_epochs": 2, "ddpm_steps": 20, "timesteps": 20, "hidden": 32, "channels": [8, 8],
              "latent_channels": 4},
}


def zoo_settings(quick: bool) -> list[dict[str, Any]]:
    """The benchmark zoos: spec (or preset name), cache dir name, selection, method hparams."""
    if quick:
        return [{"key": "mlp", "spec": QUICK_MLP_SPEC, "dir": QUICK_MLP_SPEC["name"], "where": "checkpoint = 4",
                 "hparams": QUICK_HPARAMS},
                {"key": "cnn", "spec": QUICK_CNN_SPEC, "dir": QUICK_CNN_SPEC["name"], "where": "checkpoint = 3",
                 "hparams": QUICK_HPARAMS},
                {"key": "resnet-bn", "spec": QUICK_RESNET_SPEC, "dir": QUICK_RESNET_SPEC["name"],
                 "where": "checkpoint = 1", "hparams": QUICK_HPARAMS}]
    return [{"key": "digits-mlp", "spec": "digits-mlp", "dir": "digits-mlp",
             "where": "activation = 'relu' AND checkpoint = 20", "hparams": FULL_HPARAMS},
            {"key": "digits-cnn-lr", "spec": CNN_SPEC, "dir": CNN_SPEC["name"], "where": "checkpoint = 10",
             "hparams": CNN_HPARAMS},
            {"key": "digits-resnet-bn", "spec": RESNET_SPEC, "dir": RESNET_SPEC["name"], "where": "checkpoint = 3",
             "hparams": RESNET_HPARAMS}]


def method_hparams(name: str, table: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The hparams of ``table`` that method ``name`` takes."""
    valid = set(generator_hparams(name))
    return {k: v for k, v in table.get(name, {}).items() if k in valid}


# ================================================================================ scoring
def score_networks(spec: NetworkSpec, params: dict[str, torch.Tensor], train_errors: torch.Tensor,
                   train_flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """Accuracy, max-IoU and min-L2 of ``params`` against the training networks (evaluate.py's
    measures), as a summary plus the per-network points of the figure."""
    errors = mispredictions(spec, params, x, y)  # [G, N_test]
    iou, _ = max_iou(errors, train_errors)
    dist, _ = min_l2(flatten(spec, params), train_flat)
    acc = 1.0 - errors.double().mean(1)
    finite = torch.isfinite(dist)
    return {"n": int(acc.shape[0]), "acc_mean": float(acc.mean()), "acc_max": float(acc.max()),
            "acc_min": float(acc.min()), "max_iou_mean": float(iou.mean()),
            "min_l2_mean": float(dist[finite].mean()) if finite.any() else math.nan,
            "points": {"acc": acc.tolist(), "max_iou": iou.tolist()}}


def real_acc(table, lr: float) -> float:
    lrs = np.asarray(table.column("lr").to_pylist(), dtype=np.float64)
    acc = np.asarray(table.column("test_acc").to_pylist(), dtype=np.float64)
    return float(acc[np.isclose(lrs, lr)].mean())


def fit_sample(name: str, hp: dict[str, Any], spec: NetworkSpec, params, table, data, n: int, seed: int,
               condition: dict[str, float] | None, progress: bool):
    """Train ``name`` and sample ``n`` networks (batch-norm statistics recomputed, as
    ``zoo generate`` writes them); returns (generator, samples, seconds)."""
    t0 = time.perf_counter()
    gen = build_generator(name, spec, **hp)
    extra = {"data": data} if accepts_data(gen) else {}
    gen.fit(params, table, seed=seed, progress=progress, **extra)
    samples = gen.sample(n, seed=seed, condition=condition if gen.conditional else None)
    return gen, with_batch_norm_statistics(spec, samples, data), time.perf_counter() - t0


def run_zoo(setting: dict[str, Any], methods: list[str], n: int, cache: Path, quiet: bool,
            seed: int = 0) -> dict[str, Any]:
    """Build (or reuse) one zoo and run every method on it."""
    out_dir = cache / setting["dir"]
    t0 = time.perf_counter()
    plan = build_zoo(setting["spec"], out_dir, quiet=quiet, threads=1)
    build_s = time.perf_counter() - t0
    zoo = open_zoo(out_dir)
    sel = zoo.select(f"({setting['where']}) AND status = 'ok'")
    spec, table = sel.network_spec, sel.table
    data = load_zoo_dataset(zoo)
    params = sel.stacked()
    scored = with_batch_norm_statistics(spec, params, data)  # as eval-gen compares them
    x, y = data.x_test, data.y_test
    train_errors = mispredictions(spec, scored, x, y)  # [T, N_test]
    train_flat = flatten(spec, params)
    train_acc = 1.0 - train_errors.double().mean(1)
    own_iou, _ = max_iou(train_errors, train_errors, exclude_self=True)
    k = max(1, int(round(TOP_FRACTION * len(train_acc))))
    top = train_acc.sort(descending=True).values[:k]
    lrs = sorted({float(v) for v in table.column("lr").to_pylist()})
    best_lr = max(lrs, key=lambda v: real_acc(table, v))
    res: dict[str, Any] = {
        "zoo": zoo.name, "where": setting["where"], "n_train": len(sel), "n_params": spec.n_params,
        "build": {"seconds": round(build_s, 1), "runs_trained": int(getattr(plan, "runs_trained", 0) or 0)},
        "train": {"acc_mean": float(train_acc.mean()), "acc_max": float(train_acc.max()),
                  f"top{int(TOP_FRACTION * 100)}_acc_mean": float(top.mean()),
                  "max_iou_mean": float(own_iou.mean()),
                  "points": {"acc": train_acc.tolist(), "max_iou": own_iou.tolist()}},
        "lr_grid": {f"{v:g}": real_acc(table, v) for v in lrs}, "mip_condition": {"lr": best_lr},
        "methods": {},
    }
    registered = set(generator_names())
    runs: list[tuple[str, str, dict[str, Any]]] = []
    for name in methods:
        if name == "noise":
            runs += [(f"noise sigma={s:g}", "noise", {"sigma": s}) for s in DEFAULT_SIGMAS]
        else:
            runs.append((name, name, method_hparams(name, setting["hparams"]) if name in registered else {}))
    for label, name, hp in runs:
        if name not in registered:
            res["methods"][label] = {"skipped": f"generator {name!r} is not registered (not landed yet)"}
            print(f"[{zoo.name}] {label}: skipped (not registered)")
            continue
        try:
            _, samples, secs = fit_sample(name, hp, spec, params, table, data, n, seed,
                                          {"lr": best_lr}, not quiet)
        except Exception as e:  # noqa: BLE001  (one method failing does not stop the side-by-side run)
            res["methods"][label] = {"error": f"{type(e).__name__}: {e}"}
            print(f"[{zoo.name}] {label}: error {e}")
            continue
        scores = score_networks(spec, samples, train_errors, train_flat, x, y)
        res["methods"][label] = {"method": name, "hparams": hp, "seconds": round(secs, 1), **scores}
        print(f"[{zoo.name}] {label}: acc {scores['acc_mean']:.4f} (max {scores['acc_max']:.4f}) "
              f"max-IoU {scores['max_iou_mean']:.3f} min-L2 {scores['min_l2_mean']:.3f} in {secs:.1f} s")
    if "mip" in methods and "mip" in registered:
        res["mip_heldout"] = mip_heldout(setting, sel, spec, table, data, lrs, n, seed, quiet)
    return res


def mip_heldout(setting: dict[str, Any], sel, spec: NetworkSpec, table, data, lrs: list[float], n: int,
                seed: int, quiet: bool) -> dict[str, Any]:
    """mip at lr values it never saw: a held-out grid value and a midpoint between grid values."""
    hp = method_hparams("mip", setting["hparams"])
    x, y = data.x_test, data.y_test

    def acc_of(samples) -> float:
        return float(1.0 - mispredictions(spec, samples, x, y).double().mean())

    out: dict[str, Any] = {}
    i = len(lrs) // 2
    held, lo, hi = lrs[i], lrs[i - 1], lrs[i + 1]
    lr_col = np.asarray(table.column("lr").to_pylist(), dtype=np.float64)
    train = sel.take(np.flatnonzero(~np.isclose(lr_col, held)).tolist())
    t0 = time.perf_counter()
    gen, samples, _ = fit_sample("mip", hp, spec, train.stacked(), train.table, data, n, seed, {"lr": held},
                                 not quiet)
    neigh = (real_acc(table, lo) + real_acc(table, hi)) / 2
    a = acc_of(samples)
    out["held_out_grid_value"] = {
        "lr": held, "trained_on_lr": [v for v in lrs if v != held], "generated_acc_mean": a,
        "real_acc_mean_at_lr": real_acc(table, held),
        "neighbours": {f"{lo:g}": real_acc(table, lo), f"{hi:g}": real_acc(table, hi)},
        "neighbours_acc_mean": neigh, "diff_vs_neighbours_points": 100 * (a - neigh),
        "diff_vs_real_at_lr_points": 100 * (a - real_acc(table, held)),
        "within_2_points_of_neighbours": abs(a - neigh) <= 0.02, "seconds": round(time.perf_counter() - t0, 1)}
    # (b) the generator trained on every lr, at the geometric midpoint of two grid values
    full, samples_b, _ = fit_sample("mip", hp, spec, sel.stacked(), table, data, n, seed,
                                    {"lr": math.sqrt(lo * held)}, not quiet)
    mid = math.sqrt(lo * held)
    neigh_b = (real_acc(table, lo) + real_acc(table, held)) / 2
    b = acc_of(samples_b)
    out["between_grid_values"] = {
        "lr": mid, "generated_acc_mean": b,
        "neighbours": {f"{lo:g}": real_acc(table, lo), f"{held:g}": real_acc(table, held)},
        "neighbours_acc_mean": neigh_b, "diff_vs_neighbours_points": 100 * (b - neigh_b),
        "within_2_points_of_neighbours": abs(b - neigh_b) <= 0.02,
        # the same generator at every grid value: does accuracy follow lr as in the zoo?
        "at_grid_values": {f"{v:g}": {"generated": acc_of(with_batch_norm_statistics(
                               spec, full.sample(n, seed=seed, condition={"lr": v}), data)),
                                      "real": real_acc(table, v)} for v in lrs}}
    h, m = out["held_out_grid_value"], out["between_grid_values"]
    print(f"[{setting['key']}] mip held-out lr {held:g}: "
          f"{h['generated_acc_mean']:.4f} vs real {h['real_acc_mean_at_lr']:.4f}, neighbours {neigh:.4f}; "
          f"between lr {mid:.4g}: {m['generated_acc_mean']:.4f} vs neighbours {neigh_b:.4f}")
    return out


# ================================================================================ targets, table, figure
def noise_curve(methods: dict[str, dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """The noise baselines' (mean max-IoU, mean accuracy) points, sorted by IoU."""
    pts = sorted((m["max_iou_mean"], m["acc_mean"]) for label, m in methods.items()
                 if label.startswith("noise") and "acc_mean" in m)
    return np.asarray([p[0] for p in pts]), np.asarray([p[1] for p in pts])


def targets(zoos: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's three targets per zoo and learned method (``met`` True/False)."""
    out: dict[str, Any] = {}
    for key, res in zoos.items():
        ious, accs = noise_curve(res["methods"])
        top = next(v for k, v in res["train"].items() if k.startswith("top"))
        for name in LEARNED:
            m = res["methods"].get(name, {})
            if "acc_mean" not in m or not len(ious):
                continue
            # np.interp clamps: beyond the most novel noise point compare with its accuracy.
            curve_acc = float(np.interp(m["max_iou_mean"], ious, accs))
            out[f"{key}/{name}/above_noise_curve"] = {
                "met": m["acc_mean"] > curve_acc, "acc_mean": m["acc_mean"], "max_iou_mean": m["max_iou_mean"],
                "noise_curve_acc_at_that_iou": curve_acc}
            out[f"{key}/{name}/within_1_point_of_top30"] = {
                "met": m["acc_mean"] >= top - 0.01, "acc_mean": m["acc_mean"], "top30_acc_mean": top}
        if "mip_heldout" in res:
            for case, v in res["mip_heldout"].items():
                out[f"{key}/mip/{case}_within_2_points"] = {
                    "met": v["within_2_points_of_neighbours"], "lr": v["lr"],
                    "generated_acc_mean": v["generated_acc_mean"], "neighbours_acc_mean": v["neighbours_acc_mean"]}
    return out


def table(zoos: dict[str, dict[str, Any]]) -> str:
    """The README table: one row per zoo and method (accuracy in %, IoU and L2 as measured)."""
    lines = ["| zoo | method | acc mean | acc max | mean max-IoU | mean min-L2 | wall s |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for key, res in zoos.items():
        tr = res["train"]
        top = next(v for k, v in tr.items() if k.startswith("top"))
        lines.append(f"| {key} | training networks ({res['n_train']}; top 30%: {100 * top:.1f}%) | "
                     f"{100 * tr['acc_mean']:.1f}% | {100 * tr['acc_max']:.1f}% | {tr['max_iou_mean']:.3f} | — | — |")
        for label, m in res["methods"].items():
            if "acc_mean" not in m:
                why = m.get("skipped") or m.get("error", "")
                lines.append(f"| {key} | `{label}` | — | — | — | — | {why[:60]} |")
                continue
            name = f"`{label}`" + (f" (lr={res['mip_condition']['lr']:g})" if m.get("method") == "mip" else "")
            lines.append(f"| {key} | {name} | {100 * m['acc_mean']:.1f}% | {100 * m['acc_max']:.1f}% | "
                         f"{m['max_iou_mean']:.3f} | {m['min_l2_mean']:.2f} | {m['seconds']:.1f} |")
    return "\n".join(lines)


def plot(zoos: dict[str, dict[str, Any]], path: Path) -> Path:
    """Accuracy vs max-IoU, one panel per zoo: every generated network (dots), each method's mean
    (large marker), the noise curve (line through the sigmas) and the training networks' own
    max-IoU against the others (grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(zoos), figsize=(6.5 * len(zoos), 5.2), squeeze=False)
    for ax, (key, res) in zip(axes[0], zoos.items()):
        tr = res["train"]["points"]
        ax.scatter(tr["max_iou"], [100 * a for a in tr["acc"]], s=6, c="0.7", label="training (vs others)")
        # tab10 without its grey (index 7), which the training networks use
        colours = [plt.get_cmap("tab10")(i) for i in range(10) if i != 7]
        for i, (label, m) in enumerate((lbl, m) for lbl, m in res["methods"].items() if "acc_mean" in m):
            c = colours[i % len(colours)]
            ax.scatter(m["points"]["max_iou"], [100 * a for a in m["points"]["acc"]], s=8, color=c, alpha=0.35)
            ax.scatter([m["max_iou_mean"]], [100 * m["acc_mean"]], s=90, color=c, edgecolor="k", label=label,
                       marker="*" if m.get("method") in LEARNED else "o", zorder=3)
        ious, accs = noise_curve(res["methods"])
        if len(ious):
            ax.plot(ious, 100 * accs, "k--", lw=1, label="noise curve (means)")
        ax.set_xlabel("max IoU of misprediction sets vs training networks (1 = a copy)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{key} ({res['n_train']} training networks)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def strip_points(zoos: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The results without the per-network points (kept in a separate key of the JSON)."""
    out = json.loads(json.dumps(zoos))
    for res in out.values():
        res["train"].pop("points", None)
        for m in res["methods"].values():
            m.pop("points", None)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny zoos and settings (a smoke run)")
    ap.add_argument("--methods", default=",".join(LEARNED + BASELINES),
                    help="comma-separated methods (default: all learned methods and baselines)")
    ap.add_argument("--n", type=int, default=None, help="samples per method (default 100; 10 with --quick)")
    ap.add_argument("--cache", type=Path, default=CACHE, help="where zoos are built and reused")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where the JSON and PNG go")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    n = args.n or (10 if args.quick else 100)
    t0 = time.perf_counter()
    zoos = {}
    for setting in zoo_settings(args.quick):
        zoos[setting["key"]] = run_zoo(setting, methods, n, args.cache, args.quiet)
    stem = "bench_generate_quick" if args.quick else "bench_generate"
    fig = plot(zoos, args.out / f"{stem}.png")
    result = {"benchmark": "bench_generate", "quick": args.quick, "n_samples": n, "methods": methods,
              "env": environment(args.threads), "zoos": strip_points(zoos), "targets": targets(zoos),
              "table_markdown": table(zoos), "figure": fig.name,
              "points": {k: {"train": v["train"]["points"],
                             **{lbl: m["points"] for lbl, m in v["methods"].items() if "points" in m}}
                         for k, v in zoos.items()},
              "wall_seconds": round(time.perf_counter() - t0, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out / f"{stem}.json", (json.dumps(result, indent=1) + "\n").encode())
    print(result["table_markdown"])
    for name, t in result["targets"].items():
        print(f"target {name}: {'met' if t['met'] else 'NOT met'}")
    print(f"wrote {args.out / (stem + '.json')} and {fig} in {result['wall_seconds']} s")
    return result


if __name__ == "__main__":
    main()
