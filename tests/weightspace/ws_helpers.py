"""Specs and random parameter batches for the weightspace tests (small, hand-built).

A plain module (not a conftest) so that tests import it by a name no other test folder uses.
"""

from __future__ import annotations

import torch

from catalog.network import LayerSpec, NetworkSpec
from zoo_builders.architectures import MLPConfig, SirenConfig


def mlp_spec(widths: tuple[int, ...] = (5, 7, 6, 3), activation: str = "relu") -> NetworkSpec:
    return MLPConfig(hidden=tuple(widths[1:-1]), activation=activation).network_spec(
        (widths[0],), widths[-1])


def siren_spec(hidden: int = 16, depth: int = 2) -> NetworkSpec:
    return SirenConfig(hidden=(hidden,) * depth).network_spec((1, 8, 8), 1)


def cnn_spec(dim: int = 2, activation: str = "relu") -> NetworkSpec:
    kind = f"conv{dim}d"
    k = (3,) * dim
    layers = (
        LayerSpec(
            kind, 1, 4, "layers.0.weight", "layers.0.bias", kernel_size=k, activation=activation
        ),
        LayerSpec(
            kind,
            4,
            5,
            "layers.1.weight",
            "layers.1.bias",
            kernel_size=k,
            stride=2,
            padding=1,
            activation=activation,
            pool="global_avg",
        ),
        LayerSpec("linear", 5, 3, "layers.2.weight", "layers.2.bias"),
    )
    input_shape = (1, 8, 8) if dim == 2 else (1, 20)
    return NetworkSpec("cnn", input_shape, layers)


def random_params(spec: NetworkSpec, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for p in spec.params:
        fan_in = max(1, p.numel // p.shape[0]) if p.role == "weight" else 1
        out[p.name] = torch.randn(batch, *p.shape, generator=g) / fan_in**0.5
    return out
