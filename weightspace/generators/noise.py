"""The ``noise`` baseline: a random training network plus Gaussian noise (Zeng et al. 2025).

A sample is training network ``t`` (drawn uniformly) with every parameter tensor perturbed by
``N(0, (sigma * s_p)^2)`` noise, where ``s_p`` is the standard deviation of tensor ``p`` over all
its entries in all training networks (one number per tensor, so noise is on the scale of the
tensor's weights). ``sigma = 0`` returns exact copies of training networks: the memorizing
extreme that every learned generator is compared against.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import torch
from torch import Tensor

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec
from weightspace.generators.base import Generator, check_training_set
from weightspace.generators.registry import register_generator


@register_generator("noise")
class NoiseGenerator(Generator):
    """Training weights + per-tensor Gaussian noise.

    Args:
        spec: the architecture.
        sigma: noise scale relative to each tensor's standard deviation over the training set
            (default ``0.1``; ``0`` copies training networks exactly).

    Shapes:
        ``fit({name: [N, *shape]})``; ``sample(n) -> {name: [n, *shape]}``.
    """

    def __init__(self, spec: NetworkSpec, sigma: float = 0.1) -> None:
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma < 0:
            raise WeightzooError(f"noise: sigma must be a number >= 0, got {sigma!r}")
        super().__init__(spec, sigma=float(sigma))
        self.train: dict[str, Tensor] = {}   # {name: [N, *shape]} the training networks
        self.scale: dict[str, Tensor] = {}   # {name: []} std of each tensor over the training set

    def fit(self, params: Mapping[str, Tensor], table: pa.Table, *, seed: int = 0,
            progress: bool = False) -> None:
        check_training_set(params, self.spec, "noise")
        self.train = {p.name: params[p.name].detach().to(self.spec.torch_dtype).clone() for p in self.spec.params}
        self.scale = {k: v.double().std(unbiased=False).to(v.dtype) for k, v in self.train.items()}

    def sample(self, n: int, *, seed: int = 0,
               condition: Mapping[str, float] | None = None) -> dict[str, Tensor]:
        if not self.train:
            raise WeightzooError("noise: fit() or load a run directory before sample()")
        gen = torch.Generator().manual_seed(seed)
        n_train = next(iter(self.train.values())).shape[0]
        source = torch.randint(n_train, (n,), generator=gen)  # [n] the training network of each sample
        sigma = self.hparams["sigma"]
        out = {}
        for p in self.spec.params:  # spec order: the noise draws are the same on every load
            base = self.train[p.name][source]
            if sigma == 0:
                out[p.name] = base.clone()
            else:
                noise = torch.randn(base.shape, generator=gen, dtype=base.dtype)
                out[p.name] = base + sigma * self.scale[p.name] * noise
        return out

    def state_tensors(self) -> dict[str, Tensor]:
        return {**{f"train.{k}": v for k, v in self.train.items()},
                **{f"scale.{k}": v for k, v in self.scale.items()}}

    def load_state(self, tensors: Mapping[str, Tensor], config: Mapping[str, Any]) -> None:
        self.train = {p.name: tensors[f"train.{p.name}"] for p in self.spec.params}
        self.scale = {p.name: tensors[f"scale.{p.name}"] for p in self.spec.params}
