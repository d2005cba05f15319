"""Build specs of the tiny zoos the `analyze_zoo` / `zoo analyze` tests share (built once per
session through ``zoo_factory``; a test that modifies one copies it first)."""

from __future__ import annotations

import shutil
from pathlib import Path

#: 2 widths x 2 train fractions x 2 seeds = 8 runs, checkpoints 0 and 2: every configuration
#: has one seed pair; half the runs train on a subsample.
TINY_PHASE = {
    "name": "tiny-phase",
    "dataset": {"name": "digits", "test_fraction": 0.25},
    "architecture": {"name": "mlp", "hidden": [8], "activation": "relu"},
    "training": {"epochs": 2, "batch_size": 64, "optimizer": "adam", "lr": 0.01, "checkpoints": [0, 2]},
    "grid": {"hidden": [[4], [8]], "train_fraction": [0.5, 1.0], "seed": [0, 1]},
}

#: ResNet-8s with batch norm (graph architectures): hessian and cka read them.
TINY_RESNET = {
    "name": "tiny-resnet",
    "dataset": {"name": "digits", "test_fraction": 0.25},
    "architecture": {"name": "resnet", "depth": 8, "width_multiplier": 0.25},
    "training": {"epochs": 1, "batch_size": 64, "optimizer": "adam", "lr": 0.01, "checkpoints": [1]},
    "grid": {"seed": [0, 1]},
}

#: Small ViTs (layer norm, no batch norm): connectivity reads them too.
TINY_VIT = {
    "name": "tiny-vit",
    "dataset": {"name": "digits", "test_fraction": 0.25},
    "architecture": {"name": "transformer", "patch_size": 2, "dim": 8, "depth": 1},
    "training": {"epochs": 1, "batch_size": 64, "optimizer": "adam", "lr": 0.01, "checkpoints": [1]},
    "grid": {"seed": [0, 1]},
}

#: One seed per configuration: no seed pairs.
ONE_SEED = {
    "name": "one-seed",
    "dataset": {"name": "digits", "test_fraction": 0.25},
    "architecture": {"name": "mlp", "hidden": [4], "activation": "relu"},
    "training": {"epochs": 1, "batch_size": 64, "checkpoints": [1]},
    "grid": {"lr": [0.001, 0.01], "seed": [0]},
}

#: Three seeds of one configuration: a row's seed partners change with the selection.
THREE_SEEDS = {
    "name": "three-seeds",
    "dataset": {"name": "digits", "test_fraction": 0.25},
    "architecture": {"name": "mlp", "hidden": [4], "activation": "relu"},
    "training": {"epochs": 1, "batch_size": 64, "lr": 0.01, "checkpoints": [1]},
    "grid": {"seed": [0, 1, 2]},
}

#: SIRENs fitting images: not classifiers.
TINY_INR = {
    "name": "tiny-inr",
    "dataset": {"name": "digits"},
    "architecture": {"name": "siren", "hidden": [8]},
    "task": {"name": "inr", "images": 2},
    "training": {"epochs": 2, "checkpoints": [2]},
}

#: Cheap settings for analyze_zoo in tests.
FAST = {"batches": 2, "batch_size": 32, "hessian_iters": 30, "trace_samples": 10, "cka_batches": 2,
        "bezier_epochs": 1, "linear_points": 5}


def copy_zoo(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst

#: A heterogeneous (``families:``) spec: one family with a grid lr x seed (two seed pairs), the same
#: architecture again with its own weight decay (a third pair), and one with a random lr per run (no
#: seed pairs: its runs differ in lr, not only in seed).
TINY_FAMILIES = {
    "name": "tiny-families",
    "dataset": {"name": "digits", "test_fraction": 0.25},
    "training": {"epochs": 1, "batch_size": 64, "optimizer": "adam", "checkpoints": [1]},
    "families": [
        {"architecture": {"name": "mlp", "hidden": [4], "activation": "relu"},
         "grid": {"lr": [0.001, 0.01], "seed": [0, 1]}},
        {"architecture": {"name": "mlp", "hidden": [4], "activation": "relu"},
         "training": {"lr": 0.01, "weight_decay": 0.001}, "grid": {"seed": [0, 1]}},
        {"architecture": {"name": "mlp", "hidden": [6], "activation": "relu"},
         "random": {"samples": 2, "sampler_seed": 0, "lr": {"loguniform": [0.001, 0.03]}, "seed": {"choice": [0, 1]}}},
    ],
}
