"""Graph NetworkSpecs (format v2): JSON round trips, one clear error per bad graph, stable ids,
and chains expressed as graphs."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from zoo_helpers import mlp_spec, random_weights

from catalog import nodes as nd
from catalog.errors import ZooFormatError
from catalog.network import LayerSpec, NetworkSpec, population_forward


def small_resnet() -> NetworkSpec:
    """conv -> bn -> relu -> [conv -> bn] + skip -> relu -> pool -> linear, on 1x6x6."""
    return NetworkSpec("resnet", (1, 6, 6), nodes=(
        nd.Conv2d("conv1", ("input",), 1, 3, (3, 3), padding=1, bias=False),
        nd.BatchNorm("bn1", ("conv1",), 3),
        nd.Activation("relu1", ("bn1",), "relu"),
        nd.Conv2d("conv2", ("relu1",), 3, 3, (3, 3), padding=1),
        nd.BatchNorm("bn2", ("conv2",), 3),
        nd.Add("add", ("bn2", "relu1")),
        nd.Activation("relu2", ("add",), "relu"),
        nd.GlobalPool("pool", ("relu2",)),
        nd.Linear("fc", ("pool",), 3, 2)))


def graph_dict(**change) -> dict:
    d = small_resnet().to_dict()
    d.pop("params")
    for name, patch in change.items():
        node = next(n for n in d["nodes"] if n["name"] == name)
        node.update(patch)
    return d


def test_graph_round_trips_through_plain_json() -> None:
    spec = small_resnet()
    d = json.loads(json.dumps(spec.to_dict()))
    assert d["format"] == 2 and d["nodes"][0]["kernel_size"] == [3, 3]
    again = NetworkSpec.from_dict(d)
    assert again == spec and again.arch_id == spec.arch_id
    # parameters and buffers, in node order, named after their nodes
    assert [(p.name, p.shape, p.trainable) for p in spec.params][:6] == [
        ("conv1.weight", (3, 1, 3, 3), True), ("bn1.weight", (3,), True), ("bn1.bias", (3,), True),
        ("bn1.running_mean", (3,), False), ("bn1.running_var", (3,), False), ("conv2.weight", (3, 3, 3, 3), True)]
    assert spec.shapes["pool"] == (3,) and spec.n_outputs == 2 and not spec.is_chain


def test_defaults_are_omitted_from_the_stored_form() -> None:
    conv = small_resnet().to_dict()["nodes"][0]
    assert conv == {"kind": "conv2d", "name": "conv1", "inputs": ["input"], "in_channels": 1,
                    "out_channels": 3, "kernel_size": [3, 3], "padding": 1, "bias": False}


@pytest.mark.parametrize("change, message", [
    ({"add": {"inputs": ["bn2", "conv1"]}}, None),  # same shape: fine
    ({"fc": {"inputs": ["nowhere"]}}, "node 'fc' reads 'nowhere', which does not exist"),
    ({"conv1": {"inputs": ["relu2"]}}, "the nodes form a cycle: conv1 -> relu2 -> add -> bn2 -> conv2 -> relu1"),
    ({"conv2": {"inputs": ["pool"]}}, "the nodes form a cycle"),
    ({"bn1": {"kind": "groupnorm"}}, "unknown node kind 'groupnorm'; valid kinds: linear, conv1d, conv2d"),
    ({"fc": {"in_features": 4}}, "node 'fc': linear takes 4 features"),
    ({"bn1": {"num_features": "3"}}, "node 'bn1': num_features must be an integer"),
    ({"bn1": {"colour": "red"}}, "unknown keys ['colour']"),
])
def test_each_bad_graph_gets_one_clear_error(change, message) -> None:
    d = graph_dict(**change)
    if message is None:
        NetworkSpec.from_dict(d)
        return
    with pytest.raises(ZooFormatError) as e:
        NetworkSpec.from_dict(d)
    assert message in str(e.value)


@pytest.mark.parametrize("change, message", [
    ({"fc": {"out_features": 10**30}}, "node 'fc': out_features is about 1e+30, beyond 2**63 - 1"),
    ({"conv1": {"kernel_size": [10**20, 3]}}, "node 'conv1': kernel_size is 100000000000000000000, beyond 2**63 - 1"),
    ({"conv2": {"stride": 10**20}}, "node 'conv2': stride is 100000000000000000000, beyond 2**63 - 1"),
    ({"conv2": {"stride": 1e300}}, "node 'conv2': stride is about 1e+300, beyond 2**63 - 1"),
    ({"conv1": {"padding": 2**62}}, "node 'conv1': its output would have about 1e+38 entries"),
    ({"fc": {"in_features": 2**40, "out_features": 2**40}},
     "node 'fc': its weight would have 1208925819614629174706176 entries (1099511627776 x 1099511627776), more than"),
    ({"bn1": {"eps": 10**400}}, "node 'bn1': eps must be a finite number, got about 1e+400"),
    ({"relu1": {"omega": -10**400}}, "node 'relu1': omega must be a finite number, got about -1e+400"),
])
def test_huge_integers_get_one_clear_error(change, message) -> None:
    """Before, these specs were accepted (and torch failed with 'Overflow when unpacking long'
    when the network was built or first computed) or float fields raised OverflowError."""
    with pytest.raises(ZooFormatError) as e:
        NetworkSpec.from_dict(graph_dict(**change))
    assert message in str(e.value)


@pytest.mark.parametrize("pool, message", [
    ({"kernel_size": [2, 2], "stride": 2**31}, "stride is 2147483648, beyond 2**31 - 1"),
    ({"kernel_size": [2**40, 2**40], "padding": 2**39}, "kernel_size is 1099511627776, beyond 2**31 - 1"),
    ({"kernel_size": [2, 2], "padding": 2}, "padding 2 is more than half the kernel [2, 2]"),
])
def test_pools_torch_cannot_run_are_refused(pool, message) -> None:
    """torch's pooling takes C ints and pads at most half a window: these failed at the first forward."""
    with pytest.raises(ZooFormatError) as e:
        nd.MaxPool("pool", ("input",), **pool)
    assert message in str(e.value)
    nd.MaxPool("pool", ("input",), (3, 3), stride=2**31 - 1, padding=1)  # the limits themselves are fine


def test_a_network_of_more_than_int64_parameters_is_refused() -> None:
    n_in, wide = 2**24, 2**38  # each weight 2**62 entries (fine alone), the two together beyond 2**63 - 1
    with pytest.raises(ZooFormatError, match=r"the network would have 9223372036854775808 parameters, more than"):
        NetworkSpec("x", (n_in,), nodes=(nd.Linear("a", ("input",), n_in, wide, bias=False),
                                         nd.Linear("b", ("a",), wide, n_in, bias=False)))
    with pytest.raises(ZooFormatError, match=r"layer 'l.weight': out_features is about 1e\+30, beyond 2\*\*63 - 1"):
        LayerSpec("linear", 4, 10**30, "l.weight")
    with pytest.raises(ZooFormatError, match=r"layer 'l.weight': kernel_size is about 1e\+200, beyond"):
        LayerSpec("conv2d", 1, 2, "l.weight", kernel_size=(3, 10**200))


def test_add_of_mismatched_shapes_is_refused() -> None:
    d = graph_dict(add={"inputs": ["bn2", "input"]})
    with pytest.raises(ZooFormatError,
                       match=r"node 'add': add needs inputs of one shape, got 'bn2' \[3, 6, 6\], 'input' \[1, 6, 6\]"):
        NetworkSpec.from_dict(d)


def test_a_node_listed_before_its_input_is_refused() -> None:
    d = graph_dict()
    d["nodes"][0], d["nodes"][1] = d["nodes"][1], d["nodes"][0]
    with pytest.raises(ZooFormatError, match="node 'bn1' reads 'conv1', which comes after it"):
        NetworkSpec.from_dict(d)


def test_output_must_be_a_vector_and_names_unique() -> None:
    with pytest.raises(ZooFormatError, match="must give a vector"):
        NetworkSpec("x", (1, 4, 4), nodes=(nd.Conv2d("c", ("input",), 1, 2, (3, 3)),))
    with pytest.raises(ZooFormatError, match="two nodes are named 'c'"):
        NetworkSpec("x", (4,), nodes=(nd.Linear("c", ("input",), 4, 4), nd.Linear("c", ("c",), 4, 2)))
    with pytest.raises(ZooFormatError, match="not 'input'"):
        nd.Linear("input", ("input",), 4, 4)


def _with_dead_nodes(*dead: nd.Node) -> dict:
    """``small_resnet``'s dict with ``dead`` inserted before its last node (which stays the output)."""
    d = graph_dict()
    d["nodes"][-1:-1] = [n.to_dict() for n in dead]
    return d


def test_a_node_that_feeds_nothing_is_refused_where_a_spec_enters(tmp_path) -> None:
    """Before, a node whose output reaches no output was accepted: its parameters were counted and
    stored, and could never train. New specs refuse it; a zoo that already holds one still opens."""
    from catalog import open_zoo
    from catalog.writer import ZooWriter

    one = _with_dead_nodes(nd.Linear("dead", ("pool",), 3, 3))
    message = "node 'dead' feeds nothing that reaches the network's output (the last node, 'fc'); remove it"
    with pytest.raises(ZooFormatError) as e:
        NetworkSpec.from_dict(one, new=True)  # zoo import --arch, an import's architectures.jsonl
    assert str(e.value) == message
    with pytest.raises(ZooFormatError, match=re.escape(message)):  # built in Python (every family builder)
        NetworkSpec("resnet", (1, 6, 6), nodes=tuple(nd.node_from_dict(n, "n") for n in one["nodes"]))
    two = _with_dead_nodes(nd.Activation("a", ("relu1",), "tanh"), nd.Linear("b", ("pool",), 3, 3))
    with pytest.raises(ZooFormatError, match="nodes 'a', 'b' feed nothing that reaches .*; remove them"):
        NetworkSpec.from_dict(two, new=True)
    assert NetworkSpec.from_dict(graph_dict(), new=True).dead_nodes() == []
    assert mlp_spec().dead_nodes() == [] and mlp_spec().as_graph().dead_nodes() == []

    # A zoo written before the check (read back from its zoo.json) still opens, loads and verifies.
    stored = NetworkSpec.from_dict(one)
    assert stored.dead_nodes() == ["dead"]
    with ZooWriter(tmp_path, "old", {"name": "old"}) as w:
        arch = w.add_architecture(stored)
        w.write_part(arch, random_weights(stored, 2, seed=0),
                     [{"model_id": f"m{i}", "run_id": f"r{i}", "checkpoint": 0, "status": "ok"} for i in range(2)])
        w.finish()
    zoo = open_zoo(tmp_path)
    assert zoo.verify().ok and zoo.select().modules()[0](torch.rand(2, 1, 6, 6)).shape == (2, 2)


def test_params_edited_in_the_manifest_are_refused() -> None:
    d = small_resnet().to_dict()
    d["params"][0]["shape"] = [9, 9]
    with pytest.raises(ZooFormatError, match="disagree with its nodes"):
        NetworkSpec.from_dict(d)


def test_graph_ids_ignore_defaults_meta_and_new_defaulted_fields() -> None:
    spec = small_resnet()
    explicit = graph_dict(conv2={"stride": 1, "groups": 1, "bias": True}, bn1={"eps": 1e-5})
    assert NetworkSpec.from_dict(explicit).arch_id == spec.arch_id
    assert NetworkSpec("resnet", (1, 6, 6), nodes=spec.nodes, meta={"note": 1}).arch_id == spec.arch_id
    assert spec.arch_id == "resnet-289041851d"  # pinned: the canonical form must not drift

    @dataclass(frozen=True)
    class Conv2dWithDilation(nd.Conv2d):  # a field added later, at its default
        dilation: int = 1
        KIND: ClassVar[str] = "conv2d"

    old = spec.nodes[3]
    newer = Conv2dWithDilation(old.name, old.inputs, old.in_channels, old.out_channels, old.kernel_size,
                               padding=old.padding)
    nodes = list(spec.nodes)
    nodes[3] = newer
    assert NetworkSpec("resnet", (1, 6, 6), nodes=tuple(nodes)).arch_id == spec.arch_id
    # a field that changes the computation changes the id
    assert NetworkSpec.from_dict(graph_dict(bn1={"eps": 1e-3})).arch_id != spec.arch_id


def test_chain_as_graph_computes_the_same() -> None:
    chain = NetworkSpec("cnn", (1, 6, 6), (
        LayerSpec("conv2d", 1, 4, "layers.0.weight", "layers.0.bias", kernel_size=(3, 3), stride=2,
                  padding=1, activation="tanh", pool="global_avg"),
        LayerSpec("linear", 4, 3, "layers.1.weight", "layers.1.bias")))
    for spec in (chain, mlp_spec(hidden=5, activation="relu")):
        graph = spec.as_graph()
        assert not graph.is_chain and graph.param_names == spec.param_names
        params = random_weights(spec, 3, seed=1)
        x = torch.randn(5, *spec.input_shape)
        torch.testing.assert_close(population_forward(graph, params, x), population_forward(spec, params, x))


def test_chain_only_code_gives_a_clear_error_on_graphs() -> None:
    from weightspace.models.registry import build_metanetwork

    spec = small_resnet()
    for name in ("dws", "nfn"):
        with pytest.raises(ZooFormatError, match=f"metanetwork '{name}' reads layer chains"):
            build_metanetwork(name, spec, 1)
    for name in ("statnn", "mlp"):  # these read parameter tensors only
        model = build_metanetwork(name, spec, 1)
        assert model(random_weights(spec, 4, seed=0)).shape == (4, 1)
    with pytest.raises(ZooFormatError, match="layer_widths reads layer chains"):
        spec.layer_widths  # noqa: B018
