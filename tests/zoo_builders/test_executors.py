"""Executors: a local process pool and Ray train populations; the driver alone writes the zoo,
which is the same (rows and weights) as a serial build's, and survives kill -9 of a worker or
of the driver."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

# A local Ray cluster started by these tests listens on 127.0.0.1 only (Ray reads this when
# imported; the executor sets it too, but pytest may import ray first).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from catalog import WeightzooError, open_zoo  # noqa: E402
from catalog.format import sha256_file  # noqa: E402
from zoo_builders import build_zoo  # noqa: E402
from zoo_builders.build import TrainedPopulation  # noqa: E402
from zoo_builders.executors import (  # noqa: E402
    RAY_INSTALL_HINT,
    LocalPool,
    RayExecutor,
    cpu_count,
    make_executor,
    parse_workers,
)
from zoo_cli.main import cli  # noqa: E402

#: 8 runs, trained as 4 populations of 2 (--max-population 2): 16 rows.
SPEC = {
    "name": "exec-test",
    "dataset": {"name": "digits", "test_fraction": 0.25},
    "architecture": {"name": "mlp", "hidden": [8], "activation": "relu"},
    "training": {"epochs": 2, "batch_size": 64, "optimizer": "adam", "checkpoints": [0, 2]},
    "grid": {"lr": [0.001, 0.01], "seed": [0, 1, 2, 3]},
}
#: Columns that say how and when a row was built, not what it is.
BUILD_COLUMNS = ("wall_seconds", "weights_shard", "weights_row")


def _rows(root: Path) -> dict[str, dict]:
    """model_id -> the row without the columns that depend on scheduling."""
    return {r["model_id"]: {k: v for k, v in r.items() if k not in BUILD_COLUMNS}
            for r in open_zoo(root).table.to_pylist()}


def _shas(root: Path) -> dict[str, str]:
    return {r["model_id"]: r["sha256"] for r in open_zoo(root).table.to_pylist()}


def _assert_same_zoo(out: Path, ref: Path) -> None:
    zoo = open_zoo(out)
    assert zoo.manifest.complete
    ids = zoo.table.column("model_id").to_pylist()
    assert len(ids) == len(set(ids)), "duplicated rows"
    assert _rows(out) == _rows(ref)
    assert _shas(out) == _shas(ref)
    assert zoo.manifest.counts == open_zoo(ref).manifest.counts
    report = zoo.verify()
    assert report.ok, [str(p) for p in report.problems]


@pytest.fixture(scope="module")
def serial_zoo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serial") / "zoo"
    build_zoo(SPEC, out, max_population=2, quiet=True)
    return out


# ================================================================================ options
def test_parse_workers() -> None:
    assert parse_workers(None) == 1 and parse_workers(3) == 3 and parse_workers("2") == 2
    assert parse_workers("auto") == cpu_count() >= 1
    for bad in (0, -1, "0", "many", 1.5, True):
        with pytest.raises(WeightzooError, match="--workers must be a positive integer or 'auto'"):
            parse_workers(bad)


def test_make_executor_choices() -> None:
    assert make_executor() is None and make_executor("local", 1) is None  # serial, as always
    pool = make_executor("local", 2, threads=3)
    assert isinstance(pool, LocalPool) and (pool.workers, pool.threads) == (2, 3)
    with pytest.raises(WeightzooError, match="unknown executor 'dask'; executors: local, ray"):
        make_executor("dask")
    with pytest.raises(WeightzooError, match="--address names a Ray cluster"):
        make_executor("local", address="127.0.0.1:6379")


def test_missing_ray_is_one_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(WeightzooError) as e:
        make_executor("ray")
    assert str(e.value) == RAY_INSTALL_HINT and "pip install 'weightzoo[ray]'" in str(e.value)
    r = CliRunner().invoke(cli, ["build", _spec_file(tmp_path), "--out", str(tmp_path / "z"),
                                 "--executor", "ray", "--quiet"])
    assert r.exit_code == 1 and r.output.strip() == f"error: {RAY_INSTALL_HINT}", r.output
    assert not (tmp_path / "z").exists()  # refused before the zoo was created


def test_trained_population_pickles_bit_for_bit() -> None:
    g = torch.Generator().manual_seed(0)
    weights = {"w": torch.randn(3, 4, 5, generator=g), "b": torch.randn(3, 4, generator=g).to(torch.bfloat16),
               "d": torch.randn(3, 2, generator=g, dtype=torch.float64)}
    back = pickle.loads(pickle.dumps(TrainedPopulation([{"model_id": "m"}], weights)))
    assert back.rows == [{"model_id": "m"}]
    for k, v in weights.items():
        assert back.weights[k].dtype == v.dtype and torch.equal(back.weights[k], v)


# ================================================================================ identical output
def test_local_pool_builds_the_serial_zoo(serial_zoo, tmp_path) -> None:
    out = tmp_path / "pool"
    plan = build_zoo(SPEC, out, max_population=2, quiet=True, workers=2)
    assert len(plan.populations) == 4
    _assert_same_zoo(out, serial_zoo)
    # A rerun of the finished zoo trains nothing and changes nothing.
    before = {p: sha256_file(out / p) for p in ("zoo.json", "README.md")}
    assert build_zoo(SPEC, out, max_population=2, quiet=True, workers=2).populations == []
    assert {p: sha256_file(out / p) for p in before} == before


class _PoolBrokenAtSubmit:
    """A process pool whose worker died before the next submit: it refuses every new task."""

    def submit(self, *args, **kwargs):
        import concurrent.futures as cf

        raise cf.process.BrokenProcessPool("a child process terminated abruptly")

    def shutdown(self, *args, **kwargs) -> None:
        pass


def test_a_pool_broken_at_submit_is_restarted(serial_zoo, tmp_path, monkeypatch) -> None:
    # Seen in CI: a worker killed between two submits made submit() raise, which escaped.
    real_start, started = LocalPool._start, []

    def start(self, shared):
        started.append(1)
        return _PoolBrokenAtSubmit() if len(started) == 1 else real_start(self, shared)

    monkeypatch.setattr(LocalPool, "_start", start)
    out = tmp_path / "pool"
    build_zoo(SPEC, out, max_population=2, quiet=True, workers=2)
    assert len(started) == 2
    _assert_same_zoo(out, serial_zoo)


def test_cli_workers_note_when_populations_are_fewer(serial_zoo, tmp_path) -> None:
    out = tmp_path / "cli"
    r = CliRunner().invoke(cli, ["build", _spec_file(tmp_path), "--out", str(out), "--quiet",
                                 "--workers", "2"])
    assert r.exit_code == 0, r.output
    assert ("note: 1 population(s) to train, so at most that many of the 2 workers were busy; "
            "--max-population 4 splits them") in r.output
    assert _shas(out) == _shas(serial_zoo)
    r = CliRunner().invoke(cli, ["build", _spec_file(tmp_path), "--out", str(out), "--workers", "0"])
    assert r.exit_code == 1 and "--workers must be a positive integer or 'auto'" in r.output


def test_worker_errors_reach_the_driver(tmp_path) -> None:
    spec = {"name": "inr", "dataset": {"name": "digits"}, "architecture": {"name": "siren", "hidden": [4]},
            "task": {"name": "inr", "images": 2, "offset": 10**6}, "training": {"epochs": 1}}
    with pytest.raises(WeightzooError, match="exceed the .* images of 'digits'"):
        build_zoo(spec, tmp_path / "z", quiet=True, workers=2)


def test_big_populations_are_written_as_several_parts(serial_zoo, tmp_path, monkeypatch) -> None:
    import pyarrow.parquet as pq

    import zoo_builders.build as build_mod

    # Populations of 2 runs x 2 checkpoints; a cap of 3 rows' worth of weights holds one run.
    n_params = open_zoo(serial_zoo).table.column("n_params")[0].as_py()
    monkeypatch.setattr(build_mod, "MAX_SHARD_BYTES", 3 * n_params * 4)
    out = tmp_path / "capped"
    build_zoo(SPEC, out, max_population=2, quiet=True)
    zoo = open_zoo(out)
    assert len(zoo.manifest.part_files()) == 8 and len(zoo.manifest.shard_files()) == 8
    for f in zoo.manifest.part_files():  # one whole run per part
        runs = pq.read_table(out / f.path, columns=["run_id"]).column(0).to_pylist()
        assert f.rows == 2 and len(set(runs)) == 1
    _assert_same_zoo(out, serial_zoo)


@pytest.mark.slow
def test_ray_builds_the_serial_zoo(serial_zoo, tmp_path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'weightzoo[ray]')")

    seen: dict = {}

    class Checked(RayExecutor):
        def _connect(self) -> None:
            before = _listening()
            super()._connect()
            seen["node_ip"] = ray.util.get_node_ip_address()
            seen["new_listeners"] = _listening() - before

    try:
        out = tmp_path / "ray"
        build_zoo(SPEC, out, max_population=2, quiet=True, executor=Checked(workers=2))
        _assert_same_zoo(out, serial_zoo)
        assert seen["node_ip"] == "127.0.0.1"
        assert {ip for ip, _ in seen["new_listeners"]} <= {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
        assert not ray.is_initialized()  # the executor stopped the cluster it started
    finally:
        if ray.is_initialized():
            ray.shutdown()


def _listening() -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket on this machine (from /proc/net)."""
    import ipaddress

    out = set()
    for name, width in (("tcp", 8), ("tcp6", 32)):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            hex_ip, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_ip)
            # /proc/net prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            ip = ipaddress.ip_address(raw[:4] if width == 8 else raw)
            if getattr(ip, "ipv4_mapped", None):
                ip = ip.ipv4_mapped
            out.add((str(ip), int(hex_port, 16)))
    return out


# ================================================================================ kill -9
#: 10 runs trained one per population, long enough to kill something mid-build.
KILL_SPEC = {**SPEC, "name": "kill-test", "training": {**SPEC["training"], "epochs": 12, "checkpoints": [6, 12]},
             "grid": {"lr": [0.001, 0.01], "seed": [0, 1, 2, 3, 4]}}


def _spec_file(tmp_path: Path, spec: dict = SPEC) -> str:
    p = tmp_path / f"{spec['name']}.yaml"
    p.write_text(yaml.safe_dump(spec))
    return str(p)


def _build_cmd(spec: str, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "zoo_cli.main", "build", spec, "--out", str(out), "--quiet",
            "--max-population", "1", *extra]


def _listed_parts(out: Path) -> dict[str, str]:
    try:
        m = json.loads((out / "zoo.json").read_text())
    except (OSError, ValueError):
        return {}
    return {f["path"]: f["sha256"] for f in m["files"]}


def _wait_for(cond, what: str, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _workers_of(pid: int) -> list[int]:
    """The spawned pool workers among ``pid``'s children."""
    out = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"spawn_main" in cmd:
            out.append(int(child))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(scope="module")
def kill_ref(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kill-ref") / "zoo"
    build_zoo(KILL_SPEC, out, max_population=1, quiet=True)
    return out


@pytest.mark.slow
def test_kill_a_worker_mid_build(kill_ref, tmp_path) -> None:
    """The pool is started again for the populations not yet back; the build completes."""
    out = tmp_path / "zoo"
    proc = subprocess.Popen(_build_cmd(_spec_file(tmp_path, KILL_SPEC), out, "--workers", "2"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: any(p.startswith("models/") for p in _listed_parts(out)) or proc.poll() is not None,
                  "the first committed population")
        workers = _workers_of(proc.pid)
        assert proc.poll() is None and workers, "the build finished before a worker could be killed"
        os.kill(workers[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    _assert_same_zoo(out, kill_ref)


@pytest.mark.slow
def test_kill_the_driver_mid_build_then_resume(kill_ref, tmp_path) -> None:
    out = tmp_path / "zoo"
    cmd = _build_cmd(_spec_file(tmp_path, KILL_SPEC), out, "--workers", "2")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: any(p.startswith("models/") for p in _listed_parts(out)) or proc.poll() is not None,
                  "the first committed population")
        workers = _workers_of(proc.pid)
        assert proc.poll() is None and workers, "the build finished before it could be killed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    committed = _listed_parts(out)
    assert committed and not open_zoo(out).manifest.complete
    _wait_for(lambda: not any(_alive(w) for w in workers), "the orphaned workers to exit", timeout=30)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    _assert_same_zoo(out, kill_ref)
    for path, sha in committed.items():  # what was committed before the kill is kept as it was
        assert sha256_file(out / path) == sha
