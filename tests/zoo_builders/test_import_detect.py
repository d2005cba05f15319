"""``zoo import auto``: the layout detected from file names, and imports through it equal to
naming the layout."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file
from test_import_hf_models import write_snapshot
from test_import_modelzoos import write_modelzoo
from zoo_helpers import assert_one_line_error, run_cli

from catalog.zoo import open_zoo
from zoo_builders import importers
from zoo_builders.importers import SourceError, import_zoo
from zoo_builders.importers.detect import detect_layout


def touch(root, *paths):
    for p in paths:
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        (root / p).write_bytes(b"")
    return root


@pytest.mark.parametrize(("files", "layout"), [
    (["weights.npy", "layout.csv", "metrics.csv.gz"], "small-cnn-zoo"),
    (["NN_tune_trainable_3f2a1_00000_0_seed=1_2022-03-01/params.json",
      "NN_tune_trainable_3f2a1_00000_0_seed=1_2022-03-01/checkpoint_000000/checkpoints", "dataset.pt"], "modelzoos"),
    (["mnist_train_3_17/checkpoints/model_final.pth", "mnist_test_1_2/checkpoints/model_final.pth"], "dws-inr"),
    (["train/net0.pth", "train/net1.pth", "splits.json"], "nfn-inr"),
    (["model.safetensors", "config.json"], "hf-models"),
    (["model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"],
     "hf-models"),
    (["a/model.safetensors", "b/model.safetensors.index.json", "b/model-00001-of-00001.safetensors"], "hf-models"),
    (["a/model.safetensors", "b/other.pt"], "state-dicts"),  # snapshots mixed with other files: a folder of files
    (["x.pt", "y.safetensors", "z.bin", "metadata.csv"], "state-dicts"),
    (["deep/er/m.pth"], "state-dicts"),
    # an earlier import's --out inside the source is a zoo, not the source's: its shards are not looked at
    (["a/model.safetensors", "b/model.safetensors", "zoo/zoo.json", "zoo/weights/mlp-1/shard-00000.safetensors"],
     "hf-models"),
])
def test_detects_each_layout_by_file_names(tmp_path, files, layout):
    assert detect_layout(touch(tmp_path / "src", *files)) == layout


def test_urls_lists_and_nothing_found(tmp_path):
    assert detect_layout("hf://acme/tiny@v1") == "hf-models"
    assert detect_layout(["hf://acme/tiny@v1", "hf://acme/tiny"]) == "hf-models"
    with pytest.raises(SourceError, match="give a list only of Hugging Face"):
        detect_layout([tmp_path, tmp_path])
    empty = touch(tmp_path / "empty", "README.md", "notes/run.log")
    with pytest.raises(SourceError) as err:
        detect_layout(empty)
    for name in ("small-cnn-zoo", "modelzoos", "dws-inr", "nfn-inr", "hf-models", "state-dicts", "params.json",
                 "model_final.pth", "net<idx>.pth", "weights.npy"):
        assert name in str(err.value)
    with pytest.raises(SourceError, match="not a directory"):
        detect_layout(tmp_path / "absent")
    assert_one_line_error(run_cli("import", "auto", empty, "--out", tmp_path / "o", "-q"),
                          "--layout auto found no known layout", "looked for")
    assert not (tmp_path / "o").exists()


def test_detection_opens_no_file(tmp_path):
    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    src = tmp_path / "src"
    src.mkdir()
    for name in ("net0.pth", "weights.npy"):
        with open(src / name, "wb") as f:
            pickle.dump(Evil(), f, protocol=2)
    assert detect_layout(src) == "nfn-inr" and not marker.exists()


def _rows(zoo):
    return sorted((r["source_path"], r["sha256"], r["checkpoint"]) for r in open_zoo(zoo).table.to_pylist())


def test_auto_imports_like_the_named_layout(tmp_path):
    mz, _ = write_modelzoo(tmp_path / "mz", nlins=("tanh", "relu"), epochs=1)
    hf = tmp_path / "hf"
    for i in range(2):
        write_snapshot(hf / f"m{i}", i, sharded=bool(i))
    sd = tmp_path / "sd"
    sd.mkdir()
    for i in range(2):
        torch.manual_seed(i)
        save_file({"0.weight": torch.randn(3, 4), "0.bias": torch.randn(3)}, sd / f"m{i}.safetensors")
    for src, layout in ((mz, "modelzoos"), (hf, "hf-models"), (sd, "state-dicts")):
        import_zoo(layout, src, tmp_path / f"{layout}-named", quiet=True)
        r = run_cli("import", "auto", src, "--out", tmp_path / f"{layout}-auto", "-q")
        assert r.exit_code == 0, r.output
        auto = tmp_path / f"{layout}-auto"
        assert open_zoo(auto).manifest.spec["importer"] == layout
        assert _rows(auto) == _rows(tmp_path / f"{layout}-named")


def test_detected_layout_without_an_importer(tmp_path, monkeypatch):
    src = touch(tmp_path / "src", "mnist_train_3_17/checkpoints/model_final.pth")
    monkeypatch.delitem(importers.IMPORTERS, "dws-inr", raising=False)
    with pytest.raises(SourceError, match="looks like the dws-inr layout, which this installation cannot import"):
        import_zoo("auto", src, tmp_path / "o", quiet=True)
    assert not (tmp_path / "o").exists()


def test_a_wrong_guess_says_what_was_detected_and_how_to_choose(tmp_path):
    """net<idx>.pth files that are plain MLPs: auto takes them for NFN's INRs; the error says so."""
    src = tmp_path / "nets"
    src.mkdir()
    for i in range(2):
        torch.save(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).state_dict(),
                   src / f"net{i}.pth")
    r = run_cli("import", "auto", src, "--out", tmp_path / "zoo", "-q")
    assert_one_line_error(r, "--layout auto detected nfn-inr", "net<idx>.pth", "zoo import LAYOUT", "state-dicts")
    r = run_cli("import", "auto", src, "--out", tmp_path / "zoo", "-q", "--layout", "state-dicts")
    assert r.exit_code == 1  # the layout once, not twice
    r = run_cli("import", "state-dicts", src, "--out", tmp_path / "zoo", "-q")
    assert r.exit_code == 0, r.output
    (src / "net0.pth").rename(src / "m0.pth")
    (src / "net1.pth").rename(src / "m1.pth")
    r = run_cli("import", "auto", src, "--out", tmp_path / "zoo3", "-q")  # a success says what was detected too
    assert r.exit_code == 0 and "layout state-dicts detected" in r.output, r.output
