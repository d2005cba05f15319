"""QueryEngine: SQL and shortcut queries, read-only enforcement, errors, several zoos."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest
from zoo_helpers import tree_hashes

from catalog import QueryEngine, QueryError, open_zoo
from catalog.query import check_statement


def test_select_shortcuts_match_arrow_filter(zoo_dir):
    zoo = open_zoo(zoo_dir)
    sel = zoo.select(where="test_acc > 0.5 AND activation = 'relu'", order_by="test_acc DESC, model_id",
                     limit=4, columns=["model_id", "lr", "test_acc"])
    assert sel.table.column_names == ["model_id", "lr", "test_acc"]
    t = zoo.table
    mask = pc.and_(pc.greater(t["test_acc"], 0.5), pc.equal(t["activation"], "relu"))
    want = sorted(t.filter(mask).to_pylist(), key=lambda r: (-r["test_acc"], r["model_id"]))[:4]
    assert sel.column("model_id") == [r["model_id"] for r in want]
    assert len(sel) == 4


def test_sql_aggregate(zoo_dir):
    zoo = open_zoo(zoo_dir)
    t = zoo.sql("SELECT activation, count(*) AS n FROM models GROUP BY activation ORDER BY activation").table
    assert t.to_pylist() == [{"activation": "relu", "n": 18}, {"activation": "tanh", "n": 18}]


@pytest.mark.parametrize("sql", [
    "UPDATE models SET test_acc = 1.0",
    "DELETE FROM models",
    "INSERT INTO models SELECT * FROM models",
    "DROP TABLE models",
    "CREATE TABLE x AS SELECT 1",
    "ATTACH '{root}/evil.duckdb' AS evil",
    "COPY models TO '{root}/models/part-00000.parquet' (FORMAT parquet)",
    "COPY (SELECT 1 AS a) TO '{root}/zoo.json' (FORMAT csv, HEADER false)",
    "EXPORT DATABASE '{root}/models'",
    "SET enable_external_access = true",
    "INSTALL httpfs",
    "PRAGMA enable_profiling",
    "SELECT 1; DELETE FROM models",
])
def test_writes_are_rejected_and_files_unchanged(zoo_copy, sql):
    before = tree_hashes(zoo_copy)
    zoo = open_zoo(zoo_copy)
    with pytest.raises(QueryError) as e:
        zoo.sql(sql.format(root=zoo_copy))
    msg = str(e.value)
    assert "not allowed" in msg or "statements" in msg
    zoo.close()
    assert tree_hashes(zoo_copy) == before
    assert len(open_zoo(zoo_copy).table) == 36


def test_deeply_nested_sql_runs(zoo_dir):
    """The parse tree of 900 nested calls, read for writing nodes, raised a RecursionError."""
    nested = "abs(" * 900 + "-1" + ")" * 900
    assert open_zoo(zoo_dir).sql(f"SELECT {nested} AS x").table.to_pylist() == [{"x": 1}]
    with pytest.raises(QueryError, match="not allowed"):
        open_zoo(zoo_dir).sql(f"WITH d AS (DELETE FROM models RETURNING *) SELECT {nested} FROM d")


def test_lockdown_holds_even_past_the_statement_check(zoo_copy):
    """Defense in depth: the connection itself cannot touch files or change its settings."""
    import duckdb

    before = tree_hashes(zoo_copy)
    engine = open_zoo(zoo_copy).engine
    target = zoo_copy / "models" / "part-00000.parquet"
    for stmt in [f"COPY models TO '{target}' (FORMAT parquet)",
                 f"COPY models TO '{target}' (FORMAT csv, USE_TMP_FILE false)",
                 f"ATTACH '{zoo_copy}/x.duckdb'",
                 "SET enable_external_access = true",
                 f"SELECT * FROM read_parquet('{target}')"]:
        with pytest.raises(duckdb.Error):
            engine.con.execute(stmt)
    assert tree_hashes(zoo_copy) == before


def test_file_reads_are_blocked(zoo_dir):
    with pytest.raises(QueryError, match="not allowed"):
        open_zoo(zoo_dir).sql(f"SELECT * FROM read_parquet('{zoo_dir}/models/part-00000.parquet')")


def test_unknown_column_lists_columns(zoo_dir):
    zoo = open_zoo(zoo_dir)
    for call in (lambda: zoo.sql("SELECT accuracy FROM models"),
                 lambda: zoo.select(where="accuracy > 0.5"),
                 lambda: zoo.select(order_by="models.accuracy"),
                 lambda: zoo.select(columns=["model_id", "accuracy"])):
        with pytest.raises(QueryError) as e:
            call()
        msg = str(e.value)
        assert "accuracy" in msg and "test_acc" in msg and "model_id" in msg


def test_syntax_error_shows_duckdb_message(zoo_dir):
    with pytest.raises(QueryError, match="syntax error.*SELEC"):
        open_zoo(zoo_dir).sql("SELEC * FROM models")


def test_unknown_table_names_models(zoo_dir):
    with pytest.raises(QueryError, match="`models`"):
        open_zoo(zoo_dir).sql("SELECT * FROM runs")


def test_empty_and_bad_limit(zoo_dir):
    zoo = open_zoo(zoo_dir)
    with pytest.raises(QueryError, match="empty"):
        zoo.sql("  ")
    with pytest.raises(QueryError, match="limit"):
        zoo.select(limit=-1)
    assert len(zoo.select(limit=0)) == 0


def test_check_statement_accepts_selects():
    for sql in ["SELECT 1", "WITH a AS (SELECT 1) SELECT * FROM a", "FROM models", "DESCRIBE models",
                "SELECT 1;"]:
        assert check_statement(sql)


def test_several_zoos_union_with_zoo_column(zoo_dir, multi_arch_dir):
    engine = QueryEngine.over_zoos([open_zoo(zoo_dir), open_zoo(multi_arch_dir)])
    assert engine.columns[0] == "zoo" and "width_note" in engine.columns
    t = engine.execute("SELECT zoo, count(*) AS n, count(width_note) AS w FROM models "
                       "GROUP BY zoo ORDER BY zoo").to_pylist()
    assert t == [{"zoo": "tiny", "n": 36, "w": 0}, {"zoo": "wide", "n": 16, "w": 16}]


def test_same_named_zoos_get_distinct_names(zoo_dir):
    engine = QueryEngine.over_zoos([open_zoo(zoo_dir), open_zoo(zoo_dir)])
    names = engine.execute("SELECT DISTINCT zoo FROM models ORDER BY zoo").column("zoo").to_pylist()
    assert names == ["tiny", "tiny-2"]


def test_shortcuts_over_sql_source(zoo_dir):
    engine = open_zoo(zoo_dir).engine
    sql = engine.build_select(where="n > 17", source="SELECT activation, count(*) AS n FROM models GROUP BY 1")
    assert engine.execute(sql).num_rows == 2


def test_zoo_without_rows(tmp_path):
    from catalog import ZooWriter

    ZooWriter(tmp_path / "empty", "empty", {"name": "empty"}).finish()
    zoo = open_zoo(tmp_path / "empty")
    sel = zoo.select()
    assert len(sel) == 0 and "model_id" in sel.columns and sel.state_dicts() == []
    with pytest.raises(QueryError, match="unknown column 'test_acc'"):
        zoo.select(where="test_acc > 0.5")


# ================================================================================ data-modifying CTEs
WRITING_CTES = [
    "WITH d AS (DELETE FROM models RETURNING *) SELECT * FROM d",
    "WITH u AS (UPDATE models SET test_acc = 1.0 RETURNING *) SELECT * FROM u",
    "WITH i AS (INSERT INTO models SELECT * FROM models RETURNING *) SELECT count(*) FROM i",
    "SELECT * FROM (WITH d AS (DELETE FROM models RETURNING *) SELECT * FROM d) AS q",
    "WITH d AS (DELETE FROM models WHERE checkpoint = 0 RETURNING model_id) "
    "SELECT * FROM models WHERE model_id IN (SELECT model_id FROM d)",
]


def _snapshot(zoo) -> list:
    return zoo.sql("SELECT * FROM models ORDER BY model_id").table.to_pylist()


@pytest.mark.parametrize("sql", WRITING_CTES)
def test_data_modifying_ctes_are_refused_and_change_nothing(zoo_dir, sql):
    zoo = open_zoo(zoo_dir)
    before = _snapshot(zoo)
    assert len(before) == 36
    with pytest.raises(QueryError, match="not allowed.*read-only"):
        zoo.sql(sql)
    assert _snapshot(zoo) == before
    # the engine stays usable, and shortcuts built on a writing source are refused too
    assert len(zoo.select(where="checkpoint = 0")) == 12
    with pytest.raises(QueryError, match="not allowed"):
        zoo.engine.sql(zoo.engine.build_select(where="true", source=sql))
    assert _snapshot(zoo) == before
    zoo.close()


@pytest.mark.parametrize("sql", WRITING_CTES[:2])
def test_data_modifying_ctes_are_refused_by_the_cli(zoo_copy, sql):
    from click.testing import CliRunner

    from zoo_cli.main import cli

    before = tree_hashes(zoo_copy)
    r = CliRunner().invoke(cli, ["query", str(zoo_copy), sql])
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: not allowed") and "read-only" in lines[0]
    assert tree_hashes(zoo_copy) == before


def test_data_modifying_ctes_are_refused_over_several_zoos(zoo_dir, multi_arch_dir):
    engine = QueryEngine.over_zoos([open_zoo(zoo_dir), open_zoo(multi_arch_dir)])
    with pytest.raises(QueryError, match="not allowed"):
        engine.execute(WRITING_CTES[0])
    assert engine.execute("SELECT count(*) AS n FROM models").column("n")[0].as_py() == 52


def test_data_modifying_ctes_are_refused_by_the_persistent_catalog(zoo_dir):
    from catalog.store import LocalCatalog

    cat = LocalCatalog()
    cat.add(zoo_dir)
    engine = cat.engine()
    try:
        with pytest.raises(QueryError, match="not allowed.*read-only"):
            engine.execute(WRITING_CTES[0])
    finally:
        engine.close()
    engine = cat.engine()
    assert engine.execute("SELECT count(*) AS n FROM models").column("n")[0].as_py() == 36
    engine.close()


@pytest.mark.parametrize("sql", WRITING_CTES[:3])
def test_read_only_transaction_holds_even_past_the_statement_check(zoo_dir, sql):
    """The parse-tree check only gives the early, clear error; the read-only transaction every
    query runs in is what refuses the write."""
    zoo = open_zoo(zoo_dir)
    before = _snapshot(zoo)
    with pytest.raises(QueryError, match="not allowed.*read-only"):
        zoo.engine._run(sql)
    assert _snapshot(zoo) == before


# ================================================================================ in place (compact=False)
# `zoo query` makes a one-query engine: ``models`` is a view over the Parquet parts, read in
# place through Arrow datasets registered before the lock-down (no copy).

def _with_sidecar(root):
    import pyarrow as pa

    from catalog.sidecar import write_sidecar

    ids = sorted(open_zoo(root).table.column("model_id").to_pylist())[:5]
    write_sidecar(root, "analysis", "hessian", pa.table({"model_id": ids, "trace": [1.0, 2.0, 3.0, 4.0, 5.0]}))
    return root


def test_in_place_engine_answers_like_the_copy(zoo_copy, multi_arch_dir):
    zoos = [open_zoo(_with_sidecar(zoo_copy)), open_zoo(multi_arch_dir)]
    copy, in_place = QueryEngine.over_zoos(zoos), QueryEngine.over_zoos(zoos, compact=False)
    assert in_place.con.execute("SELECT table_type FROM information_schema.tables WHERE "
                                "table_name = 'models'").fetchone() == ("VIEW",)
    assert in_place.columns == copy.columns and "trace" in copy.columns
    for sql in ["SELECT * FROM models ORDER BY zoo, model_id",
                "SELECT zoo, arch_id, count(*) AS n, count(trace) AS t, avg(test_acc) AS a "
                "FROM models GROUP BY ALL ORDER BY ALL",
                "SELECT model_id, trace FROM models WHERE trace > 2 ORDER BY trace"]:
        assert in_place.execute(sql).equals(copy.execute(sql)), sql
    a = in_place.select(where="checkpoint = 1", order_by="zoo, model_id").state_dicts()
    b = copy.select(where="checkpoint = 1", order_by="zoo, model_id").state_dicts()
    assert len(a) == len(b) == 20
    assert all(x.keys() == y.keys() and all(x[k].equal(y[k]) for k in x) for x, y in zip(a, b))


def test_in_place_engine_is_locked_down(zoo_copy):
    import duckdb

    before = tree_hashes(zoo_copy)
    engine = QueryEngine.over_zoos([open_zoo(zoo_copy)], compact=False)
    target = zoo_copy / "models" / "part-00000.parquet"
    for stmt in [f"COPY models TO '{target}' (FORMAT parquet)",
                 f"COPY models TO '{target}' (FORMAT csv, USE_TMP_FILE false)",
                 f"ATTACH '{zoo_copy}/x.duckdb'",
                 "SET enable_external_access = true",
                 f"SELECT * FROM read_parquet('{target}')"]:
        with pytest.raises(duckdb.Error):
            engine.con.execute(stmt)
    for sql in WRITING_CTES[:3] + ["DROP VIEW models", "CREATE OR REPLACE VIEW models AS SELECT 1"]:
        with pytest.raises(QueryError, match="not allowed"):
            engine._run(sql)  # past the statement check: DuckDB itself refuses
        with pytest.raises(QueryError, match="not allowed|statements"):
            engine.execute(sql)
    assert engine.execute("SELECT count(*) AS n FROM models").column("n")[0].as_py() == 36
    assert tree_hashes(zoo_copy) == before


def _scramble_data_pages(path):
    """Garble every byte between the leading magic and the footer of a Parquet file: its
    schema and statistics still read, any of its data does not."""
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")
    for i in range(4, len(data) - 8 - footer):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def test_in_place_queries_skip_parts_of_other_architectures(multi_arch_dir, tmp_path):
    """One part is one population, so one arch_id: a filter on arch_id never reads the data of
    another architecture's part (its row-group statistics rule it out)."""
    import shutil

    root = tmp_path / "wide"
    shutil.copytree(multi_arch_dir, root)
    parts = {f.arch_id: f.path for f in open_zoo(root).manifest.part_files()}
    assert len(parts) == 2
    keep, garbled = sorted(parts)
    _scramble_data_pages(root / parts[garbled])
    engine = QueryEngine.over_zoos([open_zoo(root)], compact=False)
    sel = engine.select(where=f"arch_id = '{keep}' AND test_acc > 0", columns=["model_id", "arch_id"])
    assert len(sel) == 8 and set(sel.column("arch_id")) == {keep}
    with pytest.raises(QueryError, match="cannot read the zoo's Parquet metadata.*zoo verify"):
        engine.execute("SELECT count(*) FROM models WHERE test_acc > 0")


def test_in_place_falls_back_to_copying_when_parts_do_not_unify(tmp_path):
    from zoo_helpers import mlp_spec, random_weights

    from catalog import ZooWriter

    w = ZooWriter(tmp_path / "z", "mixed", {"name": "mixed"})
    arch = w.add_architecture(mlp_spec())
    for part, note in enumerate(["text", 7]):  # a column that is a string here, an integer there
        rows = [{"model_id": f"m{part}{i}", "run_id": f"r{part}{i}", "checkpoint": 0,
                 "status": "ok", "note": note} for i in range(2)]
        w.write_part(arch, random_weights(mlp_spec(), 2, part), rows)
    w.finish(card="# mixed\n")  # (the card would need the rows as one Arrow table)
    engine = QueryEngine.over_zoos([open_zoo(tmp_path / "z")], compact=False)
    assert engine.con.execute("SELECT table_type FROM information_schema.tables WHERE "
                              "table_name = 'models'").fetchone() == ("BASE TABLE",)
    notes = engine.execute("SELECT note FROM models ORDER BY model_id").column("note").to_pylist()
    assert notes == ["text", "text", "7", "7"]


# ================================================================================ several zoos' columns
def test_a_zoos_own_zoo_column_is_source_zoo_with_others(tmp_path):
    from zoo_helpers import write_zoo

    own = write_zoo(tmp_path / "own", "own", range(2), checkpoints=(0,), extra={"zoo": "cifar-zoo"})
    plain = write_zoo(tmp_path / "plain", "plain", range(2), checkpoints=(0,))
    # alone, the zoo's own column keeps its name and values
    assert set(open_zoo(own).engine.execute("SELECT DISTINCT zoo FROM models").column("zoo").to_pylist()) == {
        "cifar-zoo"}
    for compact in (True, False):
        engine = QueryEngine.over_zoos([open_zoo(own), open_zoo(plain)], compact=compact)
        t = engine.execute("SELECT zoo, source_zoo, count(*) AS n FROM models GROUP BY ALL ORDER BY zoo")
        assert t.to_pylist() == [{"zoo": "own", "source_zoo": "cifar-zoo", "n": 2},
                                 {"zoo": "plain", "source_zoo": None, "n": 2}]
        sel = engine.sql("SELECT zoo, model_id FROM models WHERE source_zoo = 'cifar-zoo'")
        assert len(sel.stacked()["layers.0.bias"]) == 2  # rows still find their weights by `zoo`


def test_zoo_and_source_zoo_columns_together_are_refused(tmp_path):
    from zoo_helpers import write_zoo

    both = write_zoo(tmp_path / "both", "both", range(2), checkpoints=(0,), extra={"zoo": "a", "source_zoo": "b"})
    plain = write_zoo(tmp_path / "plain", "plain", range(2), checkpoints=(0,))
    with pytest.raises(QueryError, match="'zoo' and 'source_zoo'.*query it on its own"):
        QueryEngine.over_zoos([open_zoo(both), open_zoo(plain)])


@pytest.mark.parametrize("compact", [True, False])
def test_a_column_of_clashing_types_is_refused_with_names(tmp_path, compact):
    from zoo_helpers import write_zoo

    lists = write_zoo(tmp_path / "lists", "lists", range(2), checkpoints=(0,), extra={"widths": [16]})
    ints = write_zoo(tmp_path / "ints", "ints", range(2), checkpoints=(0,), extra={"widths": 16})
    with pytest.raises(QueryError, match=r"column 'widths' is BIGINT\[\] in zoo 'lists' but BIGINT in zoo "
                                         r"'ints'.*query the zoos separately, or rename or cast"):
        QueryEngine.over_zoos([open_zoo(lists), open_zoo(ints)], compact=compact)
    # scalars of different types still combine (int + double -> double)
    floats = write_zoo(tmp_path / "floats", "floats", range(2), checkpoints=(0,), extra={"widths": 16.5})
    engine = QueryEngine.over_zoos([open_zoo(ints), open_zoo(floats)], compact=compact)
    assert sorted(engine.execute("SELECT widths FROM models").column("widths").to_pylist()) == [16, 16, 16.5, 16.5]


def test_shortcuts_over_sql_name_the_sql_result_columns(zoo_dir):
    from click.testing import CliRunner

    from zoo_cli.main import cli

    engine = open_zoo(zoo_dir).engine
    source = "SELECT model_id, test_acc FROM models"
    want = (r"unknown column\(s\) 'lr' in --where/--order-by/--columns: "
            r".*SQL's result, whose columns are: model_id, test_acc")
    for kwargs in ({"where": "lr = 0.1"}, {"order_by": "lr DESC"}, {"columns": ["lr"]}):
        with pytest.raises(QueryError, match=want):
            engine.build_select(**kwargs, source=source)
    with pytest.raises(QueryError, match="unknown column 'tst'; the columns of `models` are: model_id"):
        engine.build_select(where="test_acc > 0", source="SELECT tst FROM models")  # the SQL's own error
    r = CliRunner().invoke(cli, ["query", str(zoo_dir), source, "--where", "lr = 0.1"])
    assert r.exit_code != 0 and "SQL's result, whose columns are: model_id, test_acc" in r.output
    assert "Traceback" not in r.output
