"""retrieval.embed: embeddings stored with a zoo (sidecar, verified, queryable), re-runs that
skip, each method, and bad input."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch

from catalog import open_zoo
from catalog.errors import WeightzooError
from retrieval import EMBEDDINGS, embed_zoo, metanetwork_trunk, read_embeddings
from retrieval.embed import META_KEY


def test_behavior_embeddings_are_stored_verified_and_queryable(bare_copy) -> None:
    r = embed_zoo(bare_copy, "behavior", where="hidden = [16]", n_probes=8, seed=3)
    assert (r.method, r.path, r.column, r.dim, r.embedded, r.skipped) == (
        "behavior", "embeddings/behavior.parquet", "emb_behavior", 80, 3, 0)
    # A re-run without options continues in the stored space and embeds only the others.
    r2 = embed_zoo(bare_copy, "behavior")
    assert (r2.embedded, r2.skipped, r2.dim) == (3, 3, 80)
    r3 = embed_zoo(bare_copy, "behavior")
    assert (r3.embedded, r3.skipped) == (0, 6)

    zoo = open_zoo(bare_copy)
    assert zoo.verify().ok
    entry = next(f for f in zoo.manifest.files if f.path == "embeddings/behavior.parquet")
    assert entry.kind == "sidecar" and entry.rows == 6
    table = pq.read_table(bare_copy / entry.path)
    assert str(table.schema.field("emb_behavior").type) == "fixed_size_list<element: float>[80]"
    config = json.loads(table.schema.field("emb_behavior").metadata[META_KEY.encode()])
    assert config == {"method": "behavior", "probe": "digits:test_fraction=0.25", "n_probes": 8,
                      "seed": 3, "temperature": 1.0, "n_outputs": 10}
    # Joined into `models`: SQL sees the vectors (as FLOAT[] lists).
    n = zoo.sql("SELECT model_id FROM models WHERE emb_behavior IS NOT NULL").table.num_rows
    assert n == 6
    sims = zoo.sql("SELECT list_cosine_similarity(emb_behavior, emb_behavior) AS s FROM models").table
    assert all(s == pytest.approx(1.0, abs=1e-5) for s in sims.column("s").to_pylist())
    # The stored vectors are the behaviour embedding of each model (softmax rows sum to 1).
    stored = read_embeddings(zoo, "behavior")
    vecs = stored.vectors()
    assert vecs.shape == (6, 80)
    assert torch.allclose(vecs.reshape(6, 8, 10).sum(-1), torch.ones(6, 8), atol=1e-5)
    assert torch.equal(stored.vectors(stored.model_ids[::-1]), vecs.flip(0))
    assert stored.vectors(["nope"]).isnan().all()


def test_statnn_standardized_once_and_reused(bare_copy) -> None:
    first = embed_zoo(bare_copy, "statnn", where="hidden = [16] AND source_task <> 'digits:classes=0,1,2'")
    assert first.dim == 4 * 7 and first.embedded == 2
    r = embed_zoo(bare_copy, "statnn", where="hidden = [16]")
    assert (r.embedded, r.skipped) == (1, 2)
    assert r.config["center"] == first.config["center"] and r.config["scale"] == first.config["scale"]
    stored = read_embeddings(bare_copy, "statnn")
    # The first run's two models are standardized with their own mean and std: +-1 per column.
    zoo = open_zoo(bare_copy)
    firsts = zoo.select(where="hidden = [16] AND source_task <> 'digits:classes=0,1,2'").column("model_id")
    v = stored.vectors(firsts)
    assert torch.allclose(v.mean(0), torch.zeros(28), atol=1e-5)
    # The later model uses the stored constants: raw statistics = vector * scale + center.
    from retrieval import statnn_embedding

    sel = zoo.select(where="source_task = 'digits:classes=0,1,2' AND hidden = [16]")
    raw = statnn_embedding(sel.network_spec, sel.stacked())[0].double()
    got = stored.vectors(sel.column("model_id"))[0].double()
    scale, center = torch.tensor(r.config["scale"]), torch.tensor(r.config["center"])
    assert torch.allclose(got * scale + center, raw, atol=1e-4)


def test_an_interrupted_write_is_embedded_again_and_the_zoo_repaired(bare_copy, monkeypatch) -> None:
    """Ctrl-C after write_sidecar renamed the new table in, before the manifest listed it: the
    next run embeds those models again (it took them as done and left verify BAD)."""
    import catalog.sidecar as sc

    embed_zoo(bare_copy, "behavior", where="hidden = [16]", n_probes=8, seed=3)

    def stop(root, manifest):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(sc, "write_manifest", stop)
        with pytest.raises(KeyboardInterrupt):
            embed_zoo(bare_copy, "behavior")
    assert not open_zoo(bare_copy).verify(check_weights=False).ok
    with pytest.warns(UserWarning, match="embeddings/behavior.parquet .* is not the file zoo.json lists"):
        again = embed_zoo(bare_copy, "behavior", n_probes=8, seed=3)
    assert (again.embedded, again.skipped) == (6, 0)
    assert open_zoo(bare_copy).verify(check_weights=False).ok


def test_a_zoo_being_written_or_read_only_is_refused_before_any_work(bare_copy, monkeypatch) -> None:
    """embed holds the zoo's lock for its whole run: a zoo another process writes, or one that
    cannot be written, fails before a single model is embedded (it embedded all, then failed)."""
    from pathlib import Path

    import catalog.sidecar as sidecar
    from catalog.lock import ZooLock, ZooLockedError
    from retrieval.embed import StatNNEmbedder

    embedded = []
    real_embed = StatNNEmbedder.embed

    def embed(self, spec, params):
        embedded.append(len(next(iter(params.values()))))
        return real_embed(self, spec, params)

    monkeypatch.setattr(StatNNEmbedder, "embed", embed)
    other = ZooLock(bare_copy, "zoo analyze (another writer)")
    try:
        with pytest.raises(ZooLockedError, match=r"being written by .*zoo analyze \(another writer"):
            embed_zoo(bare_copy, "statnn", where="hidden = [16]")
    finally:
        other.release()
    (bare_copy / "embeddings").mkdir()
    real_access = sidecar.os.access
    with monkeypatch.context() as m:
        m.setattr(sidecar.os, "access", lambda p, mode: Path(p).name != "embeddings" and real_access(p, mode))
        with pytest.raises(WeightzooError, match=r"cannot write the zoo's .*embeddings \(its permissions"):
            embed_zoo(bare_copy, "statnn", where="hidden = [16]")
    assert embedded == []
    assert embed_zoo(bare_copy, "statnn", where="hidden = [16]").embedded == 3 and sum(embedded) == 3
    ZooLock(bare_copy).release()  # let go when done


def test_weights_is_the_metanetwork_trunk(bare_copy, tmp_path) -> None:
    from weightspace import ParamNormalizer, StatNN, TrainedMetanetwork

    zoo = open_zoo(bare_copy)
    sel = zoo.select(where="hidden = [16]")
    spec = sel.network_spec
    torch.manual_seed(0)
    trained = TrainedMetanetwork(StatNN(spec, 1, hidden=8), "regression", ["test_acc"],
                                 ParamNormalizer.from_weights(sel.stacked()))
    run = trained.save(tmp_path / "run")
    r = embed_zoo(bare_copy, "weights", where="hidden = [16]", run=run)
    assert r.dim == trained.net.n_features and r.embedded == 3
    # The trunk of StatNN is its statistics of the normalized weights (what its MLP head reads).
    want = trained.net.features(trained.normalizer.normalize(sel.stacked()))
    got = read_embeddings(bare_copy, "weights").vectors(sel.column("model_id"))
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(metanetwork_trunk(trained, sel.stacked()), want, atol=1e-6)


def test_bad_input(bare_copy, tmp_path) -> None:
    with pytest.raises(WeightzooError,
                       match="unknown embedding method 'nope'; valid methods: behavior, statnn, weights"):
        embed_zoo(bare_copy, "nope")
    assert set(EMBEDDINGS) == {"behavior", "statnn", "weights"}
    # Two architectures with different numbers of tensors give statistics of different lengths.
    # The messages give routes that work: one kind only, or behavior (below, on every architecture).
    with pytest.raises(WeightzooError, match="embedding dimension mismatch: statnn gives.*one statnn space.*"
                                             "where=\"arch_id = .*--where.*--method behavior"):
        embed_zoo(bare_copy, "statnn")
    embed_zoo(bare_copy, "statnn", where="hidden = [16]")
    with pytest.raises(WeightzooError, match="embedding dimension mismatch: embeddings/statnn.parquet holds 28.*"
                                             "--method behavior.*zoo drop ZOO embeddings/statnn,"):
        embed_zoo(bare_copy, "statnn", where="hidden = [16, 8]")
    embed_zoo(bare_copy, "behavior", n_probes=4)
    with pytest.raises(WeightzooError, match="n_probes: stored 4, now 8"):
        embed_zoo(bare_copy, "behavior", n_probes=8)
    with pytest.raises(WeightzooError, match=r"^where='checkpoint = 99' \(--where\) selects no model"):
        embed_zoo(bare_copy, "behavior", where="checkpoint = 99")
    with pytest.raises(WeightzooError, match="needs --run RUN_DIR"):
        embed_zoo(bare_copy, "weights")
    with pytest.raises(WeightzooError, match="is not a metanetwork run directory"):
        embed_zoo(bare_copy, "weights", run=tmp_path)
    with pytest.raises(WeightzooError, match="at most 1203"):
        embed_zoo(bare_copy, "behavior", n_probes=5000, probe="digits:test_fraction=0.33")


def _zoo_with_diverged(root) -> tuple:
    """6 MLPs (4 inputs, 3 classes), the weights of two of them NaN (diverged)."""
    from zoo_helpers import mlp_spec, random_weights

    from catalog.writer import ZooWriter

    spec = mlp_spec(hidden=8, n_in=4, n_out=3)
    w = ZooWriter(root, "nanzoo", {"name": "nanzoo", "test": True})
    arch = w.add_architecture(spec)
    weights = random_weights(spec, 6, 0)
    for name in weights:
        weights[name][[1, 4]] = float("nan")
    rows = [{"model_id": f"m{i}", "run_id": f"r{i}", "checkpoint": 1, "seed": i,
             "status": "diverged" if i in (1, 4) else "ok"} for i in range(6)]
    w.write_part(arch, weights, rows)
    w.finish()
    return root, ["m1", "m4"]


def test_diverged_models_are_left_out_and_counted(tmp_path) -> None:
    from zoo_helpers import run_cli

    from retrieval import search_zoo

    zoo, _ = _zoo_with_diverged(tmp_path / "nanzoo")
    r = embed_zoo(zoo, "statnn")
    assert (r.embedded, r.diverged) == (4, 2)
    stored = read_embeddings(zoo, "statnn")
    assert set(stored.model_ids) == {"m0", "m2", "m3", "m5"}
    assert torch.isfinite(stored.vectors(stored.model_ids)).all()  # standardized without the NaN rows
    res = run_cli("embed", zoo, "--method", "statnn", "-q")
    assert res.exit_code == 0 and "2 diverged model(s)" in res.output, res.output
    s = search_zoo(zoo, "blobs:n_features=4", method="logme", k=10)
    assert s.table.num_rows == 4 and any("2 candidate model(s)" in n and "diverged" in n for n in s.notes)
    res = run_cli("search", zoo, "--task", "blobs:n_features=4", "--method", "logme", "-q")
    assert res.exit_code == 0 and "task " not in res.output and "2 candidate model(s)" in res.output
