"""Figures for the analysis plots: matplotlib's object API on the Agg canvas.

Private to :mod:`weightspace.analysis`. No ``pyplot``: nothing touches matplotlib's global
backend or figure registry, so plotting works headless and leaks no figures.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from catalog.errors import WeightzooError


def new_figure(width: float = 6.4, height: float = 4.8) -> Any:
    """A ``matplotlib.figure.Figure`` attached to an Agg canvas."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise WeightzooError("plots need matplotlib: pip install matplotlib") from None
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Any, out: str | os.PathLike) -> Path:
    """Write ``fig`` to exactly ``out`` (format from the suffix, e.g. ``.png``; PNG without one),
    creating parent dirs; atomically, so a failed write leaves no partial file."""
    from catalog.format import atomic_path

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=150, format=path.suffix.lstrip(".").lower() or "png")
    except ValueError as e:  # unsupported format
        raise WeightzooError(f"cannot write figure {path}: {e}; use a .png file") from None
    return path
