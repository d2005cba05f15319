"""verify_zoo: clean zoos pass; corrupt files, rows, schemas and references are named."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from catalog_helpers import flip_weight_byte, rewrite_part

from catalog import open_zoo, verify_zoo

PART = "models/part-00000.parquet"


def messages(report):
    return [str(p) for p in report.problems]


def test_clean_zoo(zoo_dir):
    r = verify_zoo(zoo_dir)
    assert r.ok, messages(r)
    assert r.rows_checked == 36 and r.weights_checked == 36 and r.files_checked == 4
    assert open_zoo(zoo_dir).verify(check_weights=False).ok


def test_flipped_weight_names_file_and_row(zoo_copy):
    table = pq.read_table(zoo_copy / PART)
    shard = table["weights_shard"][0].as_py()
    flip_weight_byte(zoo_copy / shard, "layers.0.bias", 2)
    r = verify_zoo(zoo_copy)
    assert not r.ok
    text = "\n".join(messages(r))
    assert f"{shard}: sha256" in text  # the file
    bad_id = table["model_id"][2].as_py()
    assert f"model_id={bad_id}" in text and "row 2" in text  # the row
    assert sum("do not match the row's sha256" in m for m in messages(r)) == 1


def test_changed_row_checksum(zoo_copy):
    table = pq.read_table(zoo_copy / PART)
    shas = table["sha256"].to_pylist()
    shas[5] = "0" * 64
    rewrite_part(zoo_copy, PART, table.set_column(table.schema.get_field_index("sha256"), "sha256", pa.array(shas)))
    r = verify_zoo(zoo_copy)
    assert [p.model_id for p in r.problems] == [table["model_id"][5].as_py()]


def test_row_shard_consistency(zoo_copy):
    table = pq.read_table(zoo_copy / PART)
    rows = table["weights_row"].to_pylist()
    rows[0], rows[1] = 999, 2  # out of range, and a row used twice
    ids = table["model_id"].to_pylist()
    ids[3] = ids[4]  # duplicate model_id
    t = table.set_column(table.schema.get_field_index("weights_row"), "weights_row", pa.array(rows))
    t = t.set_column(t.schema.get_field_index("model_id"), "model_id", pa.array(ids))
    rewrite_part(zoo_copy, PART, t)
    text = "\n".join(messages(verify_zoo(zoo_copy)))
    assert "weights_row 999 is outside" in text
    assert "weights_row 2 of" in text and "used by another row" in text
    assert f"model_id={ids[4]}]: model_id appears in 2 rows" in text


def test_schema_problems(zoo_copy):
    table = pq.read_table(zoo_copy / PART)
    t = table.drop_columns(["sha256"])
    t = t.set_column(t.schema.get_field_index("checkpoint"), "checkpoint",
                     pc.cast(t["checkpoint"], pa.string()))
    rewrite_part(zoo_copy, PART, t)
    text = "\n".join(messages(verify_zoo(zoo_copy)))
    assert "lacks the core column 'sha256'" in text
    assert "column 'checkpoint' has type string, expected int64" in text


def test_missing_and_stray_files(zoo_copy):
    (zoo_copy / "models" / "part-00001.parquet").unlink()
    (zoo_copy / "weights" / "stray.safetensors").write_bytes(b"x")
    (zoo_copy / "models" / ".tmp-abc.parquet").write_bytes(b"x")
    (zoo_copy / "stats").mkdir()
    (zoo_copy / "stats" / "norm-x.safetensors").write_bytes(b"cache")
    r = verify_zoo(zoo_copy)
    assert messages(r) == ["models/part-00001.parquet: missing (listed in the manifest); re-pull or rebuild the zoo"]
    warned = "\n".join(str(w) for w in r.warnings)
    assert "weights/stray.safetensors" in warned and ".tmp-abc" in warned and "stats" not in warned
    assert "rows are used by no metadata row" in warned  # the shard of the missing part


def test_truncated_shard(zoo_copy):
    shard = pq.read_table(zoo_copy / PART)["weights_shard"][0].as_py()
    data = (zoo_copy / shard).read_bytes()
    (zoo_copy / shard).write_bytes(data[:-40])
    text = "\n".join(messages(verify_zoo(zoo_copy)))
    assert shard in text and "bytes" in text
