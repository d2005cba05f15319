"""Model embeddings (one vector per model) and task embeddings in the same space.

- :func:`behavior_embedding` (Know2Vec-style black-box probing, Ding et al. AAAI 2025): a
  model's softmax outputs on a fixed probe set (:func:`~retrieval.probes.probe_set`),
  flattened probe by probe. Two models are near when they answer the probes alike.
- :func:`task_embedding`: a labelled task in the *same* space: for every probe input, the
  label distribution of its ``k`` nearest task examples (Euclidean distance in input space),
  flattened the same way. It is what a model that solves the task - a model whose softmax
  output on an input is the task's local label distribution - would answer on the probes, so
  the models that solve a task are the ones nearest to it (cosine similarity). This assumes
  the task's class ``j`` is the models' output ``j`` (tasks over the zoo's label space, e.g. a
  class subset of the source dataset); a task with other classes needs a learned ranker.
- :func:`statnn_embedding`: per-tensor weight statistics (mean, variance, quantiles of every
  parameter tensor; Unterthiner et al. 2020) from :class:`weightspace.models.StatNN`, a
  permutation-invariant description of the weights that needs no inputs.

Models whose outputs or weights are not finite (diverged runs) get rows of NaN: the search
skips them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec
from retrieval._checks import ArrayLike, as_float, as_labels, check_params
from retrieval.features import read_models


def behavior_embedding(spec: NetworkSpec, params: Mapping[str, Tensor], probe_x: ArrayLike,
                       temperature: float = 1.0) -> Tensor:
    """Each model's softmax outputs on the probe inputs, flattened.

    Args:
        spec: the population's architecture.
        params: ``{name: Tensor[P, *shape]}`` stacked parameters.
        probe_x: ``[n, *input_shape]`` the probe inputs (:func:`~retrieval.probes.probe_set`).
        temperature: the logits are divided by it before the softmax (default ``1``).

    Shapes:
        returns ``[P, n * C]`` float32 (probe-major: entries ``i*C .. i*C + C - 1`` are the
        outputs on probe ``i``); rows of NaN for models with non-finite outputs.
    """
    if not temperature > 0:
        raise WeightzooError(f"temperature must be > 0, got {temperature}")
    logits = read_models(spec, params, probe_x).logits.float()
    probs = torch.softmax(logits / temperature, dim=-1).flatten(1)
    bad = ~torch.isfinite(probs).all(1)
    probs[bad] = float("nan")
    return probs


def task_embedding(task_x: ArrayLike, task_y: ArrayLike, probe_x: ArrayLike, n_outputs: int,
                   k: int = 5) -> Tensor:
    """A labelled task in the behaviour-embedding space of models with ``n_outputs`` classes.

    For probe input ``i``, the entries ``i*C .. i*C + C - 1`` are the label distribution
    of the ``k`` task examples nearest to it (Euclidean distance between the flattened
    inputs, ties by example order); classes the task lacks get ``0``.

    Args:
        task_x: ``[N, ...]`` the task's (training) inputs.
        task_y: ``[N]`` their class indices, in the models' label space (``< n_outputs``).
        probe_x: ``[n, ...]`` the probe inputs the models were embedded on (same number of
            values per example as ``task_x``).
        n_outputs: ``C``, the models' number of outputs.
        k: neighbours per probe (default ``5``; ``1`` gives the nearest example's one-hot
            label, exactly the task's label when the probe is one of the task's examples).

    Shapes:
        returns ``[n * C]`` float32.
    """
    x = as_float(_flat(task_x, "task_x"), "task_x", 2)
    probes = as_float(_flat(probe_x, "probe_x"), "probe_x", 2)
    if x.shape[1] != probes.shape[1]:
        raise WeightzooError(f"task inputs have {x.shape[1]} values per example but the probes "
                             f"have {probes.shape[1]}: embed the task on probes from its input space")
    y = as_labels(task_y, "task_y", x.shape[0])
    if int(y.max()) >= n_outputs:
        raise WeightzooError(f"task label {int(y.max())} is outside the models' {n_outputs} outputs; "
                             f"a task embedding compares labels with model outputs one to one")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= x.shape[0]:
        raise WeightzooError(f"k must be an integer in 1..{x.shape[0]} (the task's examples), got {k!r}")
    dist = torch.cdist(probes, x)                                            # [n, N]
    # Stable sort: equal distances keep the task's example order, so the result is deterministic.
    nearest = torch.sort(dist, dim=1, stable=True).indices[:, :k]            # [n, k]
    counts = torch.nn.functional.one_hot(y[nearest], n_outputs).sum(1)      # [n, C]
    return (counts.float() / k).flatten()


def _flat(x: ArrayLike, name: str) -> Tensor:
    t = torch.as_tensor(x)
    if t.dim() < 2:
        raise WeightzooError(f"{name} must be a batch of examples [N, ...], got shape {list(t.shape)}")
    return t.reshape(t.shape[0], -1)


def statnn_embedding(spec: NetworkSpec, params: Mapping[str, Tensor],
                     quantiles: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0)) -> Tensor:
    """Per-tensor weight statistics of each model (the StatNN featurizer).

    For every parameter tensor in spec order: mean, variance and the given quantiles of its
    entries. The statistics differ in scale from tensor to tensor; standardize each column
    over the zoo before a cosine search if no column should dominate.

    Args:
        spec: the population's architecture.
        params: ``{name: Tensor[P, *shape]}`` stacked parameters.
        quantiles: quantile levels per tensor (default ``(0, 0.25, 0.5, 0.75, 1)``, StatNN's).

    Shapes:
        returns ``[P, n_tensors * (2 + len(quantiles))]`` float32; rows of NaN for models
        with non-finite weights.
    """
    from weightspace.models.statnn import StatNN

    check_params(spec, params)
    # StatNN builds its (unused here) MLP head from the global RNG: keep the caller's RNG state.
    with torch.random.fork_rng(devices=[]):
        featurizer = StatNN(spec, out_dim=1, quantiles=quantiles)
    with torch.no_grad():
        feats = featurizer.features({k: v.detach() for k, v in params.items()}).float()
    bad = ~torch.isfinite(feats).all(1)
    feats[bad] = float("nan")
    return feats
