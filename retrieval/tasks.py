"""Task specs: the labelled dataset a search ranks models for, written as one string.

A task is a dataset the builder registry knows (:data:`zoo_builders.datasets.DATASETS`), with
its options, and optionally a subset of its classes::

    digits                                   scikit-learn's digits, the registry's split
    digits:classes=0,1,2                     only the examples of classes 0, 1 and 2
    digits:classes=3,8:test_fraction=0.5     ... with half of them held out for testing
    blobs:n_classes=4:split_seed=3           any DatasetConfig option: test_fraction,
                                             split_seed, path, n_samples, noise, n_classes,
                                             n_features
    npz:path=data/my_task.npz                a user's .npz (x_train, y_train, x_test, y_test)
    data/my_task.npz                         the same, shorter

``NAME`` comes first, then ``:OPTION=VALUE`` pairs in any order. ``classes=`` keeps only the
examples of those classes and **does not renumber them**: class ``j`` of the task is still
output ``j`` of models trained on the whole dataset (so a task embedding can be compared with
the models' outputs), and ``n_classes`` stays the dataset's. A task needs at least two classes.

:class:`TaskSpec` is the parsed form; ``str(spec)`` gives the canonical string back (options
in field order, defaults left out), which is what tables and configs record.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

import torch

from catalog.errors import WeightzooError
from zoo_builders.datasets import DATASETS, Dataset, DatasetConfig, load_dataset

#: The option that selects classes (the others are :class:`DatasetConfig` fields).
CLASSES = "classes"
_CONFIG_FIELDS = {f.name: f for f in fields(DatasetConfig) if f.name != "name"}


def _coerce(option: str, value: str, text: str) -> Any:
    """An option's string value as its DatasetConfig field's type."""
    typ = str(_CONFIG_FIELDS[option].type)
    try:
        if typ.startswith("int"):
            return int(value)
        if typ.startswith("float"):
            return float(value)
    except ValueError:
        kind = "an integer" if typ.startswith("int") else "a number"
        raise WeightzooError(f"task {text!r}: option {option}={value!r} must be {kind}") from None
    return value


def _parse_classes(value: Any, text: str) -> tuple[int, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    try:
        classes = tuple(int(str(c).strip()) for c in items if str(c).strip() != "")
    except ValueError:
        raise WeightzooError(f"task {text!r}: classes must be comma-separated class indices, "
                             f"e.g. classes=0,1,2; got {value!r}") from None
    if not classes:
        raise WeightzooError(f"task {text!r}: classes is empty; list at least two, e.g. classes=0,1")
    if any(c < 0 for c in classes):
        raise WeightzooError(f"task {text!r}: classes must be non-negative class indices, got {list(classes)}")
    if len(set(classes)) != len(classes):
        raise WeightzooError(f"task {text!r}: classes lists a class twice: {list(classes)}")
    return tuple(sorted(classes))


@dataclass(frozen=True)
class TaskSpec:
    """A labelled task: a dataset config and optionally a subset of its classes.

    Args:
        dataset: which dataset and how it is split (:class:`~zoo_builders.datasets.DatasetConfig`).
        classes: keep only the examples of these classes, labels unchanged (default ``None``:
            every class). Sorted and validated on construction.
    """

    dataset: DatasetConfig
    classes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, DatasetConfig):
            raise WeightzooError(f"TaskSpec.dataset must be a DatasetConfig, got {type(self.dataset).__name__}")
        if self.classes is not None:
            object.__setattr__(self, "classes", _parse_classes(self.classes, self.dataset.name))
            if len(self.classes) < 2:
                raise WeightzooError(
                    f"task {self}: a task needs at least two classes to rank models for, got "
                    f"classes={','.join(map(str, self.classes))}")

    # ------------------------------------------------------------------------------ parsing
    @classmethod
    def parse(cls, task: str | TaskSpec | DatasetConfig | dict) -> TaskSpec:
        """A task from its string (see the module docstring), a dataset config (dict or
        :class:`DatasetConfig`, optionally with a ``classes`` key), or a TaskSpec."""
        if isinstance(task, TaskSpec):
            return task
        if isinstance(task, DatasetConfig):
            return cls(task)
        if isinstance(task, dict):
            d = dict(task)
            classes = d.pop(CLASSES, None)
            return cls(DatasetConfig.from_dict(d), classes)
        if not isinstance(task, str) or not task.strip():
            raise WeightzooError(f"a task is a dataset spec such as 'digits' or 'digits:classes=0,1,2', "
                                 f"got {task!r}")
        text = task.strip()
        if text.endswith(".npz") and "=" not in text:
            return cls(DatasetConfig("npz", path=text))
        name, *pairs = text.split(":")
        name = name.strip()
        if name not in DATASETS:
            raise WeightzooError(f"task {text!r}: unknown dataset {name!r}; valid datasets: "
                                 f"{', '.join(sorted(DATASETS))} (syntax: NAME[:OPTION=VALUE]..., "
                                 f"e.g. digits:classes=0,1,2)")
        options: dict[str, Any] = {}
        classes = None
        for pair in pairs:
            key, sep, value = pair.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key:
                raise WeightzooError(f"task {text!r}: {pair!r} is not OPTION=VALUE (syntax: "
                                     f"NAME[:OPTION=VALUE]..., e.g. digits:classes=0,1,2)")
            if key in options or (key == CLASSES and classes is not None):
                raise WeightzooError(f"task {text!r}: option {key!r} is given twice")
            if key == CLASSES:
                classes = _parse_classes(value, text)
            elif key in _CONFIG_FIELDS:
                options[key] = _coerce(key, value, text)
            else:
                valid = ", ".join([CLASSES, *_CONFIG_FIELDS])
                raise WeightzooError(f"task {text!r}: unknown option {key!r}; valid options: {valid}")
        return cls(DatasetConfig(name, **options), classes)

    def __str__(self) -> str:
        parts = [self.dataset.name]
        for name, f in _CONFIG_FIELDS.items():
            value = getattr(self.dataset, name)
            if value != f.default:
                parts.append(f"{name}={value}")
        if self.classes is not None:
            parts.append(f"{CLASSES}={','.join(map(str, self.classes))}")
        return ":".join(parts)

    def to_dict(self) -> dict:
        """The dataset config as a dict, plus ``classes`` when set (JSON-able)."""
        d = dataclasses.asdict(self.dataset)
        if self.classes is not None:
            d[CLASSES] = list(self.classes)
        return d

    # ------------------------------------------------------------------------------ loading
    def load(self) -> Dataset:
        """The task's data: the dataset loaded with its config, then (with ``classes``) only the
        examples of those classes in both splits, labels unchanged.

        Shapes:
            as :class:`~zoo_builders.datasets.Dataset`; ``n_classes`` is the full dataset's.

        Raises:
            WeightzooError: a listed class the dataset does not have, or a task with fewer than
                two classes in its training split.
        """
        data = load_dataset(self.dataset)
        if self.classes is not None:
            present = sorted(set(torch.unique(data.y_train).tolist()))
            missing = [c for c in self.classes if c not in present]
            if missing:
                raise WeightzooError(
                    f"task {self}: dataset {self.dataset.name!r} has no class(es) {missing}; its "
                    f"classes: {_ranges(present)}")
            keep = torch.tensor(self.classes)
            tr, te = torch.isin(data.y_train, keep), torch.isin(data.y_test, keep)
            data = dataclasses.replace(
                data, x_train=data.x_train[tr], y_train=data.y_train[tr], x_test=data.x_test[te],
                y_test=data.y_test[te], info={**data.info, CLASSES: list(self.classes)})
        n_present = int(torch.unique(data.y_train).numel())
        if n_present < 2:
            raise WeightzooError(f"task {self} has {n_present} class in its training split; a task "
                                 f"needs at least two classes to rank models for")
        return dataclasses.replace(data, name=str(self))


def _ranges(values: list[int]) -> str:
    if values and values == list(range(values[0], values[-1] + 1)) and len(values) > 2:
        return f"{values[0]}..{values[-1]}"
    return ",".join(map(str, values))


def parse_task(task: str | TaskSpec | DatasetConfig | dict) -> TaskSpec:
    """:meth:`TaskSpec.parse` as a function."""
    return TaskSpec.parse(task)


def load_task(task: str | TaskSpec | DatasetConfig | dict | Dataset) -> Dataset:
    """The data of a task given as a string, config or :class:`TaskSpec` (a loaded
    :class:`~zoo_builders.datasets.Dataset` passes through, after the two-class check)."""
    if isinstance(task, Dataset):
        n = int(torch.unique(task.y_train).numel())
        if n < 2:
            raise WeightzooError(f"task {task.name!r} has {n} class in its training split; a task "
                                 f"needs at least two classes to rank models for")
        return task
    return TaskSpec.parse(task).load()
