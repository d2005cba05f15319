"""Re-evaluation of stored metrics: ``zoo verify --recompute``.

A zoo's metric columns are claims. :func:`recompute_metrics` re-evaluates a seeded sample of its
models on the data they were evaluated on (:func:`zoo_builders.datasets.load_zoo_dataset`: a built
zoo's spec, or an import's ``--dataset``) with the very code that computed them at build time, and
compares:

- classifiers: ``test_loss`` and ``test_acc`` on the test split (:func:`zoo_builders.train.evaluate_classifier`);
- INRs (``siren`` architectures): ``mse`` and ``psnr`` of the rendered image against the row's image
  (``image_index`` over the training images followed by the test images, as the builder counts),
  on :func:`catalog.coordinates.image_coordinates`, as :func:`zoo_builders.train.train_inrs` does.
  An INR whose spec says its output range is not ``[0, 1]`` (NFN's ``[-1, 1]``) is mapped back to
  ``[0, 1]`` first.

Only rows with status ``ok`` are sampled (a diverged model's metrics are not numbers to check).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from catalog.coordinates import image_coordinates
from catalog.errors import WeightzooError
from catalog.network import NetworkSpec, population_forward
from zoo_builders.datasets import Dataset, load_zoo_dataset
from zoo_builders.train import evaluate_classifier, psnr

CLASSIFIER_METRICS = ("test_acc", "test_loss")
INR_METRICS = ("mse", "psnr")
#: Other names imported zoos store a metric under (the Small CNN Zoo's ``metrics.csv`` says
#: ``test_accuracy``); the first present column is compared.
METRIC_ALIASES = {"test_acc": ("test_acc", "test_accuracy")}
#: Default sample size and absolute tolerance of ``zoo verify --recompute``.
DEFAULT_SAMPLE = 64
DEFAULT_TOLERANCE = 1e-4
#: Models evaluated per batched call.
CHUNK = 64


@dataclass
class MetricCheck:
    """One metric over the sample: the largest ``|stored - recomputed|`` and its model."""

    metric: str
    compared: int = 0
    max_abs_diff: float = 0.0
    worst_model: str | None = None


@dataclass
class Mismatch:
    """A model whose recomputed metric differs from the stored one by more than the tolerance."""

    model_id: str
    metric: str
    stored: float
    recomputed: float

    def __str__(self) -> str:
        return (f"{self.model_id}: {self.metric} stored {self.stored:.6g}, recomputed {self.recomputed:.6g} "
                f"(|diff| {abs(self.stored - self.recomputed):.3g})")


@dataclass
class RecomputeReport:
    """What :func:`recompute_metrics` found; ``ok`` when every difference is within tolerance."""

    zoo: str
    task: str
    dataset: str
    sampled: int
    of: int
    tolerance: dict[str, float]
    checks: dict[str, MetricCheck] = field(default_factory=dict)
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def lines(self) -> list[str]:
        """One line per metric, then one per mismatch, then the verdict."""
        out = [f"{c.metric}: max |stored - recomputed| = {c.max_abs_diff:.3g} over {c.compared} models "
               f"(tolerance {self.tolerance[c.metric]:g}{'' if c.worst_model is None else f'; worst {c.worst_model}'})"
               for c in self.checks.values()]
        out += [f"MISMATCH {m}" for m in self.mismatches]
        state = "OK" if self.ok else f"{len(self.mismatches)} mismatch(es)"
        out.append(f"recompute {self.zoo}: {state}; {self.sampled} of {self.of} models re-evaluated on "
                   f"{self.dataset} ({self.task})")
        return out


def _tolerances(metrics: tuple[str, ...], tolerance: float | Mapping[str, float]) -> dict[str, float]:
    if isinstance(tolerance, Mapping):
        return {m: float(tolerance.get(m, DEFAULT_TOLERANCE)) for m in metrics}
    if not tolerance >= 0:
        raise WeightzooError(f"tolerance={tolerance!r} (--tolerance) must be >= 0")
    return {m: float(tolerance) for m in metrics}


@torch.no_grad()
def _inr_metrics(spec: NetworkSpec, params: dict[str, torch.Tensor], images: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"mse": [P], "psnr": [P]}`` of ``P`` INRs against their images ``[P, H, W]`` in ``[0, 1]``."""
    n, height, width = images.shape
    coords = image_coordinates(height, width).to(spec.torch_dtype)                  # [HW, 2]
    out = population_forward(spec, params, coords)                                   # [P, HW, 1]
    lo, hi = (float(v) for v in spec.meta.get("output_range", (0.0, 1.0)))
    if (lo, hi) != (0.0, 1.0):
        out = (out - lo) / (hi - lo)  # to the [0, 1] intensities the metrics are defined on
    mse = ((out - images.reshape(n, -1, 1).to(out.dtype)) ** 2).mean((1, 2))        # as train_inrs computes it
    return {"mse": mse, "psnr": psnr(mse)}


def recompute_metrics(zoo: str | os.PathLike, sample: int | None = DEFAULT_SAMPLE, seed: int = 0,
                      tolerance: float | Mapping[str, float] = DEFAULT_TOLERANCE,
                      quiet: bool = True) -> RecomputeReport:
    """Re-evaluate a seeded sample of ``zoo``'s models and compare with the stored metrics.

    Args:
        zoo: the zoo directory.
        sample: models to re-evaluate, drawn with ``seed`` from the ``ok`` rows (default 64;
            ``None`` or more than there are: all).
        seed: the sample's seed (default 0).
        tolerance: the largest allowed ``|stored - recomputed|``, one for every metric or per
            metric (default ``1e-4``).
        quiet: no progress bar (default ``True``).

    Returns:
        the report (``report.ok`` false names the models whose metrics differ).

    Raises:
        WeightzooError: the zoo's dataset is unknown or changed (an imported zoo's message says to
            import it again with ``--dataset``), or it holds none of the metric columns to compare.
    """
    from catalog.zoo import open_zoo

    z = open_zoo(zoo)
    try:
        try:
            data = load_zoo_dataset(z)
        except WeightzooError as e:
            spec = z.manifest.spec
            if "importer" not in spec and spec.get("dataset"):  # built or generated: importing again is no fix
                raise
            raise WeightzooError(f"{e}. To re-evaluate an imported zoo, import it again with --dataset NAME "
                                 f"(the dataset its models were evaluated on)") from e
        sel = z.select(where="status = 'ok'")
        specs = sel.network_specs if len(sel) else {}
        task = "inr" if specs and all(s.family == "siren" for s in specs.values()) else "classify"
        # stored column -> the metric it holds
        columns = {c: m for m in (INR_METRICS if task == "inr" else CLASSIFIER_METRICS)
                   for c in [next((a for a in METRIC_ALIASES.get(m, (m,)) if a in sel.columns), None)]
                   if c is not None}
        metrics = tuple(columns)
        if not metrics:
            want = ", ".join(INR_METRICS if task == "inr" else CLASSIFIER_METRICS)
            raise WeightzooError(f"zoo {z.name!r} stores none of the metrics to recompute ({want})")
        if task == "inr" and "image_index" not in sel.columns:
            raise WeightzooError(f"zoo {z.name!r} holds INRs without an image_index column: which image each "
                                 f"one fits is unknown")
        tol = _tolerances(metrics, tolerance)
        total = len(sel)
        if sample is not None and sample < 1:
            raise WeightzooError(f"sample={sample!r} (--sample) must be at least 1 (None: every model)")
        if sample is not None and sample < total:
            picked = np.sort(np.random.default_rng(seed).choice(total, size=sample, replace=False))
            sel = sel.take(picked)
        report = RecomputeReport(z.name, task, data.name, len(sel), total, tol,
                                 {m: MetricCheck(m) for m in metrics})
        with tqdm(total=len(sel), disable=quiet, unit="model", desc=f"recompute {z.name}") as bar:
            for arch_id, group in sel.by_arch().items():
                spec = specs[arch_id]
                for start in range(0, len(group), CHUNK):
                    part = group.take(range(start, min(start + CHUNK, len(group))))
                    found = _evaluate(task, spec, part, data)
                    stored = part.metadata(["model_id", *metrics]).to_pydict()
                    for m in metrics:
                        check = report.checks[m]
                        for i, model_id in enumerate(stored["model_id"]):
                            value, again = stored[m][i], float(found[columns[m]][i])
                            if value is None:
                                continue
                            diff = abs(float(value) - again)
                            check.compared += 1
                            if check.worst_model is None or diff > check.max_abs_diff:
                                check.max_abs_diff, check.worst_model = diff, model_id
                            if not diff <= tol[m]:  # NaN fails too
                                report.mismatches.append(Mismatch(model_id, m, float(value), again))
                    bar.update(len(part))
        return report
    finally:
        z.close()


def _evaluate(task: str, spec: NetworkSpec, part, data: Dataset) -> dict[str, torch.Tensor]:
    params = part.stacked()                                                          # {name: [P, *shape]}
    if task == "classify":
        x = data.x_test
        if tuple(x.shape[1:]) != spec.input_shape:
            # an imported MLP's input shape is its first layer's fan-in, e.g. (64,) for 1x8x8 images
            if math.prod(x.shape[1:]) != math.prod(spec.input_shape):
                raise WeightzooError(f"{data.name!r} examples have shape {list(x.shape[1:])} but architecture "
                                     f"{spec.arch_id} takes {list(spec.input_shape)}")
            x = x.reshape(x.shape[0], *spec.input_shape)
        # the dataset is float32; a float16/bfloat16 zoo (an import) computes in its own dtype
        loss, acc = evaluate_classifier(spec, params, x.to(spec.torch_dtype), data.y_test)
        return {"test_loss": loss, "test_acc": acc}
    x = torch.cat([data.x_train, data.x_test])
    idx = [int(i) for i in part.column("image_index")]
    if max(idx) >= x.shape[0]:
        raise WeightzooError(f"image_index {max(idx)} is beyond the {x.shape[0]} images of {data.name!r}")
    return _inr_metrics(spec, params, x[idx].reshape(len(idx), *x.shape[-2:]))
