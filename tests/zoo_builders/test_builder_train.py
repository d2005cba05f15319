"""Vectorized population training: a member equals the same run trained alone, bit for bit."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from zoo_helpers import assert_same_member

from catalog.network import build_module
from zoo_builders import BuildSpec, load_dataset, train_classifiers, train_inrs
from zoo_builders.build import _inr_images, torch_threads
from zoo_builders.datasets import DatasetConfig


def _setup(arch, training, grid, dataset="digits"):
    s = BuildSpec.load({"name": "t", "dataset": {"name": dataset}, "architecture": arch,
                        "training": training, "grid": grid})
    runs = s.runs()
    data = load_dataset(s.dataset)
    net = runs[0].arch.network_spec(data.input_shape, data.n_classes)
    return runs, data, net


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_member_in_population_of_8_equals_run_alone(optimizer):
    runs, data, net = _setup({"name": "mlp", "hidden": [16, 16]},
                             {"epochs": 3, "batch_size": 32, "optimizer": optimizer, "checkpoints": [0, 1, 3]},
                             {"lr": [0.001, 0.01], "weight_decay": [0.0, 0.001], "seed": [0, 1],
                              "dropout": [0.0]})
    assert len(runs) == 8
    pop = train_classifiers(net, runs, data)
    for k in (0, 5):
        assert_same_member(net, train_classifiers(net, [runs[k]], data), 0, pop, k)


def test_member_equals_alone_with_dropout_subsample_and_init():
    runs, data, net = _setup({"name": "mlp", "hidden": [16, 16]},
                             {"epochs": 2, "batch_size": 50, "checkpoints": [0, 2]},
                             {"dropout": [0.0, 0.3], "train_fraction": [0.5],
                              "init": ["default", "kaiming_normal"], "seed": [3, 4]})
    pop = train_classifiers(net, runs, data)
    for k in (1, 6):
        assert_same_member(net, train_classifiers(net, [runs[k]], data), 0, pop, k)


def test_cnn_member_equals_alone():
    runs, data, net = _setup({"name": "cnn", "channels": [4, 4, 4]},
                             {"epochs": 1, "batch_size": 64, "checkpoints": [0, 1]},
                             {"seed": [0, 1, 2, 3], "lr": [0.01, 0.003]})
    pop = train_classifiers(net, runs, data)
    assert_same_member(net, train_classifiers(net, [runs[5]], data), 0, pop, 5)


@pytest.mark.parametrize("arch", [{"name": "mlp", "hidden": [5, 3]}, {"name": "cnn", "channels": [3, 5]},
                                  {"name": "transformer", "dim": 6, "depth": 1, "patch_size": 2, "heads": 3}],
                         ids=["mlp", "cnn", "transformer"])
def test_member_equals_alone_at_odd_sizes(arch):
    # Widths 3, 5 and 6 and batches of 37 put the members' matrices at unaligned places in the
    # stacked tensors: MKL without MKL_CBWR=AUTO,STRICT rounded members 1, 3 and 5 (say) otherwise.
    # One thread, the builder's default: with more, torch and oneDNN split some sums (a
    # convolution's bias gradient) among the threads by the population's size.
    runs, data, net = _setup(arch, {"epochs": 1, "batch_size": 37, "checkpoints": [1]},
                             {"seed": list(range(7)), "lr": [0.01]})
    with torch_threads(1):
        pop = train_classifiers(net, runs, data)
        for k in range(1, 7, 2) if arch["name"] == "transformer" else range(7):
            assert_same_member(net, train_classifiers(net, [runs[k]], data), 0, pop, k)


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}  # as a fresh shell has it
    return subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True,
                          timeout=120)


def test_weightzoo_makes_matrix_products_position_independent():
    """Importing catalog sets MKL_CBWR (unless set) before torch computes a product: the probe
    then finds no product rounded by its place. Multiplying before the import is too late: where
    that leaves products position-dependent, training warns and says what to do."""
    early = _python("import catalog, os; from catalog import kernels; "
                    "print(os.environ['MKL_CBWR'], kernels.products_depend_on_position())")
    assert early.stdout.split() == ["AUTO,STRICT", "False"], early.stderr
    kept = _python("import catalog, os; print(os.environ['MKL_CBWR'])", MKL_CBWR="COMPATIBLE")
    assert kept.stdout.strip() == "COMPATIBLE"  # a user's own setting stays
    late = _python("import torch; torch.bmm(torch.ones(2, 3, 3), torch.ones(2, 3, 3)); "
                   "from catalog import kernels; from zoo_builders.train import warn_if_products_depend_on_position; "
                   "print(kernels.products_depend_on_position()); warn_if_products_depend_on_position()")
    assert late.returncode == 0, late.stderr
    if late.stdout.strip() == "True":  # MKL's default mode on this machine (not on every machine)
        assert "MKL_CBWR=AUTO,STRICT" in late.stderr and "import weightzoo before" in late.stderr
    else:
        assert "MKL_CBWR" not in late.stderr


def test_members_differ_and_learn():
    runs, data, net = _setup({"name": "mlp", "hidden": [16]},
                             {"epochs": 3, "batch_size": 32, "checkpoints": [0, 3]},
                             {"lr": [0.01], "seed": [0, 1, 2]})
    res = train_classifiers(net, runs, data)
    w = res.snapshots[-1].weights["layers.0.weight"]
    assert not torch.equal(w[0], w[1])
    assert all(m["test_acc"] > 0.8 for m in res.snapshots[-1].metrics)
    assert all(m["test_acc"] < 0.3 for m in res.snapshots[0].metrics)


def test_recorded_metrics_match_a_plain_module():
    runs, data, net = _setup({"name": "mlp", "hidden": [16]},
                             {"epochs": 2, "batch_size": 32, "checkpoints": [2]}, {"seed": [0, 1]})
    res = train_classifiers(net, runs, data)
    snap = res.snapshots[-1]
    for k in range(2):
        module = build_module(net, {n: snap.weights[n][k] for n in net.param_names})
        with torch.no_grad():
            acc = (module(data.x_test).argmax(1) == data.y_test).float().mean().item()
        assert acc == pytest.approx(snap.metrics[k]["test_acc"], abs=1e-6)


def test_divergence_is_contained():
    runs, data, net = _setup({"name": "mlp", "hidden": [16]},
                             {"epochs": 3, "batch_size": 32, "optimizer": "sgd", "checkpoints": [0, 1, 3]},
                             {"lr": [0.01, 1.0e12], "seed": [0]})
    res = train_classifiers(net, runs, data)
    assert res.snapshots[0].diverged == [False, False]
    assert res.snapshots[-1].diverged == [False, True]
    assert res.snapshots[-1].metrics[0]["test_acc"] > 0.5
    # The healthy member is unaffected by its diverged neighbour.
    alone = train_classifiers(net, [runs[0]], data)
    assert torch.equal(alone.snapshots[-1].weights["layers.0.weight"][0],
                       res.snapshots[-1].weights["layers.0.weight"][0])


def test_inr_population_fits_images_and_matches_alone():
    s = BuildSpec.load({"name": "i", "dataset": {"name": "digits"},
                        "architecture": {"name": "siren", "hidden": [16, 16]},
                        "task": {"name": "inr", "images": 4},
                        "training": {"epochs": 60, "lr": 0.001, "checkpoints": [0, 60]}})
    runs = s.runs()
    data = load_dataset(DatasetConfig("digits"))
    net = runs[0].arch.network_spec((1, 8, 8), 1)
    images, labels = _inr_images(data, runs)
    res = train_inrs(net, runs, images)
    first, last = res.snapshots
    assert all(b["psnr"] > a["psnr"] + 5 for a, b in zip(first.metrics, last.metrics))
    assert len(labels) == 4
    alone = train_inrs(net, [runs[2]], images[2:3])
    for n in net.param_names:
        assert torch.equal(alone.snapshots[-1].weights[n][0], last.weights[n][2])
    # The stored network renders the image: its MSE is the recorded one.
    from zoo_builders.train import image_coordinates

    module = build_module(net, {n: last.weights[n][1] for n in net.param_names})
    with torch.no_grad():
        img = module(image_coordinates(8, 8)).reshape(8, 8)
    mse = float(((img - images[1]) ** 2).mean())
    assert mse == pytest.approx(last.metrics[1]["mse"], rel=1e-4)
    assert np.isfinite(last.metrics[1]["psnr"])


def test_inr_training_reports_progress_every_100_steps_at_most():
    """Reports came every epochs // 20 steps: with epochs: 1e12 the bar showed 0 steps (no rate, no
    estimate) for 5e10 steps. Here 20,000 steps: the first report used to come after 1,000
    (zoo_builders.train.INR_PROGRESS_EVERY is 100)."""
    s = BuildSpec.load({"name": "i", "dataset": {"name": "digits"}, "architecture": {"name": "siren", "hidden": [4]},
                        "task": {"name": "inr", "images": 2}, "training": {"epochs": 20_000, "checkpoints": [0]}})
    runs = s.runs()
    images, _ = _inr_images(load_dataset(s.dataset), runs)
    reports = []

    class Enough(Exception):
        pass

    def progress(steps: int) -> None:
        reports.append(steps)
        raise Enough  # one report is all this test needs

    with pytest.raises(Enough):
        train_inrs(runs[0].arch.network_spec((1, 8, 8), 1), runs, images, progress)
    assert reports == [100]


def test_a_batch_size_beyond_the_training_set_trains_full_batch():
    """batch_size has no bound below 2**63 (a zoo's integer columns): any value from the training
    set's size up is one full-batch step per epoch, the same weights as batch_size = the set's size."""
    runs, data, net = _setup({"name": "mlp", "hidden": [4]}, {"epochs": 2}, {"batch_size": [10**18]})
    n = int(data.x_train.shape[0])
    full, _, _ = _setup({"name": "mlp", "hidden": [4]}, {"epochs": 2}, {"batch_size": [n]})
    a, b = train_classifiers(net, runs, data), train_classifiers(net, full, data)
    for name in net.param_names:
        assert torch.equal(a.snapshots[-1].weights[name], b.snapshots[-1].weights[name])


@pytest.mark.parametrize("shared", [True, False])
def test_inr_shared_initialization(shared):
    s = BuildSpec.load({"name": "i", "dataset": {"name": "digits"},
                        "architecture": {"name": "siren", "hidden": [8]},
                        "task": {"name": "inr", "images": 3, "shared_init": shared},
                        "training": {"epochs": 1, "checkpoints": [0]}})
    runs = s.runs()
    net = runs[0].arch.network_spec((1, 8, 8), 1)
    images, _ = _inr_images(load_dataset(s.dataset), runs)
    w = train_inrs(net, runs, images).snapshots[0].weights["layers.0.weight"]
    assert torch.equal(w[0], w[1]) == shared
