"""Chains with any parameter names (an imported model's own) and the output shift: rebuilt,
run, stored, and the ids of existing chains unchanged."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from catalog.errors import ZooFormatError
from catalog.network import LayerSpec, NetworkSpec, build_module, population_forward
from zoo_builders.architectures import make_architecture


def _chain(names, shift: float = 0.0) -> NetworkSpec:
    (w0, b0), (w1, b1) = names
    return NetworkSpec("mlp", (3,), (LayerSpec("linear", 3, 4, w0, b0, activation="tanh"),
                                     LayerSpec("linear", 4, 2, w1, b1, shift=shift)))


@pytest.mark.parametrize("names", [
    (("seq.0.weight", "seq.0.bias"), ("seq.2.weight", "seq.2.bias")),
    (("net.0.linear.weight", "net.0.linear.bias"), ("net.2.weight", None)),
    (("fc1.weight", "fc1.bias"), ("head_w", "head_b")),
])
def test_any_names_rebuild_and_compute_like_torch(names):
    spec = _chain(names)
    torch.manual_seed(0)
    ref = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2, bias=names[1][1] is not None)).eval()
    sd = {names[0][0]: ref[0].weight, names[0][1]: ref[0].bias, names[1][0]: ref[2].weight}
    if names[1][1] is not None:
        sd[names[1][1]] = ref[2].bias
    module = build_module(spec, sd)
    assert sorted(module.state_dict()) == sorted(spec.param_names)
    x = torch.randn(5, 3)
    assert torch.equal(module(x), ref(x))
    stacked = {k: v.detach().unsqueeze(0) for k, v in sd.items()}
    assert torch.allclose(population_forward(spec, stacked, x)[0], ref(x), atol=1e-6)
    again = NetworkSpec.from_dict(spec.to_dict())
    assert again == spec and again.is_chain and again.arch_id == spec.arch_id


def test_bad_names_are_refused():
    with pytest.raises(ZooFormatError, match="letters, digits"):
        _chain((("seq.0.weight", "seq..bias"), ("out.weight", "out.bias")))
    with pytest.raises(ZooFormatError, match="unique"):
        _chain((("a.weight", "a.bias"), ("a.weight", "b.bias")))
    with pytest.raises(ZooFormatError, match="prefix"):
        _chain((("a.weight", "a.bias"), ("a.weight.x", "b.bias")))
    with pytest.raises(ZooFormatError, match="attribute"):
        build_module(_chain((("train.weight", "train.bias"), ("out.weight", "out.bias"))))


def test_output_shift_is_added_and_stored_only_when_set():
    names = (("seq.0.weight", "seq.0.bias"), ("seq.2.weight", "seq.2.bias"))
    plain, shifted = _chain(names), _chain(names, shift=0.5)
    assert "shift" not in plain.to_dict()["layers"][1] and shifted.to_dict()["layers"][1]["shift"] == 0.5
    assert plain.arch_id != shifted.arch_id and NetworkSpec.from_dict(shifted.to_dict()) == shifted
    assert "output shift +0.5" in shifted.summary()
    sd = {p.name: torch.randn(p.shape) for p in plain.params}
    x = torch.randn(6, 3)
    # the shift is a constant added to the output: the same weights give the plain output + 0.5
    assert torch.equal(build_module(shifted, sd)(x), build_module(plain, sd)(x) + 0.5)
    stacked = {k: v.unsqueeze(0) for k, v in sd.items()}
    assert torch.equal(population_forward(shifted, stacked, x), population_forward(plain, stacked, x) + 0.5)
    with pytest.raises(ZooFormatError, match="only the last layer"):
        NetworkSpec("mlp", (3,), (LayerSpec("linear", 3, 4, "a.weight", shift=1.0),
                                  LayerSpec("linear", 4, 2, "b.weight")))
    with pytest.raises(ZooFormatError, match="output shift"):
        shifted.as_graph()
    # structure readers (parameter graphs, neuron symmetries) take the graph without the shift
    assert shifted.as_graph(ignore_shift=True) == plain.as_graph()


@pytest.mark.parametrize("arch, shape, n_out", [
    ({"name": "mlp", "hidden": [16], "activation": "relu"}, (1, 8, 8), 10),
    ({"name": "siren", "hidden": [32, 32]}, (28, 28), 1),
])
def test_preset_dicts_keep_their_fields(arch, shape, n_out):
    """The pinned ids (tests/catalog/test_format_v1.py, tests/zoo_builders/test_graph_architectures.py)
    hash this dict: it has exactly the fields it had before chains could carry a shift."""
    _, cfg = make_architecture(arch)
    spec = cfg.network_spec(shape, n_out)
    d = spec.to_dict()
    assert all("shift" not in layer for layer in d["layers"])
    assert set(d["layers"][0]) == {"kind", "in_features", "out_features", "weight", "bias", "kernel_size",
                                   "stride", "padding", "activation", "omega", "pool"}
