"""retrieval.embeddings: behaviour, task and weight-statistics embeddings."""

from __future__ import annotations

import pytest
import torch
from retrieval_helpers import ON_TASK

from catalog.errors import WeightzooError
from catalog.network import LayerSpec, NetworkSpec, build_module
from retrieval import (
    behavior_embedding,
    cosine_scores,
    probe_set,
    statnn_embedding,
    task_embedding,
)


def test_behavior_embedding_is_each_models_softmax_on_the_probes(digits_population) -> None:
    spec, params = digits_population
    probes = probe_set("digits", n=16)
    emb = behavior_embedding(spec, params, probes)
    assert emb.shape == (4, 16 * 10)
    # Probe-major layout: each probe's 10 outputs sum to one.
    assert torch.allclose(emb.view(4, 16, 10).sum(-1), torch.ones(4, 16), atol=1e-5)
    # Member 1 computed alone by the plain nn.Module rebuilt from the spec.
    module = build_module(spec, {k: v[1] for k, v in params.items()})
    with torch.no_grad():
        alone = torch.softmax(module(probes), -1).flatten()
    assert torch.allclose(emb[1], alone, atol=1e-6)


def test_diverged_model_gets_a_nan_row(digits_population) -> None:
    spec, params = digits_population
    broken = {k: v.clone() for k, v in params.items()}
    broken["layers.0.weight"][2, 0, 0] = float("nan")
    emb = behavior_embedding(spec, broken, probe_set("digits", n=4))
    assert torch.isnan(emb[2]).all() and torch.isfinite(emb[[0, 1, 3]]).all()


def test_task_embedding_by_hand() -> None:
    # Task: 1-D inputs 0, 1 (class 0) and 10, 11 (class 1); models with 3 outputs.
    x, y = [[0.0], [1.0], [10.0], [11.0]], [0, 0, 1, 1]
    probes = [[0.2], [10.6]]
    # k = 2: probe 0.2's neighbours are 0 and 1 (class 0, 0); probe 10.6's are 11 and 10.
    assert task_embedding(x, y, probes, 3, k=2).tolist() == [1, 0, 0, 0, 1, 0]
    # k = 3: probe 0.2 adds 10 (class 1): (2/3, 1/3, 0); probe 10.6 adds 1 (class 0).
    assert torch.allclose(task_embedding(x, y, probes, 3, k=3),
                          torch.tensor([2 / 3, 1 / 3, 0, 1 / 3, 2 / 3, 0]))


def test_the_model_that_solves_the_task_is_nearest_to_it(digits_population, digits) -> None:
    spec, params = digits_population
    probes = probe_set("digits", n=128)
    models = behavior_embedding(spec, params, probes)
    task = task_embedding(digits.x_train, digits.y_train, probes, spec.n_outputs)
    assert task.shape == (models.shape[1],)
    sims = cosine_scores(models, task)
    assert int(sims.argmax()) == ON_TASK
    assert float(sims[ON_TASK]) > 0.9 > float(sims.sort(descending=True).values[1]) + 0.3


def test_task_embedding_bad_input() -> None:
    x, y = [[0.0], [1.0], [10.0], [11.0]], [0, 0, 1, 1]
    with pytest.raises(WeightzooError, match="outside the models' 1 outputs"):
        task_embedding(x, y, [[0.0]], 1)
    with pytest.raises(WeightzooError, match="probes have 2"):
        task_embedding(x, y, [[0.0, 1.0]], 3)
    with pytest.raises(WeightzooError, match="1 distinct class"):
        task_embedding(x, [0, 0, 0, 0], [[0.0]], 3)
    with pytest.raises(WeightzooError, match=r"k must be an integer in 1\.\.4"):
        task_embedding(x, y, [[0.0]], 3, k=5)


def test_statnn_embedding_by_hand_and_rng_untouched() -> None:
    # One linear layer 2 -> 1: weight [[1, 2]], bias [3].
    spec = NetworkSpec("mlp", (2,), (LayerSpec("linear", 2, 1, "w", "b"),))
    params = {"w": torch.tensor([[[1.0, 2.0]]]), "b": torch.tensor([[3.0]])}
    state = torch.random.get_rng_state()
    emb = statnn_embedding(spec, params)
    assert torch.equal(torch.random.get_rng_state(), state)
    # weight: mean 1.5, variance 0.25, quantiles 0/.25/.5/.75/1 = 1, 1.25, 1.5, 1.75, 2;
    # bias: mean 3, variance 0, every quantile 3.
    expected = [1.5, 0.25, 1.0, 1.25, 1.5, 1.75, 2.0, 3.0, 0.0, 3.0, 3.0, 3.0, 3.0, 3.0]
    assert torch.allclose(emb, torch.tensor([expected]))


def test_statnn_embedding_of_a_population(digits_population) -> None:
    spec, params = digits_population
    emb = statnn_embedding(spec, params, quantiles=(0.5,))
    assert emb.shape == (4, len(spec.params) * 3)
    with pytest.raises(WeightzooError, match="lacks"):
        statnn_embedding(spec, {"layers.0.weight": params["layers.0.weight"]})
