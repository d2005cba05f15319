"""Build specs: parsing, validation, expansion into runs."""

from __future__ import annotations

import pytest

from catalog.errors import WeightzooError
from zoo_builders import BuildSpec, list_presets

BASE = {"name": "s", "dataset": {"name": "digits"}, "architecture": {"name": "mlp", "hidden": [8]},
        "training": {"epochs": 2}}


def spec(**over):
    return BuildSpec.load({**BASE, **over})


def test_issue_spec_gives_16_runs(issue_spec_path):
    s = BuildSpec.load(issue_spec_path)
    runs = s.runs()
    assert len(runs) == 16
    assert runs[0].training.checkpoints == (0, 3, 6)
    assert len({r.run_id for r in runs}) == 16


def test_run_ids_are_stable_and_config_derived():
    a = [r.run_id for r in spec(grid={"lr": [0.1, 0.01]}).runs()]
    b = [r.run_id for r in spec(grid={"lr": [0.1, 0.01]}).runs()]
    c = [r.run_id for r in spec(grid={"lr": [0.1, 0.02]}).runs()]
    assert a == b and a[0] == c[0] and a[1] != c[1]


def test_architecture_axes_change_arch():
    s = spec(grid={"architecture.activation": ["relu", "tanh"], "hidden": [[16, 16], [32]]})
    runs = s.runs()
    assert len(runs) == 4
    specs = {r.arch.network_spec((1, 8, 8), 10).arch_id for r in runs}
    assert len(specs) == 4
    hp = runs[-1].hparams()
    assert hp["activation"] == "tanh" and hp["hidden"] == [32] and hp["depth"] == 1


def test_random_block_is_seeded():
    rnd = {"samples": 5, "lr": {"loguniform": [1e-4, 1e-1]}, "dropout": {"uniform": [0, 0.5]},
           "activation": {"choice": ["relu", "tanh"]}, "seed": {"randint": [0, 1000]}}
    a = spec(random=rnd).runs()
    b = spec(random=rnd).runs()
    assert [r.run_id for r in a] == [r.run_id for r in b]
    assert len(a) == 5
    assert all(1e-4 <= r.training.lr <= 1e-1 and 0 <= r.training.dropout <= 0.5 for r in a)
    c = spec(random={**rnd, "sampler_seed": 1}).runs()
    assert [r.run_id for r in a] != [r.run_id for r in c]


def test_all_axes_accepted():
    s = spec(grid={"seed": [0], "lr": [0.1], "weight_decay": [0.0], "optimizer": ["sgd", "adam"],
                   "batch_size": [16], "init": ["kaiming_normal"], "activation": ["tanh"],
                   "dropout": [0.1], "hidden": [[4, 4]], "train_fraction": [0.5], "momentum": [0.5]})
    assert len(s.runs()) == 2


@pytest.mark.parametrize("over, needle", [
    ({"dataset": {"name": "cifar"}}, "valid datasets: blobs, digits, mnist1d, mnist5k, moons, npz"),
    ({"architecture": {"name": "wideresnet"}},
     "valid architectures: cnn, mlp, modelzoo-cnn, resnet, siren, transformer, vgg"),
    ({"training": {"optimizer": "lion"}}, "valid optimizers: sgd, adam, adamw"),
    ({"grid": {"learning_rate": [0.1]}}, "valid axes: epochs, batch_size"),
    ({"training": {"epochs": "ten"}}, "training.epochs must be an integer"),
    ({"training": {"lr": -1.0}}, "training.lr must be > 0"),
    ({"training": {"epochs": 2, "checkpoints": [5]}}, "outside 0..epochs"),
    ({"architecture": {"name": "mlp", "width": 3}}, "valid options: hidden, activation"),
    ({"architecture": {"name": "mlp", "activation": "swish"}}, "valid activations"),
    ({"grid": {"lr": []}}, "non-empty list"),
    ({"random": {"samples": 2, "lr": {"gauss": [0, 1]}}}, "unknown distribution"),
    ({"colour": "red"}, "unknown spec key"),
    ({"task": {"name": "inr"}}, "use architecture {name: siren}"),
])
def test_bad_specs_name_the_problem(over, needle):
    with pytest.raises(WeightzooError, match=None) as e:
        spec(**over)
    assert needle in str(e.value)


def test_bad_yaml_and_missing_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(WeightzooError, match="not valid YAML"):
        BuildSpec.load(p)
    with pytest.raises(WeightzooError, match="neither a spec file nor a preset"):
        BuildSpec.load(tmp_path / "nope.yaml")


def test_presets_parse():
    names = list_presets()
    assert {"digits-mlp", "mnist1d-cnn", "mnist5k-inr"} <= set(names)
    # one preset per graph family (format v2), each building in about a minute or two
    assert {"digits-resnet", "digits-vgg", "digits-vit", "mnist1d-transformer", "mnist5k-modelzoo-cnn"} <= set(names)
    for n in names:
        assert BuildSpec.load(n).runs()
    assert {BuildSpec.load(n).arch_name for n in names} >= {"resnet", "vgg", "transformer", "modelzoo-cnn"}
    assert 200 <= len(BuildSpec.load("digits-mlp").runs()) <= 600
    assert len(BuildSpec.load("mnist5k-inr").runs()) == 5000
    assert 200 <= len(BuildSpec.load("mnist5k-cnn-zoo").runs()) <= 1000


def test_cnn_is_the_small_cnn_zoo_network():
    # Unterthiner et al. 2020: 3 convs of 16 channels (3x3, stride 2), global average pool,
    # dense 10 on 28x28 MNIST: 160 + 2320 + 2320 + 170 = 4970 parameters
    spec = BuildSpec.load("mnist5k-cnn-zoo")
    net = spec.runs()[0].arch.network_spec((1, 28, 28), 10)
    assert [p.numel for p in net.params] == [144, 16, 2304, 16, 2304, 16, 160, 10]
    assert net.n_params == 4970
    assert [layer.stride for layer in net.layers[:3]] == [2, 2, 2]
    assert net.layers[2].pool == "global_avg"


def test_offline_datasets_shapes():
    from zoo_builders import load_dataset

    d = load_dataset({"name": "mnist1d"})
    assert d.input_shape == (1, 40) and d.n_classes == 10 and d.x_train.shape[0] + d.x_test.shape[0] == 5000
    net = BuildSpec.load({**BASE, "dataset": {"name": "mnist1d"}, "architecture": {"name": "cnn"}}).runs()[0] \
        .arch.network_spec(d.input_shape, d.n_classes)
    assert [layer.kind for layer in net.layers] == ["conv1d"] * 3 + ["linear"]
    m = load_dataset("mnist5k")
    assert m.input_shape == (1, 28, 28) and m.x_train.shape[0] + m.x_test.shape[0] == 5000
    assert 0.0 <= float(m.x_train.min()) and float(m.x_train.max()) <= 1.0
    with pytest.raises(WeightzooError, match="needs a path"):
        load_dataset({"name": "npz"})


def test_classifier_run_ids_ignore_inr_task_options():
    a = spec().runs()[0]
    b = spec(task={"name": "classify", "images": 7, "shared_init": False}).runs()[0]
    assert a.run_id == b.run_id


# ================================================================================ YAML
def _load_text(tmp_path, text: str | bytes) -> BuildSpec:
    p = tmp_path / "spec.yaml"
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return BuildSpec.load(p)


def test_scientific_notation_is_a_number(tmp_path):
    s = _load_text(tmp_path, "name: s\ndataset: {name: digits}\narchitecture: {name: mlp, hidden: [8]}\n"
                             "training: {epochs: 2, lr: 1e-3, weight_decay: 5E-4, momentum: 9e-1}\n"
                             "random: {samples: 2, lr: {loguniform: [1e-4, 1.5e-2]}}\n")
    assert (s.training.lr, s.training.weight_decay, s.training.momentum) == (1e-3, 5e-4, 0.9)
    assert all(1e-4 <= r.training.lr <= 1.5e-2 for r in s.runs())
    # a string stays a string where the spec wants one
    assert _load_text(tmp_path, "name: 1e3x\ndataset: {name: digits}\narchitecture: {name: mlp}\n").name == "1e3x"


def test_the_module_docstring_example_parses(tmp_path):
    import zoo_builders.spec as spec_module

    example = spec_module.__doc__.split("::\n", 1)[1].split("\n\n", 1)[0]
    s = _load_text(tmp_path, "name: doc\n" + "\n".join(line[4:] for line in example.splitlines()) + "\n")
    assert s.arch_names == ["cnn", "resnet"] and len(s.runs()) == 104


def test_duplicate_keys_are_refused(tmp_path):
    with pytest.raises(WeightzooError, match=r"(?s)duplicate key 'architecture'.*line 4"):
        _load_text(tmp_path, "name: s\ndataset: {name: digits}\narchitecture: {name: mlp}\n"
                             "architecture: {name: cnn}\n")
    with pytest.raises(WeightzooError, match="duplicate key 'lr'"):
        _load_text(tmp_path, "name: s\ndataset: {name: digits}\narchitecture: {name: mlp}\n"
                             "training: {lr: 0.1, lr: 0.2}\n")
    # keys merged in with '<<' may still be overridden
    s = _load_text(tmp_path, "name: s\ndataset: {name: digits}\n"
                             "architecture: {<<: {name: mlp, hidden: [4]}, hidden: [8]}\n")
    assert s.architecture.hidden == (8,)


def test_yaml_errors_are_one_line(tmp_path):
    with pytest.raises(WeightzooError, match="not valid YAML") as e:
        _load_text(tmp_path, "name: x\ndataset: {name: digits\narchitecture: [name: mlp\n")
    assert "\n" not in str(e.value) and "line 3" in str(e.value)


def test_a_file_that_is_not_utf8_is_refused(tmp_path):
    with pytest.raises(WeightzooError, match="not UTF-8 text"):
        _load_text(tmp_path, b"\xff\xfe bad\n")




# ================================================================================ checks at parse time
@pytest.mark.parametrize("over, needle", [
    ({"architecture": {"name": ["resnet"]}}, "architecture name must be a string"),
    ({"random": {"samples": 2, "sampler_seed": -1, "lr": {"uniform": [0.1, 0.2]}}},
     "random.sampler_seed must be a non-negative integer"),
    ({"random": {"samples": 2, "sampler_seed": "abc", "lr": {"uniform": [0.1, 0.2]}}},
     "random.sampler_seed must be a non-negative integer"),
    ({"random": {"samples": True, "lr": {"uniform": [0.1, 0.2]}}}, "random.samples must be a positive integer"),
    ({"architecture": {"name": "resnet", "width_multiplier": float("inf")}}, "width_multiplier must be a positive"),
    ({"architecture": {"name": "resnet", "width_multiplier": float("nan")}}, "width_multiplier must be a positive"),
    ({"architecture": {"name": "siren", "omega0": float("inf")}, "task": {"name": "inr", "images": 1}},
     "omega0 must be a positive"),
    ({"random": {"samples": 1, "lr": {"loguniform": [1e-4, float("inf")]}}}, "two finite numbers"),
    ({"random": {"samples": 1, "seed": {"randint": [0, 1e30]}}}, "randint bounds must lie within"),
    ({"architecture": {"name": "siren"}, "task": {"name": "inr", "images": 1, "offset": 1.5}},
     "task.offset must be an integer >= 0"),
    ({"grid": {1: [0.1]}}, "axis names are strings"),
    ({"random": {"samples": 1, 2: {"uniform": [0, 1]}}}, "axis names are strings"),
])
def test_bad_values_are_one_line_errors(over, needle):
    with pytest.raises(WeightzooError) as e:
        spec(**over)
    assert needle in str(e.value)




@pytest.mark.parametrize("name", [".", "..", "a\\b", "a\tb", "a/b", ""])
def test_spec_names_follow_the_manifest_rule(name):
    with pytest.raises(WeightzooError, match="not a valid zoo name"):
        spec(name=name)


def test_a_valid_zoo_name_is_a_valid_spec_name():
    assert spec(name="a b.c-1").name == "a b.c-1"
    assert spec(name="...").name == "..."


def test_run_count_is_bounded_before_expansion():
    from zoo_builders.spec import MAX_RUNS

    with pytest.raises(WeightzooError, match=f"100,000,000,000 runs.*{MAX_RUNS:,}"):
        spec(random={"samples": 100_000_000_000, "lr": {"uniform": [0.1, 0.2]}})
    with pytest.raises(WeightzooError, match=f"{MAX_RUNS + 1000:,} runs"):  # grid points times samples
        spec(grid={"seed": list(range(1000))}, random={"samples": MAX_RUNS // 1000 + 1, "lr": {"uniform": [0, 1]}})
    with pytest.raises(WeightzooError, match=f"{MAX_RUNS + 1:,} runs"):  # one run per image
        spec(architecture={"name": "siren"}, task={"name": "inr", "images": MAX_RUNS + 1})


def test_init_is_checked_against_every_family_before_training():
    with pytest.raises(WeightzooError, match="init 'siren'.*resnet"):
        spec(architecture={"name": "resnet"}, training={"epochs": 1, "init": "siren"})
    fams = {"families": [{"architecture": {"name": "cnn", "channels": [4, 4]}, "grid": {"seed": [0, 1]}},
                         {"architecture": {"name": "resnet"}, "grid": {"init": ["default", "siren"]}}]}
    with pytest.raises(WeightzooError, match=r"families\[1\] \(resnet\): init 'siren'"):
        BuildSpec.load({"name": "s", "dataset": {"name": "digits"}, "training": {"epochs": 1}, **fams})
    assert spec(training={"epochs": 1, "init": "siren"}).training.init == "siren"  # chains take it


def test_integral_floats_count_as_integers_in_epochs_and_checkpoints_alike():
    t = spec(training={"epochs": 2.0, "checkpoints": [1.0, 2]}).training
    assert (t.epochs, t.checkpoints) == (2, (1, 2)) and all(type(c) is int for c in t.checkpoints)
    assert spec(training={"epochs": 2, "checkpoints": 2.0}).training.checkpoints == (2,)
    for bad in ([1.5], "all", [True]):
        with pytest.raises(WeightzooError, match="training.checkpoints must be a list of epochs"):
            spec(training={"epochs": 2, "checkpoints": bad})


@pytest.mark.parametrize("ints, floats", [
    ({"name": "mlp", "hidden": [8, 4]}, {"name": "mlp", "hidden": [8.0, 4.0]}),
    ({"name": "mlp", "hidden": 8}, {"name": "mlp", "hidden": 8.0}),
    ({"name": "cnn", "channels": [4, 4], "kernel_size": 5}, {"name": "cnn", "channels": [4.0, 4], "kernel_size": 5.0}),
    ({"name": "resnet", "depth": 14}, {"name": "resnet", "depth": 14.0}),
    ({"name": "resnet", "depth": 8}, {"name": "resnet", "depth": 8.0}),  # the default: omitted from ids either way
    ({"name": "vgg", "channels": [4, 8], "convs_per_stage": 2, "hidden": [16]},
     {"name": "vgg", "channels": [4.0, 8.0], "convs_per_stage": 2.0, "hidden": [16.0]}),
    ({"name": "transformer", "patch_size": 4, "dim": 8, "depth": 1, "heads": 2, "mlp_ratio": 3},
     {"name": "transformer", "patch_size": 4.0, "dim": 8.0, "depth": 1.0, "heads": 2.0, "mlp_ratio": 3.0}),
], ids=["mlp", "mlp-scalar", "cnn", "resnet", "resnet-default", "vgg", "transformer"])
def test_integral_floats_count_as_integers_in_architectures_with_the_same_ids(ints, floats):
    """YAML/JSON tools write 8 as 8.0: training fields took it, architecture fields refused it."""
    a, b = spec(architecture=ints), spec(architecture=floats)
    assert b.architecture == a.architecture
    assert [r.run_id for r in b.runs()] == [r.run_id for r in a.runs()]
    net_a, net_b = (s.runs()[0].arch.network_spec((1, 8, 8), 10) for s in (a, b))
    assert net_b.arch_id == net_a.arch_id
    hp = b.runs()[0].hparams()
    assert all(type(v) is int for k, v in hp.items() if k in ("hidden", "channels", "kernel_size", "depth", "dim")
               for v in (v if isinstance(v, list) else [v]))
    # as axis values too
    axis = next(k for k in ints if k != "name")
    grid_a, grid_b = spec(architecture={"name": ints["name"]}, grid={axis: [ints[axis]]}), \
        spec(architecture={"name": ints["name"]}, grid={axis: [floats[axis]]})
    assert [r.run_id for r in grid_b.runs()] == [r.run_id for r in grid_a.runs()]


def test_integral_floats_count_in_task_and_random_samples_too():
    ints = spec(architecture={"name": "siren", "hidden": [8]}, task={"name": "inr", "images": 2, "offset": 3})
    floats = spec(architecture={"name": "siren", "hidden": [8.0]}, task={"name": "inr", "images": 2.0, "offset": 3.0})
    assert [r.run_id for r in floats.runs()] == [r.run_id for r in ints.runs()]
    rnd = {"lr": {"uniform": [0.1, 0.2]}}
    assert ([r.run_id for r in spec(random={"samples": 3.0, **rnd}).runs()]
            == [r.run_id for r in spec(random={"samples": 3, **rnd}).runs()])


def test_integral_floats_count_as_integers_in_the_dataset_with_the_same_ids():
    """As in architecture fields: 8.0 is 8 (the run ids of the int form, as built before), 8.5 is refused."""
    ints = {"name": "blobs", "split_seed": 3, "n_samples": 90, "n_classes": 4, "n_features": 8}
    floats = {k: float(v) if isinstance(v, int) else v for k, v in ints.items()}
    a, b = (spec(dataset=d, grid={"seed": [0, 1]}) for d in (ints, floats))
    assert [r.run_id for r in a.runs()] == ["fea68b377d13e29e", "bba7aac49f24d53a"]  # unchanged by the fix
    assert [r.run_id for r in b.runs()] == [r.run_id for r in a.runs()]
    assert b.dataset == a.dataset and all(type(getattr(b.dataset, k)) is int for k in ints if k != "name")
    for key in ("split_seed", "n_samples", "n_classes", "n_features"):
        with pytest.raises(WeightzooError, match=rf"dataset\.{key} must be an integer .*, got 8\.5"):
            spec(dataset={**ints, key: 8.5})
        with pytest.raises(WeightzooError, match=rf"dataset\.{key} must be an integer .*, got True"):
            spec(dataset={**ints, key: True})


@pytest.mark.parametrize("arch, needle", [
    ({"name": "mlp", "hidden": [8.5]}, "architecture.hidden must be a list of positive integers, got [8.5]"),
    ({"name": "mlp", "hidden": [True]}, "architecture.hidden must be a list of positive integers, got [True]"),
    ({"name": "mlp", "hidden": ["8"]}, "architecture.hidden must be a list of positive integers, got ['8']"),
    ({"name": "cnn", "kernel_size": 2.5}, "architecture.kernel_size must be a positive integer, got 2.5"),
    ({"name": "cnn", "kernel_size": True}, "architecture.kernel_size must be a positive integer, got True"),
    ({"name": "resnet", "depth": 14.5}, "architecture.depth must be a positive integer, got 14.5"),
    ({"name": "vgg", "channels": [4.5]}, "architecture.channels must be a positive integer, got 4.5"),
    ({"name": "transformer", "dim": float("inf")}, "architecture.dim must be a positive integer, got inf"),
])
def test_non_integral_architecture_sizes_are_refused(arch, needle):
    with pytest.raises(WeightzooError) as e:
        spec(architecture=arch)
    assert needle in str(e.value)


@pytest.mark.parametrize("training, needle", [
    ({"batch_size": 10**30}, "training.batch_size is about 1e+30: a zoo's integer columns hold at most 2**63 - 1"),
    ({"epochs": 2**63}, "training.epochs is 9223372036854775808: a zoo's integer columns hold at most 2**63 - 1"),
    ({"seed": -10**400}, "training.seed is about -1e+400: a zoo's integer columns hold at most 2**63 - 1"),
    ({"seed": 1e300}, "training.seed is about 1e+300: a zoo's integer columns hold at most 2**63 - 1"),
])
def test_training_integers_beyond_int64_are_refused_at_parse(training, needle):
    """These trained to the end and then failed writing the rows (pyarrow: 'Python int too large
    to convert to C long'), leaving a zoo without them."""
    with pytest.raises(WeightzooError) as e:
        spec(training={"epochs": 1, **training})
    assert needle in str(e.value)


def test_large_training_integers_up_to_int64_are_kept():
    t = spec(training={"epochs": 2**63 - 1, "batch_size": 2**63 - 1, "seed": -(2**63 - 1), "checkpoints": [1]}).training
    assert (t.epochs, t.batch_size, t.seed) == (2**63 - 1, 2**63 - 1, -(2**63 - 1))
    assert spec(training={"epochs": 10**12, "batch_size": 10**12}).training.epochs == 10**12


@pytest.mark.parametrize("dataset, needle", [
    ({"name": ["digits"]}, "unknown dataset ['digits']"),
    ({"name": "digits", "test_fraction": "x"}, "dataset.test_fraction must be in (0, 1)"),
    ({"name": "digits", "test_fraction": None}, "dataset.test_fraction must be in (0, 1)"),
    ({"name": "digits", "split_seed": -1}, "dataset.split_seed must be an integer in [0, 4294967295]"),
    ({"name": "digits", "split_seed": "x"}, "dataset.split_seed must be an integer"),
    ({"name": "moons", "n_samples": 2.5}, "dataset.n_samples must be an integer >= 1"),
    ({"name": "moons", "noise": "x"}, "dataset.noise must be a number >= 0"),
    ({"name": "blobs", "n_classes": 0}, "dataset.n_classes must be an integer >= 1"),
    ({"name": "npz", "path": ["x.npz"]}, "dataset.path must be a file path"),
])
def test_bad_dataset_values_are_one_line_errors(dataset, needle):
    with pytest.raises(WeightzooError) as e:
        spec(dataset=dataset)
    assert needle in str(e.value)


@pytest.mark.parametrize("over, needle", [
    ({"training": {"lr": 10**400}}, "training.lr must be a number"),
    ({"architecture": {"name": "resnet", "width_multiplier": 10**400}}, "width_multiplier must be a positive"),
    ({"dataset": {"name": "digits", "test_fraction": 10**30}}, "dataset.test_fraction must be in (0, 1)"),
    ({"random": {"samples": 1, "lr": {"uniform": [0, 10**400]}}}, "two finite numbers"),
])
def test_integers_beyond_a_float_are_refused_as_numbers(over, needle):
    with pytest.raises(WeightzooError) as e:
        spec(**over)
    assert needle in str(e.value)


def test_no_preset_or_family_builds_a_node_that_feeds_nothing(tmp_path):
    """Every preset's networks (a dry run builds each) and each family's variants: no node whose
    output reaches nothing (NetworkSpec refuses one, so a builder that made one would fail)."""
    from dataclasses import fields

    from zoo_builders import build_zoo
    from zoo_builders.architectures import ARCHITECTURES

    for name in list_presets():
        plan = build_zoo(name, tmp_path / name, dry_run=True, quiet=True)
        assert plan.populations and all(p.net.dead_nodes() == [] for p in plan.populations), name
    variants = {"resnet": [{"batchnorm": False}, {"depth": 14, "width_multiplier": 0.5}],
                "vgg": [{"batchnorm": False, "hidden": (8,), "dropout": 0.1}, {"convs_per_stage": 2}],
                "modelzoo-cnn": [{"size": "l"}], "transformer": [{"dropout": 0.1, "depth": 1}]}
    for family, cls in ARCHITECTURES.items():
        assert [f.name for f in fields(cls)]  # every family is a config dataclass
        for options in [{}, *variants.get(family, [])]:
            for shape in ((1, 28, 28), (1, 40)) if family != "siren" else ((1, 8, 8),):
                if family in ("modelzoo-cnn", "vgg", "cnn") and len(shape) == 2:
                    continue  # image families
                net = cls(**options).network_spec(shape, 10)
                assert net.dead_nodes() == [], (family, options, shape)
