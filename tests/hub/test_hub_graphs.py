"""A graph zoo (format v2: a ResNet with batch norm, running statistics stored as tensors) through
the Hub: push -> pull gives the same bytes, verifies clean, loads as the same modules, and a
partial pull by a condition holds exactly the selected models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from analyze_helpers import TINY_RESNET

from catalog import open_zoo, verify_zoo
from hub import pull_zoo, push_zoo

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")

GRAPH_SPEC = {**TINY_RESNET, "name": "hub-resnet", "grid": {"seed": [0, 1, 2]}}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for g in ("models/*.parquet", "weights/*/*.safetensors", "README.md") for p in sorted(root.glob(g))}


def test_graph_zoo_push_pull_round_trip(hub, zoo_factory, repo_id: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(zoo_factory(GRAPH_SPEC), src)
    assert json.loads((src / "zoo.json").read_text())["format_version"] == 2
    push_zoo(src, repo_id, progress=False)
    out = tmp_path / "pulled"
    pull_zoo(repo_id, out, progress=False)
    assert _files(out) == _files(src) and any(k.startswith("weights/") for k in _files(src))
    assert verify_zoo(out).ok
    a, b = open_zoo(src).select(), open_zoo(out).select()
    assert a.column("model_id") == b.column("model_id")
    x = torch.rand(4, 1, 8, 8)
    for ma, mb in zip(a.modules(), b.modules()):
        ma.eval(), mb.eval()
        assert torch.equal(ma(x), mb(x))  # batch-norm statistics came along

    part = tmp_path / "part"
    pull_zoo(repo_id, part, where="seed = 1", progress=False)
    sel = open_zoo(part).select()
    assert sel.column("seed") == [1] and verify_zoo(part).ok
    one = sel.stacked()
    full = open_zoo(src).select(where="seed = 1").stacked()
    assert all(torch.equal(one[k], full[k]) for k in full)
