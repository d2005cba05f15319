"""What the benchmark scripts share: the environment record of a result file, and one run
trained alone (the per-model baseline the population trainer is compared with).

The scripts import it as a sibling module (``python benchmarks/bench_x.py`` puts this folder
first on ``sys.path``).
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parent


def package_version(package: str) -> str | None:
    """The installed version of ``package``, or ``None``."""
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def environment(threads: int, packages: tuple[str, ...] = ()) -> dict:
    """Python, torch, platform, cores, torch threads, the git commit and optional packages."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=False).stdout.strip() or None
    except OSError:
        commit = None
    return {"python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": threads,
            "git_commit": commit, **{p: package_version(p) for p in packages}}


def train_alone(model: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator, epochs: int,
                batch_size: int, x_train: Tensor, y_train: Tensor, x_test: Tensor,
                y_test: Tensor) -> dict[str, float]:
    """Train one classifier with cross-entropy in the data order drawn from ``gen``; then, in
    eval mode, what a zoo row records and the population trainer computes for every member:
    mean loss and accuracy on the training and the test split.

    Shapes:
        ``x_*``: ``[N, *input_shape]``; ``y_*``: ``[N]``.
    """
    n = x_train.shape[0]
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    metrics = {}
    with torch.no_grad():
        for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
            out = model(x)
            metrics[f"{split}_loss"] = float(F.cross_entropy(out, y))
            metrics[f"{split}_acc"] = float((out.argmax(1) == y).float().mean())
    return metrics
