"""Are generated networks new, or copies? :func:`evaluate_generated` (``zoo eval-gen``).

Following Zeng et al. (2025), a generated network ``g`` is compared with every training network
``t`` of the zoo it was generated from, on the test split of the source dataset:

- **accuracy** of ``g``;
- **novelty by predictions**: ``max_iou(g) = max_t |E_g ∩ E_t| / |E_g ∪ E_t|`` where ``E_x`` is
  the set of test examples ``x`` misclassifies. A copy of a training network scores exactly 1.
  When both sets are empty (two networks without a single mistake), ``0 / 0`` is defined as
  **1**: the two misprediction sets are equal, so nothing tells ``g`` from ``t``;
- **novelty by weights**: ``min_l2(g) = min_t ||θ_g - θ_t||_2`` over all parameters, and with
  ``align`` also after permuting ``g``'s hidden neurons to line up with a training network by
  weight matching (:func:`weightspace.analysis.alignment.align_to`), which removes the distance
  a mere neuron permutation adds. Aligning to every training network is too slow (one assignment
  problem per layer and pair), so the candidates are the training network with the highest IoU
  (a permuted copy has IoU 1 with its source) and the :data:`ALIGN_CANDIDATES` nearest by raw L2;
  ``min_l2_aligned`` is the smallest aligned distance among them.

The same numbers are computed for the memorization baselines (``noise`` at several ``sigma``,
``average``, ``gaussian``), fitted on the same training networks and sampled as many times as
there are generated networks, and for the training networks themselves (each against all the
*others*: the zoo's own IoU distribution). IoUs are one matrix product of boolean misprediction
matrices (``[G, N] @ [N, T]``), so 100 x 1000 networks take milliseconds once predicted.

INR zoos are compared by what they draw: **quality** is the PSNR of a network's image against
the closest target image of the training networks (what ``zoo generate`` stores as ``psnr``),
**novelty by outputs** ``max_psnr(g)`` the highest PSNR of ``g``'s image against a training
network's image (a copy scores :data:`COPY_PSNR`, the training networks' own distribution is
each against the others); L2 and alignment as for classifiers; no fine-tuning.

Networks with batch norm, the training networks included, are compared with running statistics
recomputed from the source training split
(:func:`~weightspace.generators.output.with_batch_norm_statistics`): the statistics of their own
weights, so a copy of a training network is the same function as the original, and L2 distances
are over the trained parameters only.

Optionally (``finetune``) it measures the benefit SANE claims for generated initializations:
epochs of training (with the source zoo's own recipe, by the builder's vectorized
:func:`zoo_builders.train.train_classifiers`) for a generated init vs each run's random init to
reach the training networks' median test accuracy.

Writes ``eval_gen.json`` and ``eval_gen.png`` (accuracy vs max-IoU, one colour per method, and
the IoU distributions) to the output directory.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import torch
from torch import Tensor

from catalog.coordinates import image_coordinates
from catalog.errors import WeightzooError
from catalog.network import NetworkSpec, population_forward
from catalog.paths import check_output_path
from catalog.zoo import Zoo, open_zoo
from weightspace.generators.output import (
    select_training_set,
    task_name,
    with_batch_norm_statistics,
    zoo_content_sha256,
)
from weightspace.generators.registry import build_generator
from zoo_builders.datasets import Dataset, load_zoo_dataset

#: Noise levels of the ``noise`` baseline that ``eval-gen`` runs by default.
DEFAULT_SIGMAS = (0.01, 0.05, 0.1, 0.3)
#: Training networks (nearest by raw L2) each generated network is aligned to with ``align``,
#: besides the one with the highest IoU.
ALIGN_CANDIDATES = 3
#: Most networks predicted in one forward pass (fewer when their activations are large).
PREDICT_MODELS = 128
#: Test examples per forward pass.
EXAMPLES_PER_PASS = 512
#: Activation memory one forward pass may use (bytes); bounds the networks per pass of CNNs.
PASS_BYTES = 512 << 20
#: Generated networks compared with the training networks in one distance block.
DISTANCE_BLOCK = 256
JSON_NAME = "eval_gen.json"
FIGURE_NAME = "eval_gen.png"
#: Per task, the names of its two measures: a network's quality, and its highest similarity to a
#: training network (what a copy maximizes).
MEASURES = {"classify": ("acc", "max_iou"), "inr": ("psnr", "max_psnr")}
#: PSNR (dB) of two identical images, their MSE clamped to 1e-12: what an INR copy scores.
COPY_PSNR = 120.0
#: Widest number the report table prints with fixed decimals; wider ones (a diverged network's
#: min L2 of 4.77e13) get three significant digits, ``4.77e+13``.
FIXED_WIDTH = 10


# ================================================================================ the measures
def models_per_pass(spec: NetworkSpec, examples: int, budget: int = PASS_BYTES) -> int:
    """How many networks one forward pass over ``examples`` inputs may hold so that their
    activations stay within ``budget`` bytes (at least 1, at most :data:`PREDICT_MODELS`)."""
    per_model = max(1, spec.activation_numel) * examples * 4 * 2  # float32 outputs, twice for temporaries
    return max(1, min(PREDICT_MODELS, budget // per_model))


@torch.no_grad()
def mispredictions(spec: NetworkSpec, params: Mapping[str, Tensor], x: Tensor, y: Tensor,
                   chunk: int | None = None) -> Tensor:
    """Which test examples each network gets wrong.

    Args:
        spec: the architecture (a classifier).
        params: ``{name: Tensor[P, *shape]}``.
        x: inputs ``[N, *input_shape]``; y: labels ``[N]``.
        chunk: networks per forward pass (default: as many as :func:`models_per_pass` allows
            for :data:`EXAMPLES_PER_PASS` examples).

    Shapes:
        returns a bool ``[P, N]``: ``True`` where network ``p`` mispredicts example ``n``.
    """
    n_pop = next(iter(params.values())).shape[0]
    x = x.reshape(-1, *spec.input_shape).to(spec.torch_dtype)
    chunk = chunk or models_per_pass(spec, min(EXAMPLES_PER_PASS, x.shape[0]))
    out = torch.empty(n_pop, x.shape[0], dtype=torch.bool)
    for start in range(0, n_pop, chunk):
        part = {k: v[start:start + chunk] for k, v in params.items()}
        for lo in range(0, x.shape[0], EXAMPLES_PER_PASS):
            hi = lo + EXAMPLES_PER_PASS
            logits = population_forward(spec, part, x[lo:hi])                # [p, n, C]
            out[start:start + chunk, lo:hi] = logits.argmax(-1) != y[lo:hi]  # NaN logits: still a bool
    return out


def iou_matrix(errors_a: Tensor, errors_b: Tensor) -> Tensor:
    """IoU of every pair of misprediction sets, ``|A_i ∩ B_j| / |A_i ∪ B_j|`` (1 when both are empty).

    Args:
        errors_a: bool ``[A, N]``; errors_b: bool ``[B, N]`` (the same ``N`` examples).

    Shapes:
        returns float64 ``[A, B]`` in ``[0, 1]``.
    """
    if errors_a.shape[1] != errors_b.shape[1]:
        raise WeightzooError(f"misprediction sets over {errors_a.shape[1]} and {errors_b.shape[1]} "
                             f"examples; compare networks on the same test split")
    # float32 counts are exact below 2^24 examples; one matmul gives every intersection.
    a, b = errors_a.float(), errors_b.float()
    inter = (a @ b.T).double()                                         # [A, B]
    union = a.sum(1).double()[:, None] + b.sum(1).double()[None, :] - inter
    # Both sets empty: equal sets (see the module docstring), IoU 1.
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter))


def max_iou(errors_g: Tensor, errors_t: Tensor, exclude_self: bool = False) -> tuple[Tensor, Tensor]:
    """The highest IoU of each ``g`` against all ``t``, and which ``t`` gives it.

    Args:
        errors_g: bool ``[G, N]``; errors_t: bool ``[T, N]``.
        exclude_self: ``g`` and ``t`` are the same networks (``G == T``): pair ``(i, i)`` is skipped.

    Shapes:
        returns ``(float64 [G], long [G])``.
    """
    iou = iou_matrix(errors_g, errors_t)
    if exclude_self:
        iou.fill_diagonal_(-1.0)
    return iou.max(1)


@torch.no_grad()
def renders(spec: NetworkSpec, params: Mapping[str, Tensor], coords: Tensor) -> Tensor:
    """Each INR's image: its outputs at every pixel coordinate, float64.

    Shapes:
        ``coords [HW, in]`` -> ``[P, HW * out]``.
    """
    n_pop = next(iter(params.values())).shape[0]
    per_pass = models_per_pass(spec, coords.shape[0])
    coords = coords.to(spec.torch_dtype)
    out = [population_forward(spec, {k: v[s:s + per_pass] for k, v in params.items()}, coords).flatten(1).double()
           for s in range(0, n_pop, per_pass)]                                  # each [p, HW * out]
    return torch.cat(out)


def psnr_matrix(images_a: Tensor, images_b: Tensor) -> Tensor:
    """PSNR (dB, peak 1) of every pair of images; identical images score :data:`COPY_PSNR`.

    Shapes:
        ``images_a [A, HW]``, ``images_b [B, HW]`` -> float64 ``[A, B]``.
    """
    if images_a.shape[1] != images_b.shape[1]:
        raise WeightzooError(f"images of {images_a.shape[1]} and {images_b.shape[1]} pixels; compare INRs of "
                             f"one image size")
    a, b = images_a.double(), images_b.double()
    # The matmul form of cdist loses ~1e-7 to cancellation, which would make copies finite;
    # differences are taken directly, as many rows of A at a time as PASS_BYTES allows.
    rows = max(1, PASS_BYTES // max(1, 8 * b.shape[0] * b.shape[1]))
    out = []
    for start in range(0, a.shape[0], rows):
        diff = a[start:start + rows, None, :] - b[None, :, :]                   # [a, B, HW]
        out.append(diff.pow(2).mean(2))
    mse = torch.cat(out) if out else torch.empty(0, b.shape[0], dtype=torch.float64)
    return 10 * torch.log10(1.0 / mse.clamp_min(10 ** (-COPY_PSNR / 10)))


def max_psnr(images_g: Tensor, images_t: Tensor, exclude_self: bool = False) -> tuple[Tensor, Tensor]:
    """The highest PSNR of each ``g``'s image against every ``t``'s, and which ``t`` gives it (as
    :func:`max_iou` does for misprediction sets). Shapes: returns ``(float64 [G], long [G])``."""
    p = psnr_matrix(images_g, images_t)
    if exclude_self:
        p.fill_diagonal_(-math.inf)
    return p.max(1)


def flatten(spec: NetworkSpec, params: Mapping[str, Tensor]) -> Tensor:
    """The trained parameters of each network as one vector (spec order; batch-norm running
    statistics, which are not weights, left out). Shapes: returns ``[P, D]``."""
    return torch.cat([params[p.name].flatten(1) for p in spec.params if p.trainable], 1)


def min_l2(flat_g: Tensor, flat_t: Tensor) -> tuple[Tensor, Tensor]:
    """L2 distance from each ``g`` to its nearest ``t``, and which ``t``.

    Shapes:
        ``flat_g [G, D]``, ``flat_t [T, D]`` -> ``(float64 [G], long [G])``.
    """
    t = flat_t.double()
    idx = []
    for start in range(0, flat_g.shape[0], DISTANCE_BLOCK):
        d = torch.cdist(flat_g[start:start + DISTANCE_BLOCK].double(), t)   # [g, T] (matmul form)
        idx.append(d.argmin(1))
    nearest = torch.cat(idx) if idx else torch.empty(0, dtype=torch.long)
    # The matmul form loses ~1e-7 to cancellation; the nearest pair's distance is recomputed
    # directly, so an exact copy is at distance exactly 0.
    return (flat_g.double() - t[nearest]).norm(dim=1), nearest


def aligned_l2(spec: NetworkSpec, params_g: Mapping[str, Tensor], params_t: Mapping[str, Tensor],
               candidates: Tensor, seed: int = 0) -> Tensor:
    """L2 distance from each ``g`` to the closest of its candidate training networks after
    permuting ``g``'s hidden neurons to match that candidate (weight matching).

    Args:
        candidates: ``[G, C]`` training-network indices per ``g`` (:func:`score` passes the
            network with the highest IoU, which a permuted copy matches exactly, and the
            :data:`ALIGN_CANDIDATES` nearest by raw L2).

    Shapes:
        ``params_g {name: [G, ...]}``, ``candidates [G, C]`` -> float64 ``[G]``.
    """
    from weightspace.analysis.alignment import align_to

    n_g, n_c = candidates.shape
    refs = {k: v[candidates.flatten()] for k, v in params_t.items()}                # [G * C, ...]
    reps = {k: v.repeat_interleave(n_c, 0) for k, v in params_g.items()}            # [G * C, ...]
    aligned = align_to(spec, refs, reps, seed=seed)
    dist = (flatten(spec, aligned).double() - flatten(spec, refs).double()).norm(dim=1)
    return dist.view(n_g, n_c).min(1).values


@dataclass
class Scores:
    """Per-network measures of one method's networks.

    ``quality`` is test accuracy for classifiers and PSNR (dB) against the closest target image for
    INRs; ``similarity`` is the highest max-IoU of mispredictions (classifiers) or PSNR between
    images (INRs) against a training network, which a copy maximizes (1, :data:`COPY_PSNR`).

    Shapes:
        every tensor ``[M]`` (``M`` networks); ``nearest_*`` index the training networks.
    """

    quality: Tensor
    similarity: Tensor
    nearest_similar: Tensor
    min_l2: Tensor
    nearest_l2: Tensor
    min_l2_aligned: Tensor | None = None
    names: tuple[str, str] = MEASURES["classify"]

    def summary(self) -> dict[str, Any]:
        """quality mean/max/min/median, mean (median, min, max) similarity, mean and min of min-L2,
        keyed by the task's names (``acc_mean``, ``max_iou_mean``, ... or ``psnr_mean``, ...)."""
        def stats(t: Tensor, prefix: str, which: Sequence[str]) -> dict[str, float]:
            v = t.double()
            fns = {"mean": v.mean, "max": v.max, "min": v.min, "median": lambda: v.quantile(0.5)}
            return {f"{prefix}_{k}": float(fns[k]()) for k in which}

        quality, similarity = self.names
        out: dict[str, Any] = {"n": int(self.quality.shape[0])}
        out |= stats(self.quality, quality, ("mean", "max", "min", "median"))
        out |= stats(self.similarity, similarity, ("mean", "median", "min", "max"))
        out |= stats(self.min_l2, "min_l2", ("mean", "min"))
        if self.min_l2_aligned is not None:
            out |= stats(self.min_l2_aligned, "min_l2_aligned", ("mean", "min"))
        return out


@dataclass
class _Train:
    """The training networks and the data, computed once.

    For classifiers ``x``/``y`` are the test inputs and labels and ``behaviour`` the training
    networks' misprediction sets; for INRs ``x`` the pixel coordinates, ``y`` the target images
    and ``behaviour`` the training networks' images.
    """

    params: dict[str, Tensor]
    behaviour: Tensor       # bool [T, N] (classify) or float64 [T, HW] (inr)
    flat: Tensor            # [T, D]
    x: Tensor               # [N, *input_shape] (classify) or [HW, in] (inr)
    y: Tensor               # [N] (classify) or [K, HW] (inr)
    task: str = "classify"


def behaviour(spec: NetworkSpec, params: Mapping[str, Tensor], train: _Train) -> Tensor:
    """What networks are compared by: misprediction sets (classifiers) or images (INRs)."""
    if train.task == "inr":
        return renders(spec, params, train.x)
    return mispredictions(spec, params, train.x, train.y)


def _quality(b: Tensor, train: _Train) -> Tensor:
    if train.task == "inr":  # PSNR against the closest target image, as `zoo generate` stores it
        return psnr_matrix(b, train.y).max(1).values
    return 1.0 - b.double().mean(1)


def _most_similar(b: Tensor, b_train: Tensor, task: str, exclude_self: bool = False) -> tuple[Tensor, Tensor]:
    return (max_psnr if task == "inr" else max_iou)(b, b_train, exclude_self)


def score(spec: NetworkSpec, params: Mapping[str, Tensor], train: _Train, align: bool = False,
          seed: int = 0) -> Scores:
    """Quality, similarity to the training networks and min-L2 of networks ``params``."""
    b = behaviour(spec, params, train)
    similarity, nearest = _most_similar(b, train.behaviour, train.task)
    flat_g = flatten(spec, params)
    dist, near = min_l2(flat_g, train.flat)
    aligned = None
    if align:
        k = min(ALIGN_CANDIDATES, train.flat.shape[0])
        by_l2 = torch.cdist(flat_g.double(), train.flat.double()).topk(k, dim=1, largest=False).indices
        aligned = aligned_l2(spec, params, train.params, torch.cat([nearest[:, None], by_l2], 1), seed)
    return Scores(_quality(b, train), similarity, nearest, dist, near, aligned, MEASURES[train.task])


# ================================================================================ the evaluation
@dataclass
class GenEvalResult:
    """What :func:`evaluate_generated` measured (also written to :attr:`json_path`).

    Args:
        methods: ``{label: summary}`` for the generated networks (label ``generated: <method>``) and
            each baseline (``noise sigma=0.1``, ``average``, ``gaussian``).
        train: the training networks' quality summary and their own similarity (each vs the others).
        per_model: per generated network: ``model_id``, ``acc``, ``max_iou``, ``nearest_iou``
            (model_id of the training network with the highest IoU), ``min_l2``,
            ``nearest_l2`` (and ``min_l2_aligned``); for INR zoos ``psnr``, ``max_psnr`` and
            ``nearest_psnr`` instead of the first three.
        finetune: the fine-tuning comparison, if requested.
        json_path, figure_path: the files written.
        task: ``"classify"`` or ``"inr"``; :data:`MEASURES` names its measures.
    """

    generated_zoo: str
    train_zoo: str
    where: str | None
    methods: dict[str, dict[str, Any]]
    train: dict[str, Any]
    per_model: dict[str, list]
    finetune: dict[str, Any] | None = None
    json_path: Path | None = None
    figure_path: Path | None = None
    n_excluded: int = 0
    label: str = "generated"
    task: str = "classify"
    points: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict, repr=False)

    @property
    def measures(self) -> tuple[str, str]:
        """``(quality, similarity)`` names: ``("acc", "max_iou")`` or ``("psnr", "max_psnr")``."""
        return MEASURES[self.task]

    def to_dict(self) -> dict[str, Any]:
        if self.task == "inr":
            about = {"psnr": "PSNR (dB) of the network's image against the closest target image of the "
                             "training networks",
                     "max_psnr": f"max over training networks of the PSNR between the two networks' images "
                                 f"({COPY_PSNR:g} dB when identical)"}
        else:
            about = {"iou": "max over training networks of |E_g & E_t| / |E_g | E_t| on the source test split "
                            "(E = mispredicted examples; 1 when both sets are empty)"}
        return {"generated_zoo": self.generated_zoo, "train_zoo": self.train_zoo, "where": self.where,
                "generated_method": self.label, "excluded_generated_not_ok": self.n_excluded, "task": self.task,
                **about, "methods": self.methods, "train": self.train, "per_model": self.per_model,
                "finetune": self.finetune}


    def report_lines(self) -> list[str]:
        """The report ``zoo eval-gen`` prints: what was compared, how many generated networks were
        left out for not being ok, the table (a row per method and the training networks), the
        fine-tuning line and the files written. Columns are as wide as their widest cell, at least
        two spaces apart, whatever the values (see :func:`format_number`)."""
        q, sim = self.measures
        inr = self.task == "inr"
        decimals = 2  # PSNR in dB, accuracy in %
        scale = 1.0 if inr else 100.0

        def quality(v: float | None) -> str:
            return format_number(None if v is None else scale * v, decimals)

        lines = [f"{self.generated_zoo} vs {self.train_zoo} ({self.train['n']} training networks"
                 + (f" where {self.where}" if self.where else "") + ")"]
        if self.n_excluded:
            total = self.n_excluded + self.methods[self.label]["n"]
            lines.append(f"{self.n_excluded} of {total} generated networks not ok (diverged), left out of the table "
                         f"(excluded_generated_not_ok in {JSON_NAME})")
        align = any("min_l2_aligned_mean" in m for m in self.methods.values())
        names = ("psnr mean", "psnr max", "max-PSNR") if inr else ("acc mean", "acc max", "max-IoU")
        header = ["method", "n", *names, "min L2", *(["aligned"] if align else [])]
        rows = [[label, str(m["n"]), quality(m[q + "_mean"]), quality(m[q + "_max"]),
                 format_number(m[sim + "_mean"], 3), format_number(m["min_l2_mean"], 3),
                 *([format_number(m.get("min_l2_aligned_mean"), 3)] if align else [])]
                for label, m in self.methods.items()]
        t = self.train
        rows.append(["training networks", str(t["n"]), quality(t[q + "_mean"]), quality(t[q + "_max"]),
                     format_number(t["self_" + sim + "_mean"], 3), "-", *(["-"] if align else [])])
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for r in [header, *rows]:
            lines.append((r[0].ljust(widths[0]) + "".join("  " + c.rjust(w) for c, w in zip(r[1:], widths[1:])))
                         .rstrip())
        if self.finetune:
            f = self.finetune

            def epochs(d: dict) -> str:
                mean = "-" if d["mean_epochs"] is None else f"{d['mean_epochs']:.1f}"
                return f"{mean} ({d['reached']}/{f['models']} reached it within {f['epochs']} epochs)"

            lines.append(f"mean epochs to {quality(f['target_acc'])}% (training median): generated init "
                         f"{epochs(f['generated'])}, random init {epochs(f['random'])}")
        if self.json_path is not None:
            lines.append(f"wrote {self.json_path} and {self.figure_path}")
        return lines


def format_number(v: float | None, decimals: int) -> str:
    """A table cell: ``-`` for no value, ``nan`` / ``inf``, ``decimals`` after the point, or three
    significant digits (``4.77e+13``) when the fixed form would be wider than :data:`FIXED_WIDTH`."""
    if v is None:
        return "-"
    if not math.isfinite(v):
        return str(float(v))
    fixed = f"{v:.{decimals}f}"
    return fixed if len(fixed) <= FIXED_WIDTH else f"{v:.3g}"


def _source_of(gen: Zoo) -> tuple[str, str, str | None, str]:
    """``(source zoo name, content sha256, where, method)`` recorded in a generated zoo's rows."""
    table = gen.table
    need = ("generator", "source_zoo", "source_manifest_sha256")
    missing = [c for c in need if c not in table.column_names]
    if table.num_rows == 0 or missing:
        raise WeightzooError(
            f"zoo {gen.name!r} is not a generated zoo (no {', '.join(missing) or 'rows'}); make one with "
            f"`zoo generate ZOO --method NAME --out DIR`")
    sources = {(a, b) for a, b in zip(table.column("source_zoo").to_pylist(),
                                      table.column("source_manifest_sha256").to_pylist())}
    if len(sources) != 1:
        raise WeightzooError(f"generated zoo {gen.name!r} mixes networks generated from {len(sources)} "
                             f"source zoos; evaluate one source at a time")
    name, sha = sources.pop()
    wheres = set(table.column("source_where").to_pylist()) if "source_where" in table.column_names else {""}
    methods = sorted(set(table.column("generator").to_pylist()))
    where = wheres.pop() if len(wheres) == 1 else None
    return name, sha, (where or None), "generated: " + "+".join(methods)


def evaluate_generated(gen_zoo: Zoo | str | os.PathLike, train_zoo: Zoo | str | os.PathLike,
                       where: str | None = None, out_dir: str | os.PathLike | None = None,
                       baselines: bool = True, *, sigmas: Sequence[float] = DEFAULT_SIGMAS,
                       align: bool = False, finetune: bool = False, finetune_models: int = 4,
                       finetune_epochs: int | None = None, seed: int = 0,
                       progress: bool = False) -> GenEvalResult:
    """Accuracy and novelty of a generated zoo's networks against the zoo they came from.

    Args:
        gen_zoo: a zoo written by ``zoo generate`` (opened, or its path).
        train_zoo: the source zoo; its name and content sha256 must be those ``gen_zoo`` records.
        where: SQL condition selecting the training networks (status ok); default the condition
            the generator was trained with (the ``source_where`` column).
        out_dir: where ``eval_gen.json`` and ``eval_gen.png`` go (default ``<gen_zoo>-eval``
            next to the generated zoo).
        baselines: also fit and score ``noise`` (each of ``sigmas``), ``average`` and
            ``gaussian`` on the training networks, as many samples as generated networks.
        sigmas: the noise baseline's levels (default :data:`DEFAULT_SIGMAS`).
        align: also the L2 distance after weight matching to the nearest training network.
        finetune: also the epochs to the training median accuracy, generated vs random init.
        finetune_models: networks fine-tuned per init (default ``4``).
        finetune_epochs: epochs to train (default: the source zoo's).
        seed: seed of the baselines' fitting and sampling, and of the alignment.
        progress: progress bars.

    Raises:
        WeightzooError: ``gen_zoo`` is not generated, its source is not ``train_zoo`` (another
            name, or the same name with other networks), the architectures differ, the zoo is not
            a classifier zoo, or the selection is not usable (see ``select_training_set``).
    """
    from tqdm.auto import tqdm

    gen = gen_zoo if isinstance(gen_zoo, Zoo) else open_zoo(gen_zoo)
    root = gen.root.resolve()  # a run given as "." has no name
    out = Path(out_dir) if out_dir is not None else root.parent / f"{root.name}-eval"
    # before any work
    check_output_path(out, "out_dir", "eval-gen", flag="--out" if out_dir is not None else "--out; default")
    src = train_zoo if isinstance(train_zoo, Zoo) else open_zoo(train_zoo)
    name, sha, recorded_where, label = _source_of(gen)
    if name != src.name or sha != zoo_content_sha256(src):
        what = "names" if name != src.name else "networks (content sha256s)"
        raise WeightzooError(
            f"generated zoo {gen.name!r} was generated from zoo {name!r} (content sha256 {sha[:12]}...), "
            f"but train_zoo (--train) is zoo {src.name!r} (sha256 {zoo_content_sha256(src)[:12]}...): the "
            f"{what} differ; pass the zoo it was generated from as train_zoo (--train)")
    task = task_name(src)
    if task not in MEASURES:
        raise WeightzooError(f"zoo {src.name!r} is a {task!r} zoo; eval-gen compares classifiers and INRs")
    if finetune and task != "classify":
        raise WeightzooError(f"finetune=True (--finetune) retrains classifiers; zoo {src.name!r} is an {task!r} "
                             f"zoo: drop it")
    where = where if where is not None else recorded_where
    train_sel = select_training_set(src, where)
    spec = train_sel.network_spec
    gen_sel = gen.select()
    if gen_sel.arch_ids != [spec.arch_id]:
        raise WeightzooError(f"generated zoo {gen.name!r} holds architecture(s) {gen_sel.arch_ids} but the "
                             f"training selection is {spec.arch_id}; select the same architecture (where=, --where)")
    status = gen_sel.metadata(["status"]).column("status")
    ok = np.flatnonzero(pc.equal(status, "ok").to_numpy(zero_copy_only=False))
    n_excluded = len(gen_sel) - len(ok)
    if not len(ok):
        raise WeightzooError(f"generated zoo {gen.name!r} has no networks with status ok to evaluate")
    gen_sel = gen_sel.take(ok)
    gen_ids = gen_sel.column("model_id")
    data = load_zoo_dataset(src)

    def prepared(params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return with_batch_norm_statistics(spec, params, data) if task == "classify" else dict(params)

    gen_params = prepared(gen_sel.stacked())

    # Built before any work, so a bad sigma fails at once.
    baseline_gens = [(tag, build_generator(method, spec, **hp)) for method, hp, tag in (
        [("noise", {"sigma": float(s)}, f"noise sigma={s:g}") for s in sigmas]
        + [("average", {}, "average"), ("gaussian", {}, "gaussian")])] if baselines else []
    steps = 2 + len(baseline_gens) + (1 if finetune else 0)
    bar = tqdm(total=steps, disable=not progress, desc=f"eval-gen {gen.name}", unit="step")
    train_params = prepared(train_sel.stacked())
    if task == "inr":  # the images of the training networks' targets, pixels as at build time
        images = torch.cat([data.x_train, data.x_test])
        targets = sorted({int(v) for v in train_sel.column("image_index") if v is not None})
        x, y = image_coordinates(*images.shape[-2:]), images[targets].flatten(1).double()
    else:
        x, y = data.x_test, data.y_test
    train = _Train(train_params, torch.empty(0), flatten(spec, train_params), x, y, task)
    train.behaviour = behaviour(spec, train_params, train)
    self_similarity, _ = _most_similar(train.behaviour, train.behaviour, task, exclude_self=True)
    train_quality = _quality(train.behaviour, train)
    bar.update(1)

    scores = {label: score(spec, gen_params, train, align, seed)}
    bar.update(1)
    for tag, g in baseline_gens:
        g.fit(train_params, train_sel.table, seed=seed)
        scores[tag] = score(spec, prepared(g.sample(len(gen_ids), seed=seed)), train, align, seed)
        bar.update(1)

    train_ids = train_sel.column("model_id")
    s = scores[label]
    q, sim = MEASURES[task]
    per_model: dict[str, list] = {
        "model_id": gen_ids, q: s.quality.tolist(), sim: s.similarity.tolist(),
        "nearest_" + sim.removeprefix("max_"): [train_ids[i] for i in s.nearest_similar.tolist()],
        "min_l2": s.min_l2.tolist(), "nearest_l2": [train_ids[i] for i in s.nearest_l2.tolist()]}
    if s.min_l2_aligned is not None:
        per_model["min_l2_aligned"] = s.min_l2_aligned.tolist()
    ranked = train_quality.sort(descending=True).values
    top = ranked[:max(1, round(0.3 * len(ranked)))]
    train_summary = {"n": len(train_ids), f"{q}_mean": float(train_quality.mean()),
                     f"{q}_max": float(train_quality.max()), f"{q}_min": float(train_quality.min()),
                     f"{q}_median": float(train_quality.quantile(0.5)), f"{q}_top30_mean": float(top.mean()),
                     f"self_{sim}_mean": float(self_similarity.mean()),
                     f"self_{sim}_median": float(self_similarity.quantile(0.5)),
                     f"self_{sim}": self_similarity.tolist()}
    ft = None
    if finetune:
        # The target is the median test accuracy as the builder measured it (batch norm with the
        # running statistics training left), the measure fine-tuning reports; for networks
        # without batch norm it equals the recomputed one.
        stored = [v for v in train_sel.column("test_acc") if v is not None] if "test_acc" in train_sel.columns else []
        target = float(np.median(stored)) if stored else float(train_quality.quantile(0.5))
        ft = finetune_benefit(src, train_sel, spec, gen_params, data, target,
                              finetune_models, finetune_epochs, seed)
        bar.update(1)
    bar.close()

    result = GenEvalResult(gen.name, src.name, where, {k: v.summary() for k, v in scores.items()},
                           train_summary, per_model, ft, n_excluded=n_excluded, label=label, task=task)
    result.points = {k: (v.similarity.tolist(), v.quality.tolist()) for k, v in scores.items()}
    result.points["training networks (vs each other)"] = (self_similarity.tolist(), train_quality.tolist())
    out.mkdir(parents=True, exist_ok=True)
    from catalog.format import atomic_write_bytes

    result.json_path = out / JSON_NAME
    atomic_write_bytes(result.json_path, (json.dumps(result.to_dict(), indent=2) + "\n").encode())
    result.figure_path = plot_novelty(result, out / FIGURE_NAME)
    return result


# ================================================================================ fine-tuning
def finetune_benefit(src: Zoo, train_sel, spec: NetworkSpec, gen_params: Mapping[str, Tensor], data: Dataset,
                     target: float, n_models: int = 4, epochs: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Epochs until test accuracy reaches ``target``: generated init vs random init.

    ``n_models`` training runs of the selection, drawn with ``seed`` (sharing optimizer, batch
    size and training fraction, so they train as one population), are trained again with the source zoo's recipe
    (their learning rate, weight decay, data order, seed), once from their own random
    initialization and once from the first ``n_models`` generated networks, evaluating every
    epoch. A network that never reaches ``target`` counts as ``None`` (and is left out of the mean).
    Training runs with the builder's default thread count
    (:data:`zoo_builders.build.DEFAULT_THREADS`): convolutions and batch norm round differently
    with more threads, so with it a random init retrains exactly what a default build trained.

    Returns:
        ``{"target_acc", "epochs", "models", "run_ids", "generated": {...}, "random": {...}}``
        with, per init, ``epochs_to_target`` (per network), ``mean_epochs``, ``reached``,
        ``acc_curve`` (mean test accuracy per epoch, epoch 0 first) and ``final_acc`` (per network).
    """
    from zoo_builders.build import DEFAULT_THREADS, torch_threads
    from zoo_builders.spec import BuildSpec
    from zoo_builders.train import train_classifiers

    if isinstance(n_models, bool) or not isinstance(n_models, int) or n_models < 1:
        raise WeightzooError(f"finetune_models must be an integer >= 1, got {n_models!r}")
    try:
        runs = {r.run_id: r for r in BuildSpec.from_dict(src.manifest.spec).runs()}
    except WeightzooError as e:
        raise WeightzooError(f"fine-tuning needs zoo {src.name!r}'s build spec to retrain its runs: {e}") from None
    chosen = []
    # A seeded draw of runs (not the first ones stored, which often share a learning rate).
    candidates = list(dict.fromkeys(train_sel.column("run_id")))
    order = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed)).tolist()
    for rid in (candidates[i] for i in order):
        r = runs.get(rid)
        if r is None:
            continue
        t, t0 = r.training, (chosen[0].training if chosen else r.training)
        if (t.optimizer, t.batch_size, t.train_fraction) == (t0.optimizer, t0.batch_size, t0.train_fraction):
            chosen.append(r)
        if len(chosen) == n_models:
            break
    n_gen = next(iter(gen_params.values())).shape[0]
    k = min(len(chosen), n_gen)
    if k == 0:
        raise WeightzooError(f"none of the selected runs is in zoo {src.name!r}'s build spec; fine-tuning "
                             f"retrains runs of the spec")
    chosen = chosen[:k]
    epochs = epochs or chosen[0].training.epochs
    cfgs = [replace(r, training=replace(r.training, epochs=epochs, checkpoints=tuple(range(epochs + 1))))
            for r in chosen]
    init = {name: v[:k] for name, v in gen_params.items()}
    out: dict[str, Any] = {"target_acc": target, "epochs": epochs, "models": k,
                           "run_ids": [r.run_id for r in chosen]}
    for tag, start in (("generated", init), ("random", None)):
        with torch_threads(DEFAULT_THREADS):
            res = train_classifiers(spec, cfgs, data, init=start)
        curve = np.array([[m["test_acc"] for m in snap.metrics] for snap in res.snapshots])  # [E + 1, k]
        hit = [next((snap.checkpoint for snap, acc in zip(res.snapshots, curve[:, i]) if acc >= target), None)
               for i in range(k)]
        reached = [h for h in hit if h is not None]
        out[tag] = {"epochs_to_target": hit, "reached": len(reached),
                    "mean_epochs": float(np.mean(reached)) if reached else None,
                    "acc_curve": curve.mean(1).tolist(), "final_acc": curve[-1].tolist()}
    return out


# ================================================================================ the figure
def plot_novelty(result: GenEvalResult, path: str | os.PathLike) -> Path:
    """Accuracy vs max-IoU, one colour per method, with the training networks' own IoU
    distribution (the figure of Zeng et al. 2025); for INR zoos PSNR vs max PSNR to a training
    network's image; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    inr = result.task == "inr"
    scale = 1 if inr else 100  # accuracy in %, PSNR in dB
    fig, (ax, hist) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [3, 2]})
    colors = plt.get_cmap("tab10")
    train_key = "training networks (vs each other)"
    for i, (tag, (sim, quality)) in enumerate(result.points.items()):
        if tag == train_key:
            ax.scatter(sim, [scale * a for a in quality], s=10, c="0.6", marker="x", label=tag, zorder=1)
        else:
            big = tag == result.label
            ax.scatter(sim, [scale * a for a in quality], s=28 if big else 12, color=colors(i % 10), label=tag,
                       edgecolors="k" if big else "none", linewidths=0.5, zorder=3 if big else 2, alpha=0.8)
    if inr:
        ax.set_xlabel(f"max PSNR (dB) of the image vs training networks' images ({COPY_PSNR:g} = a copy)")
        ax.set_ylabel("PSNR (dB) vs the closest target image")
        ax.set_title(f"{result.generated_zoo} vs {result.train_zoo}: fidelity vs novelty")
        every = [v for sim, _ in result.points.values() for v in sim]
        bins = np.linspace(min(every), max(every) + 1e-9, 41)
    else:
        ax.set_xlabel("max IoU of mispredicted test examples vs training networks (1 = a copy)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{result.generated_zoo} vs {result.train_zoo}: accuracy vs novelty")
        ax.set_xlim(-0.02, 1.02)
        bins = np.linspace(0, 1, 41)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    # Densities: the training set and the generated set differ in size.
    hist.hist(result.points[train_key][0], bins=bins, color="0.6", alpha=0.7, density=True,
              label=f"training vs others ({len(result.points[train_key][0])})")
    hist.hist(result.points[result.label][0], bins=bins, color=colors(0), alpha=0.6, density=True,
              label=f"{result.label} ({len(result.points[result.label][0])})")
    what = "max PSNR" if inr else "max IoU"
    hist.set_xlabel(f"{what} vs training networks")
    hist.set_ylabel(f"density (networks per unit {'dB' if inr else 'IoU'}, normalized)")
    hist.set_title(f"{what} distribution")
    hist.legend(fontsize=8)
    fig.tight_layout()
    from catalog.format import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path
