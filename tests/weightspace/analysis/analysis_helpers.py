"""Small populations, data and exact references for the analysis tests (hand-built, seeded).

A plain module (not a conftest) so that tests import it by a name no other test folder uses.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import hessian

from catalog.network import LayerSpec, NetworkSpec, population_forward
from weightspace.representations import flat_to_params, params_to_flat
from zoo_builders.architectures import MLPConfig
from zoo_builders.datasets import load_dataset


def mlp_spec(widths: tuple[int, ...] = (5, 7, 6, 3), activation: str = "relu") -> NetworkSpec:
    return MLPConfig(hidden=tuple(widths[1:-1]), activation=activation).network_spec(
        (widths[0],), widths[-1])


def cnn_spec(activation: str = "relu") -> NetworkSpec:
    k = (3, 3)
    layers = (
        LayerSpec("conv2d", 1, 4, "layers.0.weight", "layers.0.bias", kernel_size=k,
                  padding=1, activation=activation),
        LayerSpec("conv2d", 4, 5, "layers.1.weight", "layers.1.bias", kernel_size=k, stride=2,
                  padding=1, activation=activation, pool="global_avg"),
        LayerSpec("linear", 5, 3, "layers.2.weight", "layers.2.bias"),
    )
    return NetworkSpec("cnn", (1, 8, 8), layers)


def random_params(spec: NetworkSpec, n: int, seed: int = 0, scale: float = 1.0) -> dict[str, Tensor]:
    """``n`` networks with He-like random weights (times ``scale``) and small random biases."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for p in spec.params:
        fan_in = p.numel // p.shape[0] if p.role == "weight" else 10
        out[p.name] = scale * torch.randn(n, *p.shape, generator=g) / fan_in ** 0.5
    return out


@lru_cache(maxsize=1)
def digits() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    d = load_dataset("digits")
    return d.x_train, d.y_train, d.x_test, d.y_test


def train(spec: NetworkSpec, params: dict[str, Tensor], x: Tensor, y: Tensor, steps: int,
          lr: float = 0.01) -> dict[str, Tensor]:
    """Full-batch Adam on every member at once (a few steps: a quick, reproducible 'trained'
    population)."""
    params = {k: v.clone().requires_grad_() for k, v in params.items()}
    opt = torch.optim.Adam(params.values(), lr=lr)
    for _ in range(steps):
        out = population_forward(spec, params, x)
        loss = F.cross_entropy(out.flatten(0, 1), y.repeat(out.shape[0]), reduction="sum")
        opt.zero_grad()
        (loss / x.shape[0]).backward()
        opt.step()
    return {k: v.detach() for k, v in params.items()}


@lru_cache(maxsize=4)
def trained_digits_mlp(hidden: int = 12, n: int = 4, steps: int = 150,
                       seed: int = 0) -> tuple[NetworkSpec, dict[str, Tensor]]:
    spec = MLPConfig(hidden=(hidden,)).network_spec((1, 8, 8), 10)
    x, y, _, _ = digits()
    return spec, train(spec, random_params(spec, n, seed), x[:512], y[:512], steps)


def exact_hessian(spec: NetworkSpec, params: dict[str, Tensor], i: int, x: Tensor,
                  y: Tensor) -> Tensor:
    """Member ``i``'s Hessian of the mean cross-entropy, ``[D, D]`` in float64, from
    ``torch.func.hessian``."""
    w = params_to_flat(spec, {k: v[i:i + 1].double() for k, v in params.items()})[0]

    def loss(flat: Tensor) -> Tensor:
        out = population_forward(spec, flat_to_params(spec, flat[None]), x.double())
        return F.cross_entropy(out[0], y)

    return hessian(loss)(w)


@lru_cache(maxsize=8)
def trained_exact_hessian(i: int) -> Tensor:
    """The exact Hessian of member ``i`` of :func:`trained_digits_mlp` on the first 256 test
    digits (cached: several tests compare against it)."""
    spec, params = trained_digits_mlp()
    _, _, x, y = digits()
    return exact_hessian(spec, params, i, x[:256], y[:256])
