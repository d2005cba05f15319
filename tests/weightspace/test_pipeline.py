"""weightspace.pipeline: train_on_zoo / predict_on_zoo on a zoo of two architectures with the
same parameter shapes (ReLU and tanh MLPs, like the digits-mlp preset)."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from catalog import WeightDataset, open_zoo
from catalog.errors import WeightzooError
from weightspace import TrainedMetanetwork, evaluate, fit, predict_on_zoo, train_on_zoo

ACTS = {
    "name": "tiny-acts",
    "dataset": {"name": "digits", "test_fraction": 0.25},
    "architecture": {"name": "mlp", "hidden": [8], "activation": "relu"},
    "training": {"epochs": 3, "batch_size": 64, "optimizer": "adam", "checkpoints": [0, 1, 3]},
    "grid": {"lr": [0.003, 0.03], "activation": ["relu", "tanh"], "seed": [0, 1, 2, 3, 4]},
}
QUICK = {"epochs": 2, "progress": False, "log": None}


@pytest.fixture(scope="module")
def acts_zoo(zoo_factory):
    return zoo_factory(ACTS)


def test_statnn_and_gmn_train_on_two_architectures(acts_zoo, tmp_path):
    for model in ("statnn", "gmn"):
        res = train_on_zoo(acts_zoo, "test_acc", model, hparams={"hidden": 8},
                           out=tmp_path / model, **QUICK)
        assert len(res.arch_ids) == 2 and res.rows["train"] > 0
        assert {"kendall_tau", "r2", "mae"} <= set(res.test)
        cfg = json.loads((res.run_dir / "config.json").read_text())
        assert cfg["data"]["arch_ids"] == res.arch_ids
        if model == "gmn":  # built with both NetworkSpecs; the reload rebuilds it with both
            assert len(cfg["model"]["specs"]) == 2
        loaded = TrainedMetanetwork.load(res.run_dir)
        sel = open_zoo(acts_zoo).select(where="checkpoint = 3")
        torch.testing.assert_close(loaded.predict(sel), res.model.predict(sel))


def test_fit_and_evaluate_a_multi_arch_weight_dataset(acts_zoo):
    sel = open_zoo(acts_zoo).select(where="checkpoint > 0")
    ds = {s: WeightDataset(sel, ["test_acc"], s) for s in ("train", "val", "test")}
    model, history = fit("mlp", ds["train"], ds["val"], epochs=2, progress=False, hparams={"hidden": 8})
    assert len(history) == 2 and len(model.data["arch_ids"]) == 2
    assert evaluate(model, ds["test"])["n"] == len(ds["test"])
    # the normalizer pools both architectures' training statistics per tensor
    both = torch.cat([p.denormalize_weights(p.stacked()[0])["layers.0.weight"]
                      for p in ds["train"].by_arch().values()]).double()
    assert model.normalizer.mean["layers.0.weight"] == pytest.approx(float(both.mean()), abs=1e-6)
    assert model.normalizer.std["layers.0.weight"] == pytest.approx(float(both.std(correction=0)), rel=1e-4)


@pytest.mark.parametrize("model,hparams,reason", [
    ("dws", {}, "one architecture only"), ("nfn", {}, "one architecture only")])
def test_models_that_read_one_architecture_say_how_to_pick_one(acts_zoo, tmp_path, model, hparams, reason):
    with pytest.raises(WeightzooError) as e:
        train_on_zoo(acts_zoo, "test_acc", model, hparams=hparams, **QUICK)
    msg = str(e.value)
    archs = open_zoo(acts_zoo).select().arch_ids
    assert reason in msg and all(a in msg for a in archs)
    assert "arch_id = '" in msg and "activation" in msg and "relu" in msg and "tanh" in msg
    # with one architecture selected, it trains
    res = train_on_zoo(acts_zoo, "test_acc", model, where=f"arch_id = '{archs[0]}'",
                       hparams={**hparams, "hidden": 4}, out=tmp_path / model, **QUICK)
    assert res.arch_ids == [archs[0]]


def test_gmn_with_probes_reads_several_architectures(acts_zoo, tmp_path):
    # probe values are computed for each architecture's networks (relu and tanh MLPs here)
    res = train_on_zoo(acts_zoo, "test_acc", "gmn", hparams={"probes": 2, "hidden": 4}, out=tmp_path / "gmn",
                       **QUICK)
    assert sorted(res.arch_ids) == sorted(open_zoo(acts_zoo).select().arch_ids)


def test_checkpoint_zero_left_out_unless_include_init(acts_zoo, tmp_path):
    res = train_on_zoo(acts_zoo, "test_acc", "statnn", out=tmp_path / "a", **QUICK)
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())["data"]
    assert set(res.checkpoints["train"]) == {1, 3}
    assert cfg["include_init"] is False and set(cfg["checkpoints"]["train"]) == {"1", "3"}
    assert sum(cfg["rows"].values()) == 40  # 20 runs x 2 checkpoints

    res = train_on_zoo(acts_zoo, "test_acc", "statnn", include_init=True, out=tmp_path / "b", **QUICK)
    assert set(res.checkpoints["train"]) == {0, 1, 3}
    assert json.loads((tmp_path / "b" / "config.json").read_text())["data"]["include_init"] is True

    messages = []
    train_on_zoo(acts_zoo, "test_acc", "statnn", out=tmp_path / "c", epochs=1, progress=False,
                 log=messages.append)
    assert "checkpoint 0 (initialization) left out" in messages[0] and "1: " in messages[0]

    with pytest.raises(WeightzooError, match="include-init"):
        train_on_zoo(acts_zoo, "test_acc", "statnn", where="checkpoint = 0", **QUICK)


def test_settings_recorded_and_threads_restored(acts_zoo, tmp_path):
    before = torch.get_num_threads()
    res = train_on_zoo(acts_zoo, "test_acc", "statnn", preset="default", hparams={"depth": 1},
                       patience=0, min_epochs=2, threads=1, out=tmp_path / "r", **QUICK)
    assert torch.get_num_threads() == before
    training = json.loads((res.run_dir / "config.json").read_text())["training"]
    assert training["patience"] == 0 and training["min_epochs"] == 2
    assert training["threads"] == 1 and training["preset"] == "default"
    assert res.model.net.hparams["depth"] == 1
    with pytest.raises(WeightzooError, match="valid presets: default"):
        train_on_zoo(acts_zoo, "test_acc", "statnn", preset="nope", **QUICK)


def test_predict_on_the_training_zoo_reports_per_split(acts_zoo, tmp_path):
    res = train_on_zoo(acts_zoo, "test_acc", "statnn", out=tmp_path / "run", **QUICK)
    pred = predict_on_zoo(res.run_dir, acts_zoo, progress=False)
    assert pred.training_zoo and "trained on" in pred.note
    assert pred.rows == 60 and pred.table.column_names == ["model_id", "pred_test_acc", "split"]
    assert pred.rows_per_split == {"train": res.rows["train"], "val": res.rows["val"],
                                   "test": res.rows["test"], "outside": 20}  # checkpoint 0
    # the test split is the training's test split: the same metrics
    assert pred.split_metrics["test"]["kendall_tau"] == pytest.approx(res.test["kendall_tau"])
    assert pred.split_metrics["test"]["mae"] == pytest.approx(res.test["mae"], rel=1e-5)
    table = pq.read_table(pred.predictions)
    assert table.num_rows == 60 and set(table.column("split").to_pylist()) == {
        "train", "val", "test", "outside"}


def _split_shas(acts_zoo, pred):
    sha = dict(zip(*(open_zoo(acts_zoo).select().column(c) for c in ("model_id", "sha256"))))
    out: dict[str, set] = {}
    for m, s in zip(pred.table.column("model_id").to_pylist(), pred.table.column("split").to_pylist()):
        out.setdefault(s, set()).add(sha[m])
    return out


def test_identical_networks_of_different_runs_share_a_split(acts_zoo, tmp_path):
    """--include-init: the runs of one seed share their initialization (one sha256), so they are
    split together, and predict on the training zoo reproduces that split; a run saved before
    (split by run alone, no "split_link") is still reproduced as it was split."""
    messages: list[str] = []
    res = train_on_zoo(acts_zoo, "test_acc", "statnn", include_init=True, fractions=(0.5, 0.25, 0.25),
                       out=tmp_path / "run", epochs=1, progress=False, log=messages.append)
    assert any("runs hold a network that another run holds too" in m for m in messages)
    pred = predict_on_zoo(res.run_dir, acts_zoo, progress=False)
    assert pred.split_metrics is not None and pred.rows_per_split == {**res.rows, "outside": 0}
    shas = _split_shas(acts_zoo, pred)
    assert not (shas["train"] & shas["val"] or shas["train"] & shas["test"] or shas["val"] & shas["test"])

    # a run directory of an older version: split by run alone, fingerprints of that split
    from catalog.split import run_splits, runs_fingerprint

    cfg_path = res.run_dir / "config.json"
    cfg = json.loads(cfg_path.read_text())
    del cfg["data"]["split_link"]
    runs = run_splits(open_zoo(acts_zoo).select().metadata(["run_id"]), (0.5, 0.25, 0.25), 0, link=None)
    cfg["data"]["run_fingerprints"] = {s: runs_fingerprint(r for r, x in runs.items() if x == s)
                                       for s in ("train", "val", "test")}
    cfg_path.write_text(json.dumps(cfg))
    old = predict_on_zoo(res.run_dir, acts_zoo, progress=False)
    assert old.split_metrics is not None and "cannot be reproduced" not in old.note
    labels = dict(zip(old.table.column("model_id").to_pylist(), old.table.column("split").to_pylist()))
    ids = open_zoo(acts_zoo).select().metadata(["model_id", "run_id"])
    assert all(labels[m] == runs[r] for m, r in zip(*(ids.column(c).to_pylist() for c in ("model_id", "run_id"))))


def test_predict_on_another_zoo_or_a_zoo_with_other_runs(acts_zoo, tiny_digits_zoo, zoo_factory, tmp_path):
    res = train_on_zoo(acts_zoo, "test_acc", "statnn", out=tmp_path / "run", **QUICK)
    other = predict_on_zoo(res.run_dir, tiny_digits_zoo, progress=False)  # same shapes, ReLU
    # its ReLU runs of lr 0.003 and seeds 0-4 are trained as ACTS's are: some are training networks
    seen = other.rows_per_split["train"] + other.rows_per_split["val"]
    assert not other.training_zoo and other.rows == 54 and 0 < seen <= 20
    assert other.metrics["n"] == other.rows_per_split["unseen"] == 54 - seen
    assert f"{seen} of 54 rows are networks the model was trained or validated on" in other.note
    # the training zoo's name, but other runs: the split cannot be reproduced, and it says so
    fewer = zoo_factory({**ACTS, "grid": {**ACTS["grid"], "seed": [0, 1]}})
    same_name = predict_on_zoo(res.run_dir, fewer, progress=False)
    assert same_name.training_zoo and "cannot be reproduced" in same_name.note
    # labelled by sha256 instead: the metrics are over the networks the model did not see
    assert set(same_name.split_metrics) <= {"train", "val", "unseen"}
    assert same_name.metrics["n"] == same_name.rows_per_split["unseen"] < same_name.rows


def _labels(pred) -> dict[str, str]:
    return dict(zip(pred.table.column("model_id").to_pylist(), pred.table.column("split").to_pylist()))


def test_predict_on_another_zoo_labels_the_networks_seen_in_training(acts_zoo, zoo_factory, tmp_path):
    """The run records the sha256 of its training and validation networks; on another zoo that
    holds them (the same build under another name) they are labelled train / val and left out
    of the metrics, which are over the unseen rows (here: the test runs and checkpoint 0)."""
    res = train_on_zoo(acts_zoo, "test_acc", "statnn", out=tmp_path / "run", **QUICK)
    seen = pq.read_table(res.run_dir / "seen_networks.parquet")
    assert seen.column_names == ["sha256", "split"]
    assert sorted(seen.column("split").to_pylist()) == ["train"] * res.rows["train"] + ["val"] * res.rows["val"]
    copy = zoo_factory({**ACTS, "name": "tiny-acts-copy"})
    other = predict_on_zoo(res.run_dir, copy, progress=False)
    assert not other.training_zoo
    assert other.rows_per_split == {"train": res.rows["train"], "val": res.rows["val"],
                                    "unseen": res.rows["test"] + 20}  # 20 runs' checkpoint 0
    assert other.metrics["n"] == res.rows["test"] + 20 and set(other.split_metrics) == {"train", "val", "unseen"}
    assert f"{res.rows['train'] + res.rows['val']} of 60 rows are networks the model was trained" in other.note
    # the same networks on the training zoo: the labels agree with the reproduced split
    same = _labels(predict_on_zoo(res.run_dir, acts_zoo, progress=False))
    sha = dict(zip(*(open_zoo(acts_zoo).select().column(c) for c in ("sha256", "model_id"))))
    copy_ids = dict(zip(*(open_zoo(copy).select().column(c) for c in ("model_id", "sha256"))))
    for m, label in _labels(other).items():
        assert label == (same[sha[copy_ids[m]]] if same[sha[copy_ids[m]]] in ("train", "val") else "unseen")
    # the training zoo's name but other runs (a subset): labelled by sha256 too
    fewer = predict_on_zoo(res.run_dir, zoo_factory({**ACTS, "grid": {**ACTS["grid"], "seed": [0, 1]}}),
                           progress=False)
    assert "cannot be reproduced" in fewer.note and "left out of the metrics" in fewer.note
    assert fewer.metrics["n"] == fewer.rows_per_split["unseen"] < fewer.rows


def test_predict_with_a_run_saved_before_runs_recorded_their_networks(acts_zoo, zoo_factory, tmp_path):
    res = train_on_zoo(acts_zoo, "test_acc", "statnn", out=tmp_path / "run", **QUICK)
    (res.run_dir / "seen_networks.parquet").unlink()
    copy = zoo_factory({**ACTS, "name": "tiny-acts-copy"})
    old = predict_on_zoo(res.run_dir, copy, progress=False)
    assert old.split_metrics is None and old.metrics["n"] == old.rows == 60
    assert "overlap with the zoo was not checked" in old.note and "split" not in old.table.column_names
    same = predict_on_zoo(res.run_dir, acts_zoo, progress=False)  # the training zoo: as before
    assert same.split_metrics is not None and "not checked" not in same.note
    (res.run_dir / "seen_networks.parquet").write_bytes(b"PAR1 not parquet")
    with pytest.raises(WeightzooError, match="seen_networks.parquet cannot be read .* train the metanetwork again"):
        predict_on_zoo(res.run_dir, copy, progress=False)


def test_per_architecture_model_reads_only_its_architecture(acts_zoo, tmp_path):
    relu = open_zoo(acts_zoo).select().arch_ids[0]
    res = train_on_zoo(acts_zoo, "test_acc", "nfn", where=f"arch_id = '{relu}'",
                       hparams={"hidden": 4}, out=tmp_path / "nfn", **QUICK)
    with pytest.raises(WeightzooError, match="one architecture only"):
        predict_on_zoo(res.run_dir, acts_zoo, progress=False)
    ok = predict_on_zoo(res.run_dir, acts_zoo, where=f"arch_id = '{relu}'", progress=False)
    assert ok.rows == 30


#: Class columns of every kind, with the Arrow type each is stored as.
CLASS_COLUMNS = {"fcls": (pa.float64(), [0.001, 0.1, 0.3]), "icls": (pa.int32(), [3, 7]),
                 "bcls": (pa.bool_(), [False, True]), "scls": (pa.string(), ["a", "b"])}


@pytest.fixture(scope="module")
def classes_zoo(tmp_path_factory):
    """12 runs x 2 checkpoints with one class column of each kind (float, int32, bool, string)."""
    from zoo_helpers import mlp_spec, random_weights

    from catalog.writer import ZooWriter

    root = tmp_path_factory.mktemp("zoos") / "classes"
    w = ZooWriter(root, "classes", {"name": "classes", "test": True})
    arch = w.add_architecture(mlp_spec())
    rows = [{"model_id": f"r{r}-c{c}", "run_id": f"r{r}", "checkpoint": c, "status": "ok",
             **{k: values[r % len(values)] for k, (_, values) in CLASS_COLUMNS.items()}}
            for r in range(12) for c in (1, 2)]
    schema = pa.schema([(k, t) for k, (t, _) in CLASS_COLUMNS.items()])
    w.write_part(arch, random_weights(mlp_spec(), len(rows), seed=0), rows, schema)
    w.finish()
    return root


@pytest.mark.parametrize("target", list(CLASS_COLUMNS))
def test_predicted_classes_keep_the_column_type_and_values(classes_zoo, tmp_path, target):
    typ, values = CLASS_COLUMNS[target]
    res = train_on_zoo(classes_zoo, target, "statnn", task="classification", out=tmp_path / "r", **QUICK)
    assert res.model.classes == values  # 0.001, not float32's 0.0010000000474974513; True, not 1
    assert TrainedMetanetwork.load(res.run_dir).classes == values
    pred = predict_on_zoo(res.run_dir, classes_zoo, progress=False)
    table = pq.read_table(pred.predictions)
    assert table.schema.field(f"pred_{target}").type == typ
    assert set(table.column(f"pred_{target}").to_pylist()) <= set(values)
    # the labels are matched to the zoo's values as training matched them: the same test metrics
    assert pred.split_metrics["test"] == res.test


def test_classes_one_float32_apart_are_refused(tmp_path):
    from zoo_helpers import mlp_spec, random_weights

    from catalog.writer import ZooWriter

    w = ZooWriter(tmp_path / "z", "close", {"name": "close", "test": True})
    arch = w.add_architecture(mlp_spec())
    rows = [{"model_id": f"r{r}-c1", "run_id": f"r{r}", "checkpoint": 1, "status": "ok",
             "lr": [0.1, 0.1 + 1e-12, 0.5][r % 3]} for r in range(12)]
    w.write_part(arch, random_weights(mlp_spec(), len(rows), seed=0), rows)
    w.finish()
    with pytest.raises(WeightzooError, match=r"0\.1 and 0\.100000000001.*--where.*--task regression"):
        train_on_zoo(tmp_path / "z", "lr", "statnn", task="classification", fractions=(1, 0, 0),
                     out=tmp_path / "r", **QUICK)


def test_negative_seeds_train_reproducibly(acts_zoo, tmp_path):
    """zoo train takes the seeds the other commands take (negative ones too): the same seed gives
    the same split and the same metanetwork, another seed another run."""
    def run(seed: int, name: str):
        res = train_on_zoo(acts_zoo, "test_acc", "statnn", seed=seed, augment=True,
                           out=tmp_path / name, **QUICK)
        return res, json.loads((res.run_dir / "config.json").read_text())["data"]["run_fingerprints"]

    a, split_a = run(-7, "a")
    b, split_b = run(-7, "b")
    assert split_a == split_b and a.test == b.test
    for (name, wa), wb in zip(a.model.net.state_dict().items(), b.model.net.state_dict().values()):
        assert torch.equal(wa, wb), name
    for seed in (-8, 7):
        _, split_c = run(seed, f"c{seed}")
        assert split_c != split_a
    # predict recomputes the training split from the recorded (negative) seed
    pred = predict_on_zoo(a.run_dir, acts_zoo, progress=False)
    assert pred.split_metrics is not None and pred.split_metrics["test"] == pytest.approx(a.test)


def test_output_errors_name_the_out_argument(zoo_copy, tmp_path):
    """A Python caller passed out=, not --out: the message names both."""
    with pytest.raises(WeightzooError, match=r"^out='.*run' \(--out\) lies inside the zoo"):
        train_on_zoo(zoo_copy, "test_acc", "statnn", out=zoo_copy / "run", **QUICK)
    with pytest.raises(WeightzooError, match=r"^out='.*p\.csv' \(--out\) lies inside the zoo"):
        predict_on_zoo(tmp_path, zoo_copy, out=zoo_copy / "p.csv")


@pytest.mark.parametrize("seed", [2**62 + 1, -(2**62) - 1, 1.5, True])
def test_seeds_out_of_range_are_refused(acts_zoo, tmp_path, seed):
    """A Python caller passed seed=, not --seed: the message names both."""
    with pytest.raises(WeightzooError, match=rf"^seed={re.escape(repr(seed))} \(--seed\) must be an integer from "
                                             r"-2\*\*62 to 2\*\*62$"):
        train_on_zoo(acts_zoo, "test_acc", "statnn", seed=seed, out=tmp_path / "r", **QUICK)


def test_predict_errors_name_the_python_arguments(acts_zoo, tmp_path):
    """predict_on_zoo's format and selection errors named --out and --where only."""
    run = train_on_zoo(acts_zoo, "test_acc", "statnn", out=tmp_path / "run", **QUICK).run_dir
    with pytest.raises(WeightzooError, match=r"^cannot tell the format of out='.*p\.txt' \(--out\) from its "
                                             r"extension \.txt; name the file \*\.csv"):
        predict_on_zoo(run, acts_zoo, out=tmp_path / "p.txt")
    with pytest.raises(WeightzooError, match=r"^where='test_acc > 5' \(--where\) selects no networks of zoo "
                                             r"'tiny-acts'; widen it$"):
        predict_on_zoo(run, acts_zoo, where="test_acc > 5", out=tmp_path / "p.parquet")


def test_an_interrupted_retrain_over_a_run_leaves_the_old_run_whole(acts_zoo, tmp_path, monkeypatch):
    """Ctrl-C while `zoo train --out RUN` saves over an earlier run (the new weights written, its
    config not yet): RUN is still the earlier run, weights and config together (the new weights
    sat beside the old config, and `zoo predict` used the pair)."""
    import weightspace.trained as trained

    run = tmp_path / "run"
    first = train_on_zoo(acts_zoo, "test_acc", "statnn", out=run, **QUICK)
    files = {p.name: p.read_bytes() for p in run.iterdir()}
    real = trained.write_json_atomic

    def interrupted(path, obj):
        if path.name == "config.json":
            raise KeyboardInterrupt
        real(path, obj)

    with monkeypatch.context() as m:
        m.setattr(trained, "write_json_atomic", interrupted)
        with pytest.raises(KeyboardInterrupt):
            train_on_zoo(acts_zoo, "train_loss", "statnn", out=run, **QUICK)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == files
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # nothing left beside it
    sel = open_zoo(acts_zoo).select(where="checkpoint = 3")
    torch.testing.assert_close(TrainedMetanetwork.load(run).predict(sel), first.model.predict(sel))
    second = train_on_zoo(acts_zoo, "train_loss", "statnn", out=run, **QUICK)  # then a save goes through
    assert TrainedMetanetwork.load(run).targets == ["train_loss"]
    torch.testing.assert_close(TrainedMetanetwork.load(run).predict(sel), second.model.predict(sel))
