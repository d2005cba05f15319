"""ZooWriter: one writer at a time, a zoo recognisable from the first moment, and a resume
that checks what it keeps and drops what is damaged."""

from __future__ import annotations

import json
import os

import pytest
from zoo_helpers import flip_weight_byte, mlp_spec, random_weights, tree_hashes

from catalog import WeightzooError, ZooWriter, open_zoo, verify_zoo
from catalog.format import read_manifest
from catalog.lock import LOCK_NAME, ZooLockedError

SPEC = {"name": "w", "test": True}


def _rows(part: int, n_runs: int = 2, checkpoints: tuple[int, ...] = (0, 1)) -> list[dict]:
    return [{"model_id": f"p{part}-r{r}-c{c}", "run_id": f"p{part}-r{r}", "checkpoint": c,
             "status": "diverged" if (part, r) == (1, 0) else "ok", "lr": 0.1 * (part + 1)}
            for r in range(n_runs) for c in checkpoints]


def _write(root, parts: int = 3, finish: bool = True) -> ZooWriter:
    w = ZooWriter(root, "w", SPEC)
    spec = mlp_spec()
    arch = w.add_architecture(spec)
    for i in range(parts):
        rows = _rows(i)
        w.write_part(arch, random_weights(spec, len(rows), i), rows)
    if finish:
        w.finish(card="# w\n")
    return w


# ================================================================================ the lock
def test_second_writer_is_refused_while_the_first_writes(tmp_path):
    root = tmp_path / "zoo"
    first = ZooWriter(root, "w", SPEC)
    with pytest.raises(ZooLockedError, match=rf"is being written by process {os.getpid()} "):
        ZooWriter(root, "w", SPEC)
    first.close()
    ZooWriter(root, "w", SPEC).close()  # free once the first is closed


def test_lock_is_taken_before_strays_are_removed(tmp_path):
    root = tmp_path / "zoo"
    w = _write(root, parts=1, finish=False)
    # A file the first writer is writing right now: a second writer must not delete it.
    busy = root / "models" / ".tmp-busy.parquet"
    busy.write_bytes(b"being written")
    with pytest.raises(ZooLockedError):
        ZooWriter(root, "w", SPEC)
    assert busy.exists()
    w.close()


def test_writer_is_a_context_manager_and_finish_releases(tmp_path):
    root = tmp_path / "zoo"
    with ZooWriter(root, "w", SPEC) as w:
        assert (root / LOCK_NAME).is_file()
    assert not (root / LOCK_NAME).exists()
    with pytest.raises(RuntimeError):
        with ZooWriter(root, "w", SPEC):
            raise RuntimeError("boom")
    assert not (root / LOCK_NAME).exists()  # released on error too
    w = _write(root, parts=1)
    assert not (root / LOCK_NAME).exists() and w.manifest.complete


def test_refused_writer_releases_its_lock(tmp_path):
    root = _write(tmp_path / "zoo", parts=1).root
    before = tree_hashes(root)
    with pytest.raises(WeightzooError, match="different spec"):
        ZooWriter(root, "w", {"name": "w", "other": 1})
    assert tree_hashes(root) == before  # no lock file left behind
    ZooWriter(root, "w", SPEC).close()


def test_stale_lock_file_is_ignored_by_verify(tmp_path):
    root = _write(tmp_path / "zoo", parts=1).root
    (root / LOCK_NAME).write_text(json.dumps({"pid": 1, "hostname": "gone", "command": "x",
                                              "started": "then"}))
    report = verify_zoo(root)
    assert report.ok and not report.warnings, report.warnings
    with ZooWriter(root, "w", SPEC):  # a file nobody holds never blocks
        pass


# ================================================================================ the first moment
def test_new_writer_writes_its_manifest_at_once(tmp_path):
    root = tmp_path / "zoo"
    with ZooWriter(root, "w", SPEC, datasets={"d": {"n": 1}}):
        m = read_manifest(root)
        assert m.name == "w" and m.spec == SPEC and not m.complete and m.files == []
        assert m.datasets == {"d": {"n": 1}}


def test_directory_holding_only_weightzoo_files_resumes(tmp_path):
    """A crash after the first shard was renamed but before any manifest was written."""
    root = tmp_path / "zoo"
    _write(root, parts=1, finish=False).close()
    (root / "zoo.json").unlink()
    (root / ".tmp-abc").write_bytes(b"partial manifest")
    (root / "weights" / ".tmp-x.safetensors").write_bytes(b"partial")
    (root / LOCK_NAME).write_text("{}")  # a dead writer's lock file
    with ZooWriter(root, "w", SPEC) as w:
        assert w.manifest.files == [] and w.done_run_ids() == set()
    assert not list((root / "models").iterdir()) and not list((root / "weights").rglob("*.*"))
    assert not (root / ".tmp-abc").exists()


@pytest.mark.parametrize("foreign", ["notes.txt", "models/mine.csv", "weights/a/other.bin", "data/x"])
def test_directory_with_other_files_is_refused(tmp_path, foreign):
    root = tmp_path / "zoo"
    (root / foreign).parent.mkdir(parents=True)
    (root / foreign).write_text("mine")
    (root / "models").mkdir(exist_ok=True)
    (root / "models" / "part-00000.parquet").write_bytes(b"x")
    with pytest.raises(WeightzooError, match="holds no zoo"):
        ZooWriter(root, "w", SPEC)
    assert (root / foreign).read_text() == "mine" and not (root / LOCK_NAME).exists()
    assert (root / "models" / "part-00000.parquet").exists()


# ================================================================================ repair
def _listed(root) -> list[str]:
    return [f.path for f in read_manifest(root).files]


def test_repair_drops_a_corrupt_part_with_its_shard(tmp_path):
    root = _write(tmp_path / "zoo").root
    part, shard = "models/part-00001.parquet", _listed(root)[2]
    assert shard.endswith("shard-00001.safetensors")
    data = bytearray((root / part).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (root / part).write_bytes(bytes(data))
    with ZooWriter(root, "w", SPEC) as w:
        repairs = w.repair()
        assert {r.path: r.reason.split(" ")[0] for r in repairs} == {part: "sha256", shard: "written"}
        assert part not in _listed(root) and shard not in _listed(root)
        assert not (root / part).exists() and not (root / shard).exists()
        m = read_manifest(root)
        assert not m.complete
        assert m.counts["rows"] == 8 and m.counts["runs"] == 4 and m.counts["status_ok"] == 8
        assert "status_diverged" not in m.counts or m.counts["status_diverged"] == 0
        assert w.done_run_ids() == {"p0-r0", "p0-r1", "p2-r0", "p2-r1"}
        # Rewriting the dropped runs neither collides with nor overwrites the kept files.
        kept = {p: (root / p).read_bytes() for p in _listed(root)}
        spec = mlp_spec()
        rows = _rows(1)
        w.write_part(w.add_architecture(spec), random_weights(spec, len(rows), 1), rows)
        assert all((root / p).read_bytes() == b for p, b in kept.items())
        w.finish(card="# w\n")
    assert verify_zoo(root).ok
    assert open_zoo(root).table.num_rows == 12


def test_repair_drops_a_missing_shard_with_its_part(tmp_path):
    root = _write(tmp_path / "zoo").root
    shard = _listed(root)[0]
    (root / shard).unlink()
    with ZooWriter(root, "w", SPEC) as w:
        repairs = w.repair()
    assert sorted(r.path for r in repairs) == ["models/part-00000.parquet", shard]
    assert next(r for r in repairs if r.path == shard).reason == "missing"
    assert verify_zoo(root).ok


def test_repair_checks_size_and_bytes_of_shards(tmp_path):
    root = _write(tmp_path / "zoo").root
    shards = [p for p in _listed(root) if p.startswith("weights/")]
    flip_weight_byte(root / shards[1], "layers.0.bias", 0)  # same size, other bytes
    with open(root / shards[2], "ab") as f:
        f.write(b"x")  # other size
    with ZooWriter(root, "w", SPEC) as w:
        reasons = {r.path: r.reason for r in w.repair()}
    assert reasons[shards[1]].startswith("sha256") and reasons[shards[2]].startswith("size")
    assert _listed(root) == [shards[0], "models/part-00000.parquet"]


def test_repair_of_an_intact_zoo_changes_nothing(tmp_path):
    root = _write(tmp_path / "zoo").root
    before = tree_hashes(root)
    with ZooWriter(root, "w", SPEC) as w:
        assert w.repair() == []
    assert tree_hashes(root) == before



# ================================================================================ links out of the zoo
def _linked_out(root, folder: str, tmp_path):
    """Move ``root/folder`` outside the zoo and leave a symbolic link to it in its place."""
    outside = tmp_path / ("outside-" + folder.replace("/", "-"))
    (root / folder).rename(outside)
    (root / folder).symlink_to(outside)
    return outside


def test_a_resume_deletes_nothing_through_a_symlinked_data_folder(tmp_path):
    """remove_strays deletes every unlisted file under weights/: through a link to a folder
    outside the zoo it deleted the files there."""
    root = _write(tmp_path / "zoo").root
    outside = _linked_out(root, "weights", tmp_path)
    (outside / "victim.txt").write_text("precious")
    with pytest.raises(WeightzooError, match=r"data folder 'weights' leads outside the zoo .*symbolic link"):
        ZooWriter(root, "w", SPEC)
    assert (outside / "victim.txt").read_text() == "precious"
    assert not (root / LOCK_NAME).exists()  # and the refused writer let go of the lock


def test_repair_reads_no_shard_through_a_symlinked_folder(tmp_path):
    root = _write(tmp_path / "zoo").root
    arch_dir = _listed(root)[0].rsplit("/", 1)[0]
    _linked_out(root, arch_dir, tmp_path)
    with ZooWriter(root, "w", SPEC) as w, pytest.raises(WeightzooError, match="leads outside the zoo"):
        w.repair()


def test_read_distinct_reads_no_part_through_a_symlinked_folder(tmp_path):
    """Parts are read (their run and model ids listed, for a resume) through safe_join, even when
    models/ becomes a link after the writer opened."""
    from catalog.writer import read_distinct

    w = _write(tmp_path / "zoo", finish=False)
    _linked_out(w.root, "models", tmp_path)
    with pytest.raises(WeightzooError, match="part 'models/part-00000.parquet' leads outside the zoo"):
        read_distinct(w.root, w.manifest.part_files(), ["run_id"])
    for listed in (w.done_model_ids, w.done_run_ids):
        with pytest.raises(WeightzooError, match="leads outside the zoo"):
            listed()
    w.close()


def test_the_card_reads_no_part_through_a_symlinked_folder(tmp_path):
    from catalog.card import column_sets
    from catalog.zoo import Zoo

    root = _write(tmp_path / "zoo").root
    _linked_out(root, "models", tmp_path)
    with pytest.raises(WeightzooError, match="part 'models/part-00000.parquet' leads outside the zoo"):
        column_sets(Zoo(root))


def test_an_import_counts_no_part_through_a_symlinked_folder(tmp_path):
    from zoo_builders.importers.common import finish_import

    w = _write(tmp_path / "zoo", finish=False)
    _linked_out(w.root, "models", tmp_path)
    with pytest.raises(WeightzooError, match="part 'models/part-00000.parquet' leads outside the zoo"):
        finish_import(w)
    w.close()



def test_read_distinct_reads_each_part_once_and_marks_missing_columns(tmp_path, monkeypatch) -> None:
    # Two parts, the older without torch_threads (written before the column existed): its rows
    # add None; both columns come from one read per part.
    import pyarrow as pa
    import pyarrow.parquet as pq

    import catalog.writer as writer_mod
    from catalog.format import FileEntry

    pq.write_table(pa.table({"run_id": ["a", "a", "b"]}), tmp_path / "p0.parquet")
    pq.write_table(pa.table({"run_id": ["c"], "torch_threads": [2]}), tmp_path / "p1.parquet")
    parts = [FileEntry(f"p{i}.parquet", "0" * 64, 0, 0, "part") for i in range(2)]
    reads = []
    opener = pq.ParquetFile
    monkeypatch.setattr(writer_mod.pq, "ParquetFile", lambda *a, **k: reads.append(a[0]) or opener(*a, **k))
    monkeypatch.setattr(writer_mod.pq, "read_schema", lambda *a, **k: reads.append(a[0]))  # not used
    monkeypatch.setattr(writer_mod.pq, "read_table", lambda *a, **k: reads.append(a[0]))  # not used
    got = writer_mod.read_distinct(tmp_path, parts, ["run_id", "torch_threads"])
    assert got == {"run_id": {"a", "b", "c"}, "torch_threads": {None, 2}}
    assert len(reads) == 2
    assert writer_mod.read_run_ids(tmp_path, parts) == {"a", "b", "c"}


# ================================================================================ deterministic bytes
def test_the_same_part_gives_the_same_shard_bytes(tmp_path):
    """safetensors orders the header's metadata by a hash map that changes from call to call;
    shards (and their sha256 in zoo.json) must not."""
    from safetensors import safe_open

    spec = mlp_spec()
    rows = _rows(0)
    weights = random_weights(spec, len(rows), 0)
    shards = set()
    for i in range(8):
        w = ZooWriter(tmp_path / f"z{i}", "w", SPEC)
        w.write_part(w.add_architecture(spec), weights, rows)
        (shard,) = [f for f in w.manifest.files if f.kind == "shard"]
        shards.add(((tmp_path / f"z{i}" / shard.path).read_bytes(), shard.sha256))
        w.close()
    assert len(shards) == 1
    with safe_open(tmp_path / "z0" / shard.path, "pt") as f:  # still a valid file, metadata intact
        assert f.metadata() == {"arch_id": spec.arch_id, "rows": str(len(rows))}


def test_safetensors_bytes_sorts_the_metadata_and_stays_readable():
    import torch
    from safetensors.torch import load

    from catalog.format import safetensors_bytes

    tensors = {"b": torch.arange(3.0), "a": torch.ones(2, 2, dtype=torch.float64)}
    meta = {k: str(i) for i, k in enumerate("edcba")}  # 120 orders: a hash map rarely repeats one
    datas = {safetensors_bytes(tensors, meta) for _ in range(8)}
    assert len(datas) == 1
    (data,) = datas
    size = int.from_bytes(data[:8], "little")
    assert list(json.loads(data[8:8 + size])["__metadata__"]) == ["a", "b", "c", "d", "e"]
    back = load(data)
    assert back.keys() == tensors.keys() and all(torch.equal(back[k], tensors[k]) for k in tensors)
    assert safetensors_bytes(tensors) == safetensors_bytes(tensors)  # no metadata: nothing to sort


# ================================================================================ the card
def test_a_card_that_fails_leaves_the_zoo_unfinished(tmp_path, monkeypatch):
    """The manifest that marks the zoo complete is written after the card: a card that failed
    left a zoo marked complete without README.md (info and push then failed on it)."""
    import catalog.card

    def broken(*args, **kwargs):
        raise RuntimeError("the card failed")

    w = _write(tmp_path / "zoo", finish=False)
    monkeypatch.setattr(catalog.card, "render_card", broken)
    with pytest.raises(RuntimeError, match="the card failed"):
        w.finish()
    assert not read_manifest(w.root).complete and not (w.root / "README.md").exists()
    monkeypatch.undo()
    w = _write(tmp_path / "zoo")  # the next run finishes it
    assert read_manifest(w.root).complete and (w.root / "README.md").read_text() == "# w\n"


def test_a_metric_column_of_strings_does_not_stop_the_card(tmp_path):
    """An imported test_acc of "95%" (a string column) raised a TypeError in the card's summary,
    in finish (after the zoo was marked complete), zoo info and zoo push; it is left out of the
    summary, and the numeric metrics are summarized."""
    w = ZooWriter(tmp_path / "zoo", "w", SPEC)
    spec = mlp_spec()
    arch = w.add_architecture(spec)
    rows = [{"model_id": f"m{i}", "run_id": f"m{i}", "checkpoint": 0, "status": "ok", "test_acc": acc,
             "test_loss": 0.5 + i} for i, acc in enumerate(["0.5", "95%", "0.7"])]
    w.write_part(arch, random_weights(spec, 3, 0), rows)
    w.finish()
    card = (w.root / "README.md").read_text()
    assert read_manifest(w.root).complete and "| test_loss | 0.5 | 1.5 | 2.5 |" in card and "| test_acc" not in card
    info = open_zoo(w.root).info()
    assert info["columns"]["test_acc"] == "string" and list(info["metrics"]) == ["test_loss"]
