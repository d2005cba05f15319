"""catalog.paths.check_output_path: no command writes into a zoo or into another command's output."""

from __future__ import annotations

import os
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


# ------------------------------------------------------------------ saving an output directory all or nothing
RUN_FILES = ("metanetwork.safetensors", "config.json", "metrics.json", "history.json")


def _save_run(target: Path, version: str) -> None:
    from catalog.paths import saved_output_dir

    with saved_output_dir(target, "metanetwork run") as d:
        for name in RUN_FILES:
            (d / name).write_text(version)


def _run_state(target: Path) -> str:
    """What a loader finds after recovering: ``old``, ``new`` or a mix (the bug)."""
    from catalog.paths import recover_output_dir

    recover_output_dir(target, "metanetwork run")
    versions = {(target / name).read_text() for name in RUN_FILES}
    assert len(versions) == 1, f"a mixed run: {versions}"
    leftovers = [p.name for p in target.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers
    return versions.pop()


#: Stopped while the files are written (0), or at the k-th rename of the save: the complete
#: staging directory marked saved (1), the old run renamed aside (2), the new one put in place
#: (3), the old run's other file moved into the new one (4). Ctrl-C runs the save's clean-up;
#: a kill (-9) does not, and leaves it to the next load or save. What a loader then finds:
AFTER_CTRL_C = ["old", "old", "old", "old", "new"]  # at 3 the clean-up removes the new copy
AFTER_KILL = ["old", "old", "old", "new", "new"]  # at 3 the recovery puts the complete new copy in place


@pytest.mark.parametrize("killed", [False, True], ids=["ctrl-c", "kill"])
@pytest.mark.parametrize("step", [0, 1, 2, 3, 4])
def test_an_interrupted_save_leaves_the_old_run_or_the_new_one(tmp_path: Path, monkeypatch, step, killed) -> None:
    import catalog.paths as paths

    run = tmp_path / "runs" / "r"
    _save_run(run, "old")
    (run / "preds.csv").write_text("kept")  # a user's file in the run: it stays
    (run / "predictions-z.parquet").write_text("stale")  # made by the old metanetwork: goes with it
    real, calls = os.rename, []

    def rename(src, dst):
        calls.append(src)
        if len(calls) == step:
            raise KeyboardInterrupt
        real(src, dst)

    def write_text(self, text):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(paths.os, "rename", rename)
        if step == 0:
            m.setattr(Path, "write_text", write_text)
        if killed:  # the process dies on the spot: no clean-up runs
            m.setattr(paths.shutil, "rmtree", lambda *a, **k: None)
        with pytest.raises(KeyboardInterrupt):
            _save_run(run, "new")
    state = _run_state(run)
    assert state == (AFTER_KILL if killed else AFTER_CTRL_C)[step]
    assert (run / "preds.csv").read_text() == "kept"
    assert (run / "predictions-z.parquet").exists() == (state == "old")
    _save_run(run, "newer")  # the next save works as usual
    assert _run_state(run) == "newer" and (run / "preds.csv").read_text() == "kept"


def test_a_save_into_a_folder_of_other_files_writes_in_place(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    _save_run(tmp_path / "mine", "new")  # not moved: no earlier run to keep
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "mine" / "config.json").read_text() == "new"
    monkeypatch.chdir(tmp_path / "mine")  # nor is the current directory, run or not
    inode = (tmp_path / "mine").stat().st_ino
    _save_run(Path("."), "newer")
    assert (tmp_path / "mine").stat().st_ino == inode and Path("config.json").read_text() == "newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
