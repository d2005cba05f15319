"""gmn on graph architectures: ResNet (with BN), VGG, the Model Zoos CNN, ViT and the 1-D
transformer read through their parameter graphs, chains and graphs in one batch; a chain is the
same graph as before (so chain numbers do not move); forward_weights on graphs."""

from __future__ import annotations

import pytest
import torch
from zoo_helpers import assert_one_line_error, graph_specs, mlp_spec, random_weights

from catalog import nodes as nd
from catalog.errors import WeightzooError
from catalog.network import NetworkSpec
from weightspace.models.gmn import GMN
from weightspace.models.registry import build_metanetwork, get_metanetwork
from weightspace.representations.graph import params_to_graph_batch
from weightspace.representations.param_graph import (
    EDGE_TYPES,
    NODE_TYPES,
    param_graph_structure,
    params_to_param_graph,
    params_to_param_graph_batch,
)
from zoo_builders.architectures import CNNConfig, MLPConfig, SirenConfig

GRAPHS = graph_specs()
CHAINS = {
    "mlp": mlp_spec(hidden=5),
    "mlp-on-images": MLPConfig(hidden=(6,)).network_spec((1, 8, 8), 10),
    "cnn": CNNConfig(channels=(3, 4, 4), kernel_size=3).network_spec((1, 8, 8), 10),
    "cnn-1d": CNNConfig(channels=(3, 4), kernel_size=3).network_spec((2, 40), 10),
    "siren": SirenConfig().network_spec((1, 28, 28), 1),
}


@pytest.mark.parametrize("name", list(CHAINS))
def test_a_chain_is_the_neuron_graph(name) -> None:
    # The parameter graph of a layer chain is, field by field, the neuron graph gmn read before
    # it read graphs, with only reference types: chain zoos get the numbers they always got.
    spec = CHAINS[name]
    p = random_weights(spec, 3, seed=0)
    old, new = params_to_graph_batch(spec, p), params_to_param_graph(spec, p)
    for key in ("x", "edge_index", "edge_attr", "layer", "node_kind", "io_pos", "edge_layer", "batch", "ptr"):
        assert torch.equal(getattr(old, key), getattr(new, key)), key
    assert set(new.node_type.tolist()) == {NODE_TYPES.index("neuron")}
    assert set(new.edge_type.tolist()) <= {EDGE_TYPES.index("linear"), EDGE_TYPES.index("conv")}
    torch.manual_seed(0)
    model = GMN(spec, 2, hidden=8).eval()
    with torch.no_grad():  # an untyped neuron graph and the parameter graph: one output
        torch.testing.assert_close(model(old), model(new), rtol=0, atol=0)


def test_types_of_a_resnet_and_a_transformer() -> None:
    st = param_graph_structure(GRAPHS["resnet-bn"])
    types = {NODE_TYPES[t] for t in st.node_type.tolist()}
    assert types == {"neuron", "batchnorm", "residual"}
    st = param_graph_structure(GRAPHS["seq"])
    count = {t: st.node_type.tolist().count(NODE_TYPES.index(t)) for t in NODE_TYPES}
    # 1 block of dim 8: q, k, v and out neurons 8 each; norm1, norm2, final norm 8 each; 2 adds
    assert count["attention_q"] == count["attention_k"] == count["attention_v"] == count["attention_out"] == 8
    assert count["layernorm"] == 24 and count["residual"] == 16 and count["pos_embedding"] == 8
    e = st.edge_type.tolist()
    # q_j -> k_j for each of the 8 dims; keys -> values within each of the 4 heads of 2 dims
    assert e.count(EDGE_TYPES.index("attention_qk")) == 8
    assert e.count(EDGE_TYPES.index("attention_head")) == 4 * 2 * 2


def test_chains_and_graphs_in_one_batch() -> None:
    specs = [CHAINS["mlp"], CHAINS["cnn"], *GRAPHS.values()]
    torch.manual_seed(0)
    model = build_metanetwork("gmn", specs, 3, hidden=8, n_layers=2).eval()
    groups = [(s, random_weights(s, 2, seed=i)) for i, s in enumerate(specs)]
    batch = model.to_graph_batch(groups)
    assert batch.num_graphs == 2 * len(specs)
    with torch.no_grad():
        out = model(batch)
        alone = [model.forward_arch(p, s) for s, p in groups]
    assert out.shape == (2 * len(specs), 3)
    torch.testing.assert_close(out, torch.cat(alone), rtol=1e-4, atol=1e-5)
    # the same batch built by the representation's own function
    same = params_to_param_graph_batch(groups, edge_dim=model.edge_dim)
    for key in ("x", "edge_index", "edge_attr", "node_type", "edge_type", "batch"):
        assert torch.equal(getattr(batch, key), getattr(same, key)), key


def test_type_embeddings_matter_for_graphs_only() -> None:
    torch.manual_seed(0)
    spec = GRAPHS["resnet-bn"]
    model = GMN([CHAINS["mlp"], spec], 2, hidden=8).eval()
    p = random_weights(spec, 2, seed=1)
    chain_p = random_weights(CHAINS["mlp"], 2, seed=2)
    with torch.no_grad():
        before, chain_before = model.forward_arch(p, spec), model(chain_p)
        model.node_type_emb.weight.add_(1.0)
        model.edge_type_emb.weight.add_(1.0)
        after, chain_after = model.forward_arch(p, spec), model(chain_p)
        model.type_readout[-1].bias.add_(1.0)  # the per-type readout, too, is for graphs only
        moved, chain_same = model.forward_arch(p, spec), model(chain_p)
    assert (before - after).abs().max() > 1e-3
    torch.testing.assert_close(moved, after + 1.0)
    torch.testing.assert_close(chain_after, chain_before, rtol=0, atol=0)
    torch.testing.assert_close(chain_same, chain_before, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(GRAPHS))
def test_forward_weights_on_graphs(name) -> None:
    spec = GRAPHS[name]
    torch.manual_seed(0)
    model = GMN(spec, 1, hidden=8, n_layers=1)
    p = random_weights(spec, 2, seed=3)
    out = model.forward_weights(p)  # edit_scale starts at 0: the identity map, exactly
    assert list(out) == spec.param_names and all(torch.equal(out[k], p[k]) for k in p)
    with torch.no_grad():
        model.edit_scale.fill_(1.0)
    out = model.forward_weights(p)
    assert all(out[k].shape == p[k].shape for k in p)
    assert all(not torch.allclose(out[k], p[k]) for k in p)
    sum(v.sum() for v in out.values()).backward()
    assert model.edge_head.weight.grad.abs().sum() > 0 and model.node_head.weight.grad.abs().sum() > 0


def test_graph_errors() -> None:
    # probes feed every network the same inputs: one input shape, real-valued (no token ids)
    with pytest.raises(WeightzooError, match="need one input shape"):
        GMN([GRAPHS["vit"], GRAPHS["seq"]], 1, probes=2)
    tokens = NetworkSpec("e", (3,), nodes=(nd.Embedding("emb", ("input",), 5, 2),
                                           nd.GlobalPool("p", ("emb",), over="tokens"), nd.Linear("fc", ("p",), 2, 2)))
    with pytest.raises(WeightzooError, match="embeds token ids: use probes=0"):
        GMN(tokens, 1, probes=2)
    small = GMN(CHAINS["mlp"], 1)
    spec = GRAPHS["resnet-bn"]
    with pytest.raises(WeightzooError, match="retrain it on a selection that includes this architecture .`zoo train"):
        small(small.to_graph_batch([(spec, random_weights(spec, 1, seed=0))]))


# ================================================================================ zoos and the CLI
#: The tiny ResNet zoo of tests/zoo_builders/test_graph_architectures.py (the same dict: the
#: session's zoo_factory builds it once): ResNet-8 with BN at width 0.25, 6 seeds.
RESNET_ZOO = {"name": "tiny-resnet", "dataset": {"name": "digits", "test_fraction": 0.25},
              "architecture": {"name": "resnet", "width_multiplier": 0.25},
              "training": {"epochs": 2, "batch_size": 64, "lr": 0.01, "checkpoints": [0, 2]},
              "grid": {"seed": [0, 1, 2, 3, 4, 5]}}
#: A tiny ViT on digits: 16 patches of 2x2, width 8, one block of 2 heads, 4 seeds, one epoch.
VIT_ZOO = {"name": "tiny-digits-vit", "dataset": {"name": "digits", "test_fraction": 0.25},
           "architecture": {"name": "transformer", "patch_size": 2, "dim": 8, "depth": 1},
           "training": {"epochs": 1, "batch_size": 128, "lr": 0.003, "checkpoints": [1]},
           "grid": {"seed": [0, 1, 2, 3]}}
#: A chain MLP and a ResNet in one zoo (two families): 3 runs each, one epoch.
MIXED_ZOO = {"name": "tiny-mlp-resnet", "dataset": {"name": "digits", "test_fraction": 0.25},
             "training": {"epochs": 1, "batch_size": 128, "lr": 0.01, "checkpoints": [1]},
             "families": [{"architecture": {"name": "mlp", "hidden": [8]}, "grid": {"seed": [0, 1, 2]}},
                          {"architecture": {"name": "resnet", "width_multiplier": 0.25},
                           "grid": {"seed": [0, 1, 2]}}]}
CLI_TRAIN = ("--target", "test_acc", "--epochs", "2", "--fractions", "0.5,0.25,0.25", "-q", "--json",
             "--hparam", "hidden=8")


@pytest.fixture(scope="module")
def graph_zoos(zoo_factory) -> dict:
    return {"resnet": zoo_factory(RESNET_ZOO), "vit": zoo_factory(VIT_ZOO)}


@pytest.mark.slow
@pytest.mark.parametrize("which", ["resnet", "vit"])
def test_zoo_train_gmn_and_statnn_on_a_graph_zoo(which, graph_zoos, tmp_path) -> None:
    import json

    from zoo_helpers import run_cli

    from catalog import open_zoo
    from weightspace import TrainedMetanetwork

    zoo = graph_zoos[which]
    for model in ("gmn", "statnn", "mlp"):
        extra = ("--augment",) if model == "gmn" else ()  # random residual/head symmetries
        r = run_cli("train", zoo, "--model", model, *CLI_TRAIN, *extra, "--out", tmp_path / model)
        assert r.exit_code == 0, r.output
        assert json.loads(r.output.strip().splitlines()[-1])["n"] >= 1
        loaded = TrainedMetanetwork.load(tmp_path / model)  # rebuilt from config.json: the graph spec
        sel = open_zoo(zoo).select(where="checkpoint > 0")
        pred = loaded.predict(sel)
        assert pred.shape == (len(sel), 1) and torch.isfinite(pred).all()
    for model in ("dws", "nfn"):  # refused before any weights load, naming what they lack
        r = run_cli("train", zoo, "--model", model, *CLI_TRAIN, "--out", tmp_path / model)
        kinds = "add, batchnorm" if which == "resnet" else "add, attention, layernorm"
        assert_one_line_error(r, f"metanetwork '{model}'", kinds, "'gmn'", "'statnn'")
        assert not (tmp_path / model).exists()


@pytest.mark.slow
def test_zoo_train_gmn_on_a_chain_and_a_resnet_zoo(zoo_factory, tmp_path) -> None:
    from zoo_helpers import run_cli

    from catalog import open_zoo
    from weightspace import TrainedMetanetwork

    zoo = zoo_factory(MIXED_ZOO)
    specs = open_zoo(zoo).select().network_specs
    assert sorted(s.family for s in specs.values()) == ["mlp", "resnet"]
    r = run_cli("train", zoo, "--model", "gmn", *CLI_TRAIN, "--augment", "--out", tmp_path / "gmn")
    assert r.exit_code == 0, r.output
    loaded = TrainedMetanetwork.load(tmp_path / "gmn")
    assert sorted(s.family for s in loaded.net.specs) == ["mlp", "resnet"]
    # one batch holding both: the same outputs as each architecture alone
    net = loaded.net.eval()
    groups = [(s, random_weights(s, 2, seed=i)) for i, s in enumerate(specs.values())]
    with torch.no_grad():
        torch.testing.assert_close(net(net.to_graph_batch(groups)),
                                   torch.cat([net.forward_arch(p, s) for s, p in groups]), rtol=1e-4, atol=1e-5)
    # statnn summarises named tensors: two parameter layouts are refused with a pointer to gmn
    assert_one_line_error(run_cli("train", zoo, "--model", "statnn", *CLI_TRAIN, "--out", tmp_path / "s"), "'gmn'")


@pytest.mark.parametrize("name", ["resnet-bn", "vit"])
def test_statnn_and_mlp_read_graph_specs(name) -> None:
    from weightspace.graph_symmetry import graph_symmetries, permute_graph, random_graph_permutation

    spec = GRAPHS[name]
    p = random_weights(spec, 4, seed=0)
    sym = graph_symmetries(spec)
    q = permute_graph(sym, p, random_graph_permutation(sym, 4, torch.Generator().manual_seed(1)))
    torch.manual_seed(0)
    for model_name in ("statnn", "mlp"):
        model = build_metanetwork(model_name, spec, 2).eval()
        with torch.no_grad():
            out, out_q = model(p), model(q)
        assert out.shape == (4, 2)
        if model_name == "statnn":  # per-tensor statistics: invariant to every symmetry
            torch.testing.assert_close(out_q, out, rtol=1e-4, atol=1e-5)
        else:  # the flat vector: not invariant (so the symmetry above did move weights)
            assert (out_q - out).abs().max() > 1e-3


def test_dws_and_nfn_refuse_graph_specs_naming_the_node_kinds() -> None:
    for name in ("dws", "nfn"):
        with pytest.raises(WeightzooError, match=r"has node kinds add, batchnorm, .*'gmn'.*'statnn'"):
            build_metanetwork(name, GRAPHS["resnet-bn"], 1)
        with pytest.raises(WeightzooError, match="attention, layernorm"):
            get_metanetwork(name).arch_problem([GRAPHS["vit"]], {})


def test_refusals_name_only_the_models_that_read_the_data() -> None:
    from weightspace.train import several_archs_error

    resnet, vit = GRAPHS["resnet-bn"], GRAPHS["vit"]
    # several graph architectures: statnn (one parameter layout) cannot read them, statnn-kinds can
    with pytest.raises(WeightzooError, match=r"'gmn' .*or 'statnn-kinds'") as e:
        get_metanetwork("dws").arch_problem([resnet, vit], {})
    assert "'statnn'" not in str(e.value)
    err = str(several_archs_error("problem", {s.arch_id: s for s in (resnet, vit)}))
    assert err.endswith("reads them together: 'gmn', 'statnn-kinds'"), err
    # the same parameter shapes (ReLU and tanh MLPs): the models that need that are offered too
    relu, tanh = (mlp_spec(activation=a) for a in ("relu", "tanh"))
    err = str(several_archs_error("problem", {s.arch_id: s for s in (relu, tanh)}))
    assert err.endswith("reads them together: 'gmn', 'mlp', 'statnn', 'statnn-kinds'"), err


def test_a_gmn_for_chains_has_no_type_tables() -> None:
    # exactly the parameters it had before types existed: its runs, and their numbers, stay the same
    model = GMN([CHAINS["mlp"], CHAINS["cnn"]], 2, hidden=8)
    assert not model.typed and not any("type" in k for k in model.state_dict())
    with pytest.raises(WeightzooError, match="built for layer chains only"):
        model.embed_nodes(torch.zeros(2), torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.long),
                          torch.zeros(2, dtype=torch.long), torch.tensor([0, NODE_TYPES.index("batchnorm")]))


def test_a_gmn_saved_before_a_type_was_appended_still_loads() -> None:
    spec = GRAPHS["resnet-bn"]  # its types are among the first 9 edge types
    torch.manual_seed(0)
    model = GMN(spec, 2, hidden=8).eval()
    p = random_weights(spec, 3, seed=1)
    with torch.no_grad():
        expected = model(p)
    # as saved when EDGE_TYPES had 9 entries: 2 fewer table rows, 2 fewer blocks of readout columns
    old = dict(model.state_dict())
    n, hid = len(NODE_TYPES), 8
    old["edge_type_emb.weight"] = old["edge_type_emb.weight"][:9].clone()
    old["type_readout.0.weight"] = old["type_readout.0.weight"][:, : (n + 9) * hid].clone()
    torch.manual_seed(1)
    fresh = GMN(spec, 2, hidden=8).eval()
    fresh.load_state_dict(old, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh(p), expected, rtol=1e-6, atol=1e-6)
    assert (fresh.type_readout[0].weight[:, (n + 9) * hid:] == 0).all()
