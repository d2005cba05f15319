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
    if not spec.is_chain:
        return _init_graph(spec, scheme, generator)
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


def _init_graph(spec: NetworkSpec, scheme: str, g: torch.Generator) -> dict[str, Tensor]:
    """Initial parameters of a graph spec, node by node in order.

    Weights of ``linear``, convolutions and attention projections follow ``scheme`` as for
    chains (``default``: PyTorch's module defaults: ``U(+-1/sqrt(fan_in))`` for linear and conv
    weights and biases; attention in-projection ``xavier_uniform`` with zero biases, as
    ``nn.MultiheadAttention``); other schemes give zero biases. Norms start at weight 1, bias 0,
    running mean 0 and variance 1; ``embedding`` ``N(0, 1)`` and ``pos_embedding``
    ``N(0, 0.02^2)``, whatever the scheme.
    """
    if scheme == "siren":
        raise WeightzooError("init 'siren' is for siren networks; graph architectures use another scheme")
    out: dict[str, Tensor] = {}

    def unif(bound: float, shp: tuple[int, ...]) -> Tensor:
        return (torch.rand(shp, generator=g) * 2 - 1) * bound

    def weight(shape: tuple[int, ...], attention_in: bool) -> Tensor:
        fan_in, fan_out = _fans(shape)
        if scheme == "default":
            if attention_in:  # nn.MultiheadAttention: xavier_uniform over the whole [3E, E]
                return unif(math.sqrt(6 / (fan_in + fan_out)), shape)
            return unif(1 / math.sqrt(fan_in), shape)
        if scheme == "kaiming_uniform":
            return unif(math.sqrt(6 / fan_in), shape)
        if scheme == "kaiming_normal":
            return torch.randn(shape, generator=g) * math.sqrt(2 / fan_in)
        if scheme == "xavier_uniform":
            return unif(math.sqrt(6 / (fan_in + fan_out)), shape)
        if scheme == "xavier_normal":
            return torch.randn(shape, generator=g) * math.sqrt(2 / (fan_in + fan_out))
        if scheme == "normal":
            return torch.randn(shape, generator=g) * 0.05
        return unif(0.1, shape)  # uniform

    for node in spec.nodes:
        fan_in = None
        for suffix, shape, role in node.param_shapes():
            name = f"{node.name}.{suffix}"
            if node.KIND in ("batchnorm", "layernorm"):
                value = torch.ones(shape) if suffix in ("weight", "running_var") else torch.zeros(shape)
            elif node.KIND == "embedding":
                value = torch.randn(shape, generator=g)
            elif node.KIND == "pos_embedding":
                value = torch.randn(shape, generator=g) * 0.02
            elif role == "weight":
                value = weight(shape, suffix == "in_proj_weight")
                fan_in = _fans(shape)[0]
            elif scheme == "default" and node.KIND in ("linear", "conv1d", "conv2d"):
                value = unif(1 / math.sqrt(fan_in), shape)
            else:  # attention biases, and every bias under a non-default scheme
                value = torch.zeros(shape)
            out[name] = value
    return out
