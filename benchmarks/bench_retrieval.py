"""Model retrieval on a hub zoo: which method best predicts how well each model transfers to a
held-out task, and how fast a query over 10,000 embedded models answers.

Setup (all computed here, nothing downloaded):

- **hub**: ``retrieval.build_hub`` with the ``retrieval-hub`` preset (24 digits MLPs: 2 widths x
  2 activations x 3 learning rates x 2 seeds, checkpoints 1/4/16) trained once per source task
  of ``retrieval.SOURCE_TASKS`` (11 class subsets of digits, labels unchanged): 792 models.
  Every model is embedded with ``behavior`` on 32 probes (d = 320).
- **query tasks**: ``retrieval.QUERY_TASKS``, 8 class subsets of digits that are no source task,
  few-shot: 10% of their examples (~18 per class) are what a method sees, 90% measure the
  ground truth. **Ground truth** = each model's linear-probe accuracy on the task
  (``retrieval.transfer_ground_truth``: frozen penultimate features, closed-form ridge probe).
- **methods**, side by side on the same queries: random scores; the estimators LogME, H-score,
  LEEP, NCE on the task's few-shot examples; ``behavior`` (cosine similarity of the task
  embedding with the stored behaviour embeddings); the learned ranker
  (``retrieval.ranker``) trained on (model, task, ground truth) triples of the *source* tasks
  (same few-shot regime), with embeddings only and with the four estimator scores as extra
  features; and, as an upper-bound experiment, the ranker with estimators trained on 24 more
  random class subsets (disjoint from the query tasks).
- **metrics** (per query task, then the mean): weighted Kendall tau
  (``scipy.stats.weightedtau``, Model Spider's metric), top-1 / top-3 hit (a truly best model
  among the method's first 1 / 3), over the whole hub (792 candidates) and over random pools
  of 10 models (Model Spider ranks 10 models; 100 seeded pools per task).
- **latency** over a zoo of 10,000 embedded models (the hub's models tiled, written with
  ``ZooWriter`` and embedded): for ``behavior``, the DuckDB top-k scan alone on an open index
  (1 DuckDB thread and DuckDB's default), one query as a service with the index open would
  answer it (embed the task on the stored probes, then scan), and ``retrieval.search_zoo`` end
  to end as ``zoo search`` runs it (open the zoo, load the task, read the stored vectors, build
  the index, scan); for the estimators and rankers, ``search_zoo`` end to end (every model runs
  on the task). Medians of 5 repeats (2 for the slow methods), one torch thread.

Run::

    python benchmarks/bench_retrieval.py           # ~5-10 minutes on one core
    python benchmarks/bench_retrieval.py --quick   # a smoke run; writes bench_retrieval_quick.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from catalog import ZooWriter, open_zoo
from retrieval import (
    QUERY_TASKS,
    SOURCE_TASKS,
    EmbeddingIndex,
    RankerConfig,
    TaskSpec,
    build_hub,
    embed_zoo,
    fit_ranker,
    load_task,
    ranking_metrics,
    read_embeddings,
    score_zoo,
    search_zoo,
    transfer_ground_truth,
)
from retrieval.hub import HUB_PRESET, training_task
from retrieval.zoo_search import task_vector

ROOT = Path(__file__).resolve().parent
CACHE = ROOT / ".cache"
RESULTS = ROOT / "results"
ESTIMATORS = ("logme", "hscore", "leep", "nce")
N_PROBES = 32
POOL_SIZE = 10
N_POOLS = 100
TARGETS = {"beat_logme_tau": True, "moonshot_tau": 0.80, "moonshot_top1": 0.50, "latency_ms": 50.0}

QUICK_TEMPLATE = {
    "name": "retrieval-hub-quick", "dataset": {"name": "digits", "test_fraction": 0.25},
    "architecture": {"name": "mlp", "hidden": [16], "activation": "relu"},
    "training": {"epochs": 4, "batch_size": 32, "optimizer": "adam", "lr": 0.01, "checkpoints": [2, 4]},
    "grid": {"hidden": [[16], [32, 16]], "seed": [0, 1]},
}


def few_shot(task: str, test_fraction: float) -> TaskSpec:
    """``task`` with its examples split ``test_fraction`` held out."""
    t = TaskSpec.parse(task)
    return TaskSpec(dataclasses.replace(t.dataset, test_fraction=test_fraction), t.classes)


def extra_tasks(n: int, avoid: set, test_fraction: float, seed: int = 0) -> list[TaskSpec]:
    """``n`` random class subsets of digits (2 to 6 classes) not in ``avoid``."""
    rng = random.Random(seed)
    out: list[TaskSpec] = []
    seen = set(avoid)
    while len(out) < n:
        classes = tuple(sorted(rng.sample(range(10), rng.randint(2, 6))))
        if classes not in seen:
            seen.add(classes)
            out.append(few_shot(f"digits:classes={','.join(map(str, classes))}", test_fraction))
    return out


def metrics(gt: torch.Tensor, scores: torch.Tensor, pools: list[np.ndarray]) -> dict:
    """Weighted tau, top-1/3 hit over all models and averaged over the pools."""
    full = ranking_metrics(gt, scores)
    per_pool = [ranking_metrics(gt[p], scores[p]) for p in pools]
    return {"weighted_tau": full["weighted_tau"], "top1_hit": full["top1_hit"], "top3_hit": full["top3_hit"],
            "spearman": full["spearman"],
            "pool_weighted_tau": float(np.nanmean([m["weighted_tau"] for m in per_pool])),
            "pool_top1_hit": float(np.mean([m["top1_hit"] for m in per_pool])),
            "pool_top3_hit": float(np.mean([m["top3_hit"] for m in per_pool]))}


def timed(fn, repeats: int = 5) -> tuple[float, list[float]]:
    """Median milliseconds of ``repeats`` calls (after one warm-up)."""
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ts), [round(t, 2) for t in ts]


def write_big_zoo(hub: Path, out: Path, n_models: int) -> float:
    """A zoo of ``n_models`` rows: the hub's models tiled (ids made unique), per architecture."""
    t0 = time.perf_counter()
    zoo = open_zoo(hub)
    groups = zoo.select(order_by="model_id").by_arch()
    per_arch = -(-n_models // len(groups))
    w = ZooWriter(out, "retrieval-10k", {"name": "retrieval-10k", "tiled_from": zoo.name, "models": n_models})
    written = 0
    for arch_id, sel in groups.items():
        n = min(per_arch, n_models - written)
        arch = w.add_architecture(zoo.network_spec(arch_id))
        params = sel.stacked()
        reps = -(-n // len(sel))
        weights = {k: v.repeat(reps, *([1] * (v.dim() - 1)))[:n] for k, v in params.items()}
        tasks = sel.column("source_task")
        rows = [{"model_id": f"{arch_id}-{i:06d}", "run_id": f"{arch_id}-{i:06d}", "checkpoint": 0,
                 "status": "ok", "source_task": tasks[i % len(sel)]} for i in range(n)]
        w.write_part(arch, weights, rows)
        written += n
    w.finish(card="# retrieval-10k\n\nThe retrieval hub's models tiled, for latency only.\n")
    return time.perf_counter() - t0


def plot_taus(per_task: dict[str, dict[str, dict]], methods: list[str], path: Path) -> None:
    """Weighted tau of every method on every query task (one marker per task and method)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tasks = list(per_task)
    fig = Figure(figsize=(10.5, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    markers = "os^vD<>Px*"
    x = np.arange(len(tasks))
    for i, m in enumerate(methods):
        taus = [per_task[t][m]["weighted_tau"] for t in tasks]
        ax.plot(x + (i - len(methods) / 2) * 0.045, taus, markers[i % len(markers)], label=m, alpha=0.85)
    ax.axhline(0.8, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x, [t.split("classes=")[-1] for t in tasks], rotation=0)
    ax.set_xlabel("query task (digits classes, few-shot)")
    ax.set_ylabel("weighted Kendall tau vs linear-probe accuracy")
    ax.set_title("Ranking the hub's models for held-out tasks (dashed: the 0.80 moonshot)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="method")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small hub and 2 query tasks (a smoke run)")
    ap.add_argument("--cache", type=Path, default=CACHE, help="where the hub is built and reused")
    ap.add_argument("--latency-models", type=int, default=10_000, help="models of the latency zoo")
    ap.add_argument("--out", type=Path, default=None, help="result JSON (default: benchmarks/results/"
                    "bench_retrieval[_quick].json)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    load_start = round(os.getloadavg()[0], 2)
    quick = args.quick
    template = QUICK_TEMPLATE if quick else HUB_PRESET
    sources = SOURCE_TASKS[:4] if quick else SOURCE_TASKS
    queries_raw = QUERY_TASKS[:2] if quick else QUERY_TASKS
    test_fraction = TaskSpec.parse(queries_raw[0]).dataset.test_fraction
    queries = [TaskSpec.parse(q) for q in queries_raw]
    train_tasks = [few_shot(s, test_fraction) for s in sources]
    n_extra = 4 if quick else 24
    extras = extra_tasks(n_extra, {q.classes for q in queries} | {t.classes for t in train_tasks}, test_fraction)
    epochs = 20 if quick else RankerConfig().epochs

    # ------------------------------------------------------------------ the hub
    hub = args.cache / ("retrieval-hub-quick" if quick else "retrieval-hub")
    t0 = time.perf_counter()
    build = build_hub(hub, template, sources, quiet=True)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    emb = embed_zoo(hub, "behavior", n_probes=N_PROBES)
    embed_s = time.perf_counter() - t0
    zoo = open_zoo(hub)
    n_models = len(zoo)
    print(f"hub {hub}: {n_models} models, {len(zoo.manifest.architectures)} architectures, "
          f"{len(sources)} source tasks (built in {build_s:.1f}s, {build.trained} runs trained now; "
          f"behaviour embeddings d={emb.dim} in {embed_s:.1f}s)", flush=True)

    # ------------------------------------------------------------------ ground truth + scores
    gts: dict[str, torch.Tensor] = {}
    timings: dict[str, list[float]] = {}

    def gt_of(task: TaskSpec) -> torch.Tensor:
        key = str(task)
        if key not in gts:
            t = time.perf_counter()
            gts[key] = transfer_ground_truth(zoo, task).scores
            timings.setdefault("ground_truth_s", []).append(time.perf_counter() - t)
        return gts[key]

    scores: dict[str, dict[str, torch.Tensor]] = {}
    for q in queries:
        gt_of(q)
        per = scores.setdefault(str(q), {})
        for m in (*ESTIMATORS, "behavior"):
            t = time.perf_counter()
            per[m] = score_zoo(zoo, q, m).scores
            timings.setdefault(f"{m}_hub_query_s", []).append(time.perf_counter() - t)
        gen = torch.Generator().manual_seed(0)
        per["random"] = torch.rand(n_models, generator=gen, dtype=torch.float64)
    print(f"ground truth and baselines on {len(queries)} query tasks: "
          f"{time.perf_counter() - t_start:.0f}s so far", flush=True)

    # ------------------------------------------------------------------ rankers
    stored = read_embeddings(zoo, "behavior")
    features: dict[tuple, object] = {}

    def task_features(task: TaskSpec, cfg: RankerConfig):
        key = (str(task), cfg.estimators, cfg.k)
        if key not in features:
            features[key] = training_task(zoo, task, cfg, ground_truth=gt_of(task))
        return features[key]

    variants = {
        "ranker": (RankerConfig(epochs=epochs), train_tasks),
        "ranker+est": (RankerConfig(epochs=epochs, estimators=ESTIMATORS), train_tasks),
        "ranker+est+extra": (RankerConfig(epochs=epochs, estimators=ESTIMATORS), train_tasks + extras),
    }
    rankers = {}
    ranker_info = {}
    for name, (cfg, tasks) in variants.items():
        t = time.perf_counter()
        train = [task_features(task, cfg) for task in tasks]
        feats_s = time.perf_counter() - t
        t = time.perf_counter()
        r = fit_ranker(train, int(stored.config["n_outputs"]), cfg, stored.config)
        fit_s = time.perf_counter() - t
        rankers[name] = r
        ranker_info[name] = {"training_tasks": len(tasks), "estimators": list(cfg.estimators),
                             "epochs": cfg.epochs, "features_s": round(feats_s, 1),
                             "fit_s": round(fit_s, 1), "final_loss": r.info["final_loss"]}
        for q in queries:
            # As a search runs it: task embedding, estimator scores (if used), prediction.
            t = time.perf_counter()
            scores[str(q)][name] = score_zoo(zoo, q, "ranker", ranker=r).scores
            timings.setdefault(f"{name}_hub_query_s", []).append(time.perf_counter() - t)
        print(f"{name}: trained on {len(tasks)} tasks in {fit_s:.1f}s (+{feats_s:.1f}s features)", flush=True)
    ranker_dir = args.cache / "ranker-est"
    rankers["ranker+est"].save(ranker_dir)

    # ------------------------------------------------------------------ metrics
    rng = np.random.default_rng(0)
    methods = ["random", *ESTIMATORS, "behavior", *variants]
    per_task: dict[str, dict[str, dict]] = {}
    for q in queries:
        gt = gts[str(q)]
        ok = np.flatnonzero(torch.isfinite(gt).numpy())
        pools = [rng.choice(ok, POOL_SIZE, replace=False) for _ in range(N_POOLS)]
        per_task[str(q)] = {m: metrics(gt, scores[str(q)][m], pools) for m in methods}
        rand = [metrics(gt, torch.rand(n_models, generator=torch.Generator().manual_seed(s),
                                       dtype=torch.float64), pools) for s in range(1, 20)]
        per_task[str(q)]["random"] = {k: float(np.mean([r[k] for r in rand] + [per_task[str(q)]["random"][k]]))
                                      for k in rand[0]}
    summary = {m: {k: float(np.mean([per_task[q][m][k] for q in per_task]))
                   for k in next(iter(per_task.values()))[m]} for m in methods}
    for m in methods:
        key = f"{m}_hub_query_s"
        if key in timings:
            summary[m]["hub_query_ms"] = 1000 * float(np.median(timings[key]))

    # ------------------------------------------------------------------ latency over 10k models
    tmp = Path(tempfile.mkdtemp(prefix="bench-retrieval-"))
    try:
        big = tmp / "big"
        write_s = write_big_zoo(hub, big, args.latency_models)
        t = time.perf_counter()
        embed_zoo(big, "behavior", n_probes=N_PROBES, probe=stored.config["probe"])
        big_embed_s = time.perf_counter() - t
        q = queries[0]
        latency = {"models": args.latency_models, "write_s": round(write_s, 2),
                   "embed_s": round(big_embed_s, 2), "task": str(q)}
        data = load_task(q)
        big_stored = read_embeddings(big, "behavior")
        tvec = task_vector(big_stored, data)
        for threads in (1, None):
            with EmbeddingIndex(big_stored.table, column=big_stored.column, threads=threads) as index:
                ms, runs = timed(lambda index=index: index.nearest(tvec, 10))
                latency[f"behavior_index_ms_threads_{threads or 'default'}"] = round(ms, 2)
                if threads == 1:
                    # What a service with the index open does per query: embed the task, scan.
                    ms, _ = timed(lambda index=index: index.nearest(task_vector(big_stored, data), 10))
                    latency["behavior_query_warm_ms"] = round(ms, 2)
        latency["behavior_search_zoo_ms"], latency["behavior_search_zoo_runs"] = timed(
            lambda: search_zoo(big, q, "behavior", k=10))
        for m in ESTIMATORS:
            latency[f"{m}_search_zoo_ms"], _ = timed(lambda m=m: search_zoo(big, q, m, k=10), repeats=2)
        latency["ranker_search_zoo_ms"], _ = timed(
            lambda: search_zoo(big, q, "ranker", k=10, ranker=rankers["ranker"]), repeats=2)
        latency["ranker+est_search_zoo_ms"], _ = timed(
            lambda: search_zoo(big, q, "ranker", k=10, ranker=rankers["ranker+est"]), repeats=2)
        latency = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in latency.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # ------------------------------------------------------------------ targets, output
    best = max((m for m in methods if m != "random"), key=lambda m: summary[m]["weighted_tau"])
    logme_tau = summary["logme"]["weighted_tau"]
    targets = {
        "best_method": best,
        "best_beats_logme_tau": best != "logme" and summary[best]["weighted_tau"] > logme_tau,
        "moonshot_tau_0.80_and_top1_0.50": summary[best]["weighted_tau"] >= TARGETS["moonshot_tau"]
        and summary[best]["top1_hit"] >= TARGETS["moonshot_top1"],
        "moonshot_in_pools_of_10": any(summary[m]["pool_weighted_tau"] >= TARGETS["moonshot_tau"]
                                       and summary[m]["pool_top1_hit"] >= TARGETS["moonshot_top1"]
                                       for m in methods),
        "query_10k_warm_under_50ms": latency["behavior_query_warm_ms"] < TARGETS["latency_ms"],
        "query_10k_end_to_end_under_50ms": latency["behavior_search_zoo_ms"] < TARGETS["latency_ms"],
    }
    wall = time.perf_counter() - t_start
    result = {
        "benchmark": "bench_retrieval", "quick": quick,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "torch": torch.__version__, "torch_threads": 1,
                    "load_avg_1m": [load_start, round(os.getloadavg()[0], 2)]},
        "hub": {"path": str(hub), "template": template if isinstance(template, str) else template["name"],
                "models": n_models, "architectures": len(zoo.manifest.architectures),
                "source_tasks": list(build.source_tasks), "build_s": round(build_s, 1),
                "trained_now": build.trained, "embedding": emb.config, "embed_s": round(embed_s, 2)},
        "query_tasks": [str(q) for q in queries],
        "ranker_training_tasks": [str(t) for t in train_tasks],
        "extra_training_tasks": [str(t) for t in extras],
        "ground_truth": "linear-probe accuracy (retrieval.transfer_ground_truth), few-shot train split",
        "pools": {"size": POOL_SIZE, "per_task": N_POOLS},
        "rankers": ranker_info,
        "summary": summary, "per_task": per_task, "latency": latency,
        "targets": {**TARGETS, **targets}, "wall_s": round(wall, 1),
    }
    out = args.out or RESULTS / ("bench_retrieval_quick.json" if quick else "bench_retrieval.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    figure = out.with_suffix(".png")
    plot_taus(per_task, methods, figure)

    print(f"\nbench_retrieval: {n_models} hub models, {len(queries)} held-out query tasks "
          f"(few-shot, test_fraction={test_fraction}); mean over tasks")
    head = f"{'method':<18}{'w.tau':>7}{'top1':>6}{'top3':>6}{'pool10 tau':>11}{'top1':>6}{'top3':>6}{'ms/query':>10}"
    print(head)
    for m in methods:
        s = summary[m]
        ms = f"{s['hub_query_ms']:.0f}" if "hub_query_ms" in s else "-"
        print(f"{m:<18}{s['weighted_tau']:>7.3f}{s['top1_hit']:>6.2f}{s['top3_hit']:>6.2f}"
              f"{s['pool_weighted_tau']:>11.3f}{s['pool_top1_hit']:>6.2f}{s['pool_top3_hit']:>6.2f}{ms:>10}")
    print(f"\nlatency over {latency['models']:,} embedded models (median ms): behavior DuckDB scan "
          f"{latency['behavior_index_ms_threads_1']} (1 thread) / {latency['behavior_index_ms_threads_default']} "
          f"(default), task embedding + scan on an open index {latency['behavior_query_warm_ms']}, "
          f"search_zoo end to end {latency['behavior_search_zoo_ms']}; logme "
          f"{latency['logme_search_zoo_ms']}; ranker {latency['ranker_search_zoo_ms']}; ranker+est "
          f"{latency['ranker+est_search_zoo_ms']}")
    print(f"targets: {json.dumps(targets)}")
    print(f"wall time {wall:.0f}s; load average (1 min) at start/end {result['machine']['load_avg_1m']}")
    print(f"wrote {out} and {figure}")


if __name__ == "__main__":
    main()
