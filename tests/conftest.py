"""Session-wide test set-up.

The Hub-compatible test server starts here, at import, because ``huggingface_hub`` reads
``HF_ENDPOINT`` when it is first imported: nothing in the suite may reach the real Hub.
Progress bars are off in tests.
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")

import hubserver  # noqa: E402  (must run before anything imports huggingface_hub)

HUB = hubserver.ensure_global_server()


import hashlib  # noqa: E402
import json  # noqa: E402
from collections.abc import Callable, Mapping  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


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
