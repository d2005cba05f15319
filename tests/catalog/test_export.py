"""Rendering query results: text table, CSV, JSON; choosing the format."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from catalog import QueryError
from catalog.export import check_result_output, format_for, render_csv, render_json, render_table, write_result


def test_format_choice(tmp_path):
    assert format_for(None, None, True) == "table"
    assert format_for(None, None, False) == "csv"
    assert format_for(tmp_path / "x.json", None, False) == "json"
    assert format_for(tmp_path / "x.parquet", "csv", False) == "csv"
    with pytest.raises(QueryError, match="formats"):
        format_for(None, "xml", True)


def test_unknown_out_extension_is_refused_not_written_as_csv(tmp_path, zoo_dir):
    assert format_for(tmp_path / "x.pq", None, False) == "parquet"
    with pytest.raises(QueryError, match=r"^cannot tell the format of out='.*r\.xlsx' \(--out\) from its extension "
                                         r"\.xlsx; .*, or pass fmt= \(--format\) csv\|json\|parquet$"):
        format_for(tmp_path / "r.xlsx", None, False)
    assert format_for(tmp_path / "r.xlsx", "csv", False) == "csv"  # an explicit format wins
    from click.testing import CliRunner

    from zoo_cli.main import cli

    r = CliRunner().invoke(cli, ["query", str(zoo_dir), "SELECT 1 AS one FROM models LIMIT 1",
                                 "--out", str(tmp_path / "r.xlsx")])
    assert r.exit_code == 1 and "Traceback" not in r.output and "extension .xlsx" in r.output
    assert not (tmp_path / "r.xlsx").exists()


def test_table_elides_long_results():
    t = pa.table({"i": list(range(100)), "s": [f"row{i}" for i in range(100)]})
    text = render_table(t, max_rows=10)
    lines = text.splitlines()
    assert len(lines) == 2 + 11 + 1 and "..." in lines[7] and "100 rows, 10 shown" in lines[-1]
    assert lines[2].split() == ["0", "row0"] and lines[-2].split() == ["99", "row99"]


def test_json_nulls_and_nan():
    t = pa.table({"a": [1.5, float("nan"), None], "b": ["x", None, "z"]})
    assert json.loads(render_json(t)) == [{"a": 1.5, "b": "x"}, {"a": None, "b": None}, {"a": None, "b": "z"}]
    assert json.loads(render_json(t.slice(0, 0))) == []


def test_parquet_needs_a_file():
    with pytest.raises(QueryError, match=r"^fmt='parquet' \(--format parquet\) writes a binary file; give it a "
                                         r"path with out= \(--out\)$"):
        write_result(pa.table({"a": [1]}), "parquet", None)


def test_write_result_never_writes_inside_a_zoo(zoo_copy, tmp_path):
    from catalog.paths import OutputPathError

    with pytest.raises(OutputPathError, match=r"^out='.*rows\.csv' \(--out\) lies inside the zoo"):
        write_result(pa.table({"a": [1]}), "csv", zoo_copy / "rows.csv")
    with pytest.raises(OutputPathError, match=r"^out='.*rows\.csv' \(--out\) lies inside the zoo"):
        check_result_output(zoo_copy / "rows.csv", None, False)
    assert not (zoo_copy / "rows.csv").exists()
    write_result(pa.table({"a": [1]}), "csv", tmp_path / "rows.csv")
    assert (tmp_path / "rows.csv").read_text().splitlines() == ['"a"', "1"]


def test_csv_writes_nested_values_as_json():
    t = pa.table({"hidden": [[16, 16], None], "n": [1, 2]})
    assert render_csv(t).splitlines() == ['"hidden","n"', '"[16, 16]",1', ',2']


def test_a_file_holds_every_row_at_full_precision_or_is_refused(tmp_path, zoo_dir):
    """`zoo query ... --out all.txt` (and `--format table --out x.csv`) wrote the terminal table:
    50 of the rows, values rounded to 6 digits, while it said it wrote them all. The table is for
    the terminal only; a file is .csv, .json or .parquet, and the error says so."""
    for out, fmt in ((tmp_path / "all.txt", None), (tmp_path / "x.csv", "table")):
        with pytest.raises(QueryError, match=r"\.csv.*\.json.*\.parquet") as e:
            format_for(out, fmt, False)
        assert ("fmt='table' (--format table)" in str(e.value)) == (fmt == "table")
        assert str(e.value).endswith("or pass fmt= (--format) csv|json|parquet")
    with pytest.raises(QueryError,
                       match=r"^fmt='table' \(--format table\) is the terminal's view .* out \(--out\) gets"):
        write_result(pa.table({"a": [1]}), "table", tmp_path / "x.csv")
    assert format_for(tmp_path / "all.txt", "csv", False) == "csv"  # an explicit file format still wins
    from zoo_helpers import run_cli

    sql = "SELECT i, i / 3 AS third FROM range(60) t(i)"
    for args in (["--out", tmp_path / "all.txt"], ["--format", "table", "--out", tmp_path / "x.csv"]):
        r = run_cli("query", zoo_dir, sql, *args)
        assert r.exit_code == 1 and r.output.startswith("error: ") and ".csv" in r.output, r.output
    assert not (tmp_path / "all.txt").exists() and not (tmp_path / "x.csv").exists()
    r = run_cli("query", zoo_dir, sql, "--out", tmp_path / "all.csv")
    assert r.exit_code == 0, r.output
    lines = (tmp_path / "all.csv").read_text().splitlines()
    assert len(lines) == 61 and lines[2] == "1,0.3333333333333333"

