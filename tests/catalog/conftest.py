"""Tiny zoos written with ZooWriter, shared by the catalog tests.

``zoo_dir``: one MLP architecture, 12 runs x 3 checkpoints = 36 rows in two parts, a few runs
diverged. ``multi_arch_dir``: two architectures (one row set each) and an extra column.
Tests that modify a zoo copy it first (``zoo_copy``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from catalog_helpers import write_zoo


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_zoo(tmp_path_factory.mktemp("zoos") / "tiny", "tiny", range(12))


@pytest.fixture(scope="session")
def multi_arch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_zoo(tmp_path_factory.mktemp("zoos") / "wide", "wide", range(4), checkpoints=(0, 1),
                     hidden=(8, 6), extra={"width_note": "two widths"}, parts=1, seed=1)


@pytest.fixture
def zoo_copy(zoo_dir: Path, tmp_path: Path) -> Path:
    """A private copy of ``zoo_dir`` that a test may modify."""
    dst = tmp_path / "copy"
    shutil.copytree(zoo_dir, dst)
    return dst


@pytest.fixture(autouse=True)
def _private_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own catalog file and data dir, never the user's."""
    monkeypatch.setenv("WEIGHTZOO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WEIGHTZOO_CATALOG", raising=False)
    return tmp_path / "home"
