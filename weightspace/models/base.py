"""The common interface of every metanetwork: :class:`Metanetwork`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor, nn

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec


class Metanetwork(nn.Module):
    """A network that reads other networks' weights.

    Every metanetwork is built as ``Model(spec, out_dim, **hparams)``: the frozen
    :class:`~catalog.network.NetworkSpec` of the networks it reads is its shape contract, and
    its ``forward`` takes a batch of networks as the stacked parameter dict that
    ``Selection.stacked()`` returns.

    Class attributes:
        name: the registry name.
        invariant: whether the output is invariant to permutations of hidden neurons.
        weight_output: whether :meth:`forward_weights` (a network -> network map) is supported.

    Args:
        spec: the architecture of the input networks.
        out_dim: size of the (invariant) output.

    Shapes:
        ``forward``: ``{name: Tensor[B, *shape]}`` -> ``[B, out_dim]``.
    """

    name: ClassVar[str] = ""
    invariant: ClassVar[bool] = True
    weight_output: ClassVar[bool] = False

    def __init__(self, spec: NetworkSpec, out_dim: int) -> None:
        super().__init__()
        if not isinstance(spec, NetworkSpec):
            raise WeightzooError(f"{type(self).__name__} needs a NetworkSpec, got {type(spec).__name__}")
        if int(out_dim) < 1:
            raise WeightzooError(f"out_dim must be >= 1, got {out_dim}")
        self.spec = spec
        self.out_dim = int(out_dim)
        self.hparams: dict[str, Any] = {}

    def forward_weights(self, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Map each network to a new network of the same shape (equivariant output head).

        Shapes:
            ``{name: Tensor[B, *shape]}`` -> ``{name: Tensor[B, *shape]}``.
        """
        raise WeightzooError(
            f"metanetwork {self.name!r} has no weight-space output; use 'dws' or 'gmn'")

    def attach_normalizer(self, normalizer: Any) -> None:
        """Tell the model how its inputs were normalized (a ``ParamNormalizer``).

        ``forward`` receives normalized weights; parts of a model that must run the input
        networks themselves (:class:`~weightspace.probes.ProbeFeatures`) undo it with this.
        """
        from weightspace.probes import ProbeFeatures  # weightspace.probes imports catalog only

        for module in self.modules():
            if isinstance(module, ProbeFeatures):
                module.attach(normalizer)

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this model (JSON-able): name, spec, out_dim, hparams."""
        return {"model": self.name, "spec": self.spec.to_dict(), "out_dim": self.out_dim,
                "hparams": dict(self.hparams)}

    def extra_repr(self) -> str:
        return f"family={self.spec.family!r}, out_dim={self.out_dim}, hparams={self.hparams}"
