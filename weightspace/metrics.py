"""Evaluation metrics of metanetwork predictions (JSON-ready: plain floats, ``None`` for undefined)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import kendalltau
from torch import Tensor


def _clean(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def regression_metrics(pred: Tensor, target: Tensor) -> dict[str, float | None]:
    """Kendall's tau, R², MAE and RMSE of one predicted column.

    Shapes:
        ``pred [N]``, ``target [N]``.
    """
    p = pred.detach().double().reshape(-1).cpu().numpy()
    t = target.detach().double().reshape(-1).cpu().numpy()
    n = len(t)
    if n == 0:
        return {"kendall_tau": None, "r2": None, "mae": None, "rmse": None, "n": 0}
    ss_tot = float(((t - t.mean()) ** 2).sum())
    ss_res = float(((t - p) ** 2).sum())
    tau = kendalltau(p, t).statistic if n > 1 else float("nan")
    out: dict[str, Any] = {
        "kendall_tau": _clean(tau),
        "r2": _clean(1.0 - ss_res / ss_tot) if ss_tot > 0 else None,
        "mae": _clean(float(np.abs(t - p).mean())),
        "rmse": _clean(math.sqrt(ss_res / n)),
        "n": n,
    }
    if out["kendall_tau"] is None or out["r2"] is None:  # say why, rather than a bare None
        if n < 2:
            why = "one row"
        elif ss_tot == 0:
            why = "the targets are constant"
        else:
            why = "the predictions are constant"
        undefined = [k for k in ("kendall_tau", "r2") if out[k] is None]
        out["undefined"] = f"{' and '.join(undefined)} undefined: {why}"
    return out


def classification_metrics(pred: Tensor, target: Tensor) -> dict[str, float | None]:
    """Accuracy of predicted class indices.

    Shapes:
        ``pred [N]`` (class indices), ``target [N]``.
    """
    n = int(target.numel())
    if n == 0:
        return {"accuracy": None, "n": 0}
    return {"accuracy": float((pred.reshape(-1) == target.reshape(-1)).double().mean()), "n": n}
