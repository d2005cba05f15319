"""Symmetries of weight space: transformations of a network's parameters that leave the function
it computes unchanged, used as training augmentations and to test invariance/equivariance.

- **Permutations** of the hidden neurons (channels of a hidden convolution) of any layer: the
  layer's weight rows and bias entries are permuted, and the next layer's weight columns with
  them. Input and output neurons have a fixed meaning and are never permuted.
- **Sign flips** of a hidden neuron whose activation is odd (``tanh``, ``sin``, identity):
  ``act(-z) = -act(z)``, so negating its incoming weights and bias and its outgoing weights
  changes nothing. (``sin(omega * z)`` of a SIREN is odd as well.)
- **Positive scalings** of a hidden neuron whose activation is positively homogeneous
  (``relu``, ``leaky_relu``, identity): scale its incoming weights and bias by ``s > 0`` and its
  outgoing weights by ``1 / s``.

All functions take and return a batched parameter dict ``{name: Tensor[B, *shape]}``; the
transformation applied may differ per network of the batch. They return new tensors and never
modify their input.

The functions here address the layers of a chain. Graph architectures (residual streams tied
across ``add``, attention heads) have theirs in :mod:`weightspace.graph_symmetry`, which
:class:`RandomNeuronSymmetry` uses for them.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from catalog.errors import WeightzooError
from catalog.network import ODD_ACTIVATIONS, NetworkSpec
from weightspace.representations.flat import _check_params

#: Activations with ``act(s * z) = s * act(z)`` for every ``s > 0``.
POSITIVE_HOMOGENEOUS_ACTIVATIONS = frozenset({"identity", "relu", "leaky_relu"})


def hidden_layers(spec: NetworkSpec) -> list[int]:
    """Indices of the layers whose output neurons are hidden (every layer but the last)."""
    spec.require_chain("neuron-permutation symmetries")
    return list(range(len(spec.layers) - 1))


def _check_hidden(spec: NetworkSpec, layer: int, what: str) -> None:
    if layer not in hidden_layers(spec):
        raise WeightzooError(
            f"cannot {what} the neurons of layer {layer}: only hidden layers "
            f"{hidden_layers(spec)} have neurons without a fixed meaning")


def _per_network(idx: Tensor, batch: int, n: int, name: str) -> Tensor:
    """Broadcast a ``[n]`` or ``[B, n]`` per-neuron tensor to ``[B, n]``."""
    if idx.dim() == 1:
        idx = idx.unsqueeze(0).expand(batch, -1)
    if tuple(idx.shape) != (batch, n):
        raise WeightzooError(f"{name} has shape {tuple(idx.shape)}, expected [{n}] or [{batch}, {n}]")
    return idx


def _gather(t: Tensor, dim: int, idx: Tensor) -> Tensor:
    """``out[b, ..., k, ...] = t[b, ..., idx[b, k], ...]`` along ``dim`` (``idx`` is ``[B, n]``)."""
    shape = [1] * t.dim()
    shape[0], shape[dim] = idx.shape
    return t.gather(dim, idx.view(shape).expand(t.shape))


def _scale(t: Tensor, dim: int, factor: Tensor) -> Tensor:
    """Multiply ``t`` by a per-network, per-neuron ``factor [B, n]`` along ``dim``."""
    shape = [1] * t.dim()
    shape[0], shape[dim] = factor.shape
    return t * factor.view(shape).to(t.dtype)


def permute_neurons(
    spec: NetworkSpec, params: Mapping[str, Tensor], perms: Mapping[int, Tensor],
) -> dict[str, Tensor]:
    """Permute hidden neurons: new neuron ``k`` of layer ``li`` is old neuron ``perms[li][k]``.

    Args:
        spec: the architecture.
        params: ``{name: Tensor[B, *shape]}``.
        perms: ``{layer index: LongTensor[n] or [B, n]}`` for some hidden layers (one
            permutation for all networks, or one per network).

    Shapes:
        returns ``{name: Tensor[B, *shape]}``.
    """
    batch = _check_params(spec, params)
    out = dict(params)
    for li, perm in perms.items():
        _check_hidden(spec, li, "permute")
        layer, nxt = spec.layers[li], spec.layers[li + 1]
        idx = _per_network(perm.long(), batch, layer.out_features, f"permutation of layer {li}")
        out[layer.weight] = _gather(out[layer.weight], 1, idx)
        if layer.bias is not None:
            out[layer.bias] = _gather(out[layer.bias], 1, idx)
        out[nxt.weight] = _gather(out[nxt.weight], 2, idx)
    return out


def flip_signs(
    spec: NetworkSpec, params: Mapping[str, Tensor], signs: Mapping[int, Tensor],
) -> dict[str, Tensor]:
    """Negate hidden neurons of odd activation (incoming weights, bias and outgoing weights).

    Args:
        spec: the architecture.
        params: ``{name: Tensor[B, *shape]}``.
        signs: ``{layer index: Tensor[n] or [B, n]}`` of ``+1``/``-1`` for hidden layers whose
            activation is odd.

    Shapes:
        returns ``{name: Tensor[B, *shape]}``.
    """
    batch = _check_params(spec, params)
    out = dict(params)
    for li, sign in signs.items():
        _check_hidden(spec, li, "flip the signs of")
        layer, nxt = spec.layers[li], spec.layers[li + 1]
        if layer.activation not in ODD_ACTIVATIONS:
            raise WeightzooError(
                f"layer {li} uses {layer.activation!r}, which is not odd; sign flips only preserve "
                f"the function for {sorted(ODD_ACTIVATIONS)}")
        s = _per_network(sign, batch, layer.out_features, f"signs of layer {li}")
        out[layer.weight] = _scale(out[layer.weight], 1, s)
        if layer.bias is not None:
            out[layer.bias] = _scale(out[layer.bias], 1, s)
        out[nxt.weight] = _scale(out[nxt.weight], 2, s)
    return out


def scale_neurons(
    spec: NetworkSpec, params: Mapping[str, Tensor], scales: Mapping[int, Tensor],
) -> dict[str, Tensor]:
    """Scale hidden neurons of positively homogeneous activation by ``s > 0`` (outgoing by ``1/s``).

    Args:
        spec: the architecture.
        params: ``{name: Tensor[B, *shape]}``.
        scales: ``{layer index: Tensor[n] or [B, n]}`` of positive factors.

    Shapes:
        returns ``{name: Tensor[B, *shape]}``.
    """
    batch = _check_params(spec, params)
    out = dict(params)
    for li, scale in scales.items():
        _check_hidden(spec, li, "scale")
        layer, nxt = spec.layers[li], spec.layers[li + 1]
        if layer.activation not in POSITIVE_HOMOGENEOUS_ACTIVATIONS:
            raise WeightzooError(
                f"layer {li} uses {layer.activation!r}; positive scaling only preserves the "
                f"function for {sorted(POSITIVE_HOMOGENEOUS_ACTIVATIONS)}")
        s = _per_network(scale, batch, layer.out_features, f"scales of layer {li}")
        if bool((s <= 0).any()):
            raise WeightzooError(f"scales of layer {li} must be positive")
        out[layer.weight] = _scale(out[layer.weight], 1, s)
        if layer.bias is not None:
            out[layer.bias] = _scale(out[layer.bias], 1, s)
        out[nxt.weight] = _scale(out[nxt.weight], 2, 1.0 / s)
    return out


def random_permutations(
    spec: NetworkSpec, batch_size: int, generator: torch.Generator | None = None,
) -> dict[int, Tensor]:
    """An independent uniform permutation of every hidden layer, per network.

    Shapes:
        returns ``{layer index: LongTensor[batch_size, n]}``.
    """
    return {
        li: torch.rand(batch_size, spec.layers[li].out_features, generator=generator).argsort(dim=1)
        for li in hidden_layers(spec)
    }


def random_signs(
    spec: NetworkSpec, batch_size: int, generator: torch.Generator | None = None,
) -> dict[int, Tensor]:
    """Independent random ``+1``/``-1`` signs for every hidden neuron of odd activation.

    Shapes:
        returns ``{layer index: Tensor[batch_size, n]}`` (only odd-activation hidden layers).
    """
    return {
        li: torch.randint(0, 2, (batch_size, spec.layers[li].out_features), generator=generator)
        .float().mul(2).sub(1)
        for li in hidden_layers(spec) if spec.layers[li].activation in ODD_ACTIVATIONS
    }


class RandomNeuronSymmetry:
    """Augmentation: apply a random function-preserving symmetry to each network of a batch.

    Args:
        spec: the architecture. A graph architecture gets random permutations of its neuron
            groups and attention heads (:class:`weightspace.graph_symmetry.RandomGraphSymmetry`;
            no sign flips).
        permute: permute hidden neurons (default ``True``).
        flip_signs: also flip signs where the activation is odd (default ``True``; chains only).
        seed: seed of the transform's own random generator (default ``None``: torch's global RNG).

    Shapes:
        ``{name: Tensor[B, *shape]}`` -> ``{name: Tensor[B, *shape]}`` (new tensors).
    """

    def __init__(self, spec: NetworkSpec, permute: bool = True, flip_signs: bool = True,
                 seed: int | None = None) -> None:
        self.spec = spec
        self.permute = permute
        self.flip = flip_signs
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)
        self.graph = None
        if not spec.is_chain:
            from weightspace.graph_symmetry import RandomGraphSymmetry  # it imports this module

            self.graph = RandomGraphSymmetry(spec, seed)

    def __call__(self, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        if self.graph is not None:
            return self.graph(params) if self.permute else dict(params)
        batch = _check_params(self.spec, params)
        out = dict(params)
        if self.flip:
            out = flip_signs(self.spec, out, {
                li: s.to(params[self.spec.layers[li].weight].device)
                for li, s in random_signs(self.spec, batch, self.generator).items()})
        if self.permute:
            out = permute_neurons(self.spec, out, {
                li: p.to(params[self.spec.layers[li].weight].device)
                for li, p in random_permutations(self.spec, batch, self.generator).items()})
        return out

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(family={self.spec.family!r}, permute={self.permute}, "
                f"flip_signs={self.flip})")
