"""Training and evaluating metanetworks on zoos: :func:`fit` and :func:`evaluate`.

The loop reads top to bottom: build the model, then per epoch shuffle the training networks,
optionally apply a random neuron symmetry to each (a free augmentation: the networks compute
the same functions), normalize, step; evaluate on validation; keep the best state and stop
when validation has not improved for ``patience`` epochs.

Data comes either as a ``(params, targets)`` pair - ``{name: Tensor[N, *shape]}`` raw weights
and ``Tensor[N, T]`` - or as a ``catalog.dataset.WeightDataset`` (its stored statistics give the
normalization; see :mod:`weightspace.normalization` for why they are pooled per tensor).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec
from weightspace.metrics import classification_metrics, regression_metrics
from weightspace.models.registry import build_metanetwork
from weightspace.normalization import ParamNormalizer
from weightspace.symmetry import RandomNeuronSymmetry
from weightspace.trained import TASKS, TrainedMetanetwork

Params = Mapping[str, Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (validated on construction).

    Args:
        epochs: maximum epochs (default ``50``).
        lr: AdamW learning rate (default ``1e-3``).
        weight_decay: AdamW weight decay (default ``0``).
        batch_size: networks per step (default ``64``).
        augment: random hidden-neuron permutations (and sign flips for odd activations) of
            every training batch (default ``False``).
        patience: stop after this many epochs without a better validation loss (default ``10``).
        seed: seeds model init, shuffling and augmentation (default ``0``).
    """

    epochs: int = 50
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    augment: bool = False
    patience: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise WeightzooError(f"epochs must be >= 1, got {self.epochs}")
        if not self.lr > 0:
            raise WeightzooError(f"lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise WeightzooError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.batch_size < 1:
            raise WeightzooError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.patience < 1:
            raise WeightzooError(f"patience must be >= 1, got {self.patience}")


@dataclass
class _Data:
    spec: NetworkSpec | None
    params: dict[str, Tensor]  # raw, unnormalized
    targets: Tensor  # [N, T]
    stats: Mapping[str, Mapping[str, Tensor]] | None
    classes: dict[str, list[Any]]
    target_names: list[str] | None


def _unpack(data: Any) -> _Data:
    """A ``(params, targets)`` pair or a WeightDataset-like object as raw weights + targets."""
    if hasattr(data, "stacked") and hasattr(data, "network_spec"):
        params, targets = data.stacked()
        stats = getattr(data, "stats", None)
        if stats is not None:  # WeightDataset(normalize=True): undo its per-entry normalization
            params = data.denormalize_weights(params)
        return _Data(data.network_spec, dict(params), _as_2d(targets), stats,
                     dict(getattr(data, "classes", {}) or {}), list(getattr(data, "targets", []) or []))
    try:
        params, targets = data
    except (TypeError, ValueError) as e:
        raise WeightzooError(
            "training data must be a (params, targets) pair or a WeightDataset") from e
    return _Data(None, dict(params), _as_2d(targets), None, {}, None)


def _as_2d(t: Tensor) -> Tensor:
    t = torch.as_tensor(t)
    return t.unsqueeze(1) if t.dim() == 1 else t


def _n(params: Params) -> int:
    return int(next(iter(params.values())).shape[0]) if params else 0


def _take(params: Params, idx: Tensor) -> dict[str, Tensor]:
    return {k: v[idx] for k, v in params.items()}


def _class_indices(targets: Tensor, classes: list[Any] | None) -> tuple[Tensor, list[Any]]:
    """Targets ``[N, 1]`` as class indices ``[N]`` and the class labels."""
    if targets.shape[1] != 1:
        raise WeightzooError(f"classification predicts one column, got {targets.shape[1]}")
    col = targets[:, 0]
    if classes:  # already indices into known labels (WeightDataset of a string column)
        return col.long(), list(classes)
    values = sorted(set(col.tolist()))
    lookup = {v: i for i, v in enumerate(values)}
    labels = [int(v) if float(v).is_integer() else v for v in values]
    return torch.tensor([lookup[v] for v in col.tolist()], dtype=torch.long), labels


def _remap(targets: Tensor, labels: list[Any], data_labels: list[Any] | None) -> Tensor:
    """Targets ``[N, 1]`` as indices into ``labels`` (-1 for a label the model never saw).

    ``data_labels`` are the labels the target values index (a WeightDataset's ``classes``), or
    ``None`` when the targets are the label values themselves.
    """
    col = targets[:, 0].tolist()
    values = [data_labels[int(v)] for v in col] if data_labels is not None else col
    lookup = {_key(v): i for i, v in enumerate(labels)}
    return torch.tensor([lookup.get(_key(v), -1) for v in values], dtype=torch.long)


def _key(v: Any) -> Any:
    return float(v) if isinstance(v, int | float) else v


def fit(
    model_name: str,
    train: Any,
    val: Any = None,
    *,
    spec: NetworkSpec | None = None,
    task: str = "regression",
    targets: Sequence[str] | None = None,
    epochs: int = 50,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    batch_size: int = 64,
    augment: bool = False,
    patience: int = 10,
    seed: int = 0,
    progress: bool = True,
    hparams: Mapping[str, Any] | None = None,
    normalizer: ParamNormalizer | None = None,
    data_info: Mapping[str, Any] | None = None,
) -> tuple[TrainedMetanetwork, list[dict[str, Any]]]:
    """Train a registered metanetwork to predict targets from weights.

    Args:
        model_name: ``statnn``, ``mlp``, ``dws``, ``nfn`` or ``gmn``.
        train: ``(params, targets)`` (raw weights ``{name: [N, *shape]}``, targets ``[N]`` or
            ``[N, T]``) or a ``WeightDataset``.
        val: the same for validation (default ``None``: no early stopping, the last epoch is kept).
        spec: the networks' architecture (default: ``train.network_spec``).
        task: ``regression`` (MSE on standardized targets) or ``classification`` (cross-entropy;
            targets are labels, or indices when ``train`` is a WeightDataset of a string column).
        targets: names of the target columns, for the record (default: the dataset's).
        epochs, lr, weight_decay, batch_size, augment, patience, seed: see :class:`TrainConfig`.
        progress: show a progress bar (default ``True``).
        hparams: metanetwork hyperparameters (default: the model's defaults).
        normalizer: weight normalization (default: from the dataset's stored statistics, else
            computed on ``train``).
        data_info: facts about the data source stored in the run config (default none).

    Returns:
        the trained model (best validation epoch) and the per-epoch history.
    """
    cfg = TrainConfig(epochs, lr, weight_decay, batch_size, augment, patience, seed)
    if task not in TASKS:
        raise WeightzooError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    tr = _unpack(train)
    va = _unpack(val) if val is not None else None
    spec = spec or tr.spec
    if spec is None:
        raise WeightzooError("fit(...) needs spec= when the data is a (params, targets) pair")
    n_train = _n(tr.params)
    if n_train == 0:
        raise WeightzooError("the training split is empty; select more networks")
    names = list(targets or tr.target_names or [f"target_{i}" for i in range(tr.targets.shape[1])])
    if normalizer is None:
        normalizer = (ParamNormalizer.from_entry_stats(tr.stats) if tr.stats is not None
                      else ParamNormalizer.from_weights(tr.params))

    # Targets: standardized for regression (so one lr fits every column), indices for classes.
    mean: list[float] = []
    std: list[float] = []
    classes: list[Any] = []
    if task == "regression":
        if not tr.targets.dtype.is_floating_point and tr.classes:
            raise WeightzooError(
                f"target {names[0]!r} is categorical ({len(next(iter(tr.classes.values())))} "
                f"classes); use task='classification'")
        y_tr = tr.targets.double()
        mean = y_tr.mean(0).tolist()
        std = [s if s > 0 else 1.0 for s in y_tr.std(0, correction=0).tolist()]
        y_train = ((y_tr - torch.tensor(mean)) / torch.tensor(std)).float()
        y_val = (((va.targets.double() - torch.tensor(mean)) / torch.tensor(std)).float()
                 if va is not None else None)
        out_dim = tr.targets.shape[1]
    else:
        y_train, classes = _class_indices(tr.targets, tr.classes.get(names[0]))
        y_val = _remap(va.targets, classes, va.classes.get(names[0])) if va is not None else None
        out_dim = len(classes)
        if out_dim < 2:
            raise WeightzooError(f"classification needs at least 2 classes in the training split, "
                                 f"got {classes}")

    torch.manual_seed(cfg.seed)
    net = build_metanetwork(model_name, spec, out_dim, **dict(hparams or {}))
    model = TrainedMetanetwork(net, task, names, normalizer, mean, std, classes,
                               training={"model": model_name, **asdict(cfg)},
                               data=dict(data_info or {}))
    aug = RandomNeuronSymmetry(spec, seed=cfg.seed + 1) if cfg.augment else None
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)

    def loss_fn(out: Tensor, y: Tensor) -> Tensor:
        if task == "regression":
            return F.mse_loss(out, y)
        keep = y >= 0  # validation labels unseen in training count as wrong, not as a crash
        if not bool(keep.all()):
            out, y = out[keep], y[keep]
        return F.cross_entropy(out, y) if len(y) else out.sum() * 0

    history: list[dict[str, Any]] = []
    best_loss, best_state, best_epoch, stale = math.inf, None, 0, 0
    bar = tqdm(range(1, cfg.epochs + 1), desc=f"train {model_name}", disable=not progress, unit="epoch")
    for epoch in bar:
        net.train()
        total, seen = 0.0, 0
        for idx in torch.randperm(n_train, generator=gen).split(cfg.batch_size):
            params = _take(tr.params, idx)
            if aug is not None:
                params = aug(params)  # before normalizing: the symmetry acts on real weights
            loss = loss_fn(net(normalizer.normalize(params)), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        record: dict[str, Any] = {"epoch": epoch, "train_loss": total / seen}
        if va is not None and _n(va.params) > 0:
            record["val_loss"] = _eval_loss(model, va.params, y_val, loss_fn, cfg.batch_size)
            monitored = record["val_loss"]
        else:
            monitored = record["train_loss"]
        history.append(record)
        bar.set_postfix({k: f"{v:.4f}" for k, v in record.items() if k != "epoch"})
        if monitored < best_loss - 1e-6:
            best_loss, best_epoch, stale = monitored, epoch, 0
            best_state = copy.deepcopy(net.state_dict())
        else:
            stale += 1
            if va is not None and stale >= cfg.patience:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    model.training["best_epoch"] = best_epoch
    model.training["epochs_run"] = len(history)
    return model, history


@torch.no_grad()
def _eval_loss(model: TrainedMetanetwork, params: Params, y: Tensor, loss_fn, batch_size: int) -> float:
    model.net.eval()
    n = _n(params)
    total = 0.0
    for i in range(0, n, batch_size):
        chunk = {k: v[i:i + batch_size] for k, v in params.items()}
        total += float(loss_fn(model.raw_output(chunk), y[i:i + batch_size])) * min(batch_size, n - i)
    return total / max(n, 1)


def evaluate(model: TrainedMetanetwork, data: Any, spec: NetworkSpec | None = None,
             batch_size: int = 256) -> dict[str, Any]:
    """Test metrics of a trained metanetwork.

    Args:
        model: from :func:`fit` or :meth:`TrainedMetanetwork.load`.
        data: ``(params, targets)`` raw weights and targets, or a ``WeightDataset``.
        spec: the architecture of ``data`` (default: the dataset's, else the model's).
        batch_size: networks per forward pass (default ``256``).

    Returns:
        regression: ``kendall_tau``, ``r2``, ``mae``, ``rmse``, ``n`` (one target), or those per
        target under ``{target: {...}}``; classification: ``accuracy``, ``n``.
    """
    d = _unpack(data)
    pred = model.predict(d.params, spec or d.spec, batch_size)
    if model.task == "classification":
        y = _remap(d.targets, model.classes, d.classes.get(model.targets[0]))
        return classification_metrics(pred, y)
    per = {name: regression_metrics(pred[:, j], d.targets[:, j].double())
           for j, name in enumerate(model.targets)}
    return per[model.targets[0]] if len(per) == 1 else per
