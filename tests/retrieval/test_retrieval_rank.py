"""retrieval.rank: scoring a population on a task, and the ranking metrics."""

from __future__ import annotations

import pytest
import torch
from retrieval_helpers import ON_TASK, UNTRAINED
from scipy import stats

from catalog.errors import WeightzooError
from retrieval import (
    ESTIMATORS,
    linear_probe_accuracy,
    rank_models,
    ranking_metrics,
    score_models,
    top_k_hit,
    weighted_tau,
)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_model_trained_on_the_task_ranks_first(name: str, digits_population, digits) -> None:
    spec, params = digits_population
    scores = score_models(name, spec, params, digits)       # a Dataset: its training split
    assert scores.shape == (4,) and torch.isfinite(scores).all()
    assert int(rank_models(scores)[0]) == ON_TASK
    # The same through an (x, y) pair.
    again = score_models(name, spec, params, (digits.x_train, digits.y_train))
    assert torch.allclose(scores, again)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_graph_models_rank_too(name: str, resnet_population, digits) -> None:
    # ResNet-8s with batch norm: the estimators read their pooled channels (the last node's input)
    spec, params = resnet_population
    scores = score_models(name, spec, params, digits)
    assert scores.shape == (4,) and torch.isfinite(scores).all()
    assert int(rank_models(scores)[0]) == ON_TASK


def test_model_trained_on_the_task_ranks_first_under_the_linear_probe(digits_population, digits) -> None:
    spec, params = digits_population
    acc = linear_probe_accuracy(spec, params, (digits.x_train, digits.y_train),
                                (digits.x_test, digits.y_test))
    assert int(rank_models(acc)[0]) == ON_TASK
    assert float(acc[ON_TASK]) > 0.9
    assert float(acc[ON_TASK]) > float(acc[UNTRAINED]) + 0.05


def test_estimators_skip_diverged_models(digits_population, digits) -> None:
    spec, params = digits_population
    broken = {k: v.clone() for k, v in params.items()}
    broken["layers.1.bias"][UNTRAINED, 0] = float("nan")
    scores = score_models("logme", spec, broken, digits)
    assert torch.isnan(scores[UNTRAINED]) and torch.isfinite(scores[:UNTRAINED]).all()
    assert int(rank_models(scores)[-1]) == UNTRAINED


def test_score_models_bad_input(digits_population, digits) -> None:
    spec, params = digits_population
    with pytest.raises(WeightzooError, match="unknown estimator 'nope'; valid estimators: logme"):
        score_models("nope", spec, params, digits)
    with pytest.raises(WeightzooError, match="1 distinct class"):
        score_models("leep", spec, params, (digits.x_train, torch.zeros_like(digits.y_train)))
    with pytest.raises(WeightzooError, match="but the models take"):
        score_models("logme", spec, params, (torch.zeros(10, 2), torch.arange(10) % 2))


def test_weighted_tau_is_scipys() -> None:
    gt = [0.9, 0.5, 0.7, 0.1, 0.3]
    pred = [2.0, 1.0, 0.5, -1.0, 0.7]
    assert weighted_tau(gt, pred) == pytest.approx(stats.weightedtau(gt, pred).statistic)
    assert weighted_tau(gt, gt) == pytest.approx(1.0)
    assert weighted_tau(gt, [-v for v in gt]) == pytest.approx(-1.0)
    # A NaN prediction ranks last: the same as the lowest score.
    assert weighted_tau(gt, [2.0, 1.0, 0.5, float("nan"), 0.7]) == pytest.approx(
        weighted_tau(gt, [2.0, 1.0, 0.5, -5.0, 0.7]))


def test_top_k_hit_and_rank_models_by_hand() -> None:
    gt = [0.2, 0.9, 0.5, 0.9]        # models 1 and 3 tie for best
    pred = [3.0, 1.0, 2.0, 0.0]      # ranking 0, 2, 1, 3
    assert rank_models(pred).tolist() == [0, 2, 1, 3]
    assert not top_k_hit(gt, pred, 1) and not top_k_hit(gt, pred, 2)
    assert top_k_hit(gt, pred, 3)
    assert rank_models([1.0, float("nan"), 1.0, 2.0]).tolist() == [3, 0, 2, 1]  # ties by index


def test_ranking_metrics_and_bad_input() -> None:
    gt, pred = [0.1, 0.4, 0.3, 0.9], [0.0, 2.0, 1.0, 3.0]
    m = ranking_metrics(gt, pred, ks=(1, 2))
    assert m["weighted_tau"] == pytest.approx(1.0) and m["top1_hit"] == 1.0 and m["top2_hit"] == 1.0
    assert m["spearman"] == pytest.approx(1.0)
    assert m["pearson"] == pytest.approx(stats.pearsonr(gt, pred).statistic)
    with pytest.raises(WeightzooError, match="ground_truth has 4 models but predicted has 3"):
        weighted_tau(gt, pred[:3])
    with pytest.raises(WeightzooError, match="ground_truth contains NaN"):
        top_k_hit([float("nan"), 1.0], [1.0, 2.0])
    with pytest.raises(WeightzooError, match="k must be a positive integer"):
        top_k_hit(gt, pred, 0)
