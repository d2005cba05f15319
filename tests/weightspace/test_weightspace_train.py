"""fit / evaluate / run directories, on synthetic targets and on a tiny built zoo."""

import json

import pytest
import torch
from ws_helpers import mlp_spec, random_params

from catalog import open_zoo
from catalog.dataset import WeightDataset
from catalog.errors import WeightzooError
from weightspace import ParamNormalizer, TrainedMetanetwork, evaluate, fit, metanetwork_names


def _synthetic(n, seed):
    spec = mlp_spec((4, 6, 2))
    params = random_params(spec, n, seed=seed)
    scale = torch.rand(n, generator=torch.Generator().manual_seed(seed + 100)) * 2 + 0.5
    params["layers.0.weight"] = params["layers.0.weight"] * scale[:, None, None]
    return spec, params, scale  # target: the first layer's scale, a permutation-invariant fact


def test_fit_regression_learns_invariant_target():
    spec, p_tr, y_tr = _synthetic(256, 0)
    _, p_va, y_va = _synthetic(64, 1)
    _, p_te, y_te = _synthetic(64, 2)
    model, history = fit("statnn", (p_tr, y_tr), (p_va, y_va), spec=spec, epochs=40, lr=3e-3,
                         progress=False, seed=0)
    metrics = evaluate(model, (p_te, y_te))
    assert metrics["kendall_tau"] > 0.7 and metrics["r2"] > 0.6, metrics
    assert set(metrics) == {"kendall_tau", "r2", "mae", "rmse", "n"}
    assert history[0]["epoch"] == 1 and "val_loss" in history[0]


@pytest.mark.parametrize("name", metanetwork_names())
def test_fit_every_model_runs_with_augmentation(name):
    spec, p_tr, y_tr = _synthetic(32, 0)
    model, history = fit(name, (p_tr, y_tr), (p_tr, y_tr), spec=spec, epochs=2, batch_size=16,
                         augment=True, progress=False, hparams={"hidden": 8})
    assert len(history) == 2
    assert model.predict(p_tr).shape == (32, 1)


def test_classification_and_early_stopping():
    spec, p_tr, y = _synthetic(128, 0)
    labels = (y > y.median()).long() * 10 + 5  # labels 5 / 15, not indices
    model, history = fit("statnn", (p_tr, labels), (p_tr, labels), spec=spec,
                         task="classification", epochs=30, lr=1e-2, patience=2, progress=False)
    assert model.classes == [5, 15]
    assert model.training["best_epoch"] <= len(history) <= 30
    acc = evaluate(model, (p_tr, labels))["accuracy"]
    assert acc > 0.8
    assert set(model.predict(p_tr).tolist()) <= {0, 1}


def test_run_dir_round_trip(tmp_path):
    spec, p, y = _synthetic(32, 0)
    model, history = fit("gmn", (p, y), None, spec=spec, epochs=1, progress=False)
    model.save(tmp_path / "run", metrics={"test": evaluate(model, (p, y))}, history=history)
    files = sorted(f.name for f in (tmp_path / "run").iterdir())
    assert files == ["config.json", "history.json", "metanetwork.safetensors", "metrics.json"]
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["model"]["model"] == "gmn" and cfg["task"] == "regression"
    loaded = TrainedMetanetwork.load(tmp_path / "run")
    torch.testing.assert_close(loaded.predict(p), model.predict(p))
    with pytest.raises(WeightzooError, match="not a metanetwork run directory"):
        TrainedMetanetwork.load(tmp_path)


def test_dws_run_saved_before_norm_and_meanmax_existed_still_loads(tmp_path):
    # A run from an older version: its config has no norm/reduction/head_pool, and its model had
    # no batch norm and mean pooling. Train that model now, drop the keys, and reload it.
    spec, p, y = _synthetic(32, 0)
    old = {"norm": "none", "reduction": "mean", "head_pool": "mean"}
    model, _ = fit("dws", (p, y), None, spec=spec, epochs=1, progress=False, hparams={"hidden": 4, **old})
    model.save(tmp_path / "run", metrics={})
    path = tmp_path / "run" / "config.json"
    cfg = json.loads(path.read_text())
    for key in old:
        del cfg["model"]["hparams"][key]
    path.write_text(json.dumps(cfg))
    loaded = TrainedMetanetwork.load(tmp_path / "run")
    torch.testing.assert_close(loaded.predict(p), model.predict(p))


def test_a_run_saved_twice_has_the_same_weight_file_bytes(tmp_path):
    # safetensors orders the header's metadata (format, model) by a hash map that changes from
    # call to call; with two keys, eight saves all in one order happen by chance 1 in 128 times.
    spec, p, y = _synthetic(16, 0)
    model, _ = fit("mlp", (p, y), None, spec=spec, epochs=1, progress=False)
    files = set()
    for i in range(8):
        model.save(tmp_path / f"run{i}", metrics={})
        files.add((tmp_path / f"run{i}" / "metanetwork.safetensors").read_bytes())
    assert len(files) == 1
    torch.testing.assert_close(TrainedMetanetwork.load(tmp_path / "run0").predict(p), model.predict(p))


def test_normalizer_pools_entry_stats_exactly():
    spec, p, _ = _synthetic(50, 0)
    from catalog.dataset import compute_stats

    a = ParamNormalizer.from_weights(p)
    b = ParamNormalizer.from_entry_stats(compute_stats(p))
    for k in p:
        assert a.mean[k] == pytest.approx(b.mean[k], abs=1e-6)
        assert a.std[k] == pytest.approx(b.std[k], rel=1e-4)
    back = a.denormalize(a.normalize(p))
    torch.testing.assert_close(back, p)


def test_fit_on_weight_dataset(tiny_digits_zoo):
    sel = open_zoo(tiny_digits_zoo).select()
    ds = {s: WeightDataset(sel, ["test_acc"], s) for s in ("train", "val", "test")}
    model, _ = fit("nfn", ds["train"], ds["val"], epochs=3, progress=False)
    m = evaluate(model, ds["test"])
    assert m["n"] == len(ds["test"]) > 0
    # normalization comes from the stored per-entry statistics, pooled per tensor
    assert model.normalizer == ParamNormalizer.from_entry_stats(ds["train"].stats)


def test_fit_needs_spec_for_pairs():
    _, p, y = _synthetic(8, 0)
    with pytest.raises(WeightzooError, match="spec="):
        fit("mlp", (p, y), progress=False)


# ---------------------------------------------------------------------------------- early stopping
def _flat_val(epochs, **kw):
    """A learning rate so small that no epoch improves the validation loss after the first."""
    spec, p, y = _synthetic(16, 0)
    return fit("statnn", (p, y), (p, y), spec=spec, epochs=epochs, lr=1e-12, batch_size=8,
               progress=False, hparams={"hidden": 4}, **kw)


def test_patience_zero_runs_every_epoch():
    model, history = _flat_val(8, patience=0)
    assert len(history) == 8 and model.training["epochs_run"] == 8
    assert model.training["patience"] == 0 and model.training["best_epoch"] == 1


def test_min_epochs_prevents_an_early_stop():
    _, history = _flat_val(8, patience=1, min_epochs=0)
    assert len(history) == 2  # epoch 2 did not improve: stop
    model, history = _flat_val(8, patience=1, min_epochs=5)
    assert len(history) == 5 and model.training["min_epochs"] == 5
    _, history = _flat_val(8, patience=1)  # default min_epochs 5
    assert len(history) == 5


def test_early_stopping_keeps_the_best_state():
    from weightspace import EarlyStopping

    net = torch.nn.Linear(2, 1)
    stop = EarlyStopping(patience=2, min_epochs=0)
    assert not stop.step(1, 1.0, net)
    best = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net.weight.add_(1.0)
    assert not stop.step(2, 2.0, net) and stop.step(3, 1.5, net)
    stop.restore(net)
    assert stop.best_epoch == 1 and torch.equal(net.weight, best["weight"])
    with pytest.raises(WeightzooError, match="patience"):
        fit("statnn", _synthetic(8, 0)[1:], spec=mlp_spec((4, 6, 2)), patience=-1, progress=False)


# ---------------------------------------------------------------------------------- architectures
def test_which_models_read_several_architectures():
    from weightspace import get_metanetwork

    relu, tanh = mlp_spec((4, 6, 2), "relu"), mlp_spec((4, 6, 2), "tanh")
    wide = mlp_spec((4, 9, 2))
    assert get_metanetwork("statnn").arch_problem([relu, tanh], {}) is None
    assert get_metanetwork("mlp").arch_problem([relu, tanh], {}) is None
    assert "same names and shapes" in get_metanetwork("statnn").arch_problem([relu, wide], {})
    assert get_metanetwork("gmn").arch_problem([relu, wide], {}) is None
    # gmn computes probe values for any architecture; they need one input shape
    assert get_metanetwork("gmn").arch_problem([relu, wide], {"probes": 4}) is None
    assert "one input shape" in get_metanetwork("gmn").arch_problem([relu, mlp_spec((5, 6, 2))], {"probes": 4})
    assert "probe" in get_metanetwork("mlp").arch_problem([relu, tanh], {"probes": 4})
    for name in ("dws", "nfn"):
        assert get_metanetwork(name).arch_problem([relu], {}) is None
        assert "one architecture only" in get_metanetwork(name).arch_problem([relu, tanh], {})


def test_trained_model_reads_other_architectures_it_accepts():
    spec, p, y = _synthetic(32, 0)
    tanh = mlp_spec((4, 6, 2), "tanh")
    statnn, _ = fit("statnn", (p, y), None, spec=spec, epochs=1, progress=False)
    torch.testing.assert_close(statnn.predict(p, tanh), statnn.predict(p))  # reads values only
    dws, _ = fit("dws", (p, y), None, spec=spec, epochs=1, progress=False, hparams={"hidden": 4})
    with pytest.raises(WeightzooError, match="one architecture only"):
        dws.predict(p, tanh)
    gmn, _ = fit("gmn", (p, y), None, spec=spec, epochs=1, progress=False, hparams={"hidden": 4})
    wide = mlp_spec((4, 9, 2))
    assert gmn.predict(random_params(wide, 5), wide).shape == (5, 1)


@pytest.mark.parametrize("kind", ["metanetwork", "generator"])
@pytest.mark.parametrize("config", ["[" * 200_000 + "]" * 200_000, "[1, 2]"])
def test_a_run_whose_config_is_deeply_nested_or_not_an_object_is_refused(tmp_path, kind, config):
    """A RecursionError (nesting) or AttributeError (a list) escaped ``load`` before."""
    from weightspace import trained
    from weightspace.generators import base, load_generator

    if kind == "metanetwork":
        load, cfg, weights = TrainedMetanetwork.load, trained.CONFIG_FILE, trained.WEIGHTS_FILE
    else:
        load, cfg, weights = load_generator, base.CONFIG_FILE, base.TENSORS_FILE
    (tmp_path / cfg).write_text(config)
    (tmp_path / weights).write_bytes(b"")
    with pytest.raises(WeightzooError, match=cfg):
        load(tmp_path)
