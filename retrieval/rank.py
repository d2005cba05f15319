"""Ranking models for a task and scoring a ranking against the ground truth.

- :func:`score_models`: one estimator's score for every model of a population on a task.
- :func:`rank_models`: model indices, best first.
- :func:`weighted_tau`, :func:`top_k_hit`, :func:`ranking_metrics`: how well predicted
  scores order the models compared with the ground truth (e.g. linear-probe accuracy), as in
  Model Spider (weighted Kendall tau per task) and Know2Vec (top-k hit, Pearson, Spearman).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec
from retrieval._checks import ArrayLike, as_labels
from retrieval.estimators.registry import Estimator, get_estimator
from retrieval.features import read_models


def _task_xy(task: Any) -> tuple[ArrayLike, ArrayLike]:
    """``(x, y)`` of a task given as a pair or as a loaded Dataset (its training split)."""
    if hasattr(task, "x_train") and hasattr(task, "y_train"):
        return task.x_train, task.y_train
    if isinstance(task, tuple | list) and len(task) == 2:
        return task[0], task[1]
    raise WeightzooError("a task is (x, y) or a loaded zoo_builders Dataset (its training split is used)")


def score_models(estimator: str | Estimator, spec: NetworkSpec, params: Mapping[str, Tensor],
                 task: Any) -> Tensor:
    """Score every model of a population on a task with one transferability estimator.

    The estimator reads what it needs from each model on the task's examples: penultimate
    features (``logme``, ``hscore``), softmax outputs (``leep``) or argmax predictions
    (``nce``).

    Args:
        estimator: a registered estimator name (see :data:`~retrieval.estimators.ESTIMATORS`)
            or an :class:`~retrieval.estimators.Estimator`.
        spec: the population's architecture.
        params: ``{name: Tensor[P, *shape]}`` stacked parameters.
        task: ``(x [N, *input_shape], y [N])`` labelled examples, or a loaded
            :class:`~zoo_builders.datasets.Dataset` (its training split).

    Shapes:
        returns ``[P]`` float64, higher = better expected transfer; NaN for models whose
        outputs are not finite (diverged runs).
    """
    est = get_estimator(estimator)
    x, y = _task_xy(task)
    y = as_labels(y, "task labels", len(x))
    readout = read_models(spec, params, x)
    inputs = getattr(readout, est.reads)
    ok = torch.isfinite(readout.logits).flatten(1).all(1) & torch.isfinite(readout.features).flatten(1).all(1)
    out = torch.full((inputs.shape[0],), float("nan"), dtype=torch.float64)
    if ok.any():
        out[ok] = est.population(inputs[ok], y).to(torch.float64)
    return out


def _vector(v: ArrayLike | Sequence[float], name: str, allow_nan: bool) -> np.ndarray:
    a = np.asarray(v.detach().cpu() if isinstance(v, Tensor) else v, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise WeightzooError(f"{name} must be one score per model, shape [P], got shape {list(a.shape)}")
    if np.isinf(a).any() or (not allow_nan and np.isnan(a).any()):
        raise WeightzooError(f"{name} contains NaN or infinite values")
    return a


def _pair(ground_truth: Any, predicted: Any) -> tuple[np.ndarray, np.ndarray]:
    gt = _vector(ground_truth, "ground_truth", allow_nan=False)
    pred = _vector(predicted, "predicted", allow_nan=True)
    if gt.shape != pred.shape:
        raise WeightzooError(f"ground_truth has {gt.size} models but predicted has {pred.size}")
    if np.isnan(pred).all():
        raise WeightzooError("every predicted score is NaN; nothing to rank")
    # A model without a score (NaN, a diverged run) ranks below every scored model.
    pred = np.where(np.isnan(pred), np.nanmin(pred) - 1.0, pred)
    return gt, pred


def rank_models(scores: ArrayLike) -> Tensor:
    """Model indices ordered best first (highest score; NaN last; ties by index).

    Shapes:
        ``[P]`` -> ``[P]`` int64.
    """
    s = torch.as_tensor(np.asarray(scores.detach().cpu() if isinstance(scores, Tensor) else scores,
                                   dtype=np.float64))
    if s.dim() != 1:
        raise WeightzooError(f"scores must have shape [P], got {list(s.shape)}")
    key = torch.where(torch.isnan(s), torch.full_like(s, -float("inf")), s)
    return torch.sort(-key, stable=True).indices


def weighted_tau(ground_truth: ArrayLike, predicted: ArrayLike) -> float:
    """Weighted Kendall tau between true and predicted scores:
    ``scipy.stats.weightedtau(ground_truth, predicted)`` (hyperbolic weights, rank by both
    orders averaged), the per-task metric of Model Spider. NaN predictions rank last.

    Args:
        ground_truth: ``[P]`` e.g. linear-probe or fine-tuned accuracy per model.
        predicted: ``[P]`` a method's score per model (higher = predicted better).
    """
    gt, pred = _pair(ground_truth, predicted)
    if gt.size < 2:
        raise WeightzooError("weighted tau needs at least two models")
    return float(stats.weightedtau(gt, pred).statistic)


def top_k_hit(ground_truth: ArrayLike, predicted: ArrayLike, k: int = 1) -> bool:
    """Whether a truly best model is among the ``k`` models ranked highest by ``predicted``.

    Models tied for the best ground truth all count as best; predicted ties are broken by
    model index (:func:`rank_models`). NaN predictions rank last.

    Args:
        ground_truth: ``[P]`` true score per model.
        predicted: ``[P]`` predicted score per model.
        k: how many top-ranked models to look at (default ``1``).
    """
    gt, pred = _pair(ground_truth, predicted)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise WeightzooError(f"k must be a positive integer, got {k!r}")
    top = rank_models(pred)[:k].numpy()
    return bool((gt[top] == gt.max()).any())


def ranking_metrics(ground_truth: ArrayLike, predicted: ArrayLike,
                    ks: Sequence[int] = (1, 3)) -> dict[str, float]:
    """Every ranking metric for one task: ``weighted_tau``, ``top{k}_hit`` (1.0 / 0.0),
    ``pearson`` and ``spearman``.

    Args:
        ground_truth: ``[P]`` true score per model.
        predicted: ``[P]`` predicted score per model.
        ks: the ``k`` of the top-k hits (default ``(1, 3)``).
    """
    gt, pred = _pair(ground_truth, predicted)
    out = {"weighted_tau": weighted_tau(gt, pred)}
    for k in ks:
        out[f"top{k}_hit"] = float(top_k_hit(gt, pred, k))
    constant = np.ptp(gt) == 0 or np.ptp(pred) == 0
    out["pearson"] = float("nan") if constant else float(stats.pearsonr(gt, pred).statistic)
    out["spearman"] = float("nan") if constant else float(stats.spearmanr(gt, pred).statistic)
    return out
