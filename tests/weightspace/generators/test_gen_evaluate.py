"""eval-gen: the misprediction IoU against a hand computation, the noise baseline's IoU rising to
1 as sigma -> 0, L2 with and without weight matching, the written report, fine-tuning, and the
source check."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from gen_helpers import LAST, flat

from catalog import open_zoo
from catalog.errors import WeightzooError
from catalog.format import read_manifest, write_manifest
from catalog.network import population_forward
from weightspace.generators import build_generator
from weightspace.generators.evaluate import (
    FIGURE_NAME,
    JSON_NAME,
    GenEvalResult,
    _Train,
    evaluate_generated,
    flatten,
    format_number,
    iou_matrix,
    max_iou,
    mispredictions,
    score,
)
from weightspace.generators.output import generate_zoo
from weightspace.symmetry import permute_neurons
from zoo_builders import load_zoo_dataset


def _sets_to_bool(sets: list[set[int]], n: int) -> torch.Tensor:
    out = torch.zeros(len(sets), n, dtype=torch.bool)
    for i, s in enumerate(sets):
        out[i, list(s)] = True
    return out


def test_iou_matrix_by_hand():
    # Misprediction sets over N = 6 test examples:
    #   E_g0 = {0, 1, 2}   E_g1 = {}   E_g2 = {3}
    #   E_t0 = {1, 2, 3}   E_t1 = {}   E_t2 = {0, 1, 2, 3, 4}
    # IoU = |E_g & E_t| / |E_g | E_t|:
    #   g0: t0 {1,2}/{0,1,2,3} = 2/4; t1 0/3 = 0; t2 {0,1,2}/{0,1,2,3,4} = 3/5
    #   g1: t0 0/3 = 0; t1 0/0 := 1 (two empty sets are equal); t2 0/5 = 0
    #   g2: t0 {3}/{1,2,3} = 1/3; t1 0/1 = 0; t2 {3}/{0,1,2,3,4} = 1/5
    g = _sets_to_bool([{0, 1, 2}, set(), {3}], 6)
    t = _sets_to_bool([{1, 2, 3}, set(), {0, 1, 2, 3, 4}], 6)
    expected = torch.tensor([[2 / 4, 0, 3 / 5], [0, 1, 0], [1 / 3, 0, 1 / 5]], dtype=torch.float64)
    torch.testing.assert_close(iou_matrix(g, t), expected)
    torch.testing.assert_close(iou_matrix(t, g), expected.T)  # symmetric in its arguments
    values, which = max_iou(g, t)
    torch.testing.assert_close(values, torch.tensor([3 / 5, 1, 1 / 3], dtype=torch.float64))
    assert which.tolist() == [2, 1, 0]
    # Against themselves without the diagonal: t0's best other is t2 (3/5), t1's are all 0, t2's is t0.
    self_values, self_which = max_iou(t, t, exclude_self=True)
    torch.testing.assert_close(self_values, torch.tensor([3 / 5, 0, 3 / 5], dtype=torch.float64))
    assert self_which.tolist()[0] == 2 and self_which.tolist()[2] == 0
    with pytest.raises(WeightzooError, match="same test split"):
        iou_matrix(g, t[:, :5])


def test_iou_scales_to_a_thousand_networks():
    gen = torch.Generator().manual_seed(0)
    g = torch.rand(100, 450, generator=gen) < 0.1
    t = torch.rand(1000, 450, generator=gen) < 0.1
    iou = iou_matrix(g, t)
    assert iou.shape == (100, 1000)
    i, j = 17, 423  # one entry the slow way
    inter = (g[i] & t[j]).sum().item()
    union = (g[i] | t[j]).sum().item()
    assert iou[i, j].item() == pytest.approx(inter / union)


@pytest.fixture(scope="module")
def train(tiny_digits_zoo):
    zoo = open_zoo(tiny_digits_zoo)
    sel = zoo.select(where=f"{LAST} AND status = 'ok'")
    spec = sel.network_spec
    params = sel.stacked()
    data = load_zoo_dataset(zoo)
    errors = mispredictions(spec, params, data.x_test, data.y_test)
    return spec, sel, _Train(params, errors, flatten(spec, params), data.x_test, data.y_test)


def test_noise_max_iou_rises_to_one_as_sigma_falls(train):
    spec, sel, t = train
    means = []
    for sigma in (1.0, 0.1, 0.01, 0.0):
        g = build_generator("noise", spec, sigma=sigma)
        g.fit(t.params, sel.table)
        s = score(spec, g.sample(30, seed=0), t)
        means.append(s.similarity.mean().item())
    assert means[0] < means[1] < means[2] < means[3]
    assert means[3] == 1.0  # sigma 0: copies, each exactly matches its source
    assert (s.similarity == 1.0).all() and (s.min_l2 == 0).all()


def test_weight_matching_sees_through_a_permuted_copy(train):
    spec, _, t = train
    copy = {k: v[:3].clone() for k, v in t.params.items()}
    gen = torch.Generator().manual_seed(0)
    perms = {li: torch.stack([torch.randperm(spec.layers[li].out_features, generator=gen) for _ in range(3)])
             for li in range(len(spec.layers) - 1)}
    permuted = permute_neurons(spec, copy, perms)
    s = score(spec, permuted, t, align=True)
    assert (s.similarity == 1.0).all()  # the same functions: the same mistakes
    assert (s.min_l2 > 0.1).all()      # but other weights
    torch.testing.assert_close(s.min_l2_aligned, torch.zeros(3, dtype=torch.float64), atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def generated(tiny_digits_zoo, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "gen"
    generate_zoo(tiny_digits_zoo, "noise", LAST, 10, out, hparams={"sigma": 0.1}, quiet=True)
    return out


def test_eval_gen_report_matches_a_hand_computation(generated, tiny_digits_zoo, train, tmp_path):
    spec, sel, t = train
    res = evaluate_generated(generated, tiny_digits_zoo, out_dir=tmp_path / "ev", sigmas=(0.01, 0.1))
    assert res.where == LAST  # recorded by zoo generate
    assert set(res.methods) == {"generated: noise", "noise sigma=0.01", "noise sigma=0.1", "average", "gaussian"}
    report = json.loads((tmp_path / "ev" / JSON_NAME).read_text())
    assert report["methods"] == res.methods and report["per_model"]["model_id"] == res.per_model["model_id"]
    assert (tmp_path / "ev" / FIGURE_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Per generated network: predictions -> misprediction sets -> IoU with Python sets.
    gen_zoo = open_zoo(generated)
    gen_params = gen_zoo.select().stacked()
    x = t.x.reshape(-1, *spec.input_shape)
    wrong_g = population_forward(spec, gen_params, x).argmax(-1) != t.y   # [G, N]
    wrong_t = population_forward(spec, t.params, x).argmax(-1) != t.y     # [T, N]
    sets_t = [set(torch.nonzero(row).flatten().tolist()) for row in wrong_t]
    train_ids = sel.column("model_id")
    for i, mid in enumerate(res.per_model["model_id"]):
        e_g = set(torch.nonzero(wrong_g[gen_zoo.table.column("model_id").to_pylist().index(mid)]).flatten().tolist())
        ious = [len(e_g & e_t) / len(e_g | e_t) if e_g | e_t else 1.0 for e_t in sets_t]
        assert res.per_model["max_iou"][i] == pytest.approx(max(ious))
        assert res.per_model["nearest_iou"][i] == train_ids[max(range(len(ious)), key=ious.__getitem__)]
        assert res.per_model["acc"][i] == pytest.approx(1 - len(e_g) / len(t.y))
    # The generated zoo's own test_acc column agrees with eval-gen's accuracy.
    acc = dict(zip(gen_zoo.table.column("model_id").to_pylist(), gen_zoo.table.column("test_acc").to_pylist()))
    assert [acc[m] for m in res.per_model["model_id"]] == pytest.approx(res.per_model["acc"], abs=1e-6)
    # min L2 by hand.
    d = torch.cdist(flat({k: gen_params[k].double() for k in gen_params}),
                    flat({k: t.params[k].double() for k in gen_params}))
    assert sorted(res.per_model["min_l2"]) == pytest.approx(sorted(d.min(1).values.tolist()))
    # The training networks' own IoU: each against the others, never itself (< 1 here).
    assert len(res.train["self_max_iou"]) == len(train_ids) and max(res.train["self_max_iou"]) < 1


def test_eval_gen_without_baselines_and_with_finetune(generated, tiny_digits_zoo, tmp_path):
    res = evaluate_generated(generated, tiny_digits_zoo, out_dir=tmp_path / "ev", baselines=False, finetune=True,
                             finetune_models=2)
    assert list(res.methods) == ["generated: noise"]
    ft = res.finetune
    assert ft["models"] == 2 and ft["epochs"] == 3 and len(ft["run_ids"]) == 2
    for tag in ("generated", "random"):
        assert len(ft[tag]["acc_curve"]) == 4
        assert all(e is None or 0 <= e <= 3 for e in ft[tag]["epochs_to_target"])
    # Random init retrains each run with the source zoo's recipe: it ends where the zoo's run ended.
    zoo = open_zoo(tiny_digits_zoo)
    for rid, acc in zip(ft["run_ids"], ft["random"]["final_acc"]):
        row = zoo.select(where=f"run_id = '{rid}' AND {LAST}").table.to_pylist()[0]
        assert acc == pytest.approx(row["test_acc"], abs=1e-6)


def test_eval_gen_source_must_match(generated, tiny_digits_zoo, zoo_dir, tmp_path):
    with pytest.raises(WeightzooError, match=r"generated from zoo 'tiny-digits'.*but train_zoo \(--train\) is zoo "
                                             r"'tiny'.*names differ; pass the zoo it was generated from as "
                                             r"train_zoo \(--train\)$"):
        evaluate_generated(generated, zoo_dir, out_dir=tmp_path / "ev")
    # Same name, other networks: a copy whose spec was edited.
    other = tmp_path / "other"
    shutil.copytree(tiny_digits_zoo, other)
    m = read_manifest(other)
    m.spec = {**m.spec, "training": {**m.spec["training"], "epochs": 4}}
    write_manifest(other, m)
    with pytest.raises(WeightzooError, match="networks \\(content sha256s\\) differ"):
        evaluate_generated(generated, other, out_dir=tmp_path / "ev")
    with pytest.raises(WeightzooError, match="is not a generated zoo"):
        evaluate_generated(tiny_digits_zoo, tiny_digits_zoo, out_dir=tmp_path / "ev")
    assert not (tmp_path / "ev").exists()


def test_eval_gen_out_error_names_the_out_dir_argument(zoo_copy):
    with pytest.raises(WeightzooError, match=r"^out_dir='.*ev' \(--out\) lies inside the zoo"):
        evaluate_generated(zoo_copy, zoo_copy, out_dir=zoo_copy / "ev")


def test_train_classifiers_from_given_init_equals_the_runs_own_init(tiny_digits_zoo):
    """Fine-tuning starts populations from given weights: from each run's own epoch-0 weights
    (stored at checkpoint 0) it trains exactly what the build trained."""
    from zoo_builders.spec import BuildSpec
    from zoo_builders.train import train_classifiers

    zoo = open_zoo(tiny_digits_zoo)
    runs = [r for r in BuildSpec.from_dict(zoo.manifest.spec).runs() if r.training.lr == 0.003][:2]
    init_sel = zoo.select(where=f"checkpoint = 0 AND run_id IN ('{runs[0].run_id}', '{runs[1].run_id}')",
                          order_by=f"run_id = '{runs[0].run_id}' DESC")
    spec = init_sel.network_spec
    data = load_zoo_dataset(zoo)
    given = train_classifiers(spec, runs, data, init=init_sel.stacked())
    own = train_classifiers(spec, runs, data)
    for a, b in zip(given.snapshots, own.snapshots):
        assert a.metrics == b.metrics
        for k in a.weights:
            assert torch.equal(a.weights[k], b.weights[k])


def _summary(n: int, acc: float, iou: float, l2: float) -> dict:
    return {"n": n, "acc_mean": acc, "acc_max": acc, "max_iou_mean": iou, "min_l2_mean": l2}


def test_report_says_which_generated_networks_are_left_out_and_keeps_columns_apart():
    """14 of 20 generated networks diverged: the report says so above the table; a min L2 of
    4.77e13 (a diverged-scale network that stayed ok) no longer runs into the max-IoU column."""
    r = GenEvalResult("gen", "src", "checkpoint = 3",
                      {"generated: noise": _summary(6, 0.0607, 0.6194770576363388, 4.77e13),
                       "noise sigma=0.01": _summary(6, 0.6767, 0.99, 0.079),
                       "gaussian": _summary(6, float("nan"), 0.584, float("inf"))},
                      {"n": 24, "acc_mean": 0.7306, "acc_max": 0.9111, "self_max_iou_mean": 0.501},
                      {}, n_excluded=14, label="generated: noise")
    lines = r.report_lines()
    assert lines[0] == "gen vs src (24 training networks where checkpoint = 3)"
    assert lines[1].startswith("14 of 20 generated networks not ok (diverged), left out of the table")
    table = lines[2:]
    assert table[0].split() == ["method", "n", "acc", "mean", "acc", "max", "max-IoU", "min", "L2"]
    cells = {line[:len("training networks")].strip(): line[len("training networks"):].split() for line in table[1:]}
    assert cells["generated: noise"] == ["6", "6.07", "6.07", "0.619", "4.77e+13"]
    assert cells["noise sigma=0.01"] == ["6", "67.67", "67.67", "0.990", "0.079"]
    assert cells["gaussian"] == ["6", "nan", "nan", "0.584", "inf"]
    assert cells["training networks"] == ["24", "73.06", "91.11", "0.501", "-"]
    # every column right-aligned on one edge: the ends of the min L2 cells line up
    assert len({len(line) for line in table}) == 1
    # nothing left out: no such line
    assert "not ok" not in "\n".join(GenEvalResult("gen", "src", None, r.methods, r.train, {},
                                                     label="generated: noise").report_lines())


@pytest.mark.parametrize("value,decimals,text", [
    (0.6194770576363388, 3, "0.619"), (4.77e13, 3, "4.77e+13"), (123456.789, 3, "123456.789"),
    (1234567.891, 3, "1.23e+06"), (-4.5e12, 2, "-4.5e+12"), (None, 3, "-"), (float("nan"), 3, "nan")])
def test_format_number(value, decimals, text):
    assert format_number(value, decimals) == text
