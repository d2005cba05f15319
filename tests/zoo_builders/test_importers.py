"""Importers: fixtures written in the source layouts, imported, verified, run and exported back."""

from __future__ import annotations

import csv
import gzip
import json
import math
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from zoo_helpers import run_cli

from catalog.format import read_manifest
from catalog.verify import verify_zoo
from catalog.zoo import open_zoo
from zoo_builders.importers import (
    IMPORTERS,
    SourceError,
    export_statedict,
    get_importer,
    import_small_cnn_zoo,
    import_statedicts,
    import_zoo,
)
from zoo_builders.importers.statedict import read_state_dict


def _mlp(seed: int, widths=(6, 5, 3)) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


class _Named(nn.Module):
    """An MLP with its own layer names (fc1, fc2, out) and tanh."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fc1, self.fc2, self.out = nn.Linear(4, 7), nn.Linear(7, 7), nn.Linear(7, 2)

    def forward(self, x):
        return self.out(torch.tanh(self.fc2(torch.tanh(self.fc1(x)))))


class _Cnn(nn.Module):
    """Two stride-1 convolutions, global average pool, linear: what inference assumes."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.c1, self.c2, self.head = nn.Conv2d(1, 4, 3), nn.Conv2d(4, 5, 3), nn.Linear(5, 3)

    def forward(self, x):
        h = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.head(h.mean((2, 3)))


@pytest.fixture
def folder(tmp_path):
    """Three MLPs (two .safetensors, one torch.save .pt wrapped in DataParallel names), one tanh
    net with its own names (.pth), a metadata.csv and a per-model .json."""
    src = tmp_path / "src"
    src.mkdir()
    models = {}
    for i in range(2):
        m = _mlp(i)
        save_file(m.state_dict(), src / f"mlp{i}.safetensors")
        models[f"mlp{i}.safetensors"] = m
    m = _mlp(2)
    torch.save({f"module.{k}": v for k, v in m.state_dict().items()}, src / "mlp2.pt")
    models["mlp2.pt"] = m
    n = _Named(3)
    torch.save(n.state_dict(), src / "named.pth")
    models["named.pth"] = n
    with open(src / "metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "lr", "optimizer", "test_acc", "checkpoint"])
        w.writerow(["mlp0.safetensors", 0.1, "adam", 0.75, 3])
        w.writerow(["mlp1.safetensors", 0.01, "sgd", 0.5, 5])
        w.writerow(["mlp2.pt", 0.001, "adam", 0.25, 7])
    (src / "named.json").write_text(json.dumps({"note": "own names", "test_acc": 0.9}))
    return src, models


def test_state_dict_folder_imports_verifies_and_runs(folder, tmp_path):
    src, models = folder
    out = tmp_path / "zoo"
    manifest = import_statedicts(src, out, quiet=True)
    assert manifest.counts["rows"] == 4 and len(manifest.architectures) == 2
    assert verify_zoo(out).ok
    z = open_zoo(out)
    table = z.table.to_pylist()
    by_path = {r["source_path"]: r for r in table}
    assert by_path["mlp1.safetensors"]["lr"] == 0.01 and by_path["mlp1.safetensors"]["optimizer"] == "sgd"
    assert by_path["mlp2.pt"]["checkpoint"] == 7 and by_path["named.pth"]["checkpoint"] == 0
    assert by_path["named.pth"]["note"] == "own names" and by_path["mlp0.safetensors"]["note"] is None
    assert all(r["status"] == "ok" and r["source_layout"] == "state-dicts" for r in table)
    assert by_path["mlp0.safetensors"]["model_id"] == by_path["mlp0.safetensors"]["run_id"]
    # names: the file's own ('module.' stripped)
    sd = z.state_dict(by_path["mlp2.pt"]["model_id"])
    assert list(sd) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    for k, v in models["mlp2.pt"].state_dict().items():
        assert torch.equal(sd[k], v)


def test_imported_modules_compute_like_the_originals(folder, tmp_path):
    src, models = folder
    (src / "named.pth").unlink()
    (src / "named.json").unlink()
    out = tmp_path / "zoo"
    import_statedicts(src, out, quiet=True)
    z = open_zoo(out)
    sel = z.select(order_by="source_path")
    x = torch.randn(9, 6)
    for path, module in zip(sel.column("source_path"), sel.modules()):
        torch.testing.assert_close(module(x), models[path](x), rtol=0, atol=1e-6)


def test_activation_option_and_own_names(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    net = _Named(0).eval()
    save_file(net.state_dict(), src / "a.safetensors")
    out = tmp_path / "zoo"
    import_statedicts(src, out, activation="tanh", quiet=True)
    z = open_zoo(out)
    (module,) = z.select().modules()
    x = torch.randn(5, 4)
    torch.testing.assert_close(module(x), net(x), rtol=0, atol=1e-6)
    assert sorted(module.state_dict()) == sorted(net.state_dict())


def test_conv_net_with_input_shape(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    nets = [_Cnn(i).eval() for i in range(2)]
    for i, n in enumerate(nets):
        torch.save(n.state_dict(), src / f"c{i}.bin")
    with pytest.raises(SourceError, match="--input-shape"):
        import_statedicts(src, tmp_path / "no", quiet=True)
    out = tmp_path / "zoo"
    import_statedicts(src, out, input_shape=(1, 8, 8), quiet=True)
    assert verify_zoo(out).ok
    sel = open_zoo(out).select(order_by="source_path")
    x = torch.randn(3, 1, 8, 8)
    for n, m in zip(nets, sel.modules()):
        torch.testing.assert_close(m(x), n(x), rtol=0, atol=1e-5)


def test_arch_preset_override_keeps_names(tmp_path):
    from zoo_builders.architectures import CNNConfig

    spec = CNNConfig(channels=(4, 4, 4)).network_spec((1, 8, 8), 3)
    from catalog.network import build_module

    torch.manual_seed(0)
    ref = build_module(spec)
    for p in ref.parameters():
        nn.init.normal_(p, std=0.3)
    renamed = {k.replace("layers.", "net."): v for k, v in ref.state_dict().items()}
    src = tmp_path / "src"
    src.mkdir()
    save_file(renamed, src / "m.safetensors")
    out = tmp_path / "zoo"
    import_statedicts(src, out, arch="cnn", arch_options=["channels=[4,4,4]"], input_shape=(1, 8, 8), quiet=True)
    (module,) = open_zoo(out).select().modules()
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(module(x), ref(x), rtol=0, atol=1e-6)
    assert sorted(module.state_dict()) == sorted(renamed)
    # the preset's own names keep the chain form (format v1)
    save_file(ref.state_dict(), src / "m.safetensors")
    out2 = tmp_path / "zoo2"
    manifest = import_statedicts(src, out2, arch="cnn", arch_options={"channels": [4, 4, 4]},
                                 input_shape=(1, 8, 8), quiet=True)
    assert manifest.format_version == 1
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec.to_dict()))
    out3 = tmp_path / "zoo3"
    import_statedicts(src, out3, arch=spec_file, quiet=True)
    assert verify_zoo(out3).ok


def test_export_round_trip_is_bit_identical(folder, tmp_path):
    src, _ = folder
    out = tmp_path / "zoo"
    import_statedicts(src, out, quiet=True)
    exported = tmp_path / "exported"
    files = export_statedict(out, exported, quiet=True)
    assert sorted(p.name for p in files) == ["mlp0.safetensors", "mlp1.safetensors", "mlp2.safetensors",
                                             "named.safetensors"]
    for name in ("mlp0", "mlp1"):
        a, b = load_file(src / f"{name}.safetensors"), load_file(exported / f"{name}.safetensors")
        assert list(a) == list(b) or sorted(a) == sorted(b)
        assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    pt = torch.load(src / "named.pth", weights_only=True)
    back = load_file(exported / "named.safetensors")
    assert sorted(pt) == sorted(back) and all(torch.equal(pt[k], back[k]) for k in pt)
    # and back in: same weights, same metadata
    again = tmp_path / "again"
    import_statedicts(exported, again, quiet=True)
    t1 = {r["source_path"].rsplit(".", 1)[0]: r for r in open_zoo(out).table.to_pylist()}
    t2 = {r["source_path"].rsplit(".", 1)[0]: r for r in open_zoo(again).table.to_pylist()}
    assert t1.keys() == t2.keys()
    for k in t1:
        assert t1[k]["sha256"] == t2[k]["sha256"]
        for col in ("lr", "optimizer", "test_acc", "checkpoint", "note", "run_id"):
            assert t1[k][col] == t2[k][col]


def test_metadata_jsonl_and_resume(folder, tmp_path):
    src, _ = folder
    (src / "metadata.csv").unlink()
    (src / "metadata.jsonl").write_text(json.dumps({"path": "mlp1.safetensors", "seed": 4}) + "\n")
    out = tmp_path / "zoo"
    import_statedicts(src, out, quiet=True)
    rows = {r["source_path"]: r for r in open_zoo(out).table.to_pylist()}
    assert rows["mlp1.safetensors"]["seed"] == 4 and rows["mlp0.safetensors"]["seed"] is None
    again = import_statedicts(src, out, quiet=True)  # a finished import run again adds nothing
    assert again.counts["rows"] == 4


def test_bad_inputs_one_clear_error_each(tmp_path):
    def fresh(name):
        d = tmp_path / name
        d.mkdir()
        return d

    d = fresh("notsd")
    torch.save([torch.zeros(2)], d / "a.pt")
    with pytest.raises(SourceError, match="not a state dict"):
        import_statedicts(d, tmp_path / "o1", quiet=True)

    d = fresh("garbage")
    (d / "a.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(SourceError, match="not a readable safetensors"):
        import_statedicts(d, tmp_path / "o2", quiet=True)

    d = fresh("nonchain")
    save_file({"a.weight": torch.zeros(5, 4), "b.weight": torch.zeros(3, 6)}, d / "m.safetensors")
    with pytest.raises(SourceError, match="do not form a chain.*--arch"):
        import_statedicts(d, tmp_path / "o3", quiet=True)
    save_file({"bn.running_mean": torch.zeros(5), "a.weight": torch.zeros(5, 4)}, d / "m.safetensors")
    with pytest.raises(SourceError, match="batch norm 'bn' needs running_mean and running_var.*--arch"):
        import_statedicts(d, tmp_path / "o3b", quiet=True)

    d = fresh("missing")
    save_file(_mlp(0).state_dict(), d / "m.safetensors")
    (d / "metadata.csv").write_text("file,lr\nm.safetensors,0.1\nghost.pt,0.2\n")
    with pytest.raises(SourceError, match="ghost.pt.*not a model file"):
        import_statedicts(d, tmp_path / "o4", quiet=True)
    assert not (tmp_path / "o4").exists()

    d = fresh("evil")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    with open(d / "m.pt", "wb") as f:
        pickle.dump({"w": Evil()}, f, protocol=2)
    with pytest.raises(SourceError, match="refused"):
        import_statedicts(d, tmp_path / "o5", quiet=True)
    assert not marker.exists() and not (tmp_path / "o5").exists()
    d = fresh("module")
    torch.save(nn.Linear(2, 2), d / "whole_module.pt")  # a pickled nn.Module, not a state dict
    with pytest.raises(SourceError, match="refused.*weights_only"):
        import_statedicts(d, tmp_path / "o6", quiet=True)

    with pytest.raises(SourceError, match="valid layouts: .*small-cnn-zoo, state-dicts"):
        get_importer("tf-hub")
    assert set(IMPORTERS) >= {"state-dicts", "small-cnn-zoo"}


def test_mixed_or_unknown_tensors_leave_no_zoo_and_an_existing_zoo_unchanged(tmp_path):
    """Good models first (one per part, so any write would show), then one bad file: one
    error naming it, and no zoo; into an existing zoo, its files stay byte for byte."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        save_file(_mlp(i).state_dict(), src / f"m{i}.safetensors")
    attn = nn.MultiheadAttention(8, 2)
    unknown = {"embed.weight": torch.zeros(8, 6), "embed.bias": torch.zeros(8),
               **{f"attn.{k}": v for k, v in attn.state_dict().items()}}
    mixed = {k: v.half() if k.endswith("bias") else v for k, v in _mlp(9).state_dict().items()}
    cases = (("z_unknown.safetensors", unknown, r"z_unknown.safetensors: .*module 'attn'.*--arch"),
             ("z_mixed.pt", mixed, r"z_mixed.pt: the tensors mix dtypes"))
    for i, (fname, tensors, message) in enumerate(cases):
        (save_file if fname.endswith(".safetensors") else lambda sd, p: torch.save(sd, p))(tensors, src / fname)
        with pytest.raises(SourceError, match=message):
            import_statedicts(src, tmp_path / f"o{i}", rows_per_part=1, quiet=True)
        assert not (tmp_path / f"o{i}").exists()
        (src / fname).unlink()
    out = tmp_path / "zoo"
    import_statedicts(src, out, rows_per_part=1, quiet=True)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    save_file(unknown, src / "z_unknown.safetensors")
    with pytest.raises(SourceError, match="module 'attn'"):
        import_statedicts(src, out, rows_per_part=1, quiet=True)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_bad_file_last_writes_nothing_and_an_interrupted_import_resumes(tmp_path, monkeypatch):
    import zoo_builders.importers.statedict as statedict

    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        save_file(_mlp(i).state_dict(), src / f"m{i}.safetensors")
    save_file({"x.weight": torch.zeros(2, 2, 2, 2, 2)}, src / "z_bad.safetensors")  # read last
    out = tmp_path / "zoo"
    with pytest.raises(SourceError, match="z_bad.safetensors"):
        import_statedicts(src, out, rows_per_part=2, quiet=True)
    assert not out.exists()  # found before any part was written (two would have been, 2 per part)
    (src / "z_bad.safetensors").unlink()
    # interrupted while writing: the 5th model's second read (5 checks + 4 written) stops it
    read, calls = statedict.read_state_dict, []

    def interrupted(path, *args):
        calls.append(path)
        if len(calls) == 10:
            raise KeyboardInterrupt
        return read(path, *args)

    monkeypatch.setattr(statedict, "read_state_dict", interrupted)
    with pytest.raises(KeyboardInterrupt):
        import_statedicts(src, out, rows_per_part=2, quiet=True)
    monkeypatch.undo()
    assert open_zoo(out).table.num_rows == 4  # two whole parts were written and stay
    manifest = import_statedicts(src, out, rows_per_part=2, quiet=True)
    assert manifest.counts["rows"] == 5 and manifest.complete
    assert verify_zoo(out).ok
    assert sorted(open_zoo(out).table.column("source_path").to_pylist()) == [f"m{i}.safetensors" for i in range(5)]


# ================================================================================ Small CNN Zoo
def _small_cnn_zoo(tmp_path, n_runs=2, steps=(0, 10), truncate=False, bad_layout=False):
    """A Small CNN Zoo directory whose networks are the cnn preset (16 channels, 28x28x1),
    stored TensorFlow-style: conv HWIO, dense [in, out], flattened C-order."""
    from catalog.network import build_module
    from zoo_builders.architectures import CNNConfig

    spec = CNNConfig(channels=(16, 16, 16)).network_spec((1, 28, 28), 10)
    assert spec.n_params == 4970
    src = tmp_path / "scz"
    src.mkdir()
    layout, pos = [], 0
    names = ["sequential/conv2d/kernel:0", "sequential/conv2d/bias:0", "sequential/conv2d_1/kernel:0",
             "sequential/conv2d_1/bias:0", "sequential/conv2d_2/kernel:0", "sequential/conv2d_2/bias:0",
             "sequential/dense/kernel:0", "sequential/dense/bias:0"]
    rows, nets, metrics = [], [], []
    for r in range(n_runs):
        for s in steps:
            torch.manual_seed(100 * r + s)
            net = build_module(spec)
            for p in net.parameters():
                nn.init.normal_(p, std=0.2)
            flat = []
            for p in net.state_dict().values():
                t = p.detach().numpy()
                if t.ndim == 4:
                    t = t.transpose(2, 3, 1, 0)  # OIHW -> HWIO
                elif t.ndim == 2:
                    t = t.T
                flat.append(t.reshape(-1))
            rows.append(np.concatenate(flat))
            nets.append(net)
            metrics.append({"config.activation": "relu", "config.learning_rate": 0.01 * (r + 1),
                            "config.w_init": "he_normal", "modeldir": f"run{r}", "step": s,
                            "test_accuracy": 0.1 * r + 0.01 * s, "train_loss": 2.0 - 0.1 * s})
    for name, p in zip(names, spec.params):
        tf_shape = p.shape if len(p.shape) == 1 else (
            (p.shape[2], p.shape[3], p.shape[1], p.shape[0]) if len(p.shape) == 4 else (p.shape[1], p.shape[0]))
        n = math.prod(tf_shape)
        layout.append({"varname": name, "start_idx": pos, "end_idx": pos + n, "shape": str(tuple(tf_shape))})
        pos += n
    if bad_layout:
        layout[-1]["end_idx"] += 1
        layout[-1]["shape"] = f"({layout[-1]['end_idx'] - layout[-1]['start_idx']},)"
    np.save(src / "weights.npy", np.stack(rows).astype(np.float32))
    if truncate:
        data = (src / "weights.npy").read_bytes()
        (src / "weights.npy").write_bytes(data[: len(data) // 2])
    for fname, recs in (("layout.csv", layout), ("metrics.csv.gz", metrics)):
        opener = gzip.open if fname.endswith(".gz") else open
        with opener(src / fname, "wt", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(recs[0]))
            w.writeheader()
            w.writerows(recs)
    return src, nets


def test_small_cnn_zoo_import(tmp_path):
    src, nets = _small_cnn_zoo(tmp_path)
    out = tmp_path / "zoo"
    manifest = import_small_cnn_zoo(src, out, rows_per_part=3, quiet=True)
    assert manifest.counts["rows"] == 4 and manifest.counts["runs"] == 2 and manifest.format_version == 1
    assert verify_zoo(out).ok
    z = open_zoo(out)
    sel = z.select(order_by="source_path")
    rows = sel.table.to_pylist()
    assert [r["checkpoint"] for r in rows] == [0, 10, 0, 10]
    assert rows[2]["config_learning_rate"] == 0.02 and rows[0]["config_w_init"] == "he_normal"
    assert rows[0]["run_id"] == rows[1]["run_id"] != rows[2]["run_id"]
    x = torch.randn(2, 1, 28, 28)
    for net, module, sd in zip(nets, sel.modules(), sel.state_dicts()):
        for k, v in net.state_dict().items():
            assert torch.equal(sd[k], v)  # bit-identical after the documented transposes
        torch.testing.assert_close(module(x), net(x), rtol=0, atol=1e-6)


@pytest.mark.slow
def test_small_cnn_zoo_cli_with_dataset_columns_and_statnn(tmp_path):
    """Through the CLI with --dataset: recorded for verify --recompute; every metrics.csv column
    is a zoo column with the source's values; statnn trains on the imported zoo."""
    src, nets = _small_cnn_zoo(tmp_path, n_runs=4)
    out = tmp_path / "zoo"
    r = run_cli("import", "small-cnn-zoo", src, "--out", out, "--dataset", "digits", "-q")
    assert r.exit_code == 0 and "imported 8 models (1 architecture(s))" in r.output, r.output
    manifest = read_manifest(out)
    assert manifest.spec["dataset"]["name"] == "digits" and "digits" in manifest.datasets
    assert run_cli("verify", out).exit_code == 0
    with gzip.open(src / "metrics.csv.gz", "rt") as f:
        source = list(csv.DictReader(f))
    z = open_zoo(out)
    rows = {int(r["source_path"].split(":")[1]): r for r in z.table.to_pylist()}
    assert sorted(rows) == list(range(8))
    for i, rec in enumerate(source):
        for k, v in rec.items():  # config.learning_rate -> config_learning_rate, values as read
            got = rows[i][k.replace(".", "_")]
            assert (str(got) == v) if isinstance(got, str) else math.isclose(got, float(v), rel_tol=0, abs_tol=0)
        sd = z.state_dict(rows[i]["model_id"])
        assert all(torch.equal(sd[k], t) for k, t in nets[i].state_dict().items())
    r = run_cli("train", out, "--target", "test_accuracy", "--model", "statnn", "--epochs", "2", "-q",
                "--include-init", "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    r = run_cli("import", "small-cnn-zoo", src, "--out", tmp_path / "o", "--dataset", "no-such-data", "-q")
    assert r.exit_code == 1 and "--dataset" in r.output and not (tmp_path / "o").exists(), r.output


def test_small_cnn_zoo_recompute_reads_its_test_accuracy_column(tmp_path):
    """verify --recompute compares the Small CNN Zoo's own `test_accuracy` column (its name for
    test_acc). The fixture's accuracies are made up (0.1 * run + 0.01 * step), so they differ."""
    from zoo_builders.recompute import recompute_metrics

    src, _ = _small_cnn_zoo(tmp_path, n_runs=2)
    assert run_cli("import", "small-cnn-zoo", src, "--out", tmp_path / "zoo", "--dataset", "mnist5k",
                   "-q").exit_code == 0
    report = recompute_metrics(tmp_path / "zoo", sample=None)
    assert set(report.checks) == {"test_accuracy"}  # the fixture has no test_loss column
    assert report.checks["test_accuracy"].compared == 4 and not report.ok
    assert {m.metric for m in report.mismatches} >= {"test_accuracy"}


def test_small_cnn_zoo_bad_inputs(tmp_path):
    (tmp_path / "a").mkdir()
    src, _ = _small_cnn_zoo(tmp_path / "a", truncate=True)
    with pytest.raises(SourceError, match="weights.npy cannot be read"):
        import_small_cnn_zoo(src, tmp_path / "o1", quiet=True)
    assert not (tmp_path / "o1").exists()
    (tmp_path / "b").mkdir()
    src, _ = _small_cnn_zoo(tmp_path / "b", bad_layout=True)
    with pytest.raises(SourceError, match="layout.csv covers 4971 values per row but weights.npy rows have 4970"):
        import_small_cnn_zoo(src, tmp_path / "o2", quiet=True)
    assert not (tmp_path / "o2").exists()
    (tmp_path / "c").mkdir()
    src_c, _ = _small_cnn_zoo(tmp_path / "c")
    lines = gzip.open(src_c / "metrics.csv.gz", "rt").read().splitlines()
    with gzip.open(src_c / "metrics.csv.gz", "wt") as f:
        f.write("\n".join(lines[:-1]) + "\n")
    with pytest.raises(SourceError, match="metrics.csv.gz has 3 rows but weights.npy has 4"):
        import_small_cnn_zoo(src_c, tmp_path / "o5", quiet=True)
    with pytest.raises(SourceError, match="not a Small CNN Zoo directory"):
        import_zoo("small-cnn-zoo", tmp_path, tmp_path / "o3", quiet=True)
    with pytest.raises(SourceError, match="does not take --arch"):
        import_zoo("small-cnn-zoo", src, tmp_path / "o4", arch="cnn")


class _Harmless:
    """A pickle payload that calls ``os.getcwd`` (harmless if it ever ran): its name must be in the refusal."""

    def __reduce__(self):
        import os

        return (os.getcwd, ())


def test_refused_pickle_names_the_global_it_references(tmp_path):
    """torch 2.13 says 'unsupported GLOBAL posix.getcwd whose module posix is blocked', older
    torch 'Unsupported global: GLOBAL posix.getcwd': both name the call in the refusal."""
    src = tmp_path / "src"
    src.mkdir()
    torch.save({"0.weight": _Harmless()}, src / "a.pt")
    with pytest.raises(SourceError, match=r"refused.*references \w+\.getcwd"):
        import_statedicts(src, tmp_path / "zoo", quiet=True)
    from zoo_builders.importers.statedict import refused_global

    assert refused_global("WeightsUnpickler error: Unsupported global: GLOBAL torch.nn.modules.linear.Linear was "
                          "not an allowed global") == "torch.nn.modules.linear.Linear"
    assert refused_global("Trying to load unsupported GLOBAL posix.system whose module posix is blocked.") \
        == "posix.system"
    assert refused_global("some other wording") is None


def test_a_lone_linear_layer_imports(tmp_path):
    """nn.Linear's own state dict (keys weight, bias, no module prefix) is a one-layer chain."""
    src = tmp_path / "src"
    src.mkdir()
    torch.manual_seed(0)
    lin = nn.Linear(4, 2)
    torch.save(lin.state_dict(), src / "a.pt")
    import_statedicts(src, tmp_path / "zoo", quiet=True)
    (module,) = open_zoo(tmp_path / "zoo").select().modules()
    x = torch.randn(3, 4)
    torch.testing.assert_close(module(x), lin(x), rtol=0, atol=1e-6)
    torch.save({"weight": lin.weight, "bias": lin.bias, "fc.weight": torch.zeros(3, 2)}, src / "a.pt")
    with pytest.raises(SourceError, match="top level"):  # beside other modules, top-level tensors stay refused
        import_statedicts(src, tmp_path / "zoo2", quiet=True)


def test_small_cnn_zoo_refuses_steps_that_do_not_tell_checkpoints_apart(tmp_path):
    """Without a usable step column two checkpoints of a run got one model_id (a zoo verify rejects)."""
    src, _ = _small_cnn_zoo(tmp_path)
    with gzip.open(src / "metrics.csv.gz", "rt") as f:
        records = list(csv.DictReader(f))

    def attempt(name: str, edit) -> str:
        rows = [edit(dict(r), i) for i, r in enumerate(records)]
        with gzip.open(src / "metrics.csv.gz", "wt", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        with pytest.raises(SourceError) as e:
            import_small_cnn_zoo(src, tmp_path / name, quiet=True)
        assert not (tmp_path / name).exists()
        return str(e.value)

    def no_step(r, i):
        del r["step"]
        return r

    msg = attempt("o1", no_step)
    assert "rows 1 and 2" in msg and "run0" in msg and "no step column" in msg
    msg = attempt("o2", lambda r, i: {**r, "step": "5"})
    assert "rows 1 and 2" in msg and "step 5" in msg
    msg = attempt("o3", lambda r, i: {**r, "step": "late" if i == 2 else str(i)})
    assert "row 3" in msg and "step" in msg and "'late'" in msg


def test_out_inside_source_and_other_zoos_are_not_read_as_models(tmp_path):
    """--out inside SOURCE: the re-run (the documented resume) skips the zoo it writes, and any
    folder that is a zoo; it read zoo.json as per-model metadata and the shards as models."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        save_file(_mlp(i).state_dict(), src / f"m{i}.safetensors")
    with pytest.warns(UserWarning):
        first = import_statedicts(src, src / "zoo", quiet=True)
        again = import_statedicts(src, src / "zoo", quiet=True)
        import_statedicts(src, src / "sub" / "other", quiet=True)  # src/zoo is a zoo: skipped here too
    assert first.counts["rows"] == again.counts["rows"] == 2 and verify_zoo(src / "zoo").ok
    assert sorted(open_zoo(src / "sub" / "other").table.column("source_path").to_pylist()) == [
        "m0.safetensors", "m1.safetensors"]


def test_json_files_outside_the_layout_are_skipped_with_a_warning(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    save_file(_mlp(0).state_dict(), src / "m0.safetensors")
    (src / "m0.json").write_text(json.dumps({"lr": 0.1}))
    (src / "hparams.json").write_text(json.dumps({"lr": 0.1, "epochs": 10}))
    (src / "notes").mkdir()
    (src / "notes" / "list.json").write_text("[1, 2]")
    (src / "notes" / "broken.json").write_text("{oops")
    with pytest.warns(UserWarning) as record:
        import_statedicts(src, tmp_path / "zoo", quiet=True)
    shown = " | ".join(str(w.message) for w in record)
    for rel in ("hparams.json", "notes/list.json", "notes/broken.json"):
        assert f"ignored {rel}" in shown
    (row,) = open_zoo(tmp_path / "zoo").table.to_pylist()
    assert row["lr"] == 0.1 and "epochs" not in row
    (src / "m0.json").write_text("{oops")  # a model's own metadata file stays an error
    with pytest.raises(SourceError, match="m0.json is not valid JSON"):
        import_statedicts(src, tmp_path / "zoo2", quiet=True)


@pytest.mark.parametrize("where", ["metadata.jsonl", "m0.json", "notes.json"])
def test_deeply_nested_metadata_is_a_source_error(tmp_path, where):
    """A RecursionError traceback before; a .json file describing no model is still only skipped."""
    src = tmp_path / "src"
    src.mkdir()
    save_file(_mlp(0).state_dict(), src / "m0.safetensors")
    deep = "[" * 200_000 + "]" * 200_000
    (src / where).write_text(f'{{"file": "m0.safetensors"}}\n{deep}\n' if where.endswith("jsonl") else deep)
    if where == "notes.json":
        with pytest.warns(UserWarning, match="ignored notes.json"):
            import_statedicts(src, tmp_path / "zoo", quiet=True)
        return
    line = " line 2" if where.endswith("jsonl") else ""
    with pytest.raises(SourceError, match=f"{where}{line} is not valid JSON .*levels deep"):
        import_statedicts(src, tmp_path / "zoo", quiet=True)
    assert not (tmp_path / "zoo").exists()


def test_bad_activation_and_arch_file_are_named_as_such(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    save_file(_mlp(0).state_dict(), src / "m.safetensors")
    r = run_cli("import", "state-dicts", src, "--out", tmp_path / "o1", "-q", "--activation", "swish")
    assert r.exit_code == 1 and "--activation 'swish'" in r.output and "relu" in r.output, r.output
    assert "--arch" not in r.output  # the architecture was not the problem
    src_scz, _ = _small_cnn_zoo(tmp_path)
    with pytest.raises(SourceError, match="--activation 'swish'"):
        import_small_cnn_zoo(src_scz, tmp_path / "o2", activation="swish", quiet=True)
    for i, text in enumerate(("[1, 2]", '{"family": "mlp"}')):
        spec = tmp_path / f"spec{i}.json"
        spec.write_text(text)
        r = run_cli("import", "state-dicts", src, "--out", tmp_path / "o3", "-q", "--arch", spec)
        assert r.exit_code == 1 and f"--arch {spec}" in r.output and "NetworkSpec" in r.output, r.output
        assert not (tmp_path / "o3").exists()


def test_an_arch_file_with_a_node_that_feeds_nothing_is_refused(tmp_path):
    """Before, `zoo import --arch` took a graph with a dead branch and stored its parameters."""
    nodes = [{"kind": "linear", "name": "fc1", "inputs": ["input"], "in_features": 4, "out_features": 8},
             {"kind": "activation", "name": "act", "inputs": ["fc1"], "fn": "relu"},
             {"kind": "linear", "name": "dead", "inputs": ["act"], "in_features": 8, "out_features": 8},
             {"kind": "linear", "name": "head", "inputs": ["act"], "in_features": 8, "out_features": 3}]
    spec = tmp_path / "dead.json"
    spec.write_text(json.dumps({"format": 2, "family": "custom", "input_shape": [4], "nodes": nodes}))
    src = tmp_path / "src"
    src.mkdir()
    shapes = {"fc1": (8, 4), "dead": (8, 8), "head": (3, 8)}
    save_file({f"{n}.{k}": torch.zeros(s if k == "weight" else s[:1]) for n, s in shapes.items()
               for k in ("weight", "bias")}, src / "m.safetensors")
    r = run_cli("import", "state-dicts", src, "--out", tmp_path / "zoo", "-q", "--arch", spec)
    assert r.exit_code == 1 and f"--arch {spec}" in r.output, r.output
    assert "node 'dead' feeds nothing that reaches the network's output (the last node, 'head'); remove it" \
        in r.output
    assert not (tmp_path / "zoo").exists()


def test_refusals_name_the_path_relative_to_the_source(tmp_path):
    src = tmp_path / "src"
    for d in ("a", "b"):
        (src / d).mkdir(parents=True)
        save_file(_mlp(0).state_dict(), src / d / "m.safetensors")
    torch.save({"0.weight": _Harmless()}, src / "b" / "m.pt")
    with pytest.raises(SourceError, match=r"^b/m.pt was refused"):
        import_statedicts(src, tmp_path / "o1", quiet=True)
    (src / "b" / "m.pt").write_bytes(b"garbage")
    with pytest.raises(SourceError, match=r"^b/m.pt (was refused|is not a readable torch file)"):
        import_statedicts(src, tmp_path / "o2", quiet=True)
    (src / "b" / "m.pt").unlink()
    (src / "b" / "m.safetensors").write_bytes(b"garbage")
    with pytest.raises(SourceError, match=r"^b/m.safetensors is not a readable safetensors file"):
        import_statedicts(src, tmp_path / "o3", quiet=True)


def test_arch_with_a_0dim_last_tensor_is_a_clear_error_naming_the_architecture(tmp_path):
    """The file's last tensor is 0-dim (a scalar parameter): once an IndexError from taking the
    output width from it; now the tensor is named as no part of the architecture given with --arch."""
    src = tmp_path / "src"
    src.mkdir()
    torch.save({**{f"net.{k}": v for k, v in _mlp(0, (8, 16, 3)).state_dict().items()},
                "temperature": torch.tensor(1.0)}, src / "s0.pt")
    with pytest.raises(SourceError, match="'temperature' .* not part of the architecture given with --arch") as e:
        import_statedicts(src, tmp_path / "z", arch="mlp", arch_options=["hidden=[16]"], input_shape=(8,), quiet=True)
    assert "give the architecture with --arch" not in str(e.value)
    r = run_cli("import", "state-dicts", src, "--out", tmp_path / "z", "-q", "--arch", "mlp",
                "--arch-opt", "hidden=[16]", "--input-shape", "8")
    assert r.exit_code == 1 and "Traceback" not in r.output and "not part of the architecture given" in r.output


def test_lightning_ckpt_files_are_imported(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    sds = {}
    for i in range(2):
        sds[f"epoch=3-step=300-v{i}.ckpt"] = {f"model.{k}": v for k, v in _mlp(i).state_dict().items()}
        torch.save({"epoch": 3, "global_step": 300, "state_dict": sds[f"epoch=3-step=300-v{i}.ckpt"],
                    "optimizer_states": [], "lr_schedulers": [], "pytorch-lightning_version": "2.4.0"},
                   src / f"epoch=3-step=300-v{i}.ckpt")
    torch.save(_mlp(2).state_dict(), src / "last.pt")
    import_statedicts(src, tmp_path / "z", quiet=True)
    sel = open_zoo(tmp_path / "z").select(order_by="source_path")
    paths = sel.metadata(["source_path"]).column("source_path").to_pylist()
    assert paths == [*sds, "last.pt"]
    for rel, sd in zip(paths, sel.state_dicts()):
        if rel in sds:
            assert sorted(sd) == sorted(sds[rel]) and all(torch.equal(sd[k], sds[rel][k]) for k in sd)


def test_compiled_and_plain_saves_are_one_architecture(tmp_path):
    """torch.compile's ``_orig_mod.`` prefix is stripped like DataParallel's ``module.``."""
    src = tmp_path / "src"
    src.mkdir()
    sd = _mlp(0).state_dict()
    torch.save(sd, src / "plain.pt")
    torch.save({f"_orig_mod.{k}": v for k, v in sd.items()}, src / "compiled.pt")
    torch.save({f"module._orig_mod.{k}": v for k, v in sd.items()}, src / "both.pt")
    import_statedicts(src, tmp_path / "z", quiet=True)
    sel = open_zoo(tmp_path / "z").select()
    assert len(set(sel.metadata(["arch_id"]).column("arch_id").to_pylist())) == 1
    assert all(sorted(d) == sorted(sd) for d in sel.state_dicts())
    assert read_state_dict(src / "both.pt").keys() == sd.keys()


def test_metadata_columns_that_collide_get_distinct_names(tmp_path):
    """Every field keeps its value under its own column: an exact name keeps it; the others (and
    names equal but for case, which DuckDB cannot tell apart) are renamed, with one warning."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        torch.save(_mlp(i).state_dict(), src / f"m{i}.pt")
    # key order differs between the rows: the columns must not
    lines = [{"file": "m0.pt", "test.acc": 0.1, "test-acc": 0.2, "test_acc": 0.3, "Seed": 1, "seed": 2},
             {"file": "m1.pt", "seed": 20, "Seed": 10, "test_acc": 0.6, "test-acc": 0.5, "test.acc": 0.4}]
    (src / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    with pytest.warns(UserWarning, match=r"renamed: 'seed' -> source_seed, 'test-acc' -> source_test_acc, "
                                         r"'test.acc' -> source_test_acc_2"):
        import_statedicts(src, tmp_path / "z", quiet=True)
    table = open_zoo(tmp_path / "z").table.sort_by("source_path")
    cols = ["source_path", "test_acc", "source_test_acc", "source_test_acc_2", "Seed", "source_seed"]
    assert [tuple(r[c] for c in cols) for r in table.to_pylist()] == [("m0.pt", 0.3, 0.2, 0.1, 1, 2),
                                                                      ("m1.pt", 0.6, 0.5, 0.4, 10, 20)]
    names = [n.casefold() for n in table.column_names]
    assert len(names) == len(set(names))
    # DuckDB reads every one by its name (case-insensitively, as it does)
    r = run_cli("query", tmp_path / "z", "select seed, source_seed from models order by source_path")
    assert r.exit_code == 0 and r.output.split()[1:] == ["1,2", "10,20"], r.output
