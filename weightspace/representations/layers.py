"""The per-layer representation: one weight and one bias tensor per layer.

This is the form the equivariant layers (:mod:`weightspace.models.dws`,
:mod:`weightspace.models.nfn`) consume. Layers without a bias get a zero bias here, and the
inverse drops it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec
from weightspace.representations.flat import _check_params


@dataclass(frozen=True)
class LayerTensors:
    """A batch of networks as per-layer tensors.

    Args:
        weights: per layer ``Tensor[B, n_out, n_in, *kernel]``.
        biases: per layer ``Tensor[B, n_out]`` (zeros for a layer without a bias).
    """

    weights: tuple[Tensor, ...]
    biases: tuple[Tensor, ...]

    @property
    def batch_size(self) -> int:
        return int(self.weights[0].shape[0])

    def __len__(self) -> int:
        return len(self.weights)


def params_to_layers(spec: NetworkSpec, params: Mapping[str, Tensor]) -> LayerTensors:
    """Group a parameter dict by layer.

    Args:
        spec: the networks' architecture.
        params: ``{name: Tensor[B, *shape]}``.

    Shapes:
        returns weights ``[B, n_out, n_in, *kernel]`` and biases ``[B, n_out]`` per layer.
    """
    spec.require_chain("the per-layer representation")
    batch = _check_params(spec, params)
    weights, biases = [], []
    for layer in spec.layers:
        w = params[layer.weight]
        weights.append(w)
        if layer.bias is None:
            biases.append(torch.zeros(batch, layer.out_features, dtype=w.dtype, device=w.device))
        else:
            biases.append(params[layer.bias])
    return LayerTensors(tuple(weights), tuple(biases))


def layers_to_params(spec: NetworkSpec, layers: LayerTensors) -> dict[str, Tensor]:
    """The inverse of :func:`params_to_layers` (biases of bias-free layers are dropped).

    Shapes:
        returns ``{name: Tensor[B, *shape]}``.
    """
    if len(layers) != len(spec.layers):
        raise WeightzooError(
            f"got {len(layers)} layers of tensors for a NetworkSpec with {len(spec.layers)} layers")
    out: dict[str, Tensor] = {}
    for layer, w, b in zip(spec.layers, layers.weights, layers.biases):
        if tuple(w.shape[1:]) != layer.weight_shape:
            raise WeightzooError(
                f"weight of layer {layer.weight!r} has shape {tuple(w.shape)}, expected "
                f"[B, {', '.join(map(str, layer.weight_shape))}]")
        out[layer.weight] = w
        if layer.bias is not None:
            out[layer.bias] = b
    return out
