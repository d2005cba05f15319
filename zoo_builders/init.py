"""Initialization schemes, drawn from one generator per run so that a run's initial weights
depend only on its own seed (never on the population it is trained in)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec

INIT_SCHEMES = ("default", "kaiming_uniform", "kaiming_normal", "xavier_uniform", "xavier_normal",
                "normal", "uniform", "siren")


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def init_params(spec: NetworkSpec, scheme: str, generator: torch.Generator) -> dict[str, Tensor]:
    """Draw one network's initial parameters.

    Schemes: ``default`` is PyTorch's ``nn.Linear``/``nn.ConvNd`` default (weights and biases
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``); ``kaiming_*`` / ``xavier_*`` use the ReLU gain / unit gain
    with zero biases; ``normal`` is ``N(0, 0.05^2)`` and ``uniform`` ``U(-0.1, 0.1)`` with zero biases;
    ``siren`` is documented on :class:`zoo_builders.architectures.SirenConfig`.

    Shapes:
        returns ``{name: Tensor[*shape]}`` in the spec's parameter order.
    """
    if scheme not in INIT_SCHEMES:
        raise WeightzooError(f"unknown init scheme {scheme!r}; valid schemes: {', '.join(INIT_SCHEMES)}")
    out: dict[str, Tensor] = {}
    g = generator
    for i, layer in enumerate(spec.layers):
        shape = layer.weight_shape
        fan_in, fan_out = _fans(shape)
        def unif(bound: float, shp: tuple[int, ...]) -> Tensor:
            return (torch.rand(shp, generator=g) * 2 - 1) * bound
        if scheme == "default":
            w = unif(1 / math.sqrt(fan_in), shape)
            b = unif(1 / math.sqrt(fan_in), (layer.out_features,))
        elif scheme == "siren":
            bound = 1 / fan_in if i == 0 else math.sqrt(6 / fan_in) / max(spec.layers[i - 1].omega, 1.0)
            w = unif(bound, shape)
            b = unif(1 / math.sqrt(fan_in), (layer.out_features,))
        else:
            if scheme == "kaiming_uniform":
                w = unif(math.sqrt(6 / fan_in), shape)
            elif scheme == "kaiming_normal":
                w = torch.randn(shape, generator=g) * math.sqrt(2 / fan_in)
            elif scheme == "xavier_uniform":
                w = unif(math.sqrt(6 / (fan_in + fan_out)), shape)
            elif scheme == "xavier_normal":
                w = torch.randn(shape, generator=g) * math.sqrt(2 / (fan_in + fan_out))
            elif scheme == "normal":
                w = torch.randn(shape, generator=g) * 0.05
            else:  # uniform
                w = unif(0.1, shape)
            b = torch.zeros(layer.out_features)
        out[layer.weight] = w
        if layer.bias is not None:
            out[layer.bias] = b
    return out
