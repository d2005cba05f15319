"""Heterogeneous build specs (``families:``) and the ``wildpark-digits`` preset built from them.

A spec with several families trains each family's runs exactly as a spec of that family alone
would (same run ids, same weights), writes every part with every family's columns (null where a
row's family has no such field, so 🤗 datasets reads all parts as one table), and resumes after an
interruption without duplicating or retraining a run.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from catalog import open_zoo
from catalog.errors import WeightzooError
from catalog.format import sha256_file
from zoo_builders import build as build_mod
from zoo_builders.build import build_zoo, hparam_schema, row_schema, varying_axes, with_columns
from zoo_builders.spec import BuildSpec

#: Two families on digits: 4 plain CNNs (2 kernel sizes: 2 architectures) and 2 ResNet-8s
#: (with and without batch norm: 2 architectures) -> 6 runs, 4 populations, 2 checkpoints each.
MIXED = {
    "name": "tiny-wildpark",
    "dataset": {"name": "digits", "test_fraction": 0.25},
    "training": {"epochs": 2, "batch_size": 128, "optimizer": "adam", "checkpoints": [1, 2]},
    "families": [
        {"architecture": {"name": "cnn", "channels": [4, 4]},
         "grid": {"kernel_size": [3, 5], "lr": [0.003, 0.03]}},
        {"architecture": {"name": "resnet", "width_multiplier": 0.25},
         "training": {"lr": 0.01},
         "grid": {"batchnorm": [True, False]}},
    ],
}


def _one_family(i: int) -> dict:
    """The spec of ``MIXED``'s family ``i`` alone (the shared training merged as a spec does)."""
    fam = MIXED["families"][i]
    return {"name": f"alone-{i}", "dataset": MIXED["dataset"], "architecture": fam["architecture"],
            "training": {**MIXED["training"], **fam.get("training", {})}, "grid": fam["grid"]}


def _shas(root: Path) -> dict[str, str]:
    return {r["model_id"]: r["sha256"] for r in open_zoo(root).table.to_pylist()}


@pytest.fixture(scope="module")
def mixed_zoo(zoo_factory) -> Path:
    return zoo_factory(copy.deepcopy(MIXED))


# ================================================================================ parsing
def test_families_expand_to_each_familys_runs_with_the_same_ids() -> None:
    spec = BuildSpec.from_dict(copy.deepcopy(MIXED))
    assert spec.arch_names == ["cnn", "resnet"]
    runs = spec.runs()
    assert [r.arch_name for r in runs] == ["cnn"] * 4 + ["resnet"] * 2
    alone = [r for i in (0, 1) for r in BuildSpec.from_dict(_one_family(i)).runs()]
    assert [r.run_id for r in runs] == [r.run_id for r in alone]
    # the family's training override applies to that family only
    assert {r.training.lr for r in runs[4:]} == {0.01}
    assert {r.training.lr for r in runs[:4]} == {0.003, 0.03}
    # the plan lists the axes of both families (a column of one family varies against null)
    assert {"kernel_size", "batchnorm", "lr", "architecture"} <= set(varying_axes(runs))


@pytest.mark.parametrize("change, needle", [
    (lambda d: d.update(architecture={"name": "cnn"}), "no top-level ['architecture']"),
    (lambda d: d.update(grid={"lr": [0.1]}), "no top-level ['grid']"),
    (lambda d: d.update(families=[]), "non-empty list"),
    (lambda d: d["families"].append({"grid": {"lr": [0.1]}}), "families[2] must be a mapping with an 'architecture'"),
    (lambda d: d["families"][1].update(axes={}), "families[1]: unknown key(s) ['axes']"),
    # kernel_size is a cnn field, not a resnet one: the error names the family
    (lambda d: d["families"][1]["grid"].update(kernel_size=[3]), "families[1] (resnet): unknown axis 'kernel_size'"),
    (lambda d: d["families"][0].update(training={"epochs": 1}), "families[0] (cnn): training.checkpoints [2]"),
    (lambda d: d["families"].append(copy.deepcopy(d["families"][0])), "appear in more than one family"),
])
def test_bad_family_specs_get_one_clear_error(change, needle) -> None:
    d = copy.deepcopy(MIXED)
    change(d)
    with pytest.raises(WeightzooError) as e:
        BuildSpec.from_dict(d)
    assert needle in str(e.value)


def test_wildpark_preset_is_a_heterogeneous_zoo_of_over_1000_runs() -> None:
    spec = BuildSpec.load("wildpark-digits")
    runs = spec.runs()
    assert len(runs) >= 1000 and len({r.run_id for r in runs}) == len(runs)
    assert spec.arch_names == ["cnn", "resnet"]
    cnn = [r.arch for r in runs if r.arch_name == "cnn"]
    res = [r.arch for r in runs if r.arch_name == "resnet"]
    # plain CNNs of 2-4 layers, several widths and two kernel sizes; ResNets of two depths and
    # widths, with and without batch norm: depth, width, kernel size and residual use all vary
    assert {len(a.channels) for a in cnn} == {2, 3, 4}
    assert len({max(a.channels) for a in cnn}) >= 2 and {a.kernel_size for a in cnn} == {3, 5}
    assert {a.depth for a in res} == {8, 14} and len({a.width_multiplier for a in res}) == 2
    assert {a.batchnorm for a in res} == {True, False}
    assert len(runs[0].training.checkpoints) >= 3
    lrs = [r.training.lr for r in runs]
    assert max(lrs) / min(lrs) > 30  # a wide lr range: accuracies from chance to high


def tiny_wildpark() -> dict:
    """The ``wildpark-digits`` preset cut down: 3 runs per family, 1 epoch."""
    d = BuildSpec.load("wildpark-digits").to_dict()
    d["name"] = "tiny-wildpark-preset"
    d["training"].update(epochs=1, checkpoints=[0, 1])
    for fam in d["families"]:
        fam["random"]["samples"] = 3
    return d


# ================================================================================ building
@pytest.mark.slow
def test_tiny_wildpark_preset_builds(tmp_path: Path) -> None:
    plan = build_zoo(tiny_wildpark(), tmp_path / "wp", quiet=True)
    zoo = open_zoo(tmp_path / "wp")
    assert zoo.verify().ok and zoo.table.num_rows == 6 * 2
    assert len(zoo.manifest.architectures) == len(plan.populations)
    assert sorted(set(zoo.table.column("architecture").to_pylist())) == ["cnn", "resnet"]
    trained = zoo.select(where="checkpoint = 1 AND status = 'ok'")
    assert max(trained.column("test_acc")) > 0.2  # one epoch already learns something


@pytest.mark.slow
def test_mixed_zoo_rows_carry_each_familys_columns(mixed_zoo: Path) -> None:
    zoo = open_zoo(mixed_zoo)
    assert zoo.verify().ok
    assert zoo.table.num_rows == 12 and len(zoo.manifest.architectures) == 4
    rows = zoo.table.to_pylist()
    for r in rows:
        if r["architecture"] == "cnn":
            assert r["kernel_size"] in (3, 5) and r["batchnorm"] is None and r["depth"] is None
        else:
            assert r["architecture"] == "resnet" and r["kernel_size"] is None
            assert r["depth"] == 8 and isinstance(r["batchnorm"], bool)
    res = zoo.sql("SELECT count(*) AS n FROM models WHERE batchnorm AND architecture = 'resnet'").table
    assert res.column("n").to_pylist() == [2]  # 1 run x 2 checkpoints


@pytest.mark.slow
def test_mixed_zoo_loads_with_datasets_as_one_table(mixed_zoo: Path, tmp_path: Path) -> None:
    """Every part has every family's columns (null in the other family's rows), so 🤗 datasets
    reads the card's one config. With each family's own columns only, load_dataset failed:
    "column names don't match"."""
    import datasets

    zoo = open_zoo(mixed_zoo)
    schemas = [pq.read_schema(p) for p in zoo.part_paths]
    assert len(schemas) == 4 and all(s.equals(schemas[0]) for s in schemas)
    ds = datasets.load_dataset(str(mixed_zoo), split="train", cache_dir=str(tmp_path / "ds"))
    assert ds.num_rows == zoo.table.num_rows == 12 and ds.column_names == zoo.table.column_names
    assert sorted(ds["model_id"]) == sorted(zoo.table.column("model_id").to_pylist())
    by_id = {r["model_id"]: r for r in ds}
    for r in zoo.table.to_pylist():
        assert by_id[r["model_id"]]["kernel_size"] == r["kernel_size"]
        assert by_id[r["model_id"]]["batchnorm"] == r["batchnorm"]


def test_every_part_gets_the_zoos_hyperparameter_columns() -> None:
    """The columns come from every run of the spec (a resumed build writes the same ones), typed
    over all values; a one-family zoo's rows keep their own columns, order and types."""
    spec = BuildSpec.from_dict(copy.deepcopy(MIXED))
    columns = hparam_schema(spec.runs())
    assert columns.field("kernel_size").type == pa.int64() and columns.field("batchnorm").type == pa.bool_()
    assert columns.field("channels").type == pa.list_(pa.int64()) and columns.field("lr").type == pa.float64()
    resnet = spec.runs()[-1]
    row = {"model_id": "m", "run_id": resnet.run_id, "checkpoint": 0, "status": "ok", **resnet.hparams(),
           "test_acc": 0.5}
    (full,), schema = with_columns([row], columns)
    assert list(full) == ["model_id", "run_id", "checkpoint", "status", *columns.names, "test_acc"]
    assert full["kernel_size"] is None and full["batchnorm"] == row["batchnorm"]
    assert schema.field("kernel_size").type == pa.int64()
    alone = BuildSpec.from_dict(_one_family(1)).runs()
    (same,), own = with_columns([row], hparam_schema(alone))
    assert list(same) == list(row) and same == row and own == row_schema([row])


@pytest.mark.slow
def test_mixed_zoo_member_equals_its_run_built_alone(mixed_zoo: Path, tmp_path: Path) -> None:
    ref: dict[str, str] = {}
    for i in (0, 1):  # the same populations from one-family specs: the same bytes
        out = tmp_path / f"family-{i}"
        build_zoo(_one_family(i), out, quiet=True)
        ref.update(_shas(out))
    assert _shas(mixed_zoo) == ref
    # every cnn run trained alone (populations of one) ends where its member did (to float
    # rounding, as for any population: tests/zoo_builders/test_builder_train.py)
    out = tmp_path / "alone"
    build_zoo(_one_family(0), out, quiet=True, max_population=1)
    alone, mixed = open_zoo(out).select(), open_zoo(mixed_zoo).select(where="architecture = 'cnn'")
    a = dict(zip(alone.column("model_id"), alone.state_dicts()))
    m = dict(zip(mixed.column("model_id"), mixed.state_dicts()))
    assert sorted(a) == sorted(m) and len(m) == 8
    for model_id, sd in m.items():
        for name, t in sd.items():
            assert torch.allclose(t, a[model_id][name], rtol=1e-5, atol=1e-6), (model_id, name)


def test_mixed_zoo_modules_reproduce_test_accuracy(mixed_zoo: Path) -> None:
    from zoo_builders import load_zoo_dataset

    zoo = open_zoo(mixed_zoo)
    data = load_zoo_dataset(zoo)
    sel = zoo.select(where="checkpoint = 2")
    assert len(sel.by_arch()) == 4
    n = len(data.y_test)
    for module, recorded in zip(sel.modules(), sel.column("test_acc")):
        with torch.no_grad():
            correct = int((module(data.x_test).argmax(-1) == data.y_test).sum())
        assert correct == round(recorded * n)


@pytest.mark.slow
def test_mixed_build_resumes_after_a_crash_without_duplicates(mixed_zoo: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "crashed"
    real = build_mod.commit_population
    committed: list[str] = []

    def crash_after_two(writer, pop, trained):  # the build dies after its second population
        if len(committed) == 2:
            raise KeyboardInterrupt
        real(writer, pop, trained)
        committed.append(pop.net.family)

    monkeypatch.setattr(build_mod, "commit_population", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        build_zoo(copy.deepcopy(MIXED), out, quiet=True)
    monkeypatch.setattr(build_mod, "commit_population", real)
    parts = {p: sha256_file(out / p) for p in (f.path for f in open_zoo(out).manifest.files if f.kind == "part")}
    assert len(parts) == 2
    plan = build_zoo(copy.deepcopy(MIXED), out, quiet=True)
    assert plan.skipped_runs == 4 and sum(len(p.runs) for p in plan.populations) == 2  # the resnets
    assert _shas(out) == _shas(mixed_zoo)  # 12 rows, no duplicates, same weights
    assert all(sha256_file(out / p) == s for p, s in parts.items())  # finished parts untouched
    again = build_zoo(copy.deepcopy(MIXED), out, quiet=True)
    assert again.populations == [] and again.skipped_runs == 6


def test_mixed_zoo_card_names_the_families(mixed_zoo: Path) -> None:
    card = (mixed_zoo / "README.md").read_text()
    assert "- families: `cnn`, `resnet`" in card and "architecture: `?`" not in card
