"""The common interface of every metanetwork: :class:`Metanetwork`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from torch import Tensor, nn

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec
from catalog.selection import param_signature


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
        multi_arch: which architectures one model reads (see :meth:`arch_problem`):
            ``"one"`` (default) - only the NetworkSpec it was built with (its layers are
            shaped by that one spec); ``"same_params"`` - several architectures whose
            parameters agree (names, shapes, dtypes; e.g. the same MLP with another
            activation), since it reads parameter values only; ``"any"`` - any
            architectures: it is built with all of their NetworkSpecs (``Model(specs, ...)``)
            and reads a batch of another architecture as ``forward(self.to_graph(params, spec))``.
        probes_any_arch: whether its probe features (``probes > 0``) are computed for every
            architecture it reads (default ``False``: its first spec only).
        graphs: whether it reads graph architectures (ResNets, transformers, ...: specs with
            ``nodes``) as well as layer chains; models built on the layer structure do not,
            and refuse such a spec with a clear error (default ``False``).
        legacy_hparams: what a saved config that lacks a hyperparameter meant: the behaviour
            before the hyperparameter existed, when it is not the new default (so run
            directories saved by older versions rebuild the model they trained).

    Args:
        spec: the architecture of the input networks.
        out_dim: size of the (invariant) output.

    Shapes:
        ``forward``: ``{name: Tensor[B, *shape]}`` -> ``[B, out_dim]``.
    """

    name: ClassVar[str] = ""
    invariant: ClassVar[bool] = True
    weight_output: ClassVar[bool] = False
    multi_arch: ClassVar[str] = "one"
    graphs: ClassVar[bool] = False
    probes_any_arch: ClassVar[bool] = False
    legacy_hparams: ClassVar[dict[str, Any]] = {}

    def __init__(self, spec: NetworkSpec, out_dim: int) -> None:
        super().__init__()
        if not isinstance(spec, NetworkSpec):
            raise WeightzooError(f"{type(self).__name__} needs a NetworkSpec, got {type(spec).__name__}")
        if int(out_dim) < 1:
            raise WeightzooError(f"out_dim must be >= 1, got {out_dim}")
        if not self.graphs:
            spec.require_chain(f"metanetwork {self.name or type(self).__name__!r}")
        self.spec = spec
        self.out_dim = int(out_dim)
        self.hparams: dict[str, Any] = {}

    @classmethod
    def arch_problem(cls, specs: Sequence[NetworkSpec], hparams: Mapping[str, Any]) -> str | None:
        """Why one model with ``hparams`` cannot read all of ``specs`` (``None`` if it can).

        A single architecture always works. Probe features (``probes > 0``) run the input
        networks: a model reads several architectures with them only if it computes them for
        any architecture (``probes_any_arch``), and all of them must take one input shape.
        """
        distinct = list({_spec_key(s): s for s in specs}.values())
        if len(distinct) <= 1:
            return None
        if cls.multi_arch == "one":
            return (f"metanetwork {cls.name!r} reads networks of one architecture only (its "
                    f"layers are shaped by one NetworkSpec)")
        if hparams.get("probes") and not cls.probes_any_arch:
            return (f"metanetwork {cls.name!r} with probe features (probes="
                    f"{hparams['probes']}) runs the input networks, so it reads one architecture "
                    f"only; use probes=0 to read several")
        if hparams.get("probes") and len({tuple(s.input_shape) for s in distinct}) > 1:
            return (f"metanetwork {cls.name!r} with probe features (probes={hparams['probes']}) feeds "
                    f"every network the same probe inputs, so the architectures need one input shape "
                    f"(they read {sorted({tuple(s.input_shape) for s in distinct})}); use probes=0")
        if cls.multi_arch == "same_params" and len({param_signature(s) for s in distinct}) > 1:
            return (f"metanetwork {cls.name!r} reads several architectures only when their "
                    f"parameters have the same names and shapes; use 'gmn' or 'statnn-kinds' for "
                    f"different widths, depths or layer kinds")
        return None

    def forward_arch(self, params: Mapping[str, Tensor], spec: NetworkSpec | None = None) -> Tensor:
        """``forward`` on a batch of networks of architecture ``spec`` (default: the model's).

        Shapes:
            ``{name: Tensor[B, *shape]}`` -> ``[B, out_dim]``.
        """
        if spec is None or _spec_key(spec) == _spec_key(self.spec):
            return self(params)
        problem = self.arch_problem([self.spec, spec], self.hparams)
        if problem is not None:
            raise WeightzooError(
                f"{problem}; this one was trained on {self.spec.arch_id} and cannot read "
                f"{spec.arch_id}")
        if self.multi_arch == "any":
            return self.forward_other_arch(params, spec)
        return self(params)

    def forward_other_arch(self, params: Mapping[str, Tensor], spec: NetworkSpec) -> Tensor:
        """``forward`` on networks of another architecture ``spec`` that the model reads
        (``multi_arch == "any"``; checked by :meth:`forward_arch`): through their graphs."""
        return self(self.to_graph(params, spec))

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


def _spec_key(spec: NetworkSpec) -> tuple:
    """What a spec computes with (not its free-form ``meta``)."""
    return (spec.family, spec.input_shape, spec.layers, spec.nodes, spec.dtype)
