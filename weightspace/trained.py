"""A trained metanetwork with everything needed to use it again: :class:`TrainedMetanetwork`,
and its run directory.

A run directory holds::

    metanetwork.safetensors   the metanetwork's weights
    config.json               model name + NetworkSpec(s) + hparams, task, targets, classes,
                              weight normalizer, target scaling, training settings, data source
    metrics.json              test (and validation) metrics
    history.json              per-epoch training history

Nothing in it is executed when loading: the model is rebuilt from the registry by name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from catalog.errors import WeightzooError, format_bytes
from catalog.format import atomic_write_bytes, parse_json, safetensors_bytes
from catalog.network import NetworkSpec
from catalog.paths import recover_output_dir, saved_output_dir
from catalog.selection import Selection
from weightspace.memory import allocation_limit
from weightspace.models.base import Metanetwork
from weightspace.models.registry import build_metanetwork, get_metanetwork
from weightspace.normalization import ParamNormalizer

RUN_FORMAT = "weightzoo-metanet-run-v1"
WEIGHTS_FILE = "metanetwork.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.json"
#: The sha256 of the networks a run was trained and validated on (``zoo train`` writes it).
SEEN_FILE = "seen_networks.parquet"
TASKS = ("regression", "classification")
#: The output kind of a run directory (:data:`catalog.paths.OUTPUT_KINDS`).
RUN_KIND = "metanetwork run"


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename), so a crash never leaves a half-written file."""
    atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


@dataclass
class TrainedMetanetwork:
    """A metanetwork plus the data transforms it was trained with.

    Args:
        net: the metanetwork (its ``config()`` rebuilds it).
        task: ``regression`` or ``classification``.
        targets: the predicted column names.
        normalizer: the per-tensor weight normalization applied before ``net``.
        target_mean: per target, the training mean (regression; default zeros).
        target_std: per target, the training standard deviation (regression; default ones).
        classes: class labels in index order (classification; default none).
        training: the training settings (JSON-able; default empty).
        data: where the training data came from (JSON-able; default empty).

    Shapes:
        ``predict``: ``{name: Tensor[N, *shape]}`` -> ``[N, n_targets]`` (regression, in the
        targets' units) or ``[N]`` class indices (classification).
    """

    net: Metanetwork
    task: str
    targets: list[str]
    normalizer: ParamNormalizer
    target_mean: list[float] = field(default_factory=list)
    target_std: list[float] = field(default_factory=list)
    classes: list[Any] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise WeightzooError(f"unknown task {self.task!r}; valid tasks: {', '.join(TASKS)}")
        if not self.target_mean:
            self.target_mean = [0.0] * len(self.targets)
            self.target_std = [1.0] * len(self.targets)
        self.net.attach_normalizer(self.normalizer)

    # ------------------------------------------------------------------------------ inference
    def raw_output(self, params: Mapping[str, Tensor], spec: NetworkSpec | None = None) -> Tensor:
        """The metanetwork's output on raw (unnormalized) weights.

        Args:
            params: ``{name: Tensor[B, *shape]}``.
            spec: the architecture of ``params`` (default: the one the model was trained on).
                Other architectures are read by models that read several
                (``Metanetwork.multi_arch``: ``gmn`` any, ``statnn``/``mlp`` the same
                parameter shapes); the others raise a user error.

        Shapes:
            returns ``[B, out_dim]``.
        """
        return self.net.forward_arch(self.normalizer.normalize(params), spec)

    @torch.no_grad()
    def predict(self, params: Mapping[str, Tensor] | Selection, spec: NetworkSpec | None = None,
                batch_size: int = 256, progress: bool = False, verify: bool = True) -> Tensor:
        """Predictions in the targets' own units (see the class docstring for shapes).

        Args:
            params: raw weights ``{name: Tensor[N, *shape]}`` of architecture ``spec``, or a
                :class:`~catalog.selection.Selection` (of any architectures the model reads):
                its weights are loaded per architecture, ``batch_size`` rows at a time, and
                the predictions come back in row order.
            spec: the architecture of a parameter dict (default: the model's).
            batch_size: networks per forward pass (default ``256``).
            progress: a progress bar over the rows (default ``False``).
            verify: check a selection's rows against their sha256 (default ``True``).
        """
        self.net.eval()
        if isinstance(params, Selection):
            return self._predict_selection(params, batch_size, progress, verify)
        n = next(iter(params.values())).shape[0]
        outs = [self.raw_output({k: v[i:i + batch_size] for k, v in params.items()}, spec)
                for i in range(0, n, batch_size)]
        return self._to_units(torch.cat(outs) if outs else torch.zeros(0, self.net.out_dim))

    def _predict_selection(self, selection: Selection, batch_size: int, progress: bool,
                           verify: bool) -> Tensor:
        from tqdm.auto import tqdm

        outs: list[tuple[np.ndarray, Tensor]] = []
        chunk = max(batch_size, 4096)  # rows read from the shards at once
        with tqdm(total=len(selection), desc="predict", unit="net", disable=not progress) as bar:
            for positions in selection.positions_by_arch().values():
                rows = selection.take(positions)
                spec = rows.network_spec
                for start in range(0, len(rows), chunk):
                    part = rows.take(np.arange(start, min(start + chunk, len(rows))))
                    params = part.stacked(verify=verify)
                    for i in range(0, len(part), batch_size):
                        batch = {k: v[i:i + batch_size] for k, v in params.items()}
                        out = self.raw_output(batch, spec)
                        outs.append((positions[start + i:start + i + len(out)], out))
                        bar.update(len(out))
        result = torch.zeros(len(selection), self.net.out_dim)
        for pos, out in outs:
            result[torch.from_numpy(pos)] = out.to(result.dtype)
        return self._to_units(result)

    def _to_units(self, out: Tensor) -> Tensor:
        if self.task == "classification":
            return out.argmax(dim=1)
        mean = torch.tensor(self.target_mean, dtype=out.dtype)
        std = torch.tensor(self.target_std, dtype=out.dtype)
        return out * std + mean

    # ------------------------------------------------------------------------------ run dir
    def config(self) -> dict[str, Any]:
        return {
            "format": RUN_FORMAT,
            "model": self.net.config(),
            "task": self.task,
            "targets": list(self.targets),
            "classes": list(self.classes),
            "normalizer": self.normalizer.to_dict(),
            "target_mean": list(self.target_mean),
            "target_std": list(self.target_std),
            "training": dict(self.training),
            "data": dict(self.data),
        }

    def save(self, run_dir: str | os.PathLike, metrics: Mapping[str, Any] | None = None,
             history: list[dict[str, Any]] | None = None, files: Mapping[str, bytes] | None = None) -> Path:
        """Write the run directory (weights, config, metrics, history, and ``files``: other files
        of the run by name, e.g. :data:`SEEN_FILE`); returns its path.

        All or nothing: the files are written beside ``run_dir`` and swapped in as a whole
        (:func:`catalog.paths.saved_output_dir`), so an interrupted save over an earlier run
        leaves that run, never new weights beside its config. Other files in it (e.g.
        predictions written there with ``--out``) are kept; its ``predictions-*.parquet``,
        made by the replaced metanetwork, go with it.
        """
        run_dir = Path(run_dir)
        state = {k: v.detach().contiguous().cpu() for k, v in self.net.state_dict().items()}
        with saved_output_dir(run_dir, RUN_KIND) as d:
            atomic_write_bytes(d / WEIGHTS_FILE,
                               safetensors_bytes(state, {"format": RUN_FORMAT, "model": self.net.name}))
            write_json_atomic(d / CONFIG_FILE, self.config())
            if metrics is not None:
                write_json_atomic(d / METRICS_FILE, dict(metrics))
            if history is not None:
                write_json_atomic(d / HISTORY_FILE, list(history))
            for name, data in (files or {}).items():
                atomic_write_bytes(d / name, data)
        return run_dir

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> TrainedMetanetwork:
        """Rebuild a trained metanetwork from its run directory."""
        run_dir = Path(run_dir)
        recover_output_dir(run_dir, RUN_KIND, best_effort=True)  # a save that was killed, if any
        cfg_path = run_dir / CONFIG_FILE
        if not cfg_path.is_file() or not (run_dir / WEIGHTS_FILE).is_file():
            raise WeightzooError(
                f"{run_dir} is not a metanetwork run directory (needs {CONFIG_FILE} and "
                f"{WEIGHTS_FILE}); pass the --out directory of `zoo train`")
        cfg = parse_json(cfg_path.read_bytes(), str(cfg_path), WeightzooError, "train the metanetwork again")
        fmt = cfg.get("format") if isinstance(cfg, dict) else None
        if fmt != RUN_FORMAT:
            raise WeightzooError(
                f"{cfg_path} has format {fmt!r}, this weightzoo reads {RUN_FORMAT!r}; "
                f"retrain the metanetwork with this version")
        m = cfg["model"]
        specs = [NetworkSpec.from_dict(s) for s in m.get("specs", [m["spec"]])]
        hparams = {**get_metanetwork(m["model"]).legacy_hparams, **m["hparams"]}
        # The config's numbers size the model: a crafted one (hidden: 2000000000) is refused
        # before torch allocates it, not after a traceback or swapping (see weightspace.memory).
        sizes = ", ".join(f"{k}={v!r}" for k, v in m["hparams"].items())
        with allocation_limit(
                f"rebuilding the {m['model']} metanetwork of {cfg_path} (model.hparams: {sizes})",
                f"the config does not fit its {format_bytes((run_dir / WEIGHTS_FILE).stat().st_size)} of weights in "
                f"{WEIGHTS_FILE}: it is corrupt or was crafted; retrain the metanetwork with `zoo train`"):
            net = build_metanetwork(m["model"], specs if len(specs) > 1 else specs[0], m["out_dim"],
                                    **hparams)
        try:
            state = load_file(str(run_dir / WEIGHTS_FILE))
        except (SafetensorError, OSError) as e:
            raise WeightzooError(
                f"{run_dir / WEIGHTS_FILE} cannot be read ({e}): the file is truncated or corrupt; "
                f"retrain the metanetwork with `zoo train`") from e
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise WeightzooError(f"{run_dir / WEIGHTS_FILE} does not fit its config: {e}") from e
        net.eval()
        return cls(net=net, task=cfg["task"], targets=cfg["targets"],
                   normalizer=ParamNormalizer.from_dict(cfg["normalizer"]),
                   target_mean=cfg["target_mean"], target_std=cfg["target_std"],
                   classes=cfg.get("classes", []), training=cfg.get("training", {}),
                   data=cfg.get("data", {}))
