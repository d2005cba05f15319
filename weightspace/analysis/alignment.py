"""Weight matching (git re-basin, Ainsworth et al. 2023): permute network B's hidden neurons to
line its weights up with network A's.

Per hidden layer ``l`` it looks for the permutation ``P_l`` maximizing
``sum_l <W_a^l, P_l W_b^l P_{l-1}^T>_F`` (biases included, convolution kernels flattened; input
and output neurons stay fixed). Over one layer with the others held fixed this is a linear
assignment problem (``scipy.optimize.linear_sum_assignment``) whose cost collects the layer's
incoming weights and bias and the next layer's outgoing weights; coordinate descent visits the
hidden layers in a random order until a full sweep improves nothing. The permutations use
:func:`weightspace.symmetry.permute_neurons`'s convention (new neuron ``k`` = old neuron
``perm[k]``), and the aligned network computes exactly what B computes.

Pairs are matched one at a time (the assignment solver is sequential); each pair's layer
order comes from its own generator.

Graph architectures (ResNet, VGG, ViT, ...) are matched over their neuron groups
(:func:`weightspace.graph_symmetry.graph_symmetries`): a residual stream's channels are one group
(one permutation for every layer writing to it and every norm along it), and a group's cost
collects every parameter axis it moves (batch-norm statistics included), the other groups' current
permutations applied; an attention node's heads are matched as blocks, with their query/key and
value dims.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec
from weightspace.analysis._population import Params, member_seeds, same_population
from weightspace.symmetry import hidden_layers, permute_neurons


def _gather(t: Tensor, dim: int, perm: Tensor | None) -> Tensor:
    return t if perm is None else t.index_select(dim, perm)


def _layer_cost(spec: NetworkSpec, a: dict[str, Tensor], b: dict[str, Tensor], li: int,
                perms: dict[int, Tensor]) -> Tensor:
    """``[n, n]``: entry ``(i, j)`` is the inner product of A's neuron ``i`` with B's neuron
    ``j`` of layer ``li`` (incoming weights under B's input permutation, bias, and outgoing
    weights under B's output permutation)."""
    layer, nxt = spec.layers[li], spec.layers[li + 1]
    n = layer.out_features
    w_b = _gather(b[layer.weight], 1, perms.get(li - 1))
    cost = a[layer.weight].reshape(n, -1) @ w_b.reshape(n, -1).T
    if layer.bias is not None:
        cost = cost + torch.outer(a[layer.bias], b[layer.bias])
    out_a = a[nxt.weight].transpose(0, 1).reshape(n, -1)
    out_b = _gather(b[nxt.weight], 0, perms.get(li + 1)).transpose(0, 1).reshape(n, -1)
    return cost + out_a @ out_b.T


def weight_matching(
    spec: NetworkSpec, params_a: Params, params_b: Params, max_iter: int = 100,
    seed: int | Sequence[int] = 0,
) -> dict[int, Tensor]:
    """The hidden-neuron permutations that align each network B to its network A.

    Args:
        spec: the shared architecture (MLP or CNN chain of the zoo format).
        params_a: ``{name: Tensor[M, *shape]}`` the reference networks.
        params_b: ``{name: Tensor[M, *shape]}`` the networks to permute.
        max_iter: maximum sweeps over the hidden layers (default ``100``).
        seed: pair ``i`` visits the layers in an order drawn from a generator seeded
            ``seed + i`` (default ``0``), or give one seed per pair.

    Shapes:
        returns ``{hidden layer index: LongTensor[M, n_l]}``; pass it to
        :func:`weightspace.symmetry.permute_neurons` with ``params_b`` (or use :func:`align_to`).
    """
    m = same_population(spec, params_a, params_b)
    if not isinstance(max_iter, int) or max_iter < 1:
        raise WeightzooError(f"max_iter must be a positive integer, got {max_iter!r}")
    layers = hidden_layers(spec)
    result = {li: torch.empty(m, spec.layers[li].out_features, dtype=torch.long) for li in layers}
    for i, s in enumerate(member_seeds(seed, m)):
        a = {k: v[i].detach().double() for k, v in params_a.items()}
        b = {k: v[i].detach().double() for k, v in params_b.items()}
        perms = {li: torch.arange(spec.layers[li].out_features) for li in layers}
        gen = torch.Generator().manual_seed(s)
        for _ in range(max_iter):
            improved = False
            for li in torch.randperm(len(layers), generator=gen).tolist():
                li = layers[li]
                cost = _layer_cost(spec, a, b, li, perms).numpy()
                _, col = linear_sum_assignment(cost, maximize=True)
                rows = np.arange(len(col))
                old = cost[rows, perms[li].numpy()].sum()
                new = cost[rows, col].sum()
                # Only a strict gain (beyond rounding) counts: equal-value ties would cycle.
                if new > old + 1e-12 * max(1.0, abs(old)):
                    perms[li] = torch.as_tensor(col, dtype=torch.long)
                    improved = True
            if not improved:
                break
        for li in layers:
            result[li][i] = perms[li]
    return result


def _group_cost(group, a: dict[str, Tensor], b: dict[str, Tensor], trained: Collection[str]) -> Tensor:
    """``[n, n]``: entry ``(i, j)`` is the inner product of A's neuron ``i`` with B's neuron ``j``
    of a neuron group over every axis of a ``trained`` parameter the group moves (``b`` with the
    other groups' permutations applied). Batch-norm running statistics move with their neurons
    but do not vote: they are not weights, and whoever averages or compares aligned networks
    recomputes them."""
    cost = torch.zeros(group.size, group.size, dtype=torch.float64)
    for ax in (ax for ax in group.axes if ax.name in trained):
        def rows(t: Tensor, ax=ax) -> Tensor:  # [n, rest]: the axis as [outer, n, inner], n first
            t = t.movedim(ax.dim, 0)
            t = t.reshape(ax.outer, group.size, ax.inner, -1)
            return t.permute(1, 0, 2, 3).reshape(group.size, -1)
        cost += rows(a[ax.name]) @ rows(b[ax.name]).T
    return cost


def _lap(cost: np.ndarray) -> tuple[np.ndarray, float]:
    """The assignment maximizing ``cost`` (``col[i]`` for row ``i``) and its value."""
    _, col = linear_sum_assignment(cost, maximize=True)
    return col, float(cost[np.arange(len(col)), col].sum())


def _head_blocks(h, t: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """One attention node's parameters as ``[H, d, features]`` blocks: the query/key dims (q and
    k rows, biases) and the value dims (v rows, bias, out-projection columns)."""
    n_h, d = h.num_heads, h.head_dim
    w = t[f"{h.node}.in_proj_weight"].reshape(3, n_h, d, -1)                 # [3, H, d, E]
    if h.bias:
        w = torch.cat([w, t[f"{h.node}.in_proj_bias"].reshape(3, n_h, d, 1)], -1)
    qk = torch.cat([w[0], w[1]], -1)                                        # [H, d, 2(E+1)]
    out = t[f"{h.node}.out_proj.weight"].T.reshape(n_h, d, -1)               # [H, d, E]
    return qk, torch.cat([w[2], out], -1)


def _head_step(h, a: dict[str, Tensor], b: dict[str, Tensor]) -> tuple[tuple[Tensor, Tensor, Tensor], float]:
    """The head order and within-head dims of B's attention node best matching A's (others held),
    and the matched value."""
    blocks_a, blocks_b = _head_blocks(h, a), _head_blocks(h, b)
    n_h = h.num_heads
    value = np.zeros((n_h, n_h))
    within: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    for i in range(n_h):
        for j in range(n_h):
            cols, total = [], 0.0
            for xa, xb in zip(blocks_a, blocks_b):
                col, v = _lap((xa[i] @ xb[j].T).numpy())
                cols.append(col)
                total += v
            value[i, j], within[i, j] = total, (cols[0], cols[1])
    heads, best = _lap(value)
    qk = torch.as_tensor(np.stack([within[i, j][0] for i, j in enumerate(heads)]), dtype=torch.long)
    v = torch.as_tensor(np.stack([within[i, j][1] for i, j in enumerate(heads)]), dtype=torch.long)
    return (torch.as_tensor(heads, dtype=torch.long), qk, v), best


def graph_weight_matching(
    spec: NetworkSpec, params_a: Params, params_b: Params, max_iter: int = 100,
    seed: int | Sequence[int] = 0,
):
    """The neuron-group and attention-head permutations that align each graph network B to its
    network A.

    Coordinate descent over the units of :func:`weightspace.graph_symmetry.graph_symmetries`:
    a neuron group solves one assignment over its neurons; an attention node one over its heads,
    each head pair scored by the best assignment of its query/key dims and of its value dims.

    Args: as :func:`weight_matching`, for any architecture.

    Returns:
        a :class:`~weightspace.graph_symmetry.GraphPermutation` (``neurons {group: [M, n]}``,
        ``heads {node: ([M, H], [M, H, d], [M, H, d])}``); apply it with
        :func:`~weightspace.graph_symmetry.permute_graph` (or use :func:`align_to`).
    """
    from weightspace.graph_symmetry import GraphPermutation, graph_symmetries, permute_graph

    m = same_population(spec, params_a, params_b)
    if not isinstance(max_iter, int) or max_iter < 1:
        raise WeightzooError(f"max_iter must be a positive integer, got {max_iter!r}")
    sym = graph_symmetries(spec)
    trained = {p.name for p in spec.params if p.trainable}
    units = [("neurons", g) for g in sym.neurons] + [("heads", h) for h in sym.heads]
    result = GraphPermutation(
        {g.name: torch.empty(m, g.size, dtype=torch.long) for g in sym.neurons},
        {h.node: tuple(torch.empty(m, *shape, dtype=torch.long)
                       for shape in ((h.num_heads,), (h.num_heads, h.head_dim), (h.num_heads, h.head_dim)))
         for h in sym.heads})
    for i, s in enumerate(member_seeds(seed, m)):
        a = {k: v[i:i + 1].detach().double() for k, v in params_a.items()}
        b = {k: v[i:i + 1].detach().double() for k, v in params_b.items()}
        a0 = {k: v[0] for k, v in a.items()}
        perm = GraphPermutation({g.name: torch.arange(g.size) for g in sym.neurons},
                                {h.node: (torch.arange(h.num_heads),
                                          torch.arange(h.head_dim).repeat(h.num_heads, 1),
                                          torch.arange(h.head_dim).repeat(h.num_heads, 1)) for h in sym.heads})
        gen = torch.Generator().manual_seed(s)
        for _ in range(max_iter):
            improved = False
            for ui in torch.randperm(len(units), generator=gen).tolist():
                kind, unit = units[ui]
                key = unit.name if kind == "neurons" else unit.node
                # B with every other unit's current permutation applied
                others = GraphPermutation({k: v for k, v in perm.neurons.items() if (kind, k) != ("neurons", key)},
                                          {k: v for k, v in perm.heads.items() if (kind, k) != ("heads", key)})
                b0 = {k: v[0] for k, v in permute_graph(sym, b, others).items()}
                if kind == "neurons":
                    cost = _group_cost(unit, a0, b0, trained).numpy()
                    col, new = _lap(cost)
                    old = float(cost[np.arange(len(col)), perm.neurons[key].numpy()].sum())
                    candidate = torch.as_tensor(col, dtype=torch.long)
                else:
                    candidate, new = _head_step(unit, a0, b0)
                    current = permute_graph(sym, {k: v.unsqueeze(0) for k, v in b0.items()},
                                            GraphPermutation(heads={key: perm.heads[key]}))
                    blocks_b = _head_blocks(unit, {k: v[0] for k, v in current.items()})
                    old = float(sum((xa * xb).sum() for xa, xb in zip(_head_blocks(unit, a0), blocks_b)))
                # Only a strict gain (beyond rounding) counts: equal-value ties would cycle.
                if new > old + 1e-12 * max(1.0, abs(old)):
                    (perm.neurons if kind == "neurons" else perm.heads)[key] = candidate
                    improved = True
            if not improved:
                break
        for k, v in perm.neurons.items():
            result.neurons[k][i] = v
        for k, (hp, qk, v) in perm.heads.items():
            result.heads[k][0][i], result.heads[k][1][i], result.heads[k][2][i] = hp, qk, v
    return result


def align_to(
    spec: NetworkSpec, params_a: Params, params_b: Params, max_iter: int = 100,
    seed: int | Sequence[int] = 0,
) -> dict[str, Tensor]:
    """Network B of each pair with its hidden neurons permuted by :func:`weight_matching` to
    line up with network A (the same function as B, other weights).

    Args:
        spec: the shared architecture.
        params_a: ``{name: Tensor[M, *shape]}`` the reference networks.
        params_b: ``{name: Tensor[M, *shape]}`` the networks to permute.
        max_iter: maximum sweeps over the hidden layers (default ``100``).
        seed: seed of the layer order (see :func:`weight_matching`).

    Shapes:
        returns ``{name: Tensor[M, *shape]}``.
    """
    if not spec.is_chain:
        from weightspace.graph_symmetry import graph_symmetries, permute_graph

        perm = graph_weight_matching(spec, params_a, params_b, max_iter, seed)
        return permute_graph(graph_symmetries(spec), params_b, perm)
    perms = weight_matching(spec, params_a, params_b, max_iter, seed)
    return permute_neurons(spec, params_b, perms)
