"""The ``average`` baseline: the mean of ``k`` random training networks (Zeng et al. 2025).

Each sample averages ``min(k, N)`` distinct training networks drawn uniformly (no alignment of
hidden neurons, as in the paper: averaging unaligned networks is part of what the baseline
measures).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import torch
from torch import Tensor

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec
from weightspace.generators.base import Generator, check_training_set
from weightspace.generators.registry import register_generator


@register_generator("average")
class AverageGenerator(Generator):
    """Mean of ``k`` distinct random training networks per sample.

    Args:
        spec: the architecture.
        k: networks averaged per sample (default ``16``; ``min(k, N)`` with ``N`` training
            networks; ``k >= N`` warns: every sample is then the same mean).

    Shapes:
        ``fit({name: [N, *shape]})``; ``sample(n) -> {name: [n, *shape]}``.
    """

    def __init__(self, spec: NetworkSpec, k: int = 16) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise WeightzooError(f"average: k must be an integer >= 1, got {k!r}")
        super().__init__(spec, k=k)
        self.train: dict[str, Tensor] = {}   # {name: [N, *shape]}

    def fit(self, params: Mapping[str, Tensor], table: pa.Table, *, seed: int = 0,
            progress: bool = False) -> None:
        n = check_training_set(params, self.spec, "average")
        if self.hparams["k"] >= n:
            k = max(1, n // 2)
            warnings.warn(f"average: k={self.hparams['k']} >= the {n} training networks, so every sample is the "
                          f"mean of all of them and all samples are identical; lower k (hparams={{'k': {k}}}, "
                          f"--hparam k={k})", stacklevel=2)
        self.train = {p.name: params[p.name].detach().to(self.spec.torch_dtype).clone() for p in self.spec.params}

    def sample(self, n: int, *, seed: int = 0,
               condition: Mapping[str, float] | None = None) -> dict[str, Tensor]:
        if not self.train:
            raise WeightzooError("average: fit() or load a run directory before sample()")
        gen = torch.Generator().manual_seed(seed)
        n_train = next(iter(self.train.values())).shape[0]
        k = min(self.hparams["k"], n_train)
        members = torch.stack([torch.randperm(n_train, generator=gen)[:k] for _ in range(n)]) \
            if n else torch.empty(0, k, dtype=torch.long)  # [n, k]
        # Sum in float64 so the mean does not depend on the order the members were drawn in.
        return {p.name: self.train[p.name][members].double().mean(1).to(self.spec.torch_dtype)
                for p in self.spec.params}

    def state_tensors(self) -> dict[str, Tensor]:
        return {f"train.{k}": v for k, v in self.train.items()}

    def load_state(self, tensors: Mapping[str, Tensor], config: Mapping[str, Any]) -> None:
        self.train = {p.name: tensors[f"train.{p.name}"] for p in self.spec.params}
