"""Specs and random parameter batches for the weightspace tests (small, hand-built).

A plain module (not a conftest) so that tests import it by a name no other test folder uses.
"""

from __future__ import annotations

import torch

from catalog.network import LayerSpec, NetworkSpec


def mlp_spec(widths: tuple[int, ...] = (5, 7, 6, 3), activation: str = "relu") -> NetworkSpec:
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        last = i == len(widths) - 2
        layers.append(
            LayerSpec(
                "linear",
                a,
                b,
                f"layers.{i}.weight",
                f"layers.{i}.bias",
                activation="identity" if last else activation,
            )
        )
    return NetworkSpec("mlp", (widths[0],), tuple(layers))


def siren_spec(hidden: int = 16, depth: int = 2) -> NetworkSpec:
    widths = [2] + [hidden] * depth + [1]
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        last = i == len(widths) - 2
        layers.append(
            LayerSpec(
                "linear",
                a,
                b,
                f"layers.{i}.weight",
                f"layers.{i}.bias",
                activation="identity" if last else "sin",
                omega=1.0 if last else 30.0,
            )
        )
    return NetworkSpec("siren", (2,), tuple(layers), meta={"image_shape": [8, 8]})


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
