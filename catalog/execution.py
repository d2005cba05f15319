"""Running graph networks (format v2): one member, a whole population, or an ``nn.Module``.

One function, :func:`graph_forward`, computes a single network on a batch, node after node
(:meth:`Node.forward <catalog.nodes.Node.forward>`). A population of ``P`` networks runs node
after node too, each node computing all members at once on ``[P, B, *shape]`` values
(:func:`graph_population_forward`, :meth:`Node.population_forward
<catalog.nodes.Node.population_forward>`: batched matrix products, grouped convolutions, batch
norm with the members as channels), so every member has its own weights, batch-norm statistics
and dropout masks, and computes what it computes alone. :class:`GraphNetwork` is the
plain ``nn.Module`` rebuilt from a spec, with the spec's parameter names as ``state_dict`` keys.
"""

from __future__ import annotations

import ctypes
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from catalog.errors import ZooFormatError
from catalog.nodes import BUFFER_ROLES, INPUT, Context, FeatureAffine

if TYPE_CHECKING:
    from catalog.network import NetworkSpec


#: Members x examples per evaluation pass of a population: 64 members evaluate 64 examples at a
#: time. Larger passes leave the cache: a ViT population of 64 evaluated 2.9x slower in passes
#: of 512 examples (per-example results do not depend on the pass).
EVAL_MEMBER_EXAMPLES = 4096
#: Fewest examples per evaluation pass, however many members.
MIN_EVAL_EXAMPLES = 16


def eval_pass_examples(n_pop: int, most: int) -> int:
    """Examples per evaluation pass of a population of ``n_pop``: at most ``most``, and
    :data:`EVAL_MEMBER_EXAMPLES` member-examples in all (at least :data:`MIN_EVAL_EXAMPLES`)."""
    return max(MIN_EVAL_EXAMPLES, min(most, EVAL_MEMBER_EXAMPLES // n_pop))

# glibc's mallopt parameters (malloc.h) and the values population passes get.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Blocks below this come from the heap, not from fresh pages of their own (glibc's maximum).
MMAP_THRESHOLD = 32 << 20
#: Free memory at the top of the heap goes back to the system beyond this.
TRIM_THRESHOLD = 256 << 20
_memory_reused: bool | None = None


def reuse_freed_memory() -> bool:
    """Have the C allocator reuse freed blocks of up to 32 MiB instead of handing them back to
    the system (glibc only; elsewhere nothing changes). Returns whether the setting applies.

    A population step allocates and frees megabyte-sized activations. By default glibc serves
    each from fresh pages, and the first write to each page is a page fault: a 64-member ViT
    step at one thread took 12,600 faults and 108 ms, and 96 ms without them. The process keeps
    up to :data:`TRIM_THRESHOLD` of freed memory for reuse. Process-wide and idempotent."""
    global _memory_reused
    if _memory_reused is None:
        try:
            mallopt = ctypes.CDLL(None).mallopt  # the C library the process runs on
        except (OSError, AttributeError):  # not glibc
            mallopt = None
        _memory_reused = bool(mallopt and mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                              and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _memory_reused


def graph_forward(spec: NetworkSpec, tensors: Mapping[str, Tensor], x: Tensor,
                  ctx: Context | None = None) -> Tensor:
    """One network of a graph spec on a batch.

    Args:
        spec: a graph spec (``spec.nodes``).
        tensors: ``{param name: Tensor[*shape]}``, buffers included.
        x: inputs ``[B, *input_shape]`` (or anything that reshapes to it).
        ctx: training flag and dropout masks; receives the new batch-norm running statistics
            (default: evaluation).

    Shapes:
        returns ``[B, *output_shape]``.
    """
    ctx = ctx or Context()
    values = {INPUT: x.reshape(x.shape[0], *spec.input_shape)}
    last_read = _last_reads(spec)
    for i, node in enumerate(spec.nodes):
        p = {suffix: tensors[f"{node.name}.{suffix}"] for suffix, _, _ in node.param_shapes()}
        values[node.name] = node.forward(p, [values[name] for name in node.inputs], ctx)
        for name in node.inputs:
            if last_read[name] == i:
                values.pop(name, None)
    return values[spec.nodes[-1].name]


def _last_reads(spec: NetworkSpec) -> dict[str, int]:
    """``{value name: index of the last node that reads it}``. A pass drops a value after its last
    reader (unless asked for): without autograd it holds only the live activations (a no-grad pass
    of 64 ViTs on 1,280 examples peaked at 1,083 MB instead of 2,023), and the allocator hands
    their freed, cache-warm blocks to the next nodes."""
    return {name: i for i, node in enumerate(spec.nodes) for name in node.inputs}


def graph_population_forward(
    spec: NetworkSpec,
    params: Mapping[str, Tensor],
    x: Tensor,
    training: bool = False,
    masks: Mapping[str, Tensor] | None = None,
    batch_stats: bool = False,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Run ``P`` networks of one graph spec as one vectorized computation.

    Args:
        spec: the shared architecture.
        params: ``{name: Tensor[P, *shape]}`` stacked parameters and buffers.
        x: inputs, shared ``[B, *input_shape]`` or per member ``[P, B, *input_shape]``.
        training: batch statistics and dropout masks apply (default ``False``).
        masks: ``{dropout node: Tensor[P, B, *shape]}`` pre-scaled masks (default none).
        batch_stats: while training, return each batch norm's batch mean and unbiased variance
            instead of the moved running statistics (default ``False``).

    Shapes:
        returns ``(out [P, B, *output_shape], {buffer name: Tensor[P, *shape]})``; the second
        holds the new batch-norm running statistics (empty unless ``training``).
    """
    ctx = Context(training=training, masks=dict(masks or {}), batch_stats=batch_stats)
    out = _population_values(spec, params, x, ctx, [spec.nodes[-1].name])
    return out[spec.nodes[-1].name], ctx.updates


def graph_population_values(spec: NetworkSpec, params: Mapping[str, Tensor], x: Tensor,
                            names: Collection[str]) -> dict[str, Tensor]:
    """Some nodes' values (evaluation mode) for ``P`` networks of one graph spec, e.g. the
    penultimate features (the last node's input).

    Args:
        spec, params, x: as for :func:`graph_population_forward`.
        names: node names (or ``"input"``).

    Shapes:
        returns ``{name: Tensor[P, B, *node_shape]}``.
    """
    unknown = sorted(set(names) - set(spec.shapes))
    if unknown:
        raise ZooFormatError(f"{spec.family} architecture {spec.arch_id} has no nodes {unknown}; "
                             f"its nodes are {[n.name for n in spec.nodes]}")
    return _population_values(spec, params, x, Context(), names)


def _population_values(spec: NetworkSpec, params: Mapping[str, Tensor], x: Tensor, ctx: Context,
                       keep: Collection[str]) -> dict[str, Tensor]:
    n_pop = next(iter(params.values())).shape[0]
    if x.dim() == len(spec.input_shape) + 1:  # shared: a view, every member reads the same batch
        x = x.unsqueeze(0).expand(n_pop, *x.shape)
    values = {INPUT: x.reshape(n_pop, x.shape[1], *spec.input_shape)}
    # Per-member affine maps not yet applied to a node's value (a layer norm's weight and bias).
    # A linear map that reads the value folds the map into its own weights, W diag(w) and
    # W b + c: a few thousand multiplications in place of two passes over a [P, B, T, D]
    # activation forward and three backward (a 64-member ViT step at one thread 84 -> 80 ms).
    pending: dict[str, FeatureAffine] = {}

    def value(name: str) -> Tensor:
        if name in pending:
            values[name] = pending.pop(name).apply(values[name])
        return values[name]

    last_read = _last_reads(spec)
    for i, node in enumerate(spec.nodes):
        p = {suffix: params[f"{node.name}.{suffix}"] for suffix, _, _ in node.param_shapes()}
        first, *rest = node.inputs
        affine = None if rest else pending.get(first)
        if affine is not None and node.passes_feature_affine():  # the map waits past this node
            values[node.name] = node.population_forward(p, [values[first]], ctx)
            pending[node.name] = affine
        else:
            folded = None if affine is None else node.fold_input_affine(p, affine)
            xs = [values[first]] if folded is not None else [value(name) for name in node.inputs]
            values[node.name], own = node.population_parts(p if folded is None else folded, xs, ctx)
            if own is not None:
                pending[node.name] = own
        for name in node.inputs:
            if last_read[name] == i and name not in keep:
                values.pop(name, None)
                pending.pop(name, None)
    return {name: value(name) for name in keep}


class GraphNetwork(nn.Module):
    """A plain ``nn.Module`` rebuilt from a graph :class:`~catalog.network.NetworkSpec`.

    Parameters and buffers sit in nested submodules named after the nodes, so the
    ``state_dict`` keys are exactly the spec's parameter names (``layer1.0.bn1.running_mean``,
    ...). In training mode batch norm uses batch statistics and updates its running ones;
    dropout nodes drop with their ``p``.

    Shapes:
        input ``[B, *input_shape]`` (or anything that reshapes to it) -> ``[B, *output_shape]``.
    """

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        self.spec = spec
        for p in spec.params:
            *path, leaf = p.name.split(".")
            module: nn.Module = self
            for part in path:
                if part not in module._modules:
                    module.add_module(part, nn.Module())
                module = module._modules[part]
            value = torch.zeros(p.shape, dtype=spec.torch_dtype)
            if p.role in BUFFER_ROLES:
                module.register_buffer(leaf, value)
            else:
                module.register_parameter(leaf, nn.Parameter(value))
        got, expected = set(self.state_dict()), set(spec.param_names)
        if got != expected:  # pragma: no cover - names are validated by NetworkSpec
            raise ZooFormatError(f"GraphNetwork: state_dict keys {sorted(got)} differ from the spec's")

    def forward(self, x: Tensor) -> Tensor:
        tensors = {**dict(self.named_parameters()), **dict(self.named_buffers())}
        masks = {}
        if self.training:
            for node in self.spec.nodes:
                if node.KIND == "dropout" and node.p > 0:
                    shape = (x.shape[0], *self.spec.shapes[node.inputs[0]])
                    keep = torch.rand(shape, device=x.device) >= node.p
                    masks[node.name] = keep.to(x.dtype) / (1 - node.p)
        ctx = Context(training=self.training, masks=masks)
        out = graph_forward(self.spec, tensors, x, ctx)
        with torch.no_grad():
            for name, value in ctx.updates.items():
                tensors[name].copy_(value)
        return out
