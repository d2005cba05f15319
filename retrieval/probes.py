"""The fixed probe inputs that behaviour embeddings run models on: :func:`probe_set`."""

from __future__ import annotations

import torch
from torch import Tensor

from catalog.errors import WeightzooError
from zoo_builders.datasets import Dataset, DatasetConfig, load_dataset

#: Probe inputs per behaviour embedding unless told otherwise.
DEFAULT_PROBES = 256


def probe_set(dataset: str | dict | DatasetConfig | Dataset, n: int = DEFAULT_PROBES,
              seed: int = 0) -> Tensor:
    """``n`` inputs drawn from a registered dataset's training split, the same every time.

    The draw is ``torch.randperm(N_train, generator=Generator().manual_seed(seed))[:n]``
    over the training split that :func:`~zoo_builders.datasets.load_dataset` gives for the
    dataset's config (its own seeded split), so the same ``(dataset, n, seed)`` gives the same
    probes on every machine; record those three next to the embeddings they produce.

    Args:
        dataset: a dataset name (``digits``, ``mnist1d``, ...), its config (dict or
            :class:`~zoo_builders.datasets.DatasetConfig`, e.g. ``{name: npz, path: ...}``), or
            an already loaded :class:`~zoo_builders.datasets.Dataset`.
        n: number of probe inputs (default :data:`DEFAULT_PROBES`).
        seed: seed of the draw (default ``0``).

    Shapes:
        returns ``[n, *input_shape]`` float32.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise WeightzooError(f"probe count n must be a positive integer, got {n!r}")
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    n_train = data.x_train.shape[0]
    if n > n_train:
        raise WeightzooError(f"asked for {n} probe inputs but dataset {data.name!r} has only "
                             f"{n_train} training examples; ask for at most {n_train}")
    order = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))[:n]
    return data.x_train[order].clone()
