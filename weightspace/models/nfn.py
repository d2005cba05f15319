"""``nfn``: Neural Functional Networks (Zhou et al., 2023, "Permutation Equivariant Neural
Functionals") with neuron-permutation (NP) equivariant layers, for MLPs and for CNNs with global
pooling.

An NP layer treats every neuron axis as permutable and exchanges information by mean-pooling
over axes. Since input and output neurons of the networks do have a fixed meaning, learned
positional embeddings are added along those axes (as NFN does), so the model as a whole is
invariant to permutations of hidden neurons only.

A convolution's kernel between an input and an output channel becomes channel features (the
kernel flattened); with global pooling after the last convolution, channels are the neurons of
the network and its spatial size plays no role.

Features are channel-last: weights ``[B, n_out, n_in, C]``, biases ``[B, n_out, C]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec
from weightspace.models._common import check_dropout, check_positive, make_mlp
from weightspace.models.base import Metanetwork
from weightspace.models.dws import refuse_graph_specs
from weightspace.models.registry import register_metanetwork, register_preset
from weightspace.probes import ProbeBiasInput, check_probes
from weightspace.representations.layers import params_to_layers

Features = tuple[list[Tensor], list[Tensor]]


class NeuronPermutationLinear(nn.Module):
    """The NP-equivariant linear layer of NFN.

    Args:
        spec: the architecture (shape contract).
        in_channels: input channels per weight/bias entry.
        out_channels: output channels.

    Shapes:
        weights ``[B, n_out, n_in, in_channels]``, biases ``[B, n_out, in_channels]`` per layer
        -> the same with ``out_channels``.
    """

    def __init__(self, spec: NetworkSpec, in_channels: int, out_channels: int) -> None:
        super().__init__()
        L = self.n_layers = len(spec.layers)
        c, o = in_channels, out_channels
        self.w_self = nn.ModuleList(nn.Linear(c, o) for _ in range(L))
        # indexed by fan-out neuron i: mean_j W_l, b_l, mean over fan-out of W_{l+1}
        self.w_row = nn.ModuleList(nn.Linear(c * (3 if li < L - 1 else 2), o, bias=False) for li in range(L))
        # indexed by fan-in neuron j: mean_i W_l, b_{l-1}, mean over fan-in of W_{l-1}
        self.w_col = nn.ModuleList(nn.Linear(c * (3 if li > 0 else 1), o, bias=False) for li in range(L))
        self.w_glob = nn.ModuleList(nn.Linear(2 * L * c, o, bias=False) for _ in range(L))
        self.b_self = nn.ModuleList(nn.Linear(c, o) for _ in range(L))
        self.b_row = nn.ModuleList(nn.Linear(c * (2 if li < L - 1 else 1), o, bias=False) for li in range(L))
        self.b_glob = nn.ModuleList(nn.Linear(2 * L * c, o, bias=False) for _ in range(L))

    def forward(self, feats: Features) -> Features:
        ws, bs = feats
        L = self.n_layers
        rows = [w.mean(2) for w in ws]  # [B, n_out, C]
        cols = [w.mean(1) for w in ws]  # [B, n_in, C]
        glob = torch.cat([w.mean((1, 2)) for w in ws] + [b.mean(1) for b in bs], -1)
        new_w, new_b = [], []
        for li in range(L):
            r = [rows[li], bs[li]] + ([cols[li + 1]] if li < L - 1 else [])
            c = [cols[li]] + ([bs[li - 1], rows[li - 1]] if li > 0 else [])
            new_w.append(self.w_self[li](ws[li]) + self.w_row[li](torch.cat(r, -1)).unsqueeze(2)
                         + self.w_col[li](torch.cat(c, -1)).unsqueeze(1)
                         + self.w_glob[li](glob)[:, None, None])
            rb = [rows[li]] + ([cols[li + 1]] if li < L - 1 else [])
            new_b.append(self.b_self[li](bs[li]) + self.b_row[li](torch.cat(rb, -1))
                         + self.b_glob[li](glob)[:, None])
        return new_w, new_b


#: Invariant pooling: ``np`` means over every neuron axis; ``hnp`` keeps the fixed axes (the
#: inputs of the first layer, the outputs of the last) as channels, as NFN's ``HNPPool``.
POOLS = ("np", "hnp")


@register_metanetwork("nfn")
class NFN(Metanetwork):
    """Lift -> positional embeddings on input/output neurons -> NP layers -> invariant pooling -> MLP.

    Args:
        spec: the architecture of the input networks (MLP, or CNN whose convolutions end in
            global pooling before any linear layer).
        out_dim: output size.
        hidden: channels per weight/bias entry after the lift (default ``16``).
        n_layers: NP layers (default ``3``).
        head_hidden: width of the head MLP (default ``64``).
        dropout: dropout in the head (default ``0``).
        probes: number of learned probe inputs whose neuron values are added to the neurons'
            (bias) features after the lift (:mod:`weightspace.probes`; default ``0``).
        channels: output channels of each NP layer (default ``None``: ``hidden`` for each of
            ``n_layers`` layers); when given, it sets the number of layers.
        head_depth: hidden layers of the head MLP (default ``1``).
        pool: invariant pooling, ``np`` or ``hnp`` (see :data:`POOLS`; default ``np``).

    Shapes:
        ``{name: Tensor[B, *shape]}`` -> ``[B, out_dim]``.
    """

    @classmethod
    def arch_problem(cls, specs: Sequence[NetworkSpec], hparams: Mapping[str, Any]) -> str | None:
        refuse_graph_specs(cls.name, specs)  # before any weights load: a clear error, not a problem to list
        return super().arch_problem(specs, hparams)

    def __init__(self, spec: NetworkSpec, out_dim: int, hidden: int = 16, n_layers: int = 3,
                 head_hidden: int = 64, dropout: float = 0.0, probes: int = 0,
                 channels: Sequence[int] | None = None, head_depth: int = 1,
                 pool: str = "np") -> None:
        refuse_graph_specs(self.name, [spec])
        super().__init__(spec, out_dim)
        check_positive(hidden=hidden, n_layers=n_layers, head_hidden=head_hidden,
                       head_depth=head_depth)
        check_dropout(dropout)
        self._check_neurons_align(spec)
        check_probes(probes)
        if pool not in POOLS:
            raise WeightzooError(f"unknown pool {pool!r}; valid: {', '.join(POOLS)}")
        if channels is not None:
            if isinstance(channels, int | str) or not len(channels):
                raise WeightzooError(f"channels must be a non-empty list of layer widths, got {channels!r}")
            channels = [int(c) for c in channels]
            check_positive(**{f"channels[{i}]": c for i, c in enumerate(channels)})
            n_layers = len(channels)
        chans = [hidden] + (channels or [hidden] * n_layers)
        self.hparams = {"hidden": hidden, "n_layers": n_layers, "head_hidden": head_hidden,
                        "dropout": dropout, "probes": probes,
                        "channels": chans[1:] if channels is not None else None,
                        "head_depth": head_depth, "pool": pool}
        self.pool = pool
        self.probe = ProbeBiasInput(spec, probes, hidden) if probes else None
        L = len(spec.layers)
        kernels = [math.prod(layer.kernel_size) if layer.kernel_size else 1 for layer in spec.layers]
        self.kernels = kernels
        self.lift_w = nn.ModuleList(nn.Linear(k, hidden) for k in kernels)
        self.lift_b = nn.ModuleList(nn.Linear(1, hidden) for _ in range(L))
        widths = spec.layer_widths
        self.in_pos = nn.Parameter(torch.randn(widths[0], hidden) * 0.1)
        self.out_pos = nn.Parameter(torch.randn(widths[-1], hidden) * 0.1)
        self.out_pos_b = nn.Parameter(torch.randn(widths[-1], hidden) * 0.1)
        self.layers = nn.ModuleList(
            NeuronPermutationLinear(spec, a, b) for a, b in zip(chans, chans[1:]))
        c = chans[-1]
        if pool == "np":
            n_pool = 2 * L * c
        else:  # the fixed axes stay: inputs of layer 0, outputs (and output biases) of layer L-1
            n_pool = sum(c * (widths[0] if li == 0 else 1) * (widths[-1] if li == L - 1 else 1)
                         for li in range(L)) + c * (L - 1) + c * widths[-1]
        self.head = make_mlp(n_pool, head_hidden, out_dim, head_depth, dropout)

    @staticmethod
    def _check_neurons_align(spec: NetworkSpec) -> None:
        for prev, nxt in zip(spec.layers, spec.layers[1:]):
            if prev.is_conv and not nxt.is_conv and prev.pool != "global_avg":
                raise WeightzooError(
                    "nfn needs global pooling between the last convolution and the first linear "
                    f"layer (layer {prev.weight!r} has pool={prev.pool!r})")

    def features(self, params: Mapping[str, Tensor]) -> Tensor:
        """The invariant pooled features before the head.

        Shapes:
            ``{name: Tensor[B, *shape]}`` -> ``[B, F]`` (``np``: ``F = 2 * n_layers_of_spec * C``
            with ``C`` the last layer's channels; ``hnp``: more, see :data:`POOLS`).
        """
        lt = params_to_layers(self.spec, params)
        batch = lt.batch_size
        ws = [self.lift_w[li](w.float().reshape(batch, w.shape[1], w.shape[2], k))
              for li, (w, k) in enumerate(zip(lt.weights, self.kernels))]
        bs = [self.lift_b[li](b.float().unsqueeze(-1)) for li, b in enumerate(lt.biases)]
        ws[0] = ws[0] + self.in_pos[None, None]
        ws[-1] = ws[-1] + self.out_pos[None, :, None]
        bs[-1] = bs[-1] + self.out_pos_b[None]
        if self.probe is not None:
            bs = self.probe.add_to(params, bs)
        feats: Features = (ws, bs)
        for layer in self.layers:
            feats = layer(feats)
            feats = ([torch.relu(w) for w in feats[0]], [torch.relu(b) for b in feats[1]])
        if self.pool == "np":
            return torch.cat([w.mean((1, 2)) for w in feats[0]] + [b.mean(1) for b in feats[1]], -1)
        L = len(feats[0])
        out = []
        for li, (w, b) in enumerate(zip(*feats)):
            if li != 0:  # hidden fan-in neurons
                w = w.mean(2, keepdim=True)
            if li != L - 1:  # hidden fan-out neurons
                w = w.mean(1, keepdim=True)
            out.append(w.flatten(1))
            out.append(b.flatten(1) if li == L - 1 else b.mean(1))
        return torch.cat(out, -1)

    def forward(self, params: Mapping[str, Tensor]) -> Tensor:
        return self.head(self.features(params))


#: NFN-NP as published for predicting the generalization of Small CNN Zoo networks (Zhou et
#: al. 2023; the ``np_inv`` config of the nfn repository's ``predict_gen`` experiment): three
#: NP layers of 16, 16 and 5 channels, HNP pooling (input and output axes kept), and an MLP head
#: with two hidden layers of 1,000. Unlike the reference, a convolution's kernel is lifted into
#: the channels once (``hidden`` = 16) instead of being kept as ``k*k`` channel groups, and
#: training uses our loop (MSE on standardized targets rather than a sigmoid with BCE).
register_preset("nfn", "published", {"hidden": 16, "channels": [16, 16, 5], "pool": "hnp",
                                     "head_hidden": 1000, "head_depth": 2, "dropout": 0.0})
