"""Helpers shared by the tests: writing tiny zoos by hand (one or two architectures, the ReLU/tanh
pair of the digits-mlp preset), hashing files, corrupting rows."""

from __future__ import annotations

import hashlib
import json
import math
import struct
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from catalog.format import read_manifest, sha256_file, write_manifest
from catalog.network import LayerSpec, NetworkSpec
from catalog.writer import ZooWriter

#: The tiny digits MLP zoo of the weightspace and CLI tests (built in seconds).
TINY_DIGITS = {
    "name": "tiny-digits",
    "dataset": {"name": "digits", "test_fraction": 0.25},
    "architecture": {"name": "mlp", "hidden": [8], "activation": "relu"},
    "training": {"epochs": 3, "batch_size": 64, "optimizer": "adam", "checkpoints": [0, 1, 3]},
    "grid": {"lr": [0.0003, 0.003, 0.03], "seed": [0, 1, 2, 3, 4, 5]},
}


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (to prove nothing changed)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def flip_weight_byte(shard: Path, tensor: str, row: int) -> None:
    """Change one byte of ``tensor[row]`` inside a safetensors file, in place."""
    data = bytearray(shard.read_bytes())
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    info = header[tensor]
    start, end = info["data_offsets"]
    rows = info["shape"][0]
    per_row = (end - start) // rows
    pos = 8 + header_len + start + row * per_row
    data[pos] ^= 0xFF
    shard.write_bytes(bytes(data))


def rewrite_part(root: Path, part: str, table: pa.Table) -> None:
    """Replace a Parquet part and fix its manifest entry (so only row checks can catch it)."""
    path = root / part
    pq.write_table(table, path)
    manifest = read_manifest(root)
    for f in manifest.files:
        if f.path == part:
            f.sha256, f.bytes, f.rows = sha256_file(path), path.stat().st_size, table.num_rows
    write_manifest(root, manifest)


def nest_shard_header(root: Path, depth: int = 100_000) -> str:
    """Replace the first weight shard's header of the zoo at ``root`` with ``[[[...]]]`` nested
    ``depth`` deep, keeping its data and fixing its manifest entry (so only the header is wrong);
    returns the shard's path in the zoo."""
    manifest = read_manifest(root)
    entry = manifest.shard_files()[0]
    path = root / entry.path
    data = path.read_bytes()
    header = b"[" * depth + b"]" * depth
    path.write_bytes(struct.pack("<Q", len(header)) + header + data[8 + struct.unpack("<Q", data[:8])[0]:])
    entry.sha256, entry.bytes = sha256_file(path), path.stat().st_size
    write_manifest(root, manifest)
    return entry.path


ACTIVATIONS = ("relu", "tanh")


def mlp_spec(hidden: int = 8, n_in: int = 4, n_out: int = 3, activation: str = "relu") -> NetworkSpec:
    """A two-layer MLP ``n_in -> hidden -> n_out``."""
    return NetworkSpec(
        family="mlp", input_shape=(n_in,),
        layers=(LayerSpec("linear", n_in, hidden, "layers.0.weight", "layers.0.bias", activation=activation),
                LayerSpec("linear", hidden, n_out, "layers.1.weight", "layers.1.bias")))


def random_weights(spec: NetworkSpec, n: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {p.name: torch.randn((n, *p.shape), generator=g) for p in spec.params}


def write_zoo(root: Path, name: str, runs: range, checkpoints: tuple[int, ...] = (0, 1, 2),
              hidden: tuple[int, ...] = (8,), extra: dict | None = None, parts: int = 2,
              seed: int = 0) -> Path:
    """Write a zoo of ``len(runs) * len(checkpoints)`` rows per hidden width."""
    w = ZooWriter(root, name, {"name": name, "test": True})
    for hi, h in enumerate(hidden):
        spec = mlp_spec(hidden=h)
        arch = w.add_architecture(spec)
        run_list = list(runs)
        per_part = -(-len(run_list) // parts)
        for pi in range(parts):
            chunk = run_list[pi * per_part:(pi + 1) * per_part]
            if not chunk:
                continue
            rows = []
            for r in chunk:
                for c in checkpoints:
                    acc = round(0.1 + 0.8 * ((r * 7 + c * 3 + hi) % 11) / 10, 4)
                    rows.append({
                        "model_id": f"{name}-h{h}-r{r:03d}-c{c}", "run_id": f"{name}-h{h}-r{r:03d}",
                        "checkpoint": c, "status": "diverged" if r % 5 == 4 else "ok",
                        "lr": [0.001, 0.01, 0.1][r % 3], "activation": ACTIVATIONS[r % 2],
                        "seed": r, "test_acc": acc, "train_acc": min(1.0, acc + 0.05),
                        "test_loss": 1.0 - acc, **(extra or {})})
            weights = random_weights(spec, len(rows), seed * 1000 + hi * 100 + pi)
            w.write_part(arch, weights, rows)
    w.finish()
    return root


def write_activation_zoo(root: Path, runs: int = 8, checkpoints: tuple[int, ...] = (0, 1, 2)) -> Path:
    """``runs`` runs per activation x ``checkpoints``; run ids differ between activations."""
    w = ZooWriter(root, "acts", {"name": "acts", "test": True})
    for ai, act in enumerate(("relu", "tanh")):
        arch = w.add_architecture(mlp_spec(hidden=8, activation=act))
        rows = [{"model_id": f"{act}-r{r}-c{c}", "run_id": f"{act}-r{r}", "checkpoint": c,
                 "status": "ok", "activation": act, "test_acc": round(0.1 + 0.08 * ((r + c + ai) % 10), 3)}
                for r in range(runs) for c in checkpoints]
        w.write_part(arch, random_weights(mlp_spec(hidden=8), len(rows), seed=ai), rows)
    w.finish()
    return root


def run_cli(*args: object):
    """``zoo ARGS`` through click's CliRunner: never a traceback; unexpected exceptions raise."""
    from click.testing import CliRunner

    from zoo_cli.main import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def assert_one_line_error(result, *fragments: str) -> None:
    """A CLI result that failed with exit 1 and one ``error:`` line holding every fragment."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def graph_specs() -> dict[str, NetworkSpec]:
    """One small spec per graph family (ResNet with BN, 1-D ResNet, VGG, the Model Zoos CNN, a
    ViT, a 1-D transformer): the cases the graph representation and symmetry tests share."""
    from zoo_builders.graph_architectures import ModelZooCNNConfig, ResNetConfig, TransformerConfig, VGGConfig

    return {
        "resnet-bn": ResNetConfig(width_multiplier=0.25).network_spec((1, 8, 8), 10),
        "resnet-1d": ResNetConfig(batchnorm=False, width_multiplier=0.25).network_spec((1, 40), 10),
        "vgg": VGGConfig(channels=(4, 8), hidden=(16,), dropout=0.1).network_spec((1, 8, 8), 10),
        "modelzoo-cnn": ModelZooCNNConfig().network_spec((1, 28, 28), 10),
        "vit": TransformerConfig(patch_size=2, dim=8, depth=2).network_spec((1, 8, 8), 10),
        "seq": TransformerConfig(patch_size=4, dim=8, depth=1, heads=4).network_spec((1, 40), 10),
    }


def assert_same_member(net: NetworkSpec, a, i: int, b, j: int) -> None:
    """Member ``i`` of training result ``a`` is member ``j`` of ``b`` bit for bit: weights
    (batch-norm running statistics included) and metrics at every checkpoint."""
    assert [s.checkpoint for s in a.snapshots] == [s.checkpoint for s in b.snapshots]
    for sa, sb in zip(a.snapshots, b.snapshots):
        for name in net.param_names:
            assert torch.equal(sa.weights[name][i], sb.weights[name][j]), (sa.checkpoint, name)
        assert sa.metrics[i] == sb.metrics[j], sa.checkpoint


def graph_weights(spec: NetworkSpec, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """``n`` networks of fan-in scaled random weights (outputs of order 1) with positive running
    variances, ``{name: Tensor[n, *shape]}``."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for p in spec.params:
        t = torch.randn((n, *p.shape), generator=g)
        if p.role == "running_var":
            t = t.abs() + 0.5
        elif p.role == "weight" and len(p.shape) >= 2:
            t = t / math.sqrt(math.prod(p.shape[1:]))
        out[p.name] = t
    return out


#: The steps of :func:`catalog.sidecar.write_sidecar` an interrupt can hit: writing the table,
#: after renaming it in (before the manifest records it), after the manifest.
SIDECAR_STEPS = ("table", "rename", "manifest")


def interrupt_write_sidecar(monkeypatch, step: str) -> None:
    """Make the next :func:`catalog.sidecar.write_sidecar` raise ``KeyboardInterrupt`` (what SIGINT
    does at that instant) at ``step``, one of :data:`SIDECAR_STEPS`."""
    import catalog.sidecar as sc

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    if step == "table":
        monkeypatch.setattr(sc.pq, "write_table", stop)
    elif step == "rename":
        monkeypatch.setattr(sc, "write_manifest", stop)
    else:
        real = sc.write_manifest

        def after(root, manifest):
            real(root, manifest)
            stop()

        monkeypatch.setattr(sc, "write_manifest", after)


def write_npz(path: Path, seed: int) -> Path:
    """A 3-class npz dataset of 40 + 12 examples of 5 features at ``path``; another seed gives
    other data of the same sizes."""
    import numpy as np

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_train=rng.normal(size=(40, 5)).astype("float32"), y_train=np.arange(40) % 3,
             x_test=rng.normal(size=(12, 5)).astype("float32"), y_test=np.arange(12) % 3)
    return path
