"""Loading 10,000 models as one stacked batch: the zoo vs one ``torch.save`` file per model.

Both sides hold the same 10,000 MLPs (64 -> 64 -> 14, 5,070 parameters each):

- **zoo**: written with :class:`catalog.ZooWriter` (4 shards of 2,500 rows); loaded with
  ``open_zoo(root).select().stacked()`` (rows read as slices of the memory-mapped safetensors
  shards), with the per-row sha256 check on (the default) and off;
- **per-file**: the layout public model zoos ship, one state-dict file per model written with
  ``torch.save``; loaded with ``torch.load(path, weights_only=True)`` per file, then stacked.

Both are timed end to end (opening the zoo and running the query are included on the zoo
side), each repeated and the median kept; files were just written, so both read from a warm
page cache. The two batches are checked to be identical.

Run::

    python benchmarks/bench_load.py          # ~1-2 minutes; writes benchmarks/results/bench_load.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from catalog import ZooWriter, open_zoo
from catalog.network import LayerSpec, NetworkSpec

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_SPEEDUP = 20.0


def make_spec() -> NetworkSpec:
    return NetworkSpec("mlp", (64,), (
        LayerSpec("linear", 64, 64, "layers.0.weight", "layers.0.bias", activation="relu"),
        LayerSpec("linear", 64, 14, "layers.1.weight", "layers.1.bias")))


def write_both(root: Path, n: int, per_shard: int, seed: int = 0) -> tuple[Path, list[Path], dict]:
    """Write the zoo and the per-model files; returns their paths and the writing seconds."""
    spec = make_spec()
    g = torch.Generator().manual_seed(seed)
    weights = {p.name: torch.randn((n, *p.shape), generator=g) * 0.1 for p in spec.params}
    t0 = time.perf_counter()
    w = ZooWriter(root / "zoo", "bench-load", {"name": "bench-load", "models": n})
    arch = w.add_architecture(spec)
    for start in range(0, n, per_shard):
        stop = min(n, start + per_shard)
        rows = [{"model_id": f"m{i:05d}", "run_id": f"r{i:05d}", "checkpoint": 0, "status": "ok",
                 "seed": i} for i in range(start, stop)]
        w.write_part(arch, {k: v[start:stop] for k, v in weights.items()}, rows)
    w.finish(card="# bench-load\n")
    zoo_write = time.perf_counter() - t0

    files_dir = root / "files"
    files_dir.mkdir()
    t0 = time.perf_counter()
    paths = []
    for i in range(n):
        p = files_dir / f"m{i:05d}.pt"
        # clone: saving a view would save the whole stacked storage
        torch.save({k: v[i].clone() for k, v in weights.items()}, p)
        paths.append(p)
    files_write = time.perf_counter() - t0
    return root / "zoo", paths, {"zoo_write_s": round(zoo_write, 2), "files_write_s": round(files_write, 2)}


def load_files(paths: list[Path]) -> dict[str, torch.Tensor]:
    sds = [torch.load(p, weights_only=True) for p in paths]
    return {k: torch.stack([sd[k] for sd in sds]) for k in sds[0]}


def load_zoo(root: Path, verify: bool) -> dict[str, torch.Tensor]:
    zoo = open_zoo(root)
    batch = zoo.select().stacked(verify=verify)
    zoo.close()
    return batch


def timed(fn, repeats: int) -> tuple[float, list[float]]:
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), [round(t, 4) for t in ts]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=10_000)
    ap.add_argument("--per-shard", type=int, default=2_500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS / "bench_load.json")
    args = ap.parse_args()
    load_start = round(os.getloadavg()[0], 2)  # other work on the machine skews timings

    tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
    try:
        zoo_root, paths, write_times = write_both(tmp, args.models, args.per_shard)
        a, b = load_zoo(zoo_root, True), load_files(paths)
        identical = all(torch.equal(a[k], b[k]) for k in a)
        if not identical:
            raise SystemExit("the zoo and the per-model files gave different weights")
        zoo_s, zoo_runs = timed(lambda: load_zoo(zoo_root, True), args.repeats)
        zoo_nv_s, zoo_nv_runs = timed(lambda: load_zoo(zoo_root, False), args.repeats)
        files_s, files_runs = timed(lambda: load_files(paths), args.repeats)
        zoo_bytes = sum(p.stat().st_size for p in zoo_root.rglob("*") if p.is_file())
        files_bytes = sum(p.stat().st_size for p in paths)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    n_params = make_spec().n_params
    result = {
        "benchmark": "bench_load", "models": args.models, "params_per_model": n_params,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "torch": torch.__version__,
                    "load_avg_1m": [load_start, round(os.getloadavg()[0], 2)]},
        "zoo_stacked_verify_s": round(zoo_s, 4), "zoo_stacked_verify_runs": zoo_runs,
        "zoo_stacked_no_verify_s": round(zoo_nv_s, 4), "zoo_stacked_no_verify_runs": zoo_nv_runs,
        "per_file_torch_load_s": round(files_s, 4), "per_file_torch_load_runs": files_runs,
        "speedup_verify": round(files_s / zoo_s, 1),
        "speedup_no_verify": round(files_s / zoo_nv_s, 1),
        "target_speedup": TARGET_SPEEDUP,
        "target_met": files_s / zoo_s >= TARGET_SPEEDUP,
        "identical_batches": identical,
        "bytes_on_disk": {"zoo": zoo_bytes, "per_file": files_bytes},
        **write_times,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"bench_load: {args.models:,} models x {n_params:,} params, median of {args.repeats}")
    print(f"{'load into a stacked batch':<44}{'seconds':>9}{'vs files':>10}")
    print(f"{'per-model files, torch.load(weights_only)':<44}{files_s:>9.3f}{1.0:>9.1f}x")
    print(f"{'zoo, stacked() with sha256 check':<44}{zoo_s:>9.3f}{files_s / zoo_s:>9.1f}x")
    print(f"{'zoo, stacked(verify=False)':<44}{zoo_nv_s:>9.3f}{files_s / zoo_nv_s:>9.1f}x")
    print(f"target >= {TARGET_SPEEDUP:.0f}x (with checks): {'met' if result['target_met'] else 'NOT met'}; "
          f"batches identical: {identical}")
    print(f"load average (1 min) at start/end: {result['machine']['load_avg_1m']} on {os.cpu_count()} cpus")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
