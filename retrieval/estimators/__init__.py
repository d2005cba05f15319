"""Transferability estimators: score how well a model will transfer to a labelled task from
its features or outputs on the task's examples, without fine-tuning it."""

from retrieval.estimators.hscore import hscore, hscore_population
from retrieval.estimators.leep import leep, leep_population
from retrieval.estimators.logme import LogMEFit, logme, logme_fit, logme_population
from retrieval.estimators.nce import nce, nce_population
from retrieval.estimators.registry import ESTIMATORS, INPUTS, Estimator, get_estimator

__all__ = [
    "ESTIMATORS", "INPUTS", "Estimator", "LogMEFit", "get_estimator", "hscore", "hscore_population",
    "leep", "leep_population", "logme", "logme_fit", "logme_population", "nce", "nce_population",
]
