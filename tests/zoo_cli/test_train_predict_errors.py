"""`zoo train` / `zoo predict`: bad options and damaged run directories fail with one line."""

import json
from pathlib import Path

import pytest
from zoo_helpers import run_cli


def assert_one_line_error(result, *fragments: str) -> None:
    """Exit 1, no traceback, one ``error:`` line holding every fragment (torch's one-time import
    warning aside)."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.strip().splitlines() if not ln.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def run_dir(tiny_digits_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "r"
    res = run_cli("train", tiny_digits_zoo, "--target", "test_acc", "--model", "statnn", "--epochs", 1,
                  "-q", "--out", out)
    assert res.exit_code == 0, res.output
    return out


@pytest.mark.parametrize("seed", [str(-(2**70)), str(2**70)])
def test_train_seed_out_of_range(tiny_digits_zoo, tmp_path, seed):
    res = run_cli("train", tiny_digits_zoo, "--target", "test_acc", "--model", "statnn", "--epochs", 1,
                  "-q", "--out", tmp_path / "r", "--seed", seed)
    assert_one_line_error(res, "--seed", "from -2**62 to 2**62")


def test_train_takes_a_negative_seed(tiny_digits_zoo, tmp_path):
    """Like zoo generate, analyze or embed: a negative --seed is a seed, recorded as given."""
    res = run_cli("train", tiny_digits_zoo, "--target", "test_acc", "--model", "statnn", "--epochs", 1,
                  "-q", "--out", tmp_path / "r", "--seed", "-5")
    assert res.exit_code == 0, res.output
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["training"]["seed"] == config["data"]["split_seed"] == -5


def test_predict_truncated_weights(run_dir, tiny_digits_zoo, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in run_dir.iterdir():
        (broken / p.name).write_bytes(p.read_bytes())
    weights = broken / "metanetwork.safetensors"
    weights.write_bytes(weights.read_bytes()[:50])
    res = run_cli("predict", broken, tiny_digits_zoo, "-q", "--out", tmp_path / "p.parquet")
    assert_one_line_error(res, "metanetwork.safetensors", "retrain")


def test_outputs_never_land_in_a_zoo_or_a_run(run_dir, tiny_digits_zoo, tmp_path):
    part = next((tiny_digits_zoo / "models").iterdir())
    before = part.read_bytes()
    res = run_cli("predict", run_dir, tiny_digits_zoo, "-q", "--out", part)
    assert_one_line_error(res, "--out", "inside the zoo")
    assert part.read_bytes() == before
    res = run_cli("predict", run_dir, tiny_digits_zoo, "-q", "--out", run_dir / "config.json")
    assert_one_line_error(res, "would overwrite config.json")
    res = run_cli("train", tiny_digits_zoo, "--target", "test_acc", "--model", "statnn", "--epochs", 1,
                  "-q", "--out", tiny_digits_zoo)
    assert_one_line_error(res, "is a zoo directory")
    res = run_cli("generate", tiny_digits_zoo, "--method", "noise", "--where", "checkpoint = 3", "--n", 2,
                  "--out", tmp_path / "g", "--save-to", tmp_path / "g", "-q")
    assert_one_line_error(res, "--save-to", "overlap")
    assert not (tmp_path / "g").exists()


def test_predictions_to_a_text_table_file_are_refused_before_any_work(run_dir, tiny_digits_zoo, tmp_path):
    """`--out preds.txt` wrote the terminal table: 50 rows, rounded values. A predictions file is
    .parquet, .csv or .json (as --help says); anything else is refused before the run is read."""
    res = run_cli("predict", run_dir, tiny_digits_zoo, "-q", "--out", tmp_path / "p.txt")
    assert_one_line_error(res, "--out", ".txt", "*.csv", "*.json", "*.parquet")
    assert not (tmp_path / "p.txt").exists()


def test_train_onto_an_old_run_drops_its_predictions(run_dir, tiny_digits_zoo, tmp_path):
    old = tmp_path / "old"
    res = run_cli("train", tiny_digits_zoo, "--target", "test_acc", "--model", "statnn", "--epochs", 1,
                  "-q", "--out", old)
    assert res.exit_code == 0, res.output
    assert run_cli("predict", old, tiny_digits_zoo, "-q").exit_code == 0
    assert list(old.glob("predictions-*.parquet"))
    res = run_cli("train", tiny_digits_zoo, "--target", "train_acc", "--model", "statnn", "--epochs", 1,
                  "-q", "--out", old)
    assert res.exit_code == 0, res.output
    assert not list(old.glob("predictions-*.parquet"))


@pytest.mark.parametrize("model, hparam, words", [
    ("statnn", "quantiles=[2,3]", ["quantiles", "in [0, 1]"]),
    ("statnn", "hidden=1.5", ["hidden", "integer >= 1"]),
    ("statnn", "hidden=true", ["hidden", "integer"]),
    ("statnn", "depth=abc", ["depth", "integer"]),
    ("statnn", "dropout=1.5", ["dropout", "[0, 1)"]),
    ("gmn", "hidden=1.5", ["hidden", "integer"]),
])
def test_train_hparam_types(tiny_digits_zoo, tmp_path, model, hparam, words):
    res = run_cli("train", tiny_digits_zoo, "--target", "test_acc", "--model", model, "--epochs", 1,
                  "-q", "--out", tmp_path / "r", "--hparam", hparam)
    assert_one_line_error(res, "--hparam", *words)


def test_train_quantiles_as_shown_in_help(tiny_digits_zoo, tmp_path):
    res = run_cli("train", tiny_digits_zoo, "--target", "test_acc", "--model", "statnn", "--epochs", 1,
                  "-q", "--out", tmp_path / "r", "--hparam", "quantiles=0.1,0.9")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "r" / "config.json").read_text())["model"]["hparams"]["quantiles"] == [0.1, 0.9]


def test_train_on_a_generated_zoo_says_why_checkpoint_0(tiny_digits_zoo, tmp_path):
    res = run_cli("generate", tiny_digits_zoo, "--method", "noise", "--where", "checkpoint = 3", "--n", 4,
                  "--out", tmp_path / "g", "-q")
    assert res.exit_code == 0, res.output
    res = run_cli("train", tmp_path / "g", "--target", "test_acc", "--model", "statnn", "--epochs", 1,
                  "-q", "--out", tmp_path / "r")
    assert_one_line_error(res, "is generated", "--include-init")


def test_classification_of_floats_predicts_like_it_trained(tiny_digits_zoo, tmp_path):
    res = run_cli("train", tiny_digits_zoo, "--target", "lr", "--task", "classification", "--model", "statnn",
                  "--epochs", 2, "-q", "--json", "--out", tmp_path / "r")
    assert res.exit_code == 0, res.output
    test = json.loads(res.output.strip().splitlines()[-1])
    res = run_cli("predict", tmp_path / "r", tiny_digits_zoo, "-q", "--json")
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert summary["split_metrics"]["test"] == test
    # every row: the predicted class is one of the zoo's lr values, so some rows match
    import numpy as np
    import pyarrow.parquet as pq

    from catalog import open_zoo

    preds = pq.read_table(summary["predictions"]).to_pydict()
    truth = dict(zip(*open_zoo(tiny_digits_zoo).table.select(["model_id", "lr"]).to_pydict().values()))
    hits = [np.float32(p) == np.float32(truth[m]) for m, p in zip(preds["model_id"], preds["pred_lr"])]
    assert sum(hits) > 0 and summary["metrics"]["accuracy"] == pytest.approx(sum(hits) / len(hits))


def test_boolean_target_is_classified(tmp_path):
    from zoo_helpers import mlp_spec, random_weights

    from catalog.writer import ZooWriter

    w = ZooWriter(tmp_path / "z", "flags", {"name": "flags", "test": True})
    arch = w.add_architecture(mlp_spec())
    rows = [{"model_id": f"r{r}-c{c}", "run_id": f"r{r}", "checkpoint": c, "status": "ok", "flag": r % 2 == 0}
            for r in range(10) for c in (1, 2)]
    w.write_part(arch, random_weights(mlp_spec(), len(rows), seed=0), rows)
    w.finish()
    res = run_cli("train", tmp_path / "z", "--target", "flag", "--model", "statnn", "--epochs", 2, "-q",
                  "--json", "--out", tmp_path / "r")
    assert res.exit_code == 0, res.output
    test = json.loads(res.output.strip().splitlines()[-1])
    assert "accuracy" in test
    res = run_cli("predict", tmp_path / "r", tmp_path / "z", "-q", "--json")
    assert json.loads(res.output.strip().splitlines()[-1])["split_metrics"]["test"] == test


def test_predict_leaves_out_diverged_rows_and_says_so(tmp_path):
    from zoo_helpers import mlp_spec, random_weights

    from catalog.writer import ZooWriter

    w = ZooWriter(tmp_path / "z", "nan", {"name": "nan", "test": True})
    arch = w.add_architecture(mlp_spec())
    rows = [{"model_id": f"r{r}-c{c}", "run_id": f"r{r}", "checkpoint": c,
             "status": "diverged" if r % 4 == 3 else "ok",
             "test_acc": float("nan") if r % 4 == 3 else 0.1 * r} for r in range(12) for c in (1, 2)]
    w.write_part(arch, random_weights(mlp_spec(), len(rows), seed=0), rows)
    w.finish()
    res = run_cli("train", tmp_path / "z", "--target", "test_acc", "--model", "statnn", "--epochs", 1,
                  "--out", tmp_path / "r")
    assert res.exit_code == 0, res.output
    assert "6 selected rows left out" in res.output
    res = run_cli("predict", tmp_path / "r", tmp_path / "z", "-q", "--json")
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert summary["metrics"]["left_out"] == 6 and summary["metrics"]["mae"] is not None
    assert "6 rows" in summary["note"] and "left out" in summary["note"]


def test_predict_refuses_a_config_whose_sizes_cannot_fit_before_allocating(run_dir, tiny_digits_zoo, tmp_path):
    """config.json's hparams size the rebuilt metanetwork: hidden = 2000000000 asked torch for
    hundreds of GB (a traceback, or swapping on a large machine). Refused before torch allocates
    the layer (weightspace.memory.allocation_limit), naming the value."""
    crafted = tmp_path / "crafted"
    crafted.mkdir()
    for p in run_dir.iterdir():
        (crafted / p.name).write_bytes(p.read_bytes())
    config = json.loads((crafted / "config.json").read_text())
    config["model"]["hparams"]["hidden"] = 2_000_000_000
    (crafted / "config.json").write_text(json.dumps(config))
    res = run_cli("predict", crafted, tiny_digits_zoo, "-q", "--out", tmp_path / "p.parquet")
    assert_one_line_error(res, f"rebuilding the statnn metanetwork of {crafted / 'config.json'} (model.hparams: "
                               f"hidden=2000000000", "half the", "it asked for a tensor of shape [2,000,000,000, ",
                          "it is corrupt or was crafted")
    assert not (tmp_path / "p.parquet").exists()
