"""The graph representation: a network as a PyG graph of its neurons.

One node per neuron, the input neurons included, ordered layer by layer; one edge per weight,
from a neuron of layer ``l`` to a neuron of layer ``l + 1``. A convolution's kernel between an
input and an output channel is *one* edge whose feature is the flattened kernel. Node features
are ``[bias, layer index]`` (input neurons have bias 0); edge features are zero-padded to a common
``edge_dim`` so that networks of different widths, depths and architectures (MLPs, CNNs,
SIRENs) share one :class:`torch_geometric.data.Batch`.

Everything structural (``edge_index``, node/edge layer ids, ...) depends only on the
``NetworkSpec``; it is computed once per spec by :func:`graph_structure` and cached, and a batch
of ``B`` networks of one spec is built with a handful of vectorised tensor ops (no per-network
Python loop). Conversion graph -> parameters copies values back exactly.

Extra attributes on every graph/batch (besides ``x``, ``edge_index``, ``edge_attr``):

- ``layer`` ``[N]`` long: the neuron's layer (0 = input neurons, ``l`` = outputs of layer ``l``);
- ``node_kind`` ``[N]`` long: 0 input, 1 hidden, 2 output neuron;
- ``io_pos`` ``[N]`` long: the index of an input/output neuron within its layer (0 for hidden
  neurons, whose order carries no meaning);
- ``edge_layer`` ``[E]`` long: the index of the layer the weight belongs to.

This is the neuron graph of layer chains only. :mod:`weightspace.representations.param_graph`
generalizes it to every architecture (residual connections, normalization, attention) and gives,
for a chain, exactly this graph plus node/edge types; the ``gmn`` metanetwork reads that one (and
still accepts batches from here, whose neurons and weights it takes as the plain types).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec
from weightspace.representations.flat import _check_params

NODE_INPUT, NODE_HIDDEN, NODE_OUTPUT = 0, 1, 2


@dataclass(frozen=True)
class GraphStructure:
    """The spec-only part of a network's graph (computed once per spec, see :func:`graph_structure`).

    Args:
        widths: neurons per layer, inputs first (``spec.layer_widths``).
        node_offsets: first node id of each neuron layer, plus the total (``len(widths) + 1``).
        edge_offsets: first edge id of each weight layer, plus the total (``n_layers + 1``).
        kernel_numel: entries per edge of each weight layer (1 for linear layers).
        edge_index: ``[2, E]`` long, source (fan-in neuron) -> target (fan-out neuron).
        layer: ``[N]`` long. node_kind: ``[N]`` long. io_pos: ``[N]`` long.
        edge_layer: ``[E]`` long.
    """

    widths: tuple[int, ...]
    node_offsets: tuple[int, ...]
    edge_offsets: tuple[int, ...]
    kernel_numel: tuple[int, ...]
    edge_index: Tensor
    layer: Tensor
    node_kind: Tensor
    io_pos: Tensor
    edge_layer: Tensor

    @property
    def num_nodes(self) -> int:
        return self.node_offsets[-1]

    @property
    def num_edges(self) -> int:
        return self.edge_offsets[-1]

    @property
    def edge_dim(self) -> int:
        """The smallest edge feature size that holds every kernel of this spec."""
        return max(self.kernel_numel)


_STRUCTURES: dict[tuple, GraphStructure] = {}


def _spec_key(spec: NetworkSpec) -> tuple:
    # LayerSpec is a frozen dataclass of hashables; ``meta`` never changes the structure.
    return (spec.input_shape, spec.layers)


def graph_structure(spec: NetworkSpec) -> GraphStructure:
    """The graph structure of ``spec``, built once per distinct spec and cached.

    Args:
        spec: the architecture.
    """
    spec.require_chain("the neuron graph representation")
    key = _spec_key(spec)
    cached = _STRUCTURES.get(key)
    if cached is not None:
        return cached
    widths = tuple(spec.layer_widths)
    node_offsets = [0]
    for w in widths:
        node_offsets.append(node_offsets[-1] + w)
    n_nodes = node_offsets[-1]
    layer = torch.cat([torch.full((w,), i, dtype=torch.long) for i, w in enumerate(widths)])
    node_kind = torch.full((n_nodes,), NODE_HIDDEN, dtype=torch.long)
    node_kind[: widths[0]] = NODE_INPUT
    node_kind[node_offsets[-2]:] = NODE_OUTPUT
    io_pos = torch.zeros(n_nodes, dtype=torch.long)
    io_pos[: widths[0]] = torch.arange(widths[0])
    io_pos[node_offsets[-2]:] = torch.arange(widths[-1])
    srcs, dsts, edge_layers, edge_offsets, kernel_numel = [], [], [], [0], []
    for i, spec_layer in enumerate(spec.layers):
        n_in, n_out = widths[i], widths[i + 1]
        # Row-major over (out, in): edge (o, i) sits at o * n_in + i, the order of W.reshape.
        dst = torch.arange(n_out).repeat_interleave(n_in) + node_offsets[i + 1]
        src = torch.arange(n_in).repeat(n_out) + node_offsets[i]
        srcs.append(src)
        dsts.append(dst)
        edge_layers.append(torch.full((n_in * n_out,), i, dtype=torch.long))
        edge_offsets.append(edge_offsets[-1] + n_in * n_out)
        kernel_numel.append(math.prod(spec_layer.kernel_size) if spec_layer.kernel_size else 1)
    structure = GraphStructure(
        widths=widths, node_offsets=tuple(node_offsets), edge_offsets=tuple(edge_offsets),
        kernel_numel=tuple(kernel_numel),
        edge_index=torch.stack([torch.cat(srcs), torch.cat(dsts)]),
        layer=layer, node_kind=node_kind, io_pos=io_pos, edge_layer=torch.cat(edge_layers),
    )
    _STRUCTURES[key] = structure
    return structure


def _resolve_edge_dim(structure: GraphStructure, edge_dim: int | None) -> int:
    if edge_dim is None:
        return structure.edge_dim
    if edge_dim < structure.edge_dim:
        raise WeightzooError(
            f"edge_dim={edge_dim} cannot hold this network's kernels of {structure.edge_dim} "
            f"entries; pass edge_dim >= {structure.edge_dim} (or None)")
    return edge_dim


def _node_and_edge_values(
    spec: NetworkSpec, params: Mapping[str, Tensor], batch: int, edge_dim: int,
) -> tuple[Tensor, Tensor]:
    """Biases laid out per node ``[B, N]`` and weights per edge ``[B, E, edge_dim]``."""
    st = graph_structure(spec)
    ref = params[spec.layers[0].weight]
    biases = [torch.zeros(batch, st.widths[0], dtype=ref.dtype, device=ref.device)]
    edges = []
    for i, layer in enumerate(spec.layers):
        w = params[layer.weight]
        if layer.bias is None:
            biases.append(torch.zeros(batch, layer.out_features, dtype=w.dtype, device=w.device))
        else:
            biases.append(params[layer.bias])
        e = w.reshape(batch, layer.out_features * layer.in_features, st.kernel_numel[i])
        if st.kernel_numel[i] < edge_dim:
            e = torch.nn.functional.pad(e, (0, edge_dim - st.kernel_numel[i]))
        edges.append(e)
    return torch.cat(biases, dim=1), torch.cat(edges, dim=1)


def params_to_graph(spec: NetworkSpec, params: Mapping[str, Tensor], edge_dim: int | None = None) -> Data:
    """One network as a graph.

    Args:
        spec: the architecture.
        params: ``{name: Tensor[*shape]}``, one network (no batch dim).
        edge_dim: edge feature size; kernels are zero-padded to it (default: the spec's largest
            kernel, 1 for an MLP). Pass a common value to batch different architectures.

    Shapes:
        returns ``x [N, 2]``, ``edge_index [2, E]``, ``edge_attr [E, edge_dim]`` and the
        structural attributes of the module docstring.
    """
    batched = {name: t.unsqueeze(0) for name, t in params.items()}
    return _build_batch([(spec, batched)], edge_dim, as_batch=False)


def params_to_graph_batch(
    spec: NetworkSpec | Sequence[tuple[NetworkSpec, Mapping[str, Tensor]]],
    params: Mapping[str, Tensor] | None = None,
    edge_dim: int | None = None,
) -> Batch:
    """A batch of networks as one PyG :class:`~torch_geometric.data.Batch`, built vectorised.

    Args:
        spec: the architecture of ``params``, or a list of ``(spec, params)`` groups of different
            architectures (graphs come out group after group, in order).
        params: ``{name: Tensor[B, *shape]}`` when ``spec`` is one spec (default ``None``).
        edge_dim: edge feature size (default: the largest kernel over all groups).

    Shapes:
        returns ``x [sum N, 2]``, ``edge_index [2, sum E]``, ``edge_attr [sum E, edge_dim]``,
        ``batch [sum N]``, ``ptr [num_graphs + 1]``.
    """
    if isinstance(spec, NetworkSpec):
        if params is None:
            raise WeightzooError("params_to_graph_batch(spec, params): params is missing")
        groups = [(spec, params)]
    else:
        groups = list(spec)
    if not groups:
        raise WeightzooError("params_to_graph_batch needs at least one group of networks")
    return _build_batch(groups, edge_dim, as_batch=True)


def _build_batch(groups: Sequence[tuple[NetworkSpec, Mapping[str, Tensor]]], edge_dim: int | None,
                 as_batch: bool) -> Data:
    dims = [graph_structure(s).edge_dim for s, _ in groups]
    if edge_dim is None:
        edge_dim = max(dims)
    xs, eis, eas, layers, kinds, poss, elayers, batches = [], [], [], [], [], [], [], []
    node_base, graph_base = 0, 0
    for spec, params in groups:
        st = graph_structure(spec)
        dim = _resolve_edge_dim(st, edge_dim)
        n_graphs = _check_params(spec, params)
        bias, edge = _node_and_edge_values(spec, params, n_graphs, dim)
        device = bias.device
        layer_f = st.layer.to(device=device, dtype=bias.dtype)
        xs.append(torch.stack([bias, layer_f.expand_as(bias)], dim=-1).reshape(-1, 2))
        eas.append(edge.reshape(-1, dim))
        shift = (torch.arange(n_graphs, device=device) * st.num_nodes + node_base).view(-1, 1, 1)
        eis.append((st.edge_index.to(device).unsqueeze(0) + shift).permute(1, 0, 2).reshape(2, -1))
        layers.append(st.layer.to(device).repeat(n_graphs))
        kinds.append(st.node_kind.to(device).repeat(n_graphs))
        poss.append(st.io_pos.to(device).repeat(n_graphs))
        elayers.append(st.edge_layer.to(device).repeat(n_graphs))
        batches.append((torch.arange(n_graphs, device=device) + graph_base)
                       .repeat_interleave(st.num_nodes))
        node_base += n_graphs * st.num_nodes
        graph_base += n_graphs
    fields = dict(
        x=torch.cat(xs), edge_index=torch.cat(eis, dim=1), edge_attr=torch.cat(eas),
        layer=torch.cat(layers), node_kind=torch.cat(kinds), io_pos=torch.cat(poss),
        edge_layer=torch.cat(elayers),
    )
    if not as_batch:
        return Data(**fields)
    batch_vec = torch.cat(batches)
    counts = torch.bincount(batch_vec, minlength=graph_base)
    ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    return Batch(**fields, batch=batch_vec, ptr=ptr)


def _values_to_params(spec: NetworkSpec, bias: Tensor, edge: Tensor) -> dict[str, Tensor]:
    """Node biases ``[B, N]`` and edge values ``[B, E, D]`` back to ``{name: [B, *shape]}``."""
    st = graph_structure(spec)
    if bias.shape[1] != st.num_nodes or edge.shape[1] != st.num_edges:
        raise WeightzooError(
            f"a graph with {bias.shape[1]} nodes and {edge.shape[1]} edges does not match the "
            f"NetworkSpec's {st.num_nodes} nodes and {st.num_edges} edges")
    if edge.shape[2] < st.edge_dim:
        raise WeightzooError(
            f"edge features of size {edge.shape[2]} cannot hold kernels of {st.edge_dim} entries")
    batch = bias.shape[0]
    out: dict[str, Tensor] = {}
    for i, layer in enumerate(spec.layers):
        e0, e1 = st.edge_offsets[i], st.edge_offsets[i + 1]
        k = st.kernel_numel[i]
        out[layer.weight] = edge[:, e0:e1, :k].reshape(batch, *layer.weight_shape)
        if layer.bias is not None:
            n0, n1 = st.node_offsets[i + 1], st.node_offsets[i + 2]
            out[layer.bias] = bias[:, n0:n1]
    return out


def graph_to_params(spec: NetworkSpec, graph: Data) -> dict[str, Tensor]:
    """One graph back to a network's parameters (exact inverse of :func:`params_to_graph`).

    Args:
        spec: the architecture the graph was built from.
        graph: a single graph (``x [N, >=1]`` with the bias in column 0, ``edge_attr [E, D]``).

    Shapes:
        returns ``{name: Tensor[*shape]}``.
    """
    out = _values_to_params(spec, graph.x[:, 0].unsqueeze(0), graph.edge_attr.unsqueeze(0))
    return {name: t[0] for name, t in out.items()}


def graph_batch_to_params(spec: NetworkSpec, node_values: Tensor, edge_values: Tensor) -> dict[str, Tensor]:
    """Per-node biases and per-edge weights of a batch of one spec back to a parameter dict.

    This is how an equivariant edge/node output head becomes a network again.

    Args:
        spec: the architecture of every graph in the batch.
        node_values: ``[B * N]`` (or ``[B * N, >=1]``, column 0 is the bias).
        edge_values: ``[B * E, D]`` with ``D >=`` the spec's largest kernel.

    Shapes:
        returns ``{name: Tensor[B, *shape]}``.
    """
    st = graph_structure(spec)
    if node_values.dim() == 2:
        node_values = node_values[:, 0]
    if node_values.numel() % st.num_nodes:
        raise WeightzooError(
            f"{node_values.numel()} node values are not a whole batch of {st.num_nodes}-node graphs")
    batch = node_values.numel() // st.num_nodes
    if edge_values.dim() == 1:
        edge_values = edge_values.unsqueeze(-1)
    return _values_to_params(spec, node_values.reshape(batch, st.num_nodes),
                             edge_values.reshape(batch, -1, edge_values.shape[-1]))


def unbatch_params(batch: Batch, specs: Sequence[NetworkSpec]) -> list[dict[str, Tensor]]:
    """Split a (possibly heterogeneous) batch of graphs back into one parameter dict per graph.

    Args:
        batch: a batch from :func:`params_to_graph_batch` or ``Batch.from_data_list``.
        specs: the spec of each graph, in batch order.

    Shapes:
        returns a list of ``{name: Tensor[*shape]}``.
    """
    if len(specs) != batch.num_graphs:
        raise WeightzooError(f"got {len(specs)} specs for a batch of {batch.num_graphs} graphs")
    out = []
    node0, edge0 = 0, 0
    for spec in specs:
        st = graph_structure(spec)
        bias = batch.x[node0:node0 + st.num_nodes, 0].unsqueeze(0)
        edge = batch.edge_attr[edge0:edge0 + st.num_edges].unsqueeze(0)
        out.append({k: v[0] for k, v in _values_to_params(spec, bias, edge).items()})
        node0 += st.num_nodes
        edge0 += st.num_edges
    return out
