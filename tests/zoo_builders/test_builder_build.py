"""`zoo build`: the format on disk, idempotence, resume after kill -9, bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from safetensors import safe_open

from catalog import open_zoo
from catalog.format import sha256_file, weights_sha256
from zoo_builders import build_zoo
from zoo_cli.main import cli


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_issue_spec_builds_48_rows_in_format_v1(tiny_zoo):
    m = json.loads((tiny_zoo / "zoo.json").read_text())
    assert m["format_version"] == 1 and m["name"] == "tiny-digits-mlp" and m["complete"]
    assert m["spec"]["grid"]["seed"] == [0, 1, 2, 3]
    (arch_id, arch), = m["architectures"].items()
    assert [p["name"] for p in arch["params"]] == ["layers.0.weight", "layers.0.bias", "layers.1.weight",
                                                   "layers.1.bias", "layers.2.weight", "layers.2.bias"]
    assert arch["params"][0]["shape"] == [16, 64] and arch["params"][0]["dtype"] == "float32"
    assert arch["layers"][0]["activation"] == "relu" and arch["layers"][0]["kind"] == "linear"
    for f in m["files"]:  # every file listed with its checksum
        assert sha256_file(tiny_zoo / f["path"]) == f["sha256"]
    table = pq.read_table(tiny_zoo / "models" / "part-00000.parquet")
    assert table.num_rows == 48
    for col in ("model_id", "run_id", "checkpoint", "arch_id", "status", "n_params", "weights_shard",
                "weights_row", "sha256", "lr", "weight_decay", "seed", "activation", "train_loss",
                "train_acc", "test_loss", "test_acc", "ggap", "wall_seconds", "torch_threads"):
        assert col in table.column_names, col
    assert set(table.column("torch_threads").to_pylist()) == {1}  # the builder's default: recorded
    assert str(table.schema.field("lr").type) == "double" and str(table.schema.field("seed").type) == "int64"
    assert sorted(set(table.column("checkpoint").to_pylist())) == [0, 3, 6]
    assert len(set(table.column("run_id").to_pylist())) == 16
    assert len(set(table.column("model_id").to_pylist())) == 48
    rows = table.to_pylist()
    shard = rows[0]["weights_shard"]
    assert shard == f"weights/{arch_id}/shard-00000.safetensors"
    with safe_open(str(tiny_zoo / shard), "pt") as f:
        w = {k: f.get_tensor(k) for k in f.keys()}
    assert w["layers.0.weight"].shape == (48, 16, 64)
    for r in rows[:5]:
        assert weights_sha256([w[n][r["weights_row"]] for n in
                               [p["name"] for p in arch["params"]]]) == r["sha256"]
    # Rows of one run are contiguous in the shard.
    by_run: dict[str, list[int]] = {}
    for r in rows:
        by_run.setdefault(r["run_id"], []).append(r["weights_row"])
    assert all(max(v) - min(v) == len(v) - 1 for v in by_run.values())
    last = [r for r in rows if r["checkpoint"] == 6]
    assert max(r["test_acc"] for r in last) > 0.85
    assert all(r["ggap"] == pytest.approx(r["train_acc"] - r["test_acc"], abs=1e-6) for r in rows)


def test_reader_state_dict_and_card(tiny_zoo):
    zoo = open_zoo(tiny_zoo)
    mid = zoo.table.column("model_id")[7].as_py()
    sd = zoo.state_dict(mid)
    assert sd["layers.0.weight"].shape == (16, 64)
    card = (tiny_zoo / "README.md").read_text()
    assert card.startswith("---\n") and "models/*.parquet" in card and "weight-space-learning" in card


def test_building_twice_is_idempotent(tiny_zoo, issue_spec_path):
    before = _files(tiny_zoo)
    plan = build_zoo(issue_spec_path, tiny_zoo, quiet=True)
    assert plan.populations == [] and plan.skipped_runs == 16
    assert _files(tiny_zoo) == before


def _stamps(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and mtime (ns)."""
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_rebuild_that_trains_nothing_leaves_every_file_untouched(tiny_zoo, issue_spec_path, tmp_path):
    """Before, a no-op build rewrote zoo.json and README.md (same bytes, new mtimes)."""
    out = tmp_path / "zoo"
    shutil.copytree(tiny_zoo, out)
    for p in out.rglob("*"):
        os.utime(p, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))  # so any rewrite shows
    before = _stamps(out)
    plan = build_zoo(issue_spec_path, out, quiet=True)
    assert plan.populations == [] and plan.skipped_runs == 16
    assert _stamps(out) == before


def test_other_zoo_in_out_dir_is_refused(tiny_zoo, tmp_path):
    before = _files(tiny_zoo)
    other = {"name": "tiny-digits-mlp", "dataset": {"name": "digits"}, "architecture": {"name": "mlp", "hidden": [4]},
             "training": {"epochs": 1}}
    r = CliRunner().invoke(cli, ["build", str(_write(tmp_path, other)), "--out", str(tiny_zoo)])
    assert r.exit_code == 1
    assert "different spec" in r.output and "Traceback" not in r.output
    assert _files(tiny_zoo) == before


def test_out_inside_another_zoo_is_refused_before_any_work(tiny_zoo, issue_spec_path, tmp_path):
    """`zoo build SPEC --out ZOO/sub` wrote a second zoo inside the first one (README: no command
    writes inside a zoo); it is refused as `zoo generate --out` refuses it, before any training."""
    before = _files(tiny_zoo)
    for dry in ([], ["--dry-run"]):
        r = CliRunner().invoke(cli, ["build", str(issue_spec_path), "--out", str(tiny_zoo / "sub"), "-q", *dry])
        assert r.exit_code == 1, r.output
        assert r.output.startswith("error: out=") and "(--out)" in r.output
        assert "lies inside the zoo directory" in r.output
        assert "choose a path outside it" in r.output and "Traceback" not in r.output
    assert _files(tiny_zoo) == before and not (tiny_zoo / "sub").exists()
    run = tmp_path / "run"  # nor inside another command's output
    run.mkdir()
    (run / "metanetwork.safetensors").write_bytes(b"x")
    r = CliRunner().invoke(cli, ["build", str(issue_spec_path), "--out", str(run / "zoo"), "-q"])
    assert r.exit_code == 1 and "lies inside the metanetwork run directory" in r.output, r.output
    assert sorted(p.name for p in run.iterdir()) == ["metanetwork.safetensors"]


def _write(tmp_path: Path, spec: dict) -> Path:
    import yaml

    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(spec))
    return p


@pytest.mark.parametrize("text, needle", [
    ("name: x\ndataset: {name: imagenet}\narchitecture: {name: mlp}\n", "valid datasets"),
    ("name: x\ndataset: {name: digits}\narchitecture: {name: mlp}\ntraining: {optimizer: rmsprop}\n",
     "valid optimizers"),
    ("name: x\ndataset: {name: digits}\narchitecture: {name: mlp}\ntraining: {epochs: [1]}\n", "must be an integer"),
    ("name: x\ndataset: {name: digits}\narchitecture: {name: mlp}\ngrid: {colour: [1]}\n", "valid axes"),
    ("name: x\n  bad: [\n", "not valid YAML"),
])
def test_cli_bad_input_one_line_no_trace_nothing_written(tmp_path, text, needle):
    p = tmp_path / "s.yaml"
    p.write_text(text)
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["build", str(p), "--out", str(out), "--quiet"])
    assert r.exit_code == 1, r.output
    assert needle in r.output and "Traceback" not in r.output
    assert r.output.startswith("error: ")
    assert not out.exists()


def test_dry_run_prints_plan_and_writes_nothing(issue_spec_path, tmp_path):
    out = tmp_path / "z"
    r = CliRunner().invoke(cli, ["build", str(issue_spec_path), "--out", str(out), "--dry-run",
                                 "--max-population", "5"])
    assert r.exit_code == 0, r.output
    assert "16 runs" in r.output and "rows to write: 48" in r.output and "populations to train: 4" in r.output
    assert not out.exists()


def test_max_population_splits_but_gives_same_zoo(tmp_path, tiny_zoo, issue_spec_path):
    out = tmp_path / "split"
    build_zoo(issue_spec_path, out, max_population=5, quiet=True)
    a, b = open_zoo(out), open_zoo(tiny_zoo)
    assert len(a.manifest.part_files()) == 4
    ta = {r["model_id"]: r["sha256"] for r in a.table.to_pylist()}
    tb = {r["model_id"]: r["sha256"] for r in b.table.to_pylist()}
    assert ta == tb  # same weights, bit for bit, whatever the population split


def test_info_and_presets_commands(tiny_zoo):
    r = CliRunner().invoke(cli, ["info", str(tiny_zoo)])
    assert r.exit_code == 0 and "48 rows, 16 runs, 1 architectures" in r.output and "test_acc" in r.output
    r = CliRunner().invoke(cli, ["info", str(tiny_zoo), "--json"])
    d = json.loads(r.output)
    assert d["counts"]["rows"] == 48 and d["columns"]["lr"] == "double" and d["size_bytes"] > 0
    r = CliRunner().invoke(cli, ["presets"], env={"COLUMNS": "80"})
    assert "digits-mlp" in r.output and "mnist1d-cnn" in r.output and "mnist5k-inr" in r.output
    # One column of names as wide as the longest (mnist5k-modelzoo-cnn), descriptions wrapped under it.
    lines = r.output.splitlines()
    assert all(len(line) <= 80 for line in lines)
    starts = {re.match(r"\S*\s+", line).end() for line in lines}  # where each line's description text starts
    assert starts == {len("mnist5k-modelzoo-cnn") + 2}
    r = CliRunner().invoke(cli, ["info", "/nonexistent/zoo"])
    assert r.exit_code == 1 and "does not exist" in r.output


RESUME_SPEC = {"name": "resume", "dataset": {"name": "digits"}, "architecture": {"name": "mlp", "hidden": [16]},
               "training": {"epochs": 3, "batch_size": 16, "checkpoints": [0, 3]},
               "grid": {"lr": [0.001, 0.003, 0.01, 0.03], "seed": [0, 1, 2]}}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_resume_after_interrupt(tmp_path, sig):
    # 12 epochs: each population trains for ~0.4 s on an idle machine, so the signal sent after the
    # first one lands always arrives mid-build (with 3 epochs an idle machine could finish first).
    spec = _write(tmp_path, {**RESUME_SPEC, "training": {**RESUME_SPEC["training"], "epochs": 12}})
    out = tmp_path / "zoo"
    cmd = [sys.executable, "-m", "zoo_cli.main", "build", str(spec), "--out", str(out), "--quiet",
           "--max-population", "2"]
    # A background job of a non-interactive shell inherits SIGINT ignored, and Python then installs
    # no KeyboardInterrupt handler: give the build the default disposition, as a terminal would.
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    # Wait until at least one population is in the manifest, then kill -9 mid-build.
    while time.time() < deadline:
        m = out / "zoo.json"
        if m.is_file() and len(json.loads(m.read_text())["files"]) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(sig)
    proc.wait()
    if sig == signal.SIGINT:  # Ctrl-C: a clean message, no traceback, exit 130
        err = proc.stderr.read().decode()
        assert proc.returncode == 130 and "run the same command again to resume" in err
        assert "Traceback" not in err
    m = json.loads((out / "zoo.json").read_text())
    assert not m["complete"]
    done_parts = {f["path"]: f["sha256"] for f in m["files"] if f["kind"] == "part"}
    assert 1 <= len(done_parts) < 6
    # Rerun the same command: finishes without retraining finished populations.
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    zoo = open_zoo(out)
    assert zoo.manifest.complete
    assert zoo.table.num_rows == 24
    assert len(set(zoo.table.column("model_id").to_pylist())) == 24
    for path, sha in done_parts.items():  # finished parts untouched
        assert sha256_file(out / path) == sha
    listed = {f.path for f in zoo.manifest.files}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk == listed | {"zoo.json", "README.md"}  # no stray or partial files
    assert not any(".tmp-" in p for p in on_disk)
    # Same weights as an uninterrupted build.
    ref = tmp_path / "ref"
    build_zoo(spec, ref, max_population=2, quiet=True)
    assert ({r["model_id"]: r["sha256"] for r in open_zoo(ref).table.to_pylist()}
            == {r["model_id"]: r["sha256"] for r in zoo.table.to_pylist()})


def test_stray_partial_files_are_removed_on_resume(tmp_path):
    spec = _write(tmp_path, {**RESUME_SPEC, "grid": {"lr": [0.01], "seed": [0, 1]}})
    out = tmp_path / "z"
    build_zoo(spec, out, quiet=True)
    m = json.loads((out / "zoo.json").read_text())
    # Simulate a crash between the rename of a shard and the manifest update.
    stray = out / "weights" / "x" / "shard-00009.safetensors"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"partial")
    (out / "models" / ".tmp-abc.parquet").write_bytes(b"partial")
    build_zoo(spec, out, quiet=True)
    assert not stray.exists() and not (out / "models" / ".tmp-abc.parquet").exists()
    assert json.loads((out / "zoo.json").read_text())["files"] == m["files"]


def test_other_datasets_and_architectures_build(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    npz = tmp_path / "d.npz"
    np.savez(npz, x_train=rng.normal(size=(60, 5)).astype("float32"), y_train=rng.integers(0, 3, 60),
             x_test=rng.normal(size=(20, 5)).astype("float32"), y_test=rng.integers(0, 3, 20))
    for ds, arch in [({"name": "npz", "path": str(npz)}, {"name": "mlp", "hidden": [4]}),
                     ({"name": "moons", "n_samples": 200}, {"name": "mlp", "hidden": [4], "activation": "tanh"}),
                     ({"name": "blobs", "n_samples": 200}, {"name": "mlp", "hidden": [4]}),
                     ({"name": "digits"}, {"name": "cnn", "channels": [2, 2, 2]})]:
        out = tmp_path / ds["name"]
        build_zoo({"name": ds["name"], "dataset": ds, "architecture": arch,
                   "training": {"epochs": 1, "batch_size": 64}, "grid": {"seed": [0, 1]}}, out, quiet=True)
        assert open_zoo(out).table.num_rows == 4


def test_inr_task_columns(tmp_path):
    out = tmp_path / "inr"
    build_zoo({"name": "inr", "dataset": {"name": "digits"}, "architecture": {"name": "siren", "hidden": [8]},
               "task": {"name": "inr", "images": 3}, "training": {"epochs": 5, "checkpoints": [5]}}, out, quiet=True)
    t = open_zoo(out).table
    assert t.num_rows == 3
    assert sorted(t.column("image_index").to_pylist()) == [0, 1, 2]
    assert {"label", "psnr", "mse"} <= set(t.column_names)


def test_diverged_rows_store_nan_accuracies(tmp_path):
    # lr 1e30 drives SGD's weights to NaN. argmax of NaN logits is class 0, so such a network's
    # "accuracy" was the share of class 0 (0.1 of the test split) with a NaN loss. Its accuracies
    # and gap are NaN like its loss; every other row keeps finite values, and zoo plot's heatmap
    # leaves the diverged cells out and marks them.
    import math

    import numpy as np

    from weightspace.analysis import phase_heatmap

    out = tmp_path / "div"
    build_zoo({"name": "div", "dataset": {"name": "digits"}, "architecture": {"name": "mlp", "hidden": [8]},
               "training": {"epochs": 2, "batch_size": 32, "optimizer": "sgd", "checkpoints": [0, 2]},
               "grid": {"lr": [0.05, 1.0e30], "seed": [0, 1]}}, out, quiet=True)
    rows = open_zoo(out).table.to_pylist()
    diverged = [r for r in rows if r["status"] == "diverged"]
    assert len(rows) == 8 and len(diverged) == 2
    assert all(r["lr"] == 1.0e30 and r["checkpoint"] == 2 for r in diverged)
    for r in rows:
        metrics = [r[c] for c in ("train_loss", "train_acc", "test_loss", "test_acc", "ggap")]
        if r["status"] == "diverged":
            assert all(math.isnan(v) for v in metrics), r
        else:
            assert all(math.isfinite(v) for v in metrics), r
    last = [r for r in rows if r["checkpoint"] == 2]
    grid = phase_heatmap({c: [r[c] for r in last] for c in ("lr", "seed", "test_acc")},
                         x="lr", y="seed", metric="test_acc")
    assert grid.x_values == [0.05, 1.0e30]
    assert grid.diverged[:, 1].tolist() == [1, 1] and np.isnan(grid.values[:, 1]).all()
    assert grid.diverged[:, 0].tolist() == [0, 0] and not np.isnan(grid.values[:, 0]).any()


#: One run of one epoch: enough to draw (or not) a progress bar.
ONE_EPOCH = {"name": "one-epoch", "dataset": {"name": "digits"},
             "architecture": {"name": "mlp", "hidden": [4]},
             "training": {"epochs": 1, "batch_size": 256, "checkpoints": [1]}, "grid": {"seed": [0]}}


def test_progress_bar_switch(tmp_path, capfd):
    env_before = os.environ.pop("TQDM_DISABLE", None)
    try:
        build_zoo(ONE_EPOCH, tmp_path / "p", quiet=False)
        assert "build one-epoch" in capfd.readouterr().err
        build_zoo(ONE_EPOCH, tmp_path / "q", quiet=True)
        assert "build one-epoch" not in capfd.readouterr().err
    finally:
        if env_before is not None:
            os.environ["TQDM_DISABLE"] = env_before


# ================================================================================ hardening
@pytest.fixture(scope="module")
def split_zoo(tmp_path_factory, issue_spec_path):
    """The issue spec built as 4 populations (4 parts, 4 shards)."""
    out = tmp_path_factory.mktemp("zoos") / "split"
    build_zoo(issue_spec_path, out, max_population=5, quiet=True)
    return out


def _shas(root: Path) -> dict[str, str]:
    return {r["model_id"]: r["sha256"] for r in open_zoo(root).table.to_pylist()}


def _one_line_error(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in output, output
    return lines[0]


def test_build_is_refused_while_another_writer_holds_the_zoo(tmp_path, issue_spec_path):
    from catalog import ZooWriter
    from zoo_builders.spec import BuildSpec

    spec = BuildSpec.load(issue_spec_path)
    out = tmp_path / "z"
    holder = ZooWriter(out, spec.name, spec.to_dict())  # another writer, mid-build
    try:
        r = CliRunner().invoke(cli, ["build", str(issue_spec_path), "--out", str(out), "--quiet"])
        assert r.exit_code == 1
        line = _one_line_error(r.output)
        assert f"is being written by process {os.getpid()} " in line and "wait for it to finish" in line
        assert not list(out.glob("models/*")) and not list(out.glob("weights/*"))  # nothing trained
    finally:
        holder.close()


def test_two_build_processes_on_one_out(tmp_path):
    """The second process fails at once, naming the first; the first's zoo stays intact."""
    spec = _write(tmp_path, {**RESUME_SPEC, "training": {**RESUME_SPEC["training"], "epochs": 30}})
    out = tmp_path / "zoo"
    cmd = [sys.executable, "-m", "zoo_cli.main", "build", str(spec), "--out", str(out), "--quiet",
           "--max-population", "1"]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "zoo.json").is_file() and first.poll() is None:
            time.sleep(0.02)
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the first build finished before the second started; make it longer"
        assert second.returncode == 1
        line = _one_line_error(second.stderr)
        assert f"process {first.pid} (" in line and "build" in line
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    report = open_zoo(out).verify()
    assert report.ok, [str(p) for p in report.problems]


def test_resume_when_interrupted_before_the_first_manifest(tmp_path):
    """Simulated: the first shard and part are on disk, no zoo.json yet (a kill -9 or Ctrl-C
    between the renames and the first manifest write)."""
    spec = _write(tmp_path, {**RESUME_SPEC, "grid": {"lr": [0.01], "seed": [0, 1]}})
    ref = tmp_path / "ref"
    build_zoo(spec, ref, quiet=True)
    out = tmp_path / "z"
    shutil.copytree(ref, out)
    (out / "zoo.json").unlink()
    (out / "README.md").unlink()
    (out / ".tmp-manifest").write_bytes(b"{\"half")
    r = CliRunner().invoke(cli, ["build", str(spec), "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    assert open_zoo(out).manifest.complete and _shas(out) == _shas(ref)
    assert open_zoo(out).verify().ok


def test_resume_after_kill_as_the_first_shard_lands(tmp_path):
    spec = _write(tmp_path, RESUME_SPEC)
    out = tmp_path / "zoo"
    cmd = [sys.executable, "-m", "zoo_cli.main", "build", str(spec), "--out", str(out), "--quiet",
           "--max-population", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("weights/*/shard-00000.safetensors")):
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    zoo = open_zoo(out)
    assert zoo.manifest.complete and zoo.table.num_rows == 24 and zoo.verify().ok


def test_build_repairs_missing_shard_and_corrupt_part(tmp_path, split_zoo, issue_spec_path):
    out = tmp_path / "z"
    shutil.copytree(split_zoo, out)
    m = json.loads((out / "zoo.json").read_text())
    shards = [f["path"] for f in m["files"] if f["kind"] == "shard"]
    parts = [f["path"] for f in m["files"] if f["kind"] == "part"]
    (out / shards[1]).unlink()
    data = bytearray((out / parts[3]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (out / parts[3]).write_bytes(bytes(data))
    kept = {p: sha256_file(out / p) for p in (parts[0], parts[2], shards[0], shards[2])}
    r = CliRunner().invoke(cli, ["build", str(issue_spec_path), "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    assert f"repaired: dropped {shards[1]} (missing)" in r.output, r.output
    assert parts[3] in r.output and "8 trained now, 8 already there" in r.output
    report = open_zoo(out).verify()
    assert report.ok and not report.warnings, [str(p) for p in report.problems + report.warnings]
    assert _shas(out) == _shas(split_zoo)  # the same weights, bit for bit
    assert all(sha256_file(out / p) == sha for p, sha in kept.items())  # intact files untouched
    zoo = open_zoo(out)
    assert zoo.manifest.counts["rows"] == 48 and zoo.manifest.counts["runs"] == 16


def test_dry_run_counts_finished_runs_and_lists_varying_axes(tmp_path, split_zoo, issue_spec_path):
    out = tmp_path / "z"
    shutil.copytree(split_zoo, out)
    # Half built: the last two populations never reached the manifest (their files are strays).
    m = json.loads((out / "zoo.json").read_text())
    m["files"], m["complete"] = m["files"][:4], False
    (out / "zoo.json").write_text(json.dumps(m))
    before = _files(out)
    r = CliRunner().invoke(cli, ["build", str(issue_spec_path), "--out", str(out), "--dry-run",
                                 "--max-population", "5"])
    assert r.exit_code == 0, r.output
    assert "16 runs (8 already built)" in r.output
    assert "populations to train: 2; rows to write: 24" in r.output
    assert "weight_decay=" in r.output and "seed=0..3" in r.output, r.output
    assert _files(out) == before  # read-only: no lock file, strays kept


def test_dry_run_shows_the_axes_that_vary(issue_spec_path, tmp_path):
    r = CliRunner().invoke(cli, ["build", str(issue_spec_path), "--out", str(tmp_path / "z"), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "lr=0.001,0.01 weight_decay=0.0,0.001 seed=0..3" in r.output, r.output
    assert "activation=" not in r.output  # the same for every run


def test_threads_are_set_for_the_build_and_restored(tmp_path, monkeypatch):
    import torch

    import zoo_builders.build as build_mod

    seen = []
    real = build_mod.train_classifiers

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(build_mod, "train_classifiers", spy)
    spec = {**RESUME_SPEC, "grid": {"seed": [0]}}
    before = torch.get_num_threads()
    build_zoo(spec, tmp_path / "a", quiet=True)
    build_zoo({**spec, "name": "b"}, tmp_path / "b", quiet=True, threads=2)
    assert seen == [build_mod.DEFAULT_THREADS, 2]
    assert torch.get_num_threads() == before
    r = CliRunner().invoke(cli, ["build", _write(tmp_path, spec).as_posix(), "--out",
                                 str(tmp_path / "c"), "--threads", "0"])
    assert r.exit_code != 0 and "--threads" in r.output


def test_rows_record_the_thread_count_they_trained_with(tmp_path):
    from zoo_builders import build_zoo

    spec = {"name": "threads", "dataset": {"name": "digits", "test_fraction": 0.25},
            "architecture": {"name": "mlp", "hidden": [4]},
            "training": {"epochs": 1, "batch_size": 256, "checkpoints": [1]}, "grid": {"seed": [0, 1]}}
    build_zoo(spec, tmp_path / "two", threads=2, quiet=True)
    assert set(pq.read_table(tmp_path / "two" / "models" / "part-00000.parquet").column("torch_threads")
               .to_pylist()) == {2}


def test_resuming_with_another_thread_count_warns_and_names_the_one_to_use(tmp_path, monkeypatch):
    # Interrupted after the first of two populations, built with --threads 2: resuming with the
    # default count warns (Python warning; dry run and CLI say it too) and names --threads 2;
    # resuming with 2 or with nothing left to train is silent.
    import warnings

    import zoo_builders.build as build_mod
    from zoo_builders import build_zoo

    spec = {"name": "threads", "dataset": {"name": "digits", "test_fraction": 0.25},
            "architecture": {"name": "mlp", "hidden": [4]},
            "training": {"epochs": 1, "batch_size": 256, "checkpoints": [1]}, "grid": {"seed": [0, 1, 2, 3]}}
    commit = build_mod.commit_population

    def commit_then_stop(*args, **kwargs):
        commit(*args, **kwargs)
        raise KeyboardInterrupt

    for out in ("a", "b", "c"):
        monkeypatch.setattr(build_mod, "commit_population", commit_then_stop)
        with pytest.raises(KeyboardInterrupt):
            build_zoo(spec, tmp_path / out, threads=2, max_population=2, quiet=True)
    monkeypatch.setattr(build_mod, "commit_population", commit)
    plan = build_zoo(spec, tmp_path / "a", max_population=2, dry_run=True)
    assert plan.other_threads == [2] and "pass --threads 2 to keep one count" in plan.describe()
    with pytest.warns(UserWarning, match="rows trained with torch threads 2; this build trains with 1"):
        build_zoo(spec, tmp_path / "a", max_population=2, quiet=True)
    assert set(open_zoo(tmp_path / "a").table.column("torch_threads").to_pylist()) == {1, 2}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_zoo(spec, tmp_path / "a", max_population=2, quiet=True)  # complete: nothing to train
        build_zoo(spec, tmp_path / "b", threads=2, max_population=2, quiet=True)
    r = CliRunner().invoke(cli, ["build", _write(tmp_path, spec).as_posix(), "--out", str(tmp_path / "c"),
                                 "--max-population", "2", "--quiet"])
    assert r.exit_code == 0
    assert "warning: the zoo's rows trained with torch threads 2; this build trains with 1" in r.output
    assert "Warning" not in r.output  # one line, no source location


@pytest.mark.parametrize("arch, message", [
    ({"name": "cnn", "kernel_size": 10**200}, "layer 'layers.0.weight': kernel_size is about 1e+200, beyond 2**63 - 1"),
    ({"name": "resnet", "width_multiplier": 1e300}, "node 'conv1': out_channels is about 1e+301, beyond 2**63 - 1"),
    ({"name": "vgg", "channels": [10**320]}, "node 'features.0': out_channels is about 1e+320, beyond 2**63 - 1"),
], ids=["cnn", "resnet", "vgg"])
def test_sizes_beyond_int64_are_one_clear_error(tmp_path, arch, message):
    """These planned networks of more parameters than a float can count: the memory check's
    message then raised OverflowError (format_bytes) instead of refusing the spec."""
    from catalog.errors import WeightzooError

    spec = {"name": "big", "dataset": {"name": "digits"}, "training": {"epochs": 1}, "architecture": arch}
    with pytest.raises(WeightzooError) as e:
        build_zoo(spec, tmp_path / "dry", dry_run=True)
    assert message in str(e.value)


@pytest.mark.parametrize("family, message", [
    ({"architecture": {"name": "resnet", "width_multiplier": 1e300}},
     "families[1] (resnet, width_multiplier=1e+300): node 'conv1': out_channels is about 1e+301"),
    ({"architecture": {"name": "resnet"}, "grid": {"width_multiplier": [0.25, 1e300]}},  # a grid point
     "families[1] (resnet, width_multiplier=1e+300): node 'conv1': out_channels is about 1e+301"),
    ({"architecture": {"name": "vgg", "channels": [4, 10**320]}},
     "families[1] (vgg, channels=[4, about 1e+320]): node 'features.4': out_channels is about 1e+320"),
    ({"architecture": {"name": "transformer", "patch_size": 16}},
     "families[1] (transformer, patch_size=16): transformer: patch_size 16 must divide the input size"),
], ids=["resnet", "resnet-grid", "vgg", "transformer"])
def test_a_family_too_large_is_named_with_the_fields_the_spec_sets(tmp_path, family, message):
    """The error named only the generated node's field (out_channels of 'conv1'), not the family or
    the spec field that made it (width_multiplier)."""
    from catalog.errors import WeightzooError

    spec = {"name": "big", "dataset": {"name": "digits"}, "training": {"epochs": 1},
            "families": [{"architecture": {"name": "mlp", "hidden": [4]}}, family]}
    with pytest.raises(WeightzooError) as e:
        build_zoo(spec, tmp_path / "dry", dry_run=True)
    assert str(e.value).startswith(message)


def test_a_model_too_large_for_memory_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    import zoo_builders.build as build_module
    from catalog.errors import WeightzooError

    huge = {"name": "huge", "dataset": {"name": "digits"}, "training": {"epochs": 1},
            "architecture": {"name": "transformer", "dim": 100_000_000, "heads": 1}}
    with pytest.raises(WeightzooError, match=r"^architecture transformer \(dim=100000000, heads=1\): architecture "
                                             r"transformer-\w+ has 160,000,005,500,000,010 parameters.*of memory "
                                             r"available"):
        build_zoo(huge, tmp_path / "dry", dry_run=True)
    # mlp 64-8-10: 610 parameters, at least 9,760 bytes to train
    small = {"name": "small", "dataset": {"name": "digits"}, "training": {"epochs": 1},
             "families": [{"architecture": {"name": "mlp", "hidden": [2]}},
                          {"architecture": {"name": "mlp", "hidden": [8]}}]}
    monkeypatch.setattr(build_module, "available_memory", lambda: 9_000)
    with pytest.raises(WeightzooError, match=r"^families\[1\] \(mlp, hidden=\[8\]\): architecture mlp-\w+ has 610 "
                                             r"parameters"):
        build_zoo(small, tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr(build_module, "available_memory", lambda: 10_000)
    assert build_zoo(small, tmp_path / "out", dry_run=True).rows == 4


def test_dry_run_lists_each_population_with_its_own_family_fields(tmp_path):
    spec = {"name": "two", "dataset": {"name": "digits"}, "training": {"epochs": 1},
            "families": [{"architecture": {"name": "cnn", "channels": [4, 4]}, "grid": {"seed": [0, 1]}},
                         {"architecture": {"name": "resnet", "width_multiplier": 0.125},
                          "grid": {"init": ["default", "normal"]}}]}
    text = build_zoo(spec, tmp_path / "z", dry_run=True).describe()
    cnn, resnet = [line for line in text.splitlines() if "architecture=" in line]
    assert "None" not in text, text
    assert "channels=[4,4]" in cnn and "depth=" not in cnn and "seed=0,1" in cnn
    assert "depth=8" in resnet and "channels=" not in resnet and "init=default,normal" in resnet
