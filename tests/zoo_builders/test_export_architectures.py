"""zoo export -> zoo import of any architecture: the exported folder names each model's
architecture (architectures.jsonl), so a graph zoo (ResNet with batch norm) and a chain zoo whose
activations differ come back with the same architectures, the same bytes and the same functions,
and a second export is byte-identical to the first. Bad architecture tables are refused."""

from __future__ import annotations

import filecmp
import json
import shutil

import pytest
import torch
from analyze_helpers import TINY_RESNET

from catalog.network import NetworkSpec
from catalog.zoo import open_zoo
from zoo_builders.importers import SourceError, export_statedict, import_statedicts
from zoo_builders.importers.statedict import ARCHITECTURES_TABLE

#: Two activations of one layout: from the tensors alone, both would import as relu.
TWO_ACTIVATIONS = {
    "name": "two-acts",
    "dataset": {"name": "digits", "test_fraction": 0.25},
    "architecture": {"name": "mlp", "hidden": [8]},
    "training": {"epochs": 1, "batch_size": 64, "optimizer": "adam", "lr": 0.01, "checkpoints": [1]},
    "grid": {"activation": ["relu", "tanh"], "seed": [0]},
}


def _same_tree(a, b) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    return not mismatch and not errors and all(_same_tree(a / d, b / d) for d in cmp.common_dirs)


@pytest.mark.parametrize("spec", [TINY_RESNET, TWO_ACTIVATIONS], ids=["resnet-bn", "relu-and-tanh"])
def test_export_import_export_round_trip(spec, zoo_factory, tmp_path):
    zoo = zoo_factory(spec)
    first, imported, second = tmp_path / "first", tmp_path / "zoo", tmp_path / "second"
    export_statedict(zoo, first, quiet=True)
    import_statedicts(first, imported, quiet=True)
    export_statedict(imported, second, quiet=True)
    assert _same_tree(first, second)  # import -> export: the same bytes, architectures included
    files = [json.loads(line)["file"] for line in (first / "metadata.jsonl").read_text().splitlines()]
    assert files == sorted(files)  # not the zoo's row order, which depends on how the zoo was made

    orig, back = open_zoo(zoo).select(), open_zoo(imported).select()
    by_run = {r: i for i, r in enumerate(back.column("run_id"))}
    order = [by_run[r] for r in orig.column("run_id")]
    assert [back.column("arch_id")[i] for i in order] == orig.column("arch_id")
    assert [back.column("sha256")[i] for i in order] == orig.column("sha256")
    assert "source_arch_id" not in back.columns  # the architecture reference is no column
    x = torch.rand(5, 64)
    modules = back.modules()
    for i, module in enumerate(orig.modules()):  # the same functions (tanh stays tanh)
        module.eval(), modules[order[i]].eval()
        assert torch.equal(module(x), modules[order[i]](x))


def test_bad_architecture_tables_are_refused(zoo_factory, tmp_path):
    good = tmp_path / "good"
    export_statedict(zoo_factory(TWO_ACTIVATIONS), good, quiet=True)
    lines = (good / ARCHITECTURES_TABLE).read_text().splitlines()
    spec = json.loads(lines[0])

    def attempt(name: str, table: str | None = None, metadata=None) -> str:
        src = tmp_path / name
        shutil.copytree(good, src)
        if table is not None:
            (src / ARCHITECTURES_TABLE).write_text(table)
        if metadata is not None:
            (src / "metadata.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metadata))
        with pytest.raises(SourceError) as e:
            import_statedicts(src, tmp_path / f"{name}-zoo", quiet=True)
        assert not (tmp_path / f"{name}-zoo").exists()  # refused before anything is written
        return str(e.value)

    assert "line 1 is not valid JSON" in attempt("not-json", "{oops\n")
    assert '"spec"' in attempt("no-spec", json.dumps({"arch_id": "a"}) + "\n")
    assert "given twice" in attempt("twice", lines[0] + "\n" + lines[0] + "\n")
    broken = {**spec, "spec": {**spec["spec"], "layers": [{"kind": "linear", "in_features": -3}]}}
    assert "not a valid spec" in attempt("invalid", json.dumps(broken) + "\n")
    # A graph with a node that feeds nothing (the chain as a graph, plus one): a new spec, refused.
    graph = NetworkSpec.from_dict(spec["spec"]).as_graph().to_dict()
    graph.pop("params")
    last = graph["nodes"][-1]
    graph["nodes"].insert(-1, {**last, "name": "dead"})
    assert "node 'dead' feeds nothing" in attempt("dead", json.dumps({**spec, "spec": graph}) + "\n")
    rows = [json.loads(line) for line in (good / "metadata.jsonl").read_text().splitlines()]
    assert "is not in architectures.jsonl" in attempt("unknown", metadata=[{**rows[0], "arch_id": "nope"}, *rows[1:]])
    # A valid architecture the tensors do not fit: the ResNet's, named for the MLPs.
    resnet = tmp_path / "resnet"
    export_statedict(zoo_factory(TINY_RESNET), resnet, quiet=True)
    other = {**json.loads((resnet / ARCHITECTURES_TABLE).read_text().splitlines()[0]), "arch_id": spec["arch_id"]}
    assert "do not match the architecture's parameters" in attempt(
        "mismatch", json.dumps(other) + "\n", [{**r, "arch_id": spec["arch_id"]} for r in rows])
