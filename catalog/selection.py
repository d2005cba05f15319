"""A query's rows and, on demand, their weights: :class:`Selection`.

``zoo.select(...)`` / ``zoo.sql(...)`` return a ``Selection``. Its :attr:`~Selection.table` holds
the rows; :meth:`~Selection.stacked`, :meth:`~Selection.state_dicts` and
:meth:`~Selection.modules` load the rows' weights from the memory-mapped safetensors shards
(one slice per shard, never one file per model), checking every row against its ``sha256``
unless told not to.

Weights are located by the columns ``arch_id``, ``weights_shard``, ``weights_row``, ``sha256``
(and ``zoo`` for several zoos). A query that did not return them is re-joined to ``models`` by
``model_id``; a query without ``model_id`` (an aggregate, say) has no weights to load.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor

from catalog.errors import QueryError, RowIndexError, ZooFormatError
from catalog.format import PART_FIX, core_column_problems
from catalog.loading import load_batch
from catalog.network import NetworkSpec, SpecNetwork, build_module
from catalog.query import ZOO_COLUMN

if TYPE_CHECKING:
    from catalog.query import QueryEngine

_WEIGHT_COLUMNS = ("arch_id", "weights_shard", "weights_row", "sha256")


class Selection:
    """Rows of the ``models`` table, with their weights one call away.

    Args:
        table: the rows (any columns).
        source: the :class:`~catalog.query.QueryEngine` the rows came from; it locates rows
            that lack the weight columns and opens the zoos that hold the weights.

    Example::

        sel = zoo.select(where="test_acc > 0.9", order_by="test_acc DESC", limit=100)
        sel.table               # pyarrow.Table
        batch = sel.stacked()   # {param name: Tensor[N, *shape]}
        mods = sel.modules()    # [SpecNetwork] with the weights loaded
    """

    def __init__(self, table: pa.Table, source: QueryEngine,
                 _locations: pa.Table | None = None) -> None:
        self.table = table
        self.source = source
        self._loc = _locations

    # ------------------------------------------------------------------------------ rows
    def __len__(self) -> int:
        return self.table.num_rows

    def __repr__(self) -> str:
        return (f"Selection(rows={len(self)}, columns={self.table.column_names[:8]}"
                f"{'...' if self.table.num_columns > 8 else ''})")

    @property
    def columns(self) -> list[str]:
        """The columns of :attr:`table`."""
        return list(self.table.column_names)

    def column(self, name: str) -> list:
        """The values of one column as a list (looked up by ``model_id`` if the query left the
        column out)."""
        return self.metadata([name]).column(name).to_pylist()

    def metadata(self, names: Sequence[str]) -> pa.Table:
        """The given columns for every row, in row order.

        Columns the query did not return are fetched from ``models`` by ``model_id``.
        """
        have = [n for n in names if n in self.table.column_names]
        missing = [n for n in names if n not in self.table.column_names]
        if not missing:
            return self.table.select(list(names))
        looked = self._lookup(missing)
        arrays = {n: (self.table.column(n) if n in have else looked.column(n)) for n in names}
        return pa.table(arrays)

    def take(self, indices: Sequence[int] | np.ndarray) -> Selection:
        """A new selection of the rows at ``indices`` (in that order).

        Raises:
            RowIndexError: an index is outside ``0 .. len(self) - 1`` (negative ones too), or
                ``indices`` are not integers (e.g. a boolean mask).
        """
        arr = np.asarray(indices)
        if arr.size == 0:
            arr = arr.astype(np.int64)
        if arr.ndim != 1 or arr.dtype.kind not in "iu":  # a mask's True/False would be rows 1 and 0
            hint = "; for a boolean mask pass np.flatnonzero(mask)" if arr.dtype.kind == "b" else ""
            raise RowIndexError(f"take() takes a sequence of integer row positions, got {arr.ndim}-D "
                                f"{arr.dtype}{hint}")
        n = len(self)
        if arr.size and (arr.min() < 0 or arr.max() >= n):
            bad = arr[(arr < 0) | (arr >= n)]
            valid = f"0 to {n - 1}" if n else "none: the selection is empty"
            raise RowIndexError(
                f"take(): row position(s) {bad[:5].tolist()}{' ...' if bad.size > 5 else ''} outside this "
                f"selection of {n} rows (valid: {valid}; negative positions are not counted from the end)")
        idx = pa.array(arr.astype(np.int64, copy=False))
        loc = self._loc.take(idx) if self._loc is not None else None
        return Selection(self.table.take(idx), self.source, loc)

    def head(self, n: int) -> Selection:
        """The first ``n`` rows."""
        return self.take(np.arange(min(n, len(self))))

    # ------------------------------------------------------------------------------ locating
    def _lookup(self, names: Sequence[str]) -> pa.Table:
        if "model_id" not in self.table.column_names:
            raise QueryError(
                f"this selection has no model_id column, so its rows cannot be matched to the "
                f"zoo for {', '.join(names)} (nor their weights loaded); include model_id in the "
                f"query (or SELECT *)")
        ids = self.table.column("model_id").to_pylist()
        zoos = None
        if self.source.multi and ZOO_COLUMN in self.table.column_names:
            zoos = self.table.column(ZOO_COLUMN).to_pylist()
        return self.source.lookup(ids, zoos, list(names))

    def _locations(self) -> pa.Table:
        """``[zoo,] arch_id, weights_shard, weights_row, sha256`` for every row."""
        if self._loc is None:
            want = ([ZOO_COLUMN] if self.source.multi else []) + list(_WEIGHT_COLUMNS)
            loc = self.table.select(want) if all(c in self.table.column_names for c in want) else None
            if loc is not None and core_column_problems(loc.schema, _WEIGHT_COLUMNS):
                loc = None  # columns the query computed (weights_row * 1.0): located as stored instead
            if loc is None:
                loc = self._lookup(want)
                bad = core_column_problems(loc.schema, _WEIGHT_COLUMNS)
                if bad:  # as stored: a weights_row of 0.5 would load row 0
                    raise ZooFormatError(f"{self.source.label}: {bad[0]}, so the rows' weights cannot be "
                                         f"located; {PART_FIX}")
            for c in want:
                if loc.column(c).null_count:
                    raise QueryError(
                        f"some rows have a NULL {c}, so their weights cannot be located; "
                        f"select rows of `models` as they are stored")
            self._loc = loc
        return self._loc

    @property
    def arch_ids(self) -> list[str]:
        """The distinct architectures of the rows (those their weights load as), in order of
        first appearance."""
        names = self.table.column_names
        if "arch_id" in names and "model_id" not in names:
            col = self.table.column("arch_id")  # rows without weights (an aggregate): the query's column
        else:
            # Where the weights are located: a query's own arch_id column may be another column
            # renamed (SELECT activation AS arch_id), which stacked() does not load by.
            col = self._locations().column("arch_id")
        return list(dict.fromkeys(pc.unique(col).to_pylist()))

    def positions_by_arch(self) -> dict[str, np.ndarray]:
        """``{arch_id: sorted row positions}``, architectures in order of first appearance."""
        col = self._locations().column("arch_id").combine_chunks()
        enc = col.dictionary_encode()
        codes = enc.indices.to_numpy(zero_copy_only=False)
        return {a: np.flatnonzero(codes == i) for i, a in enumerate(enc.dictionary.to_pylist())}

    def by_arch(self) -> dict[str, Selection]:
        """The rows grouped by ``arch_id`` (each group keeps the rows' order)."""
        loc = self._locations()
        out = {}
        for arch, pos in self.positions_by_arch().items():
            idx = pa.array(pos)
            out[arch] = Selection(self.table.take(idx), self.source, loc.take(idx))
        return out

    @property
    def network_specs(self) -> dict[str, NetworkSpec]:
        """``{arch_id: NetworkSpec}`` of the rows' architectures, in order of first appearance."""
        return {a: self._spec(a) for a in self.arch_ids}

    def _several_archs_error(self, what: str) -> QueryError:
        counts = {a: len(p) for a, p in self.positions_by_arch().items()}
        listing = name_some([f"{a} ({n} rows)" for a, n in counts.items()])
        differ = describe_differences({a: self._spec(a) for a in counts})
        return QueryError(
            f"{what} needs a single architecture, but this selection spans {len(counts)}: "
            f"{listing}; they differ in {differ}. Use .by_arch() to get one selection per "
            f"arch_id, pass arch_id=..., or filter the query (e.g. "
            f"where=\"arch_id = '{next(iter(counts))}'\")")

    @property
    def network_spec(self) -> NetworkSpec:
        """The :class:`NetworkSpec` of the rows (they must share one architecture)."""
        archs = self.arch_ids
        if len(archs) != 1:
            if not archs:
                raise QueryError("the selection is empty, so it has no architecture")
            raise self._several_archs_error("network_spec")
        return self._spec(archs[0])

    def _spec(self, arch_id: str) -> NetworkSpec:
        loc = self._locations()
        zoo_name = None
        if ZOO_COLUMN in loc.column_names:
            first = int(self.positions_by_arch()[arch_id][0])
            zoo_name = loc.column(ZOO_COLUMN)[first].as_py()
        return self.source.zoo(zoo_name).network_spec(arch_id)

    # ------------------------------------------------------------------------------ weights
    def stacked(self, arch_id: str | None = None, verify: bool = True) -> dict[str, Tensor]:
        """The rows' weights as one batch.

        Rows of several architectures stack together only when their parameters agree (same
        names, shapes and dtypes, e.g. architectures that differ only in their activation);
        the batch then does not say which row has which architecture (see
        :attr:`arch_ids` / :meth:`column` ``("arch_id")``, or :meth:`by_arch` for one batch per
        architecture). Architectures whose parameters differ raise an error pointing to
        :meth:`by_arch`.

        Args:
            arch_id: load only the rows of this architecture (default: every row).
            verify: check every row's bytes against its ``sha256`` (default ``True``); a
                mismatch raises :class:`~catalog.errors.IntegrityError`.

        Shapes:
            returns ``{param name: Tensor[N, *shape]}`` with ``N`` rows in selection order.
        """
        archs = self.positions_by_arch()
        if arch_id is None:
            if not archs:
                raise QueryError("the selection is empty; there are no weights to stack")
            if len(archs) > 1:
                return self._stack_same_params(archs, verify)
            arch_id = next(iter(archs))
        elif arch_id not in archs:
            raise QueryError(f"no row of this selection has arch_id {arch_id!r}; its "
                             f"architectures: {', '.join(archs) or 'none (it is empty)'}")
        positions = archs[arch_id]
        return self._load(positions, arch_id, verify)

    def _stack_same_params(self, archs: dict[str, np.ndarray], verify: bool) -> dict[str, Tensor]:
        """Rows of several architectures with identical parameters, in selection order."""
        signatures = {a: param_signature(self._spec(a)) for a in archs}
        if len(set(signatures.values())) > 1:
            raise self._several_archs_error("stacked() of architectures with different parameters")
        out: dict[str, Tensor] = {}
        for arch, pos in archs.items():
            batch = self._load(pos, arch, verify)
            index = torch.from_numpy(pos)
            for name, value in batch.items():
                if name not in out:
                    out[name] = value.new_empty((len(self), *value.shape[1:]))
                out[name][index] = value
        return out

    def _load(self, positions: np.ndarray, arch_id: str, verify: bool) -> dict[str, Tensor]:
        loc = self._locations()
        if len(positions) != loc.num_rows:
            loc = loc.take(pa.array(positions))
        n = loc.num_rows
        spec = self._spec(arch_id)
        if n == 0:
            return {p.name: torch.empty((0, *p.shape), dtype=spec.torch_dtype) for p in spec.params}
        rows = loc.column("weights_row").to_numpy().astype(np.int64, copy=False)
        key_col = loc.column("weights_shard")
        if ZOO_COLUMN in loc.column_names:
            key_col = pc.binary_join_element_wise(loc.column(ZOO_COLUMN), key_col, "\x00")
        enc = key_col.combine_chunks().dictionary_encode()
        codes = enc.indices.to_numpy(zero_copy_only=False)
        groups = enc.dictionary.to_pylist()
        parts = []
        for gi, key in enumerate(groups):
            zoo_name, shard = key.split("\x00", 1) if "\x00" in key else (None, key)
            zoo = self.source.zoo(zoo_name)
            idx = np.flatnonzero(codes == gi) if len(groups) > 1 else np.arange(n)
            parts.append((zoo._shard_file(shard), str(zoo.root), rows[idx], idx))
        expected = loc.column("sha256").to_pylist() if verify else None
        return load_batch(spec, n, parts, expected)

    def state_dicts(self, verify: bool = True) -> list[dict[str, Tensor]]:
        """One state dict per row, in row order (rows may mix architectures).

        The tensors are views into one stacked batch per architecture; ``clone()`` one to keep
        it without the rest.

        Shapes:
            each ``{param name: Tensor[*shape]}``.
        """
        out: list[dict[str, Tensor] | None] = [None] * len(self)
        for arch, pos in self.positions_by_arch().items():
            batch = self._load(pos, arch, verify)
            for j, i in enumerate(pos.tolist()):
                out[i] = {k: v[j] for k, v in batch.items()}
        return out  # type: ignore[return-value]

    def modules(self, verify: bool = True) -> list[SpecNetwork]:
        """One ``nn.Module`` per row (rebuilt from its NetworkSpec, weights loaded, eval mode)."""
        specs = {a: self._spec(a) for a in self.positions_by_arch()}
        arch_col = self._locations().column("arch_id").to_pylist()
        return [build_module(specs[a], sd) for a, sd in zip(arch_col, self.state_dicts(verify))]


def param_signature(spec: NetworkSpec) -> tuple:
    """The parameters of ``spec`` as ``((name, shape, dtype), ...)``: two architectures with
    the same signature have interchangeable weight batches (they may still compute differently,
    e.g. with another activation)."""
    return tuple((p.name, tuple(p.shape), p.dtype) for p in spec.params)


#: Architectures an error message names one by one; beyond this many it counts them instead.
ARCHS_NAMED = 3
#: Distinct values of one property an error message lists for many architectures.
VALUES_NAMED = 4


def name_some(items: Sequence[str], limit: int = ARCHS_NAMED) -> str:
    """``"a, b, c"``, or ``"a, b, c and 33 more"`` past ``limit`` items (error messages)."""
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"


def describe_differences(specs: Mapping[str, NetworkSpec]) -> str:
    """What distinguishes several architectures, for error messages.

    Returns e.g. ``"activation (mlp-4ba65d5169: relu,identity; mlp-2516360e42: tanh,identity)"``:
    each property whose value differs between the architectures (layer properties listed over
    the layers, first to last, repeats collapsed), with each architecture's value. Past
    :data:`ARCHS_NAMED` architectures each value is given once with how many architectures have
    it and one of them, e.g. ``"family (cnn: 28 architectures, e.g. cnn-6459a161f4; resnet: 8,
    e.g. resnet-3028f0d0f4)"``, so a zoo of dozens of architectures gets a readable message.
    """
    def summary(spec: NetworkSpec) -> dict[str, str]:
        if not spec.is_chain:
            return {"family": spec.family, "input shape": "x".join(str(s) for s in spec.input_shape),
                    "structure": spec.summary(), "dtype": spec.dtype}
        out = {"family": spec.family,
               "input shape": "x".join(str(s) for s in spec.input_shape),
               "widths": "-".join(str(w) for w in spec.layer_widths),
               "dtype": spec.dtype}
        for name in ("kind", "kernel_size", "stride", "padding", "activation", "omega", "pool"):
            values = [getattr(layer, name) for layer in spec.layers]
            text = [("x".join(map(str, v)) or "-") if isinstance(v, tuple) else str(v) for v in values]
            out[name] = ",".join(dict.fromkeys(text))
        return out

    summaries = {a: summary(s) for a, s in specs.items()}
    keys = list(dict.fromkeys(k for s in summaries.values() for k in s))
    by_family: dict[str, list[str]] = {}
    if len({s["family"] for s in summaries.values()}) > 1:
        for arch, summ in summaries.items():
            by_family.setdefault(summ["family"], []).append(arch)
    parts = []
    for key in keys:
        values = {a: s.get(key, "-") for a, s in summaries.items()}
        if len(set(values.values())) <= 1:
            continue
        if key != "family" and by_family and all(len({values[a] for a in archs}) == 1 for archs in by_family.values()):
            continue  # one value per family: said by the family line (e.g. "-" for a graph's layer kinds)
        if len(values) <= ARCHS_NAMED:
            parts.append(f"{key} ({'; '.join(f'{a}: {v}' for a, v in values.items())})")
            continue
        having: dict[str, list[str]] = {}
        for arch, value in values.items():
            having.setdefault(value, []).append(arch)
        listed = [f"{v}: {len(a)}{' architectures' if i == 0 else ''}, e.g. {a[0]}" if len(a) > 1 else f"{v}: {a[0]}"
                  for i, (v, a) in enumerate(having.items())]
        more = len(listed) - VALUES_NAMED
        parts.append(f"{key} ({'; '.join(listed[:VALUES_NAMED])}{f'; {more} more values' if more > 0 else ''})")
    return ", ".join(parts) or "nothing but their recorded facts (meta)"
