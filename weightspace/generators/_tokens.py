"""Helpers shared by the learned generators (``hyperrep``, ``pdiff``): per-neuron tokens, the
flat vector of a chosen subset of parameters, per-tensor normalization, and seeded sampling.

A **neuron token** (Schürholt et al., hyper-representations) is one output neuron of one layer
of a chain network: its incoming weights (a convolution's whole kernel, flattened) followed by
its bias, zero-padded to the widest token of the network. Token ``t`` of layer ``l`` is neuron
``t - offset[l]`` of that layer; tokens are ordered layer by layer, neuron by neuron.

Permuting the hidden neurons of layer ``l`` permutes the tokens of layer ``l`` and the weight
columns (kernel blocks) inside the tokens of layer ``l + 1``; nothing else moves.

:class:`NeuronTokenizer` applies one rule to any network, chain or graph (ResNet, VGG, ViT, ...),
read per node, which for a chain gives exactly the tokens above: a node's trainable parameters are
grouped by their leading dimension, and row ``i`` of every parameter of a group (flattened and
concatenated) is token ``i`` of that group. So a linear layer's or convolution's output channel
(weight row + bias), a batch or layer norm's channel (weight, bias), an attention's in-projection
row (``[q; k; v]`` rows of ``in_proj_weight`` + ``in_proj_bias``) and out-projection row, and an
embedding's row are tokens; a **layer** (the unit of ``layer_index`` and ``offsets``) is one such
(node, group). Batch-norm running statistics are buffers, not modelled: they are not tokens.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec
from weightspace.normalization import ParamNormalizer


@dataclass(frozen=True)
class TokenGroup:
    """The tokens of one (node, leading dim) group of a network (:class:`NeuronTokenizer`).

    Args:
        node: the node's index (:attr:`catalog.network.ParamSpec.layer`).
        rows: tokens of the group: the parameters' common leading dim (``1`` for a scalar).
        params: ``(name, shape)`` of each parameter of the group, in spec order; a token is the
            concatenation of each one's row, flattened.
    """

    node: int
    rows: int
    params: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def width(self) -> int:
        """Valid entries of one token: the sum of the parameters' row sizes."""
        return sum(math.prod(shape) // self.rows for _, shape in self.params)


@dataclass(frozen=True)
class NeuronTokenizer:
    """Per-neuron (per-row) tokens of any network: the trainable parameters of each node grouped
    by leading dim.

    The layout (see the module docstring) reads only ``spec.params`` (name, shape, node index,
    trainable), so it knows no node kind: on a chain (MLP, CNN, SIREN) it gives the neuron tokens
    of hyper-representations, each layer's output neurons; a chain and its graph form
    (``spec.as_graph()``) give the same tokens. Buffers (batch-norm running statistics) are not
    tokens, and :meth:`detokenize` returns the trainable parameters only (:attr:`names`).

    Args:
        spec: any :class:`NetworkSpec` (graph or chain).
        what: the caller, named in errors (default ``"neuron tokens"``).

    Shapes:
        ``tokenize({name: [B, *shape]}) -> [B, T, D]`` with ``T = sum of rows over groups`` and
        ``D = max over groups of the row sizes' sum``.
    """

    spec: NetworkSpec
    what: str = "neuron tokens"
    groups: tuple[TokenGroup, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_key: dict[tuple[int, int], list[tuple[str, tuple[int, ...]]]] = {}
        for p in self.spec.params:
            if p.trainable:
                by_key.setdefault((p.layer, p.shape[0] if p.shape else 1), []).append((p.name, tuple(p.shape)))
        if not by_key:
            raise WeightzooError(f"{self.what}: {self.spec.family} architecture {self.spec.arch_id} has no "
                                 f"trainable parameters to model")
        groups = tuple(TokenGroup(node, rows, tuple(params)) for (node, rows), params in by_key.items())
        object.__setattr__(self, "groups", groups)

    # ------------------------------------------------------------------- layout
    @property
    def names(self) -> list[str]:
        """The parameters the tokens hold: the trainable ones, in spec order."""
        return [p.name for p in self.spec.params if p.trainable]

    @property
    def widths(self) -> list[int]:
        """Valid entries of one token of each layer (group)."""
        return [g.width for g in self.groups]

    @property
    def width(self) -> int:
        """``D``: the common (padded) token width."""
        return max(self.widths)

    @property
    def offsets(self) -> list[int]:
        """First token of each layer (group), and ``T`` at the end (``len(groups) + 1`` entries)."""
        out = [0]
        for g in self.groups:
            out.append(out[-1] + g.rows)
        return out

    @property
    def n_tokens(self) -> int:
        """``T``: one token per row of every group."""
        return self.offsets[-1]

    def layer_index(self) -> Tensor:
        """The layer (group) of each token. Shapes: ``[T]`` int64."""
        return torch.cat([torch.full((g.rows,), li, dtype=torch.long) for li, g in enumerate(self.groups)])

    def neuron_index(self) -> Tensor:
        """The row of each token within its group. Shapes: ``[T]`` int64."""
        return torch.cat([torch.arange(g.rows) for g in self.groups])

    def mask(self) -> Tensor:
        """True where a token entry is a parameter (False on padding). Shapes: ``[T, D]`` bool."""
        m = torch.zeros(self.n_tokens, self.width, dtype=torch.bool)
        for li, w in enumerate(self.widths):
            m[self.offsets[li]:self.offsets[li + 1], :w] = True
        return m

    # ------------------------------------------------------------------- conversion
    def _batch(self, params: Mapping[str, Tensor]) -> int:
        """``B`` of a batch holding every modelled parameter as ``[B, *shape]`` (buffers optional)."""
        batch = None
        for g in self.groups:
            for name, shape in g.params:
                if name not in params:
                    raise WeightzooError(f"{self.what}: the parameter batch lacks {name!r}; pass the full "
                                         f"stacked parameter dict (Selection.stacked())")
                t = params[name]
                if tuple(t.shape[1:]) != shape or (batch is not None and t.shape[0] != batch):
                    raise WeightzooError(f"{self.what}: parameter {name!r} has shape {tuple(t.shape)}; expected "
                                         f"[{batch if batch is not None else 'B'}, {', '.join(map(str, shape))}]")
                batch = t.shape[0]
        return int(batch or 0)

    def tokenize(self, params: Mapping[str, Tensor]) -> Tensor:
        """Tokens of a batch of networks, in the parameters' dtype (padding is zero; buffers are ignored).

        Shapes:
            ``{name: [B, *shape]}`` -> ``[B, T, D]``.
        """
        batch = self._batch(params)
        dtype = params[self.groups[0].params[0][0]].dtype
        out = torch.zeros(batch, self.n_tokens, self.width, dtype=dtype)
        for li, g in enumerate(self.groups):
            lo, hi, col = self.offsets[li], self.offsets[li + 1], 0
            for name, _ in g.params:
                rows = params[name].reshape(batch, g.rows, -1)  # [B, rows, k]
                out[:, lo:hi, col:col + rows.shape[2]] = rows
                col += rows.shape[2]
        return out

    def detokenize(self, tokens: Tensor) -> dict[str, Tensor]:
        """The trainable parameters of tokens (padding is ignored); exact inverse of :meth:`tokenize`.

        Shapes:
            ``[B, T, D]`` -> ``{name: [B, *shape]}`` for :attr:`names` (contiguous, the tokens' dtype).
        """
        if tokens.dim() != 3 or tuple(tokens.shape[1:]) != (self.n_tokens, self.width):
            raise WeightzooError(f"tokens have shape {tuple(tokens.shape)}; expected "
                                 f"[B, {self.n_tokens}, {self.width}]")
        batch = tokens.shape[0]
        out: dict[str, Tensor] = {}
        for li, g in enumerate(self.groups):
            lo, hi, col = self.offsets[li], self.offsets[li + 1], 0
            for name, shape in g.params:
                k = math.prod(shape) // g.rows
                out[name] = tokens[:, lo:hi, col:col + k].reshape(batch, *shape).contiguous()
                col += k
        return {n: out[n] for n in self.names}


# ----------------------------------------------------------------------------- subsets, flat vectors
def select_params(spec: NetworkSpec, names: Sequence[str] | None, what: str) -> list[str]:
    """The parameter names a generator models: ``names`` in spec order (default: all trainable).

    Raises:
        WeightzooError: a name the spec does not have, or an empty list.
    """
    trainable = [p.name for p in spec.params if p.trainable]
    if names is None:
        return trainable
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in names if n not in spec.param_names]
    if unknown or not names:
        raise WeightzooError(f"{what}: unknown parameter(s) {unknown or '(none given)'}; the architecture has "
                             f"{', '.join(spec.param_names)}")
    chosen = set(names)
    return [n for n in spec.param_names if n in chosen]


def flatten(params: Mapping[str, Tensor], names: Sequence[str]) -> Tensor:
    """Concatenate the named tensors of a batch. Shapes: ``{name: [B, *shape]}`` -> ``[B, P]``."""
    return torch.cat([params[n].reshape(params[n].shape[0], -1) for n in names], dim=1)


def unflatten(flat: Tensor, spec: NetworkSpec, names: Sequence[str]) -> dict[str, Tensor]:
    """Inverse of :func:`flatten`. Shapes: ``[B, P]`` -> ``{name: [B, *shape]}``."""
    shapes = {p.name: p.shape for p in spec.params}
    out, start = {}, 0
    for n in names:
        k = math.prod(shapes[n])
        out[n] = flat[:, start:start + k].reshape(flat.shape[0], *shapes[n]).contiguous()
        start += k
    return out


# ----------------------------------------------------------------------------- normalization state
def normalizer_tensors(norm: ParamNormalizer, names: Sequence[str]) -> dict[str, Tensor]:
    """A normalizer as two float64 tensors (for a safetensors run directory). Shapes: ``[K]``."""
    return {"norm.mean": torch.tensor([norm.mean[n] for n in names], dtype=torch.float64),
            "norm.std": torch.tensor([norm.std[n] for n in names], dtype=torch.float64)}


def normalizer_from_tensors(tensors: Mapping[str, Tensor], names: Sequence[str]) -> ParamNormalizer:
    """Inverse of :func:`normalizer_tensors`."""
    mean, std = tensors["norm.mean"].tolist(), tensors["norm.std"].tolist()
    return ParamNormalizer(dict(zip(names, mean)), dict(zip(names, std)))


def normalize(norm: ParamNormalizer, params: Mapping[str, Tensor], names: Sequence[str]) -> dict[str, Tensor]:
    """``(w - mean) / std`` per tensor, float32. Shapes: ``{name: [B, *shape]}`` -> same."""
    return {n: ((params[n].double() - norm.mean[n]) / norm.std[n]).float() for n in names}


def denormalize(norm: ParamNormalizer, params: Mapping[str, Tensor], names: Sequence[str],
                dtype: torch.dtype) -> dict[str, Tensor]:
    """``w * std + mean`` per tensor, in ``dtype``. Shapes: ``{name: [B, *shape]}`` -> same."""
    return {n: (params[n].double() * norm.std[n] + norm.mean[n]).to(dtype).contiguous() for n in names}


# ----------------------------------------------------------------------------- training helpers
def require_float_column(table, column: str, n: int, what: str) -> Tensor:
    """A numeric metadata column as float64 ``[n]``; a user error if absent or not numeric."""
    import pyarrow as pa

    if table is None or column not in table.column_names:
        cols = ", ".join(table.column_names) if table is not None else "(no table)"
        raise WeightzooError(f"{what}: column {column!r} is not in the training rows (columns: {cols}); "
                             f"choose another with select_column=...")
    col = table.column(column)
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        raise WeightzooError(f"{what}: column {column!r} is {col.type}, not numeric; choose a numeric "
                             f"select_column")
    if len(col) != n:
        raise WeightzooError(f"{what}: the table has {len(col)} rows but there are {n} training networks")
    values = torch.tensor([float("nan") if v is None else float(v) for v in col.to_pylist()],
                          dtype=torch.float64)
    return values


def top_fraction(values: Tensor, q: float, higher_is_better: bool) -> Tensor:
    """Indices of the best ``ceil(q * n)`` values (at least 2; NaN counts as worst). Shapes: ``[n] -> [k]``."""
    if not 0.0 < q <= 1.0:
        raise WeightzooError(f"q must be in (0, 1], got {q}")
    n = values.shape[0]
    k = min(n, max(2, math.ceil(q * n)))
    key = values.clone()
    key[torch.isnan(key)] = -math.inf if higher_is_better else math.inf
    order = torch.sort(key, descending=higher_is_better, stable=True).indices
    return order[:k]
