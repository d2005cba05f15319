"""A PyTorch dataset over a selection, for weight-space learning: :class:`WeightDataset`.

Items are ``(weights, target)``: one model's parameters and the values of chosen metadata
columns. Rows are split into train/val/test by training run (:func:`catalog.split.split_by_run`)
so no run is in two splits (and runs that share a network, equal ``sha256``, share a split).
Weights are normalized per parameter entry with a mean and standard deviation computed on the
*training* split; these statistics are stored with the zoo
(``<zoo>/stats/norm-<key>.safetensors``, written atomically) and read back on the next load,
where ``<key>`` hashes the architecture and the checksums of the training rows, so a different
selection, split or seed gets its own file and a stale file is never used.

A selection of several architectures gives one part per architecture (:meth:`WeightDataset.by_arch`),
each normalized with its own statistics; the split by run is made once over all of them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from safetensors import safe_open
from torch import Tensor
from torch.utils.data import Dataset

from catalog.errors import WeightzooError
from catalog.format import atomic_path, save_safetensors
from catalog.network import NetworkSpec
from catalog.paths import safe_join
from catalog.query import ZOO_COLUMN
from catalog.selection import Selection, describe_differences, name_some
from catalog.split import LINK_COLUMN, SPLITS, split_by_run

#: The zoo subdirectory holding cached normalization statistics (ignored by `zoo verify`).
STATS_DIR = "stats"
STATS_TEMPLATE = "stats/norm-{key}.safetensors"
STATS_FORMAT = "weightzoo-norm-stats-v1"
#: Standard deviations below this are clamped when normalizing (constant entries stay finite).
MIN_STD = 1e-8


class WeightDataset(Dataset):
    """``(weights, target)`` items of one split of a selection.

    A selection of several architectures (say, the same MLP with ReLU and with tanh) gives a
    dataset of per-architecture parts: :meth:`by_arch` returns one single-architecture
    ``WeightDataset`` per ``arch_id``, each with its own NetworkSpec, weights and
    normalization statistics (computed on that architecture's training rows). The split by run
    is made once over all rows, and string targets are encoded over all rows, so the parts
    share :attr:`splits`' runs and :attr:`classes`. ``weightspace.fit`` trains on all parts.

    Args:
        selection: the rows (one or several architectures).
        targets: metadata columns to predict, e.g. ``["test_acc"]``. Numeric columns become
            floats; string columns become class indices (see :attr:`classes`).
        split: ``"train"``, ``"val"`` or ``"test"`` (default ``"train"``).
        fractions: ``(train, val, test)`` shares of the training runs (default
            ``(0.8, 0.1, 0.1)``).
        seed: the split's seed (default ``0``).
        normalize: normalize weights with the training split's per-entry mean/std (default
            ``True``; per architecture).
        status: keep only rows with this ``status`` (default ``"ok"``: diverged runs are
            dropped); ``None`` keeps every row.
        verify: check each row's weights against its sha256 when loading (default ``True``).
        cache_stats: read/write the statistics under ``<zoo>/stats/`` (default ``True``;
            a read-only zoo falls back to computing them in memory).

    Shapes:
        ``ds[i]`` -> ``({name: Tensor[*shape]}, Tensor[len(targets)])`` (the parameters of
        row ``i``'s architecture);
        ``ds.stacked()`` (one architecture) -> ``({name: Tensor[N, *shape]}, Tensor[N, len(targets)])``.
        Targets are ``int64`` when every target is categorical, else ``float32``.
    """

    def __init__(self, selection: Selection, targets: Sequence[str], split: str = "train",
                 fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
                 normalize: bool = True, status: str | None = "ok", verify: bool = True,
                 cache_stats: bool = True) -> None:
        if isinstance(targets, str) or not targets:
            raise WeightzooError(f"targets must be a non-empty list of column names, got {targets!r}")
        if split not in SPLITS:
            raise WeightzooError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
        self.targets = list(targets)
        self.split = split
        self.fractions = tuple(fractions)
        self.seed = seed
        self.normalize = normalize
        self.verify = verify

        key = ["run_id"] + ([ZOO_COLUMN] if selection.source.multi else [])
        # The weights' checksums keep identical networks of different runs in one split.
        link = [LINK_COLUMN] if LINK_COLUMN in selection.columns or "model_id" in selection.columns else []
        wanted = list(dict.fromkeys(key + ["status"] + self.targets + link))
        meta = selection.metadata(wanted)
        if status is not None:
            keep = np.flatnonzero(pc.fill_null(pc.equal(meta.column("status"), status), False)
                                  .to_numpy(zero_copy_only=False))
            if len(keep) != len(selection):
                selection = selection.take(keep)
                meta = meta.take(pa.array(keep))
        if len(selection) == 0:
            raise WeightzooError(
                f"the selection has no rows{f' with status {status!r}' if status else ''}; "
                f"widen the query")

        # One split over every row, whatever its architecture: a run is in one split only.
        self.splits = split_by_run(meta, self.fractions, seed, key=tuple(key))
        self.classes: dict[str, list[str]] = {}
        all_targets = self._encode_targets(meta)
        idx = self.splits[split]
        self.selection = selection.take(idx)
        self.table = meta.take(pa.array(idx))
        self._targets = all_targets[torch.from_numpy(idx)]
        self.network_specs: dict[str, NetworkSpec] = selection.network_specs

        self.stats_path: Path | None = None
        self.stats_cached = False
        self.stats: dict[str, dict[str, Tensor]] | None = None
        self._parts: dict[str, WeightDataset] = {}
        if len(self.network_specs) == 1:
            self._load_arch(selection, cache_stats)
            return
        positions = selection.positions_by_arch()
        for arch in self.network_specs:
            rows = positions[arch]
            part = WeightDataset.__new__(WeightDataset)
            part.__dict__.update({k: getattr(self, k) for k in (
                "targets", "split", "fractions", "seed", "normalize", "verify", "classes")})
            part.splits = {s: np.flatnonzero(np.isin(rows, pos)) for s, pos in self.splits.items()}
            arch_sel = selection.take(rows)
            part.selection = arch_sel.take(part.splits[split])
            part.table = meta.take(pa.array(rows[part.splits[split]]))
            part._targets = all_targets[torch.from_numpy(rows[part.splits[split]])]
            part.network_specs = {arch: self.network_specs[arch]}
            part.stats_path, part.stats_cached, part.stats, part._parts = None, False, None, {}
            part._load_arch(arch_sel, cache_stats)
            self._parts[arch] = part
        # Row i of this split is row _within[i] of part _arch_of[i].
        arch_names = list(self.network_specs)
        codes = np.empty(len(meta), dtype=np.int64)
        for code, arch in enumerate(arch_names):
            codes[positions[arch]] = code
        self._arch_of = codes[idx]
        self._within = np.zeros(len(idx), dtype=np.int64)
        for code in range(len(arch_names)):
            mask = self._arch_of == code
            self._within[mask] = np.arange(int(mask.sum()))

    def _load_arch(self, selection: Selection, cache_stats: bool) -> None:
        """Load this split's weights of a one-architecture ``selection`` (all splits' rows)
        and the training statistics."""
        spec = self.network_spec
        idx = self.splits[self.split]
        self._weights = self.selection.stacked(verify=self.verify) if len(idx) else {
            p.name: torch.empty((0, *p.shape), dtype=spec.torch_dtype) for p in spec.params}
        if self.normalize:
            train = selection.take(self.splits["train"])
            self.stats = self._load_or_compute_stats(train, cache_stats)
            self._weights = self.normalize_weights(self._weights)

    # ------------------------------------------------------------------------------ architectures
    @property
    def arch_ids(self) -> list[str]:
        """The architectures of the selection, in order of first appearance."""
        return list(self.network_specs)

    @property
    def network_spec(self) -> NetworkSpec:
        """The NetworkSpec of the rows (one architecture; else see :meth:`by_arch`)."""
        if len(self.network_specs) != 1:
            raise self._several_archs_error("network_spec")
        return next(iter(self.network_specs.values()))

    def by_arch(self) -> dict[str, WeightDataset]:
        """One single-architecture dataset per ``arch_id`` (this one if it has one architecture).

        The parts are this dataset's rows of each architecture, in order, with the same split,
        classes and settings; each part's statistics come from its own training rows.
        """
        if not self._parts:
            return {self.arch_ids[0]: self}
        return dict(self._parts)

    def _several_archs_error(self, what: str) -> WeightzooError:
        listing = name_some([f"{a} ({len(p)} rows)" for a, p in self._parts.items()])
        return WeightzooError(
            f"{what} needs one architecture, but this dataset spans {len(self._parts)}: "
            f"{listing}; they differ in {describe_differences(self.network_specs)}. Weights are "
            f"normalized per architecture: use ds.by_arch() for one dataset per arch_id (or "
            f"select one, e.g. where=\"arch_id = '{self.arch_ids[0]}'\")")

    # ------------------------------------------------------------------------------ targets
    def _encode_targets(self, meta: pa.Table) -> Tensor:
        cols = []
        categorical = []
        for name in self.targets:
            col = meta.column(name)
            if col.null_count:
                raise WeightzooError(
                    f"{col.null_count} rows have no value for target {name!r}; filter them out "
                    f"(e.g. where=\"{name} IS NOT NULL\")")
            typ = col.type
            if pa.types.is_dictionary(typ):
                col, typ = col.cast(typ.value_type), typ.value_type
            if pa.types.is_string(typ) or pa.types.is_large_string(typ):
                classes = sorted(set(col.to_pylist()))
                self.classes[name] = classes
                lookup = {c: i for i, c in enumerate(classes)}
                cols.append(np.array([lookup[v] for v in col.to_pylist()], dtype=np.float64))
                categorical.append(True)
            elif pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ):
                cols.append(col.to_numpy().astype(np.float64))
                categorical.append(False)
            else:
                raise WeightzooError(
                    f"target {name!r} has type {typ}; targets must be numeric, boolean or strings")
        stacked = np.stack(cols, axis=1) if cols else np.zeros((meta.num_rows, 0))
        if all(categorical):
            return torch.from_numpy(stacked.astype(np.int64))
        return torch.from_numpy(stacked.astype(np.float32))

    # ------------------------------------------------------------------------------ stats
    def _stats_key(self, train: Selection) -> str:
        shas = sorted(train.metadata(["sha256"]).column("sha256").to_pylist()) if len(train) else []
        blob = json.dumps({"format": STATS_FORMAT, "arch_id": self.network_spec.arch_id,
                           "rows": shas}, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:20]

    def _stats_zoo_root(self, train: Selection) -> Path | None:
        loc = train._locations()
        if ZOO_COLUMN in loc.column_names:
            names = pc.unique(loc.column(ZOO_COLUMN)).to_pylist()
            if len(names) != 1:
                return None  # rows of several zoos: no single place to keep the stats
            return Path(train.source.zoo(names[0]).root)
        return Path(train.source.zoo(None).root)

    def _load_or_compute_stats(self, train: Selection, cache: bool) -> dict[str, dict[str, Tensor]]:
        if len(train) == 0:
            raise WeightzooError(
                f"the train split of architecture {self.network_spec.arch_id} is empty (fractions "
                f"{self.fractions}, seed {self.seed}, {len(self.splits['train'])} rows), so there "
                f"are no training statistics to normalize with; select more runs (of it), raise "
                f"the train fraction, or leave this architecture out")
        key = self._stats_key(train)
        root = self._stats_zoo_root(train) if cache else None
        path = None
        if root is not None:
            # Joined like zoo data: a symbolic link at stats/ would make the cache read and write
            # files outside the zoo (a crafted zoo could point it anywhere).
            folder = root / PurePosixPath(STATS_TEMPLATE).parent
            path = safe_join(root, STATS_TEMPLATE.format(key=key), "statistics cache file",
                             fix=f"{folder} is a cache, not zoo data: remove it (rm {folder}) and run the "
                                 f"command again")
        if path is not None and path.is_file():
            stats = _read_stats(path, key, self.network_spec)
            if stats is not None:
                self.stats_path, self.stats_cached = path, True
                return stats
        weights = self._weights if self.split == "train" else train.stacked(verify=self.verify)
        stats = compute_stats(weights)
        if path is not None and _write_stats(path, stats, key, self.network_spec, len(train)):
            self.stats_path = path
        return stats

    def normalize_weights(self, weights: dict[str, Tensor]) -> dict[str, Tensor]:
        """``(w - mean) / max(std, MIN_STD)`` per parameter entry, with the train split's stats.

        Shapes:
            ``{name: Tensor[N, *shape]}`` -> same.
        """
        if self._parts:
            raise self._several_archs_error("normalize_weights()")
        if self.stats is None:
            return dict(weights)
        mean, std = self.stats["mean"], self.stats["std"]
        return {k: (v - mean[k]) / std[k].clamp_min(MIN_STD) for k, v in weights.items()}

    def denormalize_weights(self, weights: dict[str, Tensor]) -> dict[str, Tensor]:
        """Undo :meth:`normalize_weights` (e.g. on a generated batch).

        Shapes:
            ``{name: Tensor[N, *shape]}`` -> same.
        """
        if self._parts:
            raise self._several_archs_error("denormalize_weights()")
        if self.stats is None:
            return dict(weights)
        mean, std = self.stats["mean"], self.stats["std"]
        return {k: v * std[k].clamp_min(MIN_STD) + mean[k] for k, v in weights.items()}

    # ------------------------------------------------------------------------------ items
    def __len__(self) -> int:
        return len(self._targets)

    def __getitem__(self, i: int) -> tuple[dict[str, Tensor], Tensor]:
        if self._parts:
            if not -len(self) <= i < len(self):
                raise IndexError(f"index {i} out of range for {len(self)} rows")
            part = self._parts[self.arch_ids[int(self._arch_of[i])]]
            return part[int(self._within[i])]
        return {k: v[i] for k, v in self._weights.items()}, self._targets[i]

    def stacked(self) -> tuple[dict[str, Tensor], Tensor]:
        """The whole split as tensors (normalized if ``normalize``; one architecture, else
        use :meth:`by_arch`).

        Shapes:
            returns ``({name: Tensor[N, *shape]}, Tensor[N, len(targets)])``.
        """
        if self._parts:
            raise self._several_archs_error("stacked()")
        return self._weights, self._targets

    def __repr__(self) -> str:
        archs = (self.arch_ids[0] if len(self.network_specs) == 1
                 else f"{len(self.network_specs)} ({', '.join(self.arch_ids)})")
        return (f"WeightDataset(split={self.split!r}, rows={len(self)}, targets={self.targets}, "
                f"arch={archs})")


def compute_stats(weights: dict[str, Tensor]) -> dict[str, dict[str, Tensor]]:
    """Per-entry mean and (population) standard deviation over the models of a batch.

    Shapes:
        ``{name: Tensor[N, *shape]}`` -> ``{"mean": {name: Tensor[*shape]}, "std": {...}}``.
    """
    mean, std = {}, {}
    for k, v in weights.items():
        v64 = v.to(torch.float64)
        mean[k] = v64.mean(0).to(v.dtype)
        std[k] = v64.std(0, correction=0).to(v.dtype)
    return {"mean": mean, "std": std}


def _read_stats(path: Path, key: str, spec: NetworkSpec) -> dict[str, dict[str, Tensor]] | None:
    """The cached stats, or ``None`` when the file is unreadable or not for this key/spec."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("key") != key or meta.get("format") != STATS_FORMAT:
                return None
            stats = {"mean": {}, "std": {}}
            for p in spec.params:
                for kind in ("mean", "std"):
                    t = f.get_tensor(f"{kind}/{p.name}")
                    if tuple(t.shape) != tuple(p.shape):
                        return None
                    stats[kind][p.name] = t
            return stats
    except Exception:  # a corrupt or foreign cache file is recomputed, never trusted
        return None


def _write_stats(path: Path, stats: dict[str, dict[str, Tensor]], key: str, spec: NetworkSpec,
                 n_models: int) -> bool:
    """Write the stats atomically, with bytes that depend only on their content
    (:func:`~catalog.format.save_safetensors`); ``False`` (and nothing written) if the zoo is
    read-only."""
    tensors = {f"{kind}/{k}": v.contiguous() for kind in ("mean", "std") for k, v in stats[kind].items()}
    meta = {"format": STATS_FORMAT, "key": key, "arch_id": spec.arch_id, "n_models": str(n_models)}
    try:
        with atomic_path(path) as tmp:
            save_safetensors(tensors, tmp, meta)
        return True
    except OSError:
        return False
