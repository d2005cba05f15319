"""Landscape analysis of a phase sweep: phase diagrams, the published trends, and the vectorized
Hessian metrics vs a one-model-at-a-time PyHessian loop, side by side in one run.

1. Builds the ``phase-cnn`` preset (1-D CNNs on MNIST-1D over channels x batch size x train
   fraction x 3 seeds) into ``benchmarks/.cache/`` (reused when already built) and analyzes a
   copy of it with every metric of ``zoo analyze`` (``--align`` too), timing each.
2. Writes one phase diagram per metric (mean over seeds, train_fraction 1.0, channels x batch
   size) to ``benchmarks/results/bench_analyze_<column>.png`` and checks the trends the
   Phase-Transition Model Zoo reports: the log Hessian trace falls as the batch size shrinks;
   barriers vanish and CKA approaches 1 only at large width.
3. Times the Hessian metrics (top eigenvalue by Lanczos, <= 100 Hessian-vector products, residual
   tol 1e-4, against PyHessian's power iteration at its tol 1e-3; trace by Hutchinson, 100
   Rademacher vectors, no early stop; 640 training examples) of the
   same models three ways: ``weightspace.analysis`` vectorized over each architecture's models,
   and a loop over the models with the ``pyhessian`` package (PyHessian 0.1), once given the
   640 examples as one batch (its fastest mode: the gradient graph is built once) and once as
   10 batches of 64 (the mode the Phase-Transition Model Zoo's scripts use: every product
   re-runs each batch). The trace uses the same Rademacher vectors in both (PyHessian draws
   them from the global generator seeded with the model's seed, weightspace from a generator
   with that seed: the same stream), so the traces agree to rounding; the top eigenvalues come
   from different methods, start vectors and stop rules. The same comparison runs
   on the MLPs of the ``phase-mlp`` preset. Skipped with a message without pyhessian
   (``pip install --no-deps pyhessian``).

Results go to ``benchmarks/results/bench_analyze.json`` (``bench_analyze_quick.json`` and
``bench_analyze_quick_*.png`` with ``--quick``, a smoke run on a small zoo).

    python benchmarks/bench_analyze.py [--quick]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from bench_common import environment, package_version

from catalog import open_zoo
from catalog.errors import WeightzooError
from catalog.network import build_module
from weightspace.analysis import hessian_top_eig, hessian_trace, phase_heatmap
from weightspace.analysis.run import analyze_zoo, model_seed
from zoo_builders import BuildSpec, build_zoo, load_zoo_dataset

ROOT = Path(__file__).parent
CACHE = ROOT / ".cache"
RESULTS = ROOT / "results"

#: Columns drawn as phase diagrams (log10 for the Hessian metrics, as the published figures).
DIAGRAMS = {
    "hessian_trace_train": True, "hessian_top_eig_train": True, "cka_seed": False,
    "mc_linear": False, "mc_linear_aligned": False, "mc_bezier": False, "avg_acc_delta": False,
    "subspace_proj_acc": False, "test_acc": False,
}
#: Hessian settings of the speed comparison (the Phase-Transition Model Zoo's; weightspace's
#: Lanczos tolerance is its default, a residual bound, PyHessian's power iteration keeps its 1e-3).
EIG_ITERS, EIG_TOL, PYHESSIAN_EIG_TOL, TRACE_SAMPLES, N_BATCHES, BATCH = 100, 1e-4, 1e-3, 100, 10, 64


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ===================================================================================== zoos
def phase_spec(preset: str, quick: bool) -> dict:
    spec = BuildSpec.load(preset).to_dict()
    if quick:
        spec = copy.deepcopy(spec)
        spec["name"] = f"{preset}-quick"
        spec["training"] = {**spec["training"], "epochs": 4, "checkpoints": [0, 4]}
        axis = "channels" if "channels" in spec["grid"] else "hidden"
        spec["grid"] = {axis: spec["grid"][axis][:2], "batch_size": spec["grid"]["batch_size"][:2],
                        "train_fraction": [1.0], "seed": [0, 1]}
    return spec


def ensure_zoo(spec: dict, cache: Path, quiet: bool) -> tuple[Path, dict]:
    """Build (or resume, or reuse) the zoo of ``spec`` under ``cache``."""
    out = cache / spec["name"]
    t0 = time.perf_counter()
    plan = build_zoo(spec, out, quiet=quiet)
    seconds = time.perf_counter() - t0
    runs = sum(len(p.runs) for p in plan.populations)
    log(f"zoo {spec['name']}: {runs} runs trained in {seconds:.1f} s ({'built' if runs else 'cached'})")
    return out, {"path": str(out), "runs_trained": runs, "seconds": round(seconds, 1),
                 "rows": open_zoo(out).manifest.counts.get("rows")}


# ===================================================================================== trends
def _spearman(a: list[float], b: list[float]) -> float | None:
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = ~(np.isnan(a) | np.isnan(b))
    if ok.sum() < 3:
        return None
    ra, rb = np.argsort(np.argsort(a[ok])), np.argsort(np.argsort(b[ok]))
    if ra.std() == 0 or rb.std() == 0:
        return None
    return round(float(np.corrcoef(ra, rb)[0, 1]), 3)


def _label(v) -> str:
    return str(v[0]) if isinstance(v, tuple) else str(v)


def trends(grids: dict) -> dict:
    """The published trends, read off the seed-mean phase grids (rows: batch sizes, columns:
    widths, both ascending)."""
    trace = grids["hessian_trace_train"]
    widths = [_label(w) for w in trace.x_values]
    batches = list(trace.y_values)
    per_width = {}
    for j, w in enumerate(widths):
        col = trace.values[:, j]
        per_width[w] = {"log10_trace_by_batch_size": dict(zip(map(str, batches), np.round(col, 3).tolist())),
                        "spearman_batch_size_vs_log_trace": _spearman(batches, col.tolist())}
    rising = [v["spearman_batch_size_vs_log_trace"] for v in per_width.values()]
    widest = rising[-1]
    trace_trend = {
        "claim": "log Hessian trace falls as batch size shrinks (published: 7.2 -> 2.6 from batch "
                 "1024 to 8, ResNet-18 width 256 on CIFAR-10)",
        "per_width": per_width,
        "reproduces": bool(widest is not None and widest > 0
                           and sum(r is not None and r > 0 for r in rising) > len(rising) / 2),
        "rule": "trace rises with batch size (Spearman > 0) at the widest width and at most widths",
    }

    def by_width(name: str) -> dict:
        g = grids[name]
        return {"by_width_mean_over_batch_sizes": dict(zip(widths, np.round(np.nanmean(g.values, 0), 3).tolist())),
                "by_width_at_smallest_batch": dict(zip(widths, np.round(g.values[0], 3).tolist()))}

    cka = by_width("cka_seed")
    c = list(cka["by_width_at_smallest_batch"].values())
    cka_trend = {
        "claim": "CKA between seeds approaches 1 only at large width", **cka,
        "spearman_width_vs_cka_at_smallest_batch": _spearman(list(range(len(c))), c),
        "reproduces": bool(c[-1] >= 0.8 and c[-1] == max(c) and c[0] < c[-1] - 0.1),
        "rule": "at the smallest batch size CKA is highest (>= 0.8) at the widest width and at "
                "least 0.1 lower at the narrowest",
    }
    barriers = {}
    for name in ("mc_linear", "mc_linear_aligned", "mc_bezier"):
        b = by_width(name)
        m = list(b["by_width_at_smallest_batch"].values())
        barriers[name] = {**b, "spearman_width_vs_mc_at_smallest_batch": _spearman(list(range(len(m))), m),
                          "vanishes_at_widest": bool(m[-1] > -0.1 * abs(m[0]) or m[-1] > -0.05),
                          "barrier_at_narrowest": bool(m[0] < -0.05)}
    barrier_trend = {
        "claim": "loss barriers between seeds (mc < 0) vanish only at large width",
        "rule": "at the smallest batch size mc < -0.05 at the narrowest width and, at the widest, "
                "mc > -0.05 or within 10% of the narrowest's barrier",
        **barriers,
        "reproduces": {k: bool(v["vanishes_at_widest"] and v["barrier_at_narrowest"]) for k, v in barriers.items()},
    }
    return {"trace_vs_batch_size": trace_trend, "cka_vs_width": cka_trend, "barriers_vs_width": barrier_trend}


# ===================================================================================== speed
def pyhessian_version() -> str | None:
    return package_version("pyhessian")


def hessian_speed(zoo_path: Path, where: str, iters: int = EIG_ITERS, samples: int = TRACE_SAMPLES) -> dict:
    """Top eigenvalue + trace of the selected models: vectorized vs PyHessian loops."""
    zoo = open_zoo(zoo_path)
    data = load_zoo_dataset(zoo)
    sel = zoo.select(where=where)
    n = N_BATCHES * BATCH
    ours = {"top_eig": {}, "trace": {}}
    t0 = time.perf_counter()
    for arch_id, part in sel.by_arch().items():
        spec = zoo.network_spec(arch_id)
        x = data.x_train.reshape(-1, *spec.input_shape)[:n]
        y = data.y_train[:n]
        params = part.stacked()
        ids = part.column("model_id")
        seeds = [model_seed(i) for i in ids]
        eig = hessian_top_eig(spec, params, x, y, iters=iters, tol=EIG_TOL, seed=seeds)
        tr = hessian_trace(spec, params, x, y, samples=samples, seed=seeds)
        ours["top_eig"].update(zip(ids, eig.tolist()))
        ours["trace"].update(zip(ids, tr.tolist()))
    ours_s = time.perf_counter() - t0
    n_models = len(sel)
    out = {"models": n_models, "where": where, "examples": n, "top_eig_iters_max": iters,
           "top_eig_tol": EIG_TOL, "pyhessian_top_eig_tol": PYHESSIAN_EIG_TOL, "trace_samples": samples,
           "weightspace_seconds": round(ours_s, 2)}
    log(f"  weightspace vectorized: {n_models} models in {ours_s:.1f} s")
    if pyhessian_version() is None:
        out["pyhessian"] = "skipped: pyhessian is not installed (pip install --no-deps pyhessian)"
        log("  pyhessian not installed: comparison skipped")
        return out
    from pyhessian import hessian

    crit = torch.nn.CrossEntropyLoss()
    rows = sel.table.to_pylist()
    for mode in ("one_batch", "ten_batches"):
        eigs, traces, used = {}, {}, []
        t0 = time.perf_counter()
        for i, row in enumerate(rows):
            spec = zoo.network_spec(row["arch_id"])
            x = data.x_train.reshape(-1, *spec.input_shape)[:n]
            y = data.y_train[:n]
            module = build_module(spec, sel.take([i]).state_dicts()[0])
            seed = model_seed(row["model_id"])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # create_graph=True reference-cycle warning
                if mode == "one_batch":
                    h = hessian(module, crit, data=(x, y), cuda=False)
                else:
                    h = hessian(module, crit, dataloader=[(x[k:k + BATCH], y[k:k + BATCH])
                                                          for k in range(0, n, BATCH)], cuda=False)
                torch.manual_seed(seed)
                ev, _ = h.eigenvalues(maxIter=iters, tol=PYHESSIAN_EIG_TOL)
                torch.manual_seed(seed)
                vhv = h.trace(maxIter=samples, tol=0.0)  # tol 0: all samples, no early stop
            eigs[row["model_id"]], traces[row["model_id"]] = ev[0], float(np.mean(vhv))
            used.append(len(vhv))
        seconds = time.perf_counter() - t0
        assert set(used) == {samples}
        rel_eig = np.array([abs(ours["top_eig"][k] - v) / abs(v) for k, v in eigs.items()])
        rel_tr = np.array([abs(ours["trace"][k] - v) / abs(v) for k, v in traces.items()])
        out[f"pyhessian_{mode}"] = {
            "seconds": round(seconds, 2),
            "speedup_of_weightspace": round(seconds / ours_s, 2),
            "top_eig_rel_diff": {"median": float(np.median(rel_eig)), "max": float(rel_eig.max()),
                                 "within_2_percent": int((rel_eig <= 0.02).sum())},
            "trace_rel_diff_same_vectors": {"median": float(np.median(rel_tr)), "max": float(rel_tr.max())},
        }
        log(f"  pyhessian {mode}: {seconds:.1f} s ({seconds / ours_s:.2f}x the vectorized time); "
            f"top eig max rel diff {rel_eig.max():.2%}, trace max rel diff {rel_tr.max():.1e}")
    out["pyhessian"] = pyhessian_version()
    return out


# ===================================================================================== main
def _clean(v):
    """JSON-safe: NaN -> null, tuples -> lists, paths -> strings."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (np.floating, np.integer)):
        return _clean(v.item())
    if isinstance(v, Path):
        return str(v)
    return v


def table(analysis: dict, speed: dict, tr: dict) -> str:
    lines = ["| Hessian metrics (top eig + trace, 640 train examples) | models | seconds | weightspace speed-up "
             "| top eig within 2% (max diff) | trace max diff (same vectors) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for zoo_name, s in speed.items():
        lines.append(f"| {zoo_name}: weightspace, vectorized | {s['models']} | {s['weightspace_seconds']} | 1 | | |")
        for mode, label in (("one_batch", "PyHessian loop, 1 batch of 640"),
                            ("ten_batches", "PyHessian loop, 10 batches of 64 (reference)")):
            p = s.get(f"pyhessian_{mode}")
            if isinstance(p, dict):
                e = p["top_eig_rel_diff"]
                lines.append(f"| {zoo_name}: {label} | {s['models']} | {p['seconds']} | "
                             f"{p['speedup_of_weightspace']}x | {e['within_2_percent']}/{s['models']} "
                             f"({e['max']:.1%}) | {p['trace_rel_diff_same_vectors']['max']:.1e} |")
    lines += ["", "| metric | models | seconds |", "| --- | --- | --- |"]
    for name, r in analysis["metrics"].items():
        lines.append(f"| {name} | {r['computed']} | {r['seconds']} |")
    lines += ["", "| trend | reproduces |", "| --- | --- |",
              f"| log trace falls as batch size shrinks | {tr['trace_vs_batch_size']['reproduces']} |",
              f"| CKA -> 1 only at large width | {tr['cka_vs_width']['reproduces']} |"]
    for k, v in tr["barriers_vs_width"]["reproduces"].items():
        lines.append(f"| barriers ({k}) vanish only at large width | {v} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small zoo and cheap settings (a smoke run)")
    ap.add_argument("--cache", type=Path, default=CACHE, help="where zoos are built and reused")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    mode = "quick" if args.quick else "full"
    prefix = "bench_analyze_quick" if args.quick else "bench_analyze"
    out_path = RESULTS / f"{prefix}.json"
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    log(f"bench_analyze ({mode}), {args.threads} torch thread(s), load {load_start[0]:.2f}")

    cnn_path, cnn_build = ensure_zoo(phase_spec("phase-cnn", args.quick), args.cache, args.quiet)
    mlp_path, mlp_build = ensure_zoo(phase_spec("phase-mlp", args.quick), args.cache, args.quiet)
    t_built = time.perf_counter()

    cheap = {"trace_samples": 20, "hessian_iters": 30, "bezier_epochs": 2} if args.quick else {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / cnn_path.name
        shutil.copytree(cnn_path, work)  # the cached zoo stays unanalyzed, so every run computes
        log(f"analyzing a copy of {cnn_path.name} with every metric")
        result = analyze_zoo(work, "all", align=True, out=tmp, progress=not args.quiet, **cheap)
        t_analyzed = time.perf_counter()
        analysis = {"rows": result.rows,
                    "metrics": {r.metric: {"computed": r.computed, "seconds": round(r.seconds, 1),
                                           "columns": r.columns} for r in result.reports},
                    "summary": result.summary()}
        table_rows = open_zoo(work).select(where="train_fraction = 1.0").table
        checkpoint = max(table_rows.column("checkpoint").to_pylist())
        table_rows = table_rows.filter(pa.array(np.asarray(table_rows.column("checkpoint").to_pylist()) == checkpoint))
        grids, figures = {}, {}
        for col, log10 in DIAGRAMS.items():
            fig = RESULTS / f"{prefix}_{col}.png"
            try:
                grids[col] = phase_heatmap(table_rows, "channels", "batch_size", col, log=log10, out=fig)
            except WeightzooError:  # a negative top eigenvalue: no log scale
                grids[col] = phase_heatmap(table_rows, "channels", "batch_size", col, out=fig)
            figures[col] = str(fig.relative_to(ROOT.parent))
        widest = max(result.subspace, key=lambda a: open_zoo(work).network_spec(a).n_params)
        spectrum = RESULTS / f"{prefix}_subspace_spectrum.png"
        shutil.copy(next(f for f in result.figures if widest in f.name), spectrum)
        figures["subspace_spectrum"] = str(spectrum.relative_to(ROOT.parent))
        subspace = {a: {"layers": s.layers, "ranks": {str(k): v for k, v in s.ranks.items()}}
                    for a, s in result.subspace.items()}
    tr = trends(grids)
    phase_table = {col: {"x_channels": [_label(v) for v in g.x_values], "y_batch_size": g.y_values,
                         "log10": g.log, "values": np.round(g.values, 4).tolist()} for col, g in grids.items()}
    t_diagrams = time.perf_counter()

    log("Hessian speed: the same models, vectorized vs one at a time with PyHessian")
    where = "train_fraction = 1.0 AND seed IN (0, 1) AND checkpoint = {}"
    cnn_last = max(open_zoo(cnn_path).table.column("checkpoint").to_pylist())
    mlp_last = max(open_zoo(mlp_path).table.column("checkpoint").to_pylist())
    budget = {"iters": 30, "samples": 20} if args.quick else {}
    speed = {"phase-cnn": hessian_speed(cnn_path, where.format(cnn_last), **budget),
             "phase-mlp": hessian_speed(mlp_path, where.format(mlp_last), **budget)}
    t_end = time.perf_counter()

    md = table(analysis, speed, tr)
    out = {
        "benchmark": "bench_analyze", "mode": mode, "environment": environment(args.threads, ("pyhessian",)),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "wall_seconds": {"total": round(t_end - t_start, 1), "zoo_builds": round(t_built - t_start, 1),
                         "analysis": round(t_analyzed - t_built, 1),
                         "diagrams": round(t_diagrams - t_analyzed, 1),
                         "hessian_speed": round(t_end - t_diagrams, 1)},
        "budget_minutes": 20, "within_budget": (t_end - t_start) < 20 * 60,
        "zoo_builds": {"phase-cnn": cnn_build, "phase-mlp": mlp_build},
        "analysis": analysis, "subspace": subspace,
        "phase_diagrams": {"rows": "train_fraction = 1.0, last checkpoint, mean over seeds",
                           "figures": figures, "cells": phase_table},
        "trends": tr,
        "hessian_speed": speed,
        "targets": {
            "speedup_vs_pyhessian_reference_loop_ge_5x": {
                k: (s["pyhessian_ten_batches"]["speedup_of_weightspace"] >= 5
                    if isinstance(s.get("pyhessian_ten_batches"), dict) else None) for k, s in speed.items()},
            "speedup_vs_pyhessian_one_batch_loop_ge_5x": {
                k: (s["pyhessian_one_batch"]["speedup_of_weightspace"] >= 5
                    if isinstance(s.get("pyhessian_one_batch"), dict) else None) for k, s in speed.items()},
            "top_eig_within_2_percent": {
                k: (s["pyhessian_one_batch"]["top_eig_rel_diff"]["max"] <= 0.02
                    if isinstance(s.get("pyhessian_one_batch"), dict) else None) for k, s in speed.items()},
        },
        "table_markdown": md,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp_out = out_path.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(_clean(out), indent=2) + "\n")
    tmp_out.replace(out_path)
    print()
    print(md)
    print(f"\nwall time {out['wall_seconds']['total']:.0f} s; wrote {out_path}")


if __name__ == "__main__":
    main()
