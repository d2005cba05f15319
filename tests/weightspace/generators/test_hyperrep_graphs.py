"""hyperrep on graph architectures (ResNet with batch norm, VGG, ViT): graph tokens (layout by
hand, exact round trip, a chain read as a graph gives the chain's neuron tokens), graph neuron
and head permutations move whole tokens, and hyperrep fits, samples, saves and reloads on a tiny
ResNet-8+BN zoo through generate_zoo."""

from __future__ import annotations

import pytest
import torch
from gen_helpers import BN_RESNETS
from zoo_helpers import graph_specs, mlp_spec
from zoo_helpers import graph_weights as random_params

from catalog import open_zoo
from catalog.errors import WeightzooError
from weightspace.generators import build_generator, load_generator
from weightspace.generators._tokens import NeuronTokenizer
from weightspace.generators.hyperrep import HyperRepGenerator
from weightspace.generators.output import generate_zoo
from weightspace.graph_symmetry import GraphPermutation, graph_symmetries, permute_graph, random_graph_permutation
from zoo_builders.architectures import CNNConfig

SPECS = graph_specs()
GRAPHS = ["resnet-bn", "vgg", "vit", "resnet-1d", "seq"]
FAST = {"epochs": 2, "batch_size": 4, "d_model": 16, "d_latent": 8, "heads": 2}

def _table(n: int):
    import pyarrow as pa

    return pa.table({"test_acc": [i / n for i in range(n)]})


# ----------------------------------------------------------------------------- layout
def test_resnet_token_layout_by_hand():
    spec = SPECS["resnet-bn"]  # ResNet-8 at width 0.25 on 1x8x8: channels 4-8-16, 10 classes
    tok = NeuronTokenizer(spec)
    # Stem conv: 4 tokens of 1 * 3 * 3 weights (no bias); bn1: 4 tokens of (weight, bias).
    assert tok.offsets[:3] == [0, 4, 8] and tok.widths[:2] == [9, 2]
    # The widest token is a channel of layer3's 3x3 conv reading 16 channels.
    assert tok.width == 16 * 9
    # Every out-channel of every conv, every BN channel, the 10 classes of fc: 178 tokens.
    assert tok.n_tokens == 2 * (3 * 4 + 3 * 8 + 3 * 16) + 10 == 178
    # Buffers are not tokens: the mask holds exactly the trainable entries.
    assert tok.names == [p.name for p in spec.params if p.trainable]
    assert not any(n.endswith(("running_mean", "running_var")) for n in tok.names)
    assert int(tok.mask().sum()) == sum(p.numel for p in spec.params if p.trainable)
    assert tok.layer_index()[:9].tolist() == [0] * 4 + [1] * 4 + [2]
    assert tok.neuron_index()[:9].tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    params = random_params(spec, 2)
    tokens = tok.tokenize(params)  # [2, 178, 144]
    # Token 6 is channel 2 of bn1: its weight and bias, then padding.
    assert torch.equal(tokens[:, 6, :2], torch.stack([params["bn1.weight"][:, 2], params["bn1.bias"][:, 2]], 1))
    assert not tokens[:, 6, 2:].any()
    # The last token is class 9 of fc: its 16 weights and its bias.
    assert torch.equal(tokens[:, -1, :16], params["fc.weight"][:, 9])
    assert torch.equal(tokens[:, -1, 16], params["fc.bias"][:, 9])


def test_attention_tokens_by_hand():
    spec = SPECS["vit"]
    tok = NeuronTokenizer(spec)
    groups = [g.params[0][0] for g in tok.groups]
    li = groups.index("blocks.0.attn.in_proj_weight")
    g = tok.groups[li]
    e = 8
    assert g.rows == 3 * e and tok.widths[li] == e + 1  # one [q; k; v] row + its bias
    assert tok.groups[li + 1].params[0][0] == "blocks.0.attn.out_proj.weight" and tok.groups[li + 1].rows == e
    params = random_params(spec, 2, seed=3)
    tokens = tok.tokenize(params)
    row = tok.offsets[li] + 2 * e + 5  # value dim 5
    assert torch.equal(tokens[:, row, :e], params["blocks.0.attn.in_proj_weight"][:, 2 * e + 5])
    assert torch.equal(tokens[:, row, e], params["blocks.0.attn.in_proj_bias"][:, 2 * e + 5])


@pytest.mark.parametrize("name", GRAPHS)
def test_graph_round_trip_is_exact(name):
    spec = SPECS[name]
    tok = NeuronTokenizer(spec)
    params = random_params(spec, 3, seed=4)
    tokens = tok.tokenize(params)
    assert tokens.shape == (3, tok.n_tokens, tok.width)
    assert not tokens[:, ~tok.mask()].any()  # padding is zero
    back = tok.detokenize(tokens)
    assert list(back) == tok.names
    for k, v in back.items():
        assert torch.equal(v, params[k]), k
    # Buffers are optional on the way in; a missing trainable parameter is a clear error.
    trainable = {k: params[k] for k in tok.names}
    assert torch.equal(tok.tokenize(trainable), tokens)
    with pytest.raises(WeightzooError, match=f"lacks {tok.names[0]!r}"):
        tok.tokenize({k: v for k, v in trainable.items() if k != tok.names[0]})
    with pytest.raises(WeightzooError, match="tokens have shape"):
        tok.detokenize(tokens[:, 1:])


@pytest.mark.parametrize("spec", [mlp_spec(hidden=5), CNNConfig(channels=(3, 4), kernel_size=3).network_spec(
    (1, 8, 8), 10)], ids=["mlp", "cnn"])
def test_a_chain_read_as_a_graph_gives_its_neuron_tokens(spec):
    """The graph rule knows no node kind: on a chain's graph it gives the chain's neuron tokens."""
    params = random_params(spec, 2, seed=1)
    chain, graph = NeuronTokenizer(spec), NeuronTokenizer(spec.as_graph())
    assert (graph.n_tokens, graph.width, graph.offsets) == (chain.n_tokens, chain.width, chain.offsets)
    assert torch.equal(graph.tokenize(params), chain.tokenize(params))


# ----------------------------------------------------------------------------- symmetry
def _rows_moved(tok: NeuronTokenizer, axes: dict[str, tuple[int, int, int]], li: int) -> bool | None:
    """True if a permutation moving ``axes`` ({param: (dim, outer, inner)}) moves whole rows of
    group ``li`` (every parameter of the group along its dim 0, plainly), False if it touches none
    of its parameters, None otherwise (entries move inside the tokens)."""
    hits = [axes.get(name) for name, _ in tok.groups[li].params]
    if all(h is None for h in hits):
        return False
    return True if all(h == (0, 1, 1) for h in hits) else None


def _shuffle(n: int, gen: torch.Generator) -> torch.Tensor:
    """A random permutation of ``0..n-1`` that is not the identity. Shapes: ``[n]``."""
    p = torch.randperm(n, generator=gen)
    return p.roll(1) if torch.equal(p, torch.arange(n)) else p


@pytest.mark.parametrize("name", ["resnet-bn", "vgg", "vit"])
def test_a_neuron_group_permutes_whole_tokens(name):
    """Permuting one neuron group (graph_symmetry) re-orders the tokens of every layer whose rows
    are that group's neurons by exactly that permutation, leaves layers it does not touch alone,
    and so keeps each such layer's multiset of tokens."""
    spec = SPECS[name]
    tok, sym = NeuronTokenizer(spec), graph_symmetries(spec)
    params = random_params(spec, 3, seed=2)
    before = tok.tokenize(params)  # [3, T, D]
    gen = torch.Generator().manual_seed(0)
    moved_layers = 0
    for group in sym.neurons:
        perm = torch.stack([_shuffle(group.size, gen) for _ in range(3)])  # [3, n]
        after = tok.tokenize(permute_graph(sym, params, GraphPermutation(neurons={group.name: perm})))
        axes = {a.name: (a.dim, a.outer, a.inner) for a in group.axes}
        for li in range(len(tok.groups)):
            lo, hi = tok.offsets[li], tok.offsets[li + 1]
            rows = _rows_moved(tok, axes, li)
            if rows is False:
                assert torch.equal(after[:, lo:hi], before[:, lo:hi]), (group.name, li)
            elif rows:
                want = torch.stack([before[b, lo:hi][perm[b]] for b in range(3)])
                assert torch.equal(after[:, lo:hi], want), (group.name, li)
                assert not torch.equal(after[:, lo:hi], before[:, lo:hi])  # it did move
                for b in range(3):  # the same multiset of tokens, in another order
                    key_a, key_b = after[b, lo:hi, 0].argsort(), before[b, lo:hi, 0].argsort()
                    assert torch.equal(after[b, lo:hi][key_a], before[b, lo:hi][key_b])
                moved_layers += 1
    assert moved_layers >= len(sym.neurons)  # every group makes the rows of at least one layer


def test_a_head_permutation_permutes_in_projection_tokens():
    spec = SPECS["vit"]
    tok, sym = NeuronTokenizer(spec), graph_symmetries(spec)
    params = random_params(spec, 2, seed=6)
    full = random_graph_permutation(sym, 2, torch.Generator().manual_seed(3))
    node = sym.heads[0].node
    after = tok.tokenize(permute_graph(sym, params, GraphPermutation(heads={node: full.heads[node]})))
    before = tok.tokenize(params)
    li = [g.params[0][0] for g in tok.groups].index(f"{node}.in_proj_weight")
    lo, hi = tok.offsets[li], tok.offsets[li + 1]
    assert not torch.equal(after[:, lo:hi], before[:, lo:hi])
    for b in range(2):  # whole [q; k; v] rows (with their bias) move: the multiset is unchanged
        key_a, key_b = after[b, lo:hi, 0].argsort(), before[b, lo:hi, 0].argsort()
        assert torch.equal(after[b, lo:hi][key_a], before[b, lo:hi][key_b])
    others = torch.ones(tok.n_tokens, dtype=torch.bool)
    others[lo:hi] = False
    others[tok.offsets[li + 1]:tok.offsets[li + 2]] = False  # out-projection: its columns move
    assert torch.equal(after[:, others], before[:, others])


# ----------------------------------------------------------------------------- the generator
@pytest.mark.parametrize("name", ["resnet-bn", "vit"])
def test_hyperrep_fits_and_samples_graph_networks(name, tmp_path):
    spec = SPECS[name]
    weights = random_params(spec, 10, seed=1)
    gen = build_generator("hyperrep", spec, **FAST)
    assert isinstance(gen.tokenizer, NeuronTokenizer)
    gen.fit(weights, _table(10), seed=0)
    a = gen.sample(4, seed=1)
    assert list(a) == spec.param_names  # buffers included
    for p in spec.params:
        assert a[p.name].shape == (4, *p.shape) and a[p.name].dtype == spec.torch_dtype
        assert torch.isfinite(a[p.name]).all()
        if p.role == "running_var":
            assert (a[p.name] > 0).all()
    again = load_generator(gen.save(tmp_path / "run"))
    b = again.sample(4, seed=1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(gen.sample(4, seed=2)[spec.param_names[0]], a[spec.param_names[0]])


def test_hyperrep_on_a_resnet_bn_zoo(zoo_factory, tmp_path):
    src = zoo_factory(BN_RESNETS)
    out, run = tmp_path / "gen", tmp_path / "run"
    hp = {"epochs": 3, "batch_size": 5, "d_model": 32, "d_latent": 16}
    res = generate_zoo(src, "hyperrep", None, 6, out, hparams=hp, save_to=run, quiet=True)
    assert res.n_train == 10 and res.rows == 6 and res.diverged == 0
    sel = open_zoo(out).select()
    spec, stored = sel.network_spec, sel.stacked()
    assert set(stored) == set(spec.param_names) and any(not p.trainable for p in spec.params)
    assert set(sel.column("status")) == {"ok"}
    assert isinstance(load_generator(run), HyperRepGenerator)
    # Sampling from the saved generator writes the same networks.
    generate_zoo(src, None, None, 6, tmp_path / "again", load_from=run, quiet=True)
    reloaded = open_zoo(tmp_path / "again").select().stacked()
    for k in spec.param_names:
        assert torch.equal(reloaded[k], stored[k]), k


def test_training_defaults_follow_the_architecture_and_are_recorded():
    # Chains keep the values tuned on them; graphs train longer (hyperrep.GRAPH_TRAINING). The
    # resolved values are the recorded hparams, and explicit values (Python or --hparam text) win.
    from weightspace.generators import parse_hparams
    from weightspace.generators.hyperrep import CHAIN_TRAINING, GRAPH_TRAINING
    from zoo_builders.graph_architectures import ResNetConfig

    chain = mlp_spec(hidden=5)
    graph = ResNetConfig(depth=8, width_multiplier=0.25).network_spec((1, 8, 8), 10)
    assert CHAIN_TRAINING == (60, 3e-3) and GRAPH_TRAINING == (200, 1e-2)
    for spec, (epochs, lr) in ((chain, CHAIN_TRAINING), (graph, GRAPH_TRAINING)):
        h = build_generator("hyperrep", spec).hparams
        assert (h["epochs"], h["lr"]) == (epochs, lr)
    h = build_generator("hyperrep", graph, **parse_hparams("hyperrep", ["epochs=7", "lr=0.5"])).hparams
    assert (h["epochs"], h["lr"]) == (7, 0.5)
    for bad in ({"epochs": 2.5}, {"lr": 0}, {"lr": "fast"}):
        with pytest.raises(WeightzooError, match="integer epochs and a positive lr"):
            build_generator("hyperrep", graph, **bad)
