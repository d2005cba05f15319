"""``mlp``: an MLP on the flat weight vector, the naive baseline (not permutation invariant)."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from catalog.network import NetworkSpec
from weightspace.models._common import check_dropout, check_positive, make_mlp
from weightspace.models.base import Metanetwork
from weightspace.models.registry import register_metanetwork
from weightspace.representations.flat import params_to_flat


@register_metanetwork("mlp")
class FlatMLP(Metanetwork):
    """An MLP on :func:`~weightspace.representations.params_to_flat`.

    Args:
        spec: the architecture of the input networks.
        out_dim: output size.
        hidden: width (default ``64``).
        depth: hidden layers (default ``2``).
        dropout: dropout after each hidden layer (default ``0``).

    Shapes:
        ``{name: Tensor[B, *shape]}`` -> ``[B, out_dim]``.
    """

    invariant = False
    multi_arch = "same_params"  # the flat vector: any activation, same shapes
    graphs = True  # reads parameter tensors only, whatever the architecture

    def __init__(self, spec: NetworkSpec, out_dim: int, hidden: int = 64, depth: int = 2,
                 dropout: float = 0.0) -> None:
        super().__init__(spec, out_dim)
        check_positive(hidden=hidden)
        check_dropout(dropout)
        self.hparams = {"hidden": hidden, "depth": depth, "dropout": dropout}
        self.mlp = make_mlp(spec.n_params, hidden, out_dim, depth, dropout)

    def forward(self, params: Mapping[str, Tensor]) -> Tensor:
        return self.mlp(params_to_flat(self.spec, params).float())
