"""A tiny zoo of two architectures with the same parameter shapes (ReLU and tanh MLPs), like
the digits-mlp preset's: shared by the selection and dataset tests."""

from __future__ import annotations

from pathlib import Path

from catalog_helpers import mlp_spec, random_weights

from catalog.writer import ZooWriter


def write_activation_zoo(root: Path, runs: int = 8, checkpoints: tuple[int, ...] = (0, 1, 2)) -> Path:
    """``runs`` runs per activation x ``checkpoints``; run ids differ between activations."""
    w = ZooWriter(root, "acts", {"name": "acts", "test": True})
    for ai, act in enumerate(("relu", "tanh")):
        arch = w.add_architecture(mlp_spec(hidden=8, activation=act))
        rows = [{"model_id": f"{act}-r{r}-c{c}", "run_id": f"{act}-r{r}", "checkpoint": c,
                 "status": "ok", "activation": act, "test_acc": round(0.1 + 0.08 * ((r + c + ai) % 10), 3)}
                for r in range(runs) for c in checkpoints]
        w.write_part(arch, random_weights(mlp_spec(hidden=8), len(rows), seed=ai), rows)
    w.finish()
    return root
