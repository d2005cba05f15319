"""The `zoo query`, `zoo verify` and `zoo catalog` commands, through click's CliRunner."""

from __future__ import annotations

import csv
import io
import json

import pyarrow.parquet as pq
import pytest
from zoo_helpers import assert_one_line_error, flip_weight_byte, run_cli, tree_hashes


def test_query_sql_csv(zoo_dir):
    r = run_cli("query", zoo_dir, "SELECT model_id, test_acc FROM models WHERE checkpoint = 2 ORDER BY model_id",
            "--format", "csv")
    assert r.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert len(rows) == 12 and rows[0]["model_id"] == "tiny-h8-r000-c2"


def test_query_shortcuts_table(zoo_dir):
    r = run_cli("query", zoo_dir, "--where", "test_acc > 0.8 AND activation = 'relu'", "--order-by",
            "test_acc DESC, model_id", "--limit", "3", "--columns", "model_id,lr,test_acc", "--format", "table")
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert lines[0].split() == ["model_id", "lr", "test_acc"] and lines[-1] == "(3 rows)"


def test_query_json_and_parquet_out(zoo_dir, tmp_path):
    r = run_cli("query", zoo_dir, "--limit", "2", "--columns", "model_id,lr", "--format", "json")
    assert [set(x) for x in json.loads(r.output)] == [{"model_id", "lr"}] * 2
    out = tmp_path / "res.parquet"
    r = run_cli("query", zoo_dir, "SELECT * FROM models WHERE lr = 0.1", "--out", out)
    assert r.exit_code == 0 and pq.read_table(out).num_rows == 12
    r = run_cli("query", zoo_dir, "--limit", "1", "--format", "parquet")
    assert r.exit_code == 1 and "--out" in r.output


def test_query_errors_are_one_line(zoo_dir):
    r = run_cli("query", zoo_dir, "SELECT nope FROM models")
    assert r.exit_code == 1
    assert r.output.startswith("error: unknown column 'nope'") and "test_acc" in r.output
    r = run_cli("query", zoo_dir, "SELEC 1")
    assert r.exit_code == 1 and "syntax error" in r.output
    r = run_cli("query", zoo_dir / "nothing-here")
    assert r.exit_code == 1 and "no zoo at" in r.output
    r = run_cli("query", "SELECT 1")
    assert r.exit_code == 1 and "name the zoo directory" in r.output


@pytest.mark.parametrize("out, words", [
    ("{zoo}/rows.csv", ["lies inside the zoo at", "choose a path outside it"]),
    ("{tmp}/a-file/rows.csv", ["a-file is a file, not a directory", "choose another path"]),
])
def test_query_checks_out_before_it_runs(zoo_copy, tmp_path, monkeypatch, out, words):
    from catalog.query import QueryEngine

    ran, real = [], QueryEngine.execute

    def recording(self, *args, **kwargs):
        ran.append(args)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(QueryEngine, "execute", recording)
    (tmp_path / "a-file").write_text("x")
    before = tree_hashes(zoo_copy)
    out = out.format(zoo=zoo_copy, tmp=tmp_path)
    assert_one_line_error(run_cli("query", zoo_copy, "SELECT model_id FROM models", "--out", out), *words)
    assert ran == [] and tree_hashes(zoo_copy) == before  # refused before the query ran


@pytest.mark.parametrize("sql", ["UPDATE models SET lr = 1", "DELETE FROM models",
                                 "COPY models TO '{root}/models/part-00000.parquet'", "ATTACH '{root}/x.db'"])
def test_query_cannot_write(zoo_copy, sql):
    before = tree_hashes(zoo_copy)
    r = run_cli("query", zoo_copy, sql.format(root=zoo_copy))
    assert r.exit_code == 1 and "not allowed" in r.output and "read-only" in r.output
    assert tree_hashes(zoo_copy) == before


def test_query_several_zoos(zoo_dir, multi_arch_dir):
    r = run_cli("query", zoo_dir, multi_arch_dir, "SELECT zoo, count(*) AS n, max(width_note) AS w FROM models "
            "GROUP BY zoo ORDER BY zoo", "--format", "csv")
    assert r.exit_code == 0
    assert list(csv.DictReader(io.StringIO(r.output))) == [
        {"zoo": "tiny", "n": "36", "w": ""}, {"zoo": "wide", "n": "16", "w": "two widths"}]


def test_catalog_commands(zoo_dir, multi_arch_dir):
    assert "empty" in run_cli("catalog", "list").output
    assert run_cli("catalog", "add", zoo_dir).exit_code == 0
    assert run_cli("catalog", "add", multi_arch_dir, "--name", "w").exit_code == 0
    listing = run_cli("catalog", "list").output
    assert "tiny" in listing and "w " in listing and "36 rows" in listing
    r = run_cli("query", "--catalog", "SELECT zoo, count(*) AS n FROM models GROUP BY zoo ORDER BY zoo",
                "--format", "csv")
    assert r.output.splitlines()[1:] == ['"tiny",36', '"w",16']
    r = run_cli("query", "--catalog", "--where", "zoo = 'w'", "--columns", "zoo", "--format", "csv")
    assert len(r.output.splitlines()) == 17
    assert run_cli("catalog", "remove", "w").exit_code == 0
    r = run_cli("catalog", "remove", "w")
    assert r.exit_code == 1 and "no zoo named 'w'" in r.output
    r = run_cli("query", "--catalog", zoo_dir, "SELECT 1")
    assert r.exit_code == 1 and "only the SQL" in r.output


def test_verify_command(zoo_copy):
    r = run_cli("verify", zoo_copy)
    assert r.exit_code == 0 and "OK" in r.output
    shard = pq.read_table(zoo_copy / "models/part-00001.parquet")["weights_shard"][0].as_py()
    flip_weight_byte(zoo_copy / shard, "layers.1.bias", 0)
    r = run_cli("verify", zoo_copy)
    assert r.exit_code == 1
    assert f"BAD {shard}: sha256" in r.output and f"BAD {shard} [model_id=" in r.output
    assert "error: 2 problem(s)" in r.output


@pytest.mark.parametrize("command", [["info"], ["verify"], ["query", "SELECT 1"]])
def test_a_deeply_nested_manifest_is_one_error_line(zoo_copy, command):
    """zoo.json as [[[[...]]]]: every command printed a RecursionError traceback."""
    (zoo_copy / "zoo.json").write_text("[" * 200_000 + "]" * 200_000)
    assert_one_line_error(run_cli(command[0], zoo_copy, *command[1:]), "zoo.json is not valid JSON", "levels deep")


def test_sql_longer_than_a_file_name_is_sql(zoo_dir):
    long_sql = "SELECT model_id FROM models WHERE " + " OR ".join(f"model_id = 'm{i:04d}'" for i in range(30))
    assert len(long_sql) > 255
    r = run_cli("query", zoo_dir, long_sql, "--format", "csv")
    assert r.exit_code == 0 and r.output.strip() == '"model_id"'  # the CSV header of no rows


def test_every_command_is_listed_with_its_module() -> None:
    # main.COMMAND_MODULES (what lets a command import only its own module) names every command
    # of every module, each in the module that defines it.
    import importlib
    import pkgutil

    import zoo_cli
    from zoo_cli.main import COMMAND_MODULES

    defined = {}
    for info in pkgutil.iter_modules(zoo_cli.__path__):
        module = importlib.import_module(f"zoo_cli.{info.name}")
        for command in getattr(module, "COMMANDS", ()):
            defined[command.name] = info.name
    assert defined == COMMAND_MODULES


def test_help_lists_every_command_as_click_does_without_importing_them() -> None:
    # `zoo --help` writes its command list from main.COMMAND_INDEX; it must read as click's own listing
    # (which imports every command module to ask each for its summary), at any terminal width.
    import os
    import subprocess
    import sys

    import click

    from zoo_cli.main import COMMAND_INDEX, cli

    for width in (60, 80, 200):
        ctx = click.Context(cli, terminal_width=width)
        ours, clicks = ctx.make_formatter(), ctx.make_formatter()
        cli.format_commands(ctx, ours)
        click.Group.format_commands(cli, ctx, clicks)
        assert ours.getvalue() == clicks.getvalue()
    for name, (_, summary) in COMMAND_INDEX.items():
        assert cli.get_command(click.Context(cli), name).get_short_help_str(limit=10**6) == summary, name
    script = ("import sys\nfrom zoo_cli.main import cli\ntry:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n"
              "print('LOADED', sorted(m for m in sys.modules if m.endswith('_cmds') or m == 'torch'))\n")
    out = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", script], capture_output=True,
                         text=True, check=True, env=os.environ)
    assert "LOADED []" in out.stdout and "train-ranker" in out.stdout and not out.stderr, out.stdout + out.stderr


def test_command_summaries_read_whole_with_every_supported_click() -> None:
    # click before 8.5.1 ends a command's short help at the first word ending in "." (its
    # make_default_short_help), so `zoo --help` cut "(GROUP/NAME, e.g. analysis/cka)" after "e.g.":
    # a summary keeps its only full stop at the end, whichever click is installed.
    from zoo_cli.main import COMMAND_INDEX

    for name, (_, summary) in COMMAND_INDEX.items():
        early = [w for w in summary.split()[:-1] if w.endswith(".")]
        assert not early, f"{name}: {early} would end the summary early in click < 8.5.1"


def test_query_and_info_start_without_torch(zoo_dir, tmp_path) -> None:
    # The metadata commands import DuckDB and pyarrow, not torch (about a second of start-up).
    import os
    import subprocess
    import sys

    script = ("import sys\nfrom zoo_cli.main import cli\n"
              "for args in (['query', sys.argv[1], 'SELECT count(*) FROM models'], ['info', sys.argv[1]]):\n"
              "    try:\n        cli(args)\n    except SystemExit as e:\n        assert e.code == 0, e.code\n"
              "print('TORCH', 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", script, str(zoo_dir)], capture_output=True, text=True, check=True,
                         env={**os.environ, "WEIGHTZOO_HOME": str(tmp_path)})
    assert "TORCH False" in out.stdout, out.stdout + out.stderr
