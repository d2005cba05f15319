"""hyperrep: neuron tokens (exact round trip, permutation commutes with tokenizing), the KDE,
seeded sampling, save/reload, permutation robustness of the trained encoder, quality on the tiny
digits zoo, and bad input."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from zoo_helpers import TINY_DIGITS

from catalog import open_zoo
from catalog.errors import WeightzooError
from catalog.network import LayerSpec, NetworkSpec
from weightspace.analysis.evaluation import population_loss_accuracy
from weightspace.generators import build_generator, load_generator
from weightspace.generators._tokens import NeuronTokenizer
from weightspace.generators.hyperrep import HyperRepGenerator, kde_factor
from weightspace.symmetry import permute_neurons, random_permutations
from zoo_builders import load_zoo_dataset
from zoo_builders.architectures import MLPConfig, SirenConfig


def mlp_spec(widths: tuple[int, ...] = (5, 7, 6, 3), activation: str = "relu") -> NetworkSpec:
    return MLPConfig(hidden=tuple(widths[1:-1]), activation=activation).network_spec((widths[0],), widths[-1])


def siren_spec() -> NetworkSpec:
    return SirenConfig(hidden=(16, 16)).network_spec((1, 8, 8), 1)


def cnn_spec(dim: int) -> NetworkSpec:
    kind, k = f"conv{dim}d", (3,) * dim
    return NetworkSpec("cnn", (1, 8, 8) if dim == 2 else (1, 20), (
        LayerSpec(kind, 1, 4, "layers.0.weight", "layers.0.bias", kernel_size=k, activation="relu"),
        LayerSpec(kind, 4, 5, "layers.1.weight", "layers.1.bias", kernel_size=k, stride=2, padding=1,
                  activation="relu", pool="global_avg"),
        LayerSpec("linear", 5, 3, "layers.2.weight", "layers.2.bias")))


def random_params(spec: NetworkSpec, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {p.name: torch.randn(batch, *p.shape, generator=g) / max(1, p.numel // p.shape[0]) ** 0.5
            for p in spec.params}


SPEC = mlp_spec()  # 5 -> 7 -> 6 -> 3, relu
FAST = {"epochs": 3, "batch_size": 4, "d_model": 16, "d_latent": 8, "heads": 2}
SPECS = [mlp_spec(), mlp_spec(activation="tanh"), siren_spec(), cnn_spec(1), cnn_spec(2)]
IDS = ["relu-mlp", "tanh-mlp", "siren", "cnn1d", "cnn2d"]


def _bytes(spec, params: Mapping[str, torch.Tensor]) -> bytes:
    return b"".join(params[p.name].contiguous().numpy().tobytes() for p in spec.params)


def _table(n: int) -> pa.Table:
    return pa.table({"test_acc": [i / n for i in range(n)]})


# ----------------------------------------------------------------------------- tokens
def test_token_layout_by_hand():
    tok = NeuronTokenizer(SPEC)
    # Layer 0: 7 neurons of 5 weights + bias = 6; layer 1: 6 x (7 + 1) = 8; layer 2: 3 x (6 + 1) = 7.
    assert tok.widths == [6, 8, 7] and tok.width == 8
    assert tok.offsets == [0, 7, 13, 16] and tok.n_tokens == 16
    assert tok.layer_index().tolist() == [0] * 7 + [1] * 6 + [2] * 3
    assert tok.neuron_index().tolist() == [*range(7), *range(6), *range(3)]
    assert int(tok.mask().sum()) == SPEC.n_params == 7 * 6 + 6 * 8 + 3 * 7
    params = random_params(SPEC, 2)
    tokens = tok.tokenize(params)  # [2, 16, 8]
    # Token 9 is neuron 2 of layer 1: its 7 incoming weights, its bias, no padding.
    assert torch.equal(tokens[:, 9, :7], params["layers.1.weight"][:, 2])
    assert torch.equal(tokens[:, 9, 7], params["layers.1.bias"][:, 2])
    assert torch.equal(tokens[:, 14, 7], torch.zeros(2))  # layer 2 tokens are padded by one zero


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_tokenize_round_trip_is_exact(spec):
    tok = NeuronTokenizer(spec)
    params = random_params(spec, 3, seed=4)
    tokens = tok.tokenize(params)
    assert tokens.shape == (3, tok.n_tokens, tok.width)
    assert not tokens[:, ~tok.mask()].any()  # padding is zero
    back = tok.detokenize(tokens)
    assert list(back) == spec.param_names
    assert _bytes(spec, back) == _bytes(spec, params)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_tokenizer_commutes_with_neuron_permutation(spec):
    """Permuting hidden layer l permutes the tokens of layer l and the incoming-weight blocks of
    the tokens of layer l + 1, nothing else: tokenize(permute(p)) == permute_tokens(tokenize(p))."""
    tok = NeuronTokenizer(spec)
    params = random_params(spec, 3, seed=5)
    perms = random_permutations(spec, 3, torch.Generator().manual_seed(0))
    got = tok.tokenize(permute_neurons(spec, params, perms))
    want = tok.tokenize(params).clone()
    for li, perm in perms.items():
        lo, hi = tok.offsets[li], tok.offsets[li + 1]
        want[:, lo:hi] = torch.stack([want[b, lo:hi][perm[b]] for b in range(3)])
        nxt = spec.layers[li + 1]
        lo, hi = tok.offsets[li + 1], tok.offsets[li + 2]
        k = math.prod(nxt.kernel_size)
        blocks = want[:, lo:hi, :nxt.in_features * k].reshape(3, hi - lo, nxt.in_features, k)
        want[:, lo:hi, :nxt.in_features * k] = torch.stack(
            [blocks[b][:, perm[b]] for b in range(3)]).reshape(3, hi - lo, -1)
    assert torch.equal(got, want)
    assert not torch.equal(got, tok.tokenize(params))


def test_graph_specs_get_graph_tokens():
    """A graph spec is no longer refused: the MLP's own graph gets the chain's neuron tokens
    (graph architectures: test_hyperrep_graphs.py)."""
    gen = build_generator("hyperrep", SPEC.as_graph())
    params = random_params(SPEC, 2)
    assert torch.equal(gen.tokenizer.tokenize(params), NeuronTokenizer(SPEC).tokenize(params))


# ----------------------------------------------------------------------------- KDE
def test_kde_bandwidth_rules_by_hand():
    # Scott: n^(-1/(d+4)); n = 16, d = 4: 16^(-1/8) = 2^(-1/2).
    assert kde_factor("scott", 16, 4) == pytest.approx(2 ** -0.5)
    # Silverman: (n (d + 2) / 4)^(-1/(d+4)); n = 16, d = 2: 16^(-1/6) = 2^(-2/3).
    assert kde_factor("silverman", 16, 2) == pytest.approx(2 ** (-2 / 3))
    assert kde_factor(0.25, 16, 2) == kde_factor("0.25", 16, 2) == 0.25
    # From the command line: the text of a number or of a rule.
    from weightspace.generators import parse_hparams

    assert parse_hparams("hyperrep", ["bandwidth=scott"]) == {"bandwidth": "scott"}
    assert kde_factor(parse_hparams("hyperrep", ["bandwidth=0.3"])["bandwidth"], 16, 2) == 0.3
    with pytest.raises(WeightzooError, match="bandwidth"):
        kde_factor("wide", 16, 2)
    with pytest.raises(WeightzooError, match="bandwidth"):
        build_generator("hyperrep", SPEC, bandwidth="wide")


@pytest.fixture(scope="module")
def fitted() -> tuple[HyperRepGenerator, dict[str, torch.Tensor]]:
    weights = random_params(SPEC, 12, seed=1)
    gen = build_generator("hyperrep", SPEC, **FAST, q=0.25)
    gen.fit(weights, _table(12), seed=0)
    return gen, weights


def test_zero_bandwidth_decodes_the_best_models_latents(fitted, tmp_path):
    gen, weights = fitted
    # q = 0.25 of 12 -> the 3 networks with the highest test_acc: rows 11, 10, 9.
    best = {k: v[[11, 10, 9]] for k, v in weights.items()}
    assert torch.equal(gen.latents, gen.encode(best).flatten(1))
    decoded = gen.decode(gen.encode(best))
    gen0 = load_generator(gen.save(tmp_path / "run"))  # a copy whose bandwidth may change
    gen0.hparams["bandwidth"] = 0.0
    sample = gen0.sample(9, seed=2)
    flat_s = torch.cat([sample[p.name].flatten(1) for p in SPEC.params], 1)  # [9, P]
    flat_d = torch.cat([decoded[p.name].flatten(1) for p in SPEC.params], 1)  # [3, P]
    # Every sample is exactly the decoding of one of the three latents.
    assert ((flat_s[:, None] == flat_d[None]).all(-1).sum(1) == 1).all()
    # With a bandwidth the draws move off the latents, further for a wider kernel.
    gen0.hparams["bandwidth"] = 0.05
    near = torch.cat([v.flatten(1) for v in gen0.sample(9, seed=2).values()], 1)
    gen0.hparams["bandwidth"] = 0.5
    far = torch.cat([v.flatten(1) for v in gen0.sample(9, seed=2).values()], 1)
    assert 0 < (near - flat_s).norm() < (far - flat_s).norm()


# ----------------------------------------------------------------------------- Generator contract
def test_samples_are_seeded_and_reload_identically(fitted, tmp_path):
    gen, _ = fitted
    a, b, c = gen.sample(5, seed=3), gen.sample(5, seed=3), gen.sample(5, seed=4)
    for p in SPEC.params:
        assert a[p.name].shape == (5, *p.shape) and a[p.name].dtype == SPEC.torch_dtype
    assert _bytes(SPEC, a) == _bytes(SPEC, b)
    assert _bytes(SPEC, a) != _bytes(SPEC, c)
    again = load_generator(gen.save(tmp_path / "run"))
    assert isinstance(again, HyperRepGenerator) and again.hparams == gen.hparams
    assert _bytes(SPEC, again.sample(5, seed=3)) == _bytes(SPEC, a)


def test_a_saved_config_whose_sizes_cannot_fit_is_refused_before_allocating(fitted, tmp_path):
    """generator.json's hparams size the networks load_state rebuilds: d_model = 2000000000 asked
    torch for hundreds of GB. Refused up front, naming the value."""
    import json

    gen, _ = fitted
    run = gen.save(tmp_path / "run")
    config = json.loads((run / "generator.json").read_text())
    config["hparams"]["d_model"] = 2_000_000_000
    (run / "generator.json").write_text(json.dumps(config))
    with pytest.raises(WeightzooError, match=r"rebuilding the hyperrep generator of .*generator.json \(hparams: .*"
                                             r"d_model=2000000000.*\) needs more than .*, half the .* of memory "
                                             r"available \(it asked for a tensor of shape \[2,000,000,000, .*it is "
                                             r"corrupt or was crafted; train the generator again"):
        load_generator(run)


def test_training_is_seeded():
    weights = random_params(SPEC, 10, seed=2)
    runs = []
    for _ in range(2):
        gen = build_generator("hyperrep", SPEC, **{**FAST, "epochs": 1})
        gen.fit(weights, _table(10), seed=7)
        runs.append(_bytes(SPEC, gen.sample(3, seed=0)))
    assert runs[0] == runs[1]


def test_bad_input():
    weights = random_params(SPEC, 9)
    gen = build_generator("hyperrep", SPEC, **FAST)
    with pytest.raises(WeightzooError, match="at least 10 training networks, got 9"):
        gen.fit(weights, _table(9))
    with pytest.raises(WeightzooError, match="not trained"):
        gen.sample(2)
    weights = random_params(SPEC, 10)
    with pytest.raises(WeightzooError, match="column 'val_acc'"):
        build_generator("hyperrep", SPEC, **FAST, select_column="val_acc").fit(weights, _table(10))
    with pytest.raises(WeightzooError, match="not numeric"):
        gen.fit(weights, pa.table({"test_acc": ["a"] * 10}))
    with pytest.raises(WeightzooError, match="q must be"):
        build_generator("hyperrep", SPEC, q=0.0)


# ----------------------------------------------------------------------------- on a real zoo
@pytest.fixture(scope="module")
def digits(zoo_factory: Callable[[Mapping], Path]):
    zoo = open_zoo(zoo_factory(TINY_DIGITS))
    sel = zoo.select(where="checkpoint = 3")
    return sel.network_spec, sel.stacked(), sel.table, load_zoo_dataset(zoo)


@pytest.fixture(scope="module")
def digits_gen(digits) -> HyperRepGenerator:
    spec, params, table, _ = digits
    gen = build_generator("hyperrep", spec, epochs=40, batch_size=6)
    gen.fit(params, table, seed=0)
    return gen


@pytest.mark.slow
def test_samples_beat_random_init_on_tiny_digits(digits, digits_gen):
    spec, params, _, data = digits
    _, acc_train = population_loss_accuracy(spec, params, data.x_test, data.y_test)
    _, acc_gen = population_loss_accuracy(spec, digits_gen.sample(20, seed=0), data.x_test, data.y_test)
    # Chance is 10%; the 18 trained networks (3 epochs, lr 3e-4 .. 3e-2) average ~ acc_train.
    # The samples come from the KDE of the best 30%, so they must work well above chance.
    assert float(acc_gen.mean()) > 0.5, (float(acc_gen.mean()), float(acc_train.mean()))
    assert float(acc_gen.mean()) > float(acc_train.mean()) - 0.15


@pytest.mark.slow
def test_encoder_is_robust_to_neuron_permutations(digits, digits_gen):
    """The contrastive loss on permuted views makes the pooled embedding of a permuted network
    identify its original among all training networks (chance 1/18)."""
    spec, params, _, _ = digits
    n = next(iter(params.values())).shape[0]
    model = digits_gen.model
    with torch.no_grad():
        orig = torch.nn.functional.normalize(model.project(digits_gen.encode(params)), dim=1)  # [N, K]
        perm = permute_neurons(spec, params, random_permutations(spec, n, torch.Generator().manual_seed(1)))
        view = torch.nn.functional.normalize(model.project(digits_gen.encode(perm)), dim=1)  # [N, K]
    hits = (view @ orig.T).argmax(1) == torch.arange(n)
    assert float(hits.float().mean()) >= 0.5, hits.tolist()
    assert np.isfinite(digits_gen.history[-1]["loss"])


@pytest.mark.parametrize("steps", range(1, 21))
def test_one_cycle_schedule_works_for_every_step_count(steps):
    # torch's OneCycleLR divides by zero when pct_start * steps == 1 (10 steps at 0.1, 20 at 0.05)
    from weightspace.generators.base import one_cycle
    for pct in (0.1, 0.05):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        sched = one_cycle(opt, 1.0, steps, pct)
        for _ in range(steps):
            opt.step()
            sched.step()


def test_hyperrep_trains_for_exactly_ten_steps():
    weights = random_params(SPEC, 12, seed=1)
    gen = build_generator("hyperrep", SPEC, **{**FAST, "epochs": 10, "batch_size": 12})  # 1 step an epoch
    gen.fit(weights, _table(12), seed=0)
    assert len(gen.history) == 10
