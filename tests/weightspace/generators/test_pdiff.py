"""pdiff: the DDPM schedule against a hand computation, flat vectors of a parameter subset,
seeded sampling, save/reload, unmodelled parameters copied from the best network, quality on the
tiny digits zoo, and bad input."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from zoo_helpers import TINY_DIGITS, mlp_spec, random_weights

from catalog import open_zoo
from catalog.errors import WeightzooError
from weightspace.analysis.evaluation import population_loss_accuracy
from weightspace.generators import build_generator, load_generator
from weightspace.generators._tokens import flatten, select_params, unflatten
from weightspace.generators.pdiff import PDiffGenerator, ddpm_schedule
from zoo_builders import load_zoo_dataset

SPEC = mlp_spec(hidden=6)  # 4 -> 6 -> 3: layers.0 weight [6, 4] + bias [6], layers.1 weight [3, 6] + bias [3]
FAST = {"channels": [4, 8], "latent_channels": 2, "ae_epochs": 3, "ddpm_steps": 30, "hidden": 16,
        "timesteps": 10, "beta_start": 0.01, "beta_end": 0.2, "batch_size": 4}


def _bytes(spec, params: Mapping[str, torch.Tensor]) -> bytes:
    return b"".join(params[p.name].contiguous().numpy().tobytes() for p in spec.params)


def _table(n: int) -> pa.Table:
    return pa.table({"test_acc": [((7 * i) % n) / n for i in range(n)]})  # best: i with 7i = n - 1 (mod n)


def test_ddpm_schedule_matches_hand_computation():
    s = ddpm_schedule(4, 0.1, 0.4)
    # betas linear 0.1 .. 0.4 in 4 steps: 0.1, 0.2, 0.3, 0.4; alphas 0.9, 0.8, 0.7, 0.6;
    # alpha_bar = running product: 0.9, 0.9 * 0.8 = 0.72, 0.72 * 0.7 = 0.504, 0.504 * 0.6 = 0.3024.
    torch.testing.assert_close(s["betas"], torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64))
    torch.testing.assert_close(s["alpha_bar"], torch.tensor([0.9, 0.72, 0.504, 0.3024], dtype=torch.float64))
    # posterior variance beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t): t = 0 -> 0;
    # t = 1 -> 0.2 * 0.1 / 0.28 = 1/14; t = 3 -> 0.4 * 0.496 / 0.6976 = 0.28440366...
    torch.testing.assert_close(s["posterior_var"][[0, 1, 3]],
                               torch.tensor([0.0, 1 / 14, 0.4 * 0.496 / 0.6976], dtype=torch.float64))
    # The default: Ho et al.'s 1e-4 .. 0.02 over 1000 steps rescaled to 200 steps (x5) ends near
    # pure noise: log alpha_bar_T = sum log(1 - beta_t) ~ -200 * mean(beta) = -200 * 0.05025 = -10.05
    # (the quadratic terms add ~ -0.4): alpha_bar_T ~ 3e-5.
    d = ddpm_schedule(200, 5e-4, 0.1)
    assert 1e-5 < float(d["alpha_bar"][-1]) < 5e-5
    with pytest.raises(WeightzooError, match="beta"):
        ddpm_schedule(10, 0.2, 0.1)


def test_flat_vectors_of_a_subset_round_trip():
    w = random_weights(SPEC, 3, 0)
    names = select_params(SPEC, "layers.1.bias, layers.0.weight", "test")  # any order in, spec order out
    assert names == ["layers.0.weight", "layers.1.bias"]
    assert select_params(SPEC, ["layers.1.bias", "layers.0.weight"], "test") == names
    flat = flatten(w, names)
    assert flat.shape == (3, 6 * 4 + 3)
    back = unflatten(flat, SPEC, names)
    assert all(torch.equal(back[k], w[k]) for k in names)
    assert select_params(SPEC, None, "test") == SPEC.param_names
    with pytest.raises(WeightzooError, match="unknown parameter"):
        select_params(SPEC, ["layers.2.weight"], "test")


@pytest.fixture(scope="module")
def fitted() -> tuple[PDiffGenerator, dict[str, torch.Tensor]]:
    w = random_weights(SPEC, 12, 1)
    gen = build_generator("pdiff", SPEC, **FAST)
    gen.fit(w, _table(12), seed=0)
    return gen, w


def test_samples_are_seeded_and_reload_identically(fitted, tmp_path):
    gen, _ = fitted
    a, b, c = gen.sample(5, seed=3), gen.sample(5, seed=3), gen.sample(5, seed=4)
    assert list(a) == SPEC.param_names
    for p in SPEC.params:
        assert a[p.name].shape == (5, *p.shape) and a[p.name].dtype == SPEC.torch_dtype
    assert _bytes(SPEC, a) == _bytes(SPEC, b)
    assert _bytes(SPEC, a) != _bytes(SPEC, c)
    again = load_generator(gen.save(tmp_path / "run"))
    assert isinstance(again, PDiffGenerator) and again.hparams == gen.hparams
    assert _bytes(SPEC, again.sample(5, seed=3)) == _bytes(SPEC, a)


def test_training_is_seeded():
    w = random_weights(SPEC, 10, 2)
    runs = []
    for _ in range(2):
        gen = build_generator("pdiff", SPEC, **FAST)
        gen.fit(w, _table(10), seed=5)
        runs.append(_bytes(SPEC, gen.sample(2, seed=0)))
    assert runs[0] == runs[1]


def test_latents_span_only_the_best_networks(fitted):
    gen, w = fitted
    # q = 0.3 of 12 -> ceil(3.6) = 4 networks; 4 latents span 3 dimensions around their mean.
    assert gen.basis.shape == (3, gen.latent_shape[0] * gen.latent_shape[1])
    torch.testing.assert_close(gen.basis @ gen.basis.T, torch.eye(3, dtype=torch.float64))


def test_unmodelled_parameters_are_copied_from_the_best_network(tmp_path):
    w = random_weights(SPEC, 12, 3)
    table = _table(12)  # test_acc = (7 i mod 12) / 12 is highest (11/12) at i = 5 (7 * 5 = 35 = 2 * 12 + 11)
    gen = build_generator("pdiff", SPEC, **FAST, params=["layers.1.weight", "layers.1.bias"])
    gen.fit(w, table, seed=0)
    assert gen.hparams["params"] == ["layers.1.weight", "layers.1.bias"]
    sample = gen.sample(4, seed=1)
    for name in ("layers.0.weight", "layers.0.bias"):
        assert all(torch.equal(sample[name][i], w[name][5]) for i in range(4))
    assert not any(torch.equal(sample["layers.1.weight"][i], w["layers.1.weight"][5]) for i in range(4))
    again = load_generator(gen.save(tmp_path / "run"))
    assert _bytes(SPEC, again.sample(4, seed=1)) == _bytes(SPEC, sample)


def test_graph_specs_work_on_the_flat_vector():
    spec = SPEC.as_graph()
    w = random_weights(SPEC, 10, 4)  # same parameter names and shapes as the chain
    gen = build_generator("pdiff", spec, **FAST)
    gen.fit(w, _table(10), seed=0)
    assert {k: tuple(v.shape[1:]) for k, v in gen.sample(2).items()} == {p.name: p.shape for p in spec.params}


def test_bad_input():
    gen = build_generator("pdiff", SPEC, **FAST)
    with pytest.raises(WeightzooError, match="at least 10 training networks, got 9"):
        gen.fit(random_weights(SPEC, 9, 0), _table(9))
    with pytest.raises(WeightzooError, match="not trained"):
        gen.sample(2)
    with pytest.raises(WeightzooError, match="column 'val_acc'"):
        build_generator("pdiff", SPEC, **FAST, select_column="val_acc").fit(random_weights(SPEC, 10, 0), _table(10))
    with pytest.raises(WeightzooError, match="unknown parameter"):
        build_generator("pdiff", SPEC, params=["nope"])
    with pytest.raises(WeightzooError, match="not conditional"):
        gen.sample(2, condition={"lr": 0.1})


@pytest.mark.slow
def test_samples_beat_random_init_on_tiny_digits(zoo_factory: Callable[[Mapping], Path]):
    zoo = open_zoo(zoo_factory(TINY_DIGITS))
    sel = zoo.select(where="checkpoint = 3")
    spec, params, data = sel.network_spec, sel.stacked(), load_zoo_dataset(zoo)
    gen = build_generator("pdiff", spec, ae_epochs=100, ddpm_steps=1500, hidden=128)
    gen.fit(params, sel.table, seed=0)
    _, acc = population_loss_accuracy(spec, gen.sample(20, seed=0), data.x_test, data.y_test)
    # Chance is 10% (random inits score 9-16% here); the DDPM learns the latents of the best 30%
    # (6 networks at 63-90%); measured mean 72% (min 48%), so 45% leaves room for platform noise.
    assert float(acc.mean()) > 0.45, acc.tolist()


def test_pdiff_trains_for_exactly_ten_and_twenty_steps():
    # 5 epochs x 2 batches = 10 autoencoder steps; 20 DDPM steps at pct_start 0.05 (divided by zero before)
    w = random_weights(SPEC, 12, 3)
    gen = build_generator("pdiff", SPEC, **{**FAST, "ae_epochs": 5, "batch_size": 6, "ddpm_steps": 20})
    gen.fit(w, _table(12), seed=0)
    assert len(gen.history["reconstruction"]) == 5
