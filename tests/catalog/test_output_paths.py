"""catalog.paths.check_output_path: no command writes into a zoo or into another command's output."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
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


# ------------------------------------------------------------------ locations that cannot be written
REPO = Path(__file__).resolve().parents[2]


def _unprivileged(code: str) -> subprocess.CompletedProcess:
    """Run Python ``code`` without the power to ignore file permissions: as root, under ``setpriv``
    without the capabilities that let root write anywhere (skipped where there is none)."""
    cmd = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: file permissions do not apply")
        cmd = [setpriv, "--bounding-set", "-dac_override,-dac_read_search,-fowner", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                          check=False)


@pytest.mark.parametrize("rel, kind, words", [
    ("ro/run", "metanetwork run", "--out {ro}/run cannot be written: the directory {ro} is not writable"),
    ("ro/new/deeper/gen", "generator", "the directory {ro} is not writable"),  # the nearest existing folder
    ("ro/preds.csv", None, "the directory {ro} is not writable"),
    ("ro/old.csv", None, "the directory {ro} is not writable"),  # replacing a file needs its folder too
    ("ro", "eval-gen", "--out {ro} is not writable"),  # an existing output directory
    ("w/locked.png", None, "--out {w}/locked.png is not writable"),  # a read-only file
])
def test_an_unwritable_location_is_refused_before_any_work(tmp_path: Path, rel, kind, words) -> None:
    ro, w = tmp_path / "ro", tmp_path / "w"
    ro.mkdir()
    w.mkdir()
    (ro / "old.csv").write_text("x")
    (w / "locked.png").write_text("x")
    os.chmod(w / "locked.png", 0o444)
    os.chmod(ro, 0o555)
    try:
        r = _unprivileged(f"from catalog.paths import check_output_path\n"
                          f"check_output_path({str(tmp_path / rel)!r}, '--out', {kind!r})")
    finally:
        os.chmod(ro, 0o755)
    assert r.returncode == 1 and "OutputPathError" in r.stderr, r.stderr
    assert words.format(ro=ro, w=w) in r.stderr.splitlines()[-1]
    assert "choose" in r.stderr.splitlines()[-1] or "make it writable" in r.stderr.splitlines()[-1]


@pytest.mark.parametrize("rel, kind, words", [
    ("file/run", "metanetwork run", "cannot be created: {t}/file is a file, not a directory"),
    ("file/deeper/preds.csv", None, "cannot be created: {t}/file is a file, not a directory"),
    ("file", "metanetwork run", "is a file, not a directory"),
    ("dir", None, "is a directory, not a file"),
])
def test_a_location_in_the_way_of_a_file_or_folder_is_refused(tmp_path: Path, rel, kind, words) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    with pytest.raises(OutputPathError, match=re.escape(words.format(t=tmp_path))):
        check_output_path(tmp_path / rel, "--out", kind)


def test_a_python_argument_is_named_with_its_flag(tree: Path) -> None:
    """flag=: the message names the Python argument with its value, then the CLI option."""
    with pytest.raises(OutputPathError) as e:
        check_output_path(tree / "zoo" / "x.csv", "out", None, flag="--out")
    assert str(e.value).startswith(f"out={str(tree / 'zoo' / 'x.csv')!r} (--out) lies inside the zoo at ")
    with pytest.raises(OutputPathError, match=r"^--out \S+x\.csv lies inside the zoo"):  # without flag: as before
        check_output_path(tree / "zoo" / "x.csv", "--out", None)


def test_a_figures_folder_may_exist_but_not_be_a_zoo(tree: Path) -> None:
    assert check_output_path(tree / "run", "--out", None, directory=True) == tree / "run"
    with pytest.raises(OutputPathError, match="is a zoo"):
        check_output_path(tree / "zoo", "--out", None, directory=True)


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
