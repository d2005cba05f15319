"""``mip``: a conditional hypernetwork with the Magnitude Invariant Parametrization.

Ortiz, Guttag & Dalca, *Magnitude Invariant Parametrizations Improve Hypernetwork Learning*
(ICLR 2024). A small MLP ``h`` maps condition values (hyperparameters such as ``lr``, or a
target metric such as ``test_acc``) to the parameters of a primary network. MIP changes two
things that make such hypernetworks train stably:

- **Input encoding.** Each condition column is scaled to ``z ∈ [0, 1]`` by its training
  minimum / maximum and encoded as ``[cos(πz/2), sin(πz/2)]``: the encoding has the same norm
  for every ``z``, so the size of the input does not scale the size of the output.
- **Additive output.** ``θ = θ0 + Δθ(z)``: ``θ0`` is the bias of the hypernetwork's last linear
  layer and ``Δθ`` the product of its weight with the hidden features. ``θ0`` is initialised to
  one trained network of the zoo and the last weight to small values, so training starts from a
  working network and learns how it changes with the condition.

Which training network becomes ``θ0`` (``init``):
    ``"median"`` (default) the network whose scaled condition is nearest the median condition
    (ties, e.g. all seeds of one grid value, broken by the best ``rank_by`` column); ``"best"``
    the network with the highest ``rank_by`` value. ``rank_by`` defaults to ``train_acc`` so the
    choice never looks at test data; without that column the first candidate is used.

Loss (``loss``). A zoo holds several networks per condition value (one per seed, init, ...),
and an ``lr`` does not appear in any loss, so MIP's own recipe (the task loss of the
hyperparameter being conditioned on) does not apply directly. The options:

    ``"distill"`` (default) for a training pair ``(z_i, θ_i)``, the KL divergence from the
        predictions of the zoo network ``θ_i`` to those of the generated ``h(z_i)`` on a batch
        of the source dataset's *training* examples, plus ``task_weight`` × the cross-entropy
        with the true labels. Summed over the networks sharing a condition value, this matches
        the generated network's function to the average prediction of the zoo at that
        condition - a target that is invariant to neuron permutations, unlike the weights.
    ``"task"``: cross-entropy with the labels only (the generated networks are then as good as
        the hypernetwork can make them, whatever the condition).
    ``"weights"``: mean squared error to ``θ_i``, each parameter scaled by its spread over the
        zoo (no data needed). Networks of one condition differ by permutations, so their mean
        is a poor network: a fallback, measured in ``benchmarks/bench_generate.py``.

The data losses need the source dataset: pass ``data=`` (a :class:`zoo_builders.Dataset`,
e.g. ``load_zoo_dataset(zoo)``) to :meth:`MIPGenerator.fit`, or the dataset config as the
``dataset`` hyperparameter (the zoo manifest's ``spec["dataset"]``). Only the training split
is used; test data never enters training.

Log scale (``log_scale``): columns listed there are scaled as ``log(value)``; the default
(``None``) is log scale for columns named ``lr``, ``learning_rate`` or ``weight_decay`` whose
training values are all positive (a learning-rate grid is geometric), linear otherwise.

Latent codes (``latent_dim``, default 8). Plain MIP maps a condition to one network, but the
zoo has many networks per condition (seeds, inits, other hyperparameters). Each training network
also gets a learned code ``e_i`` (an auto-decoder, as in DeepSDF; penalised by ``latent_reg ·
|e_i|²``), and the hypernetwork's input is ``[encode(z), e]``. With the ``distill`` loss each
generated network is pulled towards *its own* zoo network's predictions rather than the zoo's
average at that condition (an average of many networks' predictions is an ensemble, and a
network distilled from it beats the runs), and sampling different codes gives different
networks. Measured (``benchmarks/bench_generate.py``): on a well-trained MLP zoo the generated
accuracy at an lr is within ~1 point of the real runs there; on an under-trained CNN zoo the
generated networks are several points *better* than the runs at every lr (soft-label
distillation generalizes better than the runs' own training; the order by lr is kept).
``latent_dim=0`` is plain MIP.

Sampling: ``sample(n, seed=, condition={col: value})`` accepts any finite value, also ones not
seen in training (values outside the training range extrapolate along the encoding's circle).
Diversity comes from the codes: each of the ``n`` networks draws ``e ~ N(mean, std²)`` of the
learned codes (per dimension). ``noise`` (default ``0``) adds ``noise · ε``, ``ε ~ N(0, 1)``, to
the scaled condition as well; with ``latent_dim=0`` and ``noise=0`` the ``n`` networks are equal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec, population_forward
from weightspace.generators.base import Generator, check_training_set
from weightspace.generators.registry import register_generator

if TYPE_CHECKING:
    from zoo_builders.datasets import Dataset

LOSSES = ("distill", "task", "weights")
INITS = ("median", "best")
#: Columns scaled logarithmically by default (when every training value is positive).
LOG_COLUMNS = ("lr", "learning_rate", "weight_decay")


# ================================================================================ the condition
def encode_condition(z: Tensor) -> Tensor:
    """MIP's input encoding: per column ``[cos(πz/2), sin(πz/2)]`` (unit norm per column).

    Shapes:
        ``z [B, C]`` scaled conditions -> ``[B, 2C]`` laid out ``[cos z_1, sin z_1, cos z_2, ...]``.
    """
    angle = z * (math.pi / 2)
    return torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1).flatten(-2)  # [B, C, 2] -> [B, 2C]


def numeric_columns(table: pa.Table) -> list[str]:
    """The table's numeric (integer or floating, not boolean) columns, in table order."""
    return [f.name for f in table.schema
            if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)]


def condition_values(table: pa.Table, columns: Sequence[str]) -> np.ndarray:
    """The condition columns of ``table`` as float64 ``[N, C]``; a user error for a column that
    is absent, not numeric, or has missing / non-finite values."""
    numeric = numeric_columns(table)
    out = []
    for col in columns:
        if col not in table.column_names or col not in numeric:
            what = "is not a column" if col not in table.column_names else \
                f"is not numeric ({table.schema.field(col).type})"
            raise WeightzooError(
                f"mip condition column {col!r} {what} of the training rows; "
                f"numeric columns: {', '.join(numeric) or 'none'}")
        arr = table.column(col)
        if arr.null_count:
            raise WeightzooError(f"mip condition column {col!r} has {arr.null_count} missing value(s); "
                                 "select rows where it is set (where=, --where)")
        vals = arr.to_numpy(zero_copy_only=False).astype(np.float64)
        if not np.isfinite(vals).all():
            raise WeightzooError(f"mip condition column {col!r} has non-finite values; "
                                 "select rows where it is finite (where=, --where)")
        out.append(vals)
    return np.stack(out, axis=1) if out else np.zeros((table.num_rows, 0))


# ================================================================================ the hypernetwork
class MIPHypernetwork(nn.Module):
    """``θ = θ0 + W·φ(encode(z))``: an MLP over the encoded condition whose last linear layer's
    bias is ``θ0``.

    Args:
        n_conditions: condition columns ``C``.
        theta0: the flat initial network ``[P]`` (becomes the last layer's bias).
        hidden: width of the hidden layers (default ``64``).
        depth: hidden layers (default ``2``).
        delta_init: standard deviation of the last layer's initial weights (default ``1e-3``),
            so ``Δθ`` starts small.

    Shapes:
        ``forward(z [B, C]) -> [B, P]``.
    """

    def __init__(self, n_conditions: int, theta0: Tensor, hidden: int = 64, depth: int = 2,
                 delta_init: float = 1e-3, latent_dim: int = 0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 2 * n_conditions + latent_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, theta0.numel())
        with torch.no_grad():
            self.head.bias.copy_(theta0)
            self.head.weight.normal_(0.0, delta_init)

    def forward(self, z: Tensor, code: Tensor | None = None) -> Tensor:
        h = encode_condition(z)  # [B, 2C]
        if code is not None:
            h = torch.cat([h, code], dim=1)  # [B, 2C + latent_dim]
        return self.head(self.body(h))  # [B, P]


# ================================================================================ the generator
@register_generator("mip")
class MIPGenerator(Generator):
    """A MIP hypernetwork conditioned on numeric metadata columns (see the module docstring).

    Args:
        spec: the architecture of the training and generated networks.
        condition: the condition columns (default ``["lr"]``).
        log_scale: columns scaled as ``log(value)`` (default ``None``: ``lr``-like columns, see
            the module docstring).
        loss: ``"distill"`` (default), ``"task"`` or ``"weights"``.
        task_weight: weight of the label cross-entropy added to ``"distill"`` (default ``0.0``).
        init: which training network becomes ``θ0``: ``"median"`` (default) or ``"best"``.
        rank_by: the column that ranks candidates for ``θ0`` (default ``"train_acc"``).
        hidden / depth: hypernetwork width and hidden layers (default ``64`` / ``2``).
        delta_init: initial scale of the last layer's weights (default ``1e-3``).
        steps: optimisation steps (default ``1500``; ``0`` leaves the hypernetwork at its init).
        train_lr: Adam learning rate of the hypernetwork (default ``1e-3``; cosine-decayed).
        batch_models: training pairs per step (default ``32``).
        batch_examples: dataset examples per step (default ``256``).
        max_examples: most training examples whose zoo predictions are precomputed for
            ``"distill"`` (default ``4096``; a seeded subset beyond that).
        noise: standard deviation of extra per-sample noise on the scaled condition (default ``0.0``).
        latent_dim: size of the per-network latent code (default ``8``; ``0``: plain MIP, one
            network per condition value).
        latent_reg: weight of the codes' squared norm in the loss (default ``1e-2``).
        dataset: the source dataset's config (a dict such as a zoo manifest's ``spec["dataset"]``)
            when ``fit`` gets no ``data`` (default ``None``).

    Shapes:
        ``fit(params={name: [N, *shape]}, table=N rows)``; ``sample(n) -> {name: [n, *shape]}``.
    """

    conditional: ClassVar[bool] = True

    def __init__(self, spec: NetworkSpec, condition: Sequence[str] | str = ("lr",),
                 log_scale: Sequence[str] | None = None, loss: str = "distill", task_weight: float = 0.0,
                 init: str = "median", rank_by: str = "train_acc", hidden: int = 64, depth: int = 2,
                 delta_init: float = 1e-3, steps: int = 1500, train_lr: float = 1e-3, batch_models: int = 32,
                 batch_examples: int = 256, max_examples: int = 4096, noise: float = 0.0,
                 latent_dim: int = 8, latent_reg: float = 1e-2,
                 dataset: Mapping[str, Any] | str | None = None) -> None:
        cond = [condition] if isinstance(condition, str) else list(condition)
        if not cond or not all(isinstance(c, str) and c for c in cond) or len(set(cond)) != len(cond):
            raise WeightzooError(f"mip hyperparameter condition must name one or more distinct columns, "
                                 f"e.g. condition=['lr'], got {condition!r}")
        if loss not in LOSSES:
            raise WeightzooError(f"mip loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        if init not in INITS:
            raise WeightzooError(f"mip init must be one of {', '.join(INITS)}, got {init!r}")
        if int(steps) < 0:
            raise WeightzooError(f"mip hyperparameter steps must be >= 0, got {steps}")
        for name, value in (("hidden", hidden), ("depth", depth), ("batch_models", batch_models),
                            ("batch_examples", batch_examples), ("max_examples", max_examples)):
            if int(value) < 1:
                raise WeightzooError(f"mip hyperparameter {name} must be >= 1, got {value}")
        if noise < 0 or task_weight < 0 or train_lr <= 0 or delta_init < 0 or latent_dim < 0 or latent_reg < 0:
            raise WeightzooError("mip hyperparameters noise, task_weight, delta_init, latent_dim and latent_reg "
                                 "must be >= 0 and train_lr > 0")
        log_list = None if log_scale is None else ([log_scale] if isinstance(log_scale, str) else list(log_scale))
        super().__init__(spec, condition=cond, log_scale=log_list, loss=loss, task_weight=task_weight, init=init,
                         rank_by=rank_by, hidden=hidden, depth=depth, delta_init=delta_init, steps=steps,
                         train_lr=train_lr, batch_models=batch_models, batch_examples=batch_examples,
                         max_examples=max_examples, noise=noise, latent_dim=latent_dim, latent_reg=latent_reg,
                         dataset=dataset)
        self.condition = cond
        self.net: MIPHypernetwork | None = None
        self.log_columns: list[str] = []
        self.lo: list[float] = []
        self.hi: list[float] = []
        self.info: dict[str, Any] = {}
        self.code_mean: Tensor | None = None  # [latent_dim]
        self.code_std: Tensor | None = None  # [latent_dim]

    # ------------------------------------------------------------------ conditions and flat weights
    def _resolve_log(self, values: np.ndarray) -> list[str]:
        requested = self.hparams["log_scale"]
        if requested is None:
            return [c for i, c in enumerate(self.condition) if c in LOG_COLUMNS and (values[:, i] > 0).all()]
        unknown = sorted(set(requested) - set(self.condition))
        if unknown:
            raise WeightzooError(f"mip log_scale names {unknown}, which are not condition columns "
                                 f"({', '.join(self.condition)})")
        for c in requested:
            if not (values[:, self.condition.index(c)] > 0).all():
                raise WeightzooError(f"mip log_scale column {c!r} has values <= 0; drop it from log_scale")
        return list(requested)

    def scale(self, values: np.ndarray) -> Tensor:
        """Raw condition values ``[B, C]`` (columns in ``condition`` order) -> scaled ``z [B, C]``
        (0 at the training minimum, 1 at the maximum; log first for the log-scale columns)."""
        v = np.array(values, dtype=np.float64, copy=True)
        for i, c in enumerate(self.condition):
            if c in self.log_columns:
                if (v[:, i] <= 0).any():
                    raise WeightzooError(f"mip condition {c!r} is log-scaled and must be > 0, got {v[:, i].min()}")
                v[:, i] = np.log(v[:, i])
        lo, hi = np.asarray(self.lo), np.asarray(self.hi)
        return torch.as_tensor((v - lo) / (hi - lo), dtype=torch.float32)

    def _flat(self, params: Mapping[str, Tensor]) -> Tensor:
        """``{name: [N, *shape]}`` -> ``[N, P]`` float32 in the spec's parameter order."""
        missing = [p.name for p in self.spec.params if p.name not in params]
        if missing:
            raise WeightzooError(f"mip training weights lack parameter(s) {missing} of the architecture")
        n = next(iter(params.values())).shape[0]
        return torch.cat([params[p.name].reshape(n, -1).float() for p in self.spec.params], dim=1)

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """``[B, P]`` -> ``{name: [B, *shape]}`` (views; float32 while training)."""
        out, start = {}, 0
        for p in self.spec.params:
            out[p.name] = flat[:, start:start + p.numel].reshape(flat.shape[0], *p.shape)
            start += p.numel
        return out

    def _choose_init(self, z: Tensor, table: pa.Table) -> int:
        """Index of the training network that becomes ``θ0`` (see the module docstring)."""
        rank_by = self.hparams["rank_by"]
        score = None
        if rank_by in table.column_names and rank_by in numeric_columns(table):
            score = torch.as_tensor(table.column(rank_by).to_numpy(zero_copy_only=False).astype(np.float64))
            score = torch.nan_to_num(score, nan=-math.inf)
        if self.hparams["init"] == "best":
            return int(score.argmax()) if score is not None else 0
        dist = (z.double() - z.double().median(dim=0).values).norm(dim=1)  # [N]
        candidates = torch.nonzero(dist <= dist.min() + 1e-9).flatten()
        if score is None:
            return int(candidates[0])
        return int(candidates[score[candidates].argmax()])

    def _data(self, data: Dataset | None) -> Dataset:
        if data is not None:
            return data
        cfg = self.hparams["dataset"]
        if cfg is None:
            raise WeightzooError(
                f"mip loss {self.hparams['loss']!r} trains on the source dataset: pass data= to fit "
                "(zoo_builders.load_zoo_dataset(zoo)), set the hyperparameter dataset (the zoo's build "
                "spec dataset, e.g. {'name': 'digits', 'test_fraction': 0.25}), or use loss='weights'")
        from zoo_builders.datasets import load_dataset

        return load_dataset(cfg)

    # ------------------------------------------------------------------ training
    def fit(self, params: Mapping[str, Tensor], table: pa.Table, *, seed: int = 0, progress: bool = False,
            data: Dataset | None = None) -> None:
        """Train the hypernetwork on ``(condition, weights)`` pairs.

        Args:
            params: ``{name: [N, *shape]}`` training networks.
            table: their metadata rows (N, same order), holding the condition columns.
            seed: seeds the hypernetwork's init and every batch.
            progress: show a progress bar.
            data: the source dataset (training split used) for the ``distill`` / ``task`` losses;
                default: the ``dataset`` hyperparameter.

        Shapes:
            ``params[name]``: ``[N, *shape]``.
        """
        n = check_training_set(params, self.spec, "mip")
        if table.num_rows != n:
            raise WeightzooError(f"mip got {n} training networks but {table.num_rows} metadata rows")
        values = condition_values(table, self.condition)  # [N, C]
        self.log_columns = self._resolve_log(values)
        logged = values.copy()
        for i, c in enumerate(self.condition):
            if c in self.log_columns:
                logged[:, i] = np.log(logged[:, i])
        self.lo, self.hi = logged.min(axis=0).tolist(), logged.max(axis=0).tolist()
        flat_const = [c for c, lo, hi in zip(self.condition, self.lo, self.hi) if not hi > lo]
        if flat_const:
            raise WeightzooError(f"mip condition column(s) {flat_const} take a single value in the training rows; "
                                 "condition on a column that varies, or widen the selection (where=, --where)")
        z = self.scale(values)  # [N, C]
        weights = self._flat(params)  # [N, P]
        init_index = self._choose_init(z, table)
        loss_name = self.hparams["loss"]
        gen = torch.Generator().manual_seed(int(seed))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            d = int(self.hparams["latent_dim"])
            net = MIPHypernetwork(len(self.condition), weights[init_index].clone(), int(self.hparams["hidden"]),
                                  int(self.hparams["depth"]), float(self.hparams["delta_init"]), d)
            # One learned code per training network (an auto-decoder, as in DeepSDF): what tells the
            # networks of one condition apart (seed, init, ...). None when latent_dim = 0 (plain MIP).
            codes = nn.Parameter(0.01 * torch.randn(n, d)) if d else None
        buffers = torch.cat([torch.full((p.numel,), not p.trainable) for p in self.spec.params])  # [P]

        x = y = teacher = None
        if loss_name in ("distill", "task"):
            ds = self._data(data)
            x, y = ds.x_train, ds.y_train
            if tuple(x.shape[1:]) != tuple(self.spec.input_shape):
                raise WeightzooError(f"dataset {ds.name!r} has inputs {tuple(x.shape[1:])} but the architecture "
                                     f"takes {tuple(self.spec.input_shape)}; pass the zoo's own dataset")
            if x.shape[0] > int(self.hparams["max_examples"]):
                keep = torch.randperm(x.shape[0], generator=gen)[: int(self.hparams["max_examples"])]
                x, y = x[keep], y[keep]
            if loss_name == "distill":
                teacher = self._teacher_log_probs(params, x)  # [N, n_x, K]
        scale = weights.std(dim=0).clamp_min(1e-6) if loss_name == "weights" else None  # [P]

        steps = int(self.hparams["steps"])
        opt = torch.optim.Adam([*net.parameters(), *([codes] if codes is not None else [])],
                               lr=float(self.hparams["train_lr"]))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        bm = min(int(self.hparams["batch_models"]), n)
        task_weight = float(self.hparams["task_weight"])
        history: list[float] = []
        bar = tqdm(range(steps), desc="mip", disable=not progress, unit="step")
        for _ in bar:
            idx = torch.randint(0, n, (bm,), generator=gen)  # [bm]
            code = codes[idx] if codes is not None else None  # [bm, d]
            theta = net(z[idx], code)  # [bm, P]
            theta = torch.where(buffers, weights[init_index], theta)  # buffers stay those of θ0
            if loss_name == "weights":
                loss = (((theta - weights[idx]) / scale) ** 2).mean()
            else:
                ex = torch.randint(0, x.shape[0], (min(int(self.hparams["batch_examples"]), x.shape[0]),),
                                   generator=gen)  # [bx]
                logits = population_forward(self.spec, self.unflatten(theta), x[ex])  # [bm, bx, K]
                log_p = F.log_softmax(logits, dim=-1)
                if loss_name == "task":
                    loss = F.nll_loss(log_p.flatten(0, 1), y[ex].repeat(bm))
                else:
                    t = teacher[idx][:, ex]  # [bm, bx, K]
                    loss = (t.exp() * (t - log_p)).sum(-1).mean()
                    if task_weight:
                        loss = loss + task_weight * F.nll_loss(log_p.flatten(0, 1), y[ex].repeat(bm))
            if code is not None:
                loss = loss + float(self.hparams["latent_reg"]) * (code ** 2).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            history.append(loss.item())
            if progress:
                bar.set_postfix(loss=f"{history[-1]:.4f}")
        net.eval()
        self.net = net
        if codes is not None:  # sampling draws codes from a Gaussian fit to the learned ones
            self.code_mean, self.code_std = codes.detach().mean(0), codes.detach().std(0)
        tail = history[-max(1, steps // 20):] or [math.nan]
        ids = table.column("model_id").to_pylist() if "model_id" in table.column_names else None
        self.info = {"n_train": n, "init_index": init_index,
                     "init_model_id": ids[init_index] if ids else None,
                     "loss_first": history[0] if history else None,
                     "loss_final": float(np.mean(tail)) if history else None}

    @torch.no_grad()
    def _teacher_log_probs(self, params: Mapping[str, Tensor], x: Tensor, chunk: int = 64) -> Tensor:
        """Log-softmax predictions of every training network on ``x``.

        Shapes:
            ``x [n_x, *input]`` -> ``[N, n_x, K]``.
        """
        n = next(iter(params.values())).shape[0]
        out = []
        for s in range(0, n, chunk):
            part = {k: v[s:s + chunk].float() for k, v in params.items()}
            out.append(F.log_softmax(population_forward(self.spec, part, x), dim=-1))
        return torch.cat(out)

    # ------------------------------------------------------------------ sampling
    def _condition_row(self, condition: Mapping[str, float] | None) -> np.ndarray:
        if self.net is None:
            raise self.not_trained()
        if not condition:
            raise WeightzooError(f"mip is conditional: give a value for each condition column "
                                 f"({', '.join(self.condition)}), e.g. condition={{{self.condition[0]!r}: VALUE}} "
                                 f"(--condition {self.condition[0]}=VALUE)")
        missing = [c for c in self.condition if c not in condition]
        extra = sorted(set(condition) - set(self.condition))
        if missing or extra:
            raise WeightzooError(f"mip was trained on condition column(s) {self.condition}; got {sorted(condition)} "
                                 f"(missing {missing}, unknown {extra})")
        row = []
        for c in self.condition:
            try:
                v = float(condition[c])
            except (TypeError, ValueError):
                raise WeightzooError(f"mip condition {c}={condition[c]!r} is not a number") from None
            if not math.isfinite(v):
                raise WeightzooError(f"mip condition {c}={v} is not finite")
            row.append(v)
        return np.asarray([row])

    @torch.no_grad()
    def generate(self, z: Tensor, code: Tensor | None = None) -> dict[str, Tensor]:
        """Networks for scaled conditions ``z`` (no noise) and, with ``latent_dim > 0``, latent
        codes (default: the mean code), in the spec's dtype.

        Shapes:
            ``z [B, C]``, ``code [B, latent_dim]`` -> ``{name: [B, *shape]}``.
        """
        if self.net is None:
            raise self.not_trained()
        if code is None and self.code_mean is not None:
            code = self.code_mean.expand(z.shape[0], -1)
        flat = self.net(z.float(), code)  # [B, P]
        theta0 = self.net.head.bias
        buffers = torch.cat([torch.full((p.numel,), not p.trainable) for p in self.spec.params])
        flat = torch.where(buffers, theta0, flat)
        dtype = self.spec.torch_dtype
        return {k: v.to(dtype).contiguous() for k, v in self.unflatten(flat).items()}

    def sample(self, n: int, *, seed: int = 0, condition: Mapping[str, float] | None = None) -> dict[str, Tensor]:
        """``n`` networks for ``condition`` (``{column: value}``, any finite value).

        Shapes:
            returns ``{name: [n, *shape]}``.
        """
        row = self._condition_row(condition)
        if int(n) < 1:
            raise WeightzooError(f"mip sample needs n >= 1, got {n}")
        z = self.scale(row).expand(int(n), -1)  # [n, C]
        gen = torch.Generator().manual_seed(int(seed))
        noise = float(self.hparams["noise"])
        if noise:
            z = z + noise * torch.randn(z.shape, generator=gen)
        code = None
        if self.code_mean is not None:
            code = self.code_mean + self.code_std * torch.randn((int(n), self.code_mean.numel()), generator=gen)
        return self.generate(z, code)

    # ------------------------------------------------------------------ state
    def state_tensors(self) -> dict[str, Tensor]:
        if self.net is None:
            raise self.not_trained()
        out = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        if self.code_mean is not None:
            out["code_mean"], out["code_std"] = self.code_mean, self.code_std
        return out

    def state_config(self) -> dict[str, Any]:
        return {"condition": self.condition, "log_columns": self.log_columns, "lo": self.lo, "hi": self.hi,
                **self.info}

    def load_state(self, tensors: Mapping[str, Tensor], config: Mapping[str, Any]) -> None:
        self.condition = list(config["condition"])
        self.log_columns = list(config.get("log_columns") or [])
        self.lo, self.hi = [float(v) for v in config["lo"]], [float(v) for v in config["hi"]]
        self.info = {k: v for k, v in config.items() if k not in ("condition", "log_columns", "lo", "hi")}
        sd = {k[len("net."):]: v for k, v in tensors.items() if k.startswith("net.")}
        with torch.random.fork_rng(devices=[]):  # the init is overwritten; keep the global RNG as it was
            net = MIPHypernetwork(len(self.condition), sd["head.bias"], int(self.hparams["hidden"]),
                                  int(self.hparams["depth"]), 0.0, int(self.hparams["latent_dim"]))
        self.code_mean, self.code_std = tensors.get("code_mean"), tensors.get("code_std")
        net.load_state_dict(sd)
        net.eval()
        self.net = net
