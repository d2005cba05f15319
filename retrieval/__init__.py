"""retrieval: model embeddings, transferability estimators, ground-truth transfer, ranking
and vector search - "which model of a zoo should I use for my task?".

The core computes on tensors and Arrow tables (estimators, embeddings, rank metrics,
:class:`EmbeddingIndex`); on top of it, zoo-level functions store embeddings with a zoo
(:func:`embed_zoo`), search a zoo for a task (:func:`search_zoo`, :func:`score_zoo`), build a
retrieval hub (:func:`build_hub`), compute ground-truth transfer (:func:`transfer_ground_truth`)
and train a learned ranker (:func:`train_ranker`). Tasks are strings such as
``digits:classes=0,1,2`` (:class:`TaskSpec`).
"""

from retrieval.embed import (
    EMBEDDINGS,
    EmbedResult,
    StoredEmbeddings,
    embed_zoo,
    get_embedding_method,
    metanetwork_trunk,
    read_embeddings,
)
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
from retrieval.hub import (
    QUERY_TASKS,
    SOURCE_TASKS,
    HubBuild,
    build_hub,
    train_ranker,
    transfer_ground_truth,
)
from retrieval.probes import DEFAULT_PROBES, probe_set
from retrieval.rank import (
    rank_models,
    ranking_metrics,
    score_models,
    top_k_hit,
    weighted_tau,
)
from retrieval.ranker import (
    RankerConfig,
    RankerFeatures,
    TrainedRanker,
    fit_ranker,
    ranker_features,
)
from retrieval.search import EmbeddingIndex, cosine_scores, embeddings_table, nearest
from retrieval.tasks import TaskSpec, load_task, parse_task
from retrieval.transfer import fit_ridge_probe, linear_probe_accuracy
from retrieval.zoo_search import SEARCH_METHODS, SearchResult, ZooScores, score_zoo, search_zoo

__all__ = [
    "EMBEDDINGS", "QUERY_TASKS", "SEARCH_METHODS", "SOURCE_TASKS", "EmbedResult", "HubBuild",
    "RankerConfig", "RankerFeatures", "SearchResult", "StoredEmbeddings", "TaskSpec",
    "TrainedRanker", "ZooScores", "build_hub", "embed_zoo", "fit_ranker", "get_embedding_method",
    "load_task", "metanetwork_trunk", "parse_task", "ranker_features", "read_embeddings",
    "score_zoo", "search_zoo", "train_ranker", "transfer_ground_truth",
    "DEFAULT_PROBES", "ESTIMATORS", "EmbeddingIndex", "Estimator", "LogMEFit", "ModelReadout",
    "behavior_embedding", "cosine_scores", "embeddings_table", "fit_ridge_probe", "get_estimator",
    "hscore", "hscore_population", "leep", "leep_population", "linear_probe_accuracy", "logme",
    "logme_fit", "logme_population", "nce", "nce_population", "nearest", "probe_set",
    "rank_models", "ranking_metrics", "read_models", "score_models", "statnn_embedding",
    "task_embedding", "top_k_hit", "weighted_tau",
]
