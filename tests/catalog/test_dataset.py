"""WeightDataset: items, run-level splits, train-split statistics cached in the zoo."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from zoo_helpers import write_activation_zoo

import catalog.dataset as dataset_mod
from catalog import WeightDataset, WeightzooError, open_zoo, verify_zoo
from catalog.dataset import compute_stats


def test_items_and_stacked(zoo_dir):
    sel = open_zoo(zoo_dir).select()
    ds = WeightDataset(sel, ["test_acc", "lr"], split="train", fractions=(0.6, 0.2, 0.2), cache_stats=False)
    w, y = ds[0]
    assert set(w) == set(ds.network_spec.param_names)
    assert w["layers.0.weight"].shape == (8, 4) and y.shape == (2,) and y.dtype == torch.float32
    batch, targets = ds.stacked()
    assert batch["layers.1.weight"].shape == (len(ds), 3, 8) and targets.shape == (len(ds), 2)
    assert torch.allclose(targets[:, 0].double(), torch.tensor(ds.table["test_acc"].to_pylist()).double())


def test_splits_do_not_share_runs_and_skip_diverged(zoo_dir):
    sel = open_zoo(zoo_dir).select()
    parts = {s: WeightDataset(sel, ["test_acc"], split=s, fractions=(0.5, 0.25, 0.25), seed=1, cache_stats=False)
             for s in ("train", "val", "test")}
    runs = {s: set(d.table["run_id"].to_pylist()) for s, d in parts.items()}
    assert not (runs["train"] & runs["val"] or runs["train"] & runs["test"] or runs["val"] & runs["test"])
    assert sum(len(d) for d in parts.values()) == 30  # 36 rows minus the 2 diverged runs x 3 checkpoints
    assert all(set(d.table["status"].to_pylist()) == {"ok"} for d in parts.values())
    every = WeightDataset(sel, ["test_acc"], status=None, cache_stats=False)
    assert sum(len(v) for v in every.splits.values()) == 36


def _split_runs_hash(sel, seed: int) -> str:
    runs = {s: sorted(set(WeightDataset(sel, ["test_acc"], s, seed=seed, cache_stats=False).table["run_id"]
                          .to_pylist())) for s in ("train", "val", "test")}
    return hashlib.sha256(json.dumps(runs, sort_keys=True).encode()).hexdigest()[:16]


def test_zoos_without_shared_networks_split_exactly_as_before(zoo_dir, tiny_digits_zoo):
    """The runs of each split, for zoos where no two runs share a network (sha256), as they were
    before runs were linked by sha256 (recorded then): published figures depend on them."""
    hand = open_zoo(zoo_dir).select()
    trained = open_zoo(tiny_digits_zoo).select(where="checkpoint <> 0")  # what zoo train reads by default
    for sel in (hand, trained):
        assert len(set(sel.column("sha256"))) == len(sel)
    assert _split_runs_hash(hand, 0) == "e6db54758b41a9ab" and _split_runs_hash(hand, 3) == "f75ba9bb2837b890"
    assert _split_runs_hash(trained, 0) == "8fd000a86ccae4e0" and _split_runs_hash(trained, 3) == "8485dd932815dbbd"


@pytest.mark.parametrize("seed", [0, 3])
def test_identical_networks_of_different_runs_share_a_split(tiny_digits_zoo, seed):
    """With checkpoint 0, runs of one seed and different lr hold the same initialization: it
    must not be in train and in val/test at once (6 seeds: 6 groups of 3 runs, split 3/2/1)."""
    sel = open_zoo(tiny_digits_zoo).select()
    shas = {s: set(WeightDataset(sel, ["test_acc"], s, fractions=(0.5, 0.25, 0.25), seed=seed,
                                 cache_stats=False).table["sha256"].to_pylist())
            for s in ("train", "val", "test")}
    assert shas["val"] and shas["test"]
    assert not (shas["train"] & shas["val"] or shas["train"] & shas["test"] or shas["val"] & shas["test"])


def test_stats_from_train_split_cached_in_zoo(zoo_copy, monkeypatch):
    sel = open_zoo(zoo_copy).select()
    train = WeightDataset(sel, ["test_acc"], split="train", normalize=False, cache_stats=False)
    ds = WeightDataset(sel, ["test_acc"], split="train")
    assert ds.stats_path is not None and ds.stats_path.is_file() and not ds.stats_cached
    assert ds.stats_path.parent == zoo_copy / "stats"
    want = compute_stats(train.stacked()[0])
    for k in want["mean"]:
        torch.testing.assert_close(ds.stats["mean"][k], want["mean"][k])
        torch.testing.assert_close(ds.stats["std"][k], want["std"][k])
    normalized = ds.stacked()[0]["layers.0.weight"]
    torch.testing.assert_close(normalized.mean(0), torch.zeros(8, 4), atol=1e-5, rtol=0)

    def no_compute(_):
        raise AssertionError("stats were recomputed")

    monkeypatch.setattr(dataset_mod, "compute_stats", no_compute)
    again = WeightDataset(open_zoo(zoo_copy).select(), ["test_acc"], split="val")
    assert again.stats_cached and again.stats_path == ds.stats_path
    val_raw = WeightDataset(sel, ["test_acc"], split="val", normalize=False).stacked()[0]
    torch.testing.assert_close(again.stacked()[0]["layers.0.bias"],
                               (val_raw["layers.0.bias"] - want["mean"]["layers.0.bias"])
                               / want["std"]["layers.0.bias"])
    torch.testing.assert_close(again.denormalize_weights(again.stacked()[0])["layers.0.bias"], val_raw["layers.0.bias"])
    assert verify_zoo(zoo_copy).ok  # the stats cache is not zoo data
    monkeypatch.undo()
    other = WeightDataset(sel, ["test_acc"], split="train", seed=7)  # another split -> another file
    assert other.stats_path != ds.stats_path and not other.stats_cached


def test_a_symlinked_stats_folder_is_neither_written_nor_read(zoo_copy, tmp_path):
    """stats/ is joined like zoo data (safe_join): a link to a folder outside the zoo would make
    the cache write there, or read statistics someone else put there."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (zoo_copy / "stats").symlink_to(outside)
    sel = open_zoo(zoo_copy).select()
    with pytest.raises(WeightzooError, match=rf"statistics cache file 'stats/norm-[0-9a-f]+\.safetensors' leads "
                                             rf"outside the zoo .*remove it \(rm {zoo_copy / 'stats'}\)"):
        WeightDataset(sel, ["test_acc"], split="train")
    assert not any(outside.iterdir())  # nothing written outside
    # A cache file placed outside (as an earlier run through the link left it) is not read either.
    (zoo_copy / "stats").unlink()
    written = WeightDataset(sel, ["test_acc"], split="train").stats_path
    written.rename(outside / written.name)
    (zoo_copy / "stats").rmdir()
    (zoo_copy / "stats").symlink_to(outside)
    with pytest.raises(WeightzooError, match="leads outside the zoo"):
        WeightDataset(sel, ["test_acc"], split="val")


def test_the_same_stats_are_written_as_the_same_bytes(tmp_path):
    """safetensors keeps a file's metadata in a hash map whose order changes from call to call:
    the stats file (format, key, arch_id, n_models) came out in up to 8 byte orders from 8 writes."""
    from zoo_helpers import mlp_spec

    spec = mlp_spec()
    gen = torch.Generator().manual_seed(0)
    stats = compute_stats({p.name: torch.randn(5, *p.shape, generator=gen) for p in spec.params})
    files = [tmp_path / f"norm-{i}.safetensors" for i in range(8)]
    for f in files:
        assert dataset_mod._write_stats(f, stats, "k" * 20, spec, 5)
    assert len({f.read_bytes() for f in files}) == 1
    back = dataset_mod._read_stats(files[0], "k" * 20, spec)
    for kind in ("mean", "std"):
        for name, value in stats[kind].items():
            assert torch.equal(back[kind][name], value)


def test_read_only_zoo_computes_stats_in_memory(zoo_copy, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(dataset_mod, "atomic_path", refuse)
    ds = WeightDataset(open_zoo(zoo_copy).select(), ["test_acc"])
    assert ds.stats is not None and ds.stats_path is None
    assert not (zoo_copy / "stats").exists() or not any((zoo_copy / "stats").iterdir())


def test_categorical_targets(zoo_dir):
    sel = open_zoo(zoo_dir).select()
    ds = WeightDataset(sel, ["activation"], normalize=False)
    assert ds.classes == {"activation": ["relu", "tanh"]}
    _, y = ds.stacked()
    assert y.dtype == torch.int64
    assert [ds.classes["activation"][i] for i in y[:, 0].tolist()] == ds.table["activation"].to_pylist()
    mixed = WeightDataset(sel, ["activation", "test_acc"], normalize=False)
    assert mixed.stacked()[1].dtype == torch.float32


def test_selection_without_metadata_columns(zoo_dir):
    sel = open_zoo(zoo_dir).sql("SELECT model_id FROM models WHERE checkpoint = 2")
    ds = WeightDataset(sel, ["test_acc"], cache_stats=False)
    assert len(ds) > 0 and set(ds.table.column_names) >= {"run_id", "status", "test_acc"}


def test_errors(zoo_dir, multi_arch_dir):
    sel = open_zoo(zoo_dir).select()
    with pytest.raises(WeightzooError, match="split"):
        WeightDataset(sel, ["test_acc"], split="holdout")
    with pytest.raises(WeightzooError, match="list of column"):
        WeightDataset(sel, "test_acc")
    with pytest.raises(WeightzooError, match="no rows"):
        WeightDataset(open_zoo(zoo_dir).select(where="false"), ["test_acc"])
    with pytest.raises(WeightzooError, match="train split of architecture .* is empty"):
        WeightDataset(sel, ["test_acc"], split="test", fractions=(0.0, 0.5, 0.5))


def test_several_architectures_give_one_part_per_arch(multi_arch_dir):
    sel = open_zoo(multi_arch_dir).select()
    parts = {s: WeightDataset(sel, ["test_acc"], split=s, fractions=(0.5, 0.25, 0.25), cache_stats=False)
             for s in ("train", "val", "test")}
    train = parts["train"]
    assert len(train.arch_ids) == 2 and sorted(train.by_arch()) == sorted(sel.arch_ids)
    # one split over all rows: no run in two splits, every ok row in one
    runs = {s: set(d.table["run_id"].to_pylist()) for s, d in parts.items()}
    assert not (runs["train"] & runs["val"] or runs["train"] & runs["test"] or runs["val"] & runs["test"])
    assert sum(len(d) for d in parts.values()) == sel.column("status").count("ok")
    for arch, part in train.by_arch().items():
        assert part.network_spec.arch_id == arch and part.arch_ids == [arch]
        w, y = part.stacked()
        assert w["layers.0.bias"].shape == (len(part), part.network_spec.layers[0].out_features)
        # each part is normalized with the statistics of its own training rows
        torch.testing.assert_close(w["layers.0.bias"].mean(0), torch.zeros(w["layers.0.bias"].shape[1]),
                                   atol=1e-5, rtol=0)
        assert set(part.table["run_id"].to_pylist()) <= runs["train"]
    assert len(train) == sum(len(p) for p in train.by_arch().values())
    # items in row order, each with its own architecture's parameters
    for i in range(len(train)):
        w, y = train[i]
        assert y.item() == pytest.approx(train.table["test_acc"][i].as_py())
        assert w["layers.0.weight"].shape[0] in (8, 6)
    for what in ("stacked", "network_spec"):
        with pytest.raises(WeightzooError, match="by_arch") as e:
            getattr(train, what)() if what == "stacked" else train.network_spec
        assert "widths" in str(e.value) and all(a in str(e.value) for a in sel.arch_ids)


def test_several_architectures_share_split_and_classes(tmp_path):
    zoo = open_zoo(write_activation_zoo(tmp_path / "acts"))
    sel = zoo.select(where="checkpoint > 0")
    ds = WeightDataset(sel, ["activation"], split="test", fractions=(0.5, 0.25, 0.25), cache_stats=False)
    assert ds.classes == {"activation": ["relu", "tanh"]}
    for part in ds.by_arch().values():
        assert part.classes == ds.classes
        labels = {ds.classes["activation"][i] for i in part.stacked()[1][:, 0].tolist()}
        assert labels == {part.network_spec.layers[0].activation}
    # the split is the one a single split_by_run over all rows makes
    from catalog.split import split_by_run
    whole = split_by_run(sel.metadata(["run_id"]), (0.5, 0.25, 0.25), 0)
    assert sorted(ds.table["run_id"].to_pylist()) == sorted(
        np.asarray(sel.column("run_id"), dtype=object)[whole["test"]].tolist())
