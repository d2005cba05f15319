"""The ``gaussian`` baseline: an independent Gaussian per parameter entry (Zeng et al. 2025).

``fit`` records the mean and standard deviation of every parameter entry over the training
networks; a sample draws every entry independently from ``N(mean, std^2)``. It keeps no
training network, only two numbers per entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import torch
from torch import Tensor

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec
from weightspace.generators.base import Generator, check_training_set
from weightspace.generators.registry import register_generator


@register_generator("gaussian")
class GaussianGenerator(Generator):
    """Per-entry mean/std fit; samples are independent Gaussians per entry.

    Args:
        spec: the architecture.
        scale: multiplies every standard deviation (default ``1.0``).

    Shapes:
        ``fit({name: [N, *shape]})``; ``sample(n) -> {name: [n, *shape]}``.
    """

    def __init__(self, spec: NetworkSpec, scale: float = 1.0) -> None:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale >= 0:
            raise WeightzooError(f"gaussian: scale must be a number >= 0, got {scale!r}")
        super().__init__(spec, scale=float(scale))
        self.mean: dict[str, Tensor] = {}   # {name: [*shape]}
        self.std: dict[str, Tensor] = {}    # {name: [*shape]}

    def fit(self, params: Mapping[str, Tensor], table: pa.Table, *, seed: int = 0,
            progress: bool = False) -> None:
        check_training_set(params, self.spec, "gaussian")
        dtype = self.spec.torch_dtype
        for p in self.spec.params:
            x = params[p.name].detach().double()
            self.mean[p.name] = x.mean(0).to(dtype)
            self.std[p.name] = x.std(0, unbiased=False).to(dtype)

    def sample(self, n: int, *, seed: int = 0,
               condition: Mapping[str, float] | None = None) -> dict[str, Tensor]:
        if not self.mean:
            raise WeightzooError("gaussian: fit() or load a run directory before sample()")
        gen = torch.Generator().manual_seed(seed)
        out = {}
        for p in self.spec.params:  # spec order: the same draws on every load
            mean, std = self.mean[p.name], self.std[p.name] * self.hparams["scale"]
            noise = torch.randn((n, *mean.shape), generator=gen, dtype=mean.dtype)
            out[p.name] = mean + std * noise
        return out

    def state_tensors(self) -> dict[str, Tensor]:
        return {**{f"mean.{k}": v for k, v in self.mean.items()},
                **{f"std.{k}": v for k, v in self.std.items()}}

    def load_state(self, tensors: Mapping[str, Tensor], config: Mapping[str, Any]) -> None:
        self.mean = {p.name: tensors[f"mean.{p.name}"] for p in self.spec.params}
        self.std = {p.name: tensors[f"std.{p.name}"] for p in self.spec.params}
