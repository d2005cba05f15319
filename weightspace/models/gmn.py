"""``gmn``: a graph metanetwork (Lim et al., 2024, "Graph Metanetworks for Processing Diverse
Neural Architectures"; Kofinas et al., 2024, "Graph Neural Networks for Learning Equivariant
Representations of Neural Networks").

It reads every architecture through the parameter graph of
:mod:`weightspace.representations.param_graph`: one node per neuron (a feature or a channel),
one edge per weight (a convolution's kernel, a linear layer's weights over the positions of a
flattened map, ...), and typed nodes and edges for what is not a plain weight: batch/layer norm
(the edge holds ``[gamma, running stats]``, the node ``beta``), residual ``add`` (constant-1
edges), attention (query/key/value neurons, constant edges pairing query and key dims and tying
a head's keys to its values). A layer chain (MLP, CNN, SIREN) gives exactly the neuron graph of
:mod:`weightspace.representations.graph`, so chains and graph architectures (ResNet, VGG,
ViT, ...) share one :class:`~torch_geometric.data.Batch`: pass a batch from
:func:`~weightspace.representations.param_graph.params_to_param_graph_batch` (or
:meth:`GMN.to_graph`) to ``forward``.

Message passing: every layer updates edge features from their two end nodes, then node
features from messages along the edges in both directions (forward: from fan-in neurons,
backward: from fan-out neurons). All of it is sparse over ``edge_index``; nothing dense in the
number of nodes is ever built. A hidden neuron enters through its value (bias, ``beta``),
its group index (``layer``) and its node type; input/output neurons also get an embedding of
their position, since their order means something. Relabelling hidden neurons relabels the
graph, so the model is equivariant (nodes/edges) and, after mean pooling, invariant to every
neuron permutation that preserves the function - including the residual-stream and attention
symmetries of :mod:`weightspace.graph_symmetry`.

Node and edge types (:data:`~weightspace.representations.param_graph.NODE_TYPES`,
:data:`~weightspace.representations.param_graph.EDGE_TYPES`) are learned embeddings added to
the node/edge features. Plain neurons and plain weights (linear and convolution; told apart by
their kernel) are the reference type with a fixed zero embedding - no loss of generality, as
the input projections have biases. The invariant readout reads the mean node and edge features;
a network with typed parts adds a readout of the means per node and edge type (invariant: a
symmetry keeps every type). On a 96-run ResNet-8 zoo it raised Kendall tau from 0.58 / 0.66 (two
splits) to 0.60 / 0.70 (statnn: 0.73 / 0.81 with 174 training rows); on wildpark-digits (3
seeds) 0.706 +- 0.015 became 0.702 +- 0.013, a tie either way (ResNets 0.689 -> 0.728, CNNs
0.727 -> 0.698). Means per neuron group (layer index) as well gave 0.64 / 0.72 on the ResNet
zoo but 0.697 +- 0.024 on wildpark-digits with 3x the parameters, so they are not used.
Neither is PNA's set of aggregators (Corso et al. 2020: mean, min, max and standard deviation of
the incoming messages, concatenated, without degree scalers): on wildpark-digits (80 epochs,
patience 10) tau 0.742 / 0.741 for seeds 0 / 1 against 0.741 / 0.752 with the mean, at 1.5x the
time per epoch. The type tables exist only
in a model built for some typed architecture; a model for layer chains has exactly the
parameters, initial values and outputs it had before types existed.

``forward_weights`` (a network -> network map, e.g. for :mod:`weightspace.editing`) works for
every architecture: node and edge outputs go back to parameters through the graph's exact
inverse (constant edges are dropped).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec
from weightspace.models._common import check_dropout, check_positive, make_mlp
from weightspace.models.base import Metanetwork
from weightspace.models.registry import register_metanetwork
from weightspace.probes import ProbeFeatures, check_probes
from weightspace.representations.param_graph import (
    EDGE_TYPES,
    NODE_INPUT,
    NODE_OUTPUT,
    NODE_TYPES,
    param_graph_structure,
    param_graph_to_params,
    params_to_param_graph_batch,
)

#: Types embedded as the zero reference (see the module docstring).
_REFERENCE_NODE_TYPES = ("neuron",)
_REFERENCE_EDGE_TYPES = ("linear", "conv")

#: What to do when a gmn meets an architecture it was not built for.
_REMEDY = ("retrain it on a selection that includes this architecture (`zoo train ZOO --model gmn --where "
           "...` selecting every architecture it must read; in Python, build it with all their NetworkSpecs)")


class DirectedAggregation(MessagePassing):
    """Mean of ``mlp([h_source, e])`` over the edges into each node (a direction of message passing).

    The MLP's first linear layer is applied to the node features once per *node* and gathered
    along the edges (``W [h_j, e] = (W_h h)_j + W_e e``): the same function as concatenating per
    edge, with a third of the per-edge work (a network has far more edges than neurons).

    Args:
        dim: node/edge feature size.

    Shapes:
        ``h [N, dim]``, ``e [E, dim]``, ``edge_index [2, E]`` -> ``[N, dim]``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__(aggr="mean")
        self.dim = dim
        self.mlp = make_mlp(2 * dim, dim, dim, 1)

    def forward(self, h: Tensor, e: Tensor, edge_index: Tensor) -> Tensor:
        first = self.mlp[0]
        h_proj = h @ first.weight[:, :self.dim].T  # per node
        e_proj = torch.addmm(first.bias, e, first.weight[:, self.dim:].T)  # per edge
        return self.propagate(edge_index, h=h_proj, e=e_proj, size=(h.shape[0], h.shape[0]))

    def message(self, h_j: Tensor, e: Tensor) -> Tensor:
        return self.mlp[1:](h_j + e)


class NeuronGraphLayer(nn.Module):
    """One GMN layer: edge update, then node update from forward and backward messages.

    Equivariant to any relabelling of the nodes (so in particular to hidden-neuron permutations).

    Args:
        dim: node/edge feature size.

    Shapes:
        ``h [N, dim]``, ``e [E, dim]``, ``edge_index [2, E]`` -> ``(h [N, dim], e [E, dim])``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.edge_mlp = make_mlp(3 * dim, dim, dim, 1)
        self.forward_msg = DirectedAggregation(dim)
        self.backward_msg = DirectedAggregation(dim)
        self.node_mlp = make_mlp(3 * dim, dim, dim, 1)
        self.norm_e = nn.LayerNorm(dim)
        self.norm_h = nn.LayerNorm(dim)

    def forward(self, h: Tensor, e: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor]:
        src, dst = edge_index
        # edge_mlp([e, h_src, h_dst]) with its first linear layer split: node parts per node.
        first, d = self.edge_mlp[0], e.shape[1]
        h_src = h @ first.weight[:, d:2 * d].T
        h_dst = h @ first.weight[:, 2 * d:].T
        pre = torch.addmm(first.bias, e, first.weight[:, :d].T) + h_src[src] + h_dst[dst]
        e = self.norm_e(e + self.edge_mlp[1:](pre))
        m_fwd = self.forward_msg(h, e, edge_index)  # from fan-in neurons
        m_bwd = self.backward_msg(h, e, edge_index.flip(0))  # from fan-out neurons
        h = self.norm_h(h + self.node_mlp(torch.cat([h, m_fwd, m_bwd], dim=-1)))
        return h, e


@register_metanetwork("gmn")
class GMN(Metanetwork):
    """Graph metanetwork with an invariant readout and an equivariant node/edge output head.

    Args:
        spec: the architecture of the input networks, or a sequence of architectures the model
            must handle (layer chains and graph architectures alike; their largest depth,
            input/output width and edge feature the embedding tables are sized for); the first is
            used for parameter-dict inputs.
        out_dim: output size of the invariant readout.
        hidden: node/edge feature size (default ``32``).
        n_layers: message-passing layers (default ``3``).
        head_hidden: width of the readout MLP (default ``64``).
        dropout: dropout in the readout (default ``0``).
        probes: number of learned probe inputs whose neuron values become node features
            (Kofinas et al.; :mod:`weightspace.probes`; default ``0``: weights only), for any
            architecture (:func:`weightspace.probes.param_graph_probe_values`; a neuron's value
            averaged over positions and tokens); all specs must take one input shape, and none
            may embed token ids.

    Shapes:
        ``forward``: ``{name: Tensor[B, *shape]}`` or a PyG ``Batch`` of ``B`` graphs -> ``[B, out_dim]``;
        ``forward_weights``: ``{name: Tensor[B, *shape]}`` -> ``{name: Tensor[B, *shape]}``;
        ``forward_graph``: ``Batch`` -> node values ``[N]`` and edge values ``[E, edge_dim]``.
    """

    weight_output = True
    multi_arch = "any"  # graphs of any architecture, embeddings sized for all its specs
    graphs = True  # ResNets, VGGs, transformers through their parameter graphs
    probes_any_arch = True  # probe values of any parameter graph's neurons

    def __init__(self, spec: NetworkSpec | Sequence[NetworkSpec], out_dim: int, hidden: int = 32,
                 n_layers: int = 3, head_hidden: int = 64, dropout: float = 0.0,
                 probes: int = 0) -> None:
        specs = (spec,) if isinstance(spec, NetworkSpec) else tuple(spec)
        if not specs:
            raise WeightzooError("gmn needs at least one NetworkSpec")
        super().__init__(specs[0], out_dim)
        check_positive(hidden=hidden, n_layers=n_layers, head_hidden=head_hidden)
        check_dropout(dropout)
        check_probes(probes)
        if probes:
            problem = self.arch_problem(specs, {"probes": probes})
            if problem is not None:
                raise WeightzooError(problem)
        self.specs = specs
        self.hparams = {"hidden": hidden, "n_layers": n_layers, "head_hidden": head_hidden,
                        "dropout": dropout, "probes": probes}
        structures = [param_graph_structure(s) for s in specs]
        for s, st in zip(specs, structures):
            if probes and any(role == "tokens" for _, role, _ in st.sources):
                raise WeightzooError(f"gmn probe features feed real-valued probe inputs; {s.family} architecture "
                                     f"{s.arch_id} embeds token ids: use probes=0")
        self.edge_dim = max(st.edge_dim for st in structures)
        self.max_layers = max(int(st.layer.max()) + 1 for st in structures)
        self.max_io = max(int(st.io_pos.max()) + 1 for st in structures)
        # Module creation order fixes the initialization: the type embeddings come last, so a
        # model for chains starts (and, their embeddings being zero, trains) as before they existed.
        self.bias_in = nn.Linear(1, hidden)
        self.layer_emb = nn.Embedding(self.max_layers, hidden)
        self.in_pos = nn.Embedding(self.max_io, hidden)
        self.out_pos = nn.Embedding(self.max_io, hidden)
        self.edge_in = nn.Linear(self.edge_dim, hidden)
        self.edge_layer_emb = nn.Embedding(self.max_layers, hidden)
        self.probe = ProbeFeatures(specs[0], probes) if probes else None
        self.probe_in = nn.Linear(probes, hidden, bias=False) if probes else None
        self.layers = nn.ModuleList(NeuronGraphLayer(hidden) for _ in range(n_layers))
        self.readout = make_mlp(2 * hidden, head_hidden, out_dim, 1, dropout)
        self.node_head = nn.Linear(hidden, 1)
        self.edge_head = nn.Linear(hidden, self.edge_dim)
        # ReZero-style: the weight-space output starts as the identity map.
        self.edit_scale = nn.Parameter(torch.zeros(()))
        self.register_buffer("node_type_free", torch.tensor(
            [t not in _REFERENCE_NODE_TYPES for t in NODE_TYPES], dtype=torch.float32), persistent=False)
        self.register_buffer("edge_type_free", torch.tensor(
            [t not in _REFERENCE_EDGE_TYPES for t in EDGE_TYPES], dtype=torch.float32), persistent=False)
        # Type tables only where a spec has typed parts (norms, residual adds, attention): a model
        # for layer chains has exactly the parameters (and initial values) it had before types.
        self.typed = any(bool(self.node_type_free[st.node_type].any() or self.edge_type_free[st.edge_type].any())
                         for st in structures)
        if self.typed:
            self.node_type_emb = nn.Embedding(len(NODE_TYPES), hidden)
            self.edge_type_emb = nn.Embedding(len(EDGE_TYPES), hidden)
            # A second readout over per-type means (invariant: a symmetry never changes a type).
            self.type_readout = make_mlp((len(NODE_TYPES) + len(EDGE_TYPES)) * hidden, head_hidden, out_dim, 1,
                                         dropout)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # A run saved before a type was appended to NODE_TYPES/EDGE_TYPES has shorter type tables
        # and a narrower per-type readout: the new types get this model's rows and zero readout
        # columns (none of its networks has them, so it computes what it computed).
        n_key, e_key, r_key = (f"{prefix}{k}.weight" for k in ("node_type_emb", "edge_type_emb", "type_readout.0"))
        if self.typed and n_key in state_dict and e_key in state_dict:
            n_old, e_old = state_dict[n_key].shape[0], state_dict[e_key].shape[0]
            n_new, e_new, hid = len(NODE_TYPES), len(EDGE_TYPES), self.node_type_emb.embedding_dim
            if (n_old, e_old) != (n_new, e_new) and n_old <= n_new and e_old <= e_new:
                for key, module, old in ((n_key, self.node_type_emb, n_old), (e_key, self.edge_type_emb, e_old)):
                    filled = module.weight.detach().clone()
                    filled[:old] = state_dict[key]
                    state_dict[key] = filled
                if r_key in state_dict:
                    w = state_dict[r_key]  # [head_hidden, (n_old + e_old) * hidden]
                    wide = w.new_zeros(w.shape[0], (n_new + e_new) * hid)
                    wide[:, : n_old * hid] = w[:, : n_old * hid]
                    wide[:, n_new * hid: (n_new + e_old) * hid] = w[:, n_old * hid:]
                    state_dict[r_key] = wide
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def config(self) -> dict:
        cfg = super().config()
        cfg["specs"] = [s.to_dict() for s in self.specs]
        return cfg

    def to_graph(self, params: Mapping[str, Tensor], spec: NetworkSpec | None = None) -> Batch:
        """A parameter dict batch as a parameter-graph batch with this model's ``edge_dim``."""
        return self.to_graph_batch([(spec or self.spec, params)])

    def to_graph_batch(self, groups: Sequence[tuple[NetworkSpec, Mapping[str, Tensor]]]) -> Batch:
        """Networks of several architectures as one batch: ``[(spec, {name: Tensor[B_i, *shape]}), ...]``."""
        for spec, _ in groups:
            st = param_graph_structure(spec)
            if st.edge_dim > self.edge_dim:
                raise WeightzooError(
                    f"{spec.family} architecture {spec.arch_id} has edge features of {st.edge_dim} values; "
                    f"this gmn was built for at most {self.edge_dim}: " + _REMEDY)
        return params_to_param_graph_batch(groups, edge_dim=self.edge_dim)

    def _probe_nodes(self, params: Mapping[str, Tensor] | None, spec: NetworkSpec | None = None) -> Tensor | None:
        """Probe features of every node in graph order ``[B * N, K]`` (``None`` without probes)
        of networks of ``spec`` (default: the model's first)."""
        if self.probe is None:
            return None
        if params is None:
            raise WeightzooError(
                "this gmn uses probe features, so it reads parameter dicts (forward_arch(params, spec)), "
                "not graph batches; train it with probes=0 to read graph batches")
        acts = self.probe.node_values(params, spec or self.spec)  # [B, N, K]
        return acts.reshape(-1, acts.shape[-1])

    def embed_nodes(self, value: Tensor, layer: Tensor, kind: Tensor, io_pos: Tensor,
                    node_type: Tensor | None = None) -> Tensor:
        """Initial node features from a node's value, group index, kind, position and type.

        Shapes:
            ``value [*]``, ``layer``, ``kind``, ``io_pos``, ``node_type`` ``[*]`` long -> ``[*, hidden]``.
        """
        h = self.bias_in(value.unsqueeze(-1).float()) + self.layer_emb(layer)
        h = h + self.in_pos(io_pos) * (kind == NODE_INPUT).unsqueeze(-1)
        h = h + self.out_pos(io_pos) * (kind == NODE_OUTPUT).unsqueeze(-1)
        if node_type is not None:
            free = self.node_type_free[node_type]
            if bool(free.any()):  # a chain has only reference types: its embedding is skipped
                self._require_types()
                h = h + self.node_type_emb(node_type) * free.unsqueeze(-1)
        return h

    def _require_types(self) -> None:
        if not self.typed:
            raise WeightzooError(
                "this gmn was built for layer chains only and has no embeddings of node/edge types "
                "(norms, residual adds, attention): " + _REMEDY)

    def embed_edges(self, edge_attr: Tensor, edge_layer: Tensor, edge_type: Tensor | None = None) -> Tensor:
        """Initial edge features from the weight values, the maker's index and the edge type.

        Shapes:
            ``edge_attr [*, edge_dim]``, ``edge_layer``, ``edge_type`` ``[*]`` long -> ``[*, hidden]``.
        """
        e = self.edge_in(edge_attr) + self.edge_layer_emb(edge_layer)
        if edge_type is not None:
            free = self.edge_type_free[edge_type]
            if bool(free.any()):
                self._require_types()
                e = e + self.edge_type_emb(edge_type) * free.unsqueeze(-1)
        return e

    def _edge_attr(self, g: Batch) -> Tensor:
        edge_attr = g.edge_attr.float()
        if edge_attr.shape[1] > self.edge_dim:
            raise WeightzooError(
                f"edge features of size {edge_attr.shape[1]} exceed this gmn's edge_dim {self.edge_dim}: "
                + _REMEDY)
        if edge_attr.shape[1] < self.edge_dim:
            edge_attr = nn.functional.pad(edge_attr, (0, self.edge_dim - edge_attr.shape[1]))
        return edge_attr

    def _embed(self, g: Batch, probe_nodes: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if int(g.layer.max()) >= self.max_layers:
            raise WeightzooError(
                f"a network in the batch has {int(g.layer.max()) + 1} neuron groups (layers); this gmn "
                f"was built for at most {self.max_layers}: " + _REMEDY)
        if int(g.io_pos.max()) >= self.max_io:
            raise WeightzooError(
                f"a network in the batch has more input/output neurons than the {self.max_io} this "
                f"gmn was built for: " + _REMEDY)
        # Neuron graphs of layer chains (weightspace.representations.graph) carry no types: all
        # their neurons and weights are of the reference type.
        h = self.embed_nodes(g.x[:, 0], g.layer, g.node_kind, g.io_pos, getattr(g, "node_type", None))
        if self.probe_in is not None and probe_nodes is not None:
            h = h + self.probe_in(probe_nodes)
        e = self.embed_edges(self._edge_attr(g), g.edge_layer, getattr(g, "edge_type", None))
        return h, e

    def _trunk(self, g: Batch, params: Mapping[str, Tensor] | None = None,
               spec: NetworkSpec | None = None) -> tuple[Tensor, Tensor]:
        h, e = self._embed(g, self._probe_nodes(params, spec))
        for layer in self.layers:
            h, e = layer(h, e, g.edge_index)
        return h, e

    def forward(self, params: Mapping[str, Tensor] | Batch) -> Tensor:
        if isinstance(params, Batch):
            return self._forward(params)
        return self._forward(self.to_graph(params), params)

    def forward_other_arch(self, params: Mapping[str, Tensor], spec: NetworkSpec) -> Tensor:
        """Networks of another architecture: their parameter graphs, and their probe values
        (``spec``'s neurons) when the model has probe features."""
        return self._forward(self.to_graph(params, spec), params, spec)

    def _forward(self, g: Batch, params: Mapping[str, Tensor] | None = None,
                 spec: NetworkSpec | None = None) -> Tensor:
        h, e = self._trunk(g, params, spec)
        n_graphs = g.num_graphs
        edge_batch = g.batch[g.edge_index[0]]
        node_pool = scatter(h, g.batch, dim=0, dim_size=n_graphs, reduce="mean")
        edge_pool = scatter(e, edge_batch, dim=0, dim_size=n_graphs, reduce="mean")
        out = self.readout(torch.cat([node_pool, edge_pool], dim=-1))
        node_type, edge_type = getattr(g, "node_type", None), getattr(g, "edge_type", None)
        if not self.typed or node_type is None or edge_type is None:  # (types were checked by _embed)
            return out
        typed = scatter(self.node_type_free[node_type], g.batch, dim=0, dim_size=n_graphs, reduce="max")
        if not bool(typed.any()):
            return out
        nt, et = len(NODE_TYPES), len(EDGE_TYPES)
        node_types = scatter(h, g.batch * nt + node_type, dim=0, dim_size=n_graphs * nt, reduce="mean")
        edge_types = scatter(e, edge_batch * et + edge_type, dim=0, dim_size=n_graphs * et, reduce="mean")
        pools = torch.cat([node_types.reshape(n_graphs, -1), edge_types.reshape(n_graphs, -1)], dim=-1)
        return out + self.type_readout(pools) * typed.unsqueeze(-1)  # [B, out_dim]

    def forward_graph(self, g: Batch, params: Mapping[str, Tensor] | None = None,
                      spec: NetworkSpec | None = None) -> tuple[Tensor, Tensor]:
        """Equivariant output: a new value per node and a new weight (kernel, norm slots) per edge.

        Shapes:
            ``Batch`` -> ``(node values [N], edge values [E, edge_dim])``; values of input
            neurons, constant edges and padded entries are ignored by the conversion back to
            parameters. ``params``: the same networks as a parameter dict of architecture
            ``spec`` (default the model's first; needed with probe features).
        """
        h, e = self._trunk(g, params, spec)
        value = g.x[:, 0].float() + self.edit_scale * self.node_head(h).squeeze(-1)
        return value, self._edge_attr(g) + self.edit_scale * self.edge_head(e)

    def forward_weights(self, params: Mapping[str, Tensor], spec: NetworkSpec | None = None) -> dict[str, Tensor]:
        """Map each network to a new network of the same architecture (``spec``, default the
        model's first), through the parameter graph and back."""
        spec = spec or self.spec
        values, edges = self.forward_graph(self.to_graph(params, spec), params, spec)
        return param_graph_to_params(spec, values, edges)
