"""The Small CNN Zoo layout (Unterthiner et al. 2020, "Predicting Neural Network Accuracy from
Weights").

Layout (``SOURCE``)::

    weights.npy           float32 [n_rows, 4970]: one flattened network per row (checkpoints of runs)
    metrics.csv(.gz)      one row per weights row: config.* hyperparameters, modeldir, step,
                          train/test accuracy and loss
    layout.csv            varname, start_idx, end_idx, shape: where each variable sits in a row

Each variable is the slice ``[start_idx, end_idx)`` of a row, reshaped C-order to its
TensorFlow ``shape`` (that is how ``numpy`` flattens, the assumption here), then converted to
torch order: conv kernels HWIO -> OIHW, dense kernels ``[in, out]`` transposed. Variables pair up
in ``start_idx`` order as (kernel, bias) per layer onto the ``cnn`` preset of
:mod:`zoo_builders.architectures` (three stride-2 convolutions, global average pool, linear;
channels and kernel size read from the kernels): ``layers.{i}.weight/bias``, 4,970 parameters for
16 channels on one-channel 28x28 inputs. The ``config.activation`` column, where present, sets
each row's activation (one architecture per activation); otherwise ``activation`` does.

A row's ``model_id`` is ``<modeldir>-s<step>``: ``step`` must be a whole number and each
``(modeldir, step)`` pair one row (without a ``step`` column, each run one row); anything else is
refused naming the rows, before anything is written.

``weights.npy`` is read memory-mapped, ``rows_per_part`` rows at a time.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import torch
from tqdm.auto import tqdm

from catalog.format import Manifest
from catalog.network import ACTIVATIONS, NetworkSpec
from catalog.writer import ZooWriter
from zoo_builders.architectures import CNNConfig
from zoo_builders.importers.common import (
    ROWS_PER_PART,
    GroupWriter,
    SourceError,
    check_activation,
    column_name,
    dataset_entry,
    finish_import,
    no_empty_zoo_on_error,
    rows_schema,
    stable_id,
)

LAYOUT = "small-cnn-zoo"
LAYOUT_COLUMNS = ("varname", "start_idx", "end_idx", "shape")
#: metrics.csv's run and checkpoint columns: a model_id is ``<run>-s<step>``.
RUN_COLUMN, STEP_COLUMN = "modeldir", "step"


def _step(rec: Mapping, where: str) -> int:
    """A metrics row's checkpoint: its ``step`` (a whole number), 0 without a step column.

    Raises:
        SourceError: a step that is empty or not a whole number.
    """
    if STEP_COLUMN not in rec:
        return 0
    step = rec[STEP_COLUMN]
    if isinstance(step, str) and re.fullmatch(r"\s*\d+\s*", step):  # a column holding text too is read as text
        step = int(step)
    if isinstance(step, float) and step.is_integer():
        step = int(step)
    if not isinstance(step, int) or isinstance(step, bool):
        raise SourceError(f"{where}: column {STEP_COLUMN} is {'empty' if step is None else repr(step)}, not a whole "
                          f"number; each row's step (its checkpoint) must be one")
    return step


def read_layout(path: Path) -> list[tuple[str, int, int, tuple[int, ...]]]:
    """``layout.csv`` as ``[(varname, start, end, tf_shape)]`` in ``start`` order, checked to
    tile ``[0, end)`` with ``end - start = prod(shape)``. Shapes such as ``"(3, 3, 1, 16)"``
    are read as their integers (never evaluated).

    Raises:
        SourceError: a missing column, a variable whose size disagrees with its shape, gaps or
            overlaps between variables.
    """
    try:
        records = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types={"shape": "string", "varname": "string"})).to_pylist()
    except Exception as e:  # pyarrow's ArrowInvalid and friends
        raise SourceError(f"{path.name} is not a readable CSV file: {e}") from e
    if not records or any(c not in records[0] for c in LAYOUT_COLUMNS):
        raise SourceError(f"{path.name} needs the columns {', '.join(LAYOUT_COLUMNS)}")
    out = []
    for r in records:
        shape = tuple(int(s) for s in re.findall(r"\d+", str(r["shape"])))
        start, end = int(r["start_idx"]), int(r["end_idx"])
        if end - start != math.prod(shape):
            raise SourceError(f"{path.name}: {r['varname']} spans [{start}, {end}) = {end - start} values but "
                              f"its shape {list(shape)} has {math.prod(shape)}")
        out.append((str(r["varname"]), start, end, shape))
    out.sort(key=lambda v: v[1])
    pos = 0
    for name, start, end, _ in out:
        if start != pos:
            raise SourceError(f"{path.name}: {name} starts at {start}, expected {pos} (variables must tile the "
                              f"row without gaps or overlaps)")
        pos = end
    return out


def _torch_order(tf_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The permutation from a TensorFlow kernel to torch order (identity for biases)."""
    return {4: (3, 2, 0, 1), 3: (2, 1, 0), 2: (1, 0)}.get(len(tf_shape), tuple(range(len(tf_shape))))


def _spec(layout: list, activation: str, input_shape: Sequence[int] | None) -> tuple[NetworkSpec, list]:
    """The ``cnn`` preset spec the layout's kernels describe, and ``[(param, start, end, tf_shape)]``."""
    if len(layout) % 2:
        raise SourceError(f"layout.csv lists {len(layout)} variables; expected (kernel, bias) pairs")
    kernels = [v for v in layout[0::2]]
    for (kname, *_), (bname, *_) in zip(layout[0::2], layout[1::2]):
        if "kernel" not in kname or "bias" not in bname:
            raise SourceError(f"layout.csv: expected a kernel then its bias, got {kname!r}, {bname!r}")
    convs, dense = kernels[:-1], kernels[-1]
    if not convs or any(len(k[3]) != 4 for k in convs) or len(dense[3]) != 2:
        raise SourceError("layout.csv does not describe the Small CNN Zoo's network (convolutions with 4-D "
                          "HWIO kernels, then one dense layer)")
    in_ch, ksize = convs[0][3][2], convs[0][3][0]
    shape = tuple(input_shape) if input_shape is not None else (in_ch, 28, 28) if in_ch == 1 else (in_ch, 32, 32)
    cfg = CNNConfig(channels=tuple(k[3][3] for k in convs), kernel_size=ksize, activation=activation)
    spec = cfg.network_spec(shape, dense[3][1])
    params = spec.params
    placed = []
    for p, (_, start, end, tf_shape) in zip(params, layout):
        torch_shape = tuple(tf_shape[i] for i in _torch_order(tf_shape))
        if torch_shape != p.shape:
            raise SourceError(f"layout.csv: a variable of shape {list(tf_shape)} does not fit {p.name} "
                              f"{list(p.shape)} of the cnn preset")
        placed.append((p.name, start, end, tf_shape))
    return spec, placed


def _chunks(run_ids: Sequence[str], size: int) -> list[range]:
    """Consecutive ranges of about ``size`` rows that never split a run (a run longer than
    ``size`` is one range), so each run's checkpoints share one part."""
    out, start = [], 0
    while start < len(run_ids):
        end = min(start + size, len(run_ids))
        while start < end < len(run_ids) and run_ids[end] == run_ids[end - 1]:
            end -= 1
        if end == start:
            end = start + 1
            while end < len(run_ids) and run_ids[end] == run_ids[start]:
                end += 1
        out.append(range(start, end))
        start = end
    return out


def import_small_cnn_zoo(src: str | os.PathLike, out: str | os.PathLike, *, name: str | None = None,
                         activation: str = "relu", input_shape: Sequence[int] | None = None,
                         dataset: str | Mapping | None = None, rows_per_part: int = ROWS_PER_PART,
                         quiet: bool = False) -> Manifest:
    """Import a Small CNN Zoo directory as a zoo at ``out`` (resumable).

    Args:
        src: the directory with ``weights.npy``, ``metrics.csv(.gz)`` and ``layout.csv``.
        out: the zoo directory to write.
        name: the zoo's name (default: the directory's name).
        activation: the activation of rows without a ``config.activation`` (default ``relu``).
        input_shape: one example's shape (default ``(C, 28, 28)`` for one channel, else
            ``(C, 32, 32)``; it does not change the parameters).
        dataset: the dataset the models were evaluated on (a registered name or its config),
            recorded in the manifest so ``zoo verify --recompute`` re-evaluates them (default
            none).
        rows_per_part: rows per part and per read of the memory-mapped array.
        quiet: no progress bar.

    Returns:
        the finished zoo's manifest.

    Raises:
        SourceError: a missing file, a truncated ``weights.npy``, a ``layout.csv`` that
            disagrees with the array's width, row counts that differ, an unknown dataset.
    """
    check_activation(activation)
    src = Path(src)
    paths = {n: src / n for n in ("weights.npy", "layout.csv")}
    metrics_path = next((src / n for n in ("metrics.csv", "metrics.csv.gz") if (src / n).is_file()), None)
    missing = [n for n, p in paths.items() if not p.is_file()] + ([] if metrics_path else ["metrics.csv(.gz)"])
    if missing:
        raise SourceError(f"{src} is not a Small CNN Zoo directory: it lacks {', '.join(missing)}")
    try:
        weights = np.load(paths["weights.npy"], mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise SourceError(f"weights.npy cannot be read (truncated or not a .npy array?): {e}") from e
    if weights.ndim != 2 or weights.dtype != np.float32:
        raise SourceError(f"weights.npy is {weights.dtype} {list(weights.shape)}; expected float32 [n_rows, width]")
    layout = read_layout(paths["layout.csv"])
    if layout[-1][2] != weights.shape[1]:
        raise SourceError(f"layout.csv covers {layout[-1][2]} values per row but weights.npy rows have "
                          f"{weights.shape[1]}; they come from different zoos")
    try:
        records = pacsv.read_csv(metrics_path).to_pylist()
    except Exception as e:  # pyarrow's ArrowInvalid and friends
        raise SourceError(f"{metrics_path.name} is not a readable CSV file: {e}") from e
    if len(records) != weights.shape[0]:
        raise SourceError(f"{metrics_path.name} has {len(records)} rows but weights.npy has {weights.shape[0]}")

    rows, acts = [], []
    checkpoints: dict[tuple[str, int], int] = {}  # (modeldir, step) -> its row
    for i, rec in enumerate(records):
        run = str(rec.get("modeldir", f"row{i}"))
        step = _step(rec, f"{metrics_path.name} row {i + 1}")
        if RUN_COLUMN in rec:  # (run, step) makes the model_id: two rows must never share it
            first = checkpoints.setdefault((run, step), i + 1)
            if first != i + 1:
                why = (f"both have {STEP_COLUMN} {step}" if STEP_COLUMN in rec else
                       f"there is no {STEP_COLUMN} column to tell a run's checkpoints apart")
                raise SourceError(f"{metrics_path.name} rows {first} and {i + 1} are both {RUN_COLUMN} {run!r} and "
                                  f"{why}; each row is one checkpoint of its run: give each its {STEP_COLUMN}")
        act = str(rec.get("config.activation", activation)).lower()
        if act not in ACTIVATIONS:
            raise SourceError(f"{metrics_path.name} row {i + 1}: activation {act!r} is not one of "
                              f"{', '.join(ACTIVATIONS)}")
        acts.append(act)
        run_id = stable_id(run, "scz-")
        row = {"model_id": f"{run_id}-s{step}" if RUN_COLUMN in rec else stable_id(f"row{i}", "scz-"),
               "run_id": run_id, "checkpoint": step, "status": "ok", "source_layout": LAYOUT,
               "source_path": f"weights.npy:{i}"}
        for k, v in rec.items():
            col = column_name(k)
            row["source_" + col if col in row else col] = v
        rows.append(row)
    rows, schema = rows_schema(rows)
    specs = {a: _spec(layout, a, input_shape) for a in dict.fromkeys(acts)}

    build_spec = {"importer": LAYOUT, "source": str(src.resolve()), "activation": activation,
                  "input_shape": None if input_shape is None else list(input_shape)}
    ds_spec, ds_facts = dataset_entry(dataset)
    if ds_spec is not None:
        build_spec["dataset"] = ds_spec
    with no_empty_zoo_on_error(out), \
            ZooWriter(out, name or src.resolve().name, build_spec, datasets=ds_facts,
                      command=f"zoo import {LAYOUT} {src}") as writer:
        done = writer.done_model_ids()
        groups = GroupWriter(writer, schema)
        with tqdm(total=len(rows), disable=quiet, unit="model", desc=f"import {src.name}") as bar:
            for act, (spec, placed) in specs.items():
                todo = [i for i, a in enumerate(acts) if a == act and rows[i]["model_id"] not in done]
                todo.sort(key=lambda i: rows[i]["run_id"])  # stable: a run's rows stay in source order
                for chunk in _chunks([rows[i]["run_id"] for i in todo], rows_per_part):
                    idx = np.asarray([todo[j] for j in chunk])
                    block = np.asarray(weights[idx])  # [n, width], read from the memory map
                    stacked = {}
                    for pname, lo, hi, tf_shape in placed:
                        t = torch.from_numpy(block[:, lo:hi].reshape(len(idx), *tf_shape).copy())
                        stacked[pname] = t.permute(0, *(d + 1 for d in _torch_order(tf_shape))).contiguous()
                    finite = np.isfinite(block).all(axis=1)
                    part_rows = [{**rows[i], "status": "ok" if ok else "diverged"} for i, ok in zip(idx, finite)]
                    groups.add_stacked(spec, stacked, part_rows)
                    bar.update(len(idx))
        return finish_import(writer)
