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
    res = runner.invoke(cli, ["predict", str(run_dir), str(tiny_digits_zoo), "--json", "-q"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    table = pq.read_table(summary["predictions"])
    # the training zoo: a split per row, metrics per split (checkpoint 0 was left out: "outside")
    assert table.column_names == ["model_id", "pred_test_acc", "split"] and table.num_rows == 54
    assert summary["metrics"]["n"] == 54 and summary["training_zoo"]
    assert set(summary["split_metrics"]) == {"train", "val", "test", "outside"}
    assert summary["split_metrics"]["test"]["kendall_tau"] == metrics["kendall_tau"]
    assert not any(p.name.startswith(".tmp-") for p in run_dir.iterdir())


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


def _config(run_dir):
    return json.loads((run_dir / "config.json").read_text())


def test_default_train_leaves_out_initializations(tiny_digits_zoo, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["train", str(tiny_digits_zoo), "--target", "test_acc", "--model", "statnn",
                              "--epochs", "1", "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert "checkpoint 0 (initialization) left out" in res.stderr
    assert "rows per checkpoint 1: " in res.stderr and "3: " in res.stderr
    data = _config(tmp_path / "a")["data"]
    assert data["include_init"] is False and set(data["checkpoints"]["train"]) == {"1", "3"}
    assert sum(data["rows"].values()) == 36  # 18 runs x checkpoints 1 and 3
    res = runner.invoke(cli, ["train", str(tiny_digits_zoo), "--target", "test_acc", "--model", "statnn",
                              "--epochs", "1", "--include-init", "-q", "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert res.stderr == ""  # --quiet: no bar, no summary
    data = _config(tmp_path / "b")["data"]
    assert data["include_init"] is True and set(data["checkpoints"]["train"]) == {"0", "1", "3"}


def test_train_options_are_recorded(tiny_digits_zoo, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["train", str(tiny_digits_zoo), "--target", "test_acc", "--model", "statnn",
                              "--epochs", "3", "--patience", "0", "--min-epochs", "2", "--threads", "1",
                              "--preset", "default", "--hparam", "hidden=8", "-q", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    cfg = _config(tmp_path / "r")
    assert cfg["training"]["patience"] == 0 and cfg["training"]["min_epochs"] == 2
    assert cfg["training"]["threads"] == 1 and cfg["training"]["preset"] == "default"
    assert cfg["training"]["epochs_run"] == 3 and cfg["model"]["hparams"]["hidden"] == 8
    res = runner.invoke(cli, ["train", str(tiny_digits_zoo), "--target", "test_acc", "--model", "statnn",
                              "--preset", "nope"])
    assert res.exit_code == 1 and "valid presets: default" in res.output


def test_train_help_lists_hyperparameters_and_presets():
    from weightspace import metanetwork_names
    from weightspace.pipeline import metanetwork_hparams

    res = CliRunner().invoke(cli, ["train", "--help"])
    assert res.exit_code == 0
    text = " ".join(res.output.split())  # undo the wrapping
    for name in metanetwork_names():
        assert f"{name}: " in text
        for key in metanetwork_hparams(name):
            assert f"{key}=" in text
    assert "presets: default" in text and "--include-init" in text and "--threads" in text


def test_train_help_model_option_lists_every_registered_metanetwork():
    """`--model`'s help was hard-coded and missed statnn-kinds; it comes from the registry now,
    with what each model reads of several architectures (Metanetwork.multi_arch)."""
    from weightspace import metanetwork_names
    from weightspace.models.registry import get_metanetwork

    res = CliRunner().invoke(cli, ["train", "--help"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    model_help = text[text.index("--model TEXT"):text.index("--where TEXT")]
    names = metanetwork_names()
    assert "statnn-kinds" in names and f"Metanetwork: {', '.join(names)}." in model_help
    readers = "/".join(n for n in names if get_metanetwork(n).multi_arch == "any")
    assert f"{readers} read any" in model_help and "gmn" in readers and "statnn-kinds" in readers


def test_predict_prints_metrics_per_split_on_the_training_zoo(tiny_digits_zoo, tmp_path):
    runner = CliRunner()
    run_dir = tmp_path / "run"
    res = runner.invoke(cli, ["train", str(tiny_digits_zoo), "--target", "test_acc", "--model", "mlp",
                              "--epochs", "1", "-q", "--out", str(run_dir)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["predict", str(run_dir), str(tiny_digits_zoo), "--where", "checkpoint > 0"])
    assert res.exit_code == 0, res.output
    assert "the zoo this metanetwork was trained on" in res.stderr
    lines = res.stdout.splitlines()
    assert [line.split(" ")[0] for line in lines[1:]] == ["train", "val", "test"]
    assert "predict:" in res.stderr  # the progress bar (off with --quiet)
    res = runner.invoke(cli, ["predict", str(run_dir), str(tiny_digits_zoo), "--quiet"])
    assert res.exit_code == 0 and "predict:" not in res.stderr
