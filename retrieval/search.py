"""Top-k cosine search over stored embeddings, with DuckDB's array functions.

Embeddings live in an Arrow table: an id column (``model_id``) and a ``FLOAT[d]`` column
(Arrow ``fixed_size_list<float32>[d]``; variable-length float lists of one length ``d`` are
converted). :class:`EmbeddingIndex` registers the table in an in-memory DuckDB connection
once and answers each query with one brute-force scan,
``array_cosine_similarity(embedding, query)``, ``ORDER BY similarity DESC LIMIT k``: exact
results and no index to build or keep in sync (10,000 x 128 answers in milliseconds).
Rows whose embedding is NULL or whose similarity is undefined (a NaN or all-zero vector,
e.g. a diverged model) are skipped.

Nothing here reads or writes files.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor

from catalog.errors import WeightzooError

#: The default names of the id and vector columns.
ID_COLUMN = "model_id"
EMBEDDING_COLUMN = "embedding"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _as_matrix(vectors: Tensor | np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    a = np.asarray(vectors.detach().cpu() if isinstance(vectors, Tensor) else vectors, dtype=np.float32)
    if a.ndim != 2:
        raise WeightzooError(f"embeddings must be [N, d], got shape {list(a.shape)}")
    return a


def embeddings_table(model_ids: Sequence[str], vectors: Tensor | np.ndarray,
                     id_column: str = ID_COLUMN, column: str = EMBEDDING_COLUMN) -> pa.Table:
    """An Arrow table of ids and ``FLOAT[d]`` vectors, the layout :class:`EmbeddingIndex` reads.

    Args:
        model_ids: ``N`` ids.
        vectors: ``[N, d]`` embeddings (stored as float32).
        id_column: name of the id column (default ``model_id``).
        column: name of the vector column (default ``embedding``).
    """
    a = _as_matrix(vectors)
    if len(model_ids) != a.shape[0]:
        raise WeightzooError(f"{len(model_ids)} ids for {a.shape[0]} embeddings; give one id per row")
    if a.shape[1] < 1:
        raise WeightzooError("embeddings need at least one dimension")
    arr = pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1), pa.float32()), a.shape[1])
    return pa.table({id_column: pa.array(list(model_ids)), column: arr})


def _fixed_size_column(table: pa.Table, column: str) -> tuple[pa.Table, int]:
    """The table with ``column`` as ``fixed_size_list<float32>[d]``, and ``d``."""
    if column not in table.column_names:
        raise WeightzooError(f"the embeddings table has no column {column!r}; its columns: "
                             f"{', '.join(table.column_names)}")
    col = table.column(column)
    typ = col.type
    if pa.types.is_fixed_size_list(typ):
        d = typ.list_size
    elif pa.types.is_list(typ) or pa.types.is_large_list(typ):
        lengths = pc.unique(pc.drop_null(pc.list_value_length(col))).to_pylist()
        if len(lengths) != 1:
            raise WeightzooError(f"embedding column {column!r} holds vectors of lengths "
                                 f"{sorted(lengths)}; every embedding must have the same dimension")
        d = int(lengths[0])
    else:
        raise WeightzooError(f"column {column!r} has type {typ}; embeddings are FLOAT[d] arrays")
    if not (pa.types.is_floating(typ.value_type) or pa.types.is_integer(typ.value_type)):
        raise WeightzooError(f"column {column!r} holds {typ.value_type} values; embeddings are floats")
    want = pa.list_(pa.float32(), d)
    if typ != want:
        table = table.set_column(table.column_names.index(column), column, col.cast(want))
    return table, d


class EmbeddingIndex:
    """Exact top-k cosine search over an Arrow table of embeddings.

    Args:
        table: the embeddings: an id column and a ``FLOAT[d]`` vector column (other columns
            may be returned with the results).
        column: the vector column (default ``embedding``).
        id_column: the id column (default ``model_id``).
        threads: DuckDB worker threads (default: DuckDB's choice, all cores).

    Example::

        index = EmbeddingIndex(embeddings_table(ids, vectors))
        index.nearest(query_vec, k=10)   # pyarrow.Table: model_id, similarity (best first)
    """

    def __init__(self, table: pa.Table, column: str = EMBEDDING_COLUMN, id_column: str = ID_COLUMN,
                 threads: int | None = None) -> None:
        if id_column not in table.column_names:
            raise WeightzooError(f"the embeddings table has no id column {id_column!r}; its columns: "
                                 f"{', '.join(table.column_names)}")
        self.table, self.dim = _fixed_size_column(table, column)
        self.column, self.id_column = column, id_column
        self._con = duckdb.connect(":memory:")
        if threads is not None:
            self._con.execute(f"SET threads = {int(threads)}")
        self._con.register("embeddings", self.table)

    def __len__(self) -> int:
        return self.table.num_rows

    def close(self) -> None:
        """Close the DuckDB connection."""
        self._con.close()

    def __enter__(self) -> EmbeddingIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _query_vector(self, query: Tensor | np.ndarray | Sequence[float]) -> list[float]:
        q = np.asarray(query.detach().cpu() if isinstance(query, Tensor) else query, dtype=np.float64)
        if q.ndim == 2 and q.shape[0] == 1:
            q = q[0]
        if q.ndim != 1:
            raise WeightzooError(f"the query must be one vector [d], got shape {list(q.shape)}")
        if q.shape[0] != self.dim:
            raise WeightzooError(f"the query vector has dimension {q.shape[0]} but the stored "
                                 f"embeddings have dimension {self.dim}: embed the query with the "
                                 f"same method (and probe set) as the models")
        if not np.isfinite(q).all():
            raise WeightzooError("the query vector contains NaN or infinite values")
        if not np.any(q):
            raise WeightzooError("the query vector is all zeros; its cosine similarity is undefined")
        return q.astype(np.float32).tolist()

    def nearest(self, query: Tensor | np.ndarray | Sequence[float], k: int = 10,
                columns: Sequence[str] = ()) -> pa.Table:
        """The ``k`` rows most cosine-similar to ``query``, best first.

        Args:
            query: ``[d]`` the query embedding (e.g. a task embedding).
            k: how many rows to return (default ``10``; fewer if the table has fewer).
            columns: other columns of the table to return with each row (default none).

        Returns:
            a table ``id_column, *columns, similarity`` (cosine similarity in ``[-1, 1]``,
            float32), sorted by similarity descending, ties by id.
        """
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise WeightzooError(f"k must be a positive integer, got {k!r}")
        missing = [c for c in columns if c not in self.table.column_names]
        if missing:
            raise WeightzooError(f"the embeddings table has no column(s) {missing}; its columns: "
                                 f"{', '.join(self.table.column_names)}")
        q = self._query_vector(query)
        ident, vec = _quote(self.id_column), _quote(self.column)
        extra = "".join(f", {_quote(c)}" for c in columns)
        sql = (f"SELECT {ident}{extra}, similarity FROM ("
               f"SELECT {ident}{extra}, array_cosine_similarity({vec}, $q::FLOAT[{self.dim}]) AS similarity "
               f"FROM embeddings WHERE {vec} IS NOT NULL) "
               f"WHERE NOT isnan(similarity) ORDER BY similarity DESC, {ident} LIMIT {k}")
        return self._con.sql(sql, params={"q": q}).to_arrow_table()


def nearest(embeddings: pa.Table, query_vec: Tensor | np.ndarray | Sequence[float], k: int = 10,
            column: str = EMBEDDING_COLUMN, id_column: str = ID_COLUMN) -> pa.Table:
    """One top-k cosine query (builds a throwaway :class:`EmbeddingIndex`; keep an index for
    many queries).

    Args:
        embeddings: the table of ids and ``FLOAT[d]`` vectors.
        query_vec: ``[d]`` the query embedding.
        k: how many rows to return (default ``10``).
        column: the vector column (default ``embedding``).
        id_column: the id column (default ``model_id``).

    Returns:
        a table ``id_column, similarity``, best first.
    """
    with EmbeddingIndex(embeddings, column, id_column) as index:
        return index.nearest(query_vec, k)


def cosine_scores(embeddings: Tensor, query: Tensor) -> Tensor:
    """Cosine similarity of every row with a query, in torch (for ranking a population that
    is already in memory, e.g. before its embeddings are stored).

    Shapes:
        ``embeddings [P, d]``, ``query [d]`` -> ``[P]`` (NaN rows stay NaN).
    """
    if embeddings.dim() != 2 or query.dim() != 1 or embeddings.shape[1] != query.shape[0]:
        raise WeightzooError(f"embeddings [P, d] and query [d] must agree in d; got "
                             f"{list(embeddings.shape)} and {list(query.shape)}")
    e, q = embeddings.to(torch.float64), query.to(torch.float64)
    return (e @ q) / (e.norm(dim=1) * q.norm()).clamp_min(1e-300)
