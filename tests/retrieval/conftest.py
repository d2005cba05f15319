"""Fixtures for the retrieval tests: a tiny digits population whose best model for digits is
known by construction.

Four models of one architecture (MLPs 64-32-10; also as ResNet-8s), trained with the project's
population trainer:

- ``on_task``: trained on digits (the query task below): the model that should rank first;
- ``parity``: trained on ``label % 2`` (only outputs 0 and 1 are ever targets);
- ``halves``: trained on ``label >= 5``;
- ``untrained``: ``on_task``'s initialization (its checkpoint 0).
"""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch
from retrieval_helpers import TINY_HUB_SOURCES, TINY_HUB_TEMPLATE


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    from zoo_builders import load_dataset

    return load_dataset("digits")


def _four_models(digits, family: str, arch, epochs: int, lr: float):
    """``(spec, params)`` of the four models above, in that order, of one architecture."""
    from zoo_builders import DatasetConfig, RunConfig, TaskConfig, TrainingConfig, train_classifiers

    torch.set_num_threads(1)
    spec = arch.network_spec(digits.input_shape, 10)
    run = RunConfig(DatasetConfig("digits"), TaskConfig(), family, arch,
                    TrainingConfig(epochs=epochs, lr=lr, seed=0, checkpoints=(0, epochs)))

    def relabel(fn):
        return dataclasses.replace(digits, y_train=fn(digits.y_train), y_test=fn(digits.y_test))

    on_task = train_classifiers(spec, [run], digits)
    parity = train_classifiers(spec, [run], relabel(lambda y: y % 2))
    halves = train_classifiers(spec, [run], relabel(lambda y: (y >= 5).long()))
    snaps = [on_task.snapshots[-1], parity.snapshots[-1], halves.snapshots[-1], on_task.snapshots[0]]
    assert [s.checkpoint for s in snaps] == [epochs, epochs, epochs, 0]
    params = {k: torch.cat([s.weights[k] for s in snaps]) for k in spec.param_names}
    return spec, params


@pytest.fixture(scope="session")
def digits_population(digits):
    """``(spec, params)`` of the four models above: MLPs 64-32-10."""
    from zoo_builders.architectures import MLPConfig

    return _four_models(digits, "mlp", MLPConfig(hidden=(32,)), epochs=8, lr=3e-3)


@pytest.fixture(scope="session")
def resnet_population(digits):
    """``(spec, params)`` of the four models above as ResNet-8s with batch norm (a graph spec)."""
    from zoo_builders.graph_architectures import ResNetConfig

    return _four_models(digits, "resnet", ResNetConfig(width_multiplier=0.25), epochs=3, lr=0.01)


@pytest.fixture(scope="session")
def bare_hub(tmp_path_factory):
    """The tiny hub as built, without embeddings (shared: copy it to modify it)."""
    from retrieval import build_hub

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("hubs") / "bare-hub"
    build_hub(out, TINY_HUB_TEMPLATE, TINY_HUB_SOURCES, quiet=True)
    return out


@pytest.fixture(scope="session")
def tiny_hub(bare_hub, tmp_path_factory):
    """The tiny hub with behaviour embeddings on 32 probes (shared: copy it to modify it)."""
    from retrieval import embed_zoo

    out = tmp_path_factory.mktemp("hubs") / "tiny-hub"
    shutil.copytree(bare_hub, out)
    embed_zoo(out, "behavior", n_probes=32)
    return out


@pytest.fixture
def hub_copy(tiny_hub, tmp_path):
    """A private copy of ``tiny_hub`` (with embeddings) that a test may modify."""
    dst = tmp_path / "hub"
    shutil.copytree(tiny_hub, dst)
    return dst


@pytest.fixture
def bare_copy(bare_hub, tmp_path):
    """A private copy of ``bare_hub`` that a test may modify."""
    dst = tmp_path / "bare"
    shutil.copytree(bare_hub, dst)
    return dst
