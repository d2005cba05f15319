"""Neuron-permutation symmetries of any architecture: residual streams and attention heads.

For a layer chain, the hidden neurons of each layer can be permuted on their own
(:mod:`weightspace.symmetry`). In a graph architecture the permutable sets are larger and fewer:

- **Neuron groups.** A linear layer, a convolution, an embedding or an attention's
  out-projection makes new features (channels). Permuting them permutes its weight rows and bias,
  and every parameter that reads or follows those features: the next layers' weight columns
  (per position block after a ``flatten``, per patch block after ``patchify``), batch norm's
  ``weight``/``bias``/``running_mean``/``running_var``, layer norm's ``weight``/``bias``, a
  position embedding's columns. Elementwise nodes (activation, dropout, pools) pass the features
  through. An ``add`` ties its inputs: every tensor feeding a residual stream - and so every
  layer writing to it, and every norm along it - is permuted by the *same* permutation. Features
  tied to the network's input or output have a fixed meaning and are never permuted.
- **Attention heads** (the layout of :class:`catalog.nodes.Attention`: ``in_proj_weight`` rows
  ``[q; k; v]``, each ``[heads, head_dim]``): the heads can be permuted as blocks; within a head,
  the query and key dims jointly (``q . k`` is a sum over them), and the value dims jointly with
  the out-projection's columns.

:func:`graph_symmetries` works these sets out from a spec (a chain is read as its graph; for an
MLP it gives exactly the per-layer groups), :func:`random_graph_permutation` draws one
permutation per network, and :func:`permute_graph` applies it to stacked parameters
``{name: Tensor[B, *shape]}``. Where a layout is not understood (a grouped convolution, a
layer reading a map along an axis other than its channels, an ``add`` of differently laid out
tensors) the features involved are conservatively treated as fixed: the result is always a
symmetry, possibly a smaller one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec
from catalog.nodes import INPUT
from weightspace.representations.flat import _check_params
from weightspace.symmetry import _gather


@dataclass(frozen=True)
class ParamAxis:
    """One axis of a parameter indexed by a neuron group.

    Args:
        name: the parameter (or buffer) name.
        dim: the axis in the per-network shape (no batch dim).
        outer: blocks before the group's index along that axis (``[outer, n, inner]`` layout;
            e.g. tokens of a flattened sequence; default ``1``).
        inner: values per neuron after it (e.g. positions of a flattened map, values of a patch;
            default ``1``).
    """

    name: str
    dim: int
    outer: int = 1
    inner: int = 1


@dataclass(frozen=True)
class NeuronGroup:
    """Neurons that can be permuted together, and every parameter axis the permutation moves.

    Args:
        name: the node that made the neurons (the first one, for a residual stream).
        size: the number of neurons.
        axes: the parameter axes re-indexed by a permutation of the group.
        nodes: every node whose output carries these neurons (makers, norms, adds, ...).
    """

    name: str
    size: int
    axes: tuple[ParamAxis, ...]
    nodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class HeadGroup:
    """The heads of one attention node (:class:`catalog.nodes.Attention` layout).

    Args:
        node: the attention node's name.
        num_heads: heads. head_dim: dims per head.
        bias: whether ``in_proj_bias`` exists.
    """

    node: str
    num_heads: int
    head_dim: int
    bias: bool


@dataclass(frozen=True)
class GraphSymmetry:
    """The neuron-permutation symmetries of one architecture (:func:`graph_symmetries`)."""

    spec: NetworkSpec
    neurons: tuple[NeuronGroup, ...]
    heads: tuple[HeadGroup, ...]

    def group(self, name: str) -> NeuronGroup:
        """The neuron group made by node ``name``."""
        for g in self.neurons:
            if g.name == name:
                return g
        raise WeightzooError(f"no permutable neuron group {name!r}; groups: {[g.name for g in self.neurons]}")


@dataclass
class GraphPermutation:
    """One permutation per network: ``neurons {group name: LongTensor[B, n]}`` (new neuron ``k``
    is old neuron ``perm[b, k]``) and ``heads {attention node: (heads [B, H], qk [B, H, d],
    v [B, H, d])}`` (new head ``h`` is old head ``heads[b, h]``; its query/key dim ``j`` is the
    old head's dim ``qk[b, h, j]``, its value dim ``j`` the old head's ``v[b, h, j]``)."""

    neurons: dict[str, Tensor] = field(default_factory=dict)
    heads: dict[str, tuple[Tensor, Tensor, Tensor]] = field(default_factory=dict)


# ================================================================================ the walk
@dataclass(frozen=True)
class _Rec:
    """Where a tensor's features sit: its space, whether on the first axis of the per-example
    shape (else the last; a vector's one axis is both), and the ``[outer, n, inner]`` layout."""

    space: int
    first: bool
    outer: int = 1
    inner: int = 1


class _Spaces:
    """Union-find over feature spaces, with each space's size, fixedness and parameter axes."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.fixed: list[bool] = []
        self.name: list[str] = []
        self.axes: list[list[ParamAxis]] = []
        self.nodes: list[list[str]] = []

    def new(self, n: int, name: str, fixed: bool = False) -> int:
        self.parent.append(len(self.parent))
        self.size.append(n)
        self.fixed.append(fixed)
        self.name.append(name)
        self.axes.append([])
        self.nodes.append([name])
        return len(self.parent) - 1

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def fix(self, i: int) -> None:
        self.fixed[self.find(i)] = True

    def union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a == b:
            return a
        if self.size[a] != self.size[b]:  # cannot be tied neuron to neuron: keep both as they are
            self.fix(a)
            self.fix(b)
            return a
        lo, hi = min(a, b), max(a, b)  # the earlier space names the union
        self.parent[hi] = lo
        self.fixed[lo] = self.fixed[lo] or self.fixed[hi]
        return lo

    def add_axis(self, rec: _Rec, name: str, dim: int) -> None:
        self.axes[rec.space].append(ParamAxis(name, dim, rec.outer, rec.inner))


def _reads(rec: _Rec, shape: tuple[int, ...], first: bool) -> bool:
    """Whether a node reading the ``first`` (else last) axis of ``shape`` reads ``rec``'s features."""
    return len(shape) == 1 or rec.first == first


_CACHE: dict[tuple, GraphSymmetry] = {}


def graph_symmetries(spec: NetworkSpec) -> GraphSymmetry:
    """The permutable neuron groups and attention heads of ``spec`` (any architecture; cached).

    Returns:
        a :class:`GraphSymmetry`: neuron groups (residual streams tied across every ``add``) and
        one head group per attention node.
    """
    key = (spec.input_shape, spec.layers, spec.nodes)
    if key in _CACHE:
        return _CACHE[key]
    graph = spec.as_graph(ignore_shift=True)  # an output shift moves no neuron
    shapes = graph.shapes
    sp = _Spaces()
    rec: dict[str, _Rec] = {INPUT: _Rec(sp.new(graph.input_shape[0], INPUT, fixed=True), True)}
    heads: list[HeadGroup] = []
    for node in graph.nodes:
        kind, name = node.KIND, node.name
        ins = [rec[i] for i in node.inputs]
        x = ins[0]
        in_shape = shapes[node.inputs[0]]
        out_shape = shapes[name]
        out_first = len(out_shape) == 1
        if kind == "linear":
            if _reads(x, in_shape, first=False):
                sp.add_axis(x, f"{name}.weight", 1)
            else:
                sp.fix(x.space)
            out = _Rec(sp.new(node.out_features, name), out_first)
            sp.add_axis(out, f"{name}.weight", 0)
            if node.bias:
                sp.add_axis(out, f"{name}.bias", 0)
        elif kind in ("conv1d", "conv2d"):
            if node.groups == 1 and _reads(x, in_shape, first=True) and x.outer == x.inner == 1:
                sp.add_axis(x, f"{name}.weight", 1)
            else:  # grouped convolutions tie channels group-wise: left fixed
                sp.fix(x.space)
            out = _Rec(sp.new(node.out_channels, name, fixed=node.groups != 1), True)
            sp.add_axis(out, f"{name}.weight", 0)
            if node.bias:
                sp.add_axis(out, f"{name}.bias", 0)
        elif kind in ("batchnorm", "layernorm"):
            if _reads(x, in_shape, first=kind == "batchnorm"):
                for suffix, _, _ in node.param_shapes():
                    sp.add_axis(x, f"{name}.{suffix}", 0)
                sp.nodes[x.space].append(name)
            else:
                sp.fix(x.space)
            out = x
        elif kind == "pos_embedding":
            if _reads(x, in_shape, first=False):
                sp.add_axis(x, f"{name}.weight", 1)
            else:
                sp.fix(x.space)
            out = x
        elif kind == "embedding":
            out = _Rec(sp.new(node.dim, name), out_first)
            sp.add_axis(out, f"{name}.weight", 1)
        elif kind == "attention":
            if _reads(x, in_shape, first=False):
                sp.add_axis(x, f"{name}.in_proj_weight", 1)
            else:
                sp.fix(x.space)
            heads.append(HeadGroup(name, node.num_heads, node.embed_dim // node.num_heads, node.bias))
            out = _Rec(sp.new(node.embed_dim, name), out_first)
            sp.add_axis(out, f"{name}.out_proj.weight", 0)
            if node.bias:
                sp.add_axis(out, f"{name}.out_proj.bias", 0)
        elif kind == "add":
            same = all(r.first == x.first and r.outer == x.outer and r.inner == x.inner for r in ins)
            if same:
                root = x.space
                for r in ins[1:]:
                    root = sp.union(root, r.space)
                out = _Rec(root, x.first, x.outer, x.inner)
                sp.nodes[sp.find(root)].append(name)
            else:
                for r in ins:
                    sp.fix(r.space)
                out = x
        elif kind == "flatten":
            if len(in_shape) == 1:
                out = x
            elif x.first and x.outer == x.inner == 1:  # [C, *S] -> C blocks of prod(S) positions
                out = _Rec(x.space, True, 1, math.prod(in_shape[1:]))
            elif not x.first:  # [*, D] -> prod(*) blocks of D features
                out = _Rec(x.space, True, x.outer * math.prod(in_shape[:-1]), x.inner)
            else:
                sp.fix(x.space)
                out = x
        elif kind == "patchify":
            if x.first and x.outer == x.inner == 1:  # [C, H, W] -> tokens of (c, row, col)
                out = _Rec(x.space, False, 1, math.prod(node.patch_size))
            else:
                sp.fix(x.space)
                out = x
        elif kind == "global_pool":
            if node.over == "tokens":
                ok = _reads(x, in_shape, first=False)
            else:
                ok = _reads(x, in_shape, first=True) and x.outer == x.inner == 1
            if not ok:
                sp.fix(x.space)
            out = _Rec(x.space, True, x.outer, x.inner)
        elif kind in ("maxpool", "avgpool"):
            if not _reads(x, in_shape, first=True):
                sp.fix(x.space)
            out = x
        else:  # activation, dropout: elementwise
            out = x
        rec[name] = out
    sp.fix(rec[graph.nodes[-1].name].space)  # the output's features mean classes
    by_root: dict[int, list[int]] = {}
    for i in range(len(sp.parent)):
        by_root.setdefault(sp.find(i), []).append(i)
    groups = []
    for root, members in sorted(by_root.items()):
        if sp.fixed[root] or sp.size[root] < 2:
            continue
        axes = tuple(a for m in members for a in sp.axes[m])
        nodes = tuple(dict.fromkeys(n for m in members for n in sp.nodes[m]))
        groups.append(NeuronGroup(sp.name[root], sp.size[root], axes, nodes))
    sym = GraphSymmetry(spec, tuple(groups), tuple(heads))
    _CACHE[key] = sym
    return sym


# ================================================================================ permutations
def random_graph_permutation(sym: GraphSymmetry, batch: int,
                             generator: torch.Generator | None = None) -> GraphPermutation:
    """Independent uniform permutations of every neuron group and attention's heads and head
    dims, per network.

    Shapes:
        ``neurons {group: LongTensor[batch, n]}``; ``heads {node: ([batch, H], [batch, H, d], [batch, H, d])}``.
    """
    perm = GraphPermutation()
    for g in sym.neurons:
        perm.neurons[g.name] = torch.rand(batch, g.size, generator=generator).argsort(dim=1)
    for h in sym.heads:
        perm.heads[h.node] = (
            torch.rand(batch, h.num_heads, generator=generator).argsort(dim=1),
            torch.rand(batch, h.num_heads, h.head_dim, generator=generator).argsort(dim=2),
            torch.rand(batch, h.num_heads, h.head_dim, generator=generator).argsort(dim=2))
    return perm


def _axis_index(perm: Tensor, outer: int, inner: int) -> Tensor:
    """``[B, n]`` neuron permutation -> ``[B, outer * n * inner]`` index of the ``[outer, n, inner]`` axis."""
    b, n = perm.shape
    base = torch.arange(outer * n * inner, device=perm.device).view(1, outer, n, inner).expand(b, -1, -1, -1)
    return base.gather(2, perm.view(b, 1, n, 1).expand(-1, outer, -1, inner)).reshape(b, -1)


def _batched(t: Tensor, batch: int, name: str, shape: tuple[int, ...]) -> Tensor:
    """A permutation ``[*shape]`` or ``[B, *shape]`` (over the last dim) as ``[B, *shape]``, checked."""
    if tuple(t.shape) not in (tuple(shape), (batch, *shape)):
        raise WeightzooError(f"{name} has shape {list(t.shape)}, expected {list(shape)} or [{batch}, *{list(shape)}]")
    t = t.long().expand(batch, *shape)
    if not torch.equal(t.sort(dim=-1).values, torch.arange(shape[-1], device=t.device).expand_as(t)):
        raise WeightzooError(f"{name} is not a permutation of 0..{shape[-1] - 1}")
    return t


def permute_graph(sym: GraphSymmetry, params: Mapping[str, Tensor], perm: GraphPermutation) -> dict[str, Tensor]:
    """Apply a neuron/head permutation to a batch of networks (new tensors; the input is untouched).

    Args:
        sym: the architecture's symmetries (:func:`graph_symmetries`; its groups may be edited,
            e.g. to build a deliberately wrong permutation in a test).
        params: ``{name: Tensor[B, *shape]}``.
        perm: permutations of some or all groups, one for all networks (``[n]``) or one per
            network (``[B, n]``), as :class:`GraphPermutation` describes.

    Shapes:
        returns ``{name: Tensor[B, *shape]}``.
    """
    batch = _check_params(sym.spec, params)
    out = dict(params)
    groups = {g.name: g for g in sym.neurons}
    for name, p in perm.neurons.items():
        if name not in groups:
            raise WeightzooError(f"no permutable neuron group {name!r}; groups: {sorted(groups)}")
        g = groups[name]
        p = _batched(p, batch, f"permutation of {name!r}", (g.size,))
        for ax in g.axes:
            idx = _axis_index(p.to(out[ax.name].device), ax.outer, ax.inner)
            out[ax.name] = _gather(out[ax.name], ax.dim + 1, idx)
    heads = {h.node: h for h in sym.heads}
    for node, (hp, qk, v) in perm.heads.items():
        if node not in heads:
            raise WeightzooError(f"no attention node {node!r}; attention nodes: {sorted(heads)}")
        h = heads[node]
        n_h, d = h.num_heads, h.head_dim
        e = n_h * d
        hp = _batched(hp, batch, f"head permutation of {node!r}", (n_h,))
        qk = _batched(qk, batch, f"query/key permutation of {node!r}", (n_h, d))
        v = _batched(v, batch, f"value permutation of {node!r}", (n_h, d))
        dev = out[f"{node}.in_proj_weight"].device
        hp, qk, v = hp.to(dev), qk.to(dev), v.to(dev)
        # new dim (h, j) of a block is old dim (hp[h], within[h, j])
        qk_idx = (hp.unsqueeze(-1) * d + qk).reshape(batch, e)
        v_idx = (hp.unsqueeze(-1) * d + v).reshape(batch, e)
        rows = torch.cat([qk_idx, qk_idx + e, v_idx + 2 * e], dim=1)  # [B, 3E]
        out[f"{node}.in_proj_weight"] = _gather(out[f"{node}.in_proj_weight"], 1, rows)
        if h.bias:
            out[f"{node}.in_proj_bias"] = _gather(out[f"{node}.in_proj_bias"], 1, rows)
        out[f"{node}.out_proj.weight"] = _gather(out[f"{node}.out_proj.weight"], 2, v_idx)
    return out


class RandomGraphSymmetry:
    """Augmentation: a random neuron/head permutation of each network of a batch (any
    architecture; :class:`weightspace.symmetry.RandomNeuronSymmetry` uses it for graphs).

    Args:
        spec: the architecture.
        seed: seed of the transform's own generator (default ``None``: torch's global RNG).

    Shapes:
        ``{name: Tensor[B, *shape]}`` -> ``{name: Tensor[B, *shape]}`` (new tensors).
    """

    def __init__(self, spec: NetworkSpec, seed: int | None = None) -> None:
        self.spec = spec
        self.sym = graph_symmetries(spec)
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)

    def __call__(self, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        batch = _check_params(self.spec, params)
        return permute_graph(self.sym, params, random_graph_permutation(self.sym, batch, self.generator))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(family={self.spec.family!r}, groups={len(self.sym.neurons)}, "
                f"attention={len(self.sym.heads)})")
