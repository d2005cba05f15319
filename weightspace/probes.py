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

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec, population_forward
from weightspace.memory import check_bytes
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
        # The input shape comes from zoo.json: sized before torch allocates the probes (float32)
        # and the values they produce in one network (each batched network adds as much again).
        check_bytes(4 * self.n_probes * (math.prod(spec.input_shape) + spec.activation_numel),
                    f"probes={self.n_probes}: {self.n_probes} probe inputs of shape {list(spec.input_shape)} "
                    f"(architecture {spec.arch_id}) and the values they produce in one network",
                    "use fewer probes (probes=0: none), or check the architecture's input_shape in the zoo's zoo.json")
        if spec.family in COORDINATE_FAMILIES:
            init = torch.rand(shape) * 2 - 1
        else:
            init = torch.randn(shape)
        self.inputs = nn.Parameter(init)
        self.normalizer = normalizer

    def attach(self, normalizer: ParamNormalizer | None) -> None:
        self.normalizer = normalizer

    def forward(self, params: Mapping[str, Tensor]) -> list[Tensor]:
        return self._chain_values(self._raw(params, self.spec), self.spec)

    def node_values(self, params: Mapping[str, Tensor], spec: NetworkSpec | None = None) -> Tensor:
        """The probe values of every neuron of the parameter graph of ``spec`` (default: the
        probes' own), any architecture with the probes' input shape, in graph order
        (:func:`param_graph_probe_values`; a chain's neuron layers in order, as :meth:`forward`).

        Shapes:
            normalized ``{name: Tensor[B, *shape]}`` -> ``[B, N, K]``.
        """
        spec = spec or self.spec
        if tuple(spec.input_shape) != tuple(self.spec.input_shape):
            raise WeightzooError(
                f"probe inputs have shape {list(self.spec.input_shape)}; {spec.family} architecture "
                f"{spec.arch_id} reads {list(spec.input_shape)}: probe features need one input shape")
        raw = self._raw(params, spec)
        if spec.is_chain:
            return torch.cat(self._chain_values(raw, spec), dim=1)
        return param_graph_probe_values(spec, raw, self.inputs)

    def _raw(self, params: Mapping[str, Tensor], spec: NetworkSpec) -> dict[str, Tensor]:
        raw = self.normalizer.denormalize(params) if self.normalizer is not None else dict(params)
        return {p.name: raw[p.name].float() for p in spec.params}

    def _chain_values(self, raw: Mapping[str, Tensor], spec: NetworkSpec) -> list[Tensor]:
        acts: list[Tensor] = []
        population_forward(spec, raw, self.inputs, activations=acts)
        x = self.inputs.reshape(self.n_probes, spec.layer_widths[0], -1).mean(-1)  # [K, n_in]
        batch = raw[spec.layers[0].weight].shape[0]
        first = x.T.unsqueeze(0).expand(batch, -1, -1)
        return [first] + [a.transpose(1, 2) for a in acts]  # [B, width, K] per neuron layer


def param_graph_probe_values(spec: NetworkSpec, params: Mapping[str, Tensor], inputs: Tensor) -> Tensor:
    """What every neuron of the parameter graph of ``spec``
    (:func:`weightspace.representations.param_graph.param_graph_structure`) computes on each
    probe input, for any architecture.

    A neuron's value is its channel or feature of the output of the node that made it, averaged
    over the other positions (pixels, time steps, tokens), as :class:`ProbeFeatures` does for an
    image channel; input neurons hold the probe's channels (or every value, where the input is
    only ever flattened); an attention's query/key/value neurons hold the in-projection of its
    input averaged over tokens (``mean_t(x) W^T + b``, the mean of the projections). Permuting a
    network's neurons permutes their values alike, so an invariant metanetwork stays invariant.

    Args:
        spec: the architecture (graph or chain).
        params: raw (not normalized) ``{name: Tensor[B, *shape]}``.
        inputs: the probes ``[K, *input_shape]``.

    Shapes:
        returns ``[B, N, K]``, ``N`` the parameter graph's neurons in graph order.

    Raises:
        WeightzooError: the architecture embeds token ids (probe inputs are real-valued).
    """
    from catalog.execution import graph_population_values
    from weightspace.representations.param_graph import param_graph_structure

    st = param_graph_structure(spec)
    graph = spec.as_graph(ignore_shift=True)
    if any(role == "tokens" for _, role, _ in st.sources):
        raise WeightzooError(f"probe features feed real-valued probe inputs; {spec.family} architecture "
                             f"{spec.arch_id} embeds token ids: use probes=0")
    nodes = {n.name: n for n in graph.nodes}
    wanted = {name for name, role, _ in st.sources if role == "out"}
    wanted |= {nodes[name].inputs[0] for name, role, _ in st.sources if role == "qkv"}
    values = graph_population_values(graph, params, inputs, sorted(wanted))   # {name: [B, K, *shape]}
    batch = next(iter(params.values())).shape[0]
    pieces = []
    for name, role, axis in st.sources:
        if role == "input":
            x = inputs.flatten(1) if axis is None else inputs.flatten(2).mean(-1) if inputs.dim() > 2 else inputs
            pieces.append(x.unsqueeze(0).expand(batch, -1, -1))                   # [B, K, n_in]
        elif role == "out":
            v = values[name].movedim(2 + axis if axis >= 0 else axis, -1)          # [B, K, ..., n]
            pieces.append(v.reshape(batch, inputs.shape[0], -1, v.shape[-1]).mean(2))
        else:  # "qkv"
            node = nodes[name]
            x = values[node.inputs[0]].mean(2)                                     # [B, K, E]
            qkv = torch.bmm(x, params[f"{name}.in_proj_weight"].transpose(1, 2))   # [B, K, 3E]
            if node.bias:
                qkv = qkv + params[f"{name}.in_proj_bias"].unsqueeze(1)
            pieces.append(qkv)
    out = torch.cat(pieces, dim=2).transpose(1, 2)                                 # [B, N, K]
    if out.shape[1] != st.num_nodes:  # pragma: no cover - the sources cover every neuron group
        raise WeightzooError(f"probe values for {out.shape[1]} neurons, the parameter graph has {st.num_nodes}")
    return out


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

