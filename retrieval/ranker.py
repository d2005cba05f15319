"""A learned ranker: predicts how well each model will transfer to a task, trained on
(model, task, ground-truth transfer) triples from a hub zoo.

A simplified Model Spider (Zhang et al., NeurIPS 2023). Model Spider learns a token per model
and a task token and scores their pair with a transformer, trained with a ranking loss on
fine-tuned accuracies of many (model, task) pairs. Here:

- **model token**: the model's stored behaviour embedding (:mod:`retrieval.embed`, method
  ``behavior``): its softmax outputs on ``n`` probe inputs, ``[n, C]``;
- **task token**: the task's embedding in the same space
  (:func:`~retrieval.embeddings.task_embedding`): for every probe, the label distribution of
  its nearest task examples, ``[n, C]``;
- **scorer** (:class:`RankerNet`): a DeepSets network over the probes. Each probe ``i`` gives
  the features ``[m_i, t_i, m_i * t_i]`` (``3C``), a small MLP ``phi`` maps them to ``h``
  values, the mean over probes (invariant to the probes' order and number) goes with the
  cosine similarity of the two embeddings (raw and standardized over the candidates) and,
  optionally, estimator scores (:data:`~retrieval.estimators.ESTIMATORS`, standardized over
  the candidates) into an MLP ``rho`` that outputs one score;
- **loss**: within each training task the ground truth is standardized over the models
  (so only the order within a task matters, not how hard the task is); the loss is the mean
  squared error against it plus ListNet's listwise cross-entropy (Cao et al. 2007) between
  the softmax of the predicted and of the true standardized scores, which weights the top of
  the list, as weighted Kendall tau does.

A trained ranker is a directory: ``ranker.safetensors`` (the weights) and ``ranker.json``
(format, sizes, estimators, the embedding config it was trained with, training settings and
tasks). Nothing in it is executed when loading.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from catalog.errors import WeightzooError
from catalog.format import atomic_write_bytes, parse_json, safetensors_bytes
from retrieval.estimators.registry import get_estimator
from weightspace.memory import allocation_limit

RANKER_FORMAT = "weightzoo-ranker-v1"
WEIGHTS_FILE = "ranker.safetensors"
CONFIG_FILE = "ranker.json"
LOSSES = ("mse", "listnet", "mse+listnet")


def standardize(x: Tensor, dim: int = 0) -> Tensor:
    """``(x - mean) / std`` along ``dim`` over the finite entries; NaN stays NaN, a constant
    column becomes 0.

    Shapes:
        any -> same.
    """
    x = x.to(torch.float32)
    ok = torch.isfinite(x)
    n = ok.sum(dim, keepdim=True).clamp_min(1)
    z = torch.where(ok, x, torch.zeros_like(x))
    mean = z.sum(dim, keepdim=True) / n
    var = torch.where(ok, (x - mean) ** 2, torch.zeros_like(x)).sum(dim, keepdim=True) / n
    std = var.sqrt()
    scaled = torch.where(std > 1e-12, (x - mean) / std.clamp_min(1e-12), torch.zeros_like(x))
    return scaled.masked_fill(~ok, float("nan"))


@dataclass(frozen=True)
class RankerFeatures:
    """The ranker's input for ``P`` candidate models and one task.

    Shapes:
        ``tokens [P, n, 3C]`` (per probe: model output, task label distribution, product),
        ``pair [P, 2 + E]`` (cosine similarity raw and standardized, then ``E`` standardized
        estimator scores); rows of diverged models hold NaN.
    """

    tokens: Tensor
    pair: Tensor

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def ranker_features(model_emb: Tensor, task_emb: Tensor, n_outputs: int,
                    estimator_scores: Tensor | None = None) -> RankerFeatures:
    """Build :class:`RankerFeatures` from behaviour embeddings and a task embedding.

    Args:
        model_emb: ``[P, n * C]`` behaviour embeddings (probe-major).
        task_emb: ``[n * C]`` the task's embedding on the same probes.
        n_outputs: ``C``.
        estimator_scores: ``[P, E]`` raw estimator scores on the task (default none).
    """
    if model_emb.dim() != 2 or task_emb.dim() != 1 or model_emb.shape[1] != task_emb.shape[0]:
        raise WeightzooError(
            f"embedding dimension mismatch: model embeddings {list(model_emb.shape)} and task "
            f"embedding {list(task_emb.shape)} must agree in d (same probes and outputs)")
    d = model_emb.shape[1]
    if n_outputs < 1 or d % n_outputs:
        raise WeightzooError(f"embedding dimension {d} is not a multiple of n_outputs {n_outputs}")
    n_pop = model_emb.shape[0]
    m = model_emb.float().reshape(n_pop, d // n_outputs, n_outputs)
    t = task_emb.float().reshape(1, d // n_outputs, n_outputs).expand_as(m)
    tokens = torch.cat([m, t, m * t], dim=-1)
    cos = (model_emb.double() @ task_emb.double()) / (
        model_emb.double().norm(dim=1) * task_emb.double().norm()).clamp_min(1e-300)
    cols = [cos.float(), standardize(cos)]
    if estimator_scores is not None:
        if estimator_scores.dim() != 2 or estimator_scores.shape[0] != n_pop:
            raise WeightzooError(f"estimator scores must be [P={n_pop}, E], got {list(estimator_scores.shape)}")
        cols += list(standardize(estimator_scores, 0).unbind(1))
    return RankerFeatures(tokens, torch.stack(cols, 1))


class RankerNet(nn.Module):
    """DeepSets scorer over probe tokens (see the module docstring).

    Args:
        n_outputs: ``C``, the models' outputs (token width ``3C``).
        n_pair: pair features (``2 + E``).
        hidden: width of ``phi`` and ``rho`` (default ``64``).

    Shapes:
        ``forward(tokens [P, n, 3C], pair [P, 2 + E])`` -> ``[P]``.
    """

    def __init__(self, n_outputs: int, n_pair: int, hidden: int = 64) -> None:
        super().__init__()
        self.phi = nn.Sequential(nn.Linear(3 * n_outputs, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU())
        self.rho = nn.Sequential(nn.Linear(hidden + n_pair, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, tokens: Tensor, pair: Tensor) -> Tensor:
        pooled = self.phi(tokens).mean(1)
        return self.rho(torch.cat([pooled, pair], -1)).squeeze(-1)


@dataclass
class RankerConfig:
    """How a ranker is built and trained (stored in ``ranker.json``).

    Args:
        estimators: estimator scores used as features (default none: embeddings only).
        hidden: width of the networks (default ``64``).
        epochs: passes over the training tasks (default ``150``).
        lr: Adam learning rate (default ``3e-3``).
        weight_decay: Adam weight decay (default ``1e-4``).
        loss: ``mse``, ``listnet`` or ``mse+listnet`` (default).
        listnet_temperature: temperature of the true scores' softmax (default ``0.5``).
        seed: seeds the initialization and the model sampling (default ``0``).
        k: task-embedding neighbours per probe (default ``5``).
        models_per_step: models of a task sampled for one step, a random sub-list (default
            ``256``; all of them if the task has fewer).
    """

    estimators: tuple[str, ...] = ()
    hidden: int = 64
    epochs: int = 150
    lr: float = 3e-3
    weight_decay: float = 1e-4
    loss: str = "mse+listnet"
    listnet_temperature: float = 0.5
    seed: int = 0
    k: int = 5
    models_per_step: int = 256

    def __post_init__(self) -> None:
        self.estimators = tuple(get_estimator(e).name for e in self.estimators)
        if self.loss not in LOSSES:
            raise WeightzooError(f"unknown ranker loss {self.loss!r}; valid: {', '.join(LOSSES)}")
        for name in ("hidden", "epochs", "k", "models_per_step"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise WeightzooError(f"ranker {name} must be a positive integer, got {v!r}")
        if not self.lr > 0 or not self.listnet_temperature > 0 or self.weight_decay < 0:
            raise WeightzooError("ranker lr and listnet_temperature must be > 0, weight_decay >= 0")


@dataclass
class TrainingTask:
    """One training task's features and ground truth over the hub's models.

    Shapes:
        ``features``: :class:`RankerFeatures` of ``P`` models; ``ground_truth [P]`` (NaN:
        no label, e.g. a diverged model, left out of the loss).
    """

    name: str
    features: RankerFeatures
    ground_truth: Tensor


def _task_loss(pred: Tensor, target: Tensor, cfg: RankerConfig) -> Tensor:
    loss = pred.new_zeros(())
    if "mse" in cfg.loss:
        loss = loss + ((pred - target) ** 2).mean()
    if "listnet" in cfg.loss:
        p_true = torch.softmax(target / cfg.listnet_temperature, 0)
        loss = loss - (p_true * torch.log_softmax(pred, 0)).sum()
    return loss


@dataclass
class TrainedRanker:
    """A ranker with its config and the embedding space it reads.

    Args:
        net: the :class:`RankerNet`.
        config: the :class:`RankerConfig`.
        n_outputs: ``C`` of the behaviour embeddings it reads.
        embedding: the behaviour-embedding config of the hub it was trained on.
        info: JSON-able facts about its training (tasks, losses; default empty).
    """

    net: RankerNet
    config: RankerConfig
    n_outputs: int
    embedding: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @torch.no_grad()
    def predict(self, features: RankerFeatures) -> Tensor:
        """Predicted (standardized) transfer score per model; NaN for rows with NaN features.

        Shapes:
            returns ``[P]`` float64.
        """
        self._check(features)
        self.net.eval()
        ok = torch.isfinite(features.tokens).flatten(1).all(1) & torch.isfinite(features.pair).all(1)
        out = torch.full((len(features),), float("nan"), dtype=torch.float64)
        if ok.any():
            out[ok] = self.net(features.tokens[ok], features.pair[ok]).double()
        return out

    def _check(self, features: RankerFeatures) -> None:
        want_tok, want_pair = 3 * self.n_outputs, 2 + len(self.config.estimators)
        if features.tokens.shape[-1] != want_tok or features.pair.shape[-1] != want_pair:
            raise WeightzooError(
                f"embedding dimension mismatch: this ranker reads models with {self.n_outputs} "
                f"outputs and {len(self.config.estimators)} estimator feature(s), got tokens of "
                f"width {features.tokens.shape[-1]} and {features.pair.shape[-1] - 2} estimator "
                f"feature(s)")

    # ------------------------------------------------------------------------------ files
    def save(self, out: str | os.PathLike) -> Path:
        """Write ``ranker.safetensors`` and ``ranker.json`` into the directory ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.net.state_dict().items()}
        atomic_write_bytes(out / WEIGHTS_FILE, safetensors_bytes(state, {"format": RANKER_FORMAT}))
        cfg = {"format": RANKER_FORMAT, "n_outputs": self.n_outputs,
               "config": {**asdict(self.config), "estimators": list(self.config.estimators)},
               "embedding": self.embedding, "info": self.info}
        atomic_write_bytes(out / CONFIG_FILE, (json.dumps(cfg, indent=2) + "\n").encode())
        return out

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainedRanker:
        """Rebuild a ranker from its directory (``ranker.json`` + ``ranker.safetensors``)."""
        path = Path(path)
        cfg_path, w_path = path / CONFIG_FILE, path / WEIGHTS_FILE
        if not cfg_path.is_file() or not w_path.is_file():
            raise WeightzooError(f"{path} is not a ranker directory (needs {CONFIG_FILE} and "
                                 f"{WEIGHTS_FILE}); train one with retrieval.train_ranker")
        raw = parse_json(cfg_path.read_bytes(), str(cfg_path), WeightzooError, "retrain the ranker")
        fmt = raw.get("format") if isinstance(raw, dict) else None
        if fmt != RANKER_FORMAT:
            raise WeightzooError(f"{cfg_path} has format {fmt!r}; this weightzoo reads "
                                 f"{RANKER_FORMAT!r}: retrain the ranker")
        try:
            n_outputs = int(raw["n_outputs"])
            c = dict(raw["config"])
            c["estimators"] = tuple(c.get("estimators", ()))
            config = RankerConfig(**c)
            if n_outputs < 1:
                raise ValueError(f"n_outputs must be a positive integer, got {n_outputs}")
        except (KeyError, TypeError, ValueError) as e:  # a missing field, an unknown one, a wrong type
            raise WeightzooError(f"{cfg_path} is not a ranker config this weightzoo can read ({type(e).__name__}: "
                                 f"{e}); retrain the ranker with `zoo train-ranker`") from None
        # The sizes come from a file: refuse one that cannot fit before torch allocates it.
        with allocation_limit(
                f"rebuilding the ranker of {cfg_path} (hidden={config.hidden!r}, n_outputs={n_outputs!r})",
                "the config is corrupt or was crafted; retrain the ranker with `zoo train-ranker`"):
            net = RankerNet(n_outputs, 2 + len(config.estimators), config.hidden)
        try:
            net.load_state_dict(load_file(str(w_path)), strict=True)
        except RuntimeError as e:
            raise WeightzooError(f"{w_path} does not fit {cfg_path}: {e}") from e
        net.eval()
        return cls(net, config, n_outputs, raw.get("embedding", {}), raw.get("info", {}))


def fit_ranker(tasks: Sequence[TrainingTask], n_outputs: int, config: RankerConfig | None = None,
               embedding: dict[str, Any] | None = None, progress: bool = False) -> TrainedRanker:
    """Train a ranker on (model, task, ground truth) triples.

    Every epoch visits each training task once (in a seeded random order) and takes one Adam
    step on that task's loss over a random sub-list of its models
    (:attr:`RankerConfig.models_per_step`).

    Args:
        tasks: the training tasks (features and ground truth over the hub's models).
        n_outputs: ``C`` of the behaviour embeddings.
        config: a :class:`RankerConfig` (default: the defaults).
        embedding: the behaviour-embedding config of the hub (stored with the ranker).
        progress: a progress bar over the epochs (default ``False``).
    """
    from tqdm.auto import tqdm

    cfg = config or RankerConfig()
    if not tasks:
        raise WeightzooError("a ranker needs at least one training task")
    n_pair = 2 + len(cfg.estimators)
    prepared = []
    for t in tasks:
        if t.features.tokens.shape[-1] != 3 * n_outputs or t.features.pair.shape[-1] != n_pair:
            raise WeightzooError(
                f"training task {t.name!r}: features do not fit {n_outputs} outputs and "
                f"{len(cfg.estimators)} estimator(s) (embedding dimension mismatch)")
        gt = t.ground_truth.to(torch.float32)
        ok = (torch.isfinite(gt) & torch.isfinite(t.features.tokens).flatten(1).all(1)
              & torch.isfinite(t.features.pair).all(1))
        if int(ok.sum()) < 2:
            raise WeightzooError(f"training task {t.name!r} has fewer than two models with a ground truth")
        prepared.append((t.features.tokens[ok], t.features.pair[ok], standardize(gt[ok])))
    gen = torch.Generator().manual_seed(cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = RankerNet(n_outputs, n_pair, cfg.hidden)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history = []
    net.train()
    for _ in tqdm(range(cfg.epochs), desc="ranker", disable=not progress):
        total = 0.0
        for i in torch.randperm(len(prepared), generator=gen).tolist():
            tokens, pair, target = prepared[i]
            if tokens.shape[0] > cfg.models_per_step:
                pick = torch.randperm(tokens.shape[0], generator=gen)[:cfg.models_per_step]
                tokens, pair, target = tokens[pick], pair[pick], target[pick]
            loss = _task_loss(net(tokens, pair), target, cfg)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach())
        history.append(total / len(prepared))
    net.eval()
    info = {"tasks": [t.name for t in tasks], "models_per_task": [int(p[0].shape[0]) for p in prepared],
            "final_loss": history[-1], "loss_history_every_10": history[::10]}
    return TrainedRanker(net, cfg, n_outputs, dict(embedding or {}), info)
