"""A generated zoo is a zoo: push -> pull gives the same files, and `eval-gen` accepts the pulled
copy against its source (the source check compares content, not paths)."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalog import open_zoo, verify_zoo
from hub import pull_zoo, push_zoo

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")


def test_generated_zoo_push_pull_round_trip(hub, tiny_digits_zoo: Path, repo_id: str, tmp_path: Path) -> None:
    from weightspace.generators import evaluate_generated, generate_zoo

    gen = tmp_path / "gen"
    generate_zoo(tiny_digits_zoo, "noise", "checkpoint = 3", 6, gen, hparams={"sigma": 0.05}, quiet=True)
    push_zoo(gen, repo_id, progress=False)
    out = tmp_path / "pulled"
    pull_zoo(repo_id, out, progress=False)
    assert verify_zoo(out).ok
    data_files = sorted([*gen.glob("models/*.parquet"), *gen.glob("weights/*/*.safetensors")])
    assert len(data_files) >= 2
    for f in data_files:  # metadata parts and weight shards come back byte for byte
        assert (out / f.relative_to(gen)).read_bytes() == f.read_bytes(), f
    assert open_zoo(out).manifest.spec["generated"] == open_zoo(gen).manifest.spec["generated"]
    report = evaluate_generated(out, tiny_digits_zoo, baselines=False, out_dir=tmp_path / "ev", progress=False)
    assert report.methods["generated: noise"]["n"] == 6
