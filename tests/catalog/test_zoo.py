"""catalog.zoo: Zoo.info() and single-model access."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from catalog import open_zoo
from catalog.errors import WeightzooError, ZooFormatError


def test_info_counts_come_from_the_rows(zoo_dir: Path) -> None:
    info = open_zoo(zoo_dir).info()
    # 12 runs x 3 checkpoints; runs 4 and 9 (r % 5 == 4) are diverged: 2 x 3 = 6 rows.
    assert info["counts"] == {"rows": 36, "runs": 12, "architectures": 1,
                              "status": {"ok": 30, "diverged": 6}}
    assert info["columns"]["test_acc"] == "double" and info["size_bytes"] > 0
    (arch,) = info["architectures"].values()
    assert arch == {"family": "mlp", "n_params": 67, "summary": "mlp 4-8-3, relu, 67 params"}
    assert set(info["metrics"]) == {"test_acc", "train_acc", "test_loss"}


def test_info_distinguishes_architectures(multi_arch_dir: Path) -> None:
    summaries = [a["summary"] for a in open_zoo(multi_arch_dir).info()["architectures"].values()]
    assert sorted(summaries) == ["mlp 4-6-3, relu, 51 params", "mlp 4-8-3, relu, 67 params"]


def test_state_dict_and_module_of_one_model(zoo_dir: Path) -> None:
    zoo = open_zoo(zoo_dir)
    model_id = zoo.table.column("model_id")[5].as_py()
    sd = zoo.state_dict(model_id)
    module = zoo.module(model_id)
    for name, value in module.state_dict().items():
        torch.testing.assert_close(value, sd[name])
    with pytest.raises(WeightzooError, match="no model 'nope'"):
        zoo.row("nope")


PART = "models/part-00000.parquet"


def test_a_part_that_is_not_parquet_is_one_error_naming_it(zoo_copy: Path) -> None:
    """`zoo info` printed pyarrow's ArrowInvalid traceback (query, verify, export gave one line)."""
    from zoo_helpers import assert_one_line_error, run_cli

    from catalog.format import read_manifest, sha256_file, write_manifest

    (zoo_copy / PART).write_bytes(b"not parquet" * 40)
    manifest = read_manifest(zoo_copy)  # checksums that match: only the content is wrong
    for f in manifest.files:
        f.sha256, f.bytes = sha256_file(zoo_copy / f.path), (zoo_copy / f.path).stat().st_size
    write_manifest(zoo_copy, manifest)
    with pytest.raises(ZooFormatError, match=f"metadata part {PART} of .* is not a readable Parquet file"):
        _ = open_zoo(zoo_copy).table
    assert_one_line_error(run_cli("info", zoo_copy), PART, "not a readable Parquet file", "zoo verify")


@pytest.mark.parametrize("rows", [[0.0, 1.0], [0.5, 1.0]])
def test_a_weights_row_that_is_not_integer_is_refused_where_weights_are_located(zoo_copy: Path, rows) -> None:
    """verify raised a TypeError; loading and export read row 0 for 0.5."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from zoo_helpers import assert_one_line_error, rewrite_part, run_cli

    from catalog.verify import verify_zoo

    table = pq.read_table(zoo_copy / PART)
    values = pa.array([rows[i % 2] + 2 * (i // 2) for i in range(table.num_rows)], pa.float64())
    rewrite_part(zoo_copy, PART, table.set_column(table.schema.get_field_index("weights_row"), "weights_row", values))
    report = verify_zoo(zoo_copy)
    assert [str(p) for p in report.problems] == [f"{PART}: column 'weights_row' has type double, expected int64"]
    zoo = open_zoo(zoo_copy)
    with pytest.raises(ZooFormatError, match="'weights_row' has type double, expected int64.*zoo verify"):
        zoo.select().stacked()
    with pytest.raises(ZooFormatError, match="'weights_row' has type double, expected int64"):
        zoo.state_dict(table.column("model_id")[0].as_py())
    r = run_cli("export", zoo_copy, "--layout", "state-dicts", "--out", zoo_copy.parent / "e", "-q")
    assert_one_line_error(r, "'weights_row' has type double, expected int64")
    assert not (zoo_copy.parent / "e").exists()


def test_parts_behind_a_models_folder_linking_out_of_the_zoo_are_not_read(zoo_dir, tmp_path):
    """``Zoo.part_paths`` joined ``root / path`` unchecked, so ``zoo info``/``zoo query`` and
    ``select()`` read the Parquet parts of a ``models/`` folder that is a symbolic link to anywhere
    (loading weights, verify and the catalog index already refused such links). Now refused."""
    import shutil

    z = shutil.copytree(zoo_dir, tmp_path / "z")
    shutil.move(z / "models", tmp_path / "elsewhere")
    (z / "models").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(ZooFormatError, match="leads outside the zoo"):
        _ = open_zoo(z).table
    with pytest.raises(ZooFormatError, match="leads outside the zoo"):
        open_zoo(z).select()


def _with_embeddings(root: Path) -> list[str]:
    """An analysis table with a metric column (mse) and an embeddings table of 64-d vectors."""
    import pyarrow as pa

    from catalog.sidecar import write_sidecar

    ids = open_zoo(root).table.column("model_id").to_pylist()
    write_sidecar(root, "analysis", "err", pa.table({"model_id": ids[::2], "mse": [0.5] * len(ids[::2])}))
    vectors = pa.array([[float(i)] * 64 for i in range(len(ids))], type=pa.list_(pa.float32(), 64))
    write_sidecar(root, "embeddings", "big", pa.table({"model_id": ids, "emb_big": vectors}))
    return ids


def test_info_and_len_read_no_embedding_vectors(zoo_copy: Path, monkeypatch) -> None:
    """zoo info and len(zoo) read every sidecar column (zoo.table): 12,000 rows with a 4096-d
    embeddings table took 1 GB. They read the parts' columns they report, the sidecars' schemas,
    keys and metric columns; the vectors are never read."""
    import pyarrow.parquet as pq

    _with_embeddings(zoo_copy)
    reads: list[tuple[str, list[str] | None]] = []
    read_table = pq.read_table

    def recording(source, *args, columns=None, **kwargs):
        reads.append((Path(source).as_posix(), columns))
        return read_table(source, *args, columns=columns, **kwargs)

    monkeypatch.setattr(pq, "read_table", recording)
    zoo = open_zoo(zoo_copy)
    assert len(zoo) == 36
    info = zoo.info()
    assert info["counts"]["rows"] == 36 and info["columns"]["emb_big"] == "fixed_size_list<element: float>[64]"
    assert info["metrics"]["mse"] == {"min": 0.5, "mean": 0.5, "max": 0.5}
    big = [cols for path, cols in reads if path.endswith("embeddings/big.parquet")]
    assert big and all(cols is not None and "emb_big" not in cols for cols in big), big
    assert all(cols is not None for path, cols in reads), reads  # no file read whole


def test_info_columns_and_read_table_agree_with_the_table(zoo_copy: Path) -> None:
    _with_embeddings(zoo_copy)
    zoo = open_zoo(zoo_copy)
    assert zoo.schema == zoo.table.schema
    assert open_zoo(zoo_copy).info()["columns"] == {f.name: str(f.type) for f in zoo.table.schema}
    some = ["mse", "checkpoint", "model_id", "emb_big", "not_a_column"]
    assert zoo.read_table(some).equals(zoo.table.select(["model_id", "checkpoint", "mse", "emb_big"]))
    assert zoo.read_table(["checkpoint"]).column_names == ["checkpoint"]


def test_select_on_a_zoo_with_sidecars_filters_and_loads(zoo_copy: Path) -> None:
    """Zoo.select over a zoo with an embeddings sidecar: a filter on a sidecar column, an order,
    a column subset and a limit select the right rows, and their weights load."""
    ids = _with_embeddings(zoo_copy)
    zoo = open_zoo(zoo_copy)
    sel = zoo.select(where="mse IS NOT NULL AND checkpoint = 2", order_by="model_id",
                     columns=["model_id", "test_acc"], limit=3)
    assert sel.column("model_id") == sorted(i for i in ids[::2] if i.endswith("c2"))[:3]
    assert all(len(batch) == 3 for batch in sel.stacked().values())  # weights load as before
