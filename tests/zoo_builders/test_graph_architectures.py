"""The graph families (resnet, vgg, modelzoo-cnn, transformer): their layouts, vectorized
training that equals each run alone, stable run ids, and a graph zoo end to end."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from zoo_helpers import assert_same_member

from catalog import open_zoo, read_manifest
from catalog.errors import WeightzooError
from catalog.network import population_forward
from zoo_builders import BuildSpec, load_dataset, train_classifiers
from zoo_builders.graph_architectures import ModelZooCNNConfig, ResNetConfig, TransformerConfig, VGGConfig
from zoo_builders.spec import RunConfig, TrainingConfig


def _setup(arch, training, grid, dataset="digits"):
    s = BuildSpec.load({"name": "t", "dataset": {"name": dataset}, "architecture": arch,
                        "training": training, "grid": grid})
    runs = s.runs()
    data = load_dataset(s.dataset)
    return runs, data, runs[0].arch.network_spec(data.input_shape, data.n_classes)


# ================================================================================ layouts
def test_modelzoo_cnn_is_the_model_zoos_cnn_s() -> None:
    spec = BuildSpec.load("mnist5k-modelzoo-cnn").runs()[0].arch.network_spec((1, 28, 28), 10)
    assert [(p.name, p.shape) for p in spec.params] == [
        ("module_list.0.weight", (8, 1, 5, 5)), ("module_list.0.bias", (8,)),
        ("module_list.3.weight", (6, 8, 5, 5)), ("module_list.3.bias", (6,)),
        ("module_list.6.weight", (4, 6, 2, 2)), ("module_list.6.bias", (4,)),
        ("module_list.9.weight", (20, 36)), ("module_list.9.bias", (20,)),
        ("module_list.11.weight", (10, 20)), ("module_list.11.bias", (10,))]
    assert spec.n_params == 2464
    assert [n.KIND for n in spec.nodes] == ["conv2d", "maxpool", "activation"] * 2 + [
        "conv2d", "activation", "flatten", "linear", "activation", "linear"]


def test_modelzoo_cnn_l_is_the_model_zoos_cnn3() -> None:
    """CNN-l on 3x32x32: 32 -conv3-> 30 -pool-> 15 -conv3-> 13 -pool-> 6 -conv3-> 4 -pool-> 2, so
    15 * 2 * 2 = 60 inputs to the first linear layer; parameters 16*3*9+16 = 448, 32*16*9+32 = 4,640,
    15*32*9+15 = 4,335, 20*60+20 = 1,220, 10*20+10 = 210: 10,853 in all."""
    spec = ModelZooCNNConfig(activation="relu", size="l").network_spec((3, 32, 32), 10)
    assert [(p.name, p.shape) for p in spec.params if p.role == "weight"] == [
        ("module_list.0.weight", (16, 3, 3, 3)), ("module_list.4.weight", (32, 16, 3, 3)),
        ("module_list.8.weight", (15, 32, 3, 3)), ("module_list.13.weight", (20, 60)),
        ("module_list.16.weight", (10, 20))]
    assert spec.n_params == 448 + 4640 + 4335 + 1220 + 210 == 10853
    # the default size is left out of the architecture record, so CNN-s ids do not move
    run = BuildSpec.load("mnist5k-modelzoo-cnn").runs()[0]
    assert "size" not in run.to_dict()["architecture"]
    with pytest.raises(WeightzooError, match="size 'm'"):
        ModelZooCNNConfig(size="m")


@pytest.mark.parametrize("size, side, n_params", [("s", 20, 8 * 26 + 6 * 201 + 4 * 25 + 20 * 5 + 210),
                                                   ("l", 22, 160 + 4640 + 4335 + 20 * 16 + 210)])
def test_modelzoo_cnn_takes_exactly_the_images_it_can_run_on(size, side, n_params) -> None:
    """Each size down to its smallest side (CNN-s 20, CNN-l 22), each refused one pixel below with
    a message naming the size, the minimum and what it was made for (the check said 22 for both
    sizes and "made for 28x28 MNIST" for CNN-l too)."""
    cfg = ModelZooCNNConfig(size=size)
    spec = cfg.network_spec((1, side, side), 10)
    assert spec.n_params == n_params and spec.shapes[spec.nodes[-4].name][0] == (4 if size == "s" else 15)
    made_for = {"s": "1x28x28 MNIST", "l": "3x32x32 CIFAR-10"}[size]
    for shape in ((1, side - 1, side), (1, side, side - 1), (1, 40)):
        with pytest.raises(WeightzooError) as e:
            cfg.network_spec(shape, 10)
        assert (f"modelzoo-cnn needs [C, H, W] images of at least {side}x{side} for size '{size}' "
                f"(CNN-{size}, made for {made_for}); this dataset gives {list(shape)}") in str(e.value)


def test_modelzoo_cnn_l_on_mnist_trains_with_a_15_feature_head() -> None:
    """CNN-l on 1x28x28 is not the published CNN-l (its last pool leaves 1x1 maps): it runs, with
    15 inputs to the first linear layer instead of 60 - what the docstring says."""
    spec = ModelZooCNNConfig(size="l").network_spec((1, 28, 28), 10)
    assert spec.shapes["module_list.12"] == (15,) and spec.n_params == 9665
    params = {p.name: torch.randn(2, *p.shape) * 0.1 for p in spec.params}
    assert population_forward(spec, params, torch.randn(3, 1, 28, 28)).shape == (2, 3, 10)


def test_resnet_depths_widths_and_batchnorm() -> None:
    def count(cfg, kind):
        return sum(n.KIND == kind for n in cfg.network_spec((1, 8, 8), 10).nodes)

    assert count(ResNetConfig(depth=8), "add") == 3 and count(ResNetConfig(depth=20), "add") == 9
    # ResNet-20: 19 convs + 2 projection shortcuts, one batch norm each
    assert count(ResNetConfig(depth=20), "conv2d") == 21 and count(ResNetConfig(depth=20), "batchnorm") == 21
    plain = ResNetConfig(batchnorm=False).network_spec((1, 8, 8), 10)
    assert not any(n.KIND == "batchnorm" for n in plain.nodes) and "conv1.bias" in plain.param_names
    half = ResNetConfig(width_multiplier=0.5).network_spec((1, 8, 8), 10)
    assert half.params[0].shape == (8, 1, 3, 3) and half.param_names[-2:] == ["fc.weight", "fc.bias"]
    assert "layer2.0.shortcut.0.weight" in half.param_names and "layer1.0.shortcut.0.weight" not in half.param_names
    assert ResNetConfig().network_spec((1, 40), 10).nodes[0].KIND == "conv1d"
    with pytest.raises(WeightzooError, match="6n \\+ 2"):
        ResNetConfig(depth=10)


def test_vgg_and_transformer_layouts() -> None:
    vgg = VGGConfig(channels=(8, 16), hidden=(32,), dropout=0.5).network_spec((1, 8, 8), 10)
    assert [n.name for n in vgg.nodes][:4] == ["features.0", "features.1", "features.2", "features.3"]
    assert vgg.shapes["flatten"] == (16 * 2 * 2,)
    vit = TransformerConfig(patch_size=2, dim=16, depth=3).network_spec((1, 8, 8), 10)
    assert vit.shapes["patchify"] == (16, 4) and sum(n.KIND == "attention" for n in vit.nodes) == 3
    seq = TransformerConfig(patch_size=4).network_spec((1, 40), 10)
    assert seq.shapes["pos"] == (10, 32)
    with pytest.raises(WeightzooError, match="patch_size 3 must divide"):
        TransformerConfig(patch_size=3).network_spec((1, 8, 8), 10)
    with pytest.raises(WeightzooError, match="modelzoo-cnn needs"):
        BuildSpec.load({"name": "t", "dataset": "digits", "architecture": {"name": "modelzoo-cnn"}}) \
            .runs()[0].arch.network_spec((1, 8, 8), 10)


def test_training_dropout_is_refused_for_graphs_before_training() -> None:
    with pytest.raises(WeightzooError, match="training.dropout applies to layer chains"):
        _setup({"name": "vgg", "channels": [4]}, {"epochs": 1}, {"dropout": [0.0, 0.2]})
    runs, data, net = _setup({"name": "vgg", "channels": [4]}, {"epochs": 1}, {})
    with pytest.raises(WeightzooError, match="training.dropout applies to layer chains"):
        train_classifiers(net, [RunConfig(runs[0].dataset, runs[0].task, "vgg", runs[0].arch,
                                          TrainingConfig(epochs=1, dropout=0.2))], data)


# ================================================================================ exactness
@pytest.mark.parametrize("arch", [
    # BN: per-member statistics. Width 0.125 is 2 channels: 4 members put 8 in one batch-norm call,
    # a run alone (two copies) 4, and torch once took another path for them (test_execution.py)
    {"name": "resnet", "width_multiplier": 0.125},
    {"name": "transformer", "dim": 8, "depth": 1, "patch_size": 2, "dropout": 0.2},
    {"name": "vgg", "channels": [4, 8], "hidden": [8], "dropout": 0.3},
], ids=["resnet-bn", "transformer", "vgg"])
def test_graph_member_equals_run_alone(arch) -> None:
    runs, data, net = _setup(arch, {"epochs": 1, "batch_size": 128, "checkpoints": [0, 1]},
                             {"seed": [0, 1], "lr": [0.01, 0.003], "train_fraction": [0.5]})
    pop = train_classifiers(net, runs, data)
    # Alone, and in another population (of two): the member computes the same bits.
    assert_same_member(net, train_classifiers(net, [runs[3]], data), 0, pop, 3)
    assert_same_member(net, train_classifiers(net, runs[2:], data), 1, pop, 3)
    last = pop.snapshots[-1]
    if arch["name"] == "resnet":  # running statistics were trained and stored like parameters
        rm = last.weights["bn1.running_mean"]
        assert not torch.equal(rm[0], torch.zeros_like(rm[0])) and not torch.equal(rm[0], rm[1])


# ================================================================================ ids
#: Ids computed by the code before graph architectures: existing zoos must resume unchanged.
LEGACY = [
    ({"name": "t", "dataset": {"name": "digits"}, "architecture": {"name": "mlp", "hidden": [16, 16]},
      "training": {"epochs": 2, "lr": 0.01, "seed": 3}}, (1, 8, 8), "mlp-992c779fcd", ["e6168d35c0b8a9d1"]),
    ({"name": "t", "dataset": {"name": "mnist1d"},
      "architecture": {"name": "cnn", "channels": [8, 8], "kernel_size": 5, "activation": "gelu"},
      "training": {"epochs": 3, "dropout": 0.1, "train_fraction": 0.5, "checkpoints": [0, 1, 3]}},
     (1, 40), "cnn-13e79f830e", ["c6b701dfc8a1c8a8"]),
    ({"name": "t", "dataset": {"name": "digits"}, "architecture": {"name": "siren", "hidden": [8]},
      "task": {"name": "inr", "images": 2}, "training": {"epochs": 5}},
     (1, 8, 8), "siren-646cb7dcae", ["750d5a627e2127b7", "bd4eb257fad86c1a"]),
]


@pytest.mark.parametrize("d, shape, arch_id, run_ids", LEGACY, ids=["mlp", "cnn", "siren"])
def test_v1_ids_are_unchanged(d, shape, arch_id, run_ids) -> None:
    runs = BuildSpec.load(d).runs()
    assert runs[0].arch.network_spec(shape, 10).arch_id == arch_id
    assert [r.run_id for r in runs] == run_ids


def test_a_new_defaulted_field_renames_no_run() -> None:
    run = _setup({"name": "resnet", "depth": 14}, {"epochs": 1}, {})[0][0]
    assert run.to_dict()["architecture"] == {"name": "resnet", "depth": 14}  # defaults left out

    @dataclass(frozen=True)
    class TrainingWithClipping(TrainingConfig):
        grad_clip: float = 0.0

    @dataclass(frozen=True)
    class ResNetWithZeroInit(ResNetConfig):
        zero_init_residual: bool = False

    training = TrainingWithClipping(**{k: getattr(run.training, k) for k in TrainingConfig.field_names()})
    newer = RunConfig(run.dataset, run.task, "resnet", ResNetWithZeroInit(depth=14), training)
    assert newer.run_id == run.run_id
    changed = RunConfig(run.dataset, run.task, "resnet", ResNetWithZeroInit(depth=14, zero_init_residual=True),
                        training)
    assert changed.run_id != run.run_id
    # the same holds for the v1 families' training fields
    mlp_run = BuildSpec.load(LEGACY[0][0]).runs()[0]
    t = TrainingWithClipping(**{k: getattr(mlp_run.training, k) for k in TrainingConfig.field_names()})
    assert RunConfig(mlp_run.dataset, mlp_run.task, "mlp", mlp_run.arch, t).run_id == LEGACY[0][3][0]


# ================================================================================ a graph zoo
GRAPH_SPEC = {"name": "tiny-resnet", "dataset": {"name": "digits", "test_fraction": 0.25},
              "architecture": {"name": "resnet", "width_multiplier": 0.25},
              "training": {"epochs": 2, "batch_size": 64, "lr": 0.01, "checkpoints": [0, 2]},
              "grid": {"seed": [0, 1, 2, 3, 4, 5]}}


@pytest.fixture(scope="module")
def resnet_zoo(zoo_factory) -> Path:
    return zoo_factory(GRAPH_SPEC)


VIT_SPEC = {"name": "tiny-vit", "dataset": {"name": "mnist1d", "test_fraction": 0.25},
            "architecture": {"name": "transformer", "patch_size": 4, "dim": 8, "depth": 1},
            "training": {"epochs": 1, "batch_size": 128, "lr": 0.003, "checkpoints": [1]},
            "grid": {"seed": [0, 1]}}


@pytest.mark.parametrize("which", ["resnet", "transformer"])
def test_graph_zoo_is_format_2_and_modules_reproduce_test_accuracy(which, resnet_zoo, zoo_factory) -> None:
    from zoo_builders import load_zoo_dataset

    root = resnet_zoo if which == "resnet" else zoo_factory(VIT_SPEC)
    manifest = json.loads((root / "zoo.json").read_text())
    assert manifest["format_version"] == 2
    (arch,) = manifest["architectures"].values()
    assert arch["format"] == 2 and arch["nodes"][0]["name"] == ("conv1" if which == "resnet" else "patchify")
    zoo = open_zoo(root)
    assert zoo.verify().ok
    data = load_zoo_dataset(zoo)
    last = max(zoo.sql("SELECT checkpoint FROM models").table.column("checkpoint").to_pylist())
    sel = zoo.select(where=f"checkpoint = {last}")
    n = len(data.y_test)
    for module, recorded in zip(sel.modules(), sel.column("test_acc")):
        if which == "resnet":
            assert "bn1.running_var" in module.state_dict()
        with torch.no_grad():
            correct = int((module(data.x_test).argmax(-1) == data.y_test).sum())
        assert correct == round(recorded * n), (correct / n, recorded)
    assert max(sel.column("test_acc")) > (0.5 if which == "resnet" else 0.15)


def test_graph_zoo_resumes_without_retraining(resnet_zoo: Path, tmp_path: Path) -> None:
    import shutil

    from zoo_builders.build import build_zoo

    out = tmp_path / "copy"
    shutil.copytree(resnet_zoo, out)
    plan = build_zoo(copy.deepcopy(GRAPH_SPEC), out, quiet=True)
    assert plan.skipped_runs == 6 and plan.populations == []
    assert read_manifest(out).counts["rows"] == 12


def test_statnn_trains_on_a_graph_zoo_and_dws_refuses_it(resnet_zoo: Path, tmp_path: Path) -> None:
    from weightspace import train_on_zoo

    res = train_on_zoo(resnet_zoo, "test_acc", "statnn", hparams={"hidden": 8}, out=tmp_path / "statnn",
                       epochs=2, progress=False, log=None, fractions=(0.5, 0.25, 0.25))
    assert res.rows["train"] > 0 and "kendall_tau" in res.test
    from weightspace import TrainedMetanetwork

    loaded = TrainedMetanetwork.load(res.run_dir)  # the graph NetworkSpec reads back from config.json
    sel = open_zoo(resnet_zoo).select(where="checkpoint = 2")
    torch.testing.assert_close(loaded.predict(sel), res.model.predict(sel))
    with pytest.raises(WeightzooError, match="metanetwork 'dws' reads layer chains"):
        train_on_zoo(resnet_zoo, "test_acc", "dws", out=tmp_path / "dws", epochs=1, progress=False, log=None)


def test_architecture_dropout_is_a_column_of_its_own() -> None:
    runs = _setup({"name": "vgg", "channels": [4], "hidden": [8]}, {"epochs": 1},
                  {"architecture.dropout": [0.0, 0.5]})[0]
    assert [r.hparams()["arch_dropout"] for r in runs] == [0.0, 0.5]
    assert [r.hparams()["dropout"] for r in runs] == [0.0, 0.0]  # training.dropout, as rows always had it
    vit = _setup({"name": "transformer", "dim": 8, "depth": 1, "dropout": 0.2}, {"epochs": 1}, {})[0][0]
    assert vit.hparams()["arch_dropout"] == 0.2
    mlp = BuildSpec.load(LEGACY[0][0]).runs()[0].hparams()
    assert "arch_dropout" not in mlp and mlp["dropout"] == 0.0


def test_dropout_axis_on_a_graph_names_the_axis_that_works() -> None:
    with pytest.raises(WeightzooError, match="the axis 'architecture.dropout'"):
        _setup({"name": "vgg", "channels": [4]}, {"epochs": 1}, {"dropout": [0.0, 0.5]})
    with pytest.raises(WeightzooError, match="architecture 'resnet' has no dropout option"):
        _setup({"name": "resnet"}, {"epochs": 1}, {"dropout": [0.0, 0.5]})


@pytest.mark.parametrize("cfg", [VGGConfig(convs_per_stage=10**30), TransformerConfig(depth=10**9),
                                 ResNetConfig(depth=6 * 10**29 + 2)], ids=["vgg", "transformer", "resnet"])
def test_an_astronomical_depth_is_refused_not_built(cfg) -> None:
    with pytest.raises(WeightzooError, match="more than 10,000 nodes"):
        cfg.network_spec((1, 8, 8), 10)
    assert ResNetConfig(depth=1202).network_spec((1, 8, 8), 10).n_params > 0  # the deepest CIFAR ResNet
