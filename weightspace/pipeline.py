"""From a zoo to a trained metanetwork and back: :func:`train_on_zoo` and :func:`predict_on_zoo`.

``zoo train`` and ``zoo predict`` are these two functions plus option parsing and printing.

``train_on_zoo`` selects the networks (checkpoint 0, the initialization, is left out unless
``include_init``: an untrained network's accuracy says nothing about its weights beyond its
init, and the near-identical initial rows of every run would weigh on the model and the
metrics), splits them by run, trains with early stopping and writes the run directory::

    metanetwork.safetensors   the metanetwork's weights
    config.json               how to rebuild and apply it, and what it was trained on: model,
                              NetworkSpec(s), hyperparameters (and preset), task, targets,
                              normalization, training settings (epochs, patience, min_epochs,
                              threads, ...), data (zoo path and name, the target column's
                              type, --where, include_init, rows per split and per checkpoint,
                              architectures, split fractions, seed and a fingerprint of each
                              split's runs)
    metrics.json              test and validation metrics, best epoch, epochs run
    history.json              per-epoch train (and validation) loss
    seen_networks.parquet     the sha256 of every training and validation network (columns
                              sha256, split), so predictions on another zoo can tell them apart

``predict_on_zoo`` applies a run directory to the networks of a zoo. When that zoo is the one
the metanetwork was trained on, the training split is recomputed from the recorded settings
and checked against the recorded fingerprints, and metrics are reported per split: metrics
over all rows would mix networks the model was trained on with held-out ones. On another zoo
(or one whose split cannot be reproduced) rows are labelled by the recorded sha256: ``train`` /
``val`` for networks the model was trained or validated on, ``unseen`` for the others, and the
metrics are over the unseen rows.
"""

from __future__ import annotations

import inspect
import io
import math
import os
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from catalog import Zoo, open_zoo
from catalog.dataset import WeightDataset
from catalog.errors import WeightzooError
from catalog.export import SUFFIX_FORMATS, render_csv, render_json
from catalog.format import atomic_write_bytes
from catalog.paths import check_output_path
from catalog.split import (
    LINK_COLUMN,
    SPLITS,
    check_fractions,
    row_runs,
    run_splits,
    runs_fingerprint,
    runs_sharing_networks,
)
from weightspace.metrics import classification_metrics, regression_metrics
from weightspace.models.registry import (
    check_hparams,
    get_metanetwork,
    metanetwork_names,
    preset_hparams,
    preset_names,
)
from weightspace.train import check_seed, evaluate, fit, several_archs_error
from weightspace.trained import SEEN_FILE, TrainedMetanetwork

#: The split label of rows the training selection did not include (checkpoint 0 unless
#: ``include_init``, diverged runs, rows outside its ``where``).
OUTSIDE = "outside"
#: The split label, on another zoo, of rows that are none of the networks the model was trained
#: or validated on (by sha256).
UNSEEN = "unseen"
#: The splits whose networks a run records in its :data:`~weightspace.trained.SEEN_FILE`.
SEEN_SPLITS = ("train", "val")

Log = Callable[[str], None]


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class TrainResult:
    """What :func:`train_on_zoo` trained, measured and wrote.

    Args:
        model: the trained metanetwork (best validation epoch).
        run_dir: the run directory written.
        task: ``regression`` or ``classification``.
        metrics: ``{"test": ..., "val": ... or None, "best_epoch": ..., "epochs_run": ...}``
            (also in ``run_dir/metrics.json``).
        history: per-epoch losses.
        rows: networks per split.
        checkpoints: per split, ``{checkpoint: rows}``.
        arch_ids: the architectures trained on.
    """

    model: TrainedMetanetwork
    run_dir: Path
    task: str
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    rows: dict[str, int]
    checkpoints: dict[str, dict[int, int]]
    arch_ids: list[str]

    @property
    def test(self) -> dict[str, Any]:
        """The test metrics."""
        return self.metrics["test"]


@dataclass
class PredictResult:
    """What :func:`predict_on_zoo` predicted and measured.

    Args:
        predictions: the Parquet file written (``model_id``, ``pred_<target>``, and ``split``
            when the zoo is the training zoo, or when the run recorded its networks:
            ``train`` / ``val`` / ``unseen`` by sha256). Predicted classes have the target column's type
            and values (int32 classes as int32, 0.001 as 0.001, booleans as booleans).
        table: the same rows.
        target: the predicted column.
        metrics: against the zoo's target column over every row that has a value (on a zoo
            labelled by sha256: every ``unseen`` row; ``None`` when the zoo has no such column).
        training_zoo: whether the zoo is the one the model was trained on (by path or name).
        split_metrics: on the training zoo, metrics per split (``train`` / ``val`` / ``test``
            / ``outside``: rows the training selection did not include); on a zoo holding
            networks the model was trained or validated on, per ``train`` / ``val`` /
            ``unseen``; else ``None``.
        note: what the caller should tell the user about the metrics (e.g. that the zoo is
            the training zoo), or ``None``.
    """

    predictions: Path
    table: pa.Table
    target: str
    metrics: dict[str, Any] | None
    training_zoo: bool = False
    split_metrics: dict[str, dict[str, Any]] | None = None
    note: str | None = None
    rows_per_split: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.table.num_rows


# ====================================================================================== training
def train_on_zoo(
    zoo: str | os.PathLike | Zoo,
    target: str,
    model: str,
    *,
    where: str | None = None,
    include_init: bool = False,
    task: str = "auto",
    epochs: int = 50,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    batch_size: int = 64,
    augment: bool = False,
    patience: int = 10,
    min_epochs: int = 5,
    seed: int = 0,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    preset: str | None = None,
    hparams: Mapping[str, Any] | None = None,
    out: str | os.PathLike | None = None,
    threads: int = 1,
    progress: bool = True,
    log: Log | None = _to_stderr,
) -> TrainResult:
    """Train a metanetwork on a zoo's weights to predict one of its columns, and save the run.

    Args:
        zoo: a zoo directory (or ``hf://`` address, or an open :class:`~catalog.Zoo`).
        target: the metadata column to predict, e.g. ``"test_acc"``.
        model: ``statnn``, ``mlp``, ``dws``, ``nfn`` or ``gmn``. A zoo of several
            architectures trains one model on all of them when the model reads several
            (``gmn``; ``statnn``/``mlp`` when parameter shapes agree); ``dws``/``nfn`` need one
            (``where="arch_id = '...'"``).
        where: SQL condition on the ``models`` table selecting the networks (default: all).
        include_init: keep checkpoint-0 rows, the initializations (default ``False``).
        task: ``auto`` (classification for string/boolean columns, else regression),
            ``regression`` or ``classification``.
        epochs, lr, weight_decay, batch_size, augment, patience, min_epochs, seed: see
            :class:`~weightspace.train.TrainConfig` (``patience=0``: no early stopping;
            ``seed`` also seeds the split).
        fractions: ``(train, val, test)`` shares of the runs (default ``(0.8, 0.1, 0.1)``).
        preset: named hyperparameters of the model (``weightspace.models.registry``;
            default: the model's defaults); ``hparams`` override them key by key.
        hparams: metanetwork hyperparameters.
        out: the run directory (default ``runs/<zoo name>-<target>-<model>``).
        threads: torch threads while training (default ``1``; see ``zoo train --help``: on a
            shared 2-core machine more threads than free cores made torch 7x slower). The
            caller's setting is restored afterwards.
        progress: progress bars (default ``True``).
        log: where to say what is trained on (default: stderr; ``None``: silent).

    Returns:
        a :class:`TrainResult`.
    """
    get_metanetwork(model)  # fail fast, listing the valid names
    hp = check_hparams(model, {**preset_hparams(model, preset), **dict(hparams or {})})
    fr = check_fractions(fractions)
    if task not in ("auto", "regression", "classification"):
        raise WeightzooError(f"unknown task {task!r}; valid tasks: auto, regression, classification")
    if int(threads) < 1:
        raise WeightzooError(f"threads must be >= 1, got {threads}")
    check_seed(seed)
    z = zoo if isinstance(zoo, Zoo) else open_zoo(zoo)
    run_dir = Path(out) if out is not None else Path("runs") / f"{z.name}-{target}-{model}"
    # before any work
    check_output_path(run_dir, "out", "metanetwork run", flag="--out" if out is not None else "--out; default")
    if target not in z.table.column_names:
        raise WeightzooError(
            f"zoo {z.name!r} has no column {target!r}; columns: {', '.join(z.table.column_names)}")
    selection_where = _training_where(where, include_init)

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        selection = z.select(where=selection_where)
        if len(selection) == 0 and not include_init and len(z.select(where=where, limit=1)):
            if "generated" in z.manifest.spec:  # generated networks are stored as checkpoint 0
                raise WeightzooError(
                    f"zoo {z.name!r} is generated: its networks are stored as checkpoint 0 (they have "
                    f"no training checkpoints), which training leaves out by default as "
                    f"initializations; pass --include-init (include_init=True) to train on them")
            raise WeightzooError(
                "every selected row is checkpoint 0 (an initialization), and those are left out "
                "by default; pass --include-init (include_init=True) to train on them")
        specs = selection.network_specs if len(selection) else {}
        problem = get_metanetwork(model).arch_problem(list(specs.values()), hp)
        if problem is not None:  # before loading any weights
            raise several_archs_error(problem, specs)
        splits = {s: WeightDataset(selection, [target], s, fractions=fr, seed=seed) for s in SPLITS}
        if task == "auto":  # string and boolean columns are classes, numbers regression
            boolean = pa.types.is_boolean(z.table.schema.field(target).type)
            task = "classification" if splits["train"].classes or boolean else "regression"
        rows = {s: len(d) for s, d in splits.items()}
        checkpoints = {s: _checkpoint_counts(d) for s, d in splits.items()}
        arch_ids = splits["train"].arch_ids
        if log is not None:
            log(_describe_rows(model, z.name, target, task, rows, checkpoints, include_init,
                               len(arch_ids)))
            left_out = len(selection) - sum(rows.values())
            if left_out:
                log(f"{left_out} selected rows left out: their status is not 'ok' (e.g. diverged runs)")
            meta = selection.metadata(["run_id", "status", LINK_COLUMN])
            shared = runs_sharing_networks(meta.filter(pc.equal(meta.column("status"), "ok")))
            if shared:
                log(f"{shared} runs hold a network that another run holds too (equal sha256, e.g. one seed's "
                    f"initialization under several learning rates): such runs are kept in one split")
        info = {"zoo": _local_path(z), "zoo_name": z.name, "target_type": _column_type(z, target),
                "where": where, "include_init": include_init, "selection_where": selection_where,
                "status": "ok", "fractions": list(fr), "split_seed": seed, "split_link": LINK_COLUMN,
                "rows": rows,
                "checkpoints": {s: {str(c): n for c, n in cs.items()} for s, cs in checkpoints.items()},
                "run_fingerprints": {s: runs_fingerprint(d.table.column("run_id").to_pylist())
                                     for s, d in splits.items()}}
        val = splits["val"] if rows["val"] else None
        trained, history = fit(model, splits["train"], val, task=task, epochs=epochs, lr=lr,
                               weight_decay=weight_decay, batch_size=batch_size, augment=augment,
                               patience=patience, min_epochs=min_epochs, seed=seed,
                               progress=progress, hparams=hp, data_info=info)
        trained.training.update({"threads": int(threads), "preset": preset})
        metrics = {"test": evaluate(trained, splits["test"]) if rows["test"] else None,
                   "val": evaluate(trained, val) if val is not None else None,
                   "best_epoch": trained.training["best_epoch"],
                   "epochs_run": trained.training["epochs_run"]}
    finally:
        torch.set_num_threads(previous_threads)
    trained.save(run_dir, metrics=metrics, history=history, files={SEEN_FILE: _seen_bytes(splits)})
    # Replacing an earlier run: its predictions came from the metanetwork just overwritten.
    for stale in run_dir.glob("predictions-*.parquet"):
        stale.unlink()
    return TrainResult(trained, run_dir, task, metrics, history, rows, checkpoints, arch_ids)


def _seen_bytes(splits: Mapping[str, WeightDataset]) -> bytes:
    """The Parquet bytes of :data:`SEEN_FILE`: ``sha256`` and ``split`` of every training and
    validation network (sorted, so the same run writes the same bytes)."""
    pairs = sorted({(sha, s) for s in SEEN_SPLITS for sha in splits[s].selection.column("sha256") if sha})
    table = pa.table({"sha256": pa.array([p[0] for p in pairs], pa.string()),
                      "split": pa.array([p[1] for p in pairs], pa.string())})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _read_seen(run_dir: str | os.PathLike) -> dict[str, str] | None:
    """``{sha256: split}`` of the networks the run was trained / validated on (a network in both:
    ``train``), or ``None`` for a run saved before runs recorded them."""
    path = Path(run_dir) / SEEN_FILE
    if not path.is_file():
        return None
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise WeightzooError(f"{path} cannot be read ({e}): it is truncated or corrupt; train the "
                             f"metanetwork again (zoo train) to write it") from e
    if not {"sha256", "split"} <= set(table.column_names):
        raise WeightzooError(f"{path} lacks the columns sha256 and split (it has {', '.join(table.column_names)}); "
                             f"train the metanetwork again (zoo train) to write it")
    seen: dict[str, str] = {}
    for sha, split in zip(table.column("sha256").to_pylist(), table.column("split").to_pylist()):
        if sha is not None and seen.get(sha) != SEEN_SPLITS[0]:
            seen[sha] = split
    return seen


def _column_type(z: Zoo, column: str) -> str:
    """The Arrow type of a column, by name (a dictionary-encoded column: its values' type)."""
    typ = z.table.schema.field(column).type
    return str(typ.value_type if pa.types.is_dictionary(typ) else typ)


def _class_type(model: TrainedMetanetwork) -> pa.DataType | None:
    """The type of the target column a classifier was trained on, so that predictions are stored
    as the column's own values (``None``: not recorded, as in runs of older versions)."""
    name = model.data.get("target_type")
    try:
        return pa.type_for_alias(name) if isinstance(name, str) else None
    except ValueError:  # a type without a short name: let Arrow infer it from the labels
        return None


def _training_where(where: str | None, include_init: bool) -> str | None:
    """``where``, without checkpoint-0 rows unless ``include_init``."""
    if include_init:
        return where
    return f"({where}) AND checkpoint <> 0" if where else "checkpoint <> 0"


def _checkpoint_counts(ds: WeightDataset) -> dict[int, int]:
    if not len(ds):
        return {}
    return dict(sorted(Counter(ds.selection.column("checkpoint")).items()))


def _describe_rows(model: str, zoo_name: str, target: str, task: str, rows: Mapping[str, int],
                   checkpoints: Mapping[str, Mapping[int, int]], include_init: bool,
                   n_archs: int) -> str:
    per_ckpt = ", ".join(f"{c}: {n}" for c, n in checkpoints["train"].items())
    init = ("checkpoint 0 (initialization) included" if include_init else
            "checkpoint 0 (initialization) left out; --include-init keeps it")
    archs = f", {n_archs} architectures" if n_archs > 1 else ""
    return (f"{model} on {zoo_name}: predict {target!r} ({task}); training on {rows['train']} "
            f"networks (rows per checkpoint {per_ckpt}){archs}; val {rows['val']}, test "
            f"{rows['test']}; split by run_id; {init}")


def _local_path(z: Zoo) -> str | None:
    root = getattr(z, "root", None)
    return str(Path(root).resolve()) if root is not None else None


# ====================================================================================== prediction
def _prediction_format(path: Path | None) -> str:
    """The format of the predictions file from its extension (default Parquet)."""
    if path is None:
        return "parquet"
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in SUFFIX_FORMATS:
        raise WeightzooError(
            f"cannot tell the format of out={str(path)!r} (--out) from its extension "
            f"{('.' + suffix) if suffix else '(none)'}; name the file "
            f"{', '.join('*.' + k for k in SUFFIX_FORMATS)}")
    return SUFFIX_FORMATS[suffix]


def predict_on_zoo(
    run_dir: str | os.PathLike,
    zoo: str | os.PathLike | Zoo,
    *,
    where: str | None = None,
    out: str | os.PathLike | None = None,
    batch_size: int = 256,
    progress: bool = True,
) -> PredictResult:
    """Apply the metanetwork of a run directory to the networks of a zoo; write the predictions.

    Args:
        run_dir: a directory written by :func:`train_on_zoo` (``zoo train``).
        zoo: the zoo of networks to read (any architectures the model reads).
        where: SQL condition selecting the networks (default: all).
        out: the file to write, in the format its extension names (``.parquet``, ``.csv``,
            ``.json``; default ``<run_dir>/predictions-<zoo name>.parquet``).
        batch_size: networks per forward pass (default ``256``).
        progress: a progress bar (default ``True``).

    Returns:
        a :class:`PredictResult`; on the training zoo its metrics come per split.
    """
    path = check_output_path(out, "out", None, flag="--out") if out is not None else None
    # The format comes from the extension; an unknown one fails before any work.
    fmt = _prediction_format(path)
    model = TrainedMetanetwork.load(run_dir)
    z = zoo if isinstance(zoo, Zoo) else open_zoo(zoo)
    selection = z.select(where=where)
    if len(selection) == 0:
        raise WeightzooError(f"where={where!r} (--where) selects no networks of zoo {z.name!r}; widen it"
                             if where else f"zoo {z.name!r} has no networks")
    target = model.targets[0]
    pred = model.predict(selection, batch_size=batch_size, progress=progress)
    column = f"pred_{target}"
    # Classes in the target column's own type (an int32 class stays int32, True stays a boolean).
    values = (pa.array([model.classes[i] for i in pred.tolist()], type=_class_type(model))
              if model.task == "classification" else pred[:, 0].double().numpy())
    columns: dict[str, Any] = {"model_id": selection.column("model_id"), column: values}

    training_zoo, split_of_row, note = _training_splits(model, z, selection)
    by_sha = split_of_row is None  # another zoo, or the split cannot be reproduced
    if by_sha:
        split_of_row, note = _seen_splits(run_dir, selection, note)
    if split_of_row is not None:
        columns["split"] = split_of_row
    table = pa.table(columns)
    path = path if path is not None else Path(run_dir) / f"predictions-{z.name}.parquet"
    if fmt == "parquet":
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        atomic_write_bytes(path, buffer.getvalue())
    else:
        atomic_write_bytes(path, {"csv": render_csv, "json": render_json}[fmt](table).encode())

    metrics = split_metrics = None
    rows_per_split: dict[str, int] = {}
    if target in z.table.column_names:
        truths = selection.column(target)
        labels = np.asarray(split_of_row if split_of_row is not None else [], dtype=object)
        # On another zoo the headline metrics leave out the networks the model saw.
        keep = np.flatnonzero(labels == UNSEEN) if by_sha and split_of_row is not None else np.arange(len(truths))
        metrics = _metrics(model, pred[torch.from_numpy(keep)], [truths[i] for i in keep.tolist()])
        if metrics is not None and metrics.get("left_out"):
            dropped = (f"{metrics['left_out']} rows with a non-finite {target} or prediction (e.g. "
                       f"diverged runs) were left out of the metrics")
            note = f"{note}; {dropped}" if note else dropped
        if split_of_row is not None and (not by_sha or len(keep) < len(truths)):
            split_metrics = {}
            for name in ((*SEEN_SPLITS, UNSEEN) if by_sha else (*SPLITS, OUTSIDE)):
                idx = np.flatnonzero(labels == name)
                rows_per_split[name] = len(idx)
                m = _metrics(model, pred[torch.from_numpy(idx)], [truths[i] for i in idx.tolist()])
                if m is not None:
                    split_metrics[name] = m
    return PredictResult(path, table, target, metrics, training_zoo, split_metrics, note,
                         rows_per_split)


def _seen_splits(run_dir: str | os.PathLike, selection, note: str | None) -> tuple[list[str] | None, str | None]:
    """On a zoo whose split is not reproduced: each selected row's label by its sha256 (``train`` /
    ``val`` if the model was trained / validated on that network, else ``unseen``) and the note,
    or ``(None, note)`` for a run saved before runs recorded their networks (the note says
    overlap was not checked)."""
    seen = _read_seen(run_dir)
    if seen is None:
        if note is not None:  # the training zoo's name, but other runs
            return None, (f"{note}: the metrics below are over all rows and may include networks the model "
                          f"was trained on")
        return None, (f"this run was saved before runs recorded their training networks ({SEEN_FILE}), so "
                      f"overlap with the zoo was not checked: the metrics may include networks the model "
                      f"was trained on (train it again to check)")
    labels = [seen.get(sha, UNSEEN) if sha else UNSEEN for sha in selection.column("sha256")]
    counts = Counter(labels)
    overlap = len(labels) - counts[UNSEEN]
    if not overlap:
        found = "none of its rows is a network the model was trained or validated on (by sha256)"
        return labels, f"{note}; {found}" if note is not None else None
    what = " and ".join(f"{counts[s]} {'training' if s == 'train' else 'validation'}"
                        for s in SEEN_SPLITS if counts[s])
    found = (f"{overlap} of {len(labels)} rows are networks the model was trained or validated on ({what} "
             f"networks, by sha256): left out of the metrics, which are over the {counts[UNSEEN]} "
             f"'{UNSEEN}' rows; the split column marks them")
    return labels, f"{note}; {found}" if note is not None else found


def _training_splits(model: TrainedMetanetwork, z: Zoo, selection) -> tuple[bool, list[str] | None, str | None]:
    """Whether ``z`` is the model's training zoo, the split of each selected row (by its run;
    ``None`` when not the training zoo or the split cannot be reproduced), and a note."""
    data = model.data
    same_path = data.get("zoo") is not None and data.get("zoo") == _local_path(z)
    same_name = data.get("zoo_name") == z.name
    if not (same_path or same_name) or "fractions" not in data:
        return False, None, None
    how = "path" if same_path else "name"
    train_sel = z.select(where=data.get("selection_where", data.get("where")))
    # Runs of older versions were split by run alone (no "split_link"): recompute them so.
    link = data.get("split_link")
    meta = train_sel.metadata(["model_id", "run_id", "status", *([link] if link else [])])
    status = data.get("status", "ok")
    if status is not None:
        meta = meta.filter(pc.equal(meta.column("status"), status))
    runs = run_splits(meta, data["fractions"], data.get("split_seed", 0), link=link)
    recorded = data.get("run_fingerprints")
    if recorded:
        same = all(runs_fingerprint(r for r, s in runs.items() if s == split) == recorded.get(split)
                   for split in SPLITS)
    else:  # run directories of older versions: compare the rows per split
        counts = Counter(runs[r] for r in row_runs(meta))
        same = all(counts.get(s, 0) == data.get("rows", {}).get(s, -1) for s in SPLITS)
    if not same:  # predict_on_zoo labels the rows by sha256 instead, if the run recorded them
        return True, None, (
            f"{z.name} has the training zoo's {how}, but its runs are not those the metanetwork "
            f"was split on, so the split cannot be reproduced")
    selected = set(meta.column("model_id").to_pylist())
    rows = selection.metadata(["model_id", "run_id"])
    labels = [runs[r] if m in selected else OUTSIDE
              for m, r in zip(rows.column("model_id").to_pylist(), row_runs(rows))]
    return True, labels, (
        f"{z.name} is the zoo this metanetwork was trained on (same {how}): metrics per split "
        f"(split by run_id with the training fractions {data['fractions']} and seed "
        f"{data.get('split_seed', 0)}); the model was trained on the 'train' rows"
        + (f"; '{OUTSIDE}' rows were not in the training selection (e.g. checkpoint 0, "
           f"diverged runs, rows outside its --where)" if OUTSIDE in labels else ""))


def _metrics(model: TrainedMetanetwork, pred: torch.Tensor, truths: list[Any]) -> dict[str, Any] | None:
    """Metrics of predictions against the truth, over the rows that have a true value."""
    def usable(i: int, v: Any) -> bool:  # diverged runs: NaN targets (and NaN predictions)
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return False
        return model.task == "classification" or bool(torch.isfinite(pred[i]).all())

    keep = [i for i, v in enumerate(truths) if usable(i, v)]
    left_out = sum(v is not None for v in truths) - len(keep)
    if not keep:
        return {"n": 0, "left_out": left_out} if left_out else None
    pred = pred[torch.tensor(keep, dtype=torch.long)]
    values = [truths[i] for i in keep]
    if model.task == "classification":
        lookup = {_class_key(c): i for i, c in enumerate(model.classes)}
        m = classification_metrics(pred, torch.tensor([lookup.get(_class_key(v), -1) for v in values]))
    else:
        m = regression_metrics(pred[:, 0], torch.tensor(values, dtype=torch.float64))
    return {**m, "left_out": left_out} if left_out else m


def _class_key(value: Any) -> Any:
    """A class label as training saw it: numbers and booleans reach the model as float32 targets
    (so 0.001 was learnt as 0.0010000000474974513 and True as 1), text as itself. The run records
    the labels as the column holds them (0.001, True); both they and the truths are keyed so."""
    if isinstance(value, bool | int | float | np.number | np.bool_):
        return float(np.float32(value))
    return str(value)


# ====================================================================================== help
def metanetwork_hparams(name: str) -> dict[str, Any]:
    """The hyperparameters of a registered metanetwork with their defaults (from its
    constructor's signature)."""
    params = inspect.signature(get_metanetwork(name).__init__).parameters
    return {k: (p.default if p.default is not inspect.Parameter.empty else None)
            for k, p in params.items() if k not in ("self", "spec", "out_dim")}


def hparams_help() -> list[str]:
    """One line per registered metanetwork: its hyperparameters with defaults, and presets."""
    lines = []
    for name in metanetwork_names():
        hp = " ".join(f"{k}={_fmt_default(v)}" for k, v in metanetwork_hparams(name).items())
        lines.append(f"{name}: {hp}; presets: {', '.join(preset_names(name))}")
    return lines


def _fmt_default(v: Any) -> str:
    if isinstance(v, tuple | list):
        return ",".join(str(x) for x in v)
    return str(v)
