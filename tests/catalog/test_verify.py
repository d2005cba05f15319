"""verify_zoo: clean zoos pass; corrupt files, rows, schemas and references are named."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from zoo_helpers import flip_weight_byte, rewrite_part

from catalog import open_zoo, verify_zoo
from catalog.errors import ZooFormatError

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


# ================================================================================ malformed manifests
def _edit_manifest(root, edit) -> None:
    import json

    path = root / "zoo.json"
    d = json.loads(path.read_text())
    edit(d)
    path.write_text(json.dumps(d, indent=2))


def _cli(*args):
    from click.testing import CliRunner

    from zoo_cli.main import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def _one_line_error(result, *fragments: str) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.exception is None or \
        isinstance(result.exception, SystemExit), result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _string_arch(d):
    d["architectures"][next(iter(d["architectures"]))] = "mlp"


def _string_counts(d):
    d["counts"] = "36"


def _bad_kind(d):
    d["files"][0]["kind"] = "table"


def _traversal_arch_id(d):
    d["files"][0]["arch_id"] = "../../../../victim/weights/x"


def _part_listed_twice(d):
    d["files"].append(next(f for f in d["files"] if f["kind"] == "part"))


@pytest.mark.parametrize("edit, fragment", [
    (_string_arch, "architectures["), (_string_counts, "counts must be an object"),
    (_bad_kind, "files[0].kind"), (_traversal_arch_id, "files[0].arch_id"),
    (_part_listed_twice, "is listed already"),
])
@pytest.mark.parametrize("command", ["info", "verify", "query"])
def test_malformed_manifest_is_one_clear_line(zoo_copy, edit, fragment, command):
    _edit_manifest(zoo_copy, edit)
    args = [command, zoo_copy] + (["SELECT 1"] if command == "query" else [])
    line = _one_line_error(_cli(*args), str(zoo_copy / "zoo.json"), fragment)
    assert "zoo build" in line and "zoo pull" in line  # what to do
    with pytest.raises(ZooFormatError, match=re.escape(fragment)):
        verify_zoo(zoo_copy)


def test_manifest_without_files_fails_verify(zoo_copy):
    _edit_manifest(zoo_copy, lambda d: d.pop("files"))
    r = verify_zoo(zoo_copy)
    assert not r.ok
    text = "\n".join(messages(r))
    assert "zoo.json: counts.rows is 36, but the parts listed in the manifest hold 0 rows" in text
    assert "counts.runs is 12, but" in text
    result = _cli("verify", zoo_copy)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "BAD zoo.json: counts.rows is 36" in result.output
    assert "problem(s)" in result.output and "OK" not in result.output


@pytest.mark.parametrize("key, value", [("rows", 35), ("runs", 13), ("architectures", 2),
                                        ("status_ok", 1), ("status_diverged", 0)])
def test_every_count_mismatch_is_a_problem(zoo_copy, key, value):
    _edit_manifest(zoo_copy, lambda d: d["counts"].__setitem__(key, value))
    r = verify_zoo(zoo_copy, check_weights=False)
    assert [p.path for p in r.problems] == ["zoo.json"], messages(r)
    assert f"counts.{key} is {value}" in messages(r)[0]


def test_a_status_with_rows_but_no_count_is_a_problem(zoo_copy):
    _edit_manifest(zoo_copy, lambda d: d["counts"].pop("status_diverged"))
    r = verify_zoo(zoo_copy, check_weights=False)
    assert messages(r) == ["zoo.json: counts.status_diverged is missing, but the parts hold 6 "
                           "rows with status 'diverged'"]


def test_part_entry_rows_must_add_up(zoo_copy):
    def edit(d):
        d["files"][1]["rows"] += 1
        d["counts"]["rows"] += 1
    _edit_manifest(zoo_copy, edit)
    text = "\n".join(messages(verify_zoo(zoo_copy, check_weights=False)))
    assert "the manifest says 19" in text and "counts.rows is 37" in text


def test_repair_hint_says_how_to_repair(zoo_copy):
    (zoo_copy / "models" / "part-00001.parquet").unlink()
    line = _cli("verify", zoo_copy).output.strip().splitlines()[-1]
    assert line.startswith("error: ") and "`zoo build` again to retrain and rewrite missing or corrupt" in line
    assert "resumes and rewrites what is missing" not in line
    _edit_manifest(zoo_copy, lambda d: d.__setitem__("source", {"repo_id": "org/name", "revision": "main",
                                                                "commit": "a" * 40, "pulled_where": None}))
    r = verify_zoo(zoo_copy)
    assert "zoo pull org/name --revision " + "a" * 40 in r.repair_hint
    line = _cli("verify", zoo_copy).output.strip().splitlines()[-1]
    assert "zoo pull org/name" in line
