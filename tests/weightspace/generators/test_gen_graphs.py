"""Generators on a graph zoo with batch norm (ResNet-8+BN): sampled networks get the running
statistics of their own weights, eval-gen compares like with like (a copy of a training network
is exactly it, a permuted copy is aligned back onto it), and a conditional generator without a
condition is refused before it trains."""

from __future__ import annotations

import json

import pytest
import torch
from gen_helpers import BN_RESNETS, ConditionalMean, conditional_generator

from catalog import open_zoo
from catalog.errors import WeightzooError
from weightspace.analysis.evaluation import recompute_batch_norm
from weightspace.generators import build_generator, load_generator
from weightspace.generators.evaluate import evaluate_generated, flatten
from weightspace.generators.output import generate_zoo
from weightspace.graph_symmetry import graph_symmetries, permute_graph, random_graph_permutation
from zoo_builders import load_zoo_dataset


@pytest.fixture(scope="module")
def resnet_zoo(zoo_factory):
    return zoo_factory(BN_RESNETS)


def _stats(spec, params):
    return {p.name: params[p.name] for p in spec.params if not p.trainable}


def test_sampled_networks_get_the_statistics_of_their_weights(resnet_zoo, tmp_path):
    out, run = tmp_path / "gauss", tmp_path / "run"
    generate_zoo(resnet_zoo, "gaussian", None, 6, out, save_to=run, quiet=True)
    gen = open_zoo(out)
    sel = gen.select()
    spec, stored = sel.network_spec, sel.stacked()
    assert _stats(spec, stored)  # the architecture has batch norm
    sampled = load_generator(run).sample(6, seed=0)
    for p in spec.params:  # the generator's weights, other statistics
        same = torch.equal(stored[p.name], sampled[p.name])
        assert same == p.trainable, p.name
    x = load_zoo_dataset(open_zoo(resnet_zoo)).x_train
    recomputed = recompute_batch_norm(spec, stored, x)
    for name, value in _stats(spec, stored).items():
        torch.testing.assert_close(value, recomputed[name], rtol=1e-6, atol=1e-7)
        if name.endswith("running_var"):
            assert (value > 0).all()
    assert set(sel.column("status")) == {"ok"}
    assert gen.manifest.spec["generated"]["batch_norm_statistics"].startswith("recomputed")


def test_a_chain_zoo_records_no_statistics(tiny_digits_zoo, tmp_path):
    generate_zoo(tiny_digits_zoo, "noise", "checkpoint = 3", 2, tmp_path / "g", quiet=True)
    assert "batch_norm_statistics" not in open_zoo(tmp_path / "g").manifest.spec["generated"]


def test_eval_gen_copies_and_permuted_copies_of_bn_networks(resnet_zoo, tmp_path):
    # noise at sigma 0 copies training networks: their own statistics are recomputed like the
    # training networks', so every copy is the same function (IoU 1) at weight distance 0.
    out = tmp_path / "copies"
    generate_zoo(resnet_zoo, "noise", None, 5, out, hparams={"sigma": 0.0}, quiet=True)
    res = evaluate_generated(out, resnet_zoo, out_dir=tmp_path / "ev", baselines=False, align=True)
    assert res.per_model["max_iou"] == [1.0] * 5
    assert res.per_model["min_l2"] == [0.0] * 5
    assert max(res.per_model["min_l2_aligned"]) < 1e-6

    # A permuted copy (every neuron group, residual streams tied) is far in weights but aligns back.
    src = open_zoo(resnet_zoo).select()
    spec, train = src.network_spec, src.stacked()
    sym = graph_symmetries(spec)
    copy = {k: v[:3] for k, v in train.items()}
    permuted = permute_graph(sym, copy, random_graph_permutation(sym, 3, torch.Generator().manual_seed(3)))
    from weightspace.generators.evaluate import _Train, mispredictions, score

    data = load_zoo_dataset(open_zoo(resnet_zoo))
    errors = mispredictions(spec, train, data.x_test, data.y_test)
    s = score(spec, permuted, _Train(train, errors, flatten(spec, train), data.x_test, data.y_test), align=True)
    assert (s.similarity == 1.0).all()
    assert (s.min_l2 > 0.1).all()
    torch.testing.assert_close(s.min_l2_aligned, torch.zeros(3, dtype=torch.float64), atol=1e-5, rtol=0)


def test_finetune_target_is_the_accuracy_the_builder_measured(resnet_zoo, tmp_path):
    # Fine-tuning reports accuracy with the running statistics training leaves; its target is the
    # training networks' median of that same measure (their stored test_acc), not the accuracy
    # with recomputed statistics that eval-gen compares networks by.
    out = tmp_path / "copies"
    generate_zoo(resnet_zoo, "noise", None, 4, out, hparams={"sigma": 0.0}, quiet=True)
    res = evaluate_generated(out, resnet_zoo, out_dir=tmp_path / "ev", baselines=False, finetune=True,
                             finetune_models=2)
    rows = open_zoo(resnet_zoo).table.to_pylist()
    stored = sorted(r["test_acc"] for r in rows)
    ft = res.finetune
    assert ft["target_acc"] == pytest.approx((stored[4] + stored[5]) / 2)  # the median of 10
    assert ft["target_acc"] != pytest.approx(res.train["acc_median"], abs=1e-6)
    by_run = {r["run_id"]: r["test_acc"] for r in rows}
    for rid, acc in zip(ft["run_ids"], ft["random"]["final_acc"]):  # retrained exactly as built
        assert acc == pytest.approx(by_run[rid], abs=1e-6)


def test_l2_is_over_trained_parameters(resnet_zoo):
    spec = open_zoo(resnet_zoo).select().network_spec
    params = {p.name: torch.zeros(2, *p.shape) for p in spec.params}
    for p in spec.params:
        if not p.trainable:
            params[p.name] += 5.0  # statistics far apart do not move the distance
    n_trained = sum(p.numel for p in spec.params if p.trainable)
    assert flatten(spec, params).shape == (2, n_trained)
    assert flatten(spec, params).abs().max() == 0


def test_eval_gen_baselines_on_bn_networks_are_valid(resnet_zoo, tmp_path):
    out = tmp_path / "noise"
    generate_zoo(resnet_zoo, "noise", None, 4, out, quiet=True)
    res = evaluate_generated(out, resnet_zoo, out_dir=tmp_path / "ev", sigmas=(0.1,))
    report = json.loads(res.json_path.read_text())
    # Before statistics were recomputed, a Gaussian's negative variances made every such network NaN.
    for label in ("noise sigma=0.1", "average", "gaussian"):
        assert report["methods"][label]["n"] == 4
        assert 0.0 <= report["methods"][label]["acc_mean"] <= 1.0
    assert report["methods"]["noise sigma=0.1"]["acc_mean"] > 0.5


def test_conditional_generator_without_condition_is_refused_before_training(resnet_zoo, tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("fit() ran before the condition was checked")

    monkeypatch.setattr(ConditionalMean, "fit", no_training)
    with conditional_generator() as name:
        with pytest.raises(WeightzooError, match=r"is conditional: give the value\(s\) to generate for"):
            generate_zoo(resnet_zoo, name, None, 2, tmp_path / "g", hparams={"condition": ["lr"]}, quiet=True)
    with pytest.raises(WeightzooError, match="--condition lr=VALUE"):
        generate_zoo(resnet_zoo, "mip", None, 2, tmp_path / "g", quiet=True)
    assert not (tmp_path / "g").exists()
    assert build_generator("mip", open_zoo(resnet_zoo).select().network_spec).conditional
