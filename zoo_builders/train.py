"""Vectorized population training.

``P`` runs of one architecture train as one computation: their parameters are stacked along a
leading member dimension, every step is one batched forward/backward, and every member keeps
its own learning rate, weight decay, momentum, optimizer state, initialization, data order,
training subsample and dropout masks. Each member draws its randomness from its own generators,
seeded from its run's seed, so a member computes what the same run computes alone.
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from catalog import kernels
from catalog.coordinates import image_coordinates
from catalog.errors import WeightzooError
from catalog.execution import eval_pass_examples, graph_population_forward, reuse_freed_memory
from catalog.network import NetworkSpec, population_forward
from zoo_builders.datasets import Dataset
from zoo_builders.init import init_params
from zoo_builders.optim import PopulationOptimizer
from zoo_builders.spec import RunConfig

#: Examples per chunk (at most) when evaluating a population on a whole split.
EVAL_CHUNK = 512
#: Most INR steps between two progress reports. Reports come every 1/20 of the steps, but no
#: rarer: with epochs: 1e12 the first report came after 5e10 steps (weeks), so a build showed
#: 0 steps, no rate and no estimate, as if it hung.
INR_PROGRESS_EVERY = 100


def member_generator(run: RunConfig, purpose: str) -> torch.Generator:
    """A generator for one purpose (init, data, subset, dropout) of one run, seeded from the
    run's seed (and, for INRs without a shared initialization, its image), independent of the
    population it trains in."""
    image = run.image_index
    if purpose == "init" and run.task.shared_init:
        image = None  # every image's INR starts from the same weights
    key = f"{run.training.seed}:{image}:{purpose}".encode()
    seed = int.from_bytes(hashlib.sha256(key).digest()[:8], "little") & ((1 << 63) - 1)
    return torch.Generator().manual_seed(seed)


@dataclass
class Snapshot:
    """Weights and metrics of every member at one checkpoint."""

    checkpoint: int
    weights: dict[str, Tensor]          # {name: Tensor[P, *shape]}
    metrics: list[dict[str, float]]     # one dict per member
    diverged: list[bool]
    seconds: float


@dataclass
class PopulationResult:
    snapshots: list[Snapshot] = field(default_factory=list)
    seconds: float = 0.0
    #: torch threads it trained with: convolutions and batch norm round differently with others.
    threads: int = field(default_factory=torch.get_num_threads)


ProgressFn = Callable[[int], None]


def _first_member(result: PopulationResult) -> PopulationResult:
    """Member 0 of a population's result, as a population of one."""
    return PopulationResult(
        [Snapshot(s.checkpoint, {k: v[:1] for k, v in s.weights.items()}, s.metrics[:1], s.diverged[:1], s.seconds)
         for s in result.snapshots], result.seconds, result.threads)


# oneDNN's convolution backward and torch's batch norm take other code paths, with other rounding,
# for one group or a few channels than for several members, and training amplifies the
# difference. So a lone run trains as a population of two copies of itself: it then computes,
# bit for bit, what it computes in any population (the copy costs one more member).
LONE_RUN_COPIES = 2


def _stack_init(net: NetworkSpec, runs: list[RunConfig]) -> dict[str, Tensor]:
    """Stacked initial parameters; buffers (batch-norm running statistics) get no gradient."""
    per_member = [init_params(net, r.training.init, member_generator(r, "init")) for r in runs]
    return {p.name: torch.stack([m[p.name] for m in per_member]).to(net.torch_dtype).requires_grad_(p.trainable)
            for p in net.params}


def _optimizer(runs: list[RunConfig], params: dict[str, Tensor]) -> PopulationOptimizer:
    t = [r.training for r in runs]
    return PopulationOptimizer(
        t[0].optimizer, [p for p in params.values() if p.requires_grad],
        lr=torch.tensor([x.lr for x in t]), weight_decay=torch.tensor([x.weight_decay for x in t]),
        momentum=torch.tensor([x.momentum for x in t]))


def _finite_members(params: dict[str, Tensor]) -> Tensor:
    ok = None
    for p in params.values():
        f = torch.isfinite(p.detach()).flatten(1).all(1)
        ok = f if ok is None else ok & f
    return ok


# ================================================================================ classification
@torch.no_grad()
def warn_if_products_depend_on_position() -> None:
    """Warn when this process's matrix products round a matrix by its place in a batch
    (:func:`catalog.kernels.products_depend_on_position`): members then differ from the same
    runs trained alone in the last bits."""
    if kernels.products_depend_on_position():
        warnings.warn(
            "matrix products in this process round a matrix by its place in memory (Intel MKL started "
            "without MKL_CBWR=AUTO,STRICT, e.g. because torch multiplied matrices before weightzoo was "
            "imported), so a population member may differ from the same run trained alone in the last bits; "
            "set MKL_CBWR=AUTO,STRICT in the environment, or import weightzoo before computing with torch",
            stacklevel=3)


def evaluate_classifier(net: NetworkSpec, params: dict[str, Tensor], x: Tensor, y: Tensor,
                        index: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy and accuracy of every member on a split. A member whose outputs are not
    all finite (a diverged run) gets NaN accuracy, as its loss is NaN or infinite.

    Args:
        x: examples ``[N, *input_shape]``; y: labels ``[N]``.
        index: optional per-member example indices ``[P, M]`` (a member's own subsample).

    Shapes:
        returns ``(loss [P], acc [P])``.
    """
    n_pop = next(iter(params.values())).shape[0]
    total = index.shape[1] if index is not None else x.shape[0]
    loss_sum = torch.zeros(n_pop, dtype=torch.float64)
    correct = torch.zeros(n_pop, dtype=torch.float64)
    finite = torch.ones(n_pop, dtype=torch.bool)
    chunk = eval_pass_examples(n_pop, EVAL_CHUNK)
    for start in range(0, total, chunk):
        if index is None:
            xb, yb = x[start:start + chunk], y[start:start + chunk]
            out = population_forward(net, params, xb)
            yb = yb.expand(n_pop, -1)
        else:
            idx = index[:, start:start + chunk]
            out = population_forward(net, params, x[idx])
            yb = y[idx]
        ce = F.cross_entropy(out.flatten(0, 1), yb.flatten(), reduction="none").view(n_pop, -1)
        loss_sum += ce.double().sum(1)
        correct += (out.argmax(-1) == yb).double().sum(1)
        finite &= torch.isfinite(out).flatten(1).all(1)
    # argmax takes NaN for the largest logit (an all-NaN row gives class 0): the "accuracy" of a NaN network
    # would be the share of class 0, not a measurement. Finite members keep their exact values.
    acc = torch.where(finite, (correct / total).float(), torch.nan)
    return (loss_sum / total).float(), acc


def _dropout_layers(net: NetworkSpec) -> list[int]:
    return [i for i, layer in enumerate(net.layers) if i > 0 and layer.kind == "linear"]


def _graph_masks(net: NetworkSpec, gens: list[torch.Generator], batch: int) -> dict[str, Tensor] | None:
    """One step's dropout masks for a graph's dropout nodes, each member's drawn from its own
    generator (node after node), so they do not depend on the population.

    Shapes:
        returns ``{node name: Tensor[P, batch, *shape]}`` pre-scaled by ``1 / (1 - p)``.
    """
    masks = {}
    for node in net.nodes:
        if node.KIND == "dropout" and node.p > 0:
            shape = (batch, *net.shapes[node.inputs[0]])
            masks[node.name] = torch.stack([
                (torch.rand(shape, generator=g) >= node.p).to(net.torch_dtype) / (1 - node.p) for g in gens])
    return masks or None


def train_classifiers(net: NetworkSpec, runs: list[RunConfig], data: Dataset,
                      progress: ProgressFn | None = None,
                      init: dict[str, Tensor] | None = None) -> PopulationResult:
    """Train a population of classifiers that share architecture, optimizer kind, batch size,
    epochs, checkpoints and training-set size.

    Args:
        net: the shared architecture.
        runs: the ``P`` members.
        data: the dataset (inputs are reshaped to ``net.input_shape``).
        progress: called with the number of optimization steps done since the last call.
        init: start from these weights, ``{name: Tensor[P, *shape]}``, instead of each run's
            own initialization (e.g. fine-tuning generated networks); default ``None``.
    """
    if len(runs) == 1:
        copies = None if init is None else {k: v.expand(LONE_RUN_COPIES, *v.shape[1:]) for k, v in init.items()}
        return _first_member(train_classifiers(net, runs * LONE_RUN_COPIES, data, progress, copies))
    reuse_freed_memory()
    warn_if_products_depend_on_position()
    t0 = time.perf_counter()
    tc = runs[0].training
    n_pop = len(runs)
    x_train = data.x_train.reshape(-1, *net.input_shape).to(net.torch_dtype)
    x_test = data.x_test.reshape(-1, *net.input_shape).to(net.torch_dtype)
    y_train, y_test = data.y_train, data.y_test
    n_full = x_train.shape[0]
    n_sub = max(1, round(tc.train_fraction * n_full))
    # A member's subsample of the training set (all of it when train_fraction == 1).
    subset = None
    if n_sub < n_full:
        subset = torch.stack([torch.randperm(n_full, generator=member_generator(r, "subset"))[:n_sub].sort().values
                              for r in runs])
    if init is None:
        params = _stack_init(net, runs)
    else:
        params = {p.name: init[p.name].detach().to(net.torch_dtype).clone().requires_grad_(p.trainable)
                  for p in net.params}
    opt = _optimizer(runs, params)
    data_gens = [member_generator(r, "data") for r in runs]
    drop_gens = [member_generator(r, "dropout") for r in runs]
    drop_p = [r.training.dropout for r in runs]
    if not net.is_chain and any(p > 0 for p in drop_p):
        raise WeightzooError(
            f"training.dropout applies to layer chains (mlp, cnn); architecture {net.family} has "
            f"dropout nodes instead: set the architecture's dropout option and training.dropout: 0")
    drop_layers = _dropout_layers(net) if any(p > 0 for p in drop_p) else []
    steps_per_epoch = math.ceil(n_sub / tc.batch_size)
    diverged = torch.zeros(n_pop, dtype=torch.bool)
    result = PopulationResult()

    def snapshot(epoch: int) -> None:
        nonlocal diverged
        diverged = diverged | ~_finite_members(params)
        detached = {k: v.detach() for k, v in params.items()}
        tr_loss, tr_acc = evaluate_classifier(net, detached, x_train, y_train, subset)
        te_loss, te_acc = evaluate_classifier(net, detached, x_test, y_test)
        diverged = diverged | ~torch.isfinite(tr_loss)
        metrics = [{"train_loss": float(tr_loss[i]), "train_acc": float(tr_acc[i]),
                    "test_loss": float(te_loss[i]), "test_acc": float(te_acc[i]),
                    "ggap": float(tr_acc[i] - te_acc[i])} for i in range(n_pop)]
        result.snapshots.append(Snapshot(epoch, {k: v.clone() for k, v in detached.items()}, metrics,
                                         diverged.tolist(), time.perf_counter() - t0))

    if 0 in tc.checkpoints:
        snapshot(0)
    for epoch in range(1, tc.epochs + 1):
        # Each member shuffles its own (sub)set with its own generator.
        order = torch.stack([torch.randperm(n_sub, generator=g) for g in data_gens])  # [P, n_sub]
        if subset is not None:
            order = torch.gather(subset, 1, order)
        masks_epoch = {}
        for li in drop_layers:
            width = net.layers[li].in_features
            rows = []
            for p, g in zip(drop_p, drop_gens):
                if p > 0:
                    rows.append((torch.rand(n_sub, width, generator=g) >= p).to(net.torch_dtype) / (1 - p))
                else:
                    rows.append(torch.ones(n_sub, width, dtype=net.torch_dtype))
            masks_epoch[li] = torch.stack(rows)  # [P, n_sub, width], indexed by position in the epoch
        for step in range(steps_per_epoch):
            sl = slice(step * tc.batch_size, (step + 1) * tc.batch_size)
            idx = order[:, sl]                     # [P, b]
            xb, yb = x_train[idx], y_train[idx]    # [P, b, *in], [P, b]
            updates: dict[str, Tensor] = {}
            if net.is_chain:
                masks = {li: m[:, sl] for li, m in masks_epoch.items()} or None
                out = population_forward(net, params, xb, masks)   # [P, b, C]
            else:
                # Graphs run node by node in batched form; batch norm normalizes each member
                # with its own batch.
                out, updates = graph_population_forward(
                    net, params, xb, training=True, masks=_graph_masks(net, drop_gens, idx.shape[1]))
            loss = F.cross_entropy(out.flatten(0, 1), yb.flatten(), reduction="none").view(n_pop, -1).mean(1)
            # Summing member losses keeps each member's gradient its own.
            loss.sum().backward()
            opt.step()
            opt.zero_grad()
            with torch.no_grad():
                for name, value in updates.items():  # new batch-norm running statistics
                    params[name].copy_(value)
        if progress is not None:
            progress(steps_per_epoch)
        if epoch in tc.checkpoints:
            snapshot(epoch)
    result.seconds = time.perf_counter() - t0
    return result


# ================================================================================ INRs
def psnr(mse: Tensor) -> Tensor:
    """PSNR in dB for intensities in ``[0, 1]`` (peak 1)."""
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


def train_inrs(net: NetworkSpec, runs: list[RunConfig], images: Tensor,
               progress: ProgressFn | None = None) -> PopulationResult:
    """Fit one SIREN per image, full batch (every pixel every step).

    Args:
        images: the members' target images ``[P, H, W]`` in ``[0, 1]``.
    """
    if len(runs) == 1:
        return _first_member(train_inrs(net, runs * LONE_RUN_COPIES, images.expand(LONE_RUN_COPIES, -1, -1),
                                        progress))
    reuse_freed_memory()
    warn_if_products_depend_on_position()
    t0 = time.perf_counter()
    tc = runs[0].training
    n_pop, height, width = images.shape
    coords = image_coordinates(height, width).to(net.torch_dtype)      # [HW, 2]
    target = images.reshape(n_pop, -1, 1).to(net.torch_dtype)          # [P, HW, 1]
    params = _stack_init(net, runs)
    opt = _optimizer(runs, params)
    diverged = torch.zeros(n_pop, dtype=torch.bool)
    result = PopulationResult()

    def snapshot(step: int) -> None:
        nonlocal diverged
        detached = {k: v.detach() for k, v in params.items()}
        with torch.no_grad():
            mse = ((population_forward(net, detached, coords) - target) ** 2).mean((1, 2))
        diverged = diverged | ~_finite_members(params) | ~torch.isfinite(mse)
        p = psnr(mse)
        metrics = [{"mse": float(mse[i]), "psnr": float(p[i])} for i in range(n_pop)]
        result.snapshots.append(Snapshot(step, {k: v.clone() for k, v in detached.items()}, metrics,
                                         diverged.tolist(), time.perf_counter() - t0))

    if 0 in tc.checkpoints:
        snapshot(0)
    report_every = max(1, min(tc.epochs // 20, INR_PROGRESS_EVERY))
    pending = 0
    for step in range(1, tc.epochs + 1):
        out = population_forward(net, params, coords)
        loss = ((out - target) ** 2).mean((1, 2))
        loss.sum().backward()
        opt.step()
        opt.zero_grad()
        pending += 1
        if progress is not None and (pending >= report_every or step == tc.epochs):
            progress(pending)
            pending = 0
        if step in tc.checkpoints:
            snapshot(step)
    result.seconds = time.perf_counter() - t0
    return result
