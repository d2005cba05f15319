"""retrieval.search: DuckDB cosine top-k against a numpy brute force, and bad input."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from catalog.errors import WeightzooError
from retrieval import EmbeddingIndex, embeddings_table, nearest


def _random(n: int, d: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    return [f"m{i:04d}" for i in range(n)], rng.standard_normal((n, d)).astype(np.float32)


def _brute_force(vectors: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    v, q = vectors.astype(np.float64), query.astype(np.float64)
    sims = v @ q / (np.linalg.norm(v, axis=1) * np.linalg.norm(q))
    order = np.argsort(-sims, kind="stable")[:k]
    return order, sims[order]


def test_nearest_matches_numpy_brute_force() -> None:
    ids, vecs = _random(500, 16)
    table = embeddings_table(ids, vecs)
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 16)
    with EmbeddingIndex(table, threads=1) as index:
        for seed in range(5):
            q = np.random.default_rng(100 + seed).standard_normal(16)
            got = index.nearest(q, k=10)
            order, sims = _brute_force(vecs, q, 10)
            assert got.column("model_id").to_pylist() == [ids[i] for i in order]
            assert np.allclose(got.column("similarity").to_numpy(), sims, atol=1e-5)
    # The one-shot function gives the same answer.
    q = vecs[42]
    top = nearest(table, q, k=3)
    assert top.column("model_id").to_pylist()[0] == "m0042"
    assert top.column("similarity")[0].as_py() == pytest.approx(1.0, abs=1e-6)


def test_list_columns_extra_columns_and_rows_without_a_similarity() -> None:
    vecs = [[1.0, 0.0], [0.0, 0.0], [float("nan"), 1.0], [1.0, 1.0], None, [-1.0, 0.0]]
    table = pa.table({"model_id": ["a", "zero", "nan", "d", "null", "f"],
                      "acc": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
                      "embedding": pa.array(vecs, pa.list_(pa.float64()))})
    with EmbeddingIndex(table, threads=1) as index:
        assert index.dim == 2 and len(index) == 6
        got = index.nearest([1.0, 0.5], k=10, columns=["acc"])
    # Zero, NaN and NULL vectors have no cosine similarity and are skipped; k > rows is fine.
    assert got.column_names == ["model_id", "acc", "similarity"]
    assert got.column("model_id").to_pylist() == ["d", "a", "f"]
    assert got.column("acc").to_pylist() == [0.4, 0.1, 0.6]


def test_bad_input_raises() -> None:
    ids, vecs = _random(20, 8)
    table = embeddings_table(ids, vecs)
    with pytest.raises(WeightzooError, match="dimension 7 but the stored embeddings have dimension 8"):
        nearest(table, np.ones(7), k=3)
    with pytest.raises(WeightzooError, match="all zeros"):
        nearest(table, np.zeros(8))
    with pytest.raises(WeightzooError, match="NaN"):
        nearest(table, [float("nan")] * 8)
    with pytest.raises(WeightzooError, match="k must be a positive integer"):
        nearest(table, np.ones(8), k=0)
    with pytest.raises(WeightzooError, match="no column 'vec'"):
        nearest(table, np.ones(8), column="vec")
    ragged = pa.table({"model_id": ["a", "b"], "embedding": pa.array([[1.0, 2.0], [1.0]])})
    with pytest.raises(WeightzooError, match=r"lengths \[1, 2\]"):
        EmbeddingIndex(ragged)
    with pytest.raises(WeightzooError, match="3 ids for 20 embeddings"):
        embeddings_table(ids[:3], vecs)
    with EmbeddingIndex(table) as index, pytest.raises(WeightzooError, match=r"no column\(s\) \['acc'\]"):
        index.nearest(np.ones(8), columns=["acc"])
