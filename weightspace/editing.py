"""Weight-space outputs: metanetworks that edit networks, demonstrated on INR dilation.

Given SIRENs of digit images, an equivariant metanetwork (``dws`` or ``gmn``,
:meth:`~weightspace.models.Metanetwork.forward_weights`) maps each SIREN to a new SIREN of the
same shape whose rendering should be the *dilated* digit. Targets are computed from the
networks themselves: render the input SIREN on its pixel grid, then apply a grey-scale
morphological dilation (a max filter with a flat ``size x size`` square structuring element).
The loss and the reported metric are the MSE between the rendered output SIREN and that target;
the trivial baseline returns the input SIREN unchanged.

Augmentation is sound here: a hidden-neuron permutation or sign flip leaves the rendered image,
hence the target, unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from catalog.coordinates import image_coordinates
from catalog.errors import WeightzooError
from catalog.network import NetworkSpec, population_forward
from weightspace.models.base import Metanetwork
from weightspace.models.registry import build_metanetwork
from weightspace.normalization import ParamNormalizer
from weightspace.symmetry import RandomNeuronSymmetry
from weightspace.train import EarlyStopping

Params = Mapping[str, Tensor]


def image_shape_of(spec: NetworkSpec) -> tuple[int, int]:
    """``(H, W)`` from ``spec.meta["image_shape"]`` (``[1, H, W]`` or ``[H, W]``)."""
    shape = spec.meta.get("image_shape") if spec.meta else None
    if not shape or len(shape) not in (2, 3):
        raise WeightzooError(
            "the NetworkSpec has no meta['image_shape']; editing needs INRs (SIRENs) of images, "
            "e.g. a zoo built with task 'inr'")
    return int(shape[-2]), int(shape[-1])


def render_inr(spec: NetworkSpec, params: Params, image_shape: tuple[int, int] | None = None) -> Tensor:
    """Render a batch of INRs (differentiably) on their pixel grid.

    Args:
        spec: the INR architecture (2 inputs, 1 output).
        params: ``{name: Tensor[B, *shape]}``.
        image_shape: ``(H, W)`` (default: from ``spec.meta``).

    Shapes:
        returns ``[B, H, W]``.
    """
    h, w = image_shape or image_shape_of(spec)
    coords = image_coordinates(h, w).to(next(iter(params.values())))
    out = population_forward(spec, params, coords)  # [B, H*W, 1]
    return out.reshape(out.shape[0], h, w)


def dilate(images: Tensor, size: int = 3) -> Tensor:
    """Grey-scale morphological dilation with a flat ``size x size`` square (a max filter).

    Equal to ``scipy.ndimage.grey_dilation(image, size=(size, size), mode='constant', cval=-inf)``.

    Shapes:
        ``[B, H, W]`` -> ``[B, H, W]``.
    """
    if size < 1 or size % 2 == 0:
        raise WeightzooError(f"the dilation size must be a positive odd number, got {size}")
    return F.max_pool2d(images.unsqueeze(1), size, stride=1, padding=size // 2).squeeze(1)


@dataclass
class TrainedEditor:
    """A weight-space-output metanetwork with its weight normalization.

    Args:
        net: a metanetwork with ``weight_output`` (``dws`` or ``gmn``).
        normalizer: per-tensor normalization applied before ``net`` and undone after it.
        training: training settings (JSON-able; default empty).

    Shapes:
        ``edit``: ``{name: Tensor[B, *shape]}`` -> ``{name: Tensor[B, *shape]}``.
    """

    net: Metanetwork
    normalizer: ParamNormalizer
    training: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.net.attach_normalizer(self.normalizer)  # probe features run the raw networks

    def edit(self, params: Params) -> dict[str, Tensor]:
        return self.normalizer.denormalize(self.net.forward_weights(self.normalizer.normalize(params)))


def _take(params: Params, idx: Tensor) -> dict[str, Tensor]:
    return {k: v[idx] for k, v in params.items()}


def _n(params: Params) -> int:
    return int(next(iter(params.values())).shape[0])


def fit_editor(
    model_name: str,
    spec: NetworkSpec,
    train: Params,
    val: Params | None = None,
    *,
    target_fn: Callable[[Tensor], Tensor] = dilate,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 32,
    augment: bool = True,
    patience: int = 5,
    seed: int = 0,
    progress: bool = True,
    hparams: Mapping[str, Any] | None = None,
) -> tuple[TrainedEditor, list[dict[str, float]]]:
    """Train ``dws`` or ``gmn`` to edit INRs so that their renderings become ``target_fn(render)``.

    Args:
        model_name: ``dws`` or ``gmn`` (models with an equivariant weight-space head).
        spec: the INR architecture.
        train: raw INR weights ``{name: Tensor[N, *shape]}``.
        val: validation INRs (default ``None``: keep the last epoch).
        target_fn: image transform giving the target rendering (default :func:`dilate`).
        epochs: maximum epochs (default ``30``). lr: Adam learning rate (default ``1e-3``).
        batch_size: INRs per step (default ``32``).
        augment: random hidden-neuron permutations and sign flips (default ``True``).
        patience: early-stopping patience on the validation MSE (default ``5``; ``0``: no
            early stopping; :class:`~weightspace.train.EarlyStopping`).
        seed: seeds init, shuffling and augmentation (default ``0``).
        progress: show a progress bar (default ``True``).
        hparams: metanetwork hyperparameters (default: the model's defaults).

    Returns:
        the editor (best validation epoch) and the per-epoch history.
    """
    torch.manual_seed(seed)
    net = build_metanetwork(model_name, spec, 1, **dict(hparams or {}))
    if not net.weight_output:
        raise WeightzooError(f"metanetwork {model_name!r} cannot output weights; use 'dws' or 'gmn'")
    normalizer = ParamNormalizer.from_weights(train)
    editor = TrainedEditor(net, normalizer, {"model": model_name, "epochs": epochs, "lr": lr,
                                             "batch_size": batch_size, "augment": augment, "seed": seed})
    with torch.no_grad():  # targets depend only on the function, so compute them once
        y_train = target_fn(render_inr(spec, train))
        y_val = target_fn(render_inr(spec, val)) if val is not None else None
    aug = RandomNeuronSymmetry(spec, seed=seed + 1) if augment else None
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    stopper = EarlyStopping(patience if val is not None else 0, min_delta=1e-7)
    bar = tqdm(range(1, epochs + 1), desc=f"edit {model_name}", disable=not progress, unit="epoch")
    for epoch in bar:
        net.train()
        total = 0.0
        n = _n(train)
        for idx in torch.randperm(n, generator=gen).split(batch_size):
            params = _take(train, idx)
            if aug is not None:
                params = aug(params)
            loss = F.mse_loss(render_inr(spec, editor.edit(params)), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        record = {"epoch": epoch, "train_mse": total / n}
        if val is not None and y_val is not None:
            record["val_mse"] = _mse(editor, spec, val, y_val, batch_size)
        history.append(record)
        bar.set_postfix({k: f"{v:.5f}" for k, v in record.items() if k != "epoch"})
        if stopper.step(epoch, record.get("val_mse", record["train_mse"]), net):
            break
    stopper.restore(net)
    net.eval()
    return editor, history


@torch.no_grad()
def _mse(editor: TrainedEditor, spec: NetworkSpec, params: Params, target: Tensor,
         batch_size: int = 64) -> float:
    editor.net.eval()
    n = _n(params)
    total = 0.0
    for i in range(0, n, batch_size):
        chunk = {k: v[i:i + batch_size] for k, v in params.items()}
        out = render_inr(spec, editor.edit(chunk))
        total += float(F.mse_loss(out, target[i:i + batch_size], reduction="sum")) / out[0].numel()
    return total / n


@torch.no_grad()
def evaluate_editor(editor: TrainedEditor | None, spec: NetworkSpec, params: Params,
                    target_fn: Callable[[Tensor], Tensor] = dilate) -> dict[str, float]:
    """Test MSE of rendered edited INRs against ``target_fn(render(input))``.

    Args:
        editor: the trained editor, or ``None`` for the identity baseline only.
        spec: the INR architecture.
        params: test INRs ``{name: Tensor[N, *shape]}``.
        target_fn: the image transform (default :func:`dilate`).

    Returns:
        ``{"mse": ..., "identity_mse": ..., "n": N}`` (``mse`` absent without an editor).
    """
    images = render_inr(spec, params)
    target = target_fn(images)
    out: dict[str, float] = {"identity_mse": float(F.mse_loss(images, target)), "n": _n(params)}
    if editor is not None:
        out["mse"] = _mse(editor, spec, params, target)
    return out


def editing_demo(
    zoo: str,
    models: tuple[str, ...] = ("dws", "gmn"),
    *,
    where: str | None = None,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    epochs: int = 30,
    lr: float = 2e-3,
    batch_size: int = 32,
    progress: bool = True,
    hparams: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """INR dilation on a zoo of SIRENs: train each model, report test MSEs next to the identity.

    Args:
        zoo: path of a zoo of image INRs (task ``inr``).
        models: metanetworks to train (default ``("dws", "gmn")``).
        where: SQL condition selecting the INRs (default: all).
        fractions: train/val/test shares of the runs, split by ``run_id`` (default 0.8/0.1/0.1).
        seed: split and training seed (default ``0``).
        epochs, lr, batch_size, progress: see :func:`fit_editor` (``lr`` default ``2e-3``).
        hparams: per model name, its hyperparameters (default: the models' defaults).

    Returns:
        ``{"identity_mse": ..., "<model>": {"mse": ..., "epochs_run": ...}, "n_train": ...,
        "n_test": ...}`` (MSEs of rendered images on the test split).
    """
    import time

    import numpy as np

    from catalog import open_zoo
    from catalog.split import split_by_run

    z = open_zoo(zoo)
    selection = z.select(where=where)
    spec = selection.network_spec
    image_shape_of(spec)
    splits = split_by_run(selection.metadata(["run_id"]), fractions, seed)
    params = selection.stacked()

    def part(name: str) -> dict[str, Tensor]:
        return _take(params, torch.from_numpy(np.asarray(splits[name])))

    train, val, test = part("train"), part("val"), part("test")
    result: dict[str, Any] = {"zoo": z.name, "n_train": _n(train), "n_val": _n(val),
                              "n_test": _n(test), "epochs": epochs, "seed": seed}
    result["identity_mse"] = evaluate_editor(None, spec, test)["identity_mse"]
    for name in models:
        start = time.perf_counter()
        editor, history = fit_editor(name, spec, train, val if _n(val) else None, epochs=epochs,
                                     lr=lr, batch_size=batch_size, seed=seed, progress=progress,
                                     hparams=(hparams or {}).get(name))
        result[name] = {"mse": evaluate_editor(editor, spec, test)["mse"],
                        "epochs_run": len(history), "train_seconds": time.perf_counter() - start,
                        "hparams": editor.net.hparams}
    return result


if __name__ == "__main__":  # pragma: no cover - `python -m weightspace.editing ZOO [EPOCHS]`
    import json
    import sys

    if len(sys.argv) < 2:
        sys.exit("usage: python -m weightspace.editing ZOO [EPOCHS]")
    print(json.dumps(editing_demo(sys.argv[1], epochs=int(sys.argv[2]) if len(sys.argv) > 2 else 30),
                     indent=2))
