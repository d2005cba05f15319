"""Weight normalization that respects weight-space symmetries: :class:`ParamNormalizer`.

``catalog.dataset.WeightDataset`` stores a mean and standard deviation *per parameter entry*.
Normalizing each entry separately would break neuron-permutation symmetry (entry ``(i, j)`` of
a permuted network would be scaled with the statistics of another entry), so the equivariant
metanetworks could no longer be invariant and augmentation would change the data. Here the
stored per-entry statistics are pooled into one scalar mean and standard deviation *per tensor*,
which commutes with every permutation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from catalog.dataset import MIN_STD
from catalog.errors import WeightzooError


@dataclass(frozen=True)
class ParamNormalizer:
    """Per-tensor affine normalization ``(w - mean) / std`` of a parameter dict.

    Args:
        mean: ``{name: float}`` per parameter tensor.
        std: ``{name: float}`` per parameter tensor.
    """

    mean: Mapping[str, float] = field(default_factory=dict)
    std: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if set(self.mean) != set(self.std):
            raise WeightzooError("ParamNormalizer needs a mean and a std for the same tensors")
        object.__setattr__(self, "mean", {k: float(v) for k, v in self.mean.items()})
        object.__setattr__(self, "std", {k: max(float(v), MIN_STD) for k, v in self.std.items()})

    @classmethod
    def identity(cls) -> ParamNormalizer:
        return cls({}, {})

    @classmethod
    def from_weights(cls, params: Mapping[str, Tensor]) -> ParamNormalizer:
        """Statistics of a (training) batch ``{name: Tensor[N, *shape]}``."""
        mean, std = {}, {}
        for k, v in params.items():
            v64 = v.detach().to(torch.float64)
            mean[k], std[k] = float(v64.mean()), float(v64.std(correction=0))
        return cls(mean, std)

    @classmethod
    def from_entry_stats(cls, stats: Mapping[str, Mapping[str, Tensor]]) -> ParamNormalizer:
        """Pool per-entry statistics (``WeightDataset.stats``: ``{"mean": {...}, "std": {...}}``).

        The pooled variance is the mean of the entries' second moments minus the squared pooled
        mean: exactly the variance over all models and entries of the tensor.
        """
        mean, std = {}, {}
        for k, m in stats["mean"].items():
            m64 = m.to(torch.float64)
            s64 = stats["std"][k].to(torch.float64)
            mu = m64.mean()
            var = (s64.pow(2) + m64.pow(2)).mean() - mu.pow(2)
            mean[k], std[k] = float(mu), float(var.clamp_min(0).sqrt())
        return cls(mean, std)

    def normalize(self, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Shapes: ``{name: Tensor[B, *shape]}`` -> same (new tensors; tensors without stats pass through)."""
        return {k: (v - self.mean[k]) / self.std[k] if k in self.mean else v for k, v in params.items()}

    def denormalize(self, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The inverse of :meth:`normalize`."""
        return {k: v * self.std[k] + self.mean[k] if k in self.mean else v for k, v in params.items()}

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {"mean": dict(self.mean), "std": dict(self.std)}

    @classmethod
    def from_dict(cls, d: Mapping) -> ParamNormalizer:
        try:
            return cls(dict(d["mean"]), dict(d["std"]))
        except (KeyError, TypeError) as e:
            raise WeightzooError(f"malformed normalizer in a run config: {e}") from e
