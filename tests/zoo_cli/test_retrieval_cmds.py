"""`zoo build-hub`, `zoo embed`, `zoo search` and `zoo train-ranker` end to end on a tiny hub;
each kind of bad input is one `error:` line and exit status 1."""

from __future__ import annotations

import json

import pytest
import yaml
from zoo_helpers import assert_one_line_error, run_cli

#: Two MLP architectures (one and two hidden layers) per source task, one run each.
TEMPLATE = {
    "name": "cli-hub", "dataset": {"name": "digits", "test_fraction": 0.25},
    "architecture": {"name": "mlp", "hidden": [16], "activation": "relu"},
    "training": {"epochs": 6, "batch_size": 32, "optimizer": "adam", "lr": 0.01, "checkpoints": [6]},
    "grid": {"hidden": [[16], [16, 8]], "seed": [0]},
}
SOURCES = ("digits:classes=0,1,2", "digits:classes=3,4,5", "digits:classes=6,7,8,9")




def ok(*args) -> str:
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    return result.output




@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A hub built with `zoo build-hub` (no embeddings yet)."""
    root = tmp_path_factory.mktemp("cli-hub")
    template = root / "template.yaml"
    template.write_text(yaml.safe_dump(TEMPLATE))
    args = ["build-hub", root / "hub", "--template", template, "-q"]
    for s in SOURCES:
        args += ["--source-task", s]
    out = ok(*args)
    assert out.strip() == f"hub {root / 'hub'}: 6 runs on 3 source tasks (6 trained now)"
    return root / "hub"


def test_embed_query_verify_search_and_ranker(hub, tmp_path):
    out = ok("embed", hub, "--method", "behavior", "--n-probes", "16", "--where", "hidden = [16]", "-q")
    assert out.startswith("embedded 3 models with behavior: 160-dim vectors in column emb_behavior")
    out = ok("embed", hub, "--method", "behavior", "--json", "-q")
    summary = json.loads(out)
    assert (summary["embedded"], summary["skipped"], summary["dim"]) == (3, 3, 160)
    assert summary["config"]["n_probes"] == 16
    out = ok("embed", hub, "--method", "behavior", "-q")
    assert "embedded 0 models with behavior (6 already embedded, skipped)" in out

    rows = ok("query", hub, "SELECT model_id FROM models WHERE emb_behavior IS NOT NULL", "--format", "csv")
    assert len(rows.strip().splitlines()) == 1 + 6
    assert ok("verify", hub, "-q").strip().startswith(f"{hub}: OK")

    out = ok("search", hub, "--task", "digits:classes=3,4,5", "--k", "2", "--columns", "source_task,test_acc")
    lines = out.strip().splitlines()
    assert lines[0].startswith("task digits:classes=3,4,5: top 2 of 6 models by logme")
    assert lines[1].split() == ["rank", "model_id", "score", "source_task", "test_acc"]
    assert all("digits:classes=3,4,5" in line for line in lines[3:5])

    res = json.loads(ok("search", hub, "--task", "digits:classes=0,1,2", "--method", "behavior", "--json"))
    assert res["method"] == "behavior" and res["candidates"] == 6 and len(res["results"]) == 6
    assert [r["rank"] for r in res["results"]] == list(range(1, 7))

    ranker = tmp_path / "ranker"
    out = ok("train-ranker", hub, "--out", ranker, "--estimators", "logme", "--epochs", "20", "-q")
    assert out.startswith("trained a ranker on 3 tasks x 6 models")
    res = json.loads(ok("search", hub, "--task", "digits:classes=6,7,8,9", "--method", "ranker",
                        "--ranker", ranker, "--k", "3", "--columns", "source_task", "--json"))
    assert len(res["results"]) == 3 and res["results"][0]["source_task"] == "digits:classes=6,7,8,9"


def test_bad_input_is_one_error_line(hub, tmp_path):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(hub, bare, ignore=shutil.ignore_patterns("embeddings"))
    from catalog.format import read_manifest, write_manifest

    m = read_manifest(bare)
    m.files = [f for f in m.files if f.kind != "sidecar"]
    write_manifest(bare, m)

    assert_one_line_error(run_cli("embed", bare, "--method", "nope"),
                          "unknown embedding method 'nope'; valid methods: behavior, statnn, weights")
    assert_one_line_error(run_cli("embed", bare, "--method", "statnn", "-q"), "embedding dimension mismatch")
    assert_one_line_error(run_cli("search", bare, "--task", "digits:classes=3"), "at least two classes")
    assert_one_line_error(run_cli("search", bare, "--task", "digits", "--method", "behavior"),
                          "has no behavior embeddings")
    assert_one_line_error(run_cli("search", bare, "--task", "digits", "--method", "nope"),
                          "unknown search method 'nope'; valid methods: logme, hscore, leep, nce, behavior, ranker")
    assert_one_line_error(run_cli("search", bare, "--task", "digits", "--method", "ranker"), "needs --ranker DIR")
    assert_one_line_error(run_cli("search", bare, "--task", "moons"), "the task's inputs must match")
    assert_one_line_error(run_cli("search", bare, "--task", "digits", "--where", "checkpoint = 99"),
                          "where='checkpoint = 99' (--where) selects no model")
    assert_one_line_error(run_cli("train-ranker", bare, "--out", tmp_path / "r", "-q"), "has no behavior embeddings")


def test_build_hub_never_writes_inside_a_zoo_or_a_run(hub, tmp_path):
    import shutil

    from zoo_helpers import tree_hashes

    template = hub.parent / "template.yaml"
    before = tree_hashes(hub)
    inner = hub / "models" / "inner-hub"
    assert_one_line_error(run_cli("build-hub", inner, "--template", template, "-q",
                                  "--source-task", SOURCES[0]), "OUT", "lies inside the zoo")
    assert not inner.exists() and tree_hashes(hub) == before
    run = tmp_path / "run"  # a metanetwork run directory, by its marker file
    run.mkdir()
    (run / "metanetwork.safetensors").write_bytes(b"")
    assert_one_line_error(run_cli("build-hub", run, "--template", template, "-q",
                                  "--source-task", SOURCES[0]), "is a metanetwork run directory")
    assert_one_line_error(run_cli("build-hub", run / "hub", "--template", template, "-q",
                                  "--source-task", SOURCES[0]), "lies inside the metanetwork run directory")
    assert sorted(p.name for p in run.iterdir()) == ["metanetwork.safetensors"]
    # OUT an existing hub is still fine: the build resumes
    again = tmp_path / "again"
    shutil.copytree(hub, again)
    args = ["build-hub", again, "--template", template, "-q"]
    for s in SOURCES:
        args += ["--source-task", s]
    assert ok(*args).strip().endswith("(0 trained now)")
