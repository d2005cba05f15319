"""benchmarks/bench_generate.py: its target logic and table on hand-made results, and a --quick
run of the baselines and mip on tiny zoos (the full benchmark takes ~20 minutes)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "bench_generate.py"


@pytest.fixture(scope="module")
def bench():
    # The script imports its sibling bench_common, as `python benchmarks/bench_generate.py` would.
    if str(SCRIPT.parent) not in sys.path:
        sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("bench_generate", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _result(mip_acc: float, mip_iou: float) -> dict:
    noise = {f"noise sigma={s}": {"acc_mean": a, "acc_max": a, "max_iou_mean": i, "min_l2_mean": 1.0,
                                  "seconds": 0.0, "method": "noise"}
             for s, a, i in ((0.01, 0.90, 0.95), (0.1, 0.80, 0.75), (0.3, 0.50, 0.55))}
    return {"z": {"n_train": 20, "train": {"acc_mean": 0.85, "acc_max": 0.95, "top30_acc_mean": 0.93,
                                           "max_iou_mean": 0.7},
                  "mip_condition": {"lr": 0.01},
                  "methods": {"mip": {"acc_mean": mip_acc, "acc_max": mip_acc, "max_iou_mean": mip_iou,
                                      "min_l2_mean": 2.0, "seconds": 1.5, "method": "mip"},
                              "pdiff": {"skipped": "not registered"}, **noise}}}


def test_targets_interpolate_the_noise_curve(bench):
    # At IoU 0.85 the noise curve (0.75, 0.80) - (0.95, 0.90) is at 0.80 + 0.10 * 0.5 = 0.85.
    t = bench.targets(_result(0.86, 0.85))
    assert t["z/mip/above_noise_curve"]["met"]
    assert t["z/mip/above_noise_curve"]["noise_curve_acc_at_that_iou"] == pytest.approx(0.85)
    assert not bench.targets(_result(0.84, 0.85))["z/mip/above_noise_curve"]["met"]
    # more novel than every noise point (IoU 0.4 < 0.55): compared with sigma=0.3's 0.50
    assert bench.targets(_result(0.51, 0.4))["z/mip/above_noise_curve"]["met"]
    # top 30% is 0.93: 0.92 is within 1 point, 0.9199 is not
    assert bench.targets(_result(0.92, 0.5))["z/mip/within_1_point_of_top30"]["met"]
    assert not bench.targets(_result(0.9199, 0.5))["z/mip/within_1_point_of_top30"]["met"]
    assert "z/pdiff/above_noise_curve" not in t


def test_table_rows(bench):
    md = bench.table(_result(0.86, 0.85))
    lines = md.splitlines()
    assert len(lines) == 2 + 1 + 5  # header, training row, mip, pdiff (skipped), three noise rows
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert "| z | `mip` (lr=0.01) | 86.0% | 86.0% | 0.850 | 2.00 | 1.5 |" in md
    assert "| z | training networks (20; top 30%: 93.0%) | 85.0% | 95.0% | 0.700 | — | — |" in md


@pytest.mark.slow
def test_quick_run(bench, tmp_path):
    result = bench.main(["--quick", "--quiet", "--methods", "mip,noise,average,gaussian",
                         "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")])
    on_disk = json.loads((tmp_path / "out" / "bench_generate_quick.json").read_text())
    assert on_disk["table_markdown"] == result["table_markdown"]
    assert (tmp_path / "out" / "bench_generate_quick.png").stat().st_size > 10_000
    assert set(on_disk["zoos"]) == {"mlp", "cnn", "resnet-bn"}  # a graph zoo with batch norm too
    for zoo in on_disk["zoos"].values():
        assert set(zoo["methods"]) == {"mip", "average", "gaussian"} | {
            f"noise sigma={s:g}" for s in bench.DEFAULT_SIGMAS}
        for m in zoo["methods"].values():
            assert m["n"] == 10 and 0.0 <= m["acc_mean"] <= 1.0 and 0.0 <= m["max_iou_mean"] <= 1.0
        held = zoo["mip_heldout"]["held_out_grid_value"]
        assert held["lr"] not in held["trained_on_lr"]
    # noise with the smallest sigma is the closest to a copy
    noise = [on_disk["zoos"]["mlp"]["methods"][f"noise sigma={s:g}"]["max_iou_mean"] for s in bench.DEFAULT_SIGMAS]
    assert noise[0] == max(noise)
