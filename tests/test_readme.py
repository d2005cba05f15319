"""Every code block of README.md runs as written on the zoo the demo builds.

The demo zoo (preset ``digits-mlp``, what ``scripts/demo.sh`` builds at ``zoos/digits-mlp``) is
built once into a scratch directory, which then plays the repository root: each fenced block
runs there in README order (a block may use what an earlier one made: a run directory, a pushed
repo). ``bash`` blocks run under ``bash -euo pipefail`` with this environment's ``zoo`` on the
PATH, ``python`` blocks in a fresh interpreter, ``yaml`` blocks are build specs and must plan
(``zoo build --dry-run``). Hub commands reach the suite's own Hub server (``HF_ENDPOINT``, set
by tests/conftest.py). Only the quick-start block is left out: it is the demo and this suite.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: A fenced block: ```lang ... ``` at the start of lines.
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.M | re.S)
#: Blocks containing this are the quick start (the demo and this very suite): not run here.
QUICK_START = "scripts/test.sh"
RUNNABLE = ("bash", "python", "yaml")
#: The longest any one block may take.
BLOCK_TIMEOUT = 600


def readme_blocks() -> list[tuple[str, str, int]]:
    """``(language, code, line number)`` of each fenced block of README.md, in order."""
    text = README.read_text()
    out = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        out.append((m.group(1), m.group(2), line))
    return out


BLOCKS = readme_blocks()
RUN = [(lang, code, line) for lang, code, line in BLOCKS if lang in RUNNABLE and QUICK_START not in code]


def test_readme_code_blocks_are_all_labelled_and_found() -> None:
    unlabelled = [line for lang, _, line in BLOCKS if lang not in (*RUNNABLE, "text")]
    assert unlabelled == [], f"README.md blocks at lines {unlabelled} need a language (bash, python, yaml, text)"
    assert len(RUN) >= 10  # the README's examples, not an accidentally empty parse
    # Indented (4-space) code blocks would escape this test: the README uses fences only.
    assert not re.search(r"\n\n    (zoo|from|import|python) ", README.read_text())


@pytest.fixture(scope="module")
def workdir(zoo_factory, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch 'repository root' with (a copy of) the demo zoo at zoos/digits-mlp."""
    spec = yaml.safe_load((ROOT / "zoo_builders" / "presets" / "digits-mlp.yaml").read_text())
    zoo = zoo_factory(spec)
    work = tmp_path_factory.mktemp("readme")
    # A copy: the blocks write to the zoo (statistics cache, card, catalog), the shared one stays.
    shutil.copytree(zoo, work / "zoos" / "digits-mlp")
    return work


def _env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env["WEIGHTZOO_HOME"] = str(work / "home")
    env["OMP_NUM_THREADS"] = "1"
    env["TQDM_DISABLE"] = "1"
    return env


@pytest.mark.slow
@pytest.mark.parametrize(("lang", "code", "line"), RUN, ids=[f"line{line}-{lang}" for lang, _, line in RUN])
def test_readme_block_runs(workdir: Path, lang: str, code: str, line: int) -> None:
    if lang == "bash":
        cmd = ["bash", "-euo", "pipefail", "-c", code]
    elif lang == "python":
        cmd = [sys.executable, "-c", code]
    else:  # yaml: a build spec that must plan
        spec = workdir / f"spec-line{line}.yaml"
        spec.write_text(code)
        cmd = [sys.executable, "-m", "zoo_cli.main", "build", str(spec), "--dry-run",
               "--out", str(workdir / f"dry-line{line}")]
    r = subprocess.run(cmd, cwd=workdir, env=_env(workdir), capture_output=True, text=True,
                       timeout=BLOCK_TIMEOUT, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, (f"README.md line {line} ({lang}) failed with exit code "
                               f"{r.returncode}:\n{code}\n--- stdout\n{r.stdout[-3000:]}\n"
                               f"--- stderr\n{r.stderr[-3000:]}")
