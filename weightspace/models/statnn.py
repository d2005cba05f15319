"""``statnn``: per-tensor statistics -> MLP (Unterthiner et al., 2020, "Predicting Neural Network
Accuracy from Weights"), the strong simple baseline.

Each parameter tensor is summarised by its mean, variance and quantiles; these statistics do
not depend on the order of the entries, so the model is invariant to every neuron permutation.
"""

from __future__ import annotations

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


#: StatNN as published with NFN (Zhou et al. 2023, the ``stat`` config of the nfn repository's
#: ``predict_gen`` experiment, after Unterthiner et al. 2020): mean, variance and the five
#: quartiles of every weight and bias tensor, then two hidden layers of 1,000 without dropout.
#: Training uses our loop (MSE on standardized targets rather than a sigmoid with BCE).
register_preset("statnn", "published", {"hidden": 1000, "depth": 2, "dropout": 0.0,
                                        "quantiles": [0.0, 0.25, 0.5, 0.75, 1.0]})
