"""Helpers of the generator tests: a conditional generator registered only while a test runs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

import pyarrow as pa
import torch
from torch import Tensor

from weightspace.generators import registry
from weightspace.generators.base import Generator, check_training_set

#: Rows of the tiny-digits zoo at its last checkpoint (6 seeds x 3 learning rates).
LAST = "checkpoint = 3"
#: Ten ResNet-8+BN networks on digits, one epoch (a graph zoo with batch-norm statistics).
BN_RESNETS = {
    "name": "gen-resnet-bn",
    "dataset": {"name": "digits", "test_fraction": 0.25},
    "architecture": {"name": "resnet", "depth": 8, "width_multiplier": 0.25},
    "training": {"epochs": 1, "batch_size": 64, "optimizer": "adam", "lr": 0.01, "checkpoints": [1]},
    "grid": {"seed": list(range(10))},
}
#: 12 SIRENs: 2 digits images x 6 seeds.
TINY_INR = {"name": "tiny-inr", "dataset": {"name": "digits"}, "architecture": {"name": "siren", "hidden": [16]},
            "task": {"name": "inr", "images": 2}, "training": {"epochs": 150, "lr": 0.003, "checkpoints": [150]},
            "grid": {"seed": [0, 1, 2, 3, 4, 5]}}


class ConditionalMean(Generator):
    """A conditional toy: the mean training network, its output bias shifted by the condition sum."""

    conditional: ClassVar[bool] = True

    def __init__(self, spec, condition: list | None = None) -> None:
        super().__init__(spec, condition=condition)
        self.mean: dict[str, Tensor] = {}

    def fit(self, params: Mapping[str, Tensor], table: pa.Table, *, seed: int = 0, progress: bool = False) -> None:
        check_training_set(params, self.spec, "test-cond")
        self.mean = {k: v.mean(0) for k, v in params.items()}

    def sample(self, n: int, *, seed: int = 0, condition: Mapping[str, float] | None = None) -> dict[str, Tensor]:
        shift = sum((condition or {}).values())
        out = {k: v.expand(n, *v.shape).clone() for k, v in self.mean.items()}
        out[self.spec.params[-1].name] += shift
        return out

    def state_tensors(self) -> dict[str, Tensor]:
        return dict(self.mean)

    def load_state(self, tensors: Mapping[str, Tensor], config: Mapping[str, Any]) -> None:
        self.mean = {p.name: tensors[p.name] for p in self.spec.params}


@contextmanager
def conditional_generator(name: str = "test-cond") -> Iterator[str]:
    """Register :class:`ConditionalMean` as ``name`` for the block, then remove it."""
    registry.register_generator(name)(ConditionalMean)
    try:
        yield name
    finally:
        registry._REGISTRY.pop(name, None)


def flat(params: Mapping[str, Tensor]) -> Tensor:
    return torch.cat([v.flatten(1) for v in params.values()], 1)
