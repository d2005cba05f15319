"""Helpers shared by the learned generators (``hyperrep``, ``pdiff``): per-neuron tokens, the
flat vector of a chosen subset of parameters, per-tensor normalization, and seeded sampling.

A **neuron token** (Schürholt et al., hyper-representations) is one output neuron of one layer
of a chain network: its incoming weights (a convolution's whole kernel, flattened) followed by
its bias, zero-padded to the widest token of the network. Token ``t`` of layer ``l`` is neuron
``t - offset[l]`` of that layer; tokens are ordered layer by layer, neuron by neuron.

Permuting the hidden neurons of layer ``l`` permutes the tokens of layer ``l`` and the weight
columns (kernel blocks) inside the tokens of layer ``l + 1``; nothing else moves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec
from weightspace.normalization import ParamNormalizer
from weightspace.representations.flat import _check_params


@dataclass(frozen=True)
class NeuronTokenizer:
    """Per-neuron tokens of a chain network (an MLP, a CNN, a SIREN).

    Args:
        spec: a chain :class:`NetworkSpec` (graph specs raise a :class:`WeightzooError`).
        what: the caller, named in the error for a graph spec (default ``"neuron tokens"``).

    Shapes:
        ``tokenize({name: [B, *shape]}) -> [B, T, D]`` with ``T = sum of out_features`` and
        ``D = max over layers of in_features * prod(kernel) + has_bias``.
    """

    spec: NetworkSpec
    what: str = "neuron tokens"

    def __post_init__(self) -> None:
        self.spec.require_chain(self.what)

    # ------------------------------------------------------------------- layout
    @property
    def widths(self) -> list[int]:
        """Valid entries of one token of each layer (incoming weights + bias)."""
        return [layer.in_features * math.prod(layer.kernel_size) + (layer.bias is not None)
                for layer in self.spec.layers]

    @property
    def width(self) -> int:
        """``D``: the common (padded) token width."""
        return max(self.widths)

    @property
    def offsets(self) -> list[int]:
        """First token of each layer, and ``T`` at the end (``len(layers) + 1`` entries)."""
        out = [0]
        for layer in self.spec.layers:
            out.append(out[-1] + layer.out_features)
        return out

    @property
    def n_tokens(self) -> int:
        """``T``: one token per output neuron of every layer."""
        return self.offsets[-1]

    def layer_index(self) -> Tensor:
        """The layer of each token. Shapes: ``[T]`` int64."""
        return torch.cat([torch.full((layer.out_features,), li, dtype=torch.long)
                          for li, layer in enumerate(self.spec.layers)])

    def neuron_index(self) -> Tensor:
        """The neuron of each token within its layer. Shapes: ``[T]`` int64."""
        return torch.cat([torch.arange(layer.out_features) for layer in self.spec.layers])

    def mask(self) -> Tensor:
        """True where a token entry is a parameter (False on padding). Shapes: ``[T, D]`` bool."""
        m = torch.zeros(self.n_tokens, self.width, dtype=torch.bool)
        for li, w in enumerate(self.widths):
            m[self.offsets[li]:self.offsets[li + 1], :w] = True
        return m

    # ------------------------------------------------------------------- conversion
    def tokenize(self, params: Mapping[str, Tensor]) -> Tensor:
        """Tokens of a batch of networks, in the parameters' dtype (padding is zero).

        Shapes:
            ``{name: [B, *shape]}`` -> ``[B, T, D]``.
        """
        batch = _check_params(self.spec, params)
        dtype = params[self.spec.layers[0].weight].dtype
        out = torch.zeros(batch, self.n_tokens, self.width, dtype=dtype)
        for li, layer in enumerate(self.spec.layers):
            lo, hi = self.offsets[li], self.offsets[li + 1]
            w = params[layer.weight].reshape(batch, layer.out_features, -1)  # [B, out, in * k]
            out[:, lo:hi, :w.shape[2]] = w
            if layer.bias is not None:
                out[:, lo:hi, w.shape[2]] = params[layer.bias]
        return out

    def detokenize(self, tokens: Tensor) -> dict[str, Tensor]:
        """The parameters of tokens (padding is ignored); exact inverse of :meth:`tokenize`.

        Shapes:
            ``[B, T, D]`` -> ``{name: [B, *shape]}`` (contiguous, the tokens' dtype).
        """
        if tokens.dim() != 3 or tuple(tokens.shape[1:]) != (self.n_tokens, self.width):
            raise WeightzooError(f"tokens have shape {tuple(tokens.shape)}; expected "
                                 f"[B, {self.n_tokens}, {self.width}]")
        batch = tokens.shape[0]
        out: dict[str, Tensor] = {}
        for li, layer in enumerate(self.spec.layers):
            lo, hi = self.offsets[li], self.offsets[li + 1]
            n_w = layer.in_features * math.prod(layer.kernel_size)
            out[layer.weight] = tokens[:, lo:hi, :n_w].reshape(batch, *layer.weight_shape).contiguous()
            if layer.bias is not None:
                out[layer.bias] = tokens[:, lo:hi, n_w].contiguous()
        return out


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
