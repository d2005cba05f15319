"""The parameter graph of any architecture (ResNet, VGG, transformer, ..., and layer chains),
after Lim et al. (ICLR 2024, "Graph Metanetworks for Processing Diverse Neural Architectures").

One node per neuron (a feature or a channel), the input neurons included (every input value when
the input is only ever flattened, as for an MLP on images); one edge per weight between two
neurons, whose feature holds every value of that weight (a kernel for convolutions, the patch or
the spatial positions for a linear layer after ``patchify`` or ``flatten``).
Structure that carries no parameter also becomes edges: a residual ``add`` gets new neurons fed by
constant-1 edges from each summand's neurons. Normalizations get new neurons: the edge from
channel ``c`` carries ``[gamma, running_mean, running_var]`` (batch norm) or ``[gamma]`` (layer
norm) and the node carries ``beta``. Attention gets ``3E`` query/key/value neurons (edges: the
in-projection, node values: its bias) and ``E`` output neurons fed from the value neurons (the
out-projection), plus constant edges from query dim ``j`` to key dim ``j`` and from each key to
the values of its head, so that the graph's automorphisms are attention's symmetries. Every node
and edge has a type (:data:`NODE_TYPES`, :data:`EDGE_TYPES`).

A layer chain (read as :meth:`~catalog.network.NetworkSpec.as_graph`) gives exactly the neuron
graph of :mod:`weightspace.representations.graph`, with only the types ``neuron`` and
``linear``/``conv``; so chains and graph architectures share one batch
(:func:`params_to_param_graph_batch`). This is the representation the ``gmn`` metanetwork
reads (:mod:`weightspace.models.gmn`).

The conversion is exact both ways: every parameter element has one place (a node value, or a
slot of an edge feature), recorded once per spec as index tensors, so a batch converts with a
few gathers/scatters. Node features are ``[value, layer index]``; edge features are padded to a
common ``edge_dim``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import Batch

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec
from catalog.nodes import INPUT
from weightspace.representations.flat import _check_params

NODE_INPUT, NODE_HIDDEN, NODE_OUTPUT = 0, 1, 2
#: Edge types: what a weight edge comes from. Append only: a trained metanetwork embeds them by index.
EDGE_TYPES = ("linear", "conv", "batchnorm", "layernorm", "attention_in", "attention_out",
              "residual", "pos_embedding", "embedding", "attention_qk", "attention_head")
#: Node types: what made a neuron (``neuron``: the network's input, a linear or a convolution).
#: Append only, as :data:`EDGE_TYPES`.
NODE_TYPES = ("neuron", "batchnorm", "layernorm", "residual", "attention_q", "attention_k",
              "attention_v", "attention_out", "pos_embedding", "token")


@dataclass(frozen=True)
class ParamGraphStructure:
    """The spec-only part of a parameter graph.

    Args:
        edge_index: ``[2, E]`` source -> target neuron.
        node_kind: ``[N]`` input / hidden / output. io_pos: ``[N]`` position of input/output
            neurons. layer: ``[N]`` the neuron group's index (0: the input).
        edge_type: ``[E]`` index into :data:`EDGE_TYPES`. edge_layer: ``[E]`` the index of the
            node that made the edge.
        edge_dim: the longest edge feature.
        places: ``{param name: ("node", ids) | ("edge", edge ids, slots)}`` over the flattened
            tensor.
        constant_edges: edges whose slot 0 is the constant 1 (residual connections, attention
            structure).
        sources: per neuron group (``layer`` index), what its neurons are values of:
            ``(node name, role, axis)`` with role ``"out"`` (that node's output, neurons along
            ``axis`` of its per-example shape: 0 for channels first, -1 for features last; the
            node is the group's maker, or the activation right after it),
            ``"input"`` (the network's input: its channels, or every value when it is only
            ever flattened, axis ``None``), ``"qkv"`` (an attention's query/key/value
            projections of its input) or ``"tokens"`` (an embedding's vocabulary).
    """

    edge_index: Tensor
    node_kind: Tensor
    io_pos: Tensor
    layer: Tensor
    node_type: Tensor
    edge_type: Tensor
    edge_layer: Tensor
    edge_dim: int
    places: dict[str, tuple]
    constant_edges: Tensor
    sources: tuple[tuple[str, str, int | None], ...] = ()

    @property
    def num_nodes(self) -> int:
        return int(self.node_kind.numel())

    @property
    def num_edges(self) -> int:
        return int(self.edge_type.numel())


class _Builder:
    def __init__(self) -> None:
        self.kind: list[Tensor] = []
        self.ntype: list[Tensor] = []
        self.layer: list[Tensor] = []
        self.src: list[Tensor] = []
        self.dst: list[Tensor] = []
        self.etype: list[Tensor] = []
        self.elayer: list[Tensor] = []
        self.n_nodes = self.n_edges = self.n_groups = self.n_makers = 0
        self.places: dict[str, tuple] = {}
        self.constant: list[Tensor] = []
        self.retyped: list[tuple[Tensor, int]] = []
        self.edge_dim = 1
        self.sources: list[tuple[str, str, int | None]] = []

    def neurons(self, n: int, source: tuple[str, str, int | None], ntype: str = "neuron",
                kind: int = NODE_HIDDEN) -> Tensor:
        ids = torch.arange(self.n_nodes, self.n_nodes + n)
        self.sources.append(source)
        self.kind.append(torch.full((n,), kind))
        self.ntype.append(torch.full((n,), NODE_TYPES.index(ntype)))
        self.layer.append(torch.full((n,), self.n_groups))
        self.n_nodes += n
        self.n_groups += 1
        return ids

    def retype(self, ids: Tensor, ntype: str) -> None:
        """Give existing neurons another type (attention's query/key/value thirds)."""
        self.retyped.append((ids, NODE_TYPES.index(ntype)))

    def edges(self, src: Tensor, dst: Tensor, etype: str, width: int) -> Tensor:
        ids = torch.arange(self.n_edges, self.n_edges + src.numel())
        self.src.append(src)
        self.dst.append(dst)
        self.etype.append(torch.full((src.numel(),), EDGE_TYPES.index(etype)))
        self.elayer.append(torch.full((src.numel(),), self.n_makers))
        self.n_edges += src.numel()
        self.edge_dim = max(self.edge_dim, width)
        return ids

    def on_nodes(self, name: str, ids: Tensor) -> None:
        self.places[name] = ("node", ids)

    def on_edges(self, name: str, edge_ids: Tensor, slots: Tensor) -> None:
        self.places[name] = ("edge", edge_ids, slots)


_STRUCTURES: dict[tuple, ParamGraphStructure] = {}


def param_graph_structure(spec: NetworkSpec) -> ParamGraphStructure:
    """The parameter graph structure of ``spec`` (a chain is read as :meth:`NetworkSpec.as_graph`),
    built once per spec and cached.

    Raises:
        WeightzooError: a node layout the construction does not cover (e.g. flattening a token
            sequence, a convolution over patches).
    """
    spec = spec.as_graph(ignore_shift=True)  # an output shift (DWSNets INRs) has no neurons or edges
    key = (spec.input_shape, spec.nodes)
    if key in _STRUCTURES:
        return _STRUCTURES[key]
    b = _Builder()
    shapes = spec.shapes
    # Each tensor's neurons: (ids of its neuron axis, values per neuron in the next linear's input).
    # The input's neurons are its channels (features of a vector), except where the input is only
    # ever flattened (an MLP on images): then every input value is a neuron, as in a layer chain.
    readers = [n for n in spec.nodes if INPUT in n.inputs]
    flat_input = len(spec.input_shape) > 1 and all(n.KIND == "flatten" for n in readers)
    n_input = math.prod(spec.input_shape) if flat_input else spec.input_shape[0]
    group: dict[str, tuple[Tensor, int]] = {INPUT: (b.neurons(n_input, (INPUT, "input", None if flat_input else 0),
                                                            kind=NODE_INPUT), 1)}
    # The axis of each value's neurons: channels first (the input, convolutions, batch norm),
    # or features last (linear layers, layer norm, attention, embeddings); an add or an
    # elementwise node keeps its input's.
    axis: dict[str, int] = {INPUT: 0}
    gid: dict[str, int] = {INPUT: 0}  # the neuron group each value's neurons belong to
    token_ids: list[Tensor] = []
    for node in spec.nodes:
        kind, name = node.KIND, node.name
        ins = [group[i] for i in node.inputs]
        ids, k = ins[0]
        made = True
        if kind == "linear":
            n = ids.numel()
            if n * k != node.in_features:  # pragma: no cover - shapes were validated by the spec
                raise WeightzooError(f"parameter graph: linear {name!r} input is not whole neurons")
            axis[name] = -1
            out = b.neurons(node.out_features, (name, "out", -1))
            e = b.edges(ids.repeat(node.out_features), out.repeat_interleave(n), "linear", k)
            j = torch.arange(node.in_features).repeat(node.out_features)
            o = torch.arange(node.out_features).repeat_interleave(node.in_features)
            b.on_edges(f"{name}.weight", e[0] + o * n + j // k, j % k)
            if node.bias:
                b.on_nodes(f"{name}.bias", out)
            group[name] = (out, 1)
        elif kind in ("conv1d", "conv2d"):
            if k != 1:
                raise WeightzooError(f"parameter graph: convolution {name!r} over patches is not covered")
            per_in, per_out = node.in_channels // node.groups, node.out_channels // node.groups
            kn = math.prod(node.kernel_size)
            axis[name] = 0
            out = b.neurons(node.out_channels, (name, "out", 0))
            o = torch.arange(node.out_channels).repeat_interleave(per_in)
            src = ids[(o // per_out) * per_in + torch.arange(per_in).repeat(node.out_channels)]
            e = b.edges(src, out[o], "conv", kn)
            flat = torch.arange(node.out_channels * per_in * kn)
            b.on_edges(f"{name}.weight", e[0] + flat // kn, flat % kn)
            if node.bias:
                b.on_nodes(f"{name}.bias", out)
            group[name] = (out, 1)
        elif kind in ("batchnorm", "layernorm"):
            c = ids.numel()
            if k != 1 or c != (node.num_features if kind == "batchnorm" else node.dim):
                raise WeightzooError(f"parameter graph: {kind} {name!r} over flattened maps or patches "
                                     f"is not covered")
            axis[name] = 0 if kind == "batchnorm" else -1
            out = b.neurons(c, (name, "out", axis[name]), kind)
            slots = (["weight"] if node.affine else []) + (
                ["running_mean", "running_var"] if kind == "batchnorm" else [])
            e = b.edges(ids, out, kind, max(1, len(slots)))
            for s, suffix in enumerate(slots):
                b.on_edges(f"{name}.{suffix}", e, torch.full((c,), s))
            if node.affine:
                b.on_nodes(f"{name}.bias", out)
            group[name] = (out, 1)
        elif kind == "attention":
            dim = node.embed_dim
            if k != 1 or ids.numel() != dim:  # pragma: no cover - shapes were validated by the spec
                raise WeightzooError(f"parameter graph: attention {name!r} input is not {dim} neurons")
            axis[name] = -1
            qkv = b.neurons(3 * dim, (name, "qkv", -1), "attention_q")
            q, key, v = qkv[:dim], qkv[dim:2 * dim], qkv[2 * dim:]
            b.retype(key, "attention_k")
            b.retype(v, "attention_v")
            e = b.edges(ids.repeat(3 * dim), qkv.repeat_interleave(dim), "attention_in", 1)
            b.on_edges(f"{name}.in_proj_weight", e, torch.zeros(3 * dim * dim, dtype=torch.long))
            # Structure that carries no parameter (constant-1 edges): query dim j meets key dim j
            # of its head, and a head's keys weigh that head's values. With it, the graph's
            # symmetries are exactly attention's: heads as blocks, a head's q/k dims jointly, its
            # v dims (with the out-projection's columns) jointly.
            hd = dim // node.num_heads
            b.constant.append(b.edges(q, key, "attention_qk", 1))
            head = torch.arange(dim) // hd
            src, dst = torch.meshgrid(torch.arange(dim), torch.arange(dim), indexing="ij")
            same = head[src] == head[dst]
            b.constant.append(b.edges(key[src[same]], v[dst[same]], "attention_head", 1))
            out = b.neurons(dim, (name, "out", -1), "attention_out")
            e2 = b.edges(v.repeat(dim), out.repeat_interleave(dim), "attention_out", 1)
            b.on_edges(f"{name}.out_proj.weight", e2, torch.zeros(dim * dim, dtype=torch.long))
            if node.bias:
                b.on_nodes(f"{name}.in_proj_bias", qkv)
                b.on_nodes(f"{name}.out_proj.bias", out)
            group[name] = (out, 1)
        elif kind == "add":
            axis[name] = axis[node.inputs[0]]
            out = b.neurons(ids.numel(), (name, "out", axis[name]), "residual")
            for src_ids, _ in ins:
                b.constant.append(b.edges(src_ids, out, "residual", 1))
            group[name] = (out, k)
        elif kind == "pos_embedding":
            axis[name] = -1
            out = b.neurons(node.dim, (name, "out", -1), "pos_embedding")
            e = b.edges(ids, out, "pos_embedding", node.length)
            flat = torch.arange(node.length * node.dim)
            b.on_edges(f"{name}.weight", e[0] + flat % node.dim, flat // node.dim)
            group[name] = (out, 1)
        elif kind == "embedding":
            axis[name] = -1
            tokens = b.neurons(node.num_embeddings, (name, "tokens", None), "token", NODE_INPUT)
            token_ids.append(tokens)
            out = b.neurons(node.dim, (name, "out", -1))
            e = b.edges(tokens.repeat_interleave(node.dim), out.repeat(node.num_embeddings), "embedding", 1)
            b.on_edges(f"{name}.weight", e, torch.zeros(node.num_embeddings * node.dim, dtype=torch.long))
            group[name] = (out, 1)
        else:
            made = False
            if kind == "flatten" and node.inputs[0] == INPUT and flat_input:
                group[name] = (ids, 1)  # the input's values are neurons already
            elif kind == "flatten":
                shape = shapes[node.inputs[0]]
                if len(shape) >= 2 and ids.numel() != shape[0]:
                    raise WeightzooError(f"parameter graph: flatten {name!r} of a token sequence is not covered")
                group[name] = (ids, k * (math.prod(shape[1:]) if len(shape) >= 2 else 1))
            elif kind == "patchify":
                group[name] = (ids, k * math.prod(node.patch_size))
            else:  # activation, dropout, pools: the same neurons
                group[name] = (ids, k)
            # flatten and patchify give vectors and token features: features last
            axis[name] = axis[node.inputs[0]] if kind not in ("flatten", "patchify") else -1
            gid[name] = gid[node.inputs[0]]
            g = gid[name]
            if kind in ("activation", "dropout") and b.sources[g][:2] == (node.inputs[0], "out"):
                # A neuron's value is taken after its activation (at the same positions: not
                # after a pool), as a layer chain's neurons are.
                b.sources[g] = (name, "out", axis[name])
        if made:
            b.n_makers += 1
            gid[name] = b.n_groups - 1  # the group it made last (an attention's output after its q/k/v)
    out_ids = group[spec.nodes[-1].name][0]
    kind_t = torch.cat(b.kind)
    kind_t[out_ids] = NODE_OUTPUT
    io_pos = torch.zeros_like(kind_t)
    io_pos[out_ids] = torch.arange(out_ids.numel())
    for in_ids in [group[INPUT][0], *token_ids]:
        io_pos[in_ids] = torch.arange(in_ids.numel())
    node_type = torch.cat(b.ntype)
    for ids, t in b.retyped:
        node_type[ids] = t
    structure = ParamGraphStructure(
        edge_index=torch.stack([torch.cat(b.src), torch.cat(b.dst)]), node_kind=kind_t, io_pos=io_pos,
        layer=torch.cat(b.layer), node_type=node_type, edge_type=torch.cat(b.etype),
        edge_layer=torch.cat(b.elayer),
        edge_dim=b.edge_dim, places=b.places,
        constant_edges=torch.cat(b.constant) if b.constant else torch.zeros(0, dtype=torch.long),
        sources=tuple(b.sources))
    missing = [n for n in spec.param_names if n not in structure.places]
    if missing:  # pragma: no cover - every parameter-carrying kind is handled above
        raise WeightzooError(f"parameter graph: no place for {missing}")
    _STRUCTURES[key] = structure
    return structure


def _values(spec: NetworkSpec, params: Mapping[str, Tensor], dim: int) -> tuple[Tensor, Tensor]:
    """Node values ``[B, N]`` and edge features ``[B, E, dim]`` of a batch of one spec."""
    st = param_graph_structure(spec)
    n = _check_params(spec, params)
    ref = next(iter(params.values()))
    nodes = ref.new_zeros(n, st.num_nodes)
    edges = ref.new_zeros(n, st.num_edges, dim)
    edges[:, st.constant_edges.to(ref.device), 0] = 1
    for name, place in st.places.items():
        values = params[name].reshape(n, -1)
        if place[0] == "node":
            nodes[:, place[1].to(ref.device)] = values
        else:
            edges[:, place[1].to(ref.device), place[2].to(ref.device)] = values
    return nodes, edges


def params_to_param_graph(spec: NetworkSpec, params: Mapping[str, Tensor], edge_dim: int | None = None) -> Batch:
    """A batch of networks of one spec as one batch of parameter graphs.

    Args:
        spec: the architecture.
        params: ``{name: Tensor[B, *shape]}``.
        edge_dim: edge feature size (default: the spec's longest edge feature).

    Shapes:
        returns ``x [B*N, 2]`` (value, layer), ``edge_index [2, B*E]``, ``edge_attr [B*E, edge_dim]``,
        ``node_kind``, ``io_pos``, ``layer``, ``node_type`` ``[B*N]``, ``edge_type``,
        ``edge_layer`` ``[B*E]``, ``batch [B*N]``, ``ptr [B + 1]``.
    """
    return params_to_param_graph_batch([(spec, params)], edge_dim)


def params_to_param_graph_batch(groups: Sequence[tuple[NetworkSpec, Mapping[str, Tensor]]],
                                edge_dim: int | None = None) -> Batch:
    """Networks of several architectures (chains and graphs alike) as one batch of parameter graphs.

    Args:
        groups: ``(spec, {name: Tensor[B_i, *shape]})`` per architecture; graphs come out group
            after group, in order.
        edge_dim: edge feature size (default: the longest edge feature over all groups).

    Shapes:
        as :func:`params_to_param_graph`, over ``sum B_i`` graphs.
    """
    if not groups:
        raise WeightzooError("params_to_param_graph_batch needs at least one group of networks")
    structures = [param_graph_structure(spec) for spec, _ in groups]
    dim = max(st.edge_dim for st in structures) if edge_dim is None else edge_dim
    fields: dict[str, list[Tensor]] = {k: [] for k in (
        "x", "edge_index", "edge_attr", "node_kind", "io_pos", "layer", "node_type", "edge_type",
        "edge_layer", "batch")}
    node_base = graph_base = 0
    for (spec, params), st in zip(groups, structures):
        if dim < st.edge_dim:
            raise WeightzooError(f"edge_dim={dim} cannot hold the edge features of {st.edge_dim} values "
                                 f"of {spec.family} architecture {spec.arch_id}; pass edge_dim >= {st.edge_dim}")
        nodes, edges = _values(spec, params, dim)
        n, dev = nodes.shape[0], nodes.device
        fields["x"].append(torch.stack([nodes, st.layer.to(nodes).expand(n, -1)], dim=-1).reshape(-1, 2))
        fields["edge_attr"].append(edges.reshape(-1, dim))
        shift = (torch.arange(n, device=dev) * st.num_nodes + node_base).view(-1, 1, 1)
        fields["edge_index"].append((st.edge_index.to(dev).unsqueeze(0) + shift).permute(1, 0, 2).reshape(2, -1))
        for key in ("node_kind", "io_pos", "layer", "node_type", "edge_type", "edge_layer"):
            fields[key].append(getattr(st, key).to(dev).repeat(n))
        fields["batch"].append((torch.arange(n, device=dev) + graph_base).repeat_interleave(st.num_nodes))
        node_base += n * st.num_nodes
        graph_base += n
    out = {k: torch.cat(v, dim=1 if k == "edge_index" else 0) for k, v in fields.items()}
    counts = torch.bincount(out["batch"], minlength=graph_base)
    return Batch(**out, ptr=torch.cat([counts.new_zeros(1), counts.cumsum(0)]))


def param_graph_to_params(spec: NetworkSpec, node_values: Tensor, edge_values: Tensor) -> dict[str, Tensor]:
    """Node values and edge features of a batch of one spec back to its parameters (the exact
    inverse of :func:`params_to_param_graph`).

    Args:
        node_values: ``[B * N]`` (or ``[B * N, >=1]``, column 0 is the value).
        edge_values: ``[B * E, D]`` with ``D >=`` the spec's edge dim.

    Shapes:
        returns ``{name: Tensor[B, *shape]}``.
    """
    st = param_graph_structure(spec)
    if node_values.dim() == 2:
        node_values = node_values[:, 0]
    if node_values.numel() % st.num_nodes or edge_values.shape[0] * st.num_nodes != node_values.numel() * st.num_edges:
        raise WeightzooError(f"node/edge values do not make whole graphs of {st.num_nodes} nodes and "
                             f"{st.num_edges} edges")
    n = node_values.numel() // st.num_nodes
    nodes = node_values.reshape(n, st.num_nodes)
    edges = edge_values.reshape(n, st.num_edges, -1)
    out = {}
    for p in spec.params:
        place = st.places[p.name]
        values = nodes[:, place[1]] if place[0] == "node" else edges[:, place[1], place[2]]
        out[p.name] = values.reshape(n, *p.shape)
    return out
