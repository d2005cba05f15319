"""analyze_zoo and plot_zoo on tiny built zoos: sidecar storage, re-run skipping, values equal
to direct calls of the core functions, errors."""

from __future__ import annotations

import hashlib
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
from analyze_helpers import FAST, ONE_SEED, THREE_SEEDS, TINY_INR, TINY_PHASE, TINY_RESNET, TINY_VIT, copy_zoo
from zoo_helpers import SIDECAR_STEPS, interrupt_write_sidecar

from catalog import open_zoo
from catalog.errors import WeightzooError
from catalog.execution import graph_population_values
from catalog.network import population_forward
from catalog.verify import verify_zoo
from weightspace.analysis import (
    avg_acc_delta,
    hessian_top_eig,
    hessian_trace,
    linear_barrier,
    linear_cka,
    population_loss_accuracy,
)
from weightspace.analysis.run import (
    METRICS,
    AnalyzeConfig,
    _training_subset,
    analyze_zoo,
    model_seed,
    plot_zoo,
)
from zoo_builders import BuildSpec, load_zoo_dataset


@pytest.fixture(scope="module")
def analyzed(zoo_factory, tmp_path_factory):
    """A copy of the tiny phase zoo with every metric analyzed once (shared by the module's
    read-only tests)."""
    zoo = copy_zoo(zoo_factory(TINY_PHASE), tmp_path_factory.mktemp("analyzed") / "zoo")
    result = analyze_zoo(zoo, progress=False, align=True, out=zoo.parent / "figs", **FAST)
    return zoo, result


def _files(zoo):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((zoo / "analysis").iterdir())}


def _last(zoo):
    """The selection of each run's last checkpoint, and the data."""
    z = open_zoo(zoo)
    sel = z.select(where="checkpoint = 2")
    return z, sel, load_zoo_dataset(z)


def test_sidecars_stored_listed_verified_and_queryable(analyzed):
    zoo, result = analyzed
    z = open_zoo(zoo)
    listed = {f.path for f in z.manifest.sidecar_files()}
    assert listed == {f"analysis/{m}.parquet" for m in METRICS}
    report = verify_zoo(zoo)
    assert report.ok and not report.warnings, report.problems
    assert result.rows == 8 and result.excluded == 8  # the last checkpoint of 8 runs
    assert [r.computed for r in result.reports] == [8] * len(METRICS)
    rows = z.sql("SELECT model_id, checkpoint FROM models WHERE hessian_trace_train > 0").table
    assert rows.num_rows == 8 and set(rows.column("checkpoint").to_pylist()) == {2}
    for s in result.summary():
        assert s["rows"] == 8, s
    assert len(result.figures) == 2 and all(f.stat().st_size > 0 for f in result.figures)  # 2 widths


def test_rerun_skips_and_changes_nothing(analyzed):
    zoo, _ = analyzed
    before = _files(zoo)
    manifest = (zoo / "zoo.json").read_bytes()
    again = analyze_zoo(zoo, progress=False, align=True, **FAST)
    assert [r.computed for r in again.reports] == [0] * len(METRICS)
    assert [r.skipped for r in again.reports] == [8] * len(METRICS)
    assert _files(zoo) == before and (zoo / "zoo.json").read_bytes() == manifest
    assert again.summary() == analyzed[1].summary()


def test_hessian_equals_direct_calls_on_each_runs_own_training_data(analyzed):
    zoo, _ = analyzed
    z, sel, data = _last(zoo)
    cfg = AnalyzeConfig(**FAST)
    n = cfg.batches * cfg.batch_size
    runs = {r.run_id: r for r in BuildSpec.from_dict(z.manifest.spec).runs()}
    for i, row in enumerate(sel.table.to_pylist()):
        spec = z.network_spec(row["arch_id"])
        params = _one(sel, i)
        subset = _training_subset(runs[row["run_id"]], len(data.x_train))
        assert len(subset) == round(row["train_fraction"] * len(data.x_train))
        x = data.x_train.reshape(-1, *spec.input_shape)[subset]
        y = data.y_train[subset]
        # the reconstructed subsample is the one the run trained on: its train_acc matches
        _, acc = population_loss_accuracy(spec, params, x, y)
        assert float(acc[0]) == pytest.approx(row["train_acc"], abs=1e-6)
        seed = [model_seed(row["model_id"])]
        eig = hessian_top_eig(spec, params, x[:n], y[:n], iters=cfg.hessian_iters, seed=seed)
        tr = hessian_trace(spec, params, x[:n], y[:n], samples=cfg.trace_samples, seed=seed)
        x_te, y_te = data.x_test.reshape(-1, *spec.input_shape)[:n], data.y_test[:n]
        tr_te = hessian_trace(spec, params, x_te, y_te, samples=cfg.trace_samples, seed=seed)
        got = z.row(row["model_id"])
        assert got["hessian_top_eig_train"] == pytest.approx(float(eig[0]), rel=1e-5)
        assert got["hessian_trace_train"] == pytest.approx(float(tr[0]), rel=1e-5)
        assert got["hessian_trace_test"] == pytest.approx(float(tr_te[0]), rel=1e-5)


def _one(sel, i):
    return sel.take([i]).stacked()


def _pair_rows(sel):
    """Row index pairs of the selection that differ only in seed."""
    table = sel.table.to_pylist()
    pairs = []
    for i, a in enumerate(table):
        for j, b in enumerate(table[i + 1:], i + 1):
            if a["hidden"] == b["hidden"] and a["train_fraction"] == b["train_fraction"]:
                pairs.append((i, j))
    return pairs


def test_pairwise_metrics_equal_direct_calls(analyzed):
    zoo, _ = analyzed
    z, sel, data = _last(zoo)
    cfg = AnalyzeConfig(**FAST)
    pairs = _pair_rows(sel)
    assert len(pairs) == 4
    ids = sel.column("model_id")
    x_te = data.x_test
    for i, j in pairs:
        a, b = _one(sel, i), _one(sel, j)
        spec = sel.take([i]).network_spec
        x = x_te.reshape(-1, *spec.input_shape)
        seed = [model_seed(f"{ids[i]}|{ids[j]}")]
        with torch.no_grad():
            la = population_forward(spec, a, x[:cfg.cka_batches * cfg.cka_batch_size])
            lb = population_forward(spec, b, x[:cfg.cka_batches * cfg.cka_batch_size])
        cka = float(linear_cka(la, lb)[0])
        mc = float(linear_barrier(spec, a, b, x, data.y_test, points=cfg.linear_points).mc[0])
        delta = float(avg_acc_delta(spec, a, b, x, data.y_test, align=True, seed=seed)[0])
        for k in (i, j):  # one pair per run: its value is the pair's
            row = z.row(ids[k])
            assert row["cka_seed"] == pytest.approx(cka, rel=1e-9)
            assert row["mc_linear"] == pytest.approx(mc, rel=1e-6)
            assert row["avg_acc_delta"] == pytest.approx(delta, abs=1e-6)
            assert row["mc_bezier"] is not None and row["mc_linear_aligned"] is not None


def test_cka_of_a_chain_hidden_layer(analyzed, tmp_path):
    zoo = copy_zoo(analyzed[0], tmp_path / "zoo")
    res = analyze_zoo(zoo, "cka", progress=False, cka_layer=0, **FAST)
    z, sel, data = _last(zoo)
    cfg = AnalyzeConfig(**FAST)
    i, j = _pair_rows(sel)[0]
    spec = sel.take([i]).network_spec
    x = data.x_test.reshape(-1, *spec.input_shape)[:cfg.cka_batches * cfg.cka_batch_size]
    acts = {}
    for k in (i, j):  # the first hidden layer's neuron values, each network alone
        hidden: list[torch.Tensor] = []
        population_forward(spec, _one(sel, k), x, activations=hidden)
        acts[k] = hidden[0]
    expected = float(linear_cka(acts[i], acts[j])[0])
    row = dict(zip(res.table.column("model_id").to_pylist(), res.table.column("cka_seed_layer0").to_pylist()))
    assert row[sel.column("model_id")[i]] == pytest.approx(expected, rel=1e-6)
    with pytest.raises(WeightzooError, match="names a node of a graph; .* layer chain: give a hidden layer index"):
        analyze_zoo(zoo, "cka", progress=False, force=True, cka_layer="layers.0")
    with pytest.raises(WeightzooError, match="cka_layer must be"):
        analyze_zoo(zoo, "cka", progress=False, force=True, cka_layer=-1)


def test_values_do_not_depend_on_the_selection(analyzed, tmp_path, zoo_factory):
    zoo, _ = analyzed
    part = copy_zoo(zoo_factory(TINY_PHASE), tmp_path / "part")
    analyze_zoo(part, ["hessian", "cka"], where="width = 4", progress=False, **FAST)
    full, sub = open_zoo(zoo).table.to_pylist(), open_zoo(part).table.to_pylist()
    by_id = {r["model_id"]: r for r in full}
    done = [r for r in sub if r["hessian_trace_train"] is not None]
    assert len(done) == 4 and all(r["width"] == 4 for r in done)
    for r in done:
        for c in ("hessian_top_eig_train", "hessian_trace_train", "hessian_trace_test", "cka_seed"):
            assert r[c] == by_id[r["model_id"]][c]


def test_new_columns_are_computed_and_old_ones_kept(tmp_path, zoo_factory):
    zoo = copy_zoo(zoo_factory(TINY_PHASE), tmp_path / "zoo")
    first = analyze_zoo(zoo, ["connectivity"], progress=False, **FAST)
    assert first.reports[0].columns == ["mc_linear", "mc_bezier"]
    old = {r["model_id"]: r["mc_linear"] for r in first.table.to_pylist()}
    second = analyze_zoo(zoo, ["connectivity"], progress=False, align=True, **FAST)
    assert second.reports[0].computed == 8
    rows = second.table.to_pylist()
    assert all(r["mc_linear_aligned"] is not None for r in rows)
    assert {r["model_id"]: r["mc_linear"] for r in rows} == old
    forced = analyze_zoo(zoo, ["connectivity"], progress=False, align=True, force=True, **FAST)
    # Same values whatever the row order the merge leaves (rows are keyed by model_id).
    assert forced.reports[0].computed == 8
    assert forced.table.sort_by("model_id").equals(second.table.sort_by("model_id"))


def _pair_values(zoo, columns=("cka_seed", "avg_acc_delta")):
    rows = open_zoo(zoo).sql(f"SELECT seed, {', '.join(columns)} FROM models ORDER BY seed").table.to_pylist()
    return {r["seed"]: tuple(r[c] for c in columns) for r in rows}


def test_pairwise_values_do_not_depend_on_the_order_of_runs(tmp_path, zoo_factory):
    """A row's pairwise value is its mean over its seed partners in the run's selection: a wider
    (or narrower) --where after a first run computes again the rows whose partners changed, so two
    runs leave what the last one alone leaves on a fresh copy."""
    src = zoo_factory(THREE_SEEDS)
    two, fresh = copy_zoo(src, tmp_path / "two"), copy_zoo(src, tmp_path / "fresh")
    metrics = ["cka", "averaging"]
    narrow = analyze_zoo(two, metrics, where="seed < 2", progress=False, **FAST)
    assert [r.computed for r in narrow.reports] == [2, 2]
    narrow_values = _pair_values(two)
    wide = analyze_zoo(two, metrics, progress=False, **FAST)
    assert [r.computed for r in wide.reports] == [3, 3]  # seeds 0 and 1 gained a partner
    analyze_zoo(fresh, metrics, progress=False, **FAST)
    assert _pair_values(two) == _pair_values(fresh)
    partners = open_zoo(two).sql("SELECT seed, cka_partners, averaging_partners FROM models ORDER BY seed")
    assert partners.table.to_pylist() == [{"seed": s, "cka_partners": p, "averaging_partners": p}
                                          for s, p in [(0, [1, 2]), (1, [0, 2]), (2, [0, 1])]]
    # the same selection again skips every row; the narrow one again computes its two rows back
    assert [r.computed for r in analyze_zoo(two, metrics, progress=False, **FAST).reports] == [0, 0]
    again = analyze_zoo(two, metrics, where="seed < 2", progress=False, **FAST)
    assert [r.computed for r in again.reports] == [2, 2]
    assert {s: v for s, v in _pair_values(two).items() if s < 2} == {s: v for s, v in narrow_values.items() if s < 2}


def test_a_row_keeps_one_partner_set(tmp_path, zoo_factory):
    """Another column of the same table (CKA of a hidden layer) computed over other partners is
    cleared from the rewritten rows rather than kept as if over the new ones; a table stored
    before partners were recorded is computed again."""
    from catalog.sidecar import delete_sidecar, write_sidecar

    zoo = copy_zoo(zoo_factory(THREE_SEEDS), tmp_path / "zoo")
    analyze_zoo(zoo, "cka", progress=False, **FAST)
    analyze_zoo(zoo, "cka", where="seed < 2", cka_layer=0, progress=False, **FAST)
    rows = _pair_values(zoo, ("cka_seed", "cka_seed_layer0", "cka_partners"))
    assert rows[0][0] is None and rows[1][0] is None and rows[0][1] is not None and rows[0][2] == [1]
    assert rows[2][0] is not None and rows[2][2] == [0, 1]  # not rewritten: its partners did not change
    assert analyze_zoo(zoo, "cka", progress=False, **FAST).reports[0].computed == 2  # seeds 0 and 1
    # an older table: the same values without the partners column
    old = open_zoo(zoo).sql("SELECT model_id, cka_seed FROM models").table
    delete_sidecar(zoo, "analysis/cka")
    write_sidecar(zoo, "analysis", "cka", old)
    assert analyze_zoo(zoo, "cka", progress=False, **FAST).reports[0].computed == 3


def _subspace_values(zoo, where: str = "true"):
    rows = open_zoo(zoo).sql(f"SELECT seed, subspace_proj_acc, subspace_proj_error FROM models WHERE {where} "
                             f"ORDER BY seed").table.to_pylist()
    return {r["seed"]: (r["subspace_proj_acc"], r["subspace_proj_error"]) for r in rows}


def test_subspace_values_do_not_depend_on_the_order_of_runs(tmp_path, zoo_factory):
    """A subspace value depends on every selected model of its architecture: a narrower --where
    after a wider one computes its rows again over the narrower selection (before, it skipped them
    and kept the values over the wider one), so two runs leave what the last one alone leaves on a
    fresh copy. Each row records its selection (subspace_selection: a digest of its model_ids)."""
    src = zoo_factory(THREE_SEEDS)
    two, fresh = copy_zoo(src, tmp_path / "two"), copy_zoo(src, tmp_path / "fresh")
    wide = analyze_zoo(two, "subspace", out=tmp_path / "figs", progress=False, **FAST)
    assert wide.reports[0].computed == 3
    wide_values = _subspace_values(two)
    narrow = analyze_zoo(two, "subspace", where="seed < 2", out=tmp_path / "figs", progress=False, **FAST)
    assert narrow.reports[0].computed == 2  # seeds 0 and 1: another selection
    alone = analyze_zoo(fresh, "subspace", where="seed < 2", out=tmp_path / "figs", progress=False, **FAST)
    assert narrow.table.sort_by("model_id").equals(alone.table.sort_by("model_id"))
    assert _subspace_values(two, "seed < 2") == _subspace_values(fresh, "seed < 2") != {
        s: v for s, v in wide_values.items() if s < 2}
    assert _subspace_values(two)[2] == wide_values[2]  # not selected: keeps its value and its selection
    digests = open_zoo(two).sql("SELECT seed, subspace_selection FROM models ORDER BY seed").table.column(1)
    assert digests[0] == digests[1] != digests[2]
    # the same selection again skips every row; the wide one again computes all three back
    assert analyze_zoo(two, "subspace", where="seed < 2", out=tmp_path / "figs", progress=False,
                       **FAST).reports[0].computed == 0
    assert analyze_zoo(two, "subspace", out=tmp_path / "figs", progress=False, **FAST).reports[0].computed == 3
    assert _subspace_values(two) == wide_values


@pytest.mark.parametrize("step", SIDECAR_STEPS)
def test_an_interrupted_write_is_computed_again_and_the_zoo_repaired(tmp_path, zoo_factory, monkeypatch, step):
    """Ctrl-C inside write_sidecar (at each step) during a forced re-run: the next run leaves a zoo
    that verifies, with every value; after the rename it recomputes instead of skipping rows
    that an unlisted file holds (it computed 0 and left verify BAD)."""
    zoo = copy_zoo(zoo_factory(TINY_PHASE), tmp_path / "zoo")
    first = analyze_zoo(zoo, ["cka"], progress=False, **FAST)
    with monkeypatch.context() as m:
        interrupt_write_sidecar(m, step)
        with pytest.raises(KeyboardInterrupt):
            analyze_zoo(zoo, ["cka"], progress=False, force=True, **FAST)
    with pytest.warns(UserWarning, match="is not the file zoo.json lists") if step == "rename" else nullcontext():
        again = analyze_zoo(zoo, ["cka"], progress=False, **FAST)
    assert again.reports[0].computed == (8 if step == "rename" else 0)
    assert verify_zoo(zoo, check_weights=False).ok
    assert again.table.sort_by("model_id").equals(first.table.sort_by("model_id"))


def _spy_on_cka(monkeypatch, also=None) -> list:
    """Record every computation of the cka metric (its values are computed as usual), and call
    ``also()`` then."""
    import dataclasses

    import weightspace.analysis.run as run

    calls = []
    real = run.METRICS["cka"]

    def compute(ctx, arch, tick):
        calls.append(arch.arch_id)
        if also is not None:
            also()
        return real.compute(ctx, arch, tick)

    monkeypatch.setitem(run.METRICS, "cka", dataclasses.replace(real, compute=compute))
    return calls


def test_a_zoo_another_process_writes_is_refused_before_any_work(tmp_path, zoo_factory, monkeypatch):
    """analyze holds the zoo's lock for its whole run: a zoo being written fails at once (it
    computed every value, then failed to store them), and no writer gets in meanwhile."""
    from catalog.lock import ZooLock, ZooLockedError

    zoo = copy_zoo(zoo_factory(TINY_PHASE), tmp_path / "zoo")
    calls = _spy_on_cka(monkeypatch)
    other = ZooLock(zoo, "zoo build spec.yaml (another writer)")
    try:
        with pytest.raises(ZooLockedError, match=r"is being written by .*zoo build spec.yaml \(another writer"):
            analyze_zoo(zoo, ["cka"], progress=False, **FAST)
    finally:
        other.release()
    assert calls == [] and not (zoo / "analysis").exists()

    def writer_meanwhile():  # while the metric runs, another writer tries the zoo
        with pytest.raises(ZooLockedError, match="zoo analyze"):
            ZooLock(zoo, "zoo embed")

    calls = _spy_on_cka(monkeypatch, also=writer_meanwhile)
    assert analyze_zoo(zoo, ["cka"], progress=False, **FAST).reports[0].computed == 8 and calls
    ZooLock(zoo).release()  # and let go when done


def test_a_zoo_that_cannot_be_written_is_refused_before_any_work(tmp_path, zoo_factory, monkeypatch):
    import catalog.sidecar as sidecar

    zoo = copy_zoo(zoo_factory(TINY_PHASE), tmp_path / "zoo")
    (zoo / "analysis").mkdir()
    calls = _spy_on_cka(monkeypatch)
    real = sidecar.os.access
    monkeypatch.setattr(sidecar.os, "access", lambda p, mode: Path(p).name != "analysis" and real(p, mode))
    with pytest.raises(WeightzooError, match=r"cannot write the zoo's .*analysis \(its permissions, or a read-only "
                                             r"file system\): make it writable, or work on a copy of the zoo"):
        analyze_zoo(zoo, ["cka"], progress=False, **FAST)
    assert calls == []


def test_every_checkpoint(tmp_path, zoo_factory):
    zoo = copy_zoo(zoo_factory(TINY_PHASE), tmp_path / "zoo")
    result = analyze_zoo(zoo, ["cka"], checkpoint="all", progress=False, **FAST)
    assert result.rows == 16 and result.reports[0].computed == 16
    at0 = open_zoo(zoo).sql("SELECT cka_seed FROM models WHERE checkpoint = 0").column("cka_seed")
    assert len(at0) == 8 and all(v is not None for v in at0)
    with pytest.raises(WeightzooError, match="no selected row is at checkpoint 7; the checkpoints are 0, 2"):
        analyze_zoo(zoo, ["cka"], checkpoint=7, progress=False)


def test_hessian_per_member_data_equals_one_at_a_time():
    from analysis_helpers import digits, trained_digits_mlp

    spec, params = trained_digits_mlp()
    x, y, _, _ = digits()
    x = x.reshape(-1, *spec.input_shape)
    g = torch.Generator().manual_seed(0)
    idx = torch.stack([torch.randperm(len(x), generator=g)[:96] for _ in range(4)])  # [4, 96]
    together = hessian_trace(spec, params, x[idx], y[idx], samples=5, seed=[3, 4, 5, 6])
    eig = hessian_top_eig(spec, params, x[idx], y[idx], seed=[3, 4, 5, 6])
    for i in range(4):
        one = {k: v[i:i + 1] for k, v in params.items()}
        alone = hessian_trace(spec, one, x[idx[i]], y[idx[i]], samples=5, seed=3 + i)
        assert float(together[i]) == pytest.approx(float(alone[0]), rel=1e-5)
        assert float(eig[i]) == pytest.approx(float(hessian_top_eig(spec, one, x[idx[i]], y[idx[i]],
                                                                     seed=3 + i)[0]), rel=1e-5)
    with pytest.raises(WeightzooError, match="per-member data must be"):
        hessian_trace(spec, params, x[idx[:3]], y[idx[:3]])


def test_errors(tmp_path, zoo_factory, zoo_dir):
    phase = zoo_factory(TINY_PHASE)
    with pytest.raises(WeightzooError, match="unknown metric 'hesian'; valid metrics: hessian, cka"):
        analyze_zoo(phase, "hesian", progress=False)
    with pytest.raises(WeightzooError, match="unknown analysis option"):
        analyze_zoo(phase, "hessian", progress=False, trace_sample=3)
    with pytest.raises(WeightzooError, match="metric 'cka' compares seed pairs.*no seed pairs"):
        analyze_zoo(zoo_factory(ONE_SEED), "hessian,cka", progress=False)
    with pytest.raises(WeightzooError, match="implicit neural representations"):
        analyze_zoo(zoo_factory(TINY_INR), "hessian", progress=False)
    with pytest.raises(WeightzooError, match="not built by `zoo build`"):
        analyze_zoo(zoo_dir, "hessian", progress=False)
    with pytest.raises(WeightzooError, match="matches"):
        analyze_zoo(phase, "hessian", where="width = 999", progress=False)
    # nothing was written to the shared zoos
    assert not (phase / "analysis").exists()


def test_graph_zoo_with_batch_norm_gets_every_metric(tmp_path, zoo_factory):
    zoo = copy_zoo(zoo_factory(TINY_RESNET), tmp_path / "zoo")
    result = analyze_zoo(zoo, progress=False, out=tmp_path / "figs", **FAST)   # all metrics
    assert [r.metric for r in result.reports] == list(METRICS)
    assert all(r.computed == 2 for r in result.reports)
    assert verify_zoo(zoo).ok
    # the stored values are the direct calls' (eval mode: batch norm with running statistics)
    z = open_zoo(zoo)
    sel = z.select()
    spec, params = z.network_spec(sel.column("arch_id")[0]), sel.stacked()
    data = load_zoo_dataset(z)
    x, y = data.x_test[:64].reshape(64, 1, 8, 8), data.y_test[:64]
    seeds = [model_seed(i, 0) for i in sel.column("model_id")]
    trace = hessian_trace(spec, params, x, y, samples=FAST["trace_samples"], seed=seeds)
    ids = result.table.column("model_id").to_pylist()
    stored = dict(zip(ids, result.table.column("hessian_trace_test").to_pylist()))
    for i, mid in enumerate(sel.column("model_id")):
        assert stored[mid] == pytest.approx(float(trace[i]), rel=1e-5)
    cfg = AnalyzeConfig.with_overrides(None, FAST)
    n = cfg.cka_batches * cfg.cka_batch_size
    logits = population_forward(spec, params, data.x_test[:n].reshape(n, 1, 8, 8))
    cka = result.table.column("cka_seed").to_pylist()
    assert cka[0] == cka[1] == pytest.approx(float(linear_cka(logits[:1], logits[1:])[0]), rel=1e-4)
    # connectivity recomputes each point's batch-norm statistics from the training data
    x_train = data.x_train.reshape(-1, 1, 8, 8)
    a, b = sel.take([0]).stacked(), sel.take([1]).stacked()
    mc = float(linear_barrier(spec, a, b, data.x_test.reshape(-1, 1, 8, 8), data.y_test,
                              points=FAST["linear_points"], bn_x=x_train).mc[0])
    assert z.row(sel.column("model_id")[0])["mc_linear"] == pytest.approx(mc, rel=1e-6)
    # averaging: b aligned to a by graph weight matching, statistics recomputed for all three
    ids = sel.column("model_id")
    delta = float(avg_acc_delta(spec, a, b, data.x_test.reshape(-1, 1, 8, 8), data.y_test,
                                seed=[model_seed(f"{ids[0]}|{ids[1]}")], bn_x=x_train)[0])
    assert z.row(ids[0])["avg_acc_delta"] == pytest.approx(delta, abs=1e-6)
    # subspace: one "layer" per node with trained parameters (running statistics are not)
    (sub,) = result.subspace.values()
    assert sub.layers[:3] == ["conv1: conv2d", "bn1: batchnorm", "layer1.0.conv1: conv2d"]
    assert sub.layers[-1] == "fc: linear" and len(sub.layers) == sum(
        1 for n in spec.nodes if any(p.trainable for p in spec.params if p.name.startswith(n.name + ".")))
    # CKA of a hidden representation: a node's output, flattened per example
    node = "layer2.0.relu2"
    res = analyze_zoo(zoo, "cka", progress=False, force=True, cka_layer=node, **FAST)
    feats = graph_population_values(spec, params, data.x_test[:n].reshape(n, 1, 8, 8), [node])[node].flatten(2)
    assert feats.shape == (2, n, 8 * 4 * 4)  # layer2: 8 channels of 4x4 maps (ResNet-8 at width 0.25, 8x8 input)
    hidden = res.table.column("cka_seed_node_layer2_0_relu2").to_pylist()
    assert hidden[0] == hidden[1] == pytest.approx(float(linear_cka(feats[:1], feats[1:])[0]), rel=1e-4)
    assert hidden[0] != pytest.approx(cka[0], rel=1e-3)  # another representation than the logits
    with pytest.raises(WeightzooError, match="is a layer index; .* is a resnet graph: give a node name, one of"):
        analyze_zoo(zoo, "cka", progress=False, force=True, cka_layer=0)
    with pytest.raises(WeightzooError, match="'nope' is not a node of .*conv1, bn1"):
        analyze_zoo(zoo, "cka", progress=False, force=True, cka_layer="nope")


def test_transformer_zoo_gets_every_metric(tmp_path, zoo_factory):
    zoo = copy_zoo(zoo_factory(TINY_VIT), tmp_path / "zoo")
    result = analyze_zoo(zoo, progress=False, out=tmp_path / "figs", **FAST)
    assert [r.metric for r in result.reports] == list(METRICS)
    z = open_zoo(zoo)
    sel = z.select()
    spec, data = z.network_spec(sel.column("arch_id")[0]), load_zoo_dataset(z)
    x = data.x_test.reshape(-1, *spec.input_shape)
    mc = float(linear_barrier(spec, sel.take([0]).stacked(), sel.take([1]).stacked(), x, data.y_test,
                              points=FAST["linear_points"]).mc[0])
    for mid in sel.column("model_id"):
        row = z.row(mid)
        assert row["mc_linear"] == pytest.approx(mc, rel=1e-6) and row["mc_bezier"] is not None
    again = analyze_zoo(zoo, "connectivity", progress=False, force=True, align=True, **FAST)
    assert again.table.column("mc_linear_aligned").null_count == 0


def test_plot_zoo(analyzed, tmp_path):
    zoo, _ = analyzed
    grid = plot_zoo(zoo, "width", "train_fraction", "hessian_trace_train", out=tmp_path / "h.png", log=True)
    assert grid.x_values == [4, 8] and grid.y_values == [0.5, 1.0]
    assert np.isfinite(grid.values).all() and (grid.counts == 2).all()  # 2 seeds per cell
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    grid = plot_zoo(zoo, "hidden", "train_fraction", "cka_seed", out=tmp_path / "c.png")
    assert grid.x_values == [(4,), (8,)]
    lines = plot_zoo(zoo, "checkpoint", "width", "test_acc", kind="line", out=tmp_path / "l.png")
    assert set(lines) == {4, 8} and list(lines[4][0]) == [0, 2]  # every checkpoint
    pts = plot_zoo(zoo, "test_acc", None, "mc_linear", kind="scatter", out=tmp_path / "s.png")
    assert len(pts[None][0]) == 8
    with pytest.raises(WeightzooError, match="unknown column 'nope'"):
        plot_zoo(zoo, "width", "nope", "test_acc", out=tmp_path / "x.png")
    with pytest.raises(WeightzooError, match="unknown plot kind"):
        plot_zoo(zoo, "width", "lr", "test_acc", kind="bars", out=tmp_path / "x.png")


def test_plot_log_is_log10_of_the_plotted_aggregate_for_every_kind(tmp_path):
    """`--log` took log10 of a heatmap cell's mean but the mean of log10 values along a line. One
    definition now: log10 of what is plotted (the aggregate; a scatter plot's rows), as the SQL
    log10(avg(...)) gives it, with titles and labels that say so."""
    from zoo_helpers import write_zoo

    zoo = write_zoo(tmp_path / "z", "z", range(12), checkpoints=(0, 2), parts=1)  # 2 runs per (lr, activation)
    want = {(r["lr"], r["activation"]): r["v"] for r in open_zoo(zoo).engine.execute(
        "SELECT lr, activation, log10(avg(test_loss)) AS v FROM models WHERE checkpoint = 2 "
        "GROUP BY ALL").to_pylist()}
    mean_of_log = open_zoo(zoo).engine.execute(
        "SELECT avg(log10(test_loss)) AS v FROM models WHERE checkpoint = 2 AND lr = 0.01 AND activation = 'tanh'"
    ).column("v")[0].as_py()
    assert not np.isclose(mean_of_log, want[(0.01, "tanh")])  # the two definitions differ here
    grid = plot_zoo(zoo, "lr", "activation", "test_loss", log=True, checkpoint=2, out=tmp_path / "h.png")
    assert grid.label == "log10 mean test_loss" and (grid.counts == 2).all()
    for (i, act), (j, lr) in ((a, b) for a in enumerate(grid.y_values) for b in enumerate(grid.x_values)):
        assert grid.values[i, j] == pytest.approx(want[(lr, act)], rel=1e-12)
    lines = plot_zoo(zoo, "lr", "activation", "test_loss", kind="line", log=True, checkpoint=2,
                     out=tmp_path / "l.png")
    for act, (xs, ys) in lines.items():
        assert list(ys) == pytest.approx([want[(lr, act)] for lr in xs], rel=1e-12)
    points = plot_zoo(zoo, "lr", None, "test_loss", kind="scatter", log=True, checkpoint=2, out=tmp_path / "s.png")
    rows = open_zoo(zoo).select(where="checkpoint = 2")
    assert sorted(points[None][1]) == pytest.approx(sorted(np.log10(rows.column("test_loss"))), rel=1e-12)


def test_figures_that_cannot_be_written_are_refused_before_any_work(analyzed, monkeypatch):
    """`zoo plot --out` and `zoo analyze --out` (figures) go through check_output_path first: a
    figure inside the zoo (or in a folder that cannot be written) fails before anything runs."""
    import zoo_builders.datasets
    from catalog.paths import OutputPathError

    zoo, _ = analyzed
    before = _files(zoo)
    with pytest.raises(OutputPathError, match=r"^out='.*f\.png' \(--out\) lies inside the zoo"):
        plot_zoo(zoo, "hidden", metric="test_acc", kind="line", out=zoo / "f.png")
    monkeypatch.setattr(zoo_builders.datasets, "load_zoo_dataset", lambda z: pytest.fail("analyze started its work"))
    with pytest.raises(OutputPathError, match=r"^out='.*figs' \(--out\) lies inside the zoo"):
        analyze_zoo(zoo, ["subspace"], out=zoo / "figs", progress=False, force=True, **FAST)
    assert _files(zoo) == before and not (zoo / "figs").exists() and not (zoo / "f.png").exists()


def test_cka_representations_are_computed_in_bounded_passes(monkeypatch):
    # 4 ViTs on 100 examples with passes of 16 examples (64 member-examples): 7 passes whose
    # concatenation is the one-pass representation, for the logits and for a node's output.
    import catalog.execution as execution
    import weightspace.analysis.run as run_mod
    from zoo_builders.graph_architectures import TransformerConfig
    from zoo_builders.init import init_params

    spec = TransformerConfig(patch_size=2, dim=8, depth=1).network_spec((1, 8, 8), 10)
    per = [init_params(spec, "default", torch.Generator().manual_seed(i)) for i in range(4)]
    params = {k: torch.stack([p[k] for p in per]) for k in spec.param_names}
    x = torch.rand(100, 1, 8, 8, generator=torch.Generator().manual_seed(9))
    whole = {None: population_forward(spec, params, x),
             "blocks.0.add1": graph_population_values(spec, params, x, ["blocks.0.add1"])["blocks.0.add1"].flatten(2)}
    passes = []
    forward = run_mod.population_forward
    monkeypatch.setattr(run_mod, "population_forward", lambda s, p, xb, **kw: passes.append(len(xb)) or
                        forward(s, p, xb, **kw))
    monkeypatch.setattr(execution, "EVAL_MEMBER_EXAMPLES", 64)
    for layer, expected in whole.items():
        torch.testing.assert_close(run_mod._representation(spec, params, x, layer), expected)
    assert passes == [16] * 6 + [4]  # the logits' passes (a node's output goes through graph_population_values)


def test_families_zoo_pairs_runs_equal_in_everything_but_seed(tmp_path, zoo_factory):
    from analyze_helpers import TINY_FAMILIES
    zoo = copy_zoo(zoo_factory(TINY_FAMILIES), tmp_path / "zoo")
    z = open_zoo(zoo)
    grid_arch, random_arch = sorted(z.architectures, key=lambda a: z.architectures[a].n_params)
    result = analyze_zoo(zoo, "cka", where=f"arch_id = '{grid_arch}'", progress=False, **FAST)
    assert result.reports[0].computed == 6
    # each row's partner has the same lr (a family's grid axis), weight decay (a family's training) and
    # the other seed
    from weightspace.analysis.run import _axis_columns
    assert {"lr", "weight_decay"} <= set(_axis_columns(z, ["lr", "weight_decay"]))
    # the random family gives every run its own lr: no seed partners, said so
    with pytest.raises(WeightzooError, match="no seed pairs"):
        analyze_zoo(zoo, "cka", where=f"arch_id = '{random_arch}'", progress=False, **FAST)
