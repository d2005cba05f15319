"""The estimator registry: every transferability estimator by name, with what it reads.

| name   | reads                                        | paper                     |
| ------ | -------------------------------------------- | ------------------------- |
| logme  | features ``[P, N, D]`` (penultimate layer)   | You et al. 2021           |
| hscore | features ``[P, N, D]``                       | Bao et al. 2019           |
| leep   | softmax outputs ``[P, N, C_source]``         | Nguyen et al. 2020        |
| nce    | argmax predictions ``[P, N]``                | Tran et al. 2019          |

All score higher = better expected transfer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from catalog.errors import WeightzooError
from retrieval.estimators.hscore import hscore, hscore_population
from retrieval.estimators.leep import leep, leep_population
from retrieval.estimators.logme import logme, logme_population
from retrieval.estimators.nce import nce, nce_population

#: What an estimator reads from a model: its penultimate ``features``, its softmax ``probs``
#: or its argmax ``predictions`` on the task's examples.
INPUTS = ("features", "probs", "predictions")


@dataclass(frozen=True)
class Estimator:
    """One transferability estimator.

    Args:
        name: the registry name.
        reads: one of :data:`INPUTS`.
        score: ``score(model_input, labels) -> float`` for one model.
        population: ``population(model_inputs, labels) -> Tensor[P]`` for a stacked population.
        reference: the paper.
    """

    name: str
    reads: str
    score: Callable[..., float]
    population: Callable[..., Tensor]
    reference: str

    def __post_init__(self) -> None:
        if self.reads not in INPUTS:
            raise WeightzooError(f"estimator {self.name!r} reads {self.reads!r}; valid: {', '.join(INPUTS)}")


ESTIMATORS: dict[str, Estimator] = {
    e.name: e for e in (
        Estimator("logme", "features", logme, logme_population, "You et al. 2021, LogME"),
        Estimator("hscore", "features", hscore, hscore_population, "Bao et al. 2019, H-score"),
        Estimator("leep", "probs", leep, leep_population, "Nguyen et al. 2020, LEEP"),
        Estimator("nce", "predictions", nce, nce_population, "Tran et al. 2019, NCE"),
    )
}


def get_estimator(name: str | Estimator) -> Estimator:
    """The registered estimator called ``name`` (an :class:`Estimator` passes through)."""
    if isinstance(name, Estimator):
        return name
    if name not in ESTIMATORS:
        raise WeightzooError(f"unknown estimator {name!r}; valid estimators: {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name]
