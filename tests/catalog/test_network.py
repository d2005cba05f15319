"""catalog.network: NetworkSpec round trips, ids, summaries and execution by hand."""

from __future__ import annotations

import json

import pytest
import torch
from zoo_helpers import mlp_spec, random_weights

from catalog.errors import ZooFormatError
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


def test_population_forward_equals_each_module_alone() -> None:
    spec = mlp_spec(hidden=6, activation="tanh")
    params = random_weights(spec, 3, seed=0)
    x = torch.randn(7, 4)
    out = population_forward(spec, params, x)  # [3, 7, 3]
    for i in range(3):
        module = build_module(spec, {k: v[i] for k, v in params.items()})
        torch.testing.assert_close(out[i], module(x))


def test_forward_by_hand() -> None:
    # y = W2 relu(W1 x + b1) + b2 with W1 = [[1, -1]], b1 = [0.5], W2 = [[2]], b2 = [-1]:
    # x = (3, 1): relu(3 - 1 + 0.5) = 2.5, y = 2 * 2.5 - 1 = 4.
    spec = NetworkSpec("mlp", (2,), (LayerSpec("linear", 2, 1, "a.weight", "a.bias", activation="relu"),
                                     LayerSpec("linear", 1, 1, "b.weight", "b.bias")))
    params = {"a.weight": torch.tensor([[[1.0, -1.0]]]), "a.bias": torch.tensor([[0.5]]),
              "b.weight": torch.tensor([[[2.0]]]), "b.bias": torch.tensor([[-1.0]])}
    assert population_forward(spec, params, torch.tensor([[3.0, 1.0]])).item() == 4.0
