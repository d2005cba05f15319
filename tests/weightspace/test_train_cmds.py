"""`zoo train` / `zoo predict` end to end on a tiny zoo."""

import json

import pyarrow.parquet as pq
from click.testing import CliRunner

from zoo_cli.main import cli


def test_train_and_predict(tiny_digits_zoo, tmp_path):
    runner = CliRunner()
    run_dir = tmp_path / "run"
    res = runner.invoke(cli, ["train", str(tiny_digits_zoo), "--target", "test_acc", "--model", "gmn",
                              "--epochs", "2", "--augment", "--out", str(run_dir), "--json", "-q",
                              "--hparam", "hidden=8", "--hparam", "probes=3",
                              "--where", "checkpoint > 0"])
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.output.strip().splitlines()[-1])
    assert {"kendall_tau", "r2", "mae"} <= set(metrics)
    assert {p.name for p in run_dir.iterdir()} >= {"metanetwork.safetensors", "config.json",
                                                     "metrics.json"}
    assert json.loads((run_dir / "metrics.json").read_text())["test"] == metrics
    assert json.loads((run_dir / "config.json").read_text())["model"]["hparams"]["probes"] == 3
    res = runner.invoke(cli, ["predict", str(run_dir), str(tiny_digits_zoo), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    table = pq.read_table(summary["predictions"])
    assert table.column_names == ["model_id", "pred_test_acc"] and table.num_rows == 54
    assert summary["metrics"]["n"] == 54


def test_classification_task_and_user_errors(tiny_digits_zoo, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["train", str(tiny_digits_zoo), "--target", "lr", "--task",
                              "classification", "--model", "statnn", "--epochs", "2", "--json",
                              "-q", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert "accuracy" in json.loads(res.output.strip().splitlines()[-1])
    res = runner.invoke(cli, ["train", str(tiny_digits_zoo), "--target", "test_acc", "--model", "nope"])
    assert res.exit_code == 1
    assert "valid names: dws, gmn, mlp, nfn, statnn" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(cli, ["train", str(tiny_digits_zoo), "--target", "nope", "--model", "mlp"])
    assert res.exit_code == 1 and "has no column 'nope'" in res.output
