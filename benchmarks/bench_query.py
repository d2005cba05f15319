"""Query speed over a zoo of 1,000,000 metadata rows.

Writes a synthetic zoo with the project's own :class:`catalog.ZooWriter` (a tiny 4 -> 1 linear
model per row, so the metadata dominates), then times typical queries:

- ``filter_order_limit``: ``WHERE test_acc > 0.9 AND activation = 'relu' AND checkpoint = 4
  ORDER BY test_acc DESC LIMIT 10`` (through ``zoo.select``);
- ``group_by``: per (activation, lr) counts, mean and max accuracy of ok rows (``zoo.sql``);
- ``by_id``: one model's row by ``model_id`` (``zoo.select``), and the same plus loading its
  weights;

each on an opened zoo (the engine made once: rows copied into DuckDB and compacted), and the
same queries through the persistent local catalog (``LocalCatalog``). The one-off costs
(writing the zoo, opening the engine, indexing into the catalog) are reported beside them, and
the cold path of ``zoo query``, which makes an engine for one query (``compact=False``: the
Parquet parts are read in place): ``cold_query_ms`` and ``cold_filter_order_limit_ms`` (open +
engine + query in this process; target < 200 ms), and ``zoo_query_process_s``, the whole
``zoo query`` command in a fresh process (interpreter start and imports included).

Run::

    python benchmarks/bench_query.py            # ~1-2 minutes; writes benchmarks/results/bench_query.json
    python benchmarks/bench_query.py --rows 100000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from catalog import LocalCatalog, QueryEngine, ZooWriter, open_zoo
from catalog.network import LayerSpec, NetworkSpec

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_MS = 100.0
COLD_TARGET_MS = 200.0
CHECKPOINTS = 5


def write_zoo(root: Path, n_rows: int, n_parts: int, seed: int = 0) -> float:
    """Write the synthetic zoo; returns the seconds it took."""
    spec = NetworkSpec("mlp", (4,), (LayerSpec("linear", 4, 1, "layers.0.weight", "layers.0.bias"),))
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    w = ZooWriter(root, "bench-query", {"name": "bench-query", "rows": n_rows})
    arch = w.add_architecture(spec)
    per_part = -(-n_rows // n_parts)
    acts = np.array(["relu", "tanh", "gelu"])
    lrs = np.array([1e-3, 3e-3, 1e-2, 3e-2, 1e-1])
    for start in range(0, n_rows, per_part):
        n = min(per_part, n_rows - start)
        i = np.arange(start, start + n)
        run = i // CHECKPOINTS
        test_acc = rng.random(n)
        cols = {
            "model_id": [f"m{k:07d}" for k in i], "run_id": [f"r{k:07d}" for k in run],
            "checkpoint": (i % CHECKPOINTS).tolist(),
            "status": np.where(rng.random(n) < 0.97, "ok", "diverged").tolist(),
            "lr": lrs[run % len(lrs)].tolist(), "weight_decay": rng.choice([0.0, 1e-4, 1e-3], n).tolist(),
            "activation": acts[run % len(acts)].tolist(), "seed": (run % 1000).tolist(),
            "optimizer": np.where(run % 2 == 0, "adam", "sgd").tolist(),
            "test_acc": test_acc.tolist(), "train_acc": np.minimum(1, test_acc + 0.05).tolist(),
            "test_loss": (1 - test_acc).tolist(), "train_loss": (0.95 - test_acc).tolist(),
        }
        keys = list(cols)
        rows = [dict(zip(keys, vals)) for vals in zip(*cols.values())]
        weights = {"layers.0.weight": torch.randn(n, 1, 4), "layers.0.bias": torch.randn(n, 1)}
        w.write_part(arch, weights, rows)
    w.finish(card="# bench-query\n")
    return time.perf_counter() - t0


def timed(fn, repeats: int) -> dict:
    """Median / p90 / min milliseconds of ``repeats`` calls (after one warm-up call)."""
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000)
    ts.sort()
    return {"median_ms": round(statistics.median(ts), 2), "p90_ms": round(ts[int(0.9 * (len(ts) - 1))], 2),
            "min_ms": round(ts[0], 2), "repeats": repeats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--parts", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--zoo-dir", type=Path, default=None,
                    help="where to write the zoo (default: a temp dir, removed afterwards); an "
                         "existing zoo of the same size there is reused")
    ap.add_argument("--out", type=Path, default=RESULTS / "bench_query.json")
    args = ap.parse_args()
    load_start = round(os.getloadavg()[0], 2)  # other work on the machine skews timings

    tmp = Path(tempfile.mkdtemp(prefix="bench-query-"))
    root = args.zoo_dir or tmp / "zoo"
    try:
        if (root / "zoo.json").is_file() and len(open_zoo(root)) == args.rows:
            write_s = None
        else:
            if root.exists():
                shutil.rmtree(root)
            write_s = write_zoo(root, args.rows, args.parts)

        t0 = time.perf_counter()
        zoo = open_zoo(root)
        _ = zoo.engine  # rows copied into DuckDB once
        open_s = time.perf_counter() - t0
        mid = f"m{args.rows // 2 + 1:07d}"
        queries = {
            "filter_order_limit": lambda z: z.select(
                where="test_acc > 0.9 AND activation = 'relu' AND checkpoint = 4",
                order_by="test_acc DESC", limit=10, columns=["model_id", "lr", "test_acc"]),
            "group_by": lambda z: z.sql(
                "SELECT activation, lr, count(*) AS n, avg(test_acc) AS mean_acc, max(test_acc) AS "
                "best FROM models WHERE status = 'ok' GROUP BY ALL ORDER BY ALL"),
            "by_id": lambda z: z.select(where=f"model_id = '{mid}'"),
            "by_id_with_weights": lambda z: z.select(where=f"model_id = '{mid}'").stacked(),
        }
        checks = {k: len(q(zoo)) if k != "by_id_with_weights" else 1 for k, q in queries.items()}
        zoo_times = {k: timed(lambda q=q: q(zoo), args.repeats) for k, q in queries.items()}

        cat = LocalCatalog(tmp / "catalog.duckdb")
        t0 = time.perf_counter()
        cat.add(root)
        index_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        engine = cat.engine()
        cat_open_s = time.perf_counter() - t0
        cat_queries = {
            "filter_order_limit": lambda: engine.select(
                where="test_acc > 0.9 AND activation = 'relu' AND checkpoint = 4",
                order_by="test_acc DESC", limit=10, columns=["zoo", "model_id", "lr", "test_acc"]),
            "group_by": lambda: engine.sql(
                "SELECT activation, lr, count(*) AS n, avg(test_acc) AS mean_acc, max(test_acc) AS "
                "best FROM models WHERE status = 'ok' GROUP BY ALL ORDER BY ALL"),
            "by_id": lambda: engine.select(where=f"model_id = '{mid}'"),
            "by_id_with_weights": lambda: engine.select(where=f"model_id = '{mid}'").stacked(),
        }
        cat_times = {k: timed(q, args.repeats) for k, q in cat_queries.items()}
        engine.close()

        def cold() -> None:  # what one `zoo query ZOO "SQL"` does: open, copy rows, query
            e = QueryEngine.over_zoos([open_zoo(root)], compact=False)
            e.execute("SELECT model_id, test_acc FROM models WHERE test_acc > 0.9 ORDER BY test_acc DESC LIMIT 10")
            e.close()

        cold_times = timed(cold, max(3, args.repeats // 5))

        def cold_fol() -> None:  # the same, with the filter_order_limit query
            e = QueryEngine.over_zoos([open_zoo(root)], compact=False)
            queries["filter_order_limit"](e)
            e.close()

        cold_fol_times = timed(cold_fol, max(5, args.repeats // 3))
        where = "test_acc > 0.9 AND activation = 'relu' AND checkpoint = 4"
        cmd = [sys.executable, "-m", "zoo_cli.main", "query", str(root), "--where", where,
               "--order-by", "test_acc DESC", "--limit", "10", "--columns",
               "model_id,lr,test_acc", "--format", "csv"]
        process_s = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            process_s.append(time.perf_counter() - t0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the catalog, and the zoo unless --zoo-dir

    result = {
        "benchmark": "bench_query", "rows": args.rows, "parts": args.parts,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "load_avg_1m": [load_start, round(os.getloadavg()[0], 2)]},
        "target_median_ms": TARGET_MS,
        "write_zoo_s": None if write_s is None else round(write_s, 2),
        "open_engine_s": round(open_s, 3),
        "zoo": zoo_times,
        "catalog_index_s": round(index_s, 3), "catalog_open_s": round(cat_open_s, 3),
        "catalog": cat_times,
        "cold_query_ms": cold_times,
        "cold_filter_order_limit_ms": cold_fol_times,
        "cold_target_ms": COLD_TARGET_MS,
        "cold_under_target": cold_fol_times["median_ms"] < COLD_TARGET_MS,
        "zoo_query_process_s": {"median_s": round(statistics.median(process_s), 2),
                                "min_s": round(min(process_s), 2), "repeats": len(process_s)},
        "result_rows": checks,
        "all_under_target": all(v["median_ms"] < TARGET_MS for d in (zoo_times, cat_times)
                                for k, v in d.items()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"bench_query: {args.rows:,} rows in {args.parts} parts"
          + (f" (written in {write_s:.1f} s)" if write_s else ""))
    print(f"open zoo + copy rows into DuckDB: {open_s * 1000:.0f} ms; catalog add: {index_s * 1000:.0f} ms, "
          f"catalog open: {cat_open_s * 1000:.0f} ms")
    print(f"{'query':<22}{'zoo median':>12}{'p90':>9}{'catalog median':>16}{'p90':>9}")
    for k in zoo_times:
        z, c = zoo_times[k], cat_times[k]
        print(f"{k:<22}{z['median_ms']:>10.1f}ms{z['p90_ms']:>7.1f}ms{c['median_ms']:>14.1f}ms{c['p90_ms']:>7.1f}ms")
    print(f"cold one-shot query (open + engine in place + query): median {cold_times['median_ms']:.0f} ms; "
          f"filter_order_limit: median {cold_fol_times['median_ms']:.0f} ms (target < {COLD_TARGET_MS:.0f} ms "
          f"-> {'met' if result['cold_under_target'] else 'NOT met'})")
    print(f"`zoo query` in a fresh process (interpreter and imports included): median "
          f"{result['zoo_query_process_s']['median_s']:.2f} s")
    print(f"target: median < {TARGET_MS:.0f} ms each -> {'met' if result['all_under_target'] else 'NOT met'}")
    print(f"load average (1 min) at start/end: {result['machine']['load_avg_1m']} on {os.cpu_count()} cpus")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
