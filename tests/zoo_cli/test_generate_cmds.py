"""`zoo generate` / `zoo eval-gen` end to end on the tiny digits zoo, and their one-line errors."""

from __future__ import annotations

import json

import pytest
from zoo_helpers import assert_one_line_error, run_cli

from catalog import open_zoo

LAST = "checkpoint = 3"


@pytest.mark.slow
def test_generate_then_eval_gen(tiny_digits_zoo, tmp_path):
    gen, run = tmp_path / "gen", tmp_path / "run"
    res = run_cli("generate", tiny_digits_zoo, "--method", "noise", "--hparam", "sigma=0.05", "--where", LAST,
                  "--n", 6, "--save-to", run, "--out", gen, "--seed", 2, "-q")
    assert res.exit_code == 0, res.output
    assert "noise: trained on 18 networks; wrote 6 networks" in res.output
    assert "mean test_acc" in res.output and "over the 6 ok networks" in res.output
    zoo = open_zoo(gen)
    assert zoo.verify().ok and zoo.table.num_rows == 6
    assert set(zoo.table.column("generator_sigma").to_pylist()) == {0.05}
    # Reloading the saved generator writes the same networks.
    res = run_cli("generate", tiny_digits_zoo, "--load", run, "--n", 6, "--out", tmp_path / "again",
                  "--seed", 2, "-q")
    assert res.exit_code == 0, res.output
    assert f"loaded from {run}" in res.output
    assert open_zoo(tmp_path / "again").table.column("sha256") == zoo.table.column("sha256")
    res = run_cli("eval-gen", gen, "--train", tiny_digits_zoo, "--out", tmp_path / "ev", "-q")
    assert res.exit_code == 0, res.output
    for label in ("generated: noise", "noise sigma=0.01", "average", "gaussian", "training networks"):
        assert label in res.output
    report = json.loads((tmp_path / "ev" / "eval_gen.json").read_text())
    assert report["where"] == LAST and report["methods"]["generated: noise"]["n"] == 6
    assert (tmp_path / "ev" / "eval_gen.png").is_file()
    res = run_cli("eval-gen", gen, "--train", tiny_digits_zoo, "--no-baselines", "-q")
    assert res.exit_code == 0 and "average" not in res.output
    assert (tmp_path / "gen-eval" / "eval_gen.json").is_file()  # the default --out
    res = run_cli("eval-gen", gen, "--train", tiny_digits_zoo, "--no-baselines", "--align", "--finetune",
                  "--finetune-models", 2, "--finetune-epochs", 2, "--out", tmp_path / "ev2", "-q")
    assert res.exit_code == 0, res.output
    assert "aligned" in res.output and "mean epochs to" in res.output and "within 2 epochs" in res.output
    report = json.loads((tmp_path / "ev2" / "eval_gen.json").read_text())
    assert report["finetune"]["models"] == 2 and "min_l2_aligned_mean" in report["methods"]["generated: noise"]
    assert report["finetune"]["epochs"] == 2  # the zoo's own recipe trains 3


def test_eval_gen_says_how_many_generated_networks_are_left_out(tiny_digits_zoo, tmp_path):
    """noise at sigma 1e19 overflows most networks (diverged); the rest have a min L2 of ~1e20:
    the report says how many were left out, and the table's columns stay apart."""
    gen = tmp_path / "gen"
    res = run_cli("generate", tiny_digits_zoo, "--method", "noise", "--hparam", "sigma=1e19", "--where", LAST,
                  "--n", 8, "--seed", 2, "--out", gen, "-q")
    assert res.exit_code == 0, res.output
    assert "6 of 8 generated networks not ok (diverged), left out of the means" in res.output  # generate too
    assert "over the 2 ok networks" in res.output and "nan" not in res.output
    res = run_cli("eval-gen", gen, "--train", tiny_digits_zoo, "--no-baselines", "--out", tmp_path / "ev", "-q")
    assert res.exit_code == 0, res.output
    excluded = json.loads((tmp_path / "ev" / "eval_gen.json").read_text())["excluded_generated_not_ok"]
    assert 0 < excluded < 8
    assert f"{excluded} of 8 generated networks not ok (diverged), left out of the table" in res.output
    row = next(line for line in res.output.splitlines() if line.startswith("generated: noise"))
    assert len(row.split()) == 3 + 4 and "e+" in row.split()[-1]  # label (2 words), n, 3 measures, min L2


def test_errors_are_one_line(tiny_digits_zoo, multi_arch_dir, zoo_dir, tmp_path):
    out = tmp_path / "g"
    assert_one_line_error(run_cli("generate", multi_arch_dir, "--method", "noise", "--out", out),
                          "selects 2 architectures", "narrow the selection (where=, --where)")
    assert_one_line_error(run_cli("generate", tiny_digits_zoo, "--method", "noise", "--where", "test_acc > 5",
                                  "--out", out), "where='test_acc > 5' (--where) selects 0 models", "--where")
    assert_one_line_error(run_cli("generate", tiny_digits_zoo, "--method", "noise", "--where",
                                  "lr = 0.03 AND checkpoint = 3", "--out", out), "at least 10")
    assert_one_line_error(run_cli("generate", tiny_digits_zoo, "--method", "noise", "--where", LAST,
                                  "--condition", "lr=0.01", "--out", out), "not conditional")
    assert_one_line_error(run_cli("generate", tiny_digits_zoo, "--method", "nope", "--out", out),
                          "unknown generator 'nope'", "noise")
    assert_one_line_error(run_cli("generate", tiny_digits_zoo, "--method", "noise", "--hparam", "sigma=x",
                                  "--out", out), "sigma='x' is not a valid float")
    assert_one_line_error(run_cli("generate", tiny_digits_zoo, "--method", "noise", "--condition", "lr",
                                  "--out", out), "is not COLUMN=VALUE")
    assert not out.exists()
    run_cli("generate", tiny_digits_zoo, "--method", "average", "--where", LAST, "--n", 2, "--out", out, "-q")
    assert_one_line_error(run_cli("eval-gen", out, "--train", zoo_dir), "generated from zoo 'tiny-digits'",
                          "train_zoo (--train) is zoo 'tiny'")
    assert_one_line_error(run_cli("eval-gen", tiny_digits_zoo, "--train", tiny_digits_zoo),
                          "is not a generated zoo")
    assert_one_line_error(run_cli("eval-gen", out, "--train", tiny_digits_zoo, "--sigmas", "0.1,big"),
                          "--sigmas '0.1,big' is not a comma-separated list")
    assert_one_line_error(run_cli("eval-gen", out, "--train", tiny_digits_zoo, "--sigmas", "-1", "-q"),
                          "sigma must be a number >= 0")


def test_eval_gen_of_dot_names_the_output_by_the_directory(tiny_digits_zoo, tmp_path, monkeypatch):
    gen = tmp_path / "gen"
    res = run_cli("generate", tiny_digits_zoo, "--method", "noise", "--where", LAST, "--n", 2, "--out", gen, "-q")
    assert res.exit_code == 0, res.output
    monkeypatch.chdir(gen)
    res = run_cli("eval-gen", ".", "--train", tiny_digits_zoo, "--no-baselines", "-q")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "gen-eval" / "eval_gen.json").is_file()  # not ./-eval/
    assert not (gen / "-eval").exists()
