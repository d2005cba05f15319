"""Probe features for any architecture: every parameter-graph neuron's value on the probe inputs.
A chain gives exactly its layer-chain probe values; a ViT's input, embedding, attention q/k/v and a
ResNet's post-activation channels against hand computations; gmn with probes stays invariant
under every graph symmetry, and reads a chain and a ResNet (mixed) in one model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from zoo_helpers import graph_specs, graph_weights, mlp_spec

from catalog.execution import graph_population_values
from weightspace.graph_symmetry import graph_symmetries, permute_graph, random_graph_permutation
from weightspace.models.gmn import GMN
from weightspace.probes import ProbeFeatures, param_graph_probe_values
from weightspace.representations.param_graph import param_graph_structure
from zoo_builders.architectures import CNNConfig, MLPConfig

GRAPHS = graph_specs()
CHAINS = {"mlp": mlp_spec(hidden=5), "mlp-on-images": MLPConfig(hidden=(6,)).network_spec((1, 8, 8), 10),
          "cnn": CNNConfig(channels=(3, 4), kernel_size=3).network_spec((1, 8, 8), 10)}


def _group(spec, name: str, role: str = "out") -> slice:
    """The node positions of the neuron group whose values come from node ``name``."""
    st = param_graph_structure(spec)
    g = next(i for i, (n, r, _) in enumerate(st.sources) if n == name and r == role)
    ids = torch.nonzero(st.layer == g).flatten()
    return slice(int(ids[0]), int(ids[-1]) + 1)


@pytest.mark.parametrize("name", list(CHAINS))
def test_a_chain_gives_its_layer_chain_probe_values(name):
    spec = CHAINS[name]
    probe = ProbeFeatures(spec, 3)
    params = graph_weights(spec, 2, seed=1)
    chain = torch.cat(probe(params), dim=1)                       # the layer-chain path
    torch.testing.assert_close(param_graph_probe_values(spec, params, probe.inputs), chain, rtol=1e-5, atol=1e-6)
    assert chain.shape[1] == param_graph_structure(spec).num_nodes


def test_vit_values_by_hand():
    spec = GRAPHS["vit"]                                          # 1x8x8 images, 2x2 patches, width 8
    params = graph_weights(spec, 2, seed=2)
    x = torch.randn(3, *spec.input_shape, generator=torch.Generator().manual_seed(0))  # K = 3 probes
    v = param_graph_probe_values(spec, params, x)                  # [2, N, 3]
    # Input neurons: the one channel's mean over the image.
    torch.testing.assert_close(v[:, _group(spec, "input", "input")], x.mean((2, 3)).T.expand(2, 1, 3))
    # Embedding neurons: the token mean of the patches' embedding = mean patch @ W^T + b (linear).
    patches = x.reshape(3, 1, 4, 2, 4, 2).permute(0, 2, 4, 1, 3, 5).reshape(3, 16, 4)   # [K, T, 4]
    w, b = params["embed.weight"], params["embed.bias"]            # [2, 8, 4], [2, 8]
    embed = patches.mean(1) @ w.transpose(1, 2) + b.unsqueeze(1)   # [2, K, 8]
    torch.testing.assert_close(v[:, _group(spec, "embed")], embed.transpose(1, 2), rtol=1e-5, atol=1e-5)
    # q/k/v neurons of the first attention: its in-projection of the layer-normed tokens, token mean.
    tokens = patches @ w.transpose(1, 2).unsqueeze(1) + b[:, None, None] + params["pos.weight"].unsqueeze(1)
    normed = F.layer_norm(tokens, (8,)) * params["blocks.0.norm1.weight"][:, None, None] \
        + params["blocks.0.norm1.bias"][:, None, None]            # [2, K, T, 8]
    qkv = normed.mean(2) @ params["blocks.0.attn.in_proj_weight"].transpose(1, 2) \
        + params["blocks.0.attn.in_proj_bias"].unsqueeze(1)        # [2, K, 24]
    torch.testing.assert_close(v[:, _group(spec, "blocks.0.attn", "qkv")], qkv.transpose(1, 2), rtol=1e-4, atol=1e-5)


def test_resnet_channels_are_read_after_their_activation():
    spec = GRAPHS["resnet-bn"]
    params = graph_weights(spec, 2, seed=3)
    x = torch.randn(4, *spec.input_shape, generator=torch.Generator().manual_seed(1))
    v = param_graph_probe_values(spec, params, x)
    # bn1's channels feed a ReLU: their value is the ReLU's output, averaged over the map; conv1's
    # channels (before the batch norm) are the convolution's own output.
    values = graph_population_values(spec, params, x, ["relu", "conv1", "bn1"])
    torch.testing.assert_close(v[:, _group(spec, "relu")], values["relu"].mean((3, 4)).transpose(1, 2))
    torch.testing.assert_close(v[:, _group(spec, "conv1")], values["conv1"].mean((3, 4)).transpose(1, 2))
    assert not torch.allclose(values["relu"], values["bn1"])  # the activation does change them
    assert not any(n == "bn1" for n, _, _ in param_graph_structure(spec).sources)


@pytest.mark.parametrize("name", ["resnet-bn", "vgg", "vit", "seq"])
def test_gmn_with_probes_is_invariant(name):
    spec = GRAPHS[name]
    torch.manual_seed(0)
    model = GMN(spec, 2, hidden=8, n_layers=2, probes=3).eval()
    p = graph_weights(spec, 3, seed=4)
    sym = graph_symmetries(spec)
    q = permute_graph(sym, p, random_graph_permutation(sym, 3, torch.Generator().manual_seed(5)))
    with torch.no_grad():
        out, out_q = model(p), model(q)
        moved = not torch.allclose(model._probe_nodes(p), model._probe_nodes(q))
    torch.testing.assert_close(out_q, out, rtol=1e-4, atol=1e-5)
    assert moved  # the probe values moved with the neurons, and the readout did not care


def test_gmn_with_probes_reads_a_chain_and_a_resnet():
    chain, resnet = CHAINS["mlp-on-images"], GRAPHS["resnet-bn"]
    model = GMN([chain, resnet], 1, hidden=8, n_layers=1, probes=2).eval()
    for spec in (chain, resnet):
        p = graph_weights(spec, 2, seed=6)
        with torch.no_grad():
            out = model.forward_arch(p, spec)
            # the probe term is part of it: zeroing the probe map changes the output
            saved = model.probe_in.weight.detach().clone()
            model.probe_in.weight.zero_()
            without = model.forward_arch(p, spec)
            model.probe_in.weight.copy_(saved)
        assert out.shape == (2, 1) and not torch.allclose(out, without)
