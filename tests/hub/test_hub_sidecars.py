"""Sidecar tables travel with the zoo: push -> pull gives the same bytes; a partial pull keeps
the sidecar rows of the pulled models, and --where can filter on sidecar columns."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalog import open_zoo, verify_zoo
from catalog.sidecar import write_sidecar
from hub import pull_zoo, push_zoo

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")


def _with_sidecars(zoo: Path) -> list[str]:
    ids = sorted(open_zoo(zoo).table.column("model_id").to_pylist())
    # score = row position: the --where below keeps exactly the models with position >= 8.
    write_sidecar(zoo, "analysis", "metrics", pa.table({"model_id": ids, "score": [float(i) for i in range(len(ids))]}))
    vectors = pa.array([[float(i), 1.0] for i in range(len(ids))], type=pa.list_(pa.float32(), 2))
    write_sidecar(zoo, "embeddings", "behavior", pa.table({"model_id": ids, "emb": vectors}))
    return ids


def test_push_then_full_pull_carries_the_sidecars_byte_for_byte(hub, zoo_copy: Path, repo_id: str,
                                                                tmp_path: Path) -> None:
    _with_sidecars(zoo_copy)
    push_zoo(zoo_copy, repo_id, progress=False)
    out = tmp_path / "pulled"
    pull_zoo(repo_id, out, progress=False)
    for rel in ("analysis/metrics.parquet", "embeddings/behavior.parquet"):
        assert (out / rel).read_bytes() == (zoo_copy / rel).read_bytes()
    assert verify_zoo(out).ok
    assert open_zoo(out).table.column("score").to_pylist() == open_zoo(zoo_copy).table.column("score").to_pylist()


def test_partial_pull_filters_on_and_keeps_sidecar_rows(hub, zoo_copy: Path, repo_id: str,
                                                        tmp_path: Path) -> None:
    ids = _with_sidecars(zoo_copy)
    push_zoo(zoo_copy, repo_id, progress=False)
    out = tmp_path / "part"
    pull_zoo(repo_id, out, where="score >= 8", progress=False)
    kept = sorted(open_zoo(out).table.column("model_id").to_pylist())
    assert kept == ids[8:]
    for rel in ("analysis/metrics.parquet", "embeddings/behavior.parquet"):
        assert sorted(pq.read_table(out / rel).column("model_id").to_pylist()) == ids[8:]
    report = verify_zoo(out)
    assert report.ok, report.summary()


def test_partial_pull_keeps_a_sidecar_none_of_whose_rows_is_pulled(hub, zoo_copy: Path, repo_id: str,
                                                                   tmp_path: Path) -> None:
    """The pulled rows have no value in analysis/half: the table was dropped with its column, so
    the --where that chose them failed on the pulled zoo (unknown column 'half'). It stays, empty,
    with its schema: the same --where selects the same rows, and verify and query accept it."""
    from catalog import QueryEngine

    ids = _with_sidecars(zoo_copy)
    write_sidecar(zoo_copy, "analysis", "half", pa.table({"model_id": ids[:6], "half": [1.0] * 6}))
    push_zoo(zoo_copy, repo_id, progress=False)
    where = "half IS NULL AND score >= 8"
    out = tmp_path / "part"
    pull_zoo(repo_id, out, where=where, progress=False)
    side = pq.read_table(out / "analysis/half.parquet")
    assert side.num_rows == 0 and side.schema.names == ["model_id", "half"]
    zoo = open_zoo(out)
    assert sorted(zoo.select(where=where).table.column("model_id").to_pylist()) == ids[8:]
    assert zoo.table.column("half").null_count == len(ids) - 8
    report = verify_zoo(out)
    assert report.ok, report.summary()
    assert QueryEngine.over_zoos({"part": zoo}).sql(f"SELECT count(*) AS n FROM models WHERE {where}"
                                                    ).table.column("n").to_pylist() == [len(ids) - 8]
