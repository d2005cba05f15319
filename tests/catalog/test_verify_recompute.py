"""`zoo verify --recompute`: stored metrics re-evaluated on the zoo's dataset and compared."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from analyze_helpers import TINY_INR
from torch import nn
from zoo_helpers import rewrite_part, run_cli, write_npz

from catalog.errors import WeightzooError
from catalog.format import read_manifest
from catalog.zoo import open_zoo
from zoo_builders.datasets import load_zoo_dataset
from zoo_builders.importers import export_statedict, import_statedicts
from zoo_builders.recompute import recompute_metrics


def test_a_built_zoo_recomputes_within_tolerance(tiny_digits_zoo):
    report = recompute_metrics(tiny_digits_zoo, sample=10, seed=3)
    assert report.ok, report.lines()
    assert report.task == "classify" and report.dataset == "digits" and report.sampled == 10
    assert set(report.checks) == {"test_acc", "test_loss"}
    assert all(c.compared == 10 and c.max_abs_diff <= 1e-4 for c in report.checks.values())
    # the sample is seeded: the same seed re-evaluates the same models
    again = recompute_metrics(tiny_digits_zoo, sample=10, seed=3)
    assert [c.worst_model for c in again.checks.values()] == [c.worst_model for c in report.checks.values()]


def test_an_inr_zoo_recomputes_mse_and_psnr(zoo_factory):
    report = recompute_metrics(zoo_factory(TINY_INR), sample=None)
    assert report.ok and report.task == "inr" and set(report.checks) == {"mse", "psnr"}, report.lines()
    assert report.checks["mse"].compared == report.of == 2


def test_a_tampered_metric_fails_naming_the_model(tiny_digits_zoo, tmp_path):
    zoo = tmp_path / "zoo"
    shutil.copytree(tiny_digits_zoo, zoo)
    part = read_manifest(zoo).part_files()[0].path
    table = pq.read_table(zoo / part)
    ok_rows = [i for i, s in enumerate(table.column("status").to_pylist()) if s == "ok"]
    victim = table.column("model_id")[ok_rows[0]].as_py()
    acc = table.column("test_acc").to_pylist()
    acc[ok_rows[0]] = min(1.0, acc[ok_rows[0]] + 0.25) if acc[ok_rows[0]] < 0.75 else acc[ok_rows[0]] - 0.25
    i = table.schema.get_field_index("test_acc")
    rewrite_part(zoo, part, table.set_column(i, "test_acc", pa.array(acc, type=table.schema.field(i).type)))
    assert run_cli("verify", zoo, "-q").exit_code == 0  # the files are consistent: only a recompute sees it
    r = run_cli("verify", zoo, "--recompute", "--sample", "1000", "-q")
    assert r.exit_code == 1, r.output
    assert f"MISMATCH {victim}: test_acc" in r.output
    assert r.output.strip().splitlines()[-1].startswith("error: 1 stored metric(s) differ") and victim in r.output
    assert "test_acc: max |stored - recomputed| = 0.25" in r.output
    assert pc.sum(pc.equal(table.column("model_id"), victim)).as_py() == 1


def test_a_built_zoo_on_changed_npz_data_gets_no_import_hint(tmp_path, monkeypatch, zoo_dir):
    """Re-importing is the fix for an imported zoo only: a built zoo whose npz file changed is told
    to put that file back, not to import it again."""
    from zoo_builders import build_zoo

    monkeypatch.chdir(tmp_path)
    write_npz(tmp_path / "data.npz", 0)
    spec = {"name": "npzzoo", "dataset": {"name": "npz", "path": "data.npz"},
            "architecture": {"name": "mlp", "hidden": [4]}, "training": {"epochs": 1, "checkpoints": [1]}}
    build_zoo(spec, "z", quiet=True)
    write_npz(tmp_path / "data.npz", 1)  # other data of the same sizes
    with pytest.raises(WeightzooError) as e:
        recompute_metrics(tmp_path / "z")
    assert "holds other data" in str(e.value) and str(e.value).endswith("is that file)")
    assert "import" not in str(e.value)
    r = run_cli("verify", tmp_path / "z", "--recompute", "-q")
    assert r.exit_code == 1 and r.output.strip().splitlines()[-1].startswith("error: zoo 'npzzoo' was built on")
    assert "put that file back" in r.output and "import" not in r.output
    # A zoo that records no dataset at all: importing it with --dataset is the way to give it one.
    with pytest.raises(WeightzooError, match="import it again with --dataset"):
        recompute_metrics(zoo_dir)


def test_an_import_with_its_dataset_recomputes(tiny_digits_zoo, tmp_path):
    """The built zoo exported as state dicts (its metrics in metadata.jsonl) and imported with
    --dataset: the imported claims check out; without --dataset the error says what to pass."""
    export_statedict(tiny_digits_zoo, tmp_path / "sd", quiet=True)
    import_statedicts(tmp_path / "sd", tmp_path / "plain", quiet=True)
    with pytest.raises(WeightzooError, match="import it again with --dataset"):
        recompute_metrics(tmp_path / "plain")
    r = run_cli("import", "state-dicts", tmp_path / "sd", "--out", tmp_path / "zoo", "-q",
                "--dataset", '{"name": "digits", "test_fraction": 0.25}')
    assert r.exit_code == 0, r.output
    assert read_manifest(tmp_path / "zoo").spec["dataset"]["name"] == "digits"
    r = run_cli("verify", tmp_path / "zoo", "--recompute", "--sample", "8", "-q")
    assert r.exit_code == 0, r.output
    assert "recompute" in r.output and ": OK; 8 of" in r.output


def test_recompute_errors_name_the_python_arguments(tiny_digits_zoo):
    """A Python caller passed sample= / tolerance=: the messages named --sample / --tolerance only."""
    with pytest.raises(WeightzooError, match=r"^sample=0 \(--sample\) must be at least 1 \(None: every model\)$"):
        recompute_metrics(tiny_digits_zoo, sample=0)
    with pytest.raises(WeightzooError, match=r"^tolerance=-1\.0 \(--tolerance\) must be >= 0$"):
        recompute_metrics(tiny_digits_zoo, sample=2, tolerance=-1.0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_half_precision_import_recomputes_in_its_dtype(tmp_path, dtype):
    """The dataset is float32; a float16/bfloat16 zoo's models are evaluated in their own dtype
    (once a dtype error), and the accuracy is the one their modules compute."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).to(dtype)
    (tmp_path / "src").mkdir()
    torch.save(net.state_dict(), tmp_path / "src" / "h0.pt")
    (tmp_path / "src" / "metadata.csv").write_text("file,test_acc\nh0.pt,0.0\n")
    import_statedicts(tmp_path / "src", tmp_path / "z", dataset="digits", quiet=True)
    report = recompute_metrics(tmp_path / "z")
    z = open_zoo(tmp_path / "z")
    data = load_zoo_dataset(z)
    (module,) = z.select().modules()
    with torch.no_grad():
        acc = (module(data.x_test.reshape(len(data.x_test), -1).to(dtype)).argmax(1) == data.y_test).double().mean()
    assert report.checks["test_acc"].compared == 1
    assert report.checks["test_acc"].max_abs_diff == pytest.approx(float(acc), abs=1e-6)  # stored 0.0
