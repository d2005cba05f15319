"""catalog.openers: URL schemes dispatch to registered openers; catalog imports nothing above it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import catalog
from catalog import open_zoo
from catalog.errors import WeightzooError
from catalog.openers import _OPENERS, known_schemes, register_opener, url_scheme

CATALOG_DIR = Path(catalog.__file__).parent
#: The packages above catalog in DESIGN.md's table; catalog must import none of them.
ABOVE_CATALOG = {"hub", "zoo_builders", "weightspace", "retrieval", "zoo_cli", "benchmarks"}


def test_registered_scheme_gets_the_url_and_kwargs(zoo_dir: Path) -> None:
    seen = {}

    def opener(url: str, **kwargs):
        seen.update(url=url, kwargs=kwargs)
        return catalog.Zoo(zoo_dir)

    register_opener("testzoo", opener)
    try:
        zoo = open_zoo("testzoo://anything/here", revision="v1")
    finally:
        _OPENERS.pop("testzoo")
    assert seen == {"url": "testzoo://anything/here", "kwargs": {"revision": "v1"}}
    assert zoo.root == zoo_dir


def test_hf_opener_comes_from_the_entry_point_without_importing_hub() -> None:
    assert "hf" in known_schemes()


def test_unknown_scheme_names_the_known_ones() -> None:
    with pytest.raises(WeightzooError, match=r"no opener for s3:// URLs \(known: .*hf://"):
        open_zoo("s3://bucket/zoo")


def test_plain_paths_are_not_urls(zoo_dir: Path) -> None:
    assert url_scheme(str(zoo_dir)) is None
    assert url_scheme("C:\\zoos\\x") is None
    assert url_scheme("hf://datasets/a/b") == "hf"
    with pytest.raises(WeightzooError, match="apply to URLs only"):
        open_zoo(zoo_dir, revision="v1")


def test_catalog_imports_no_package_above_it() -> None:
    offenders = []
    for path in sorted(CATALOG_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ABOVE_CATALOG]
    assert offenders == []
