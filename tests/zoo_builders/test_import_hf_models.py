"""The hf-models layout: Hugging Face model snapshots (single-file and sharded safetensors), local
and from the suite's own Hub server (tests/hubserver.py, started by tests/conftest.py): imported
bit for bit with their config.json columns, trained on, resumed, and refused when hostile."""

from __future__ import annotations

import json
import pickle
import uuid
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from zoo_helpers import assert_one_line_error, run_cli

from catalog.verify import verify_zoo
from catalog.zoo import open_zoo
from zoo_builders.importers import SourceError, import_hf_models, import_zoo


def tiny_net(seed: int) -> nn.Sequential:
    """6 -> 5 -> tanh -> 3, named like a Sequential (``net.0``, ``net.2``)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).eval()


def write_snapshot(folder: Path, seed: int, sharded: bool = False, **config) -> dict[str, torch.Tensor]:
    """A model repo snapshot: ``model.safetensors`` (or two shards and
    ``model.safetensors.index.json``) and a ``config.json``. Returns the state dict written."""
    folder.mkdir(parents=True, exist_ok=True)
    sd = {f"net.{k}": v for k, v in tiny_net(seed).state_dict().items()}
    cfg = {"architectures": ["TinyMLP"], "model_type": "tiny-mlp", "hidden_act": "tanh", "hidden_size": 5,
           "num_labels": 3, "id2label": {"0": "a", "1": "b", "2": "c"}, "eval_accuracy": 0.5 + 0.04 * seed,
           "torch_dtype": "float32", **config}
    (folder / "config.json").write_text(json.dumps(cfg))
    if not sharded:
        save_file(sd, folder / "model.safetensors")
        return sd
    shards = {"model-00001-of-00002.safetensors": ["net.0.weight", "net.0.bias"],
              "model-00002-of-00002.safetensors": ["net.2.weight", "net.2.bias"]}
    for fname, names in shards.items():
        save_file({n: sd[n] for n in names}, folder / fname)
    index = {"metadata": {"total_size": sum(v.numel() * 4 for v in sd.values())},
             "weight_map": {n: f for f, names in shards.items() for n in names}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return sd


def test_local_snapshots_single_and_sharded(tmp_path):
    src = tmp_path / "repos"
    truth = {"alpha": write_snapshot(src / "alpha", 0), "beta": write_snapshot(src / "beta", 1, sharded=True)}
    out = tmp_path / "zoo"
    manifest = import_hf_models(src, out, quiet=True)
    assert manifest.counts["rows"] == 2 and manifest.counts["runs"] == 2 and len(manifest.architectures) == 1
    assert verify_zoo(out).ok
    z = open_zoo(out)
    sel = z.select(order_by="source_path")
    rows = sel.table.to_pylist()
    assert [r["source_path"] for r in rows] == ["alpha", "beta"]
    assert all(r["checkpoint"] == 0 and r["source_layout"] == "hf-models" for r in rows)
    assert rows[1]["eval_accuracy"] == 0.54 and rows[0]["hidden_act"] == "tanh" and rows[0]["num_labels"] == 3
    assert rows[0]["architectures"] == ["TinyMLP"]
    assert json.loads(rows[0]["id2label"]) == {"0": "a", "1": "b", "2": "c"}  # an object: its JSON text
    x = torch.randn(4, 6)
    for r, sd, module in zip(rows, sel.state_dicts(), sel.modules()):
        want = truth[r["source_path"]]
        assert list(sd) == list(want) and all(torch.equal(sd[k], want[k]) for k in want)  # bit-identical
        ref = tiny_net(0 if r["source_path"] == "alpha" else 1)
        torch.testing.assert_close(module(x), ref(x), rtol=0, atol=1e-6)  # tanh, from config.json's hidden_act
    # one snapshot directory as SOURCE, and a list of them
    one = import_zoo("hf-models", src / "beta", tmp_path / "one", dataset="digits", quiet=True)
    assert one.counts["rows"] == 1
    assert one.spec["dataset"]["name"] == "digits" and "digits" in one.datasets  # recorded for --recompute
    assert open_zoo(tmp_path / "one").table.column("source_path").to_pylist() == ["."]
    both = import_hf_models([src / "alpha", src / "beta"], tmp_path / "both", quiet=True)
    assert both.counts["rows"] == 2


def test_hf_cache_layout_names_repo_and_commit(tmp_path):
    commits = ["a" * 40, "b" * 40]
    base = tmp_path / "cache" / "models--acme--tiny" / "snapshots"
    for i, c in enumerate(commits):
        write_snapshot(base / c, i)
    out = tmp_path / "zoo"
    manifest = import_hf_models(tmp_path / "cache", out, rows_per_part=1, quiet=True)
    assert manifest.counts["rows"] == 2 and manifest.counts["runs"] == 1  # one repo in two parts: one run
    rows = open_zoo(out).select(order_by="checkpoint").table.to_pylist()
    assert [r["repo_id"] for r in rows] == ["acme/tiny"] * 2
    assert [r["revision"] for r in rows] == commits and [r["checkpoint"] for r in rows] == [0, 1]
    assert rows[0]["run_id"] == rows[1]["run_id"]


def test_hub_revisions(tmp_path):
    from huggingface_hub import HfApi

    api = HfApi()
    repo = f"test-org/tiny-{uuid.uuid4().hex[:8]}"
    api.create_repo(repo, repo_type="model")
    v1 = write_snapshot(tmp_path / "v1", 0)
    api.upload_folder(folder_path=str(tmp_path / "v1"), repo_id=repo, commit_message="v1")
    api.create_tag(repo, tag="v1")
    v2 = write_snapshot(tmp_path / "v2", 3, sharded=True)
    api.upload_folder(folder_path=str(tmp_path / "v2"), repo_id=repo, commit_message="v2 (sharded)",
                      delete_patterns=["model.safetensors"])
    out = tmp_path / "zoo"
    r = run_cli("import", "hf-models", f"hf://{repo}@v1", "--out", out, "-q")
    assert r.exit_code == 0, r.output
    import_hf_models([f"hf://{repo}@v1", f"hf://models/{repo}"], tmp_path / "both", quiet=True)
    rows = open_zoo(tmp_path / "both").select(order_by="checkpoint").table.to_pylist()
    head = api.model_info(repo).sha
    assert [r["revision"] for r in rows][1] == head and rows[0]["revision"] != head
    assert rows[0]["source_path"] == f"hf://{repo}@{rows[0]['revision']}"
    assert rows[0]["run_id"] == rows[1]["run_id"] and [r["checkpoint"] for r in rows] == [0, 1]
    z = open_zoo(tmp_path / "both")
    for r, want in zip(rows, (v1, v2)):
        sd = z.state_dict(r["model_id"])
        assert all(torch.equal(sd[k], want[k]) for k in want)
    assert verify_zoo(tmp_path / "both").ok

    # a hostile index on the Hub is refused before any shard is fetched
    bad = f"test-org/bad-{uuid.uuid4().hex[:8]}"
    api.create_repo(bad, repo_type="model")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"net.0.weight": "../../../../etc/passwd.safetensors"}}))
    api.upload_folder(folder_path=str(tmp_path / "bad"), repo_id=bad)
    with pytest.raises(SourceError, match="not a file inside the snapshot"):
        import_hf_models(f"hf://{bad}", tmp_path / "o1", quiet=True)
    assert not (tmp_path / "o1").exists()
    # a missing repo or revision is named as such, with what to check (not the server's "404 Client Error.")
    assert_one_line_error(run_cli("import", "hf-models", "hf://test-org/no-such-repo", "--out", tmp_path / "o2",
                                  "-q"), "hf://test-org/no-such-repo was not found")
    assert_one_line_error(run_cli("import", "hf-models", f"hf://{repo}@nope", "--out", tmp_path / "o2", "-q"),
                          "has no revision 'nope'")
    with pytest.raises(SourceError, match="not a model repo URL"):
        import_hf_models("hf://datasets/test-org/x", tmp_path / "o3", quiet=True)


@pytest.mark.slow
def test_cli_import_verify_train(tmp_path):
    src = tmp_path / "repos"
    for i in range(8):
        write_snapshot(src / f"m{i}", i, sharded=i % 2 == 1)
    out = tmp_path / "zoo"
    r = run_cli("import", "hf-models", src, "--out", out, "-q")
    assert r.exit_code == 0, r.output
    assert "imported 8 models (1 architecture(s))" in r.output
    assert run_cli("verify", out).exit_code == 0
    r = run_cli("train", out, "--target", "eval_accuracy", "--model", "statnn", "--epochs", "2", "-q",
                "--include-init", "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output


def test_resume_after_interruption_adds_no_duplicates(tmp_path, monkeypatch):
    import zoo_builders.importers.hf_models as hf_models

    src = tmp_path / "repos"
    for i in range(4):
        write_snapshot(src / f"m{i}", i)
    good = (src / "m3" / "model.safetensors").read_bytes()
    for cut in (100, len(good) - 8):  # a download cut short in the header, in the weights
        (src / "m3" / "model.safetensors").write_bytes(good[:cut])
        with pytest.raises(SourceError, match="m3: .*not a readable safetensors"):
            import_hf_models(src, tmp_path / "zoo", rows_per_part=1, quiet=True)
        assert not (tmp_path / "zoo").exists()  # found from the headers, before anything was written
    (src / "m3" / "model.safetensors").write_bytes(good)
    out = tmp_path / "zoo"
    read = hf_models.read_snapshot

    def interrupted(snap, shapes_only=False):  # stops at the 4th model's weights, 3 written
        if not shapes_only and snap.source_path == "m3":
            raise KeyboardInterrupt
        return read(snap, shapes_only)

    monkeypatch.setattr(hf_models, "read_snapshot", interrupted)
    with pytest.raises(KeyboardInterrupt):
        import_hf_models(src, out, rows_per_part=1, quiet=True)
    monkeypatch.undo()
    assert open_zoo(out).table.num_rows == 3
    assert import_hf_models(src, out, rows_per_part=1, quiet=True).counts["rows"] == 4
    manifest = import_hf_models(src, out, rows_per_part=1, quiet=True)
    ids = open_zoo(out).table.column("model_id").to_pylist()
    assert manifest.complete and manifest.counts["rows"] == 4 and len(set(ids)) == 4
    assert verify_zoo(out).ok


def test_bad_snapshots_one_clear_error_each(tmp_path):
    def fresh(name: str, sharded: bool = True) -> Path:
        write_snapshot(tmp_path / name / "repo", 0, sharded=sharded)
        return tmp_path / name / "repo"

    outside = tmp_path / "outside.safetensors"
    save_file({"net.0.weight": torch.zeros(5, 6)}, outside)
    for i, target in enumerate(("../../outside.safetensors", str(outside), "sub/../../x.safetensors")):
        snap = fresh(f"hostile{i}")
        index = json.loads((snap / "model.safetensors.index.json").read_text())
        index["weight_map"]["net.0.weight"] = target
        (snap / "model.safetensors.index.json").write_text(json.dumps(index))
        with pytest.raises(SourceError, match="not a file inside the snapshot"):
            import_hf_models(snap, tmp_path / f"o{i}", quiet=True)
        assert not (tmp_path / f"o{i}").exists()

    snap = fresh("mismatch")
    save_file({"net.0.weight": load_file(snap / "model-00001-of-00002.safetensors")["net.0.weight"]},
              snap / "model-00001-of-00002.safetensors")  # net.0.bias is gone from its shard
    with pytest.raises(SourceError, match=r"does not hold what model.safetensors.index.json says.*net.0.bias"):
        import_hf_models(snap, tmp_path / "o4", quiet=True)
    assert not (tmp_path / "o4").exists()

    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    snap = fresh("pickle", sharded=False)
    with open(snap / "model.safetensors", "wb") as f:
        pickle.dump({"net.0.weight": Evil()}, f, protocol=2)
    with pytest.raises(SourceError, match="not a readable safetensors"):
        import_hf_models(snap, tmp_path / "o5", quiet=True)
    assert not marker.exists() and not (tmp_path / "o5").exists()

    (tmp_path / "nothing").mkdir()
    with pytest.raises(SourceError, match="holds no Hugging Face model snapshot"):
        import_hf_models(tmp_path / "nothing", tmp_path / "o6", quiet=True)


@pytest.mark.parametrize("act", ["silu", "gelu_new", "swish"])
def test_an_unsupported_hidden_act_is_refused_not_read_as_relu(tmp_path, act):
    src = tmp_path / "repos"
    write_snapshot(src / "alpha", 0)
    write_snapshot(src / "beta", 1, hidden_act=act)
    with pytest.raises(SourceError, match=rf"beta/config.json: hidden_act {act!r} .*--activation"):
        import_hf_models(src, tmp_path / "zoo", quiet=True)
    assert not (tmp_path / "zoo").exists()
    # --activation overrides config.json (the user says what the model computes)
    assert import_hf_models(src, tmp_path / "zoo", activation="tanh", quiet=True).counts["rows"] == 2


@pytest.mark.parametrize("name", ["config.json", "model.safetensors.index.json"], ids=["config", "index"])
def test_metadata_files_linked_out_of_the_snapshot_are_refused(tmp_path, name):
    """config.json (whose keys become columns: a link would copy another JSON file into the zoo)
    and the index are refused as symbolic links out of the snapshot, as weight files are, before
    anything is written; the CLI says so in one line."""
    secret = tmp_path / "elsewhere" / "secret.json"
    secret.parent.mkdir()
    snap = tmp_path / "repo"
    write_snapshot(snap, 0, sharded=True)
    if name == "config.json":
        secret.write_text(json.dumps({"api_key": "hunter2"}))
    else:  # the snapshot's own index, moved out: only the link is wrong
        (snap / name).rename(secret)
    (snap / name).unlink(missing_ok=True)
    (snap / name).symlink_to(secret)
    with pytest.raises(SourceError, match=rf"^(repo: )?{name} is a symbolic link to .*outside the snapshot"):
        import_hf_models(snap, tmp_path / "zoo", quiet=True)
    assert not (tmp_path / "zoo").exists()
    assert_one_line_error(run_cli("import", "hf-models", snap, "--out", tmp_path / "zoo", "-q"),
                          f"{name} is a symbolic link", "outside the snapshot", "copy it into the snapshot")
    assert not (tmp_path / "zoo").exists()


def test_weight_files_linked_out_of_the_snapshot_are_refused(tmp_path):
    """A shard (or model.safetensors) that is a symbolic link to a file outside the snapshot is
    not read; a Hugging Face cache's links into its repo's blobs/ folder are."""
    outside = tmp_path / "elsewhere" / "secret.safetensors"
    outside.parent.mkdir()
    for sharded in (True, False):
        snap = tmp_path / f"linked-{sharded}" / "repo"
        sd = write_snapshot(snap, 0, sharded=sharded)
        victim = snap / ("model-00001-of-00002.safetensors" if sharded else "model.safetensors")
        save_file({k: sd[k] for k in load_file(victim)}, outside)
        victim.unlink()
        victim.symlink_to(outside)
        with pytest.raises(SourceError, match=rf"{victim.name} .*symbolic link .*outside the snapshot"):
            import_hf_models(snap, tmp_path / f"o-{sharded}", quiet=True)
        assert not (tmp_path / f"o-{sharded}").exists()
    # the cache's own layout: snapshots/<commit>/<file> -> ../../blobs/<hash>
    repo = tmp_path / "cache" / "models--acme--tiny"
    snap = repo / "snapshots" / ("c" * 40)
    sd = write_snapshot(snap, 1, sharded=True)
    (repo / "blobs").mkdir()
    for f in sorted(snap.iterdir()):
        blob = repo / "blobs" / f"blob-{f.name}"
        f.rename(blob)
        f.symlink_to(Path("../../blobs") / blob.name)
    import_hf_models(tmp_path / "cache", tmp_path / "zoo", quiet=True)
    got = open_zoo(tmp_path / "zoo").select().state_dicts()[0]
    assert all(torch.equal(got[k], sd[k]) for k in sd)


def test_a_batchnorm_snapshot_imports_as_a_state_dict_folder_does(tmp_path):
    """Architectures are inferred as for state-dict folders: batch norms included."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    with torch.no_grad():
        net.train()
        net(torch.randn(32, 8) * 2 + 1)
    net.eval()
    (tmp_path / "snap").mkdir()
    save_file(net.state_dict(), tmp_path / "snap" / "model.safetensors")
    import_hf_models(tmp_path / "snap", tmp_path / "zoo", quiet=True)
    import_zoo("state-dicts", tmp_path / "snap", tmp_path / "sd", quiet=True)
    (spec,) = open_zoo(tmp_path / "zoo").select().network_specs.values()
    assert spec.arch_id == next(iter(open_zoo(tmp_path / "sd").select().network_specs))
    (sd,), (module,) = open_zoo(tmp_path / "zoo").select().state_dicts(), open_zoo(tmp_path / "zoo").select().modules()
    want = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert sorted(sd) == sorted(want) and all(torch.equal(sd[k], want[k]) for k in want)
    x = torch.randn(5, 8)
    with torch.no_grad():
        torch.testing.assert_close(module(x), net(x), rtol=0, atol=1e-6)


def test_arch_with_a_0dim_last_tensor_is_a_clear_error(tmp_path):
    """A scalar tensor last in name order: once an IndexError (taken as the output width)."""
    (tmp_path / "snap").mkdir()
    sd = {f"net.{k}": v for k, v in nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)).state_dict().items()}
    save_file({**sd, "scale": torch.tensor(2.0)}, tmp_path / "snap" / "model.safetensors")
    r = run_cli("import", "hf-models", tmp_path / "snap", "--out", tmp_path / "z", "-q", "--arch", "mlp",
                "--arch-opt", "hidden=[16]", "--input-shape", "8")
    assert_one_line_error(r, "'scale' [] is not a layer's weight or bias", "not part of the architecture given")
    save_file(sd, tmp_path / "snap" / "model.safetensors")  # without it: imports, 3 outputs
    import_hf_models(tmp_path / "snap", tmp_path / "z", arch="mlp", arch_options=["hidden=[16]"],
                     input_shape=(8,), quiet=True)
    (spec,) = open_zoo(tmp_path / "z").select().network_specs.values()
    assert spec.n_outputs == 3


def test_config_keys_that_collide_get_distinct_columns(tmp_path):
    """``Revision``/``revision`` (the importer's own column, compared ignoring case) and
    ``a.b``/``a_b``: each value under its own column, one warning."""
    write_snapshot(tmp_path / "snap", 0, **{"Revision": "mine", "a.b": 1, "a_b": 2})
    with pytest.warns(UserWarning, match=r"renamed: 'Revision' -> config_Revision, 'a.b' -> config_a_b"):
        import_hf_models(tmp_path / "snap", tmp_path / "zoo", quiet=True)
    (row,) = open_zoo(tmp_path / "zoo").table.to_pylist()
    assert row["config_Revision"] == "mine" and row["revision"] is None and row["a_b"] == 2 and row["config_a_b"] == 1
    names = [n.casefold() for n in row]
    assert len(names) == len(set(names))
