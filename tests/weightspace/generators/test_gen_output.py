"""generate_zoo: the generated networks are a zoo that opens, queries and verifies; rows carry
the generator and the source; metrics are those of the build; ids are stable; bad input fails
with one clear error each."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from gen_helpers import LAST, TINY_INR, conditional_generator
from zoo_helpers import mlp_spec

from catalog import open_zoo
from catalog.errors import WeightzooError
from weightspace.generators.output import evaluate_networks, generate_zoo, zoo_content_sha256
from zoo_builders import load_zoo_dataset
from zoo_builders.datasets import Dataset
from zoo_builders.recompute import recompute_metrics


def test_generated_zoo_opens_queries_verifies(tiny_digits_zoo, tmp_path):
    res = generate_zoo(tiny_digits_zoo, "noise", LAST, 12, tmp_path / "gen", hparams={"sigma": "0.05"},
                       seed=1, quiet=True)
    assert res.rows == 12 and res.n_train == 18 and res.method == "noise"
    zoo = open_zoo(tmp_path / "gen")
    assert zoo.verify().ok
    src = open_zoo(tiny_digits_zoo)
    t = zoo.table
    assert t.num_rows == 12
    assert set(t.column("generator").to_pylist()) == {"noise"}
    assert set(t.column("source_zoo").to_pylist()) == {src.name}
    assert set(t.column("source_manifest_sha256").to_pylist()) == {zoo_content_sha256(src)}
    assert set(t.column("source_where").to_pylist()) == {LAST}
    assert set(t.column("generator_sigma").to_pylist()) == {0.05}
    assert json.loads(t.column("generator_hparams")[0].as_py()) == {"sigma": 0.05}
    assert t.column("sample_index").to_pylist() == list(range(12))
    assert set(t.column("activation").to_pylist()) == {"relu"}  # architecture columns copied
    assert "lr" not in t.column_names                            # training hyperparameters are not
    ids = t.column("model_id").to_pylist()
    assert len(set(ids)) == 12 and ids == t.column("run_id").to_pylist()
    for col in ("test_acc", "test_loss", "train_acc", "train_loss", "ggap"):
        assert col in t.column_names
    # It queries like a built zoo, and its manifest and card say it is generated.
    best = zoo.select(where="test_acc > 0.5", order_by="test_acc DESC")
    assert len(best) == sum(a > 0.5 for a in t.column("test_acc").to_pylist())
    assert zoo.manifest.spec["generated"]["method"] == "noise"
    assert "A generated zoo" in (tmp_path / "gen" / "README.md").read_text()
    # load_zoo_dataset works on it (the source's dataset is in its spec), and so does
    # `zoo verify --recompute`, which re-evaluates every network with the build's code.
    assert load_zoo_dataset(zoo).describe() == load_zoo_dataset(src).describe()
    report = recompute_metrics(tmp_path / "gen", sample=None, tolerance=1e-6)
    assert report.ok and report.sampled == 12 and set(report.checks) >= {"test_acc", "test_loss"}


def test_metrics_are_the_build_time_metrics(tiny_digits_zoo, tmp_path):
    """sigma = 0 copies training networks: each copy's metrics equal its source row's."""
    generate_zoo(tiny_digits_zoo, "noise", LAST, 8, tmp_path / "gen", hparams={"sigma": 0.0}, quiet=True)
    gen, src = open_zoo(tmp_path / "gen"), open_zoo(tiny_digits_zoo)
    by_sha = {r["sha256"]: r for r in src.select(where=LAST).table.to_pylist()}
    for row in gen.table.to_pylist():
        twin = by_sha[row["sha256"]]  # same weights, same sha256
        for col in ("test_acc", "test_loss", "train_acc", "train_loss"):
            assert row[col] == pytest.approx(twin[col], abs=1e-6), col


def test_a_network_with_outputs_that_are_not_finite_is_not_ok():
    """x = +1 (class 0) drives logit 1 to -inf (-3e38 - 3e38 overflows float32) while every loss
    term stays finite: its accuracy is NaN (outputs not finite) but its loss was finite, so the row
    was 'ok' and the summary's mean test_acc came out NaN. A row is ok only if all its metrics are."""
    spec = mlp_spec(hidden=2, n_in=1, n_out=2)
    params = {"layers.0.weight": torch.tensor([[[1.0], [-1.0]]]), "layers.0.bias": torch.zeros(1, 2),
              "layers.1.weight": torch.tensor([[[0.0, 0.0], [-3e38, 0.0]]]),
              "layers.1.bias": torch.tensor([[0.0, -3e38]])}
    x, y = torch.tensor([[1.0], [-1.0]]), torch.tensor([0, 1])
    data = Dataset("toy", x, y, x, y, 2)
    (row,) = evaluate_networks(spec, params, data, "classify")
    assert math.isfinite(row["test_loss"]) and math.isnan(row["test_acc"])
    assert row["status"] == "diverged"


def test_the_summary_is_over_the_ok_networks_and_counts_the_others(tiny_digits_zoo, tmp_path):
    """noise at sigma 1e19 overflows 6 of 8 networks: the means are over the 2 ok ones, say so,
    and say how many were left out; the ok ones' huge loss prints in 3 significant digits."""
    res = generate_zoo(tiny_digits_zoo, "noise", LAST, 8, tmp_path / "gen", hparams={"sigma": 1e19}, seed=2,
                       quiet=True)
    assert (res.rows, res.diverged) == (8, 6)
    lines = res.report_lines()
    assert lines[0] == f"noise: trained on 18 networks; wrote 8 networks to {tmp_path / 'gen'}"
    assert lines[1] == "6 of 8 generated networks not ok (diverged), left out of the means"
    assert re.fullmatch(r"mean test_acc \d+\.\d\d%, test_loss \d\.\d\de\+3\d over the 2 ok networks", lines[2])
    assert len(lines) == 3 and "nan" not in " ".join(lines)


def test_ids_are_stable_and_reload_gives_the_same_networks(tiny_digits_zoo, tmp_path):
    a = generate_zoo(tiny_digits_zoo, "gaussian", LAST, 5, tmp_path / "a", save_to=tmp_path / "run", quiet=True)
    assert a.saved_to == tmp_path / "run"
    generate_zoo(tiny_digits_zoo, "gaussian", LAST, 5, tmp_path / "b", quiet=True)
    generate_zoo(tiny_digits_zoo, None, None, 5, tmp_path / "c", load_from=tmp_path / "run", quiet=True)
    generate_zoo(tiny_digits_zoo, "gaussian", LAST, 5, tmp_path / "d", seed=1, quiet=True)
    rows = {k: open_zoo(tmp_path / k).table for k in "abcd"}
    ids = {k: t.column("model_id").to_pylist() for k, t in rows.items()}
    shas = {k: t.column("sha256").to_pylist() for k, t in rows.items()}
    assert ids["a"] == ids["b"] == ids["c"] and shas["a"] == shas["b"] == shas["c"]
    assert not set(ids["a"]) & set(ids["d"]) and shas["a"] != shas["d"]
    # The same command again on the same directory adds nothing; a larger --n adds the rest.
    again = generate_zoo(tiny_digits_zoo, "gaussian", LAST, 7, tmp_path / "a", quiet=True)
    assert again.rows == 2 and open_zoo(tmp_path / "a").table.num_rows == 7


def test_conditional_method_gets_condition_columns(tiny_digits_zoo, tmp_path):
    with conditional_generator() as name:
        generate_zoo(tiny_digits_zoo, name, LAST, 3, tmp_path / "g", condition=["lr=0.5"], quiet=True)
        gen = open_zoo(tmp_path / "g")
        assert gen.table.column("lr").to_pylist() == [0.5] * 3
        assert gen.manifest.spec["generated"]["hparams"] == {"condition": ["lr"]}
        w = gen.select().stacked()
        bias = [p.name for p in gen.network_spec(gen.table.column("arch_id")[0].as_py()).params][-1]
        mean = open_zoo(tiny_digits_zoo).select(where=LAST).stacked()[bias].mean(0)
        torch.testing.assert_close(w[bias][0], mean + 0.5)


def test_several_architectures_is_an_error(multi_arch_dir, tmp_path):
    with pytest.raises(WeightzooError, match=r"selects 2 architectures.*\(8 models\).*4-8-3.*narrow the selection "
                                             r"\(where=, --where\)"):
        generate_zoo(multi_arch_dir, "noise", None, 3, tmp_path / "g", quiet=True)


def test_selection_errors_name_the_where_argument(tiny_digits_zoo, tmp_path):
    """A Python caller passed where=, not --where: the message names the argument (and the CLI
    option it comes from). It said "--where 'test_acc > 5' ... widen --where"."""
    with pytest.raises(WeightzooError) as e:
        generate_zoo(tiny_digits_zoo, "gaussian", "test_acc > 5", 3, tmp_path / "g", quiet=True)
    assert str(e.value).startswith("where='test_acc > 5' (--where) selects 0 models with status 'ok'")
    assert str(e.value).endswith("widen the selection (where=, --where)")


def test_generate_errors_name_the_python_arguments(tiny_digits_zoo, zoo_copy, tmp_path):
    """A Python caller passed n=, out=, save_to=, method=: the messages name them (then the CLI option)."""
    with pytest.raises(WeightzooError, match=r"^n=0 \(--n\) must be an integer >= 1"):
        generate_zoo(tiny_digits_zoo, "noise", LAST, 0, tmp_path / "g", quiet=True)
    with pytest.raises(WeightzooError, match=r"^out='.*g' \(--out\) lies inside the zoo"):
        generate_zoo(tiny_digits_zoo, "noise", LAST, 2, zoo_copy / "g", quiet=True)
    with pytest.raises(WeightzooError, match=r"^save_to='.*run' \(--save-to\) lies inside the zoo"):
        generate_zoo(tiny_digits_zoo, "noise", LAST, 2, tmp_path / "g", save_to=zoo_copy / "run", quiet=True)
    with pytest.raises(WeightzooError, match=r"^save_to='.*g' \(--save-to\) and out='.*g' \(--out\) overlap"):
        generate_zoo(tiny_digits_zoo, "noise", LAST, 2, tmp_path / "g", save_to=tmp_path / "g", quiet=True)
    with pytest.raises(WeightzooError, match=r"give a method \(method=, --method NAME\) or a generator to load "
                                             r"\(load_from=, --load DIR\)"):
        generate_zoo(tiny_digits_zoo, None, LAST, 2, tmp_path / "g", quiet=True)
    assert not (tmp_path / "g").exists()


def test_too_few_models_is_an_error(tiny_digits_zoo, tmp_path):
    with pytest.raises(WeightzooError, match="selects 6 models with status 'ok'.*at least 10"):
        generate_zoo(tiny_digits_zoo, "noise", "lr = 0.03 AND checkpoint = 3", 3, tmp_path / "g", quiet=True)
    assert not (tmp_path / "g").exists()


def test_condition_errors(tiny_digits_zoo, tmp_path):
    with conditional_generator() as name:
        with pytest.raises(WeightzooError, match="condition column 'nope' is not a column.*numeric columns: "):
            generate_zoo(tiny_digits_zoo, name, LAST, 3, tmp_path / "g", condition={"nope": 1}, quiet=True)
        with pytest.raises(WeightzooError, match="condition column 'activation' has type string"):
            generate_zoo(tiny_digits_zoo, name, LAST, 3, tmp_path / "g", condition={"activation": 1}, quiet=True)
        with pytest.raises(WeightzooError, match=r"condition lr='fast' \(condition=, --condition\) is not a number"):
            generate_zoo(tiny_digits_zoo, name, LAST, 3, tmp_path / "g", condition={"lr": "fast"}, quiet=True)
        with pytest.raises(WeightzooError, match=r"condition lr=inf \(condition=, --condition\) is not a finite"):
            generate_zoo(tiny_digits_zoo, name, LAST, 3, tmp_path / "g", condition={"lr": float("inf")}, quiet=True)
        with pytest.raises(WeightzooError, match=r"condition 'lr' is not COLUMN=VALUE, e\.g\. "
                                                 r"condition=\['lr=0\.005'\] \(--condition lr=0\.005\)"):
            generate_zoo(tiny_digits_zoo, name, LAST, 3, tmp_path / "g", condition=["lr"], quiet=True)
        with pytest.raises(WeightzooError, match=r"is conditional: .*e\.g\. condition=\{'COLUMN': VALUE\} "
                                                 r"\(--condition COLUMN=VALUE\)"):
            generate_zoo(tiny_digits_zoo, name, LAST, 3, tmp_path / "g", quiet=True)
    with pytest.raises(WeightzooError, match=r"'noise' is not conditional; drop the condition "
                                             r"\(condition=, --condition\)"):
        generate_zoo(tiny_digits_zoo, "noise", LAST, 3, tmp_path / "g", condition={"lr": 0.1}, quiet=True)
    assert not (tmp_path / "g").exists()


def test_load_errors(tiny_digits_zoo, zoo_dir, tmp_path):
    generate_zoo(tiny_digits_zoo, "average", LAST, 2, tmp_path / "a", save_to=tmp_path / "run", quiet=True)
    with pytest.raises(WeightzooError, match=r"holds a 'average' generator, not 'noise'; drop method \(method=, "
                                             r"--method\) or give method='average' \(--method average\)"):
        generate_zoo(tiny_digits_zoo, "noise", None, 2, tmp_path / "b", load_from=tmp_path / "run", quiet=True)
    with pytest.raises(WeightzooError, match=r"hyperparameters \(hparams=, --hparam\) apply to a generator being "
                                             r"trained; a loaded generator keeps the ones"):
        generate_zoo(tiny_digits_zoo, None, None, 2, tmp_path / "b", load_from=tmp_path / "run",
                     hparams={"k": 2}, quiet=True)
    with pytest.raises(WeightzooError, match="trained on zoo 'tiny-digits'.*not on zoo 'tiny'"):
        generate_zoo(zoo_dir, None, None, 2, tmp_path / "b", load_from=tmp_path / "run", quiet=True)
    with pytest.raises(WeightzooError, match="not a generator run directory"):
        generate_zoo(tiny_digits_zoo, None, None, 2, tmp_path / "b", load_from=tmp_path, quiet=True)
    with pytest.raises(WeightzooError, match="unknown generator 'nope'"):
        generate_zoo(tiny_digits_zoo, "nope", LAST, 2, tmp_path / "b", quiet=True)


#: Twelve SIRENs: 2 digits images x 6 seeds, fitted well enough that each is closest to its own image.
def test_inr_zoo_samples_get_mse_and_psnr(zoo_factory, tmp_path):
    src_dir = zoo_factory(TINY_INR)
    generate_zoo(src_dir, "noise", None, 6, tmp_path / "g", hparams={"sigma": 0.0}, quiet=True)
    gen, src = open_zoo(tmp_path / "g"), open_zoo(src_dir)
    assert gen.verify().ok
    by_sha = {r["sha256"]: r for r in src.table.to_pylist()}
    for row in gen.table.to_pylist():
        twin = by_sha[row["sha256"]]  # a copy: its metrics are the build's, against its own image
        assert row["image_index"] == twin["image_index"]
        assert row["mse"] == pytest.approx(twin["mse"], rel=1e-4)
        assert row["psnr"] == pytest.approx(twin["psnr"], rel=1e-4)
    report = recompute_metrics(tmp_path / "g", sample=None, tolerance=1e-5)
    assert report.ok and report.sampled == 6 and set(report.checks) >= {"mse", "psnr"}


def test_out_holding_another_zoo_is_refused_before_training(tiny_digits_zoo, tmp_path):
    generate_zoo(tiny_digits_zoo, "noise", LAST, 2, tmp_path / "g", quiet=True)
    with pytest.raises(WeightzooError, match="built from a different spec; choose another output directory"):
        generate_zoo(tiny_digits_zoo, "average", LAST, 2, tmp_path / "g", save_to=tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()  # refused before the generator was trained and saved
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(WeightzooError, match="is not empty and holds no zoo"):
        generate_zoo(tiny_digits_zoo, "noise", LAST, 2, tmp_path / "other", quiet=True)


def test_analyze_on_a_generated_zoo_says_why_it_cannot(tiny_digits_zoo, tmp_path):
    """zoo analyze reads each run's seed and training recipe, which a generated zoo does not have."""
    from weightspace.analysis import analyze_zoo

    generate_zoo(tiny_digits_zoo, "noise", LAST, 4, tmp_path / "gen", hparams={"sigma": 0.05}, quiet=True)
    with pytest.raises(WeightzooError, match=r"seed.*zoo generate"):
        analyze_zoo(tmp_path / "gen", metrics="hessian")


def test_package_exports_the_entry_points():
    import weightspace.generators as gens
    from weightspace.generators import evaluate

    assert gens.generate_zoo is generate_zoo and gens.evaluate_generated is evaluate.evaluate_generated
    assert {"generate_zoo", "evaluate_generated"} <= set(gens.__all__)
