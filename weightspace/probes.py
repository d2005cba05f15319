"""Probe features: what every neuron of a network computes on a few (learned) inputs.

Kofinas et al. (2024, "Graph Neural Networks for Learning Equivariant Representations of Neural
Networks") add *probe features* to the nodes of the weight graph: ``K`` probe inputs are passed
through each input network and the value of every neuron on each probe becomes a ``K``-vector
feature of that neuron. The probes are parameters of the metanetwork, learned with it.

Neuron values are equivariant: permuting a network's hidden neurons permutes their values the
same way (and flipping the sign of a neuron of an odd activation flips its values), so a
metanetwork that is invariant on weights stays invariant with probe features - the tests check
it. They let a metanetwork read the *function* a network computes, not only its parameters; for
INRs the output neuron's values are the image at the probe coordinates.

A metanetwork's ``forward`` receives *normalized* weights (see :mod:`weightspace.normalization`);
:meth:`ProbeFeatures.forward` undoes the normalization that :meth:`Metanetwork.attach_normalizer`
gave it before running the networks.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec, population_forward
from weightspace.normalization import ParamNormalizer

#: Families whose inputs are coordinates in ``[-1, 1]`` (probes start uniform there).
COORDINATE_FAMILIES = ("siren",)


class ProbeFeatures(nn.Module):
    """``K`` learned probe inputs and the neuron values they produce.

    Args:
        spec: the architecture of the networks to probe.
        n_probes: number of probe inputs ``K`` (>= 1).
        normalizer: the weight normalization to undo before running the networks (default:
            none; set later with :meth:`attach`).

    Shapes:
        ``forward``: normalized ``{name: Tensor[B, *shape]}`` -> one tensor per neuron layer,
        inputs first: ``[B, width_l, K]`` for ``l = 0 .. n_layers`` (input neurons: the probe
        itself, a channel averaged over positions for images).
    """

    def __init__(self, spec: NetworkSpec, n_probes: int,
                 normalizer: ParamNormalizer | None = None) -> None:
        super().__init__()
        if int(n_probes) < 1:
            raise WeightzooError(f"n_probes must be >= 1, got {n_probes}")
        self.spec = spec
        self.n_probes = int(n_probes)
        shape = (self.n_probes, *spec.input_shape)
        if spec.family in COORDINATE_FAMILIES:
            init = torch.rand(shape) * 2 - 1
        else:
            init = torch.randn(shape)
        self.inputs = nn.Parameter(init)
        self.normalizer = normalizer

    def attach(self, normalizer: ParamNormalizer | None) -> None:
        self.normalizer = normalizer

    def forward(self, params: Mapping[str, Tensor]) -> list[Tensor]:
        raw = self.normalizer.denormalize(params) if self.normalizer is not None else dict(params)
        raw = {p.name: raw[p.name].float() for p in self.spec.params}
        acts: list[Tensor] = []
        population_forward(self.spec, raw, self.inputs, activations=acts)
        x = self.inputs.reshape(self.n_probes, self.spec.layer_widths[0], -1).mean(-1)  # [K, n_in]
        batch = raw[self.spec.layers[0].weight].shape[0]
        first = x.T.unsqueeze(0).expand(batch, -1, -1)
        return [first] + [a.transpose(1, 2) for a in acts]  # [B, width, K] per neuron layer


class ProbeBiasInput(ProbeFeatures):
    """Probe features for models with per-neuron (bias) features (``dws``, ``nfn``): each
    layer's neuron values go through a learned linear map and are added to its bias features.

    Args:
        spec, n_probes: see :class:`ProbeFeatures`.
        channels: feature channels of the biases.

    Shapes:
        ``add_to``: normalized ``{name: Tensor[B, *shape]}`` and biases ``[B, n_out, channels]``
        per layer -> the same biases plus the probe term.
    """

    def __init__(self, spec: NetworkSpec, n_probes: int, channels: int) -> None:
        super().__init__(spec, n_probes)
        self.proj = nn.ModuleList(nn.Linear(self.n_probes, channels, bias=False) for _ in spec.layers)

    def add_to(self, params: Mapping[str, Tensor], biases: list[Tensor]) -> list[Tensor]:
        return [b + proj(a) for b, proj, a in zip(biases, self.proj, self(params)[1:])]


def check_probes(probes: int) -> None:
    """Raise a user error unless ``probes`` (a metanetwork hyperparameter) is >= 0."""
    if not isinstance(probes, int) or probes < 0:
        raise WeightzooError(f"hyperparameter probes must be >= 0 (an integer number of probe inputs), got {probes!r}")

