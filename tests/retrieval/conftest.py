"""Fixtures for the retrieval tests: a tiny digits population whose best model for digits is
known by construction.

Four MLPs 64-32-10 of one architecture, trained with the project's population trainer:

- ``on_task``: trained on digits (the query task below): the model that should rank first;
- ``parity``: trained on ``label % 2`` (only outputs 0 and 1 are ever targets);
- ``halves``: trained on ``label >= 5``;
- ``untrained``: ``on_task``'s initialization (its checkpoint 0).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    from zoo_builders import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def digits_population(digits):
    """``(spec, params)`` of the four models above, in that order."""
    from zoo_builders import DatasetConfig, RunConfig, TaskConfig, TrainingConfig, train_classifiers
    from zoo_builders.architectures import MLPConfig

    torch.set_num_threads(1)
    arch = MLPConfig(hidden=(32,))
    spec = arch.network_spec(digits.input_shape, 10)
    run = RunConfig(DatasetConfig("digits"), TaskConfig(), "mlp", arch,
                    TrainingConfig(epochs=8, lr=3e-3, seed=0, checkpoints=(0, 8)))

    def relabel(fn):
        return dataclasses.replace(digits, y_train=fn(digits.y_train), y_test=fn(digits.y_test))

    on_task = train_classifiers(spec, [run], digits)
    parity = train_classifiers(spec, [run], relabel(lambda y: y % 2))
    halves = train_classifiers(spec, [run], relabel(lambda y: (y >= 5).long()))
    snaps = [on_task.snapshots[-1], parity.snapshots[-1], halves.snapshots[-1], on_task.snapshots[0]]
    assert [s.checkpoint for s in snaps] == [8, 8, 8, 0]
    params = {k: torch.cat([s.weights[k] for s in snaps]) for k in spec.param_names}
    return spec, params
