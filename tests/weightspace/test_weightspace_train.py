"""fit / evaluate / run directories, on synthetic targets and on a tiny built zoo."""

import json

import pytest
import torch
from ws_helpers import mlp_spec, random_params

from catalog import open_zoo
from catalog.dataset import WeightDataset
from catalog.errors import WeightzooError
from weightspace import ParamNormalizer, TrainedMetanetwork, evaluate, fit


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


@pytest.mark.parametrize("name", ["mlp", "dws", "nfn", "gmn"])
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
