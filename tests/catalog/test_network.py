"""catalog.network: NetworkSpec round trips, ids, summaries and execution by hand."""

from __future__ import annotations

import json
import re

import pytest
import torch
from zoo_helpers import mlp_spec, random_weights

from catalog.errors import WeightzooError, ZooFormatError
from catalog.network import LayerSpec, NetworkSpec, build_module, population_forward


def test_spec_round_trips_through_plain_json() -> None:
    spec = mlp_spec(hidden=5, activation="tanh")
    again = NetworkSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.arch_id == spec.arch_id


def test_arch_id_differs_when_only_the_activation_differs() -> None:
    relu, tanh = mlp_spec(activation="relu"), mlp_spec(activation="tanh")
    assert [p.shape for p in relu.params] == [p.shape for p in tanh.params]
    assert relu.arch_id != tanh.arch_id


def test_summary_tells_same_shape_architectures_apart() -> None:
    # 4 -> 8 -> 3: 4*8 + 8 + 8*3 + 3 = 67 parameters.
    assert mlp_spec(activation="relu").summary() == "mlp 4-8-3, relu, 67 params"
    assert mlp_spec(activation="tanh").summary() == "mlp 4-8-3, tanh, 67 params"


def test_summary_of_a_conv_net() -> None:
    # conv 1->4, 3x3, stride 2 (4*1*9 + 4 = 40) then linear 4->2 (8 + 2 = 10): 50 parameters.
    spec = NetworkSpec("cnn", (1, 8, 8), (
        LayerSpec("conv2d", 1, 4, "c.weight", "c.bias", kernel_size=(3, 3), stride=2,
                  activation="relu", pool="global_avg"),
        LayerSpec("linear", 4, 2, "l.weight", "l.bias")))
    assert spec.summary() == "cnn 1-4-2, conv2d k3x3 s2, relu, global_avg pool, 50 params"


def test_params_edited_in_the_manifest_are_refused() -> None:
    d = mlp_spec().to_dict()
    d["params"][0]["shape"] = [9, 9]
    with pytest.raises(ZooFormatError, match="disagree with its layers"):
        NetworkSpec.from_dict(d)


def test_mismatched_layers_are_refused() -> None:
    with pytest.raises(ZooFormatError, match="takes 5 features but the layer before gives 8"):
        NetworkSpec("mlp", (4,), (LayerSpec("linear", 4, 8, "a.weight"), LayerSpec("linear", 5, 2, "b.weight")))


#: A conv chain in its zoo.json form: conv 1->4 3x3 (pooled), then linear 4->10.
CHAIN = {"family": "cnn", "input_shape": [1, 8, 8], "layers": [
    {"kind": "conv2d", "in_features": 1, "out_features": 4, "weight": "c.weight", "bias": "c.bias",
     "kernel_size": [3, 3], "stride": 2, "padding": 1, "pool": "global_avg", "activation": "relu"},
    {"kind": "linear", "in_features": 4, "out_features": 10, "weight": "l.weight", "bias": "l.bias"}]}


def _chain(**edits: object) -> dict:
    """CHAIN with ``key=value`` edits: ``input_shape=...`` or ``layer0__stride=...`` (``DROP`` removes)."""
    d = json.loads(json.dumps(CHAIN))
    for key, value in edits.items():
        target, key = (d["layers"][int(key[5])], key[8:]) if key[:5] == "layer" and key[6:8] == "__" else (d, key)
        if value is DROP:
            del target[key]
        else:
            target[key] = value
    return d


DROP = object()


@pytest.mark.parametrize("edits, needle", [
    ({"layer0__stride": 0}, "stride must be an integer >= 1, got 0"),
    ({"layer0__stride": "2"}, "stride must be an integer >= 1, got '2'"),
    ({"layer0__stride": 1.5}, "stride must be an integer >= 1"),
    ({"layer0__padding": -3}, "padding must be an integer >= 0, got -3"),
    ({"layer0__in_features": "1"}, "in_features must be an integer >= 1"),
    ({"layer1__out_features": -10}, "out_features must be an integer >= 1"),
    ({"layer1__out_features": True}, "out_features must be an integer >= 1"),
    ({"layer0__kernel_size": ["3", "3"]}, "kernel_size must be a list of integers >= 1"),
    ({"layer0__kernel_size": [0, 3]}, "kernel_size must be a list of integers >= 1"),
    ({"layer0__kernel_size": "33"}, "kernel_size must be a list of integers >= 1"),
    ({"layer0__kernel_size": 3}, "kernel_size must be a list of integers >= 1"),
    ({"layer0__omega": "x"}, "omega must be a finite number, got 'x'"),
    ({"layer0__omega": float("nan")}, "omega must be a finite number"),
    ({"layer0__activation": 5}, "unknown activation 5"),
    ({"layer0__pool": ["x"]}, "unknown pool"),
    ({"layer0__kind": ["x"]}, "unknown layer kind"),
    ({"layer0__weight": 5}, "weight must be a parameter name"),
    ({"layer0__bias": 5}, "bias must be a parameter name or null"),
    ({"layer0__strides": 2}, "unknown keys ['strides']"),
    ({"layer0__weight": DROP}, "lacks weight"),
    ({"input_shape": "64"}, "input_shape must be a list of positive integers, got '64'"),
    ({"input_shape": [1, "8", 8]}, "input_shape must be a list of positive integers"),
    ({"input_shape": [1, 0, 8]}, "input_shape must be a list of positive integers"),
    ({"meta": "x"}, "meta must be an object"),
    ({"family": 5}, "family must be a string"),
    ({"dtype": ["float32"]}, "unknown dtype"),
    ({"layers": "abc"}, "layers must be a non-empty list"),
    ({"layers": []}, "layers must be a non-empty list"),
    ({"layers": ["x"]}, "layers[0] must be an object"),
    ({"layers": DROP}, "lacks 'layers'"),
    ({"params": "x"}, "malformed NetworkSpec params"),
    ({"params": [{"shape": [4]}]}, "malformed NetworkSpec params"),
])
def test_bad_chain_fields_are_one_line_errors(edits: dict, needle: str) -> None:
    with pytest.raises(ZooFormatError) as e:
        NetworkSpec.from_dict(_chain(**edits))
    assert needle in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("edits, needle", [
    ({"input_shape": [3, 8, 8]}, "layer 'c.weight' (conv2d) takes [C, H, W] maps of 1 channels but the input "
                                 "(input_shape [3, 8, 8]) gives shape [3, 8, 8]; make input_shape a [C, H, W] map "
                                 "with C = 1"),
    ({"input_shape": [1, 40]}, "layer 'c.weight' (conv2d) takes [C, H, W] maps of 1 channels but the input "
                               "(input_shape [1, 40]) gives shape [1, 40]"),
    ({"input_shape": [1, 2, 2], "layer0__padding": 0, "layer0__kernel_size": [3, 3]},
     "layer 'c.weight': the kernel [3, 3] (padding 0) does not fit the [2, 2] map of the input"),
    ({"layer0__pool": "none"}, "layer 'l.weight' (linear) takes 4 features but layer 'c.weight' (output shape "
                               "[4, 4, 4]) gives 64"),
    ({"layers": [CHAIN["layers"][0]]}, None),  # a pooled conv as the output: a vector
    ({"layers": [{**CHAIN["layers"][0], "pool": "none"}]},
     "the last layer 'c.weight' gives a map of shape [4, 4, 4]; the output must be a vector: give it pool: global_avg"),
    ({"input_shape": [4], "layers": [CHAIN["layers"][1], {**CHAIN["layers"][0], "in_features": 10}]},
     "layer 'c.weight' (conv2d) takes [C, H, W] maps of 10 channels but layer 'l.weight' (output shape [10]) "
     "gives shape [10]; a convolution cannot follow a linear or pooled layer"),
])
def test_chain_layers_are_checked_against_the_input_shape(edits: dict, needle: str | None) -> None:
    """The first layer against input_shape, then every layer against what it reads. A chain whose
    first layer did not fit its input was stored (an import with --arch wrote a zoo that verified)
    and failed in torch whenever it computed."""
    if needle is None:
        NetworkSpec.from_dict(_chain(**edits))
        return
    with pytest.raises(ZooFormatError) as e:
        NetworkSpec.from_dict(_chain(**edits))
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_an_mlp_whose_first_layer_does_not_fit_the_input_is_refused() -> None:
    d = mlp_spec(n_in=64).to_dict()
    d["input_shape"] = [1, 8, 9]
    with pytest.raises(ZooFormatError, match=re.escape(
            "layer 'layers.0.weight' (linear) takes 64 features but the input (input_shape [1, 8, 9]) gives 72; "
            "make input_shape [64] (or any shape of 64 values) or in_features 72")):
        NetworkSpec.from_dict(d)
    d["input_shape"] = [1, 8, 8]  # any shape of 64 values: a linear first layer flattens it
    assert NetworkSpec.from_dict(d).input_shape == (1, 8, 8)


def test_chain_checks_keep_stored_values_and_ids() -> None:
    spec = NetworkSpec.from_dict(CHAIN)
    assert spec.to_dict()["layers"][0]["stride"] == 2 and spec.n_params == 4 * 9 + 4 + 40 + 10
    # an omega stored as an integer stays one: the dict an arch_id hashes is unchanged
    d = _chain(layer0__omega=30)
    assert NetworkSpec.from_dict(d).to_dict()["layers"][0]["omega"] == 30
    assert NetworkSpec.from_dict(d).arch_id == NetworkSpec.from_dict(d).arch_id != spec.arch_id
    # integral floats are integers, as for graph nodes
    again = NetworkSpec.from_dict(_chain(layer0__stride=2.0, layer1__out_features=10.0))
    assert again.arch_id == spec.arch_id and type(again.layers[1].out_features) is int


def test_population_forward_equals_each_module_alone() -> None:
    spec = mlp_spec(hidden=6, activation="tanh")
    params = random_weights(spec, 3, seed=0)
    x = torch.randn(7, 4)
    out = population_forward(spec, params, x)  # [3, 7, 3]
    for i in range(3):
        module = build_module(spec, {k: v[i] for k, v in params.items()})
        torch.testing.assert_close(out[i], module(x))


@pytest.mark.parametrize("make_x, needle", [
    (lambda x: torch.randn(7, 5), "x has shape [7, 5]"),                                # another input size
    (lambda x: x.unsqueeze(0).expand(2, 7, 4), "x has shape [2, 7, 4]"),               # 2 batches for 3 members
    (lambda x: x.reshape(1, 1, 7, 4), "x has shape [1, 1, 7, 4]"),                      # one dimension too many
    (lambda x: x[0], "x has shape [4]"),                                                 # one example, no batch
])
def test_population_forward_names_the_shapes_x_may_have(make_x, needle) -> None:
    """A wrong x gave torch's words ("shape '[3, 5, -1]' is invalid for input of size 35",
    "Expected size for first two dimensions of batch2 tensor ..."); now the two shapes it may have."""
    spec = mlp_spec(hidden=6)
    params = random_weights(spec, 3, seed=0)
    with pytest.raises(WeightzooError) as e:
        population_forward(spec, params, make_x(torch.randn(7, 4)))
    assert str(e.value) == (f"population_forward: {needle}; mlp architecture {spec.arch_id} takes [B, 4] (one "
                            f"batch for every member) or [3, B, 4] (one batch per member: P = 3, the members "
                            f"in params)")


def test_population_forward_names_the_dtype_and_the_parameters() -> None:
    spec = mlp_spec(hidden=6)
    params = random_weights(spec, 3, seed=0)
    x = torch.randn(7, 4)
    with pytest.raises(WeightzooError, match=r"x has dtype float64 but the weights are float32; convert it "
                                             r"with x.to\(torch.float32\)$"):
        population_forward(spec, params, x.double())  # was: RuntimeError "Input dtypes must be the same"
    with pytest.raises(WeightzooError, match=r"params lack 1 of the 4 parameters of mlp architecture "
                                             r"mlp-\w+: layers.1.bias; pass every one"):
        population_forward(spec, {k: v for k, v in params.items() if k != "layers.1.bias"}, x)  # was: KeyError
    with pytest.raises(WeightzooError, match=r"params lack 1 of the 4 parameters .*: layers.0.weight"):
        population_forward(spec, {k: v for k, v in params.items() if k != "layers.0.weight"}, x)
    with pytest.raises(WeightzooError, match=r"params\['layers.1.weight'\] has shape \[2, 3, 6\]; mlp "
                                             r"architecture mlp-\w+ needs \[3, 3, 6\] \(P = 3 members"):
        population_forward(spec, {**params, "layers.1.weight": params["layers.1.weight"][:2]}, x)
    with pytest.raises(WeightzooError, match=r"params\['layers.0.bias'\] has shape \[3, 5\]; .* needs \[3, 6\]"):
        population_forward(spec, {**params, "layers.0.bias": params["layers.0.bias"][:, :5]}, x)


def test_valid_population_calls_are_unchanged() -> None:
    """Shared and per-member batches (and a population of one) give what each member alone gives."""
    spec = mlp_spec(hidden=6)
    params = random_weights(spec, 3, seed=0)
    x = torch.randn(3, 7, 4)
    out = population_forward(spec, params, x)
    assert out.shape == (3, 7, 3)
    for i in range(3):
        module = build_module(spec, {k: v[i] for k, v in params.items()})
        torch.testing.assert_close(out[i], module(x[i]))
        one = population_forward(spec, {k: v[i:i + 1] for k, v in params.items()}, x[i])
        assert torch.equal(one[0], out[i])


def test_forward_by_hand() -> None:
    # y = W2 relu(W1 x + b1) + b2 with W1 = [[1, -1]], b1 = [0.5], W2 = [[2]], b2 = [-1]:
    # x = (3, 1): relu(3 - 1 + 0.5) = 2.5, y = 2 * 2.5 - 1 = 4.
    spec = NetworkSpec("mlp", (2,), (LayerSpec("linear", 2, 1, "a.weight", "a.bias", activation="relu"),
                                     LayerSpec("linear", 1, 1, "b.weight", "b.bias")))
    params = {"a.weight": torch.tensor([[[1.0, -1.0]]]), "a.bias": torch.tensor([[0.5]]),
              "b.weight": torch.tensor([[[2.0]]]), "b.bias": torch.tensor([[-1.0]])}
    assert population_forward(spec, params, torch.tensor([[3.0, 1.0]])).item() == 4.0


def _conv_on(input_shape: tuple[int, ...]) -> NetworkSpec:
    """A one-conv net whose parameters do not depend on its input's size (it pools globally)."""
    return NetworkSpec("cnn", input_shape, (
        LayerSpec("conv2d", 1, 4, "layers.0.weight", "layers.0.bias", kernel_size=(3, 3), activation="relu",
                  pool="global_avg"),
        LayerSpec("linear", 4, 10, "layers.1.weight", "layers.1.bias")))


def test_an_input_shape_beyond_2_24_values_is_refused() -> None:
    """zoo.json's input_shape sizes tensors (probe inputs, batches): [1, 30000, 30000] in a crafted
    zoo made zoo train --hparam probes=4 allocate 14 GB. Bounded where a spec is validated."""
    _conv_on((1, 4096, 4096))  # 2**24 values: the most an example may have
    d = _conv_on((1, 8, 8)).to_dict()
    d["input_shape"] = [1, 30000, 30000]
    with pytest.raises(ZooFormatError, match=re.escape("input_shape [1, 30000, 30000] is 900,000,000 values per "
                                                       "example, more than the 16,777,216 (2**24)")):
        NetworkSpec.from_dict(d)


def test_a_zoo_with_a_crafted_input_shape_does_not_open(zoo_copy) -> None:
    from catalog import open_zoo

    manifest = json.loads((zoo_copy / "zoo.json").read_text())
    arch = next(iter(manifest["architectures"].values()))
    arch["input_shape"] = [64, 30000, 30000]
    (zoo_copy / "zoo.json").write_text(json.dumps(manifest))
    with pytest.raises(ZooFormatError, match=r"input_shape \[64, 30000, 30000\] is 57,600,000,000 values"):
        open_zoo(zoo_copy)
