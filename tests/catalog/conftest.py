"""Tiny zoos written with ZooWriter, shared by the catalog tests.

``zoo_dir``: one MLP architecture, 12 runs x 3 checkpoints = 36 rows in two parts, a few runs
diverged. ``multi_arch_dir``: two architectures (one row set each) and an extra column.
Tests that modify a zoo copy it first (``zoo_copy``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from catalog.network import LayerSpec, NetworkSpec
from catalog.writer import ZooWriter

ACTIVATIONS = ("relu", "tanh")


def mlp_spec(hidden: int = 8, n_in: int = 4, n_out: int = 3, activation: str = "relu") -> NetworkSpec:
    """A two-layer MLP ``n_in -> hidden -> n_out``."""
    return NetworkSpec(
        family="mlp", input_shape=(n_in,),
        layers=(LayerSpec("linear", n_in, hidden, "layers.0.weight", "layers.0.bias", activation=activation),
                LayerSpec("linear", hidden, n_out, "layers.1.weight", "layers.1.bias")))


def random_weights(spec: NetworkSpec, n: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {p.name: torch.randn((n, *p.shape), generator=g) for p in spec.params}


def write_zoo(root: Path, name: str, runs: range, checkpoints: tuple[int, ...] = (0, 1, 2),
              hidden: tuple[int, ...] = (8,), extra: dict | None = None, parts: int = 2,
              seed: int = 0) -> Path:
    """Write a zoo of ``len(runs) * len(checkpoints)`` rows per hidden width."""
    w = ZooWriter(root, name, {"name": name, "test": True})
    for hi, h in enumerate(hidden):
        spec = mlp_spec(hidden=h)
        arch = w.add_architecture(spec)
        run_list = list(runs)
        per_part = -(-len(run_list) // parts)
        for pi in range(parts):
            chunk = run_list[pi * per_part:(pi + 1) * per_part]
            if not chunk:
                continue
            rows = []
            for r in chunk:
                for c in checkpoints:
                    acc = round(0.1 + 0.8 * ((r * 7 + c * 3 + hi) % 11) / 10, 4)
                    rows.append({
                        "model_id": f"{name}-h{h}-r{r:03d}-c{c}", "run_id": f"{name}-h{h}-r{r:03d}",
                        "checkpoint": c, "status": "diverged" if r % 5 == 4 else "ok",
                        "lr": [0.001, 0.01, 0.1][r % 3], "activation": ACTIVATIONS[r % 2],
                        "seed": r, "test_acc": acc, "train_acc": min(1.0, acc + 0.05),
                        "test_loss": 1.0 - acc, **(extra or {})})
            weights = random_weights(spec, len(rows), seed * 1000 + hi * 100 + pi)
            w.write_part(arch, weights, rows)
    w.finish()
    return root


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_zoo(tmp_path_factory.mktemp("zoos") / "tiny", "tiny", range(12))


@pytest.fixture(scope="session")
def multi_arch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_zoo(tmp_path_factory.mktemp("zoos") / "wide", "wide", range(4), checkpoints=(0, 1),
                     hidden=(8, 6), extra={"width_note": "two widths"}, parts=1, seed=1)


@pytest.fixture
def zoo_copy(zoo_dir: Path, tmp_path: Path) -> Path:
    """A private copy of ``zoo_dir`` that a test may modify."""
    dst = tmp_path / "copy"
    shutil.copytree(zoo_dir, dst)
    return dst


@pytest.fixture(autouse=True)
def _private_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own catalog file and data dir, never the user's."""
    monkeypatch.setenv("WEIGHTZOO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WEIGHTZOO_CATALOG", raising=False)
    return tmp_path / "home"
