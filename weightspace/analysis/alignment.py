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
permutations applied. Attention heads are not matched (they keep their order).
"""

from __future__ import annotations

from collections.abc import Sequence

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


def _group_cost(group, a: dict[str, Tensor], b: dict[str, Tensor]) -> Tensor:
    """``[n, n]``: entry ``(i, j)`` is the inner product of A's neuron ``i`` with B's neuron ``j``
    of a neuron group over every parameter axis the group moves (``b`` with the other groups'
    permutations applied)."""
    cost = torch.zeros(group.size, group.size, dtype=torch.float64)
    for ax in group.axes:
        def rows(t: Tensor, ax=ax) -> Tensor:  # [n, rest]: the axis as [outer, n, inner], n first
            t = t.movedim(ax.dim, 0)
            t = t.reshape(ax.outer, group.size, ax.inner, -1)
            return t.permute(1, 0, 2, 3).reshape(group.size, -1)
        cost += rows(a[ax.name]) @ rows(b[ax.name]).T
    return cost


def graph_weight_matching(
    spec: NetworkSpec, params_a: Params, params_b: Params, max_iter: int = 100,
    seed: int | Sequence[int] = 0,
):
    """The neuron-group permutations that align each graph network B to its network A.

    Args: as :func:`weight_matching`, for any architecture.

    Returns:
        a :class:`~weightspace.graph_symmetry.GraphPermutation` (``neurons {group: LongTensor[M, n]}``);
        apply it with :func:`~weightspace.graph_symmetry.permute_graph` (or use :func:`align_to`).
    """
    from weightspace.graph_symmetry import GraphPermutation, graph_symmetries, permute_graph

    m = same_population(spec, params_a, params_b)
    if not isinstance(max_iter, int) or max_iter < 1:
        raise WeightzooError(f"max_iter must be a positive integer, got {max_iter!r}")
    sym = graph_symmetries(spec)
    groups = list(sym.neurons)
    result = GraphPermutation({g.name: torch.empty(m, g.size, dtype=torch.long) for g in groups})
    for i, s in enumerate(member_seeds(seed, m)):
        a = {k: v[i:i + 1].detach().double() for k, v in params_a.items()}
        b = {k: v[i:i + 1].detach().double() for k, v in params_b.items()}
        perms = {g.name: torch.arange(g.size) for g in groups}
        gen = torch.Generator().manual_seed(s)
        for _ in range(max_iter):
            improved = False
            for gi in torch.randperm(len(groups), generator=gen).tolist():
                g = groups[gi]
                others = GraphPermutation({k: v for k, v in perms.items() if k != g.name})
                b_others = permute_graph(sym, b, others)
                cost = _group_cost(g, {k: v[0] for k, v in a.items()}, {k: v[0] for k, v in b_others.items()})
                cost = cost.numpy()
                _, col = linear_sum_assignment(cost, maximize=True)
                idx = np.arange(len(col))
                old, new = cost[idx, perms[g.name].numpy()].sum(), cost[idx, col].sum()
                # Only a strict gain (beyond rounding) counts: equal-value ties would cycle.
                if new > old + 1e-12 * max(1.0, abs(old)):
                    perms[g.name] = torch.as_tensor(col, dtype=torch.long)
                    improved = True
            if not improved:
                break
        for g in groups:
            result.neurons[g.name][i] = perms[g.name]
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
