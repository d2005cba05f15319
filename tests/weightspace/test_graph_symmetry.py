"""weightspace.graph_symmetry: neuron groups tied across residual streams, attention heads as
blocks; a random symmetry keeps every network's function, a wrong one (untied across an add,
heads mixed) does not, and gmn is invariant (equivariant for forward_weights) under them."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from zoo_helpers import graph_specs, mlp_spec
from zoo_helpers import graph_weights as weights

from catalog.errors import WeightzooError
from catalog.network import build_module, population_forward
from weightspace.graph_symmetry import (
    GraphPermutation,
    graph_symmetries,
    permute_graph,
    random_graph_permutation,
)
from weightspace.models.gmn import GMN
from weightspace.representations.param_graph import param_graph_to_params, params_to_param_graph
from weightspace.symmetry import RandomNeuronSymmetry, _gather, permute_neurons
from zoo_builders.architectures import CNNConfig

SPECS = {
    **graph_specs(),
    "mlp": mlp_spec(hidden=5),
    "cnn": CNNConfig(channels=(3, 4, 4), kernel_size=3).network_spec((1, 8, 8), 10),
}


def inputs(spec, n: int = 6) -> torch.Tensor:
    return torch.randn((n, *spec.input_shape), generator=torch.Generator().manual_seed(7))


def _outputs(spec, params, x) -> torch.Tensor:
    return population_forward(spec, params, x)  # [P, B, out], eval mode (BN running stats)


@pytest.mark.parametrize("name", list(SPECS))
def test_a_random_symmetry_keeps_the_function(name) -> None:
    spec = SPECS[name]
    sym = graph_symmetries(spec)
    p = weights(spec, 3, seed=0)
    q = permute_graph(sym, p, random_graph_permutation(sym, 3, torch.Generator().manual_seed(1)))
    # it moved every parameter but the output layer's bias (the output neurons are fixed)
    moved = [k for k in p if not torch.equal(p[k], q[k])]
    assert len(moved) >= len(p) - 1
    x = inputs(spec)
    out = _outputs(spec, p, x)
    torch.testing.assert_close(_outputs(spec, q, x), out, rtol=1e-5, atol=1e-5)
    # and the rebuilt nn.Module (eval mode: batch norm with its running statistics)
    module = build_module(spec, {k: v[1] for k, v in q.items()})
    with torch.no_grad():
        torch.testing.assert_close(module(x), out[1], rtol=1e-5, atol=1e-5)


def test_resnet_groups_by_hand() -> None:
    # ResNet-8 at width 0.25: 4-8-16 channels, one basic block per stage. Stage 1's block has an
    # identity shortcut, so its stream is the stem's: conv1 (rows), bn1 (4 tensors), the block's
    # conv1 (columns), conv2 (rows), bn2 (4), and stage 2's conv1 and shortcut (columns) = 13 axes.
    sym = graph_symmetries(SPECS["resnet-bn"])
    groups = {g.name: g for g in sym.neurons}
    assert {n: g.size for n, g in groups.items()} == {
        "conv1": 4, "layer1.0.conv1": 4, "layer2.0.conv1": 8, "layer2.0.conv2": 8,
        "layer3.0.conv1": 16, "layer3.0.conv2": 16}
    stem = groups["conv1"]
    assert sorted((a.name, a.dim) for a in stem.axes) == sorted([
        ("conv1.weight", 0), *[(f"bn1.{s}", 0) for s in ("weight", "bias", "running_mean", "running_var")],
        ("layer1.0.conv1.weight", 1), ("layer1.0.conv2.weight", 0),
        *[(f"layer1.0.bn2.{s}", 0) for s in ("weight", "bias", "running_mean", "running_var")],
        ("layer2.0.conv1.weight", 1), ("layer2.0.shortcut.0.weight", 1)])
    assert "layer1.0.add" in stem.nodes
    # stage 2's stream: its conv2 and its shortcut conv write to one add, so they are one group
    names = {a.name for a in groups["layer2.0.conv2"].axes}
    assert {"layer2.0.conv2.weight", "layer2.0.shortcut.0.weight", "layer2.0.shortcut.1.running_var"} <= names
    # the classifier reads the last stream: fc's columns move with it, its rows never
    assert ("fc.weight", 1) in {(a.name, a.dim) for a in groups["layer3.0.conv2"].axes}
    assert all(a.name != "fc.bias" for g in sym.neurons for a in g.axes)


def test_flatten_and_patch_layouts() -> None:
    # VGG: 8 channels of 2x2 positions flatten into the classifier's 32 inputs: blocks of 4
    vgg = graph_symmetries(SPECS["vgg"]).group("features.4")
    assert ("classifier.0.weight", 1, 1, 4) in {(a.name, a.dim, a.outer, a.inner) for a in vgg.axes}
    # ViT: the token stream (embed, pos, every norm and residual write) is one group of 8
    vit = graph_symmetries(SPECS["vit"])
    stream = {(a.name, a.dim) for a in vit.group("embed").axes}
    assert {("pos.weight", 1), ("blocks.0.norm1.weight", 0), ("blocks.1.attn.in_proj_weight", 1),
            ("blocks.0.attn.out_proj.weight", 0), ("blocks.1.mlp.fc2.bias", 0), ("norm.bias", 0),
            ("head.weight", 1)} <= stream
    assert [(h.node, h.num_heads, h.head_dim) for h in vit.heads] == [("blocks.0.attn", 2, 4), ("blocks.1.attn", 2, 4)]


def test_a_chain_gets_its_per_layer_groups() -> None:
    spec = mlp_spec(hidden=5)
    sym = graph_symmetries(spec)
    assert [(g.name, g.size) for g in sym.neurons] == [("layers.0", 5)]
    p = weights(spec, 2, seed=0)
    perm = torch.tensor([[4, 2, 0, 1, 3], [1, 0, 2, 4, 3]])
    by_graph = permute_graph(sym, p, GraphPermutation(neurons={"layers.0": perm}))
    by_layer = permute_neurons(spec, p, {0: perm})
    assert all(torch.equal(by_graph[k], by_layer[k]) for k in p)


@pytest.mark.parametrize("name,branch", [
    ("resnet-bn", ("layer1.0.conv2.", "layer1.0.bn2.")),           # the block's residual branch
    ("vit", ("blocks.0.attn.out_proj.",)),                         # attention's write to the stream
    ("seq", ("blocks.0.mlp.fc2.",)),                               # the MLP's write to the stream
])
def test_a_permutation_untied_across_an_add_changes_the_function(name, branch) -> None:
    spec = SPECS[name]
    sym = graph_symmetries(spec)
    stream = sym.group("conv1" if name.startswith("resnet") else "embed")
    # the same stream permutation, but one summand of an add left out
    untied = dataclasses.replace(stream, axes=tuple(a for a in stream.axes if not a.name.startswith(branch)))
    assert len(untied.axes) < len(stream.axes)
    wrong = dataclasses.replace(sym, neurons=(untied,))
    p = weights(spec, 2, seed=0)
    perm = GraphPermutation(neurons={stream.name: torch.stack([torch.arange(stream.size).roll(1)] * 2)})
    x = inputs(spec)
    out = _outputs(spec, p, x)
    torch.testing.assert_close(_outputs(spec, permute_graph(sym, p, perm), x), out, rtol=1e-5, atol=1e-5)
    assert (_outputs(spec, permute_graph(wrong, p, perm), x) - out).abs().max() > 1e-2


def test_attention_heads_move_as_blocks() -> None:
    spec = SPECS["seq"]  # 4 heads of 2 dims
    sym = graph_symmetries(spec)
    p = weights(spec, 1, seed=0)
    x = inputs(spec)
    out = _outputs(spec, p, x)
    node = "blocks.0.attn"
    heads = (torch.tensor([[2, 0, 3, 1]]), torch.tensor([[[1, 0]] * 4]),
             torch.tensor([[[0, 1], [1, 0], [1, 0], [0, 1]]]))
    q = permute_graph(sym, p, GraphPermutation(heads={node: heads}))
    torch.testing.assert_close(_outputs(spec, q, x), out, rtol=1e-5, atol=1e-5)
    # q/k dims 1 and 2 swapped together: a permutation of the q.k sums, but across heads 0 and 1
    across = torch.tensor([0, 2, 1, 3, 4, 5, 6, 7])
    rows = torch.cat([across, across + 8, torch.arange(16, 24)]).unsqueeze(0)
    bad = dict(p)
    bad[f"{node}.in_proj_weight"] = _gather(p[f"{node}.in_proj_weight"], 1, rows)
    bad[f"{node}.in_proj_bias"] = _gather(p[f"{node}.in_proj_bias"], 1, rows)
    assert (_outputs(spec, bad, x) - out).abs().max() > 1e-3


def test_random_neuron_symmetry_uses_the_graph_groups() -> None:
    spec = SPECS["resnet-bn"]
    aug = RandomNeuronSymmetry(spec, seed=0)
    p = weights(spec, 2, seed=1)
    q = aug(p)
    assert not torch.equal(q["conv1.weight"], p["conv1.weight"])
    x = inputs(spec)
    torch.testing.assert_close(_outputs(spec, q, x), _outputs(spec, p, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet-bn", "vgg", "modelzoo-cnn", "vit", "seq"])
def test_gmn_is_invariant_and_its_weight_output_equivariant(name) -> None:
    spec = SPECS[name]
    sym = graph_symmetries(spec)
    torch.manual_seed(0)
    model = GMN(spec, 3, hidden=8, n_layers=2).eval()
    with torch.no_grad():
        model.edit_scale.fill_(1.0)  # make the weight-space head count
        if model.typed:  # norms, adds, attention (the Model Zoos CNN has none)
            model.node_type_emb.weight.normal_()
            model.edge_type_emb.weight.normal_()
    p = weights(spec, 3, seed=0)
    perm = random_graph_permutation(sym, 3, torch.Generator().manual_seed(5))
    q = permute_graph(sym, p, perm)
    with torch.no_grad():
        out, out_q = model(p), model(q)
        w, w_q = model.forward_weights(p), model.forward_weights(q)
    torch.testing.assert_close(out_q, out, rtol=1e-4, atol=1e-4)
    expected = permute_graph(sym, w, perm)
    for k in p:
        torch.testing.assert_close(w_q[k], expected[k], rtol=1e-4, atol=1e-4)
    # the parameter-graph round trip stays exact on permuted networks
    g = params_to_param_graph(spec, q)
    back = param_graph_to_params(spec, g.x, g.edge_attr)
    assert all(torch.equal(back[k], q[k]) for k in q)


def test_bad_permutations_are_refused() -> None:
    sym = graph_symmetries(SPECS["vit"])
    p = weights(SPECS["vit"], 2, seed=0)
    with pytest.raises(WeightzooError, match="no permutable neuron group 'nope'"):
        permute_graph(sym, p, GraphPermutation(neurons={"nope": torch.arange(3)}))
    with pytest.raises(WeightzooError, match="expected \\[8\\] or \\[2"):
        permute_graph(sym, p, GraphPermutation(neurons={"embed": torch.arange(5)}))
    with pytest.raises(WeightzooError, match="not a permutation of 0..7"):
        permute_graph(sym, p, GraphPermutation(neurons={"embed": torch.zeros(8, dtype=torch.long)}))
