"""Sidecar tables: write, merge on re-run, join into models/queries/selections, verify, refuse
bad tables, and the zoo lock."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from zoo_helpers import SIDECAR_STEPS, assert_one_line_error, interrupt_write_sidecar, run_cli, tree_hashes

from catalog import open_zoo, verify_zoo
from catalog.errors import WeightzooError, ZooFormatError
from catalog.format import MANIFEST_NAME, read_manifest
from catalog.lock import ZooLock, ZooLockedError
from catalog.sidecar import delete_sidecar, join_sidecars, write_sidecar


def _ids(root: Path, n: int | None = None) -> list[str]:
    ids = sorted(open_zoo(root).table.column("model_id").to_pylist())
    return ids if n is None else ids[:n]


def test_written_columns_are_joined_into_table_queries_and_selections(zoo_copy: Path) -> None:
    ids = _ids(zoo_copy, 5)
    # hessian_trace = 10 * position, so each model's value is known by hand.
    entry = write_sidecar(zoo_copy, "analysis", "hessian",
                          pa.table({"model_id": ids, "hessian_trace": [10.0 * i for i in range(5)]}))
    assert entry.path == "analysis/hessian.parquet" and entry.rows == 5 and entry.kind == "sidecar"
    assert read_manifest(zoo_copy).sidecar_files() == [entry]
    zoo = open_zoo(zoo_copy)
    table = zoo.table
    assert table.num_rows == 36 and table.column("hessian_trace").null_count == 31
    values = dict(zip(table.column("model_id").to_pylist(), table.column("hessian_trace").to_pylist()))
    assert [values[i] for i in ids] == [0.0, 10.0, 20.0, 30.0, 40.0]
    rows = zoo.sql("SELECT model_id FROM models WHERE hessian_trace >= 20 ORDER BY hessian_trace").table
    assert rows.column("model_id").to_pylist() == ids[2:]
    sel = zoo.select(where="hessian_trace > 5", order_by="hessian_trace DESC")
    assert sel.column("model_id") == ids[1:][::-1] and len(sel.stacked()[next(iter(sel.stacked()))]) == 4
    report = verify_zoo(zoo_copy)
    assert report.ok and report.warnings == [], report.summary()


def test_rerun_replaces_rows_of_the_same_models_and_keeps_the_rest(zoo_copy: Path) -> None:
    ids = _ids(zoo_copy, 4)
    write_sidecar(zoo_copy, "analysis", "m", pa.table({"model_id": ids[:3], "x": [1.0, 2.0, 3.0]}))
    write_sidecar(zoo_copy, "analysis", "m", pa.table({"model_id": ids[2:], "x": [30.0, 40.0]}))
    side = pq.read_table(zoo_copy / "analysis" / "m.parquet")
    assert dict(zip(side.column("model_id").to_pylist(), side.column("x").to_pylist())) == {
        ids[0]: 1.0, ids[1]: 2.0, ids[2]: 30.0, ids[3]: 40.0}
    assert verify_zoo(zoo_copy).ok


def test_embedding_arrays_round_trip_and_search_in_sql(zoo_copy: Path) -> None:
    ids = _ids(zoo_copy, 3)
    vectors = pa.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], type=pa.list_(pa.float32(), 2))
    write_sidecar(zoo_copy, "embeddings", "behavior", pa.table({"model_id": ids, "emb_behavior": vectors}))
    zoo = open_zoo(zoo_copy)
    # cos((0.6, 0.8), (1, 0)) = 0.6 > cos((0, 1), (1, 0)) = 0: the nearest to (1, 0) after itself.
    q = ("SELECT model_id FROM models WHERE emb_behavior IS NOT NULL "
         "ORDER BY list_cosine_similarity(emb_behavior, [1.0, 0.0]) DESC")
    assert zoo.sql(q).table.column("model_id").to_pylist() == [ids[0], ids[2], ids[1]]


def test_bad_tables_are_refused_and_nothing_changes(zoo_copy: Path) -> None:
    before = tree_hashes(zoo_copy)
    ids = _ids(zoo_copy, 2)
    cases = [
        (("analysis", "h"), pa.table({"id": ids, "x": [1, 2]}), "no 'model_id' column"),
        (("analysis", "h"), pa.table({"model_id": [ids[0], ids[0]], "x": [1, 2]}), "more than once"),
        (("analysis", "h"), pa.table({"model_id": ids}), "no column besides"),
        (("analysis", "h"), pa.table({"model_id": ["nope", ids[0]], "x": [1, 2]}), "not models of this zoo"),
        (("analysis", "h"), pa.table({"model_id": ids, "test_acc": [1.0, 2.0]}), "already a metadata column"),
        (("plots", "h"), pa.table({"model_id": ids, "x": [1, 2]}), "unknown sidecar group"),
        (("analysis", "../h"), pa.table({"model_id": ids, "x": [1, 2]}), "not a valid name"),
    ]
    for (group, name), table, message in cases:
        with pytest.raises((WeightzooError, ZooFormatError), match=message):
            write_sidecar(zoo_copy, group, name, table)
    assert tree_hashes(zoo_copy) == before


def test_a_column_lives_in_one_sidecar_and_keeps_its_type(zoo_copy: Path) -> None:
    ids = _ids(zoo_copy, 2)
    write_sidecar(zoo_copy, "analysis", "a", pa.table({"model_id": ids, "x": [1.0, 2.0]}))
    with pytest.raises(WeightzooError, match="already stored in analysis/a.parquet"):
        write_sidecar(zoo_copy, "analysis", "b", pa.table({"model_id": ids, "x": [1.0, 2.0]}))
    with pytest.raises(WeightzooError, match="stored as double but the new rows have string"):
        write_sidecar(zoo_copy, "analysis", "a", pa.table({"model_id": ids, "x": ["a", "b"]}))


def _tamper(root: Path, rel: str, table: pa.Table) -> None:
    """Replace a listed sidecar's file (and its manifest entry: only the table's content is wrong)."""
    from catalog.format import sha256_file, write_manifest

    pq.write_table(table, root / rel)
    manifest = read_manifest(root)
    entry = next(f for f in manifest.files if f.path == rel)
    entry.sha256, entry.bytes, entry.rows = sha256_file(root / rel), (root / rel).stat().st_size, table.num_rows
    write_manifest(root, manifest)


@pytest.mark.parametrize("case", ["duplicate id", "core column", "metadata column", "other sidecar's column"])
def test_a_sidecar_that_would_not_join_one_row_per_model_is_refused_by_sql_too(zoo_copy: Path, case: str) -> None:
    """Zoo.table and verify refused these, but SQL's LEFT JOIN doubled every row of a duplicated
    id (`zoo query`, select()) and showed a clashing column as <name>_1."""
    from catalog.store import LocalCatalog

    ids = _ids(zoo_copy)
    write_sidecar(zoo_copy, "analysis", "a", pa.table({"model_id": ids[:2], "y": [1.0, 2.0]}))
    write_sidecar(zoo_copy, "analysis", "h", pa.table({"model_id": ids, "x": [1.0] * len(ids)}))
    table, message = {
        "duplicate id": (pa.table({"model_id": ids + ids, "x": [1.0] * (2 * len(ids))}), "model_id more than once"),
        "core column": (pa.table({"model_id": ids, "sha256": ["a"] * len(ids)}), "column 'sha256' clashes"),
        "metadata column": (pa.table({"model_id": ids, "lr": [1.0] * len(ids)}), "column 'lr' clashes"),
        "other sidecar's column": (pa.table({"model_id": ids, "y": [1.0] * len(ids)}), "column 'y' clashes"),
    }[case]
    _tamper(zoo_copy, "analysis/h.parquet", table)
    for read in (lambda z: z.select(), lambda z: z.sql("SELECT count(*) FROM models"), lambda z: z.table):
        with pytest.raises(ZooFormatError, match=message):
            read(open_zoo(zoo_copy))
    with pytest.raises(ZooFormatError, match=message) as e:
        LocalCatalog(zoo_copy.parent / "index.duckdb").add(zoo_copy)
    assert f"zoo drop {zoo_copy} analysis/h" in str(e.value)  # what to do
    assert_one_line_error(run_cli("query", zoo_copy, "SELECT count(*) FROM models"), message)
    assert not verify_zoo(zoo_copy).ok
    delete_sidecar(zoo_copy, "analysis/h")
    assert len(open_zoo(zoo_copy).select()) == len(ids)


def test_writing_takes_the_zoo_lock(zoo_copy: Path) -> None:
    ids = _ids(zoo_copy, 1)
    with ZooLock(zoo_copy, command="zoo build spec.yaml"), pytest.raises(ZooLockedError, match="zoo build spec.yaml"):
        write_sidecar(zoo_copy, "analysis", "h", pa.table({"model_id": ids, "x": [1.0]}))


def test_drop_removes_a_table_and_leaves_the_zoo_as_before(zoo_copy: Path) -> None:
    before = tree_hashes(zoo_copy)
    manifest_before = read_manifest(zoo_copy)
    ids = _ids(zoo_copy, 3)
    write_sidecar(zoo_copy, "analysis", "keep", pa.table({"model_id": ids, "k": [1.0, 2.0, 3.0]}))
    kept = tree_hashes(zoo_copy)
    write_sidecar(zoo_copy, "analysis", "cka", pa.table({"model_id": ids, "cka_seed": [0.5, 0.6, 0.7]}))
    entry = delete_sidecar(zoo_copy, "analysis/cka.parquet", command="zoo drop")
    assert entry.path == "analysis/cka.parquet" and entry.rows == 3
    assert not (zoo_copy / "analysis" / "cka.parquet").exists()
    assert tree_hashes(zoo_copy) == kept                     # the other table and everything else kept
    assert "cka_seed" not in open_zoo(zoo_copy).table.column_names
    assert verify_zoo(zoo_copy).ok
    delete_sidecar(zoo_copy, "analysis/keep")
    assert read_manifest(zoo_copy).files == manifest_before.files
    assert {k: v for k, v in tree_hashes(zoo_copy).items() if k != MANIFEST_NAME} == \
        {k: v for k, v in before.items() if k != MANIFEST_NAME}
    with pytest.raises(WeightzooError, match="has no sidecar table analysis/keep.parquet; its tables: none"):
        delete_sidecar(zoo_copy, "analysis/keep")
    with pytest.raises(WeightzooError, match="is not <group>/<name>"):
        delete_sidecar(zoo_copy, "keep")
    with pytest.raises(WeightzooError, match="unknown sidecar group 'weights'"):
        delete_sidecar(zoo_copy, "weights/x")
    with pytest.raises(WeightzooError, match="sidecar table name"):
        delete_sidecar(zoo_copy, "analysis/../zoo")
    write_sidecar(zoo_copy, "analysis", "h", pa.table({"model_id": ids, "x": [1.0, 2.0, 3.0]}))
    with ZooLock(zoo_copy, command="zoo analyze"), pytest.raises(ZooLockedError, match="zoo analyze"):
        delete_sidecar(zoo_copy, "analysis/h")
    assert (zoo_copy / "analysis" / "h.parquet").exists()


def test_verify_flags_tampered_and_inconsistent_sidecars(zoo_copy: Path) -> None:
    ids = _ids(zoo_copy, 2)
    write_sidecar(zoo_copy, "analysis", "h", pa.table({"model_id": ids, "x": [1.0, 2.0]}))
    path = zoo_copy / "analysis" / "h.parquet"
    pq.write_table(pa.table({"model_id": ids, "x": [1.0, 3.0]}), path)
    report = verify_zoo(zoo_copy)
    assert not report.ok and [p.path for p in report.problems] == ["analysis/h.parquet"]
    # A manifest entry pointing a sidecar outside its groups is refused on read.
    manifest = json.loads((zoo_copy / MANIFEST_NAME).read_text())
    manifest["files"][-1]["path"] = "models/h.parquet"
    (zoo_copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ZooFormatError, match="not inside analysis/ or embeddings/"):
        open_zoo(zoo_copy)


def test_a_deleted_table_file_gets_one_fix_everywhere_and_drop_recovers(zoo_copy: Path) -> None:
    # A sidecar file deleted by hand: every reader (table, SQL, the persistent index) and verify
    # say which table and that `zoo drop` then the command that wrote it recompute it; a rebuild
    # or pull is not needed. After the drop the zoo reads and verifies as before.
    from catalog.store import LocalCatalog
    from catalog.verify import REPAIR_HINT, SIDECAR_REPAIR_HINT

    write_sidecar(zoo_copy, "analysis", "hessian", pa.table({"model_id": _ids(zoo_copy, 2), "h": [1.0, 2.0]}))
    (zoo_copy / "analysis" / "hessian.parquet").unlink()
    fix = f"`zoo drop {zoo_copy} analysis/hessian` removes its entry, then `zoo analyze` computes it again"
    with pytest.raises(ZooFormatError, match="analysis/hessian.parquet is listed in the manifest but missing") as e:
        open_zoo(zoo_copy).sql("SELECT model_id FROM models")
    assert fix in str(e.value)
    with pytest.raises(ZooFormatError, match="listed in the manifest but missing") as e:
        _ = open_zoo(zoo_copy).table
    assert fix in str(e.value)
    with pytest.raises(WeightzooError, match="zoo drop"):
        LocalCatalog(zoo_copy.parent / "index.duckdb").add(zoo_copy)
    report = verify_zoo(zoo_copy)
    assert [p.path for p in report.problems] == ["analysis/hessian.parquet"]
    assert fix in report.problems[0].message and report.repair_hint == SIDECAR_REPAIR_HINT
    delete_sidecar(zoo_copy, "analysis/hessian")
    assert verify_zoo(zoo_copy).ok
    assert len(open_zoo(zoo_copy).sql("SELECT model_id FROM models")) == len(_ids(zoo_copy))
    (zoo_copy / "models" / "part-00000.parquet").unlink()  # a part is not derived: rebuild or pull
    assert verify_zoo(zoo_copy).repair_hint == REPAIR_HINT


def test_join_by_hand() -> None:
    models = pa.table({"model_id": ["a", "b", "c"], "acc": [0.1, 0.2, 0.3]})
    side = pa.table({"model_id": ["c", "a"], "h": [3.0, 1.0]})
    joined = join_sidecars(models, [side])
    assert joined.column("h").to_pylist() == [1.0, None, 3.0]
    with pytest.raises(ZooFormatError, match="clashes"):
        join_sidecars(models, [pa.table({"model_id": ["a"], "acc": [1.0]})])


#: Where write_sidecar is interrupted: while the new table is written (before its rename), after
#: the rename but before the manifest lists it, and after the manifest.
@pytest.mark.parametrize("step", SIDECAR_STEPS)
def test_a_file_the_manifest_does_not_describe_is_not_stored_rows(zoo_copy: Path, monkeypatch, step) -> None:
    from catalog.sidecar import stored_sidecar

    ids = _ids(zoo_copy, 4)
    write_sidecar(zoo_copy, "analysis", "m", pa.table({"model_id": ids[:2], "x": [1.0, 2.0]}))
    with monkeypatch.context() as m:
        interrupt_write_sidecar(m, step)
        with pytest.raises(KeyboardInterrupt):
            write_sidecar(zoo_copy, "analysis", "m", pa.table({"model_id": ids[2:], "x": [3.0, 4.0]}))
    manifest = read_manifest(zoo_copy)
    if step == "rename":  # the new file is in place, the manifest still lists the old one
        assert not verify_zoo(zoo_copy, check_weights=False).ok
        with pytest.warns(UserWarning, match="analysis/m.parquet .* is not the file zoo.json lists .* set aside"):
            assert stored_sidecar(zoo_copy, manifest, "analysis/m.parquet") is None
    else:
        stored = stored_sidecar(zoo_copy, manifest, "analysis/m.parquet")
        assert len(stored) == (2 if step == "table" else 4)
    # What a producer does next: compute what is not stored, write it. The zoo is whole again.
    stored = stored_sidecar(zoo_copy, manifest, "analysis/m.parquet", warn=False)
    done = set(stored.column("model_id").to_pylist()) if stored is not None else set()
    todo = [i for i in ids if i not in done]
    if todo:
        write_sidecar(zoo_copy, "analysis", "m", pa.table({"model_id": todo, "x": [1.0 + ids.index(i) for i in todo]}))
    assert verify_zoo(zoo_copy, check_weights=False).ok
    side = pq.read_table(zoo_copy / "analysis" / "m.parquet")
    assert dict(zip(side.column("model_id").to_pylist(), side.column("x").to_pylist())) == {
        i: 1.0 + k for k, i in enumerate(ids)}


def test_a_writer_that_holds_the_lock_passes_it(zoo_copy: Path, tmp_path: Path) -> None:
    """zoo analyze / zoo embed hold the zoo's lock for their whole run and hand it to
    write_sidecar, which then does not try to take it a second time."""
    ids = _ids(zoo_copy, 2)
    table = pa.table({"model_id": ids, "x": [1.0, 2.0]})
    with ZooLock(zoo_copy, "zoo analyze") as lock:
        with pytest.raises(ZooLockedError):
            write_sidecar(zoo_copy, "analysis", "m", table)
        assert write_sidecar(zoo_copy, "analysis", "m", table, lock=lock).rows == 2
        other = tmp_path / "other"
        other.mkdir()
        with pytest.raises(RuntimeError, match="not the held lock of"):
            write_sidecar(other, "analysis", "m", table, lock=lock)
    with pytest.raises(RuntimeError, match="released"):
        write_sidecar(zoo_copy, "analysis", "m", table, lock=lock)
    assert verify_zoo(zoo_copy, check_weights=False).ok
