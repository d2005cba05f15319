"""A format-v1 zoo, written file by file here as weightzoo wrote it before graph architectures
(format v2) existed, still opens, queries, loads, verifies and resumes unchanged."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import save_file

from catalog import open_zoo, read_manifest
from catalog.format import sha256_file, weights_sha256
from catalog.network import NetworkSpec

#: The build spec, and the ids and architecture JSON the pre-v2 code computed for it.
SPEC = {"name": "v1-tiny", "dataset": {"name": "digits"}, "architecture": {"name": "mlp", "hidden": [4]},
        "training": {"epochs": 1, "checkpoints": [0, 1]}, "grid": {"seed": [0, 1]}}
ARCH_ID = "mlp-3a251a0652"
RUN_IDS = ["f9a9e5bab97142a3", "f3b77a6822ceabea"]
_LAYER = {"kernel_size": [], "stride": 1, "padding": 0, "omega": 1.0, "pool": "none"}
ARCH_JSON = {
    "family": "mlp", "input_shape": [1, 8, 8],
    "layers": [{"kind": "linear", "in_features": 64, "out_features": 4, "weight": "layers.0.weight",
                "bias": "layers.0.bias", **_LAYER, "activation": "relu"},
               {"kind": "linear", "in_features": 4, "out_features": 10, "weight": "layers.1.weight",
                "bias": "layers.1.bias", **_LAYER, "activation": "identity"}],
    "dtype": "float32", "meta": {},
    "params": [{"name": "layers.0.weight", "shape": [4, 64], "dtype": "float32", "layer": 0, "role": "weight"},
               {"name": "layers.0.bias", "shape": [4], "dtype": "float32", "layer": 0, "role": "bias"},
               {"name": "layers.1.weight", "shape": [10, 4], "dtype": "float32", "layer": 1, "role": "weight"},
               {"name": "layers.1.bias", "shape": [10], "dtype": "float32", "layer": 1, "role": "bias"}]}
SHAPES = {"layers.0.weight": (4, 64), "layers.0.bias": (4,), "layers.1.weight": (10, 4), "layers.1.bias": (10,)}


def _write_v1_zoo(root: Path) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    weights = {k: torch.randn((4, *s), generator=g) for k, s in SHAPES.items()}
    shard = f"weights/{ARCH_ID}/shard-00000.safetensors"
    (root / shard).parent.mkdir(parents=True)
    save_file(weights, str(root / shard), metadata={"arch_id": ARCH_ID, "rows": "4"})
    rows = [(run, seed, c) for seed, run in enumerate(RUN_IDS) for c in (0, 1)]
    table = pa.table({
        "model_id": [f"{r}-{c:05d}" for r, _, c in rows], "run_id": [r for r, _, _ in rows],
        "checkpoint": pa.array([c for _, _, c in rows], pa.int64()), "arch_id": [ARCH_ID] * 4,
        "status": ["ok"] * 4, "n_params": pa.array([310] * 4, pa.int64()),
        "weights_shard": [shard] * 4, "weights_row": pa.array(range(4), pa.int64()),
        "sha256": [weights_sha256([weights[k][i] for k in SHAPES]) for i in range(4)],
        "seed": pa.array([s for _, s, _ in rows], pa.int64()),
        "test_acc": [0.1, 0.8, 0.1, 0.9]})
    part = "models/part-00000.parquet"
    (root / "models").mkdir()
    pq.write_table(table, root / part)
    manifest = {
        "name": "v1-tiny", "format_version": 1, "spec": copy.deepcopy(SPEC),
        "architectures": {ARCH_ID: ARCH_JSON}, "datasets": {},
        "counts": {"rows": 4, "runs": 2, "architectures": 1, "status_ok": 4},
        "files": [{"path": shard, "sha256": sha256_file(root / shard), "bytes": (root / shard).stat().st_size,
                   "rows": 4, "kind": "shard", "arch_id": ARCH_ID},
                  {"path": part, "sha256": sha256_file(root / part), "bytes": (root / part).stat().st_size,
                   "rows": 4, "kind": "part", "arch_id": ARCH_ID}],
        "complete": True, "source": {}, "created_by": "weightzoo"}
    (root / "zoo.json").write_text(json.dumps(manifest, indent=2))
    return weights


def test_v1_architecture_json_reads_back_with_its_id() -> None:
    spec = NetworkSpec.from_dict(ARCH_JSON)
    assert spec.is_chain and spec.arch_id == ARCH_ID
    assert spec.to_dict() == ARCH_JSON  # written back exactly as the v1 code wrote it


def test_v1_zoo_opens_queries_loads_and_verifies(tmp_path: Path) -> None:
    weights = _write_v1_zoo(tmp_path)
    zoo = open_zoo(tmp_path)
    assert zoo.manifest.format_version == 1
    sel = zoo.select(where="seed = 1 AND checkpoint = 1")
    assert sel.column("run_id") == [RUN_IDS[1]]
    state = sel.state_dicts()[0]
    for name in SHAPES:
        torch.testing.assert_close(state[name], weights[name][3])
    module = sel.modules()[0]
    assert module(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    assert zoo.verify().ok


def test_v1_zoo_resumes_without_retraining(tmp_path: Path) -> None:
    from zoo_builders.build import build_zoo

    _write_v1_zoo(tmp_path)
    before = json.loads((tmp_path / "zoo.json").read_text())
    plan = build_zoo(copy.deepcopy(SPEC), tmp_path, quiet=True)
    assert plan.skipped_runs == 2 and plan.populations == []  # every run was recognised as built
    manifest = read_manifest(tmp_path)
    assert manifest.format_version == 1 and manifest.counts["rows"] == 4
    assert manifest.architectures == before["architectures"]
    assert [f.path for f in manifest.files] == [f["path"] for f in before["files"]]


def test_a_v1_zoo_rebuilt_without_training_keeps_every_file_and_its_card(tmp_path: Path) -> None:
    """Before, a no-op build rewrote the v1 zoo's card with today's architecture table header."""
    from zoo_builders.build import build_zoo

    _write_v1_zoo(tmp_path)
    (tmp_path / "README.md").write_text("# v1-tiny\n\n| arch_id | architecture (neurons per layer, activation) |\n")
    stamp = 1_000_000_000_000_000_000  # an old mtime, so any rewrite shows
    for p in tmp_path.rglob("*"):
        os.utime(p, ns=(stamp, stamp))
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    plan = build_zoo(copy.deepcopy(SPEC), tmp_path, quiet=True)
    assert plan.populations == []
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(tmp_path.rglob("*")) if p.is_file()} == before


def test_a_v1_manifest_cannot_hold_a_graph_architecture(tmp_path: Path) -> None:
    from catalog.errors import ZooFormatError
    from zoo_builders.graph_architectures import ResNetConfig

    _write_v1_zoo(tmp_path)
    d = json.loads((tmp_path / "zoo.json").read_text())
    graph = ResNetConfig(width_multiplier=0.25).network_spec((1, 8, 8), 10)
    d["architectures"][graph.arch_id] = graph.to_dict()
    (tmp_path / "zoo.json").write_text(json.dumps(d))
    with pytest.raises(ZooFormatError, match="needs format_version 2"):
        read_manifest(tmp_path)
