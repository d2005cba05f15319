"""Training and evaluating metanetworks on zoos: :func:`fit` and :func:`evaluate`.

The loop reads top to bottom: build the model, then per epoch shuffle the training networks,
optionally apply a random neuron symmetry to each (a free augmentation: the networks compute
the same functions), normalize, step; evaluate on validation; keep the best state and stop
when validation has not improved for ``patience`` epochs (never before ``min_epochs``).

Data comes either as a ``(params, targets)`` pair - ``{name: Tensor[N, *shape]}`` raw weights
and ``Tensor[N, T]`` - or as a ``catalog.dataset.WeightDataset`` (its stored statistics give the
normalization; see :mod:`weightspace.normalization` for why they are pooled per tensor). A
WeightDataset of several architectures trains one model on all of them when the model reads
several (``Metanetwork.multi_arch``: ``gmn`` always, ``statnn``/``mlp`` when the parameter
shapes agree): every batch holds networks of one architecture, and the order of the batches is
shuffled, so each step sees one NetworkSpec and each epoch sees them all.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec
from catalog.selection import describe_differences, name_some
from weightspace.metrics import classification_metrics, regression_metrics
from weightspace.models.base import Metanetwork
from weightspace.models.registry import build_metanetwork, get_metanetwork, metanetwork_names
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
        patience: stop after this many epochs without a better validation loss (default
            ``10``; ``0`` turns early stopping off: every epoch runs). Either way the weights
            of the best validation epoch are kept.
        min_epochs: never stop early before this epoch (default ``5``: a noisy first few
            epochs on a small validation split do not end training).
        seed: seeds model init, shuffling and augmentation (default ``0``).
    """

    epochs: int = 50
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    augment: bool = False
    patience: int = 10
    seed: int = 0
    min_epochs: int = 5

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise WeightzooError(f"epochs must be >= 1, got {self.epochs}")
        if not self.lr > 0:
            raise WeightzooError(f"lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise WeightzooError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.batch_size < 1:
            raise WeightzooError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.patience < 0:
            raise WeightzooError(f"patience must be >= 0 (0: no early stopping), got {self.patience}")
        if self.min_epochs < 0:
            raise WeightzooError(f"min_epochs must be >= 0, got {self.min_epochs}")
        check_seed(self.seed)


#: The largest seed (in absolute value) :func:`check_seed` accepts. Torch takes seeds from
#: -2**63 to 2**64 - 1 and reads a negative one as ``seed + 2**64`` (as the run split does, see
#: :func:`catalog.split.split_by_run`), so -5 and 2**64 - 5 would be one seed; within
#: +-2**62 every seed is its own, with room for the seeds training derives (``seed + 1 + i``
#: per architecture).
MAX_SEED = 2**62


def check_seed(seed: object, name: str = "seed", flag: str = "--seed") -> int:
    """``seed`` if it is an integer from -:data:`MAX_SEED` to :data:`MAX_SEED` (negative seeds
    are seeds, as in the other commands: ``zoo generate``, ``zoo analyze``, ``zoo embed``).

    Args:
        seed: the value given.
        name: the Python argument it came from, for the message (default ``seed``).
        flag: the CLI option that passes it, for the message (default ``--seed``).

    Raises:
        WeightzooError: naming the argument and its option (``seed=1.5 (--seed)``) and the valid range.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not -MAX_SEED <= seed <= MAX_SEED:
        raise WeightzooError(f"{name}={seed!r} ({flag}) must be an integer from -2**62 to 2**62")
    return seed


class EarlyStopping:
    """The best state by a monitored loss, and when to stop (shared by :func:`fit` and
    :func:`weightspace.editing.fit_editor`).

    Args:
        patience: stop after this many epochs without an improvement (``0``: never stop).
        min_epochs: never stop before this epoch (default ``0``).
        min_delta: an improvement must lower the loss by more than this (default ``1e-6``).
    """

    def __init__(self, patience: int, min_epochs: int = 0, min_delta: float = 1e-6) -> None:
        self.patience = patience
        self.min_epochs = min_epochs
        self.min_delta = min_delta
        self.best_loss = math.inf
        self.best_epoch = 0
        self.best_state: dict[str, Tensor] | None = None
        self.stale = 0

    def step(self, epoch: int, loss: float, model: nn.Module) -> bool:
        """Record epoch ``epoch``'s loss (keeping a copy of ``model``'s state if it is the best
        so far); ``True`` when training should stop."""
        if loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.stale = loss, epoch, 0
            self.best_state = copy.deepcopy(model.state_dict())
            return False
        self.stale += 1
        return 0 < self.patience <= self.stale and epoch >= self.min_epochs

    def restore(self, model: nn.Module) -> None:
        """Load the best state into ``model`` (no-op if no epoch was recorded)."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


@dataclass
class _Group:
    """The networks of one architecture."""

    spec: NetworkSpec | None
    params: dict[str, Tensor]  # raw, unnormalized
    targets: Tensor  # [N, T]
    stats: Mapping[str, Mapping[str, Tensor]] | None


@dataclass
class _Data:
    groups: list[_Group]  # one per architecture (empty groups dropped, unless all are empty)
    classes: dict[str, list[Any]]
    target_names: list[str] | None

    @property
    def targets(self) -> Tensor:
        return torch.cat([g.targets for g in self.groups])

    @property
    def n(self) -> int:
        return sum(_n(g.params) for g in self.groups)

    def specs(self) -> dict[str, NetworkSpec]:
        return {g.spec.arch_id: g.spec for g in self.groups if g.spec is not None}


def _unpack(data: Any, spec: NetworkSpec | None = None) -> _Data:
    """A ``(params, targets)`` pair or a WeightDataset-like object as raw weights + targets,
    one group per architecture. ``spec`` names the architecture of a pair (and overrides a
    one-architecture dataset's)."""
    if hasattr(data, "by_arch") and hasattr(data, "stacked"):
        groups = []
        for part in data.by_arch().values():
            params, targets = part.stacked()
            stats = getattr(part, "stats", None)
            if stats is not None:  # WeightDataset(normalize=True): undo its per-entry normalization
                params = part.denormalize_weights(params)
            groups.append(_Group(part.network_spec, dict(params), _as_2d(targets), stats))
        if spec is not None and len(groups) == 1:
            groups[0].spec = spec
        nonempty = [g for g in groups if _n(g.params)]
        return _Data(nonempty or groups[:1], dict(getattr(data, "classes", {}) or {}),
                     list(getattr(data, "targets", []) or []))
    try:
        params, targets = data
    except (TypeError, ValueError) as e:
        raise WeightzooError(
            "training data must be a (params, targets) pair or a WeightDataset") from e
    return _Data([_Group(spec, dict(params), _as_2d(targets), None)], {}, None)


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
    lookup = {_key(v, targets.dtype): i for i, v in enumerate(labels)}
    return torch.tensor([lookup.get(_key(v, targets.dtype), -1) for v in values], dtype=torch.long)


def _key(v: Any, dtype: torch.dtype) -> Any:
    """A label as a target tensor of ``dtype`` holds it, so that a label taken from the column
    (0.001, True) matches its target (0.0010000000474974513 and 1.0 in float32); text as itself."""
    if isinstance(v, bool | int | float):
        return float(torch.tensor(float(v), dtype=dtype)) if dtype.is_floating_point else float(v)
    return v


def _column_labels(labels: list[Any], dtype: torch.dtype, column: Sequence[Any], target: str) -> list[Any]:
    """The class ``labels`` read off ``dtype`` targets, as the target ``column`` holds them.

    A WeightDataset hands numbers and booleans to the model as float32 targets, so the labels
    found in the targets are float32 roundings (0.001 arrives as 0.0010000000474974513, True as
    1); each is mapped back to the column value it came from, so that the run records (and
    ``zoo predict`` writes) the classes as they are in the zoo.

    Raises:
        WeightzooError: two values of the column are one ``dtype`` target: no model trained on
            these targets can tell them apart, and neither would be the class it learnt.
    """
    exact: dict[Any, Any] = {}
    for v in set(column):
        k = _key(v, dtype)
        if k in exact and exact[k] != v:
            a, b = sorted((exact[k], v))
            raise WeightzooError(
                f"target {target!r} has the classes {a!r} and {b!r}, which are the same number once "
                f"rounded to the {str(dtype).removeprefix('torch.')} targets training uses, so a "
                f"metanetwork cannot tell them apart; select rows with only one of the two (--where), "
                f"or predict {target!r} by regression (--task regression)")
        exact[k] = v
    return [exact.get(_key(label, dtype), label) for label in labels]


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
    min_epochs: int = 5,
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
            ``[N, T]``) or a ``WeightDataset`` (of one or several architectures; several need
            a model that reads them, see ``Metanetwork.multi_arch``).
        val: the same for validation (default ``None``: no early stopping, the last epoch is kept).
        spec: the networks' architecture (default: ``train.network_spec``; needed for pairs).
        task: ``regression`` (MSE on standardized targets) or ``classification`` (cross-entropy;
            targets are labels, or indices when ``train`` is a WeightDataset of a string column).
        targets: names of the target columns, for the record (default: the dataset's).
        epochs, lr, weight_decay, batch_size, augment, patience, min_epochs, seed: see
            :class:`TrainConfig` (``patience=0``: no early stopping).
        progress: show a progress bar (default ``True``).
        hparams: metanetwork hyperparameters (default: the model's defaults).
        normalizer: weight normalization (default: from the dataset's stored statistics, else
            computed on ``train``; pooled per tensor name over all architectures).
        data_info: facts about the data source stored in the run config (default none).

    Returns:
        the trained model (best validation epoch) and the per-epoch history.
    """
    cfg = TrainConfig(epochs, lr, weight_decay, batch_size, augment, patience, seed, min_epochs)
    if task not in TASKS:
        raise WeightzooError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    tr = _unpack(train, spec)
    va = _unpack(val, spec) if val is not None else None
    if any(g.spec is None for g in tr.groups):
        raise WeightzooError("fit(...) needs spec= when the data is a (params, targets) pair")
    if tr.n == 0:
        raise WeightzooError("the training split is empty; select more networks")
    names = list(targets or tr.target_names or [f"target_{i}" for i in range(tr.targets.shape[1])])
    hp = dict(hparams or {})
    # Every architecture the model must read: the training ones first, then validation-only ones.
    specs = {**tr.specs(), **(va.specs() if va is not None else {})}
    net_class = get_metanetwork(model_name)
    problem = net_class.arch_problem(list(specs.values()), hp)
    if problem is not None:
        raise several_archs_error(problem, specs)
    if normalizer is None:
        normalizer = _normalizer(tr.groups)

    # Targets: standardized for regression (so one lr fits every column), indices for classes.
    mean: list[float] = []
    std: list[float] = []
    classes: list[Any] = []
    y_all = tr.targets
    if task == "regression":
        if not y_all.dtype.is_floating_point and tr.classes:
            raise WeightzooError(
                f"target {names[0]!r} is categorical ({len(next(iter(tr.classes.values())))} "
                f"classes); use task='classification'")
        y_tr = y_all.double()
        mean = y_tr.mean(0).tolist()
        std = [s if s > 0 else 1.0 for s in y_tr.std(0, correction=0).tolist()]
        y_train = ((y_tr - torch.tensor(mean)) / torch.tensor(std)).float()
        y_val = (((va.targets.double() - torch.tensor(mean)) / torch.tensor(std)).float()
                 if va is not None else None)
        out_dim = y_all.shape[1]
    else:
        y_train, classes = _class_indices(y_all, tr.classes.get(names[0]))
        table = getattr(train, "table", None)  # a WeightDataset's rows, with the target column
        if not tr.classes.get(names[0]) and table is not None and names[0] in table.column_names:
            classes = _column_labels(classes, y_all.dtype, table.column(names[0]).to_pylist(), names[0])
        y_val = _remap(va.targets, classes, va.classes.get(names[0])) if va is not None else None
        out_dim = len(classes)
        if out_dim < 2:
            raise WeightzooError(f"classification needs at least 2 classes in the training split, "
                                 f"got {classes}")
    y_train_parts = _split_rows(y_train, tr.groups)
    y_val_parts = _split_rows(y_val, va.groups) if va is not None else []

    torch.manual_seed(cfg.seed)
    spec_arg = list(specs.values()) if net_class.multi_arch == "any" and len(specs) > 1 else next(iter(specs.values()))
    net = build_metanetwork(model_name, spec_arg, out_dim, **hp)
    info = {**dict(data_info or {}), "arch_ids": list(tr.specs())}
    model = TrainedMetanetwork(net, task, names, normalizer, mean, std, classes,
                               training={"model": model_name, **asdict(cfg)}, data=info)
    augs = ([RandomNeuronSymmetry(g.spec, seed=cfg.seed + 1 + i) for i, g in enumerate(tr.groups)]
            if cfg.augment else None)
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
    has_val = va is not None and va.n > 0
    # Without validation data there is nothing to stop on: keep the best training loss.
    stopper = EarlyStopping(cfg.patience if has_val else 0, cfg.min_epochs)
    bar = tqdm(range(1, cfg.epochs + 1), desc=f"train {model_name}", disable=not progress, unit="epoch")
    for epoch in bar:
        net.train()
        total, seen = 0.0, 0
        # A batch holds networks of one architecture (one NetworkSpec per forward pass).
        batches = [(gi, idx) for gi, g in enumerate(tr.groups)
                   for idx in torch.randperm(_n(g.params), generator=gen).split(cfg.batch_size)]
        if len(tr.groups) > 1:  # mix the architectures' batches (one group: already shuffled)
            batches = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
        for gi, idx in batches:
            group = tr.groups[gi]
            params = _take(group.params, idx)
            if augs is not None:
                params = augs[gi](params)  # before normalizing: the symmetry acts on real weights
            out = net.forward_arch(normalizer.normalize(params), group.spec)
            loss = loss_fn(out, y_train_parts[gi][idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        record: dict[str, Any] = {"epoch": epoch, "train_loss": total / seen}
        if has_val:
            record["val_loss"] = _eval_loss(model, va.groups, y_val_parts, loss_fn, cfg.batch_size)
        history.append(record)
        bar.set_postfix({k: f"{v:.4f}" for k, v in record.items() if k != "epoch"})
        if stopper.step(epoch, record.get("val_loss", record["train_loss"]), net):
            break
    stopper.restore(net)
    net.eval()
    model.training["best_epoch"] = stopper.best_epoch
    model.training["epochs_run"] = len(history)
    return model, history


def several_archs_error(problem: str, specs: Mapping[str, NetworkSpec]) -> WeightzooError:
    """The user error for data of several architectures that a model cannot read together:
    ``problem`` (from ``Metanetwork.arch_problem``), the arch ids, what distinguishes them and
    how to select one."""
    first = next(iter(specs))
    # Only the models that read these very architectures together (with default settings).
    readers = [f"'{n}'" for n in metanetwork_names()
               if get_metanetwork(n).multi_arch != "one" and _reads(get_metanetwork(n), specs)]
    return WeightzooError(
        f"{problem}. The data spans {len(specs)} architectures: {name_some(list(specs))}; they differ "
        f"in {describe_differences(specs)}. Train on one of them (e.g. --where \"arch_id = "
        f"'{first}'\", or where=\"arch_id = '{first}'\" in Python), or use a model that "
        f"reads them together: {', '.join(readers)}")


def _reads(net_class: type[Metanetwork], specs: Mapping[str, NetworkSpec]) -> bool:
    """Whether ``net_class`` with default settings reads all of ``specs`` in one model."""
    try:
        return net_class.arch_problem(list(specs.values()), {}) is None
    except WeightzooError:  # refuses a graph architecture outright
        return False


def _normalizer(groups: list[_Group]) -> ParamNormalizer:
    """Per-tensor normalization of the training weights, pooled over every architecture."""
    if len(groups) == 1:
        g = groups[0]
        return (ParamNormalizer.from_entry_stats(g.stats) if g.stats is not None
                else ParamNormalizer.from_weights(g.params))
    # Pool first and second moments per tensor name, weighting each architecture by its rows.
    s1: dict[str, float] = {}
    s2: dict[str, float] = {}
    count: dict[str, float] = {}
    for g in groups:
        n = _n(g.params)
        for k, v in g.params.items():
            if g.stats is not None:
                m = g.stats["mean"][k].to(torch.float64)
                sd = g.stats["std"][k].to(torch.float64)
                first, second = n * float(m.sum()), n * float((sd.pow(2) + m.pow(2)).sum())
            else:
                v64 = v.detach().to(torch.float64)
                first, second = float(v64.sum()), float(v64.pow(2).sum())
            s1[k] = s1.get(k, 0.0) + first
            s2[k] = s2.get(k, 0.0) + second
            count[k] = count.get(k, 0.0) + v.numel()
    mean = {k: s1[k] / count[k] for k in s1 if count[k]}
    std = {k: math.sqrt(max(s2[k] / count[k] - mean[k] ** 2, 0.0)) for k in mean}
    return ParamNormalizer(mean, std)


def _split_rows(y: Tensor, groups: list[_Group]) -> list[Tensor]:
    """Rows ``[N, ...]`` (the groups' rows, concatenated) back into one tensor per group."""
    return list(torch.split(y, [_n(g.params) for g in groups]))


@torch.no_grad()
def _eval_loss(model: TrainedMetanetwork, groups: list[_Group], ys: list[Tensor], loss_fn,
               batch_size: int) -> float:
    model.net.eval()
    total, n_all = 0.0, 0
    for group, y in zip(groups, ys):
        n = _n(group.params)
        for i in range(0, n, batch_size):
            chunk = {k: v[i:i + batch_size] for k, v in group.params.items()}
            out = model.raw_output(chunk, group.spec)
            total += float(loss_fn(out, y[i:i + batch_size])) * min(batch_size, n - i)
        n_all += n
    return total / max(n_all, 1)


def evaluate(model: TrainedMetanetwork, data: Any, spec: NetworkSpec | None = None,
             batch_size: int = 256) -> dict[str, Any]:
    """Test metrics of a trained metanetwork.

    Args:
        model: from :func:`fit` or :meth:`TrainedMetanetwork.load`.
        data: ``(params, targets)`` raw weights and targets, or a ``WeightDataset`` (one or
            several architectures).
        spec: the architecture of a ``(params, targets)`` pair (default: the model's).
        batch_size: networks per forward pass (default ``256``).

    Returns:
        regression: ``kendall_tau``, ``r2``, ``mae``, ``rmse``, ``n`` (one target), or those per
        target under ``{target: {...}}``; classification: ``accuracy``, ``n``.
    """
    d = _unpack(data, spec)
    pred = torch.cat([model.predict(g.params, g.spec, batch_size) for g in d.groups])
    targets = d.targets
    if model.task == "classification":
        y = _remap(targets, model.classes, d.classes.get(model.targets[0]))
        return classification_metrics(pred, y)
    per = {name: regression_metrics(pred[:, j], targets[:, j].double())
           for j, name in enumerate(model.targets)}
    return per[model.targets[0]] if len(per) == 1 else per
