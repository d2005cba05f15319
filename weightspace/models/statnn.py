"""``statnn``: per-tensor statistics -> MLP (Unterthiner et al., 2020, "Predicting Neural Network
Accuracy from Weights"), the strong simple baseline.

Each parameter tensor is summarised by its mean, variance and quantiles; these statistics do
not depend on the order of the entries, so the model is invariant to every neuron permutation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from catalog.network import NetworkSpec
from weightspace.models._common import check_dropout, check_positive, make_mlp
from weightspace.models.base import Metanetwork
from weightspace.models.registry import register_metanetwork, register_preset
from weightspace.representations.flat import _check_params


@register_metanetwork("statnn")
class StatNN(Metanetwork):
    """Statistics of every weight and bias tensor, fed to an MLP.

    Args:
        spec: the architecture of the input networks.
        out_dim: output size.
        hidden: MLP width (default ``64``).
        depth: MLP hidden layers (default ``2``).
        quantiles: quantile levels per tensor (default ``(0, 0.25, 0.5, 0.75, 1)``).
        dropout: dropout after each hidden layer (default ``0``).

    Shapes:
        ``{name: Tensor[B, *shape]}`` -> ``[B, out_dim]``.
    """

    multi_arch = "same_params"  # per-tensor statistics: any activation, same shapes
    graphs = True  # reads parameter tensors only, whatever the architecture

    def __init__(self, spec: NetworkSpec, out_dim: int, hidden: int = 64, depth: int = 2,
                 quantiles: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0), dropout: float = 0.0) -> None:
        super().__init__(spec, out_dim)
        check_positive(hidden=hidden)
        check_dropout(dropout)
        qs = [float(q) for q in quantiles]
        self.hparams = {"hidden": hidden, "depth": depth, "quantiles": qs, "dropout": dropout}
        self.register_buffer("q", torch.tensor(qs), persistent=False)
        self.n_features = len(spec.params) * (2 + len(qs))
        self.mlp = make_mlp(self.n_features, hidden, out_dim, depth, dropout)

    def features(self, params: Mapping[str, Tensor]) -> Tensor:
        """The statistics, tensor after tensor: mean, variance, quantiles.

        Shapes:
            ``{name: Tensor[B, *shape]}`` -> ``[B, n_tensors * (2 + n_quantiles)]``.
        """
        batch = _check_params(self.spec, params)
        feats = []
        for p in self.spec.params:
            t = params[p.name].reshape(batch, -1).float()
            var = t.var(dim=1, unbiased=False)
            qs = torch.quantile(t, self.q.to(t.device), dim=1).T  # [B, n_q]
            feats += [t.mean(dim=1, keepdim=True), var.unsqueeze(1), qs]
        return torch.cat(feats, dim=1)

    def forward(self, params: Mapping[str, Tensor]) -> Tensor:
        return self.mlp(self.features(params))


#: The tensor kinds :class:`KindStatNN` summarises (see :func:`tensor_kind`).
TENSOR_KINDS = ("input.weight", "input.bias", "conv.weight", "conv.bias", "linear.weight", "linear.bias",
                "norm.weight", "norm.bias", "norm.running_mean", "norm.running_var", "other",
                "output.weight", "output.bias")


def tensor_kind(spec: NetworkSpec, index: int) -> str:
    """The kind of ``spec.params[index]``: the first and the last weighted layer are ``input``
    and ``output``; the rest by node kind (convolution, linear, batch/layer norm) and role."""
    p = spec.params[index]
    weighted = [q.layer for q in spec.params if q.role == "weight"]
    kind = spec.layers[p.layer].kind if spec.is_chain else spec.nodes[p.layer].KIND
    if p.layer == min(weighted) and kind != "batchnorm":
        group = "input"
    elif p.layer == max(weighted):
        group = "output"
    elif kind.startswith("conv"):
        group = "conv"
    elif kind == "linear":
        group = "linear"
    elif kind in ("batchnorm", "layernorm"):
        group = "norm"
    else:
        return "other"
    key = f"{group}.{p.role}"
    return key if key in TENSOR_KINDS else "other"


@register_metanetwork("statnn-kinds")
class KindStatNN(Metanetwork):
    """StatNN (Unterthiner et al. 2020) for zoos of mixed architectures.

    ``statnn`` summarises each *named* tensor, so its feature vector exists only for one
    parameter layout (``statnn`` refuses zoos of several layouts and points here). Here the
    entries of every tensor of one kind (:data:`TENSOR_KINDS`: the input layer's weights, the
    hidden convolutions' weights, the norms' scales, ...) are pooled,
    and summarised by their mean, variance, quantiles and ``log(1 + count)``, so networks of any
    depth and width give features of one size (a kind a network lacks gives zeros). The
    statistics do not depend on the order of entries: invariant to neuron permutations.

    Args:
        spec: one architecture or a sequence of them (any architectures).
        out_dim: output size.
        hidden: MLP width (default ``128``).
        depth: MLP hidden layers (default ``2``).
        quantiles: quantile levels (default ``(0, 0.25, 0.5, 0.75, 1)``).

    Shapes:
        ``{name: Tensor[B, *shape]}`` (of ``spec``, or of the ``spec`` given to
        ``forward_arch``) -> ``[B, out_dim]``.
    """

    multi_arch = "any"
    graphs = True

    def __init__(self, spec: NetworkSpec | list[NetworkSpec], out_dim: int, hidden: int = 128,
                 depth: int = 2, quantiles: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)) -> None:
        specs = [spec] if isinstance(spec, NetworkSpec) else list(spec)
        super().__init__(specs[0], out_dim)
        check_positive(hidden=hidden)
        qs = [float(q) for q in quantiles]
        self.hparams = {"hidden": hidden, "depth": depth, "quantiles": qs}
        self.register_buffer("q", torch.tensor(qs), persistent=False)
        self.per_kind = 3 + len(qs)
        self.mlp = make_mlp(len(TENSOR_KINDS) * self.per_kind, hidden, out_dim, depth)
        self._kinds: dict[str, dict[str, list[str]]] = {}

    def kinds(self, spec: NetworkSpec) -> dict[str, list[str]]:
        """``{kind: [param names]}`` of an architecture (cached by ``arch_id``)."""
        if spec.arch_id not in self._kinds:
            out: dict[str, list[str]] = {}
            for i, p in enumerate(spec.params):
                out.setdefault(tensor_kind(spec, i), []).append(p.name)
            self._kinds[spec.arch_id] = out
        return self._kinds[spec.arch_id]

    def features(self, params: dict[str, Tensor], spec: NetworkSpec) -> Tensor:
        """Shapes: ``{name: Tensor[B, *shape]}`` -> ``[B, len(TENSOR_KINDS) * (3 + n_quantiles)]``."""
        batch = next(iter(params.values())).shape[0]
        kinds = self.kinds(spec)
        feats = []
        for kind in TENSOR_KINDS:
            names = kinds.get(kind)
            if not names:
                feats.append(torch.zeros(batch, self.per_kind, device=self.q.device))
                continue
            t = torch.cat([params[n].reshape(batch, -1).float() for n in names], dim=1)  # [B, count]
            count = torch.full((batch, 1), math.log1p(t.shape[1]), device=t.device)
            qs = torch.quantile(t, self.q.to(t.device), dim=1).T  # [B, n_q]
            feats += [torch.cat([t.mean(1, keepdim=True), t.var(1, unbiased=False, keepdim=True), qs, count], 1)]
        return torch.cat(feats, dim=1)

    def forward(self, params: dict[str, Tensor]) -> Tensor:
        return self.mlp(self.features(params, self.spec))

    def forward_arch(self, params: dict[str, Tensor], spec: NetworkSpec | None = None) -> Tensor:
        return self.mlp(self.features(params, spec or self.spec))


#: StatNN as published with NFN (Zhou et al. 2023, the ``stat`` config of the nfn repository's
#: ``predict_gen`` experiment, after Unterthiner et al. 2020): mean, variance and the five
#: quartiles of every weight and bias tensor, then two hidden layers of 1,000 without dropout.
#: Training uses our loop (MSE on standardized targets rather than a sigmoid with BCE).
register_preset("statnn", "published", {"hidden": 1000, "depth": 2, "dropout": 0.0,
                                        "quantiles": [0.0, 0.25, 0.5, 0.75, 1.0]})
