"""Ground-truth transfer: how well each model's features solve a task with a linear probe.

The ground truth of retrieval is a model's accuracy on the query task after adapting it. Full
fine-tuning of every model on every task is the expensive reference; here the ground truth
is a **linear probe**: the model is frozen, its penultimate features (see
:mod:`retrieval.features`) are standardized with the task's training statistics, and a
closed-form **ridge regression onto one-hot targets** (with an unpenalized bias) is fitted
on the task's training split; the probe's accuracy on the task's test split is the score.
Closed form means no learning rate, no epochs and no seed, and the whole population is
solved at once as a batch of ``D+1``-square linear systems.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec
from retrieval._checks import ArrayLike, as_labels
from retrieval.features import read_models

#: Default ridge penalty, per example, on standardized features.
DEFAULT_RIDGE = 1e-3


def fit_ridge_probe(features: Tensor, labels: Tensor, n_classes: int,
                    ridge: float = DEFAULT_RIDGE) -> tuple[Tensor, Tensor, Tensor]:
    """Closed-form ridge probes, one per model.

    Minimizes ``|Z W + b - Y|^2 + ridge * N * |W|^2`` per model, with ``Z`` the standardized
    features and ``Y`` the one-hot labels.

    Args:
        features: ``[P, N, D]`` training features.
        labels: ``[N]`` class indices.
        n_classes: ``C``, the width of the one-hot targets.
        ridge: the penalty per example (default :data:`DEFAULT_RIDGE`).

    Shapes:
        returns ``(weights [P, D + 1, C], mean [P, 1, D], std [P, 1, D])``; the last row of
        ``weights`` is the bias.
    """
    f = features.to(torch.float64)
    n_pop, n, d = f.shape
    mean = f.mean(1, keepdim=True)
    # Constant features (dead units) have std 0: they become 0 after centring; 1 avoids 0/0.
    std = f.std(1, keepdim=True, unbiased=False)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    z = torch.cat([(f - mean) / std, torch.ones(n_pop, n, 1, dtype=torch.float64)], 2)
    target = torch.nn.functional.one_hot(labels, n_classes).to(torch.float64)     # [N, C]
    penalty = torch.full((d + 1,), ridge * n, dtype=torch.float64)
    penalty[-1] = 0.0                                                              # bias unpenalized
    gram = z.transpose(1, 2) @ z + torch.diag(penalty)
    weights = torch.linalg.solve(gram, z.transpose(1, 2) @ target)
    return weights, mean, std


def linear_probe_accuracy(spec: NetworkSpec, params: Mapping[str, Tensor],
                          task_train: tuple[ArrayLike, ArrayLike],
                          task_test: tuple[ArrayLike, ArrayLike],
                          ridge: float = DEFAULT_RIDGE) -> Tensor:
    """Each model's linear-probe accuracy on a task: the ground truth transfer accuracy.

    Args:
        spec: the population's architecture.
        params: ``{name: Tensor[P, *shape]}`` stacked parameters.
        task_train: ``(x [N, *input_shape], y [N])`` the task's training split (probe fit).
        task_test: ``(x [M, *input_shape], y [M])`` the task's test split (accuracy).
        ridge: ridge penalty per training example on standardized features (default
            :data:`DEFAULT_RIDGE`).

    Shapes:
        returns ``[P]`` float64 accuracies in ``[0, 1]``; NaN for models whose features are
        not finite (diverged runs).
    """
    if not ridge > 0:
        raise WeightzooError(f"ridge must be > 0, got {ridge}")
    (x_tr, y_tr), (x_te, y_te) = task_train, task_test
    y_tr = as_labels(y_tr, "train labels", len(x_tr))
    y_te = as_labels(y_te, "test labels", len(x_te), min_classes=1)
    n_classes = int(max(y_tr.max(), y_te.max())) + 1
    f_tr = read_models(spec, params, x_tr).features
    f_te = read_models(spec, params, x_te).features
    ok = torch.isfinite(f_tr).flatten(1).all(1) & torch.isfinite(f_te).flatten(1).all(1)
    acc = torch.full((f_tr.shape[0],), float("nan"), dtype=torch.float64)
    if ok.any():
        w, mean, std = fit_ridge_probe(f_tr[ok], y_tr, n_classes, ridge)
        z = (f_te[ok].to(torch.float64) - mean) / std
        scores = z @ w[:, :-1] + w[:, -1:]                                       # [P_ok, M, C]
        acc[ok] = (scores.argmax(-1) == y_te).to(torch.float64).mean(1)
    return acc
