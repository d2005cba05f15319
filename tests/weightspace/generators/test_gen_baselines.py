"""The memorization baselines (noise, average, gaussian): seeded sampling, save/reload, what each
computes (checked against the training networks by hand), hyperparameter parsing and bad input."""

from __future__ import annotations

import pyarrow as pa
import pytest
import torch
from zoo_helpers import mlp_spec, random_weights

from catalog.errors import WeightzooError
from weightspace.generators import build_generator, generator_names, load_generator, parse_hparams
from weightspace.generators.base import CONFIG_FILE, TENSORS_FILE

SPEC = mlp_spec(hidden=6)
N_TRAIN = 12
BASELINES = [("noise", {"sigma": 0.1}), ("average", {"k": 4}), ("gaussian", {})]


def _fitted(name: str, hparams: dict, n: int = N_TRAIN, seed: int = 0):
    weights = random_weights(SPEC, n, seed)
    gen = build_generator(name, SPEC, **hparams)
    gen.fit(weights, pa.table({"test_acc": [0.5] * n}), seed=0)
    return gen, weights


def _bytes(sample: dict[str, torch.Tensor]) -> bytes:
    return b"".join(sample[p.name].contiguous().numpy().tobytes() for p in SPEC.params)


def test_baselines_are_registered():
    assert {"noise", "average", "gaussian"} <= set(generator_names())


@pytest.mark.parametrize(("name", "hparams"), BASELINES)
def test_sample_is_seeded_and_reloads(name, hparams, tmp_path):
    gen, _ = _fitted(name, hparams)
    a, b, c = gen.sample(7, seed=3), gen.sample(7, seed=3), gen.sample(7, seed=4)
    for p in SPEC.params:
        assert a[p.name].shape == (7, *p.shape) and a[p.name].dtype == SPEC.torch_dtype
    assert _bytes(a) == _bytes(b)          # same seed, same bytes
    assert _bytes(a) != _bytes(c)          # another seed, other networks
    run = gen.save(tmp_path / "run")
    assert (run / CONFIG_FILE).is_file() and (run / TENSORS_FILE).is_file()
    again = load_generator(run)
    assert type(again) is type(gen) and again.hparams == gen.hparams
    assert _bytes(again.sample(7, seed=3)) == _bytes(a)  # reload -> identical samples


def test_an_interrupted_save_over_a_generator_leaves_the_old_one_whole(tmp_path, monkeypatch):
    """Ctrl-C while saving over an earlier generator (its tensors written, its config not yet):
    the directory is the earlier generator (new tensors sat beside the old config)."""
    import weightspace.generators.base as base

    old, _ = _fitted("noise", {"sigma": 0.1})
    new, _ = _fitted("gaussian", {}, seed=1)
    run = old.save(tmp_path / "run")
    files = {p.name: p.read_bytes() for p in run.iterdir()}
    real = base.atomic_write_bytes

    def interrupted(path, data):
        if path.name == CONFIG_FILE:
            raise KeyboardInterrupt
        real(path, data)

    with monkeypatch.context() as m:
        m.setattr(base, "atomic_write_bytes", interrupted)
        with pytest.raises(KeyboardInterrupt):
            new.save(run)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == files
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert _bytes(load_generator(run).sample(5, seed=2)) == _bytes(old.sample(5, seed=2))
    new.save(run)
    assert _bytes(load_generator(run).sample(5, seed=2)) == _bytes(new.sample(5, seed=2))


def test_loading_completes_a_save_killed_between_its_renames(tmp_path):
    """A save killed after the old generator was renamed aside (``.run.old-*``) and before the
    complete new one (``.run.saved-*``) took its name: load_generator puts the new one in place
    (it said 'not a generator run' until the next save)."""
    import os

    old, _ = _fitted("noise", {"sigma": 0.1})
    new, _ = _fitted("gaussian", {}, seed=1)
    old.save(tmp_path / "first")
    new.save(tmp_path / "second")
    os.rename(tmp_path / "first", tmp_path / ".run.old-0000beef")
    os.rename(tmp_path / "second", tmp_path / ".run.saved-0000cafe")
    assert _bytes(load_generator(tmp_path / "run").sample(5, seed=2)) == _bytes(new.sample(5, seed=2))
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # the old one is gone


def test_noise_sigma_zero_copies_training_networks_and_noise_scales_with_sigma():
    gen, weights = _fitted("noise", {"sigma": 0.0})
    flat_t = torch.cat([weights[p.name].flatten(1) for p in SPEC.params], 1)       # [N, D]
    sample = gen.sample(20, seed=1)
    flat_s = torch.cat([sample[p.name].flatten(1) for p in SPEC.params], 1)        # [20, D]
    # Every sample is exactly one of the training networks.
    assert ((flat_s[:, None] == flat_t[None]).all(-1).sum(1) == 1).all()
    # sigma scales the same draws: the deviation from the source is linear in sigma, and per
    # tensor it is sigma * (std of that tensor over the training set) * N(0, 1).
    small, _ = _fitted("noise", {"sigma": 0.01})
    big, _ = _fitted("noise", {"sigma": 0.1})
    s1, s2 = small.sample(20, seed=1), big.sample(20, seed=1)
    for p in SPEC.params:
        base = sample[p.name]  # same seed -> same source networks
        torch.testing.assert_close(s2[p.name] - base, 10 * (s1[p.name] - base), rtol=1e-4, atol=1e-6)
        std = weights[p.name].double().std(unbiased=False).float()
        torch.testing.assert_close(big.scale[p.name], std)


def test_average_of_all_training_networks_is_their_mean_and_k1_copies():
    with pytest.warns(UserWarning, match="k=12 >= the 12 training networks.*identical"):
        gen, weights = _fitted("average", {"k": N_TRAIN})
    sample = gen.sample(3, seed=0)
    for p in SPEC.params:  # every sample averages all 12 (in some order): the mean
        torch.testing.assert_close(sample[p.name], weights[p.name].double().mean(0).float().expand(3, *p.shape))
    one, _ = _fitted("average", {"k": 1})
    s = one.sample(5, seed=0)
    w0 = SPEC.params[0].name
    assert all(any(torch.equal(s[w0][i], weights[w0][j]) for j in range(N_TRAIN)) for i in range(5))
    with pytest.warns(UserWarning, match=r"lower k \(hparams=\{'k': 6\}, --hparam k=6\)"):
        clamp, _ = _fitted("average", {"k": 50})  # k > N averages all N
    torch.testing.assert_close(clamp.sample(1, seed=0)[w0][0], weights[w0].double().mean(0).float())


def test_gaussian_fits_per_entry_mean_and_std():
    gen, weights = _fitted("gaussian", {})
    for p in SPEC.params:
        torch.testing.assert_close(gen.mean[p.name], weights[p.name].mean(0))
        torch.testing.assert_close(gen.std[p.name], weights[p.name].std(0, unbiased=False))
    zero, _ = _fitted("gaussian", {"scale": 0.0})  # no spread: every sample is the mean
    s = zero.sample(4, seed=0)
    for p in SPEC.params:
        torch.testing.assert_close(s[p.name], weights[p.name].mean(0).expand(4, *p.shape))
    many = gen.sample(4000, seed=0)
    w = SPEC.params[0].name
    torch.testing.assert_close(many[w].mean(0), gen.mean[w], atol=0.1, rtol=0)
    torch.testing.assert_close(many[w].std(0), gen.std[w], atol=0.1, rtol=0.1)


@pytest.mark.parametrize(("name", "hparams"), BASELINES)
def test_too_few_training_networks(name, hparams):
    with pytest.raises(WeightzooError, match="at least 10 training networks, got 9"):
        _fitted(name, hparams, n=9)


def test_sample_before_fit_and_bad_hparams():
    with pytest.raises(WeightzooError, match="fit"):
        build_generator("noise", SPEC).sample(2)
    with pytest.raises(WeightzooError, match="sigma must be a number >= 0"):
        build_generator("noise", SPEC, sigma=-1.0)
    with pytest.raises(WeightzooError, match="k must be an integer >= 1"):
        build_generator("average", SPEC, k=0)
    with pytest.raises(WeightzooError, match="no hyperparameter"):
        build_generator("gaussian", SPEC, sigma=1.0)


def test_parse_hparams_types_text_by_the_defaults():
    assert parse_hparams("noise", ["sigma=0.05"]) == {"sigma": 0.05}
    assert parse_hparams("average", {"k": "3"}) == {"k": 3}
    assert parse_hparams("average", {"k": 3}) == {"k": 3}  # typed values pass unchanged
    with pytest.raises(WeightzooError, match=r"k='three' is not a valid int"):
        parse_hparams("average", ["k=three"])
    with pytest.raises(WeightzooError, match="has no hyperparameter 'q'; valid: k"):
        parse_hparams("average", ["q=3"])
    with pytest.raises(WeightzooError, match=r"hyperparameter 'sigma' is not KEY=VALUE, e\.g\. "
                                             r"hparams=\['sigma=0\.1'\] \(--hparam sigma=0\.1\)"):
        parse_hparams("noise", ["sigma"])


@pytest.mark.parametrize("method", ["hyperrep", "pdiff", "mip"])
def test_an_untrained_learned_generator_says_so(method):
    """Sampling or saving before fit() is a user error naming the fix, not an assertion."""
    from zoo_helpers import mlp_spec

    from weightspace.generators import build_generator

    gen = build_generator(method, mlp_spec(hidden=4))
    with pytest.raises(WeightzooError, match=f"this {method} generator is not trained; call fit"):
        gen.sample(2, condition={"lr": 0.01} if method == "mip" else None)
    with pytest.raises(WeightzooError, match="not trained"):
        gen.state_tensors()
