"""retrieval.features: penultimate features and logits of a population, input checks."""

from __future__ import annotations

import pytest
import torch
from zoo_helpers import graph_specs

from catalog.errors import WeightzooError
from catalog.network import build_module
from retrieval import read_models
from zoo_builders.init import init_params


def test_features_are_the_inputs_of_the_last_layer(digits_population, digits) -> None:
    spec, params = digits_population
    x = digits.x_test[:20]
    out = read_models(spec, params, x, chunk=7)           # several chunks
    assert out.features.shape == (4, 20, 32) and out.logits.shape == (4, 20, 10)
    last_w, last_b = params["layers.1.weight"], params["layers.1.bias"]
    again = out.features @ last_w.transpose(1, 2) + last_b.unsqueeze(1)
    assert torch.allclose(again, out.logits, atol=1e-5)
    module = build_module(spec, {k: v[0] for k, v in params.items()})
    with torch.no_grad():
        assert torch.allclose(out.logits[0], module(x), atol=1e-5)
    assert torch.equal(out.predictions, out.logits.argmax(-1))
    # Flat inputs with the right number of values are reshaped, as the trainer does.
    flat = read_models(spec, params, x.reshape(20, 64))
    assert torch.equal(flat.logits, out.logits)


@pytest.mark.parametrize("name", list(graph_specs()))
def test_graph_features_are_the_inputs_of_the_last_node(name) -> None:
    spec = graph_specs()[name]
    params = {k: torch.stack([init_params(spec, "default", torch.Generator().manual_seed(i))[k] for i in range(3)])
              for k in spec.param_names}
    x = torch.rand(6, *spec.input_shape)
    out = read_models(spec, params, x, chunk=4)
    last = spec.nodes[-1]                                  # every family ends in a linear head
    assert last.KIND == "linear" and out.features.shape == (3, 6, last.in_features)
    again = out.features @ params[f"{last.name}.weight"].transpose(1, 2) + params[f"{last.name}.bias"].unsqueeze(1)
    torch.testing.assert_close(again, out.logits, rtol=1e-5, atol=1e-5)
    for m in range(3):
        with torch.no_grad():
            torch.testing.assert_close(out.logits[m], build_module(spec, {k: v[m] for k, v in params.items()})(x),
                                       rtol=1e-5, atol=1e-5)


def test_inputs_of_another_shape_raise(digits_population) -> None:
    spec, params = digits_population
    with pytest.raises(WeightzooError, match=r"examples have shape \[2\] but the models take \[1, 8, 8\]"):
        read_models(spec, params, torch.zeros(5, 2))
    with pytest.raises(WeightzooError, match="expects"):
        read_models(spec, {**params, "layers.1.bias": torch.zeros(4, 3)}, torch.zeros(5, 64))
