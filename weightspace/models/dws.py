"""``dws``: Deep Weight Space networks (Navon et al., 2023, "Equivariant Architectures for
Learning in Deep Weight Spaces") for MLP weight spaces.

The symmetry is the hidden-neuron permutation group: hidden neurons of every layer may be
permuted, the input and output neurons may not. A :class:`HiddenNeuronPermutationLinear` layer
is the sum of four blocks (weight -> weight, bias -> weight, weight -> bias, bias -> bias), each
made of the equivariant maps between two tensors that share a neuron axis:

- an axis of hidden neurons is *pooled* (mean) when information crosses it, and broadcast back;
- an axis of fixed neurons (inputs of the first layer, outputs of the last) is never pooled: it
  is unrolled into channels, and mixed by a learned map along the axis - as in DWS, where maps
  along fixed axes are unconstrained.

Features are channel-last: weights ``[B, n_out, n_in, C]``, biases ``[B, n_out, C]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from catalog.errors import WeightzooError, ZooFormatError
from catalog.network import NetworkSpec
from weightspace.models._common import check_dropout, check_positive, make_mlp
from weightspace.models.base import Metanetwork
from weightspace.models.registry import register_metanetwork
from weightspace.probes import ProbeBiasInput, check_probes
from weightspace.representations.layers import params_to_layers

Features = tuple[list[Tensor], list[Tensor]]


#: Pooling over hidden-neuron axes (all permutation invariant): ``mean``, ``max``, or
#: ``meanmax``, their sum.
REDUCTIONS = ("mean", "max", "meanmax")
#: Normalization between equivariant layers: ``batch`` (per channel over the batch and every
#: entry of a tensor, as the reference DWSNets) or ``none``.
NORMS = ("batch", "none")


def _reduce(x: Tensor, dims: int | tuple[int, ...], how: str) -> Tensor:
    """Mean, max or their sum (``meanmax``) over ``dims`` (dropped)."""
    if how == "mean":
        return x.mean(dims)
    if how == "max":
        return x.amax(dims)
    return x.mean(dims) + x.amax(dims)


def _pool_in(w: Tensor, fixed: bool, how: str = "mean") -> Tensor:
    """Pool a weight over its fan-in axis: ``[B, n, m, C]`` -> ``[B, n, C]`` (``[B, n, m*C]`` if fixed)."""
    return w.flatten(2) if fixed else _reduce(w, 2, how)


def _pool_out(w: Tensor, fixed: bool, how: str = "mean") -> Tensor:
    """Pool a weight over its fan-out axis: ``[B, n, m, C]`` -> ``[B, m, C]`` (``[B, m, n*C]`` if fixed)."""
    return w.transpose(1, 2).flatten(2) if fixed else _reduce(w, 1, how)


class FixedAxisMix(nn.Module):
    """A learned linear map along one axis of fixed (non-permutable) neurons, then channel mixing.

    Args:
        size: the axis length.
        in_channels: input channels. out_channels: output channels.
        axis: the axis of the tensor to mix along.

    Shapes:
        ``[..., size (at axis), ..., in_channels]`` -> same with ``out_channels``.
    """

    def __init__(self, size: int, in_channels: int, out_channels: int, axis: int) -> None:
        super().__init__()
        self.axis = axis
        self.mix = nn.Parameter(torch.randn(size, size) / size ** 0.5)
        self.lin = nn.Linear(in_channels, out_channels, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.movedim(x, self.axis, -1) @ self.mix.T  # mix along the axis
        return self.lin(torch.movedim(x, -1, self.axis))


class _Block(nn.Module):
    """Shared bookkeeping of the four DWS blocks."""

    def __init__(self, spec: NetworkSpec, in_channels: int) -> None:
        super().__init__()
        self.n_layers = len(spec.layers)
        self.widths = spec.layer_widths
        self.c = in_channels

    def in_fixed(self, li: int) -> bool:
        return li == 0

    def out_fixed(self, li: int) -> bool:
        return li == self.n_layers - 1

    def rows_dim(self, li: int) -> int:
        """Channels of ``_pool_in(W_l)``."""
        return self.c * (self.widths[li] if self.in_fixed(li) else 1)

    def cols_dim(self, li: int) -> int:
        """Channels of ``_pool_out(W_l)``."""
        return self.c * (self.widths[li + 1] if self.out_fixed(li) else 1)


class WeightToWeight(_Block):
    """Weight -> weight maps: elementwise, row/column pools, neighbouring layers, global."""

    def __init__(self, spec: NetworkSpec, cin: int, cout: int) -> None:
        super().__init__(spec, cin)
        L = self.n_layers
        self.self_ = nn.ModuleList(nn.Linear(cin, cout) for _ in range(L))
        self.mix_in = FixedAxisMix(self.widths[0], cin, cout, axis=2)
        self.mix_out = FixedAxisMix(self.widths[-1], cin, cout, axis=1)
        # indexed by the fan-out neuron i of layer l: pool of W_l over j, pool of W_{l+1} over its fan-out
        self.row = nn.ModuleList(
            nn.Linear(self.rows_dim(li) + (self.cols_dim(li + 1) if li < L - 1 else 0), cout, bias=False)
            for li in range(L))
        # indexed by the fan-in neuron j of layer l: pool of W_l over i, pool of W_{l-1} over its fan-in
        self.col = nn.ModuleList(
            nn.Linear(self.cols_dim(li) + (self.rows_dim(li - 1) if li > 0 else 0), cout, bias=False)
            for li in range(L))
        self.glob = nn.ModuleList(nn.Linear(L * cin, cout, bias=False) for _ in range(L))

    def forward(self, ws: list[Tensor], rows: list[Tensor], cols: list[Tensor], wglob: Tensor) -> list[Tensor]:
        L = self.n_layers
        out = []
        for li, w in enumerate(ws):
            y = self.self_[li](w)
            if self.in_fixed(li):
                y = y + self.mix_in(w)
            if self.out_fixed(li):
                y = y + self.mix_out(w)
            r = rows[li] if li == L - 1 else torch.cat([rows[li], cols[li + 1]], -1)
            c = cols[li] if li == 0 else torch.cat([cols[li], rows[li - 1]], -1)
            y = y + self.row[li](r).unsqueeze(2) + self.col[li](c).unsqueeze(1)
            out.append(y + self.glob[li](wglob)[:, None, None])
        return out


class BiasToWeight(_Block):
    """Bias -> weight maps: ``b_l`` along the fan-out axis, ``b_{l-1}`` along the fan-in axis, global."""

    def __init__(self, spec: NetworkSpec, cin: int, cout: int) -> None:
        super().__init__(spec, cin)
        L = self.n_layers
        self.row = nn.ModuleList(nn.Linear(cin, cout, bias=False) for _ in range(L))
        self.col = nn.ModuleList(nn.Linear(cin, cout, bias=False) for _ in range(L - 1))
        self.glob = nn.ModuleList(nn.Linear(L * cin, cout, bias=False) for _ in range(L))

    def forward(self, bs: list[Tensor], bglob: Tensor) -> list[Tensor]:
        out = []
        for li, b in enumerate(bs):
            y = self.row[li](b).unsqueeze(2) + self.glob[li](bglob)[:, None, None]
            if li > 0:
                y = y + self.col[li - 1](bs[li - 1]).unsqueeze(1)
            out.append(y)
        return out


class WeightToBias(_Block):
    """Weight -> bias maps: pool of ``W_l`` over fan-in, of ``W_{l+1}`` over fan-out, global."""

    def __init__(self, spec: NetworkSpec, cin: int, cout: int) -> None:
        super().__init__(spec, cin)
        L = self.n_layers
        self.row = nn.ModuleList(
            nn.Linear(self.rows_dim(li) + (self.cols_dim(li + 1) if li < L - 1 else 0), cout, bias=False)
            for li in range(L))
        self.glob = nn.ModuleList(nn.Linear(L * cin, cout, bias=False) for _ in range(L))

    def forward(self, rows: list[Tensor], cols: list[Tensor], wglob: Tensor) -> list[Tensor]:
        L = self.n_layers
        out = []
        for li in range(L):
            r = rows[li] if li == L - 1 else torch.cat([rows[li], cols[li + 1]], -1)
            out.append(self.row[li](r) + self.glob[li](wglob)[:, None])
        return out


class BiasToBias(_Block):
    """Bias -> bias maps: elementwise, mixing along the fixed output axis, global."""

    def __init__(self, spec: NetworkSpec, cin: int, cout: int) -> None:
        super().__init__(spec, cin)
        L = self.n_layers
        self.self_ = nn.ModuleList(nn.Linear(cin, cout) for _ in range(L))
        self.mix_out = FixedAxisMix(self.widths[-1], cin, cout, axis=1)
        self.glob = nn.ModuleList(nn.Linear(L * cin, cout, bias=False) for _ in range(L))

    def forward(self, bs: list[Tensor], bglob: Tensor) -> list[Tensor]:
        out = []
        for li, b in enumerate(bs):
            y = self.self_[li](b) + self.glob[li](bglob)[:, None]
            if self.out_fixed(li):
                y = y + self.mix_out(b)
            out.append(y)
        return out


class HiddenNeuronPermutationLinear(nn.Module):
    """The DWS layer: a linear map of MLP weight space equivariant to hidden-neuron permutations.

    Args:
        spec: the MLP architecture (linear layers only).
        in_channels: input channels per weight/bias entry.
        out_channels: output channels.
        reduction: how hidden-neuron axes are pooled, one of :data:`REDUCTIONS` (default
            ``mean``; with ``max`` or ``meanmax`` the layer is equivariant but not linear).

    Shapes:
        weights ``[B, n_out, n_in, in_channels]``, biases ``[B, n_out, in_channels]`` per layer
        -> the same with ``out_channels``.
    """

    def __init__(self, spec: NetworkSpec, in_channels: int, out_channels: int,
                 reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise WeightzooError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
        self.n_layers = len(spec.layers)
        self.reduction = reduction
        self.w2w = WeightToWeight(spec, in_channels, out_channels)
        self.b2w = BiasToWeight(spec, in_channels, out_channels)
        self.w2b = WeightToBias(spec, in_channels, out_channels)
        self.b2b = BiasToBias(spec, in_channels, out_channels)

    def forward(self, feats: Features) -> Features:
        ws, bs = feats
        L = self.n_layers
        how = self.reduction
        rows = [_pool_in(w, li == 0, how) for li, w in enumerate(ws)]
        cols = [_pool_out(w, li == L - 1, how) for li, w in enumerate(ws)]
        wglob = torch.cat([_reduce(w, (1, 2), how) for w in ws], -1)
        bglob = torch.cat([_reduce(b, 1, how) for b in bs], -1)
        new_w = [a + b for a, b in zip(self.w2w(ws, rows, cols, wglob), self.b2w(bs, bglob))]
        new_b = [a + b for a, b in zip(self.w2b(rows, cols, wglob), self.b2b(bs, bglob))]
        return new_w, new_b


class WeightSpaceBatchNorm(nn.Module):
    """Batch normalization of weight-space features: per tensor and channel, statistics over the
    batch and every entry of the tensor (as in the reference DWSNets), so it commutes with
    every neuron permutation.

    Args:
        spec: the architecture (one norm per weight and per bias tensor).
        channels: feature channels.

    Shapes:
        weights ``[B, n_out, n_in, C]``, biases ``[B, n_out, C]`` per layer -> the same.
    """

    def __init__(self, spec: NetworkSpec, channels: int) -> None:
        super().__init__()
        self.w_norms = nn.ModuleList(nn.BatchNorm1d(channels) for _ in spec.layers)
        self.b_norms = nn.ModuleList(nn.BatchNorm1d(channels) for _ in spec.layers)

    def forward(self, feats: Features) -> Features:
        ws, bs = feats
        return ([n(w.reshape(-1, w.shape[-1])).reshape(w.shape) for n, w in zip(self.w_norms, ws)],
                [n(b.reshape(-1, b.shape[-1])).reshape(b.shape) for n, b in zip(self.b_norms, bs)])


def invariant_pool(feats: Features, reduction: str = "mean") -> Tensor:
    """Pool every tensor over its hidden-neuron axes (``mean`` or ``max``); fixed axes are
    unrolled into channels.

    Shapes:
        per-layer features -> ``[B, F]``.
    """
    ws, bs = feats
    L = len(ws)
    out = []
    for li, (w, b) in enumerate(zip(ws, bs)):
        if li != L - 1 and li != 0:  # hidden fan-out and fan-in neurons: pool both at once
            w = _reduce(w, (1, 2), reduction)
        elif li != L - 1:  # hidden fan-out neurons
            w = _reduce(w, 1, reduction)
        elif li != 0:  # hidden fan-in neurons
            w = _reduce(w, 2, reduction)
        out.append(w.flatten(1))
        out.append(b.flatten(1) if li == L - 1 else _reduce(b, 1, reduction))
    return torch.cat(out, dim=1)


def _relu(feats: Features) -> Features:
    return [torch.relu(w) for w in feats[0]], [torch.relu(b) for b in feats[1]]


#: Node kinds a layer chain is made of; a graph spec with other kinds is a residual, normalized
#: or attention network whose weight space the chain-shaped models do not cover.
CHAIN_NODE_KINDS = frozenset({"linear", "conv1d", "conv2d", "activation", "global_pool", "flatten"})


def refuse_graph_specs(model: str, specs: Sequence[NetworkSpec]) -> None:
    """Raise a clear error if any spec is a graph architecture (ResNet, VGG, transformer, ...):
    ``model`` reads the weight space of layer chains only. Called before any weights load.

    Raises:
        ZooFormatError: (a WeightzooError) naming the architecture, its node kinds a chain does
            not have, and the models that read it (``gmn``; ``statnn`` for one architecture,
            ``statnn-kinds`` for several).
    """
    several = len({s.arch_id for s in specs}) > 1
    for spec in specs:
        if spec.is_chain:
            continue
        extra = sorted({n.KIND for n in spec.nodes} - CHAIN_NODE_KINDS)
        what = (f"node kinds {', '.join(extra)}" if extra else "a graph of nodes (format 2), not a chain of layers")
        raise ZooFormatError(
            f"metanetwork {model!r} reads layer chains only ("
            + ("dense ones: the mlp and siren weight spaces" if model == "dws" else
               "the mlp, cnn and siren weight spaces") + "); "
            f"{spec.family} architecture {spec.arch_id} has {what}, which it does not support: use "
            f"'gmn' (reads any architecture through its parameter graph) or "
            + ("'statnn-kinds' (statistics per kind of tensor, for several architectures)" if several else "'statnn'"))


@register_metanetwork("dws")
class DWSNet(Metanetwork):
    """A stack of :class:`HiddenNeuronPermutationLinear` layers with two heads: an invariant
    pooling head (``forward``) and an equivariant weight-space head (``forward_weights``).

    Args:
        spec: the MLP architecture of the input networks (linear layers only; use ``nfn`` or
            ``gmn`` for CNNs).
        out_dim: output size of the invariant head.
        hidden: channels per weight/bias entry (default ``16``).
        n_layers: equivariant layers (default ``3``).
        head_hidden: width of the invariant head's MLP (default ``64``).
        dropout: dropout in the invariant head (default ``0``).
        probes: number of learned probe inputs whose neuron values are added to the neurons'
            (bias) features after the first layer (:mod:`weightspace.probes`; default ``0``).
        norm: normalization after every equivariant layer but the last, ``batch``
            (:class:`WeightSpaceBatchNorm`) or ``none`` (default ``batch``).
        reduction: pooling over hidden neurons inside the equivariant layers, one of
            :data:`REDUCTIONS` (default ``meanmax``).
        head_pool: pooling over hidden neurons in the invariant head, one of
            :data:`REDUCTIONS` (default ``mean``).

    Why batch norm and ``meanmax`` pooling: without normalization the stack optimized slowly -
    on 4,000 ``mnist5k-inr`` SIRENs (weights only) it sat at chance for about 9 epochs, and it
    fitted 256 training SIRENs to only 64% in 60 epochs. Batch norm between the layers (as in
    the reference DWSNets) fits them to 97% and leaves chance after about 3 epochs; adding a max
    to the mean pools inside the layers learns from the first epoch and fits them all by epoch
    40. Max pooling alone (the reference's) does as well without probes but cost 9 points of
    accuracy with 32 probe features (62% against 71%); ``meanmax`` keeps 68%.

    Shapes:
        ``forward``: ``{name: Tensor[B, *shape]}`` -> ``[B, out_dim]``;
        ``forward_weights``: ``{name: Tensor[B, *shape]}`` -> ``{name: Tensor[B, *shape]}``.
    """

    weight_output = True
    # Runs saved before batch norm and meanmax pooling became the defaults had neither.
    legacy_hparams = {"norm": "none", "reduction": "mean", "head_pool": "mean"}

    @classmethod
    def arch_problem(cls, specs: Sequence[NetworkSpec], hparams: Mapping[str, Any]) -> str | None:
        refuse_graph_specs(cls.name, specs)  # before any weights load: a clear error, not a problem to list
        return super().arch_problem(specs, hparams)

    def __init__(self, spec: NetworkSpec, out_dim: int, hidden: int = 16, n_layers: int = 3,
                 head_hidden: int = 64, dropout: float = 0.0, probes: int = 0,
                 norm: str = "batch", reduction: str = "meanmax", head_pool: str = "mean") -> None:
        refuse_graph_specs(self.name, [spec])
        super().__init__(spec, out_dim)
        if any(layer.is_conv for layer in spec.layers):
            raise WeightzooError(
                f"the 'dws' metanetwork reads dense layer chains only (the mlp and siren weight spaces); "
                f"{spec.arch_id} has convolutions: use 'nfn' or 'gmn' for CNNs")
        check_positive(hidden=hidden, n_layers=n_layers, head_hidden=head_hidden)
        check_dropout(dropout)
        check_probes(probes)
        if norm not in NORMS:
            raise WeightzooError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
        for name, value in (("reduction", reduction), ("head_pool", head_pool)):
            if value not in REDUCTIONS:
                raise WeightzooError(f"unknown {name} {value!r}; valid: {', '.join(REDUCTIONS)}")
        self.hparams = {"hidden": hidden, "n_layers": n_layers, "head_hidden": head_hidden,
                        "dropout": dropout, "probes": probes, "norm": norm, "reduction": reduction,
                        "head_pool": head_pool}
        self.head_pool = head_pool
        self.probe = ProbeBiasInput(spec, probes, hidden) if probes else None
        chans = [1] + [hidden] * n_layers
        self.layers = nn.ModuleList(
            HiddenNeuronPermutationLinear(spec, a, b, reduction) for a, b in zip(chans, chans[1:]))
        self.norms = nn.ModuleList(
            WeightSpaceBatchNorm(spec, hidden) if norm == "batch" else nn.Identity()
            for _ in range(n_layers - 1))
        widths = spec.layer_widths
        L = len(spec.layers)
        n_pool = 0
        for li in range(L):
            n_pool += hidden * (widths[li + 1] if li == L - 1 else 1) * (widths[li] if li == 0 else 1)
            n_pool += hidden * (widths[li + 1] if li == L - 1 else 1)
        self.head = make_mlp(n_pool, head_hidden, out_dim, 1, dropout)
        self.weight_head = HiddenNeuronPermutationLinear(spec, hidden, 1, reduction)
        # ReZero-style: the weight-space output starts as the identity map.
        self.edit_scale = nn.Parameter(torch.zeros(()))

    def _trunk(self, params: Mapping[str, Tensor]) -> Features:
        lt = params_to_layers(self.spec, params)
        feats: Features = ([w.float().unsqueeze(-1) for w in lt.weights],
                           [b.float().unsqueeze(-1) for b in lt.biases])
        for i, layer in enumerate(self.layers):
            feats = layer(feats)
            if i == 0 and self.probe is not None:
                feats = feats[0], self.probe.add_to(params, feats[1])
            if i < len(self.layers) - 1:
                feats = _relu(self.norms[i](feats))
        return feats

    def forward(self, params: Mapping[str, Tensor]) -> Tensor:
        return self.head(torch.relu(invariant_pool(self._trunk(params), self.head_pool)))

    def forward_weights(self, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        ws, bs = self.weight_head(_relu(self._trunk(params)))
        out: dict[str, Tensor] = {}
        for layer, w, b in zip(self.spec.layers, ws, bs):
            out[layer.weight] = params[layer.weight] + self.edit_scale * w.squeeze(-1)
            if layer.bias is not None:
                out[layer.bias] = params[layer.bias] + self.edit_scale * b.squeeze(-1)
        return out
