"""catalog.paths.check_output_path: no command writes into a zoo or into another command's output."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalog.paths import OutputPathError, check_output_path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "zoo" / "models").mkdir(parents=True)
    (tmp_path / "zoo" / "zoo.json").write_text("{}")
    (tmp_path / "run").mkdir()
    for name in ("config.json", "metanetwork.safetensors"):
        (tmp_path / "run" / name).write_text("x")
    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "generator.json").write_text("{}")
    return tmp_path


@pytest.mark.parametrize("rel, kind, words", [
    ("zoo/models/part-00000.parquet", None, "inside the zoo"),
    ("zoo/preds.csv", None, "inside the zoo"),
    ("run/config.json", None, "would overwrite config.json"),
    ("zoo", "metanetwork run", "is a zoo directory"),
    ("zoo/sub", "metanetwork run", "inside the zoo"),
    ("gen", "zoo", "is a generator directory"),
    ("run/sub", "generator", "inside the metanetwork run"),
    ("zoo/eval", "eval-gen", "inside the zoo"),
])
def test_refused(tree, rel, kind, words):
    with pytest.raises(OutputPathError, match=words):
        check_output_path(tree / rel, "--out", kind)


@pytest.mark.parametrize("rel, kind", [
    ("run/predictions-x.parquet", None),  # the default place of predictions
    ("run", "metanetwork run"),  # replacing a run with a run
    ("zoo", "zoo"),  # the generated zoo itself (the command checks its settings)
    ("new/dir", "ranker"),
    ("preds.csv", None),
])
def test_allowed(tree, rel, kind):
    assert check_output_path(tree / rel, "--out", kind) == tree / rel
