"""Session-wide test set-up and the zoos shared by every test package.

The Hub-compatible test server starts here, at import, because ``huggingface_hub`` reads
``HF_ENDPOINT`` when it is first imported: nothing in the suite may reach the real Hub.
Progress bars are off in tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import hubserver  # noqa: E402  (must run before anything imports huggingface_hub)

HUB = hubserver.ensure_global_server()


import pytest  # noqa: E402
from zoo_helpers import TINY_DIGITS, write_zoo  # noqa: E402


@pytest.fixture(scope="session")
def zoo_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Mapping], Path]:
    """``zoo_factory(spec) -> Path``: the zoo of a build spec (a dict), built once per session.

    Every test package's zoo fixture goes through this one factory, so a spec used in two
    places is built once. The returned zoo is shared: a test that modifies it copies it first.
    """
    from zoo_builders import build_zoo

    root = tmp_path_factory.mktemp("session-zoos")
    built: dict[str, Path] = {}

    def make(spec: Mapping) -> Path:
        key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
        if key not in built:
            out = root / f"{spec['name']}-{key}"
            build_zoo(dict(spec), out, quiet=True)
            built[key] = out
        return built[key]

    return make


# ================================================================================ hand-written zoos
# ``zoo_dir``: one MLP architecture, 12 runs x 3 checkpoints = 36 rows in two parts, a few runs
# diverged. ``multi_arch_dir``: two architectures (one row set each) and an extra column.
# Tests that modify a zoo copy it first (``zoo_copy``).

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


@pytest.fixture(scope="session")
def tiny_digits_zoo(zoo_factory: Callable[[Mapping], Path]) -> Path:
    return zoo_factory(TINY_DIGITS)
