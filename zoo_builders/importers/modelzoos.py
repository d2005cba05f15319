"""The Model Zoos layout (Schürholt et al., NeurIPS 2022 Datasets and Benchmarks): Ray Tune
trial folders.

Layout (``SOURCE``)::

    NN_tune_trainable_<id>_<k=v,...>_<date>/     one folder per trial (training run)
        params.json                              flat hyperparameters: model::type, model::nlin,
                                                 model::dropout, model::init_type, optim::optimizer,
                                                 optim::lr, optim::wd, seed, training::batchsize, ...
        result.json                              JSON lines, one per epoch: test_acc, train_acc,
                                                 test_loss, train_loss, ggap, training_iteration, ...
        checkpoint_000000/checkpoints            torch-saved state dict, no extension (000000: the
        checkpoint_000001/checkpoints            initialization; 00000k: after epoch k)
        ...
    dataset.pt                                   the zoo's data (a pickle): never loaded

A trial folder is any sub-folder holding ``params.json``, ``result.json`` or ``checkpoint_*``
folders; one without ``params.json`` is an error. Each (trial, checkpoint) becomes one row:
``run_id`` per trial, ``checkpoint`` = the epoch number of ``checkpoint_<k>``, every
``params.json`` key as a typed column (:func:`~zoo_builders.importers.common.column_names`:
``model::nlin`` -> ``model__nlin``; a taken name becomes ``source_<name>``, with a warning), and
the scalar fields of the ``result.json`` line whose ``training_iteration`` equals ``k`` (Ray Tune
counts iterations from 1, so the initialization, checkpoint 0, has no metrics unless ``result.json``
has a line with ``training_iteration`` 0; its metric columns are then empty). Where a trial was
restored by Ray Tune and ``result.json`` repeats iterations, the last line of each iteration counts
(the repeat rewrote its checkpoint). A result field named like a ``params.json`` column (ignoring
case) gets a ``result_`` prefix. Nested result fields (Ray's ``config`` copy of ``params.json``) are left out.

Checkpoints are read with :func:`~zoo_builders.importers.statedict.read_state_dict`
(``torch.load(weights_only=True)``): a pickle holding anything but tensors is refused, never
executed.

Architectures, from the tensors (``model::nlin`` gives the activation: ``tanh``, ``relu``,
``sigmoid``, ``gelu``, ``leakyrelu``):

* **CNN-s** (the ``CNN`` class of their model definitions), keys
  ``module_list.{0,3,6,9,11}.{weight,bias}`` of shapes ``(8,C,5,5), (6,8,5,5), (4,6,2,2), (20,36),
  (O,20)``: ``conv5 -> maxpool2 -> act -> conv5 -> maxpool2 -> act -> conv2 -> act -> flatten ->
  linear -> act -> linear`` on ``C x 28 x 28`` images, the ``modelzoo-cnn`` preset (2,464
  parameters at C = 1, O = 10).
* **CNN-l** (the ``CNN3`` class of their model definitions, made for 32x32 inputs; which zoos
  use it is not checked here), keys ``module_list.{0,4,8,13,16}``
  of shapes ``(16,C,3,3), (32,16,3,3), (15,32,3,3), (20,60), (O,20)``: three ``conv3 -> maxpool2 ->
  act -> dropout`` blocks, flatten, ``linear -> act -> dropout -> linear`` on ``C x 32 x 32``
  (10,853 parameters at C = 3, O = 10; ``CNN3`` always holds its dropout modules, so the indices
  do not depend on ``model::dropout``). Stored as a graph with the same parameter names.

Dropout changes training only, so neither architecture holds it: an imported model computes the
trial's evaluation-mode function, and ``model::dropout`` stays a column. Other networks are
read as a layer chain (:func:`~zoo_builders.importers.statedict.infer_chain`) or take ``arch``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from catalog.errors import WeightzooError
from catalog.format import Manifest, parse_json
from catalog.network import NetworkSpec
from catalog.writer import ZooWriter
from zoo_builders.graph_architectures import ModelZooCNNConfig
from zoo_builders.importers.common import (
    ROWS_PER_PART,
    OrderNote,
    RunWriter,
    SourceError,
    column_names,
    dataset_entry,
    finish_import,
    json_scalar,
    no_empty_zoo_on_error,
    parse_arch_options,
    rows_schema,
    stable_id,
    warn_renames,
)
from zoo_builders.importers.statedict import SpecCache, fit_arch, infer_chain, read_state_dict

LAYOUT = "modelzoos"
PARAMS_FILE = "params.json"
RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoints"
CHECKPOINT_DIR = re.compile(r"checkpoint_(\d+)")
#: ``model::nlin`` values of their code -> the activation names of :mod:`catalog.nodes`.
NLIN = {"tanh": "tanh", "relu": "relu", "sigmoid": "sigmoid", "gelu": "gelu", "leakyrelu": "leaky_relu",
        "leaky_relu": "leaky_relu", "identity": "identity"}
#: ``(module index, weight shape with C/O as None)`` of each parameterized layer of CNN-s and CNN-l.
CNN_S = ((0, (8, None, 5, 5)), (3, (6, 8, 5, 5)), (6, (4, 6, 2, 2)), (9, (20, 36)), (11, (None, 20)))
CNN_L = ((0, (16, None, 3, 3)), (4, (32, 16, 3, 3)), (8, (15, 32, 3, 3)), (13, (20, 60)), (16, (None, 20)))


@dataclass
class Trial:
    """One trial folder, read except for its weights."""

    name: str
    params: dict[str, Any]
    results: dict[int, dict[str, Any]]  # training_iteration -> the line's scalar fields
    checkpoints: list[tuple[int, str]] = field(default_factory=list)  # (epoch, path relative to SOURCE)


# ================================================================================ reading
def _is_trial(path: Path) -> bool:
    return path.is_dir() and ((path / PARAMS_FILE).exists() or (path / RESULT_FILE).exists()
                              or any(CHECKPOINT_DIR.fullmatch(p.name) for p in path.iterdir() if p.is_dir()))


def read_trial(src: Path, folder: Path) -> Trial:
    """``params.json``, ``result.json`` and the checkpoint list of one trial folder.

    Raises:
        SourceError: no ``params.json``, a file that is not JSON (naming the line of
            ``result.json``), no checkpoints, a checkpoint folder without its ``checkpoints`` file.
    """
    name = folder.name
    params_path = folder / PARAMS_FILE
    if not params_path.is_file():
        raise SourceError(f"trial {name} has no {PARAMS_FILE}; every trial folder of the modelzoos layout needs "
                          f"its hyperparameters (move the folder out of {src} to leave it out)")
    params = parse_json(params_path.read_bytes(), f"{name}/{PARAMS_FILE}", SourceError)
    if not isinstance(params, dict):
        raise SourceError(f"{name}/{PARAMS_FILE} is not a JSON object of hyperparameters")
    results: dict[int, dict[str, Any]] = {}
    result_path = folder / RESULT_FILE
    if result_path.is_file():
        for i, line in enumerate(result_path.read_text(errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            rec = parse_json(line, f"{name}/{RESULT_FILE} line {i}", SourceError,
                             "it is truncated or garbled: repair or delete that line")
            if not isinstance(rec, dict):
                raise SourceError(f"{name}/{RESULT_FILE} line {i} is not a JSON object")
            it = rec.get("training_iteration")
            if isinstance(it, bool) or not isinstance(it, int):
                raise SourceError(f"{name}/{RESULT_FILE} line {i} has no integer training_iteration "
                                  f"(got {it!r}), so it cannot be matched to a checkpoint")
            # A trial Ray Tune restored from a checkpoint appends the repeated iterations again;
            # their checkpoints were overwritten by the repeat, so the later line is the one that
            # describes them.
            results[it] = {k: v for k, v in rec.items() if not isinstance(v, dict | list)}
    checkpoints = []
    for p in sorted(folder.iterdir()):
        m = CHECKPOINT_DIR.fullmatch(p.name)
        if not (m and p.is_dir()):
            continue
        if not (p / CHECKPOINT_FILE).is_file():
            raise SourceError(f"{name}/{p.name} has no {CHECKPOINT_FILE} file (the state dict of that epoch)")
        checkpoints.append((int(m.group(1)), (p / CHECKPOINT_FILE).relative_to(src).as_posix()))
    if not checkpoints:
        raise SourceError(f"trial {name} has no checkpoint_<epoch>/{CHECKPOINT_FILE}; nothing to import")
    checkpoints.sort()
    if len({e for e, _ in checkpoints}) != len(checkpoints):
        raise SourceError(f"trial {name} has two checkpoint folders for one epoch")
    return Trial(name, params, results, checkpoints)


def trial_folders(src: Path) -> list[Path]:
    """The trial folders of ``src``, sorted by name."""
    return sorted(p for p in src.iterdir() if _is_trial(p))


def activation_of(params: Mapping[str, Any], where: str) -> str:
    """The activation ``model::nlin`` names (``tanh`` when absent, their code's default for the zoos).

    Raises:
        SourceError: an activation the spec system has no name for.
    """
    nlin = params.get("model::nlin", "tanh")
    act = NLIN.get(str(nlin).lower())
    if act is None:
        raise SourceError(f"{where}: model::nlin {nlin!r} is not an activation a zoo architecture expresses "
                          f"({', '.join(sorted(NLIN))})")
    return act


def _matches(tensors: Mapping[str, Tensor], layout: tuple) -> bool:
    expected = [f"module_list.{i}.{leaf}" for i, _ in layout for leaf in ("weight", "bias")]
    if sorted(tensors) != sorted(expected):
        return False
    for i, shape in layout:
        w, b = tensors[f"module_list.{i}.weight"], tensors[f"module_list.{i}.bias"]
        if w.dim() != len(shape) or any(s is not None and s != int(d) for s, d in zip(shape, w.shape)):
            return False
        if tuple(b.shape) != (w.shape[0],):
            return False
    return True


def cnn_l_spec(channels: int, n_outputs: int, activation: str, input_shape: Sequence[int] | None = None
               ) -> NetworkSpec:
    """The CNN-l graph (``modelzoo-cnn`` with ``size="l"``), on ``C x 32 x 32`` by default."""
    shape = tuple(input_shape) if input_shape is not None else (channels, 32, 32)
    return ModelZooCNNConfig(activation=activation, size="l").network_spec(shape, n_outputs)


def infer_spec(tensors: Mapping[str, Tensor], activation: str, input_shape: Sequence[int] | None,
               where: str, notes: list[OrderNote] | None = None) -> NetworkSpec:
    """CNN-s, CNN-l, or the layer chain the tensors form (whose inferred layer order is appended
    to ``notes``, when given: the two CNNs' order is known).

    Raises:
        SourceError: tensors of neither CNN that form no chain (naming the tensor), or an input
            shape the network does not fit.
    """
    try:
        if _matches(tensors, CNN_S):
            w0 = tensors["module_list.0.weight"]
            spec = ModelZooCNNConfig(activation=activation).network_spec(
                tuple(input_shape) if input_shape is not None else (int(w0.shape[1]), 28, 28),
                int(tensors["module_list.11.weight"].shape[0]))
        elif _matches(tensors, CNN_L):
            spec = cnn_l_spec(int(tensors["module_list.0.weight"].shape[1]),
                              int(tensors["module_list.16.weight"].shape[0]), activation, input_shape)
        else:
            return infer_chain(tensors, activation, input_shape, where, notes)
    except SourceError:
        raise
    except WeightzooError as e:  # a spec that does not fit the input shape
        raise SourceError(f"{where}: {e}") from e
    return fit_arch(spec, tensors, where)


def read_checkpoint(src: Path, rel: str) -> dict[str, Tensor]:
    """The state dict at ``src / rel`` (every checkpoint file is named ``checkpoints``, so a
    refusal names the path relative to ``src``)."""
    return read_state_dict(src / rel, rel)


# ================================================================================ rows
#: The columns :func:`_rows` fills itself (``trial``: the trial folder's name).
_OWN_COLUMNS = ("source_layout", "source_path", "trial")


def _columns(trials: Sequence[Trial]) -> tuple[dict[str, str], dict[str, str]]:
    """``({params.json key: column}, {result key: column})`` over every trial
    (:func:`~zoo_builders.importers.common.column_names`; a taken name becomes ``source_<name>``
    for a parameter, ``result_<name>`` for a result), the renames warned about once."""
    params = column_names({k for t in trials for k in t.params}, _OWN_COLUMNS)
    results = column_names({k for t in trials for r in t.results.values() for k in r},
                           (*_OWN_COLUMNS, *params.values()), prefix="result_")
    warn_renames(params, PARAMS_FILE)
    warn_renames(results, RESULT_FILE)
    return params, results


def _rows(trial: Trial, columns: tuple[dict[str, str], dict[str, str]] | None = None) -> list[dict[str, Any]]:
    params, results = _columns([trial]) if columns is None else columns
    run_id = stable_id(trial.name, "mz-")
    base: dict[str, Any] = {"trial": trial.name}
    for k, v in trial.params.items():
        base[params[k]] = json_scalar(v)
    rows = []
    for epoch, rel in trial.checkpoints:
        row: dict[str, Any] = {"model_id": f"{run_id}-e{epoch}", "run_id": run_id, "checkpoint": epoch,
                               "status": "ok", "source_layout": LAYOUT, "source_path": rel, **base}
        for k, v in trial.results.get(epoch, {}).items():
            row[results[k]] = v
        rows.append(row)
    return rows


# ================================================================================ import
def import_modelzoos(src: str | os.PathLike, out: str | os.PathLike, *, name: str | None = None,
                     arch: str | os.PathLike | Mapping | NetworkSpec | None = None,
                     arch_options: Sequence[str] | Mapping[str, Any] | None = None,
                     input_shape: Sequence[int] | None = None, dataset: str | Mapping | None = None,
                     rows_per_part: int = ROWS_PER_PART, quiet: bool = False) -> Manifest:
    """Import a Model Zoos directory of Ray Tune trial folders as a zoo at ``out`` (resumable:
    run it again after an interruption; finished trials are skipped).

    Args:
        src: the zoo directory holding the trial folders.
        out: the zoo directory to write.
        name: the zoo's name (default: the directory's name).
        arch: the architecture instead of inferring it (a preset name, a spec JSON file, a spec
            dict or a :class:`NetworkSpec`); a preset takes each trial's ``model::nlin``.
        arch_options: the preset's options.
        input_shape: one example's shape (default ``C x 28 x 28`` for CNN-s, ``C x 32 x 32`` for
            CNN-l; needed for other convolutional nets and presets).
        dataset: the dataset the models were evaluated on (a registered name or its config),
            recorded so ``zoo verify --recompute`` can re-evaluate them (default none).
        rows_per_part: models per part (a trial is never split across parts).
        quiet: no progress bar.

    Returns:
        the finished zoo's manifest.

    Raises:
        SourceError: no trial folders, a trial without ``params.json``, a garbled ``result.json``
            line, a checkpoint that is not a plain state dict, tensors no architecture fits. All
            metadata and every checkpoint are read (and checked) before anything is written, so
            a bad source leaves no zoo (or an existing one as it was); an import interrupted
            later keeps its whole trials: run it again to resume.
    """
    src = Path(src)
    if not src.is_dir():
        raise SourceError(f"{src} is not a directory; the modelzoos layout is a folder of Ray Tune trial folders")
    folders = trial_folders(src)
    if not folders:
        raise SourceError(f"{src} holds no trial folders (sub-folders with {PARAMS_FILE}, {RESULT_FILE} and "
                          f"checkpoint_<epoch>/{CHECKPOINT_FILE})")
    trials = [read_trial(src, f) for f in folders]
    acts = [activation_of(t.params, t.name) for t in trials]
    columns = _columns(trials)
    per_trial = [_rows(t, columns) for t in trials]
    flat, schema = rows_schema([r for rows in per_trial for r in rows])
    it = iter(flat)
    per_trial = [[next(it) for _ in rows] for rows in per_trial]  # the rows with every column

    options = parse_arch_options(arch_options)
    preset = None if arch is None else (arch.to_dict() if isinstance(arch, NetworkSpec) else
                                        dict(arch) if isinstance(arch, Mapping) else str(arch))
    build_spec = {"importer": LAYOUT, "source": str(src.resolve()), "arch": preset, "arch_options": options,
                  "input_shape": None if input_shape is None else list(input_shape)}
    ds_spec, ds_facts = dataset_entry(dataset)
    if ds_spec is not None:
        build_spec["dataset"] = ds_spec
    specs = SpecCache(arch, options, input_shape, infer_spec)

    def spec_for(tensors: dict[str, Tensor], act: str, where: str) -> NetworkSpec:
        return specs(tensors, act, where)[1]

    # Every checkpoint is read and fitted before anything is written: a refused pickle or tensors
    # no architecture fits, in any trial, leave nothing behind (the files are read twice; this
    # pass keeps only each trial's spec).
    trial_specs: list[NetworkSpec] = []
    for act, rows in tqdm(list(zip(acts, per_trial)), disable=quiet, unit="trial", desc=f"check {src.name}"):
        spec = None
        for row in rows:
            rel = row["source_path"]
            this = spec_for(read_checkpoint(src, rel), act, rel)
            if spec is not None and this.arch_id != spec.arch_id:
                raise SourceError(f"{rel}: its tensors differ from the trial's first checkpoint "
                                  f"({spec.summary()}); one trial trains one network")
            spec = this
        trial_specs.append(spec)
    specs.warn()
    n_models = sum(len(r) for r in per_trial)
    with no_empty_zoo_on_error(out), \
            ZooWriter(out, name or src.resolve().name, build_spec, datasets=ds_facts,
                      command=f"zoo import {LAYOUT} {src}") as writer:
        done = writer.done_run_ids()
        runs = RunWriter(writer, schema, rows_per_part)
        with tqdm(total=n_models, disable=quiet, unit="model", desc=f"import {src.name}") as bar:
            for act, rows, spec in zip(acts, per_trial, trial_specs):
                if rows[0]["run_id"] in done:
                    bar.update(len(rows))
                    continue
                models = []
                for row in rows:  # one trial's checkpoints in memory at a time
                    rel = row["source_path"]
                    tensors = read_checkpoint(src, rel)
                    if spec_for(tensors, act, rel).arch_id != spec.arch_id:
                        raise SourceError(f"{rel} changed while it was imported; run the import again")
                    finite = all(bool(torch.isfinite(t).all()) for t in tensors.values())
                    row["status"] = "ok" if finite else "diverged"
                    models.append({p: tensors[p] for p in spec.param_names})
                runs.add_run(spec, models, rows)
                bar.update(len(rows))
        runs.flush()
        return finish_import(writer)

