"""Fixtures of the hub tests: a tiny two-architecture zoo (so two weight shards) built once
per session, copies of it that a test may push (a push rewrites the card), and the shared
Hub-compatible test server with a cleared request log.

The server (tests/hubserver.py) is started by tests/conftest.py before ``huggingface_hub`` is
imported; every test uses its own repo id.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import hubserver
import pytest

HUB = hubserver.ensure_global_server()

#: Two MLP widths x 3 seeds x 2 checkpoints = 12 rows in 2 parts and 2 weight shards.
SPEC = {
    "name": "hubtest",
    "dataset": {"name": "digits", "test_fraction": 0.25},
    "architecture": {"name": "mlp", "hidden": [8], "activation": "relu"},
    "training": {"epochs": 1, "batch_size": 64, "checkpoints": [0, 1]},
    "grid": {"lr": [0.01], "seed": [0, 1, 2], "architecture.hidden": [[8], [12]]},
}


@pytest.fixture(scope="session")
def built_zoo(zoo_factory) -> Path:
    """The tiny zoo, built once (never modified: tests copy it)."""
    return zoo_factory(SPEC)


@pytest.fixture
def zoo_copy(built_zoo: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny zoo."""
    dst = tmp_path / "zoo"
    shutil.copytree(built_zoo, dst)
    return dst


@pytest.fixture
def hub() -> Iterator[hubserver.HubServer]:
    """The shared test server with an empty request log."""
    HUB.requests_log.clear()
    yield HUB


@pytest.fixture
def repo_id() -> str:
    """A repo id no other test uses."""
    return f"test-org/zoo-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def pushed(built_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path]:
    """The tiny zoo pushed once to a repo that no test changes: ``(repo_id, commit, zoo dir)``."""
    from hub import push_zoo

    zoo = tmp_path_factory.mktemp("pushed") / "hubtest"
    shutil.copytree(built_zoo, zoo)
    repo = f"test-org/shared-{uuid.uuid4().hex[:10]}"
    result = push_zoo(zoo, repo, progress=False)
    return repo, result.commit, zoo
