"""retrieval: model embeddings, transferability estimators, ground-truth transfer, ranking
and vector search - the computational core of "which model should I use for my task?".

Everything here computes on tensors and Arrow tables; reading and writing zoos (sidecar
embedding tables) and the CLI live elsewhere.
"""

from retrieval.embeddings import behavior_embedding, statnn_embedding, task_embedding
from retrieval.estimators import (
    ESTIMATORS,
    Estimator,
    LogMEFit,
    get_estimator,
    hscore,
    hscore_population,
    leep,
    leep_population,
    logme,
    logme_fit,
    logme_population,
    nce,
    nce_population,
)
from retrieval.features import ModelReadout, read_models
from retrieval.probes import DEFAULT_PROBES, probe_set
from retrieval.rank import (
    rank_models,
    ranking_metrics,
    score_models,
    top_k_hit,
    weighted_tau,
)
from retrieval.search import EmbeddingIndex, cosine_scores, embeddings_table, nearest
from retrieval.transfer import fit_ridge_probe, linear_probe_accuracy

__all__ = [
    "DEFAULT_PROBES", "ESTIMATORS", "EmbeddingIndex", "Estimator", "LogMEFit", "ModelReadout",
    "behavior_embedding", "cosine_scores", "embeddings_table", "fit_ridge_probe", "get_estimator",
    "hscore", "hscore_population", "leep", "leep_population", "linear_probe_accuracy", "logme",
    "logme_fit", "logme_population", "nce", "nce_population", "nearest", "probe_set",
    "rank_models", "ranking_metrics", "read_models", "score_models", "statnn_embedding",
    "task_embedding", "top_k_hit", "weighted_tau",
]
