"""retrieval.hub / zoo_search / ranker on the tiny hub: the hub's rows, a model trained on the
query task ranks first under every method, ground truth, the ranker's files, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from retrieval_helpers import TINY_HUB_SOURCES, TINY_HUB_TEMPLATE
from zoo_helpers import write_npz

from catalog import open_zoo
from catalog.errors import WeightzooError
from retrieval import (
    SEARCH_METHODS,
    RankerConfig,
    TrainedRanker,
    build_hub,
    score_zoo,
    search_zoo,
    train_ranker,
    transfer_ground_truth,
)
from retrieval.hub import hub_run_id
from retrieval.ranker import ranker_features, standardize
from zoo_builders import BuildSpec


def _sources(zoo) -> dict[str, str]:
    t = open_zoo(zoo).table
    return dict(zip(t.column("model_id").to_pylist(), t.column("source_task").to_pylist()))


def test_hub_rows_resume_and_verify(bare_hub, bare_copy) -> None:
    zoo = open_zoo(bare_hub)
    t = zoo.table
    assert t.num_rows == 6 and len(zoo.manifest.architectures) == 2
    assert sorted(set(t.column("source_task").to_pylist())) == sorted(TINY_HUB_SOURCES)
    assert len(set(t.column("run_id").to_pylist())) == 6
    assert zoo.manifest.spec["source_tasks"] == list(TINY_HUB_SOURCES)
    assert zoo.manifest.spec["dataset"] == TINY_HUB_TEMPLATE["dataset"]
    spec = BuildSpec.from_dict(TINY_HUB_TEMPLATE)
    from retrieval import TaskSpec

    want = {hub_run_id(TaskSpec.parse(s), r) for s in TINY_HUB_SOURCES for r in spec.runs()}
    assert set(t.column("run_id").to_pylist()) == want
    assert zoo.verify().ok
    # A second build of the same hub trains nothing; another source list is another zoo.
    again = build_hub(bare_copy, TINY_HUB_TEMPLATE, TINY_HUB_SOURCES, quiet=True)
    assert (again.runs, again.trained) == (6, 0)
    with pytest.raises(WeightzooError, match="different spec"):
        build_hub(bare_copy, TINY_HUB_TEMPLATE, TINY_HUB_SOURCES[:2], quiet=True)


#: A hub on a user's npz file (named relative to the cwd), two source tasks read from it.
NPZ_HUB = {"name": "npzhub", "dataset": {"name": "npz", "path": "data.npz"},
           "architecture": {"name": "mlp", "hidden": [4]},
           "training": {"epochs": 1, "batch_size": 16, "checkpoints": [1]}, "grid": {"seed": [0]}}
NPZ_SOURCES = ("data.npz", "npz:path=data.npz:classes=0,1")


def test_a_hub_resume_refuses_other_npz_data(tmp_path, monkeypatch) -> None:
    """As zoo build: a resume checks the npz file's sha256 that the hub recorded."""
    write_npz(tmp_path / "proj" / "data.npz", 0)
    write_npz(tmp_path / "other" / "data.npz", 1)  # same sizes, other data
    monkeypatch.chdir(tmp_path / "proj")
    assert build_hub("hub", NPZ_HUB, NPZ_SOURCES, quiet=True).trained == 2
    # From another directory whose data.npz is other data: the source tasks would read it.
    monkeypatch.chdir(tmp_path / "other")
    with pytest.raises(WeightzooError, match=r"source task npz:path=data.npz reads .*other.data\.npz .*refusing "
                                             r"to resume it on other data: run from the directory where data.npz"):
        build_hub(tmp_path / "proj" / "hub", NPZ_HUB, NPZ_SOURCES, quiet=True)
    # The file replaced in place: refused as zoo build refuses it.
    monkeypatch.chdir(tmp_path / "proj")
    write_npz(tmp_path / "proj" / "data.npz", 1)
    with pytest.raises(WeightzooError, match=r"built on the npz file .*data\.npz .*holds other data .*refusing "
                                             r"to resume it on other data: put that file back"):
        build_hub("hub", NPZ_HUB, NPZ_SOURCES, quiet=True)
    write_npz(tmp_path / "proj" / "data.npz", 0)  # the same data again: resumes (nothing to train)
    assert build_hub("hub", NPZ_HUB, NPZ_SOURCES, quiet=True).trained == 0


@pytest.mark.parametrize("method", ["logme", "hscore", "leep", "nce", "behavior"])
@pytest.mark.parametrize("task", TINY_HUB_SOURCES)
def test_the_model_trained_on_the_task_ranks_first(tiny_hub, method: str, task: str) -> None:
    r = search_zoo(tiny_hub, task, method=method, k=2, columns=["source_task"])
    assert r.table.column_names == ["rank", "model_id", "score", "source_task"]
    # Both architectures trained on the query task come first.
    assert r.table.column("source_task").to_pylist() == [task, task]
    assert r.table.column("rank").to_pylist() == [1, 2] and r.candidates == 6 and r.missing == 0
    scores = r.table.column("score").to_pylist()
    assert scores[0] >= scores[1]


def test_behavior_search_uses_duckdb_and_agrees_with_score_zoo(tiny_hub) -> None:
    task = "digits:classes=3,4,5"
    all_scores = score_zoo(tiny_hub, task, "behavior")
    top = search_zoo(tiny_hub, task, "behavior", k=6)
    by_id = dict(zip(all_scores.model_ids, all_scores.scores.tolist()))
    for mid, s in zip(top.table.column("model_id").to_pylist(), top.table.column("score").to_pylist()):
        assert s == pytest.approx(by_id[mid], abs=1e-5)
    # --where restricts the candidates.
    some = search_zoo(tiny_hub, task, "behavior", k=6, where="hidden = [16]")
    assert some.candidates == 3 and some.table.num_rows == 3


def test_ground_truth_and_ranker(tiny_hub, tmp_path) -> None:
    gt = transfer_ground_truth(tiny_hub, "digits:classes=0,1,2")
    assert gt.method == "linear_probe" and gt.scores.shape == (6,)
    assert ((gt.scores >= 0) & (gt.scores <= 1)).all()
    src = _sources(tiny_hub)
    best = gt.model_ids[int(gt.scores.argmax())]
    assert src[best] == "digits:classes=0,1,2"

    cfg = RankerConfig(estimators=("logme", "nce"), epochs=60, hidden=16)
    ranker = train_ranker(tiny_hub, TINY_HUB_SOURCES, cfg, out=tmp_path / "ranker")
    assert {p.name for p in (tmp_path / "ranker").iterdir()} == {"ranker.safetensors", "ranker.json"}
    meta = json.loads((tmp_path / "ranker" / "ranker.json").read_text())
    assert meta["format"] == "weightzoo-ranker-v1" and meta["config"]["estimators"] == ["logme", "nce"]
    assert meta["embedding"]["n_probes"] == 32 and meta["info"]["tasks"] == list(TINY_HUB_SOURCES)
    loaded = TrainedRanker.load(tmp_path / "ranker")
    a = score_zoo(tiny_hub, "digits:classes=6,7,8,9", "ranker", ranker=ranker).scores
    b = score_zoo(tiny_hub, "digits:classes=6,7,8,9", "ranker", ranker=tmp_path / "ranker").scores
    assert torch.equal(a, b) and torch.isfinite(a).all()
    assert loaded.config == ranker.config
    r = search_zoo(tiny_hub, "digits:classes=6,7,8,9", "ranker", k=2, ranker=loaded, columns=["source_task"])
    assert r.table.column("source_task").to_pylist() == ["digits:classes=6,7,8,9"] * 2


def test_ranker_features_shapes() -> None:
    m = torch.rand(5, 4 * 3)
    t = torch.rand(4 * 3)
    f = ranker_features(m, t, 3, torch.rand(5, 2))
    assert f.tokens.shape == (5, 4, 9) and f.pair.shape == (5, 4)
    assert torch.allclose(f.tokens[..., 6:], f.tokens[..., :3] * f.tokens[..., 3:6])
    cos = torch.nn.functional.cosine_similarity(m, t[None], dim=1)
    assert torch.allclose(f.pair[:, 0], cos, atol=1e-6)
    z = standardize(torch.tensor([1.0, 2.0, float("nan"), 3.0]))
    assert torch.allclose(z[[0, 1, 3]], torch.tensor([-1.2247, 0.0, 1.2247]), atol=1e-4) and z[2].isnan()
    with pytest.raises(WeightzooError, match="embedding dimension mismatch"):
        ranker_features(m, torch.rand(8), 3)


def test_bad_input(tiny_hub, bare_hub, tmp_path) -> None:
    assert SEARCH_METHODS == ("logme", "hscore", "leep", "nce", "behavior", "ranker")
    with pytest.raises(WeightzooError, match="unknown search method 'best'; valid methods: logme, hscore"):
        search_zoo(tiny_hub, "digits", "best")
    with pytest.raises(WeightzooError, match=r"method='statnn' \(--method\): a task cannot be embedded in the statnn "
                                             r"space"):
        search_zoo(tiny_hub, "digits", "statnn")
    with pytest.raises(WeightzooError, match="at least two classes"):
        search_zoo(tiny_hub, "digits:classes=4", "logme")
    with pytest.raises(WeightzooError, match="has no behavior embeddings .*zoo embed .* --method behavior"):
        search_zoo(bare_hub, "digits", "behavior")
    with pytest.raises(WeightzooError, match="has no behavior embeddings"):
        search_zoo(bare_hub, "digits", "ranker", ranker=tmp_path)
    with pytest.raises(WeightzooError, match=r"method='ranker' \(--method ranker\) needs a trained ranker or its "
                                             r"directory \(ranker=, --ranker DIR\)"):
        search_zoo(tiny_hub, "digits", "ranker")
    with pytest.raises(WeightzooError, match=r"has no column\(s\) \['nope'\] \(columns=, --columns\)"):
        search_zoo(tiny_hub, "digits", "logme", columns=["nope"])
    with pytest.raises(WeightzooError, match=r"^out='.*r' \(--out\) lies inside the zoo"):
        train_ranker(tiny_hub, out=tiny_hub / "r")
    with pytest.raises(WeightzooError, match=r"^out='.*h' \(OUT\) lies inside the zoo"):
        build_hub(tiny_hub / "h", TINY_HUB_TEMPLATE, TINY_HUB_SOURCES, quiet=True)
    with pytest.raises(WeightzooError, match="is not a ranker directory"):
        search_zoo(tiny_hub, "digits", "ranker", ranker=tmp_path)
    # A task whose inputs are not the models' (2-D points for 8x8 digit MLPs).
    with pytest.raises(WeightzooError, match="the task's inputs must match the models' input"):
        search_zoo(tiny_hub, "moons", "logme")
    with pytest.raises(WeightzooError, match="values per example but the probes have 64"):
        search_zoo(tiny_hub, "moons", "behavior")
    with pytest.raises(WeightzooError, match="no column"):
        search_zoo(tiny_hub, "digits", "nce", columns=["nope"])
    with pytest.raises(WeightzooError, match="k must be a positive integer"):
        search_zoo(tiny_hub, "digits", "nce", k=0)
    # where= is what a Python caller passed: it said "--where 'checkpoint = 99' selects no model"
    with pytest.raises(WeightzooError, match=r"^where='checkpoint = 99' \(--where\) selects no model of zoo"):
        search_zoo(tiny_hub, "digits", "nce", where="checkpoint = 99")
    # A ranker for models with another number of outputs: embedding dimension mismatch.
    cfg = RankerConfig(epochs=1, hidden=4)
    ranker = train_ranker(tiny_hub, TINY_HUB_SOURCES[:1], cfg)
    ranker.n_outputs = 3
    with pytest.raises(WeightzooError,
                       match="embedding dimension mismatch: the ranker reads .* 3 outputs but the zoo's have 10"):
        search_zoo(tiny_hub, "digits", "ranker", ranker=ranker)


def test_inr_zoo_is_refused_with_a_route_that_works(zoo_factory, tmp_path):
    import shutil

    from analyze_helpers import TINY_INR

    from retrieval import embed_zoo
    inr = zoo_factory(TINY_INR)
    for method in ("behavior", "logme"):
        with pytest.raises(WeightzooError, match="implicit neural representations.*--method statnn"):
            search_zoo(inr, "digits", method=method)
    with pytest.raises(WeightzooError, match="implicit neural representations"):
        embed_zoo(inr, "behavior")
    assert not (inr / "embeddings").exists()
    copy = shutil.copytree(inr, tmp_path / "inr")  # the suggested route works
    assert embed_zoo(copy, "statnn").embedded == open_zoo(copy).table.num_rows


@pytest.mark.parametrize("config", ["[" * 200_000 + "]" * 200_000, "[1, 2]"])
def test_a_ranker_whose_config_is_deeply_nested_or_not_an_object_is_refused(tmp_path, config):
    """A RecursionError (nesting) or AttributeError (a list) escaped ``TrainedRanker.load`` before."""
    from retrieval.ranker import CONFIG_FILE, WEIGHTS_FILE, TrainedRanker

    (tmp_path / CONFIG_FILE).write_text(config)
    (tmp_path / WEIGHTS_FILE).write_bytes(b"")
    with pytest.raises(WeightzooError, match=CONFIG_FILE):
        TrainedRanker.load(tmp_path)


def _saved_ranker(tmp_path):
    from retrieval.ranker import RankerConfig, RankerNet, TrainedRanker

    torch.manual_seed(0)
    ranker = TrainedRanker(RankerNet(3, 2, 4), RankerConfig(hidden=4), 3, {}, {})
    return ranker.save(tmp_path / "ranker")


def test_a_ranker_config_sized_beyond_memory_is_refused_before_allocating(tmp_path, monkeypatch):
    """A crafted ``hidden`` made ``TrainedRanker.load`` ask torch for terabytes (as fix-sec's
    metanetwork case did); the rebuild now runs under ``allocation_limit``. A saved ranker of
    hidden=4 still loads."""
    from retrieval.ranker import CONFIG_FILE, TrainedRanker

    out = _saved_ranker(tmp_path)
    assert TrainedRanker.load(out).config.hidden == 4
    cfg = json.loads((out / CONFIG_FILE).read_text())
    cfg["config"]["hidden"] = 2_000_000_000
    (out / CONFIG_FILE).write_text(json.dumps(cfg))
    asked = []
    real = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, **k: asked.append(a) or real(*a, **k))
    with pytest.raises(WeightzooError, match=r"ranker of .*hidden=2000000000.*retrain the ranker"):
        TrainedRanker.load(out)
    assert not any(a and a[0] == 2_000_000_000 for a in asked)  # nothing of that size was allocated


@pytest.mark.parametrize("edit", [lambda c: c.pop("config"), lambda c: c["config"].update(bogus=1),
                                  lambda c: c.update(n_outputs="x"), lambda c: c.update(n_outputs=0)])
def test_a_ranker_config_missing_or_with_wrong_fields_is_one_error(tmp_path, edit):
    """A KeyError, TypeError or ValueError escaped ``TrainedRanker.load`` as a traceback before."""
    from retrieval.ranker import CONFIG_FILE, TrainedRanker

    out = _saved_ranker(tmp_path)
    cfg = json.loads((out / CONFIG_FILE).read_text())
    edit(cfg)
    (out / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(WeightzooError, match=f"{CONFIG_FILE} is not a ranker config.*retrain the ranker"):
        TrainedRanker.load(out)
