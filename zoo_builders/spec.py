"""Build specs: YAML -> validated dataclasses -> the list of runs to train.

A spec names a dataset, an architecture family, training settings, and hyperparameter axes
(``grid:`` for a Cartesian product, ``random:`` for seeded samples). Axis names are training
fields (``lr``, ``seed``, ...) or architecture fields, written ``architecture.hidden`` or just
``hidden``. Every run gets a ``run_id`` hashed from its full configuration, so the same spec
always gives the same runs.

A heterogeneous zoo lists several ``families:`` instead of one ``architecture:``; each family
is an ``architecture`` with its own ``grid``/``random`` axes (checked against that family's
fields) and optional ``training`` overrides, sharing the spec's dataset, task and training::

    dataset: {name: digits}
    training: {epochs: 4, checkpoints: [1, 2, 4]}
    families:
      - architecture: {name: cnn}
        random: {samples: 100, kernel_size: {choice: [3, 5]}, lr: {loguniform: [1e-4, 1e-2]}}
      - architecture: {name: resnet, width_multiplier: 0.25}
        training: {batch_size: 64}
        grid: {lr: [0.001, 0.01], seed: [0, 1]}

The runs are the families' runs, family after family; a run's id is the one it has in a spec of
its family alone, so families can be added to a zoo, or split off, without renaming any run.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import re
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from catalog.errors import WeightzooError
from catalog.format import ZOO_NAME_RULE, is_zoo_name
from catalog.network import is_finite_number
from catalog.nodes import short_repr
from zoo_builders.architectures import (
    ARCHITECTURES,
    DEFAULT_INIT,
    arch_fields,
    arch_to_dict,
    make_architecture,
)
from zoo_builders.datasets import DatasetConfig
from zoo_builders.graph_architectures import GRAPH_ARCHITECTURES
from zoo_builders.init import INIT_SCHEMES
from zoo_builders.optim import OPTIMIZERS

PRESET_DIR = Path(__file__).parent / "presets"
TASKS = ("classify", "inr")
TOP_LEVEL_KEYS = ("name", "description", "license", "dataset", "architecture", "training", "task",
                  "grid", "random", "families")
#: The keys of one entry of ``families:``.
FAMILY_KEYS = ("architecture", "training", "grid", "random")
#: Init schemes for layer chains only: :func:`zoo_builders.init.init_params` refuses them for
#: graph architectures, so a spec is checked against them before anything trains.
CHAIN_ONLY_INITS = ("siren",)
#: Most runs one spec may expand to (families together). Specs are expanded in memory, run by
#: run, before anything trains (about a minute for 100,000 ResNet runs); a larger zoo is
#: several specs, built into several zoos.
MAX_RUNS = 100_000
#: The largest integer a zoo's integer columns (Parquet int64) hold. Every training field is a
#: column of the run's rows, so a larger epochs, batch_size or seed would train to the end and
#: then fail writing the rows (pyarrow: "Python int too large to convert to C long").
COLUMN_INT_MAX = 2**63 - 1
#: Numbers with an exponent (``1e-3``, ``5E4``, ``1.5e3``): floats in YAML 1.2, strings to PyYAML,
#: which follows YAML 1.1 (where a float needs a dot, and its exponent a sign).
YAML12_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


class SpecLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that reads numbers as YAML 1.2 does (``lr: 1e-3`` is a float) and
    refuses a key given twice in one mapping, which YAML 1.1 readers resolve silently to the
    last value (YAML 1.2 forbids it)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[tuple[str, str], yaml.Node] = {}
        for key_node, _ in node.value:
            # Keys merged in with '<<' may be overridden, as YAML merges allow.
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"found duplicate key {key_node.value!r} (give each key once)",
                        key_node.start_mark)
                seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


# Appended after the YAML 1.1 resolvers: only what they leave a string becomes a float.
SpecLoader.add_implicit_resolver("tag:yaml.org,2002:float", YAML12_EXPONENT_FLOAT, list("-+0123456789."))


@dataclass(frozen=True)
class TrainingConfig:
    """How one run trains. Every field can be a hyperparameter axis.

    Args:
        epochs: epochs (for ``inr``: full-batch optimization steps) (default ``10``).
        batch_size: minibatch size (default ``32``; unused by ``inr``).
        optimizer: ``sgd`` (with momentum), ``adam`` or ``adamw`` (default ``adam``).
        lr: learning rate (default ``1e-3``).
        weight_decay: L2 penalty (decoupled for ``adamw``) (default ``0.0``).
        momentum: SGD momentum (default ``0.9``).
        init: initialization scheme (default: the family's, ``default`` or ``siren``).
        dropout: dropout probability on the inputs of every linear layer after the first
            (default ``0.0``).
        train_fraction: fraction of the training set this run sees, a seeded subsample
            (default ``1.0``).
        seed: seeds initialization, data order, subsample and dropout (default ``0``).
        checkpoints: epochs at which weights and metrics are recorded; ``0`` is the
            initialization (default ``[0, epochs]``).
    """

    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    init: str = "default"
    dropout: float = 0.0
    train_fraction: float = 1.0
    seed: int = 0
    checkpoints: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "checkpoints":
                continue
            if f.type == "int":
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                if not isinstance(value, int) or isinstance(value, bool):
                    raise WeightzooError(f"training.{f.name} must be an integer, got {value!r}")
                if abs(value) > COLUMN_INT_MAX:
                    raise WeightzooError(
                        f"training.{f.name} is {short_repr(value)}: a zoo's integer columns hold at most 2**63 - 1 "
                        f"({COLUMN_INT_MAX:,}) either way; use a smaller value" + (
                            " (any batch_size from the training set's size up trains on the whole set at "
                            "each step)" if f.name == "batch_size" else ""))
            elif f.type == "float":
                if not is_finite_number(value):
                    raise WeightzooError(f"training.{f.name} must be a number, got {value!r}")
                value = float(value)
            elif f.type == "str" and not isinstance(value, str):
                raise WeightzooError(f"training.{f.name} must be a string, got {value!r}")
            object.__setattr__(self, f.name, value)
        if self.epochs < 1:
            raise WeightzooError(f"training.epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise WeightzooError(f"training.batch_size must be >= 1, got {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise WeightzooError(f"unknown optimizer {self.optimizer!r}; valid optimizers: {', '.join(OPTIMIZERS)}")
        if self.init not in INIT_SCHEMES:
            raise WeightzooError(f"unknown init scheme {self.init!r}; valid schemes: {', '.join(INIT_SCHEMES)}")
        if self.lr <= 0:
            raise WeightzooError(f"training.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise WeightzooError(f"training.weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.dropout < 1.0:
            raise WeightzooError(f"training.dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise WeightzooError(f"training.train_fraction must be in (0, 1], got {self.train_fraction}")
        cps = self.checkpoints if self.checkpoints is not None else (0, self.epochs)
        if isinstance(cps, int | float):
            cps = (cps,)
        if isinstance(cps, list | tuple):  # 2.0 is epoch 2, as for the integer fields above
            cps = [int(c) if isinstance(c, float) and c.is_integer() else c for c in cps]
        if not isinstance(cps, list | tuple) or not all(isinstance(c, int) and not isinstance(c, bool) for c in cps):
            raise WeightzooError(f"training.checkpoints must be a list of epochs (integers), got {cps!r}")
        bad = [c for c in cps if not 0 <= c <= self.epochs]
        if bad:
            raise WeightzooError(f"training.checkpoints {bad} lie outside 0..epochs ({self.epochs})")
        object.__setattr__(self, "checkpoints", tuple(sorted(set(cps))))

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@dataclass(frozen=True)
class TaskConfig:
    """What a run learns.

    Args:
        name: ``classify`` (train a classifier on the dataset) or ``inr`` (fit one SIREN per image).
        images: for ``inr``, how many images to fit (default ``64``).
        offset: for ``inr``, index of the first image (images count over the training split,
            then the test split) (default ``0``).
        shared_init: for ``inr``, start every image's SIREN from the same initialization (drawn
            from the run's seed alone) rather than one drawn per image (default ``True``). With a
            shared start, weight differences reflect the images, which is what INR
            classification and editing learn from.
    """

    name: str = "classify"
    images: int = 64
    offset: int = 0
    shared_init: bool = True

    def __post_init__(self) -> None:
        if self.name not in TASKS:
            raise WeightzooError(f"unknown task {self.name!r}; valid tasks: {', '.join(TASKS)}")
        for key, low in (("images", 1), ("offset", 0)):
            value = getattr(self, key)
            if isinstance(value, float) and value.is_integer():  # 64.0 is 64, as for the training fields
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise WeightzooError(f"task.{key} must be an integer >= {low}, got {value!r}")
            object.__setattr__(self, key, value)
        if not isinstance(self.shared_init, bool):
            raise WeightzooError(f"task.shared_init must be true or false, got {self.shared_init!r}")


#: The prefix of the column of an architecture field named like a training field (vgg's and
#: transformer's ``dropout`` are ``arch_dropout``; ``dropout`` is ``training.dropout``).
ARCH_COLUMN_PREFIX = "arch_"


#: The fields each config had when run ids were first hashed (id form v1). They always enter
#: a run's id, as they always did; a field added since enters it only when not at its default,
#: so adding an optional field renames no existing run.
ID_V1_FIELDS = {
    "TrainingConfig": frozenset({"epochs", "batch_size", "optimizer", "lr", "weight_decay", "momentum",
                                 "init", "dropout", "train_fraction", "seed", "checkpoints"}),
    "DatasetConfig": frozenset({"name", "test_fraction", "split_seed", "path", "n_samples", "noise",
                                "n_classes", "n_features"}),
}


def id_fields(cfg: Any) -> dict[str, Any]:
    """The fields of a config dataclass that enter a run's id (see :data:`ID_V1_FIELDS`),
    tuples as lists."""
    v1 = next((ID_V1_FIELDS[c.__name__] for c in type(cfg).__mro__ if c.__name__ in ID_V1_FIELDS), frozenset())
    out = {}
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if f.name not in v1 and f.default is not MISSING and v == f.default:
            continue
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


@dataclass(frozen=True)
class RunConfig:
    """One fully resolved training run."""

    dataset: DatasetConfig
    task: TaskConfig
    arch_name: str
    arch: Any
    training: TrainingConfig
    image_index: int | None = None

    def to_dict(self) -> dict:
        # Only the task fields that affect this run enter its id, so adding an INR option
        # never changes the run_ids of classifier zoos.
        task = asdict(self.task) if self.task.name == "inr" else {"name": self.task.name}
        d = {"dataset": id_fields(self.dataset), "task": task,
             "architecture": arch_to_dict(self.arch_name, self.arch),
             "training": id_fields(self.training)}
        if self.image_index is not None:
            d["image_index"] = self.image_index
        return d

    @property
    def run_id(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def hparams(self) -> dict[str, Any]:
        """The hyperparameter columns of this run's rows: the architecture's fields, then the
        training fields, ``architecture`` and ``dataset``; an architecture field named like a
        training field (the ``dropout`` of vgg and transformer) is the column
        ``arch_<field>`` (:data:`ARCH_COLUMN_PREFIX`), the training value keeping its name."""
        cols: dict[str, Any] = {}
        arch = asdict(self.arch)
        for k, v in arch.items():
            cols[k] = list(v) if isinstance(v, tuple) else v
        if "hidden" in cols and self.arch_name in ("mlp", "siren"):  # neurons, not a vgg head
            cols["depth"] = len(cols["hidden"])
            cols["width"] = max(cols["hidden"]) if cols["hidden"] else 0
        training = {k: v for k, v in asdict(self.training).items() if k != "checkpoints"}
        cols.update(training)
        cols["architecture"] = self.arch_name
        cols["dataset"] = self.dataset.name
        # The training value has always been recorded under the shared name (zoos already built
        # hold it there), so the architecture's own value is a column of its own, added last.
        for k in [k for k in arch if k in training]:
            cols[ARCH_COLUMN_PREFIX + k] = arch[k]
        return cols


# ================================================================================ axes
def _resolve_axis(name: str, arch_name: str) -> tuple[str, str]:
    """Axis name -> ("training" | "architecture", field)."""
    if not isinstance(name, str):
        raise WeightzooError(f"axis names are strings (a training or architecture field), got {name!r}")
    train_fields = [f for f in TrainingConfig.field_names() if f != "checkpoints"]
    a_fields = arch_fields(arch_name)
    if name.startswith("architecture."):
        fname = name.split(".", 1)[1]
        if fname not in a_fields:
            raise WeightzooError(
                f"unknown axis {name!r}: architecture {arch_name!r} has fields {', '.join(a_fields)}")
        return "architecture", fname
    if name.startswith("training."):
        name = name.split(".", 1)[1]
    if name in train_fields:
        return "training", name
    if name in a_fields:
        return "architecture", name
    valid = train_fields + [f"architecture.{f}" for f in a_fields]
    raise WeightzooError(f"unknown axis {name!r}; valid axes: {', '.join(valid)}")


#: randint draws int64s: its bounds stay below 2**62 in size.
RANDINT_BOUND = 2 ** 62


def _sample(axis: str, dist: Any, rng: np.random.Generator) -> Any:
    if not isinstance(dist, dict) or len(dist) != 1:
        raise WeightzooError(
            f"random axis {axis!r} must be one distribution, e.g. {{loguniform: [1e-4, 1e-1]}}, "
            f"{{uniform: [0, 0.5]}}, {{choice: [relu, tanh]}} or {{randint: [0, 100]}}")
    (kind, args), = dist.items()
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise WeightzooError(f"random axis {axis!r}: choice needs a non-empty list")
        return copy.deepcopy(args[int(rng.integers(len(args)))])
    if kind in ("uniform", "loguniform", "randint"):
        if not isinstance(args, list) or len(args) != 2 or not all(is_finite_number(a) for a in args):
            raise WeightzooError(f"random axis {axis!r}: {kind} needs [low, high], two finite numbers")
        lo, hi = args
        if lo > hi:
            raise WeightzooError(f"random axis {axis!r}: {kind} needs low <= high, got [{lo}, {hi}]")
        if kind == "uniform":
            return float(rng.uniform(lo, hi))
        if kind == "randint":
            if not -RANDINT_BOUND <= lo <= hi < RANDINT_BOUND:
                raise WeightzooError(f"random axis {axis!r}: randint bounds must lie within +-{RANDINT_BOUND}, "
                                     f"got [{lo}, {hi}]")
            return int(rng.integers(int(lo), int(hi) + 1))
        if lo <= 0:
            raise WeightzooError(f"random axis {axis!r}: loguniform needs positive bounds")
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    raise WeightzooError(f"random axis {axis!r}: unknown distribution {kind!r}; "
                         f"valid: uniform, loguniform, choice, randint")


def _check_run_count(n: int, what: str) -> None:
    """Refuse a spec of more than :data:`MAX_RUNS` runs (``n``, counted as ``what``)."""
    if n > MAX_RUNS:
        raise WeightzooError(
            f"the spec expands to {n:,} runs ({what}), more than the {MAX_RUNS:,} one spec may hold; "
            f"use fewer grid values or random samples, or split it into several specs (zoos)")


# ================================================================================ spec
@dataclass
class BuildSpec:
    """A parsed, validated build spec (see the module docstring)."""

    name: str
    dataset: DatasetConfig
    arch_name: str
    architecture: Any
    training: TrainingConfig
    task: TaskConfig = field(default_factory=TaskConfig)
    grid: dict[str, list] = field(default_factory=dict)
    random: dict[str, Any] = field(default_factory=dict)
    raw: dict = field(default_factory=dict)
    #: A heterogeneous spec's families, each a one-family spec (empty: this spec is one family;
    #: ``arch_name``, ``architecture`` and ``training`` are then the first family's).
    families: list[BuildSpec] = field(default_factory=list)

    # ------------------------------------------------------------------ parsing
    @classmethod
    def from_dict(cls, d: Any) -> BuildSpec:
        if not isinstance(d, dict):
            raise WeightzooError("a build spec must be a YAML mapping with name, dataset, architecture, training")
        unknown = sorted(set(d) - set(TOP_LEVEL_KEYS))
        if unknown:
            raise WeightzooError(f"unknown spec key(s) {unknown}; valid keys: {', '.join(TOP_LEVEL_KEYS)}")
        if "families" in d:
            return cls._from_families(d)
        for key in ("name", "dataset", "architecture"):
            if key not in d:
                raise WeightzooError(f"the spec has no {key!r}; add it (see `zoo presets --show digits-mlp`)")
        name = d["name"]
        if not is_zoo_name(name):  # the manifest's rule: checked here, before any directory is made
            raise WeightzooError(f"spec name {name!r} is not a valid zoo name: use {ZOO_NAME_RULE}")
        dataset = DatasetConfig.from_dict(d["dataset"])
        arch_name, arch = make_architecture(d["architecture"])
        task_d = d.get("task") or {}
        if isinstance(task_d, str):
            task_d = {"name": task_d}
        if not isinstance(task_d, dict):
            raise WeightzooError("spec 'task' must be a mapping, e.g. {name: inr, images: 64}")
        try:
            task = TaskConfig(**task_d)
        except TypeError as e:
            raise WeightzooError(f"task: {e}; valid options: name, images, offset, shared_init") from e
        if task.name == "inr" and arch_name != "siren":
            raise WeightzooError("task 'inr' fits SIRENs: use architecture {name: siren}")
        if arch_name == "siren" and task.name != "inr":
            raise WeightzooError("architecture 'siren' is for task 'inr': add task: {name: inr, images: N}")
        train_d = d.get("training") or {}
        if not isinstance(train_d, dict):
            raise WeightzooError("spec 'training' must be a mapping")
        valid = TrainingConfig.field_names()
        bad = sorted(set(train_d) - set(valid))
        if bad:
            raise WeightzooError(f"unknown training option(s) {bad}; valid options: {', '.join(valid)}")
        train_d = dict(train_d)
        train_d.setdefault("init", DEFAULT_INIT[arch_name])
        training = TrainingConfig(**train_d)
        grid = d.get("grid") or {}
        if not isinstance(grid, dict):
            raise WeightzooError("spec 'grid' must map axis names to lists of values")
        for axis, values in grid.items():
            _resolve_axis(axis, arch_name)
            if not isinstance(values, list) or not values:
                raise WeightzooError(f"grid axis {axis!r} must be a non-empty list of values")
        rnd = d.get("random") or {}
        if not isinstance(rnd, dict):
            raise WeightzooError("spec 'random' must be a mapping with 'samples' and axis distributions")
        if rnd:
            samples = rnd.get("samples")
            if isinstance(samples, float) and samples.is_integer():  # as the integer fields of training
                samples = int(samples)
            if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
                raise WeightzooError(f"random.samples must be a positive integer, got {samples!r}")
            rnd = {**rnd, "samples": samples}
            seed = rnd.get("sampler_seed", 0)
            if isinstance(seed, float) and seed.is_integer():  # as the integer fields of training
                seed = int(seed)
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise WeightzooError(f"random.sampler_seed must be a non-negative integer, got {seed!r}")
            for axis in rnd:
                if axis not in ("samples", "sampler_seed"):
                    _resolve_axis(axis, arch_name)
        n_runs = math.prod(len(v) for v in grid.values()) * (rnd["samples"] if rnd else 1)
        _check_run_count(n_runs * (task.images if task.name == "inr" else 1),
                         "grid points x random samples" + (" x images" if task.name == "inr" else ""))
        spec = cls(name, dataset, arch_name, arch, training, task, grid, rnd, copy.deepcopy(d))
        runs = spec.runs()  # validate every combination now, before anything is trained
        chain_only = sorted({r.training.init for r in runs} & set(CHAIN_ONLY_INITS))
        if arch_name in GRAPH_ARCHITECTURES and chain_only:
            graph_inits = [i for i in INIT_SCHEMES if i not in CHAIN_ONLY_INITS]
            raise WeightzooError(
                f"init {chain_only[0]!r} is for layer chains (mlp, cnn, siren); architecture {arch_name!r} is a "
                f"graph: use another scheme ({', '.join(graph_inits)})")
        if arch_name in GRAPH_ARCHITECTURES and any(r.training.dropout > 0 for r in runs):
            # The axis 'dropout' sets training.dropout too: training fields come first.
            fix = ("use the architecture's own: architecture: {dropout: p}, or the axis 'architecture.dropout'"
                   if "dropout" in arch_fields(arch_name) else f"architecture {arch_name!r} has no dropout option")
            raise WeightzooError(
                f"training.dropout applies to layer chains (mlp, cnn), as does the axis 'dropout'; {fix}, and "
                f"leave training.dropout at 0")
        return spec

    @classmethod
    def _from_families(cls, d: dict) -> BuildSpec:
        """A heterogeneous spec: each entry of ``families`` parsed as a one-family spec with the
        shared name, dataset, task and training (its ``training`` overrides merged over them)."""
        clash = sorted(k for k in ("architecture", "grid", "random") if k in d)
        if clash:
            raise WeightzooError(
                f"a spec with 'families' has no top-level {clash}: give each family its own "
                f"architecture and axes")
        fams = d["families"]
        if not isinstance(fams, list) or not fams:
            raise WeightzooError(
                "spec 'families' must be a non-empty list of {architecture: {name: ...}, grid/random: ...}")
        shared = {k: v for k, v in d.items() if k not in ("families", "training")}
        base_training = d.get("training") or {}
        if not isinstance(base_training, dict):
            raise WeightzooError("spec 'training' must be a mapping")
        parsed: list[BuildSpec] = []
        for i, fam in enumerate(fams):
            if not isinstance(fam, dict) or "architecture" not in fam:
                raise WeightzooError(f"families[{i}] must be a mapping with an 'architecture' "
                                     f"(and optional training, grid, random)")
            bad = sorted(set(fam) - set(FAMILY_KEYS))
            if bad:
                raise WeightzooError(f"families[{i}]: unknown key(s) {bad}; valid keys: {', '.join(FAMILY_KEYS)}")
            over = fam.get("training") or {}
            if not isinstance(over, dict):
                raise WeightzooError(f"families[{i}].training must be a mapping")
            sub = {**shared, "training": {**base_training, **over},
                   **{k: fam[k] for k in ("architecture", "grid", "random") if k in fam}}
            arch = fam["architecture"]
            label = arch.get("name") if isinstance(arch, dict) else arch
            try:
                parsed.append(cls.from_dict(sub))
            except WeightzooError as e:
                raise WeightzooError(f"families[{i}] ({label}): {e}") from e
        first = parsed[0]
        spec = cls(first.name, first.dataset, first.arch_name, first.architecture, first.training, first.task,
                   raw=copy.deepcopy(d), families=parsed)
        _check_run_count(sum(len(fam.runs()) for fam in parsed), "the families' runs together")
        ids = [r.run_id for fam in parsed for r in fam.runs()]
        if len(set(ids)) < len(ids):  # the same run listed by two families would be trained once
            dup = len(ids) - len(set(ids))
            raise WeightzooError(
                f"{dup} run(s) appear in more than one family (same architecture and training); "
                f"make the families' architectures or axes differ")
        return spec

    @property
    def arch_names(self) -> list[str]:
        """The architecture families of the spec's runs, in spec order."""
        return [f.arch_name for f in self.families] if self.families else [self.arch_name]

    @classmethod
    def load(cls, source: str | os.PathLike | dict) -> BuildSpec:
        """A spec from a dict, a YAML file path, or a preset name."""
        if isinstance(source, dict):
            return cls.from_dict(source)
        path = Path(source)
        if not path.exists() or path.is_dir():
            preset = PRESET_DIR / f"{source}.yaml"
            if preset.is_file() and os.sep not in str(source):
                path = preset
            else:
                raise WeightzooError(
                    f"{source} is neither a spec file nor a preset; presets: {', '.join(list_presets())}")
        try:
            text = path.read_bytes().decode("utf-8-sig")  # a leading BOM is fine
        except UnicodeDecodeError as e:
            raise WeightzooError(f"{path} is not UTF-8 text (byte {e.start} is {e.object[e.start]:#04x}); "
                                 f"a spec is a YAML text file") from e
        except OSError as e:
            raise WeightzooError(f"cannot read {path}: {e.strerror}") from e
        try:
            data = yaml.load(text, Loader=SpecLoader)
        except yaml.YAMLError as e:
            raise WeightzooError(f"{path} is not valid YAML: {_yaml_problem(e)}") from e
        return cls.from_dict(data)

    def to_dict(self) -> dict:
        return copy.deepcopy(self.raw)

    # ------------------------------------------------------------------ expansion
    def _assignments(self) -> list[dict[str, Any]]:
        grid_axes = list(self.grid)
        points = [dict(zip(grid_axes, combo)) for combo in itertools.product(*self.grid.values())] or [{}]
        if not self.random:
            return points
        rng = np.random.default_rng(int(self.random.get("sampler_seed", 0)))
        axes = [a for a in self.random if a not in ("samples", "sampler_seed")]
        out = []
        for point in points:
            for _ in range(int(self.random["samples"])):
                out.append({**point, **{a: _sample(a, self.random[a], rng) for a in axes}})
        return out

    def architectures(self) -> list[tuple[str, Any]]:
        """The distinct ``(family, architecture config)`` pairs of the spec's runs, in run order
        (without expanding the runs themselves)."""
        if self.families:
            return list(dict.fromkeys(a for fam in self.families for a in fam.architectures()))
        base_arch = arch_to_dict(self.arch_name, self.architecture)
        out: dict[tuple[str, Any], None] = {}
        for assignment in self._assignments():
            arch_d = dict(base_arch)
            for axis, value in assignment.items():
                where, fname = _resolve_axis(axis, self.arch_name)
                if where == "architecture":
                    arch_d[fname] = value
            out[make_architecture(arch_d)] = None
        return list(out)

    def runs(self) -> list[RunConfig]:
        """Every run of the spec, in a fixed order (family after family; in a family: grid
        order, then samples, then images)."""
        if self.families:
            return [r for fam in self.families for r in fam.runs()]
        base_arch = arch_to_dict(self.arch_name, self.architecture)
        out: list[RunConfig] = []
        seen: set[str] = set()
        for assignment in self._assignments():
            arch_d = dict(base_arch)
            train_kw: dict[str, Any] = {}
            for axis, value in assignment.items():
                where, fname = _resolve_axis(axis, self.arch_name)
                if where == "architecture":
                    arch_d[fname] = value
                else:
                    train_kw[fname] = value
            _, arch = make_architecture(arch_d)
            training = replace(self.training, **train_kw)
            images = range(self.task.offset, self.task.offset + self.task.images) if self.task.name == "inr" else [None]
            for img in images:
                run = RunConfig(self.dataset, self.task, self.arch_name, arch, training, img)
                if run.run_id not in seen:  # duplicate grid points are one run
                    seen.add(run.run_id)
                    out.append(run)
        return out


def _yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error on one line: the problem and where (PyYAML's message quotes the text over
    several lines)."""
    if isinstance(e, yaml.MarkedYAMLError) and e.problem_mark is not None:
        context = f" ({e.context} at line {e.context_mark.line + 1})" if e.context and e.context_mark else ""
        return (f"{e.problem} at line {e.problem_mark.line + 1}, column {e.problem_mark.column + 1}"
                f"{context}")
    return " ".join(str(e).split())


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


__all__ = ["ARCHITECTURES", "BuildSpec", "RunConfig", "TaskConfig", "TrainingConfig", "list_presets"]
