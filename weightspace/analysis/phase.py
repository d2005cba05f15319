"""Phase diagrams and other views of a metadata table (``zoo plot``): a metric aggregated over
the cells of two axes (e.g. ``hessian_trace`` over ``width`` x ``batch_size``, mean over seeds),
and line / scatter plots of one column against another per group.

With ``log`` every kind plots ``log10`` of what it plots otherwise: of the aggregate of a cell or
point (``log10(mean(...))``, as SQL's ``log10(avg(...))``, never the mean of ``log10`` values),
of each row's value in a scatter plot; :func:`plot_label` names it the same way everywhere.

Tables are a ``pyarrow.Table`` (``Selection.table``, a ``zoo query`` result) or a
``{column: sequence}`` dict; the aggregation is plain numpy. Each function returns the numbers
it plots (so they can be printed or tested) and writes the figure when given ``out``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from catalog.errors import WeightzooError
from weightspace.analysis._plotting import new_figure, save
from weightspace.analysis._table import Table, check_columns, n_rows, numeric, values

#: Aggregations over the rows of a cell (NaN metric values are ignored).
AGGREGATIONS = {
    "mean": np.mean, "median": np.median, "min": np.min, "max": np.max, "std": np.std,
    "count": len,
}
#: The heatmaps' diverging colour map (centered on 0 when the values change sign).
DIVERGING_CMAP = "coolwarm"
#: Cells up to which a heatmap writes each cell's value into it.
ANNOTATE_MAX_CELLS = 120


@dataclass(frozen=True)
class PhaseGrid:
    """A metric aggregated over the cells of two columns.

    Shapes:
        ``x_values [nx]``, ``y_values [ny]`` the sorted distinct axis values; ``values
        [ny, nx]`` the aggregate per cell (``log10`` of it if ``log``; NaN for empty cells);
        ``counts [ny, nx]`` the rows with a metric value in each cell; ``diverged [ny, nx]``
        the rows whose metric is NaN (not null: a diverged run), whose cell is left out (NaN).
    """

    x: str
    y: str
    metric: str
    agg: str
    log: bool
    x_values: list
    y_values: list
    values: np.ndarray
    counts: np.ndarray
    diverged: np.ndarray | None = None

    @property
    def label(self) -> str:
        """The colour bar's label, e.g. ``"log10 mean hessian_trace"`` (see :func:`plot_label`)."""
        return plot_label(self.metric, self.agg, self.log)


def plot_label(metric: str, agg: str | None = None, log: bool = False) -> str:
    """What a plot shows, for its title, axis or colour bar and the command's message: e.g.
    ``"log10 mean hessian_trace"`` is ``log10`` of the mean (the one meaning of ``log``: log10 of
    the plotted aggregate), ``"hessian_trace"`` a scatter plot's rows (``agg`` ``None``)."""
    shown = f"{agg} {metric}" if agg else metric
    return f"log10 {shown}" if log else shown


def _log10(v: np.ndarray, what: str) -> np.ndarray:
    """``log10(v)`` of plotted values ``v`` (NaN stays NaN), refusing any that are not positive.

    Raises:
        WeightzooError: naming ``what`` (e.g. ``"mean hessian_trace in every cell"``).
    """
    finite = v[~np.isnan(v)]
    if (finite <= 0).any():
        raise WeightzooError(f"log needs a positive {what}, but some are <= 0 (min {finite.min():g}); "
                             f"plot without log")
    return np.log10(v)


def _check_agg(agg: str) -> None:
    if agg not in AGGREGATIONS:
        raise WeightzooError(f"unknown aggregation {agg!r}; valid: {', '.join(AGGREGATIONS)}")


def _axis(vals: list) -> list:
    """The sorted distinct non-null values of an axis (numerically if all numbers; tuples such
    as ``channels`` element-wise)."""
    distinct = list(dict.fromkeys(v for v in vals if v is not None and not _isnan(v)))
    if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in distinct):
        return sorted(distinct)
    try:
        return sorted(distinct)
    except TypeError:  # mixed types
        return sorted(distinct, key=str)


def _isnan(v: object) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _fmt(v: object) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    if isinstance(v, tuple):
        return "[" + ", ".join(_fmt(e) for e in v) + "]"
    return str(v)


def _aggregate(samples: np.ndarray, agg: str) -> float:
    samples = samples[~np.isnan(samples)]
    if agg == "count":
        return float(len(samples))
    return float(AGGREGATIONS[agg](samples)) if len(samples) else math.nan


def phase_heatmap(
    table: Table, x: str, y: str, metric: str, agg: str = "mean", log: bool = False,
    out: str | os.PathLike | None = None,
) -> PhaseGrid:
    """Aggregate ``metric`` over every (``x``, ``y``) cell and draw it as a heatmap.

    Args:
        table: a ``pyarrow.Table`` or ``{column: sequence}``.
        x: the column along the horizontal axis (e.g. ``width``).
        y: the column along the vertical axis (e.g. ``batch_size``).
        metric: the numeric column to aggregate (e.g. ``hessian_trace``).
        agg: one of :data:`AGGREGATIONS` (default ``mean``: over seeds and whatever else the
            cell holds; filter the table to one checkpoint first).
        log: colour by ``log10`` of the aggregate (default ``False``; every cell must be > 0).
        out: write the figure there (e.g. ``fig.png``); default: only compute.

    Returns:
        the :class:`PhaseGrid` drawn.
    """
    check_columns(table, [x, y, metric])
    _check_agg(agg)
    xs, ys, ms = values(table, x), values(table, y), numeric(table, metric)
    nan = np.asarray([_isnan(v) for v in values(table, metric)], dtype=bool)  # NaN, not null: diverged
    x_axis, y_axis = _axis(xs), _axis(ys)
    if not x_axis or not y_axis:
        raise WeightzooError(f"no row has both {x!r} and {y!r} set; nothing to plot")
    x_pos = {v: i for i, v in enumerate(x_axis)}
    y_pos = {v: i for i, v in enumerate(y_axis)}
    cells: dict[tuple[int, int], list[float]] = {}
    diverged = np.zeros((len(y_axis), len(x_axis)), dtype=np.int64)
    for xv, yv, mv, bad in zip(xs, ys, ms, nan):
        if xv in x_pos and yv in y_pos:
            cells.setdefault((y_pos[yv], x_pos[xv]), []).append(mv)
            diverged[y_pos[yv], x_pos[xv]] += int(bad)
    grid = np.full((len(y_axis), len(x_axis)), np.nan)
    counts = np.zeros((len(y_axis), len(x_axis)), dtype=np.int64)
    for (i, j), samples in cells.items():
        arr = np.asarray(samples, dtype=np.float64)
        counts[i, j] = int((~np.isnan(arr)).sum())
        # A cell with a diverged row is left out: the mean of the rest (e.g. the run's own earlier
        # checkpoints) would show a value the run did not end with.
        grid[i, j] = _aggregate(arr, agg) if not diverged[i, j] or agg == "count" else np.nan
    if log:  # of the aggregate: what the cell shows
        grid = _log10(grid, f"{agg} {metric} in every cell")
    result = PhaseGrid(x, y, metric, agg, log, x_axis, y_axis, grid, counts, diverged)
    if out is not None:
        _draw_heatmap(result, out)
    return result


def _draw_heatmap(grid: PhaseGrid, out: str | os.PathLike) -> Path:
    from matplotlib.colors import Normalize, TwoSlopeNorm
    from matplotlib.patches import Rectangle

    fig = new_figure(max(4.8, 0.7 * len(grid.x_values) + 2.5), max(3.6, 0.5 * len(grid.y_values) + 2))
    ax = fig.add_subplot()
    finite = grid.values[~np.isnan(grid.values)]
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    # Centered on 0 where the sign means something (mc: barrier or not; not a log10), else on
    # the middle of the range.
    norm = TwoSlopeNorm(0.0, lo, hi) if lo < 0 < hi and not grid.log else Normalize(lo, hi)
    image = ax.imshow(np.ma.masked_invalid(grid.values), origin="lower", aspect="auto",
                      cmap=DIVERGING_CMAP, norm=norm, interpolation="nearest")
    ax.set_xticks(range(len(grid.x_values)), [_fmt(v) for v in grid.x_values])
    ax.set_yticks(range(len(grid.y_values)), [_fmt(v) for v in grid.y_values])
    ax.set_xlabel(grid.x)
    ax.set_ylabel(grid.y)
    ax.set_title(f"{grid.label} over {grid.x} x {grid.y}", fontsize=10)
    if grid.values.size <= ANNOTATE_MAX_CELLS:
        for (i, j), v in np.ndenumerate(grid.values):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=7)
    if grid.diverged is not None:
        for i, j in zip(*np.nonzero(grid.diverged)):
            ax.text(j, i, "diverged", ha="center", va="center", fontsize=6, color="black", style="italic")
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//", edgecolor="0.5", lw=0))
        if grid.diverged.any():
            ax.set_title(f"{grid.label} over {grid.x} x {grid.y} (hatched: a run diverged)", fontsize=10)
    fig.colorbar(image, ax=ax, label=grid.label)
    return save(fig, out)


def _groups(table: Table, group: str | None) -> tuple[list, list]:
    """Each row's group value and the sorted distinct groups (one ``None`` group without one)."""
    if group is None:
        return [None] * n_rows(table), [None]
    vals = values(table, group)
    return vals, _axis(vals) + ([None] if any(v is None for v in vals) else [])


def line_plot(
    table: Table, x: str, y: str, group: str | None = None, agg: str = "mean",
    out: str | os.PathLike | None = None, log: bool = False,
) -> dict[object, tuple[np.ndarray, np.ndarray]]:
    """One line per value of ``group``: ``y`` aggregated over the rows at each ``x`` (e.g.
    ``test_acc`` vs ``checkpoint`` per ``lr``, mean over seeds).

    Args:
        table: a ``pyarrow.Table`` or ``{column: sequence}``.
        x: the numeric column along the horizontal axis.
        y: the numeric column to aggregate.
        group: a column with one line per value (default: one line).
        agg: one of :data:`AGGREGATIONS` (default ``mean``).
        out: write the figure there (e.g. ``fig.png``); default: only compute.
        log: plot ``log10`` of the aggregate (default ``False``; every point must be > 0).

    Returns:
        ``{group value: (x values [k], aggregated y [k])}``, ``x`` sorted (``log10`` of the
        aggregate if ``log``).
    """
    check_columns(table, [x, y] + ([group] if group else []))
    _check_agg(agg)
    xs, ys = numeric(table, x), numeric(table, y)
    gs, order = _groups(table, group)
    lines = {}
    for g in order:
        rows = np.array([gv == g for gv in gs]) & ~np.isnan(xs)
        grid = np.unique(xs[rows])
        lines[g] = (grid, np.array([_aggregate(ys[rows & (xs == v)], agg) for v in grid]))
    if log:  # of the aggregate, as a heatmap's cells
        every = np.concatenate([np.empty(0)] + [gy for _, gy in lines.values()])
        _log10(every, f"{agg} {y} at every point")
        lines = {g: (gx, np.log10(gy)) for g, (gx, gy) in lines.items()}
    label = plot_label(y, agg, log)
    if out is not None:
        fig = new_figure()
        ax = fig.add_subplot()
        for g, (gx, gy) in lines.items():
            ax.plot(gx, gy, marker="o", label=None if group is None else _fmt(g))
        ax.set_xlabel(x)
        ax.set_ylabel(label)
        ax.set_title(f"{label} vs {x}" + (f" per {group}" if group else ""), fontsize=10)
        if group is not None:
            ax.legend(title=group, fontsize=8)
        ax.grid(True, alpha=0.3)
        save(fig, out)
    return lines


def scatter_plot(
    table: Table, x: str, y: str, group: str | None = None,
    out: str | os.PathLike | None = None, max_legend: int = 10, log: bool = False,
) -> dict[object, tuple[np.ndarray, np.ndarray]]:
    """Every row as a point (``x``, ``y``), coloured by ``group``.

    A numeric ``group`` with more than ``max_legend`` values is drawn as a colour scale with a
    colour bar; otherwise each value gets its own colour in a legend.

    Args:
        table: a ``pyarrow.Table`` or ``{column: sequence}``.
        x: the numeric column along the horizontal axis.
        y: the numeric column along the vertical axis.
        group: the column that colours the points (default: none).
        out: write the figure there (e.g. ``fig.png``); default: only compute.
        max_legend: most groups shown as a legend (default ``10``).
        log: plot ``log10`` of each row's ``y`` (default ``False``; every value must be > 0).

    Returns:
        ``{group value: (x [k], y [k])}`` the points of each group (rows with NaN dropped;
        ``log10`` of ``y`` if ``log``).
    """
    check_columns(table, [x, y] + ([group] if group else []))
    xs, ys = numeric(table, x), numeric(table, y)
    if log:
        ys = _log10(ys, f"{y} in every row")
    gs, order = _groups(table, group)
    ok = ~np.isnan(xs) & ~np.isnan(ys)
    points = {}
    for g in order:
        rows = np.array([gv == g for gv in gs]) & ok
        points[g] = (xs[rows], ys[rows])
    if out is not None:
        fig = new_figure()
        ax = fig.add_subplot()
        numeric_group = group is not None and all(isinstance(g, (int, float)) for g in order)
        if numeric_group and len(order) > max_legend:
            c = numeric(table, group)
            sc = ax.scatter(xs[ok], ys[ok], c=c[ok], cmap="viridis", s=16)
            fig.colorbar(sc, ax=ax, label=group)
        else:
            for g, (gx, gy) in points.items():
                ax.scatter(gx, gy, s=16, label=None if group is None else _fmt(g))
            if group is not None:
                ax.legend(title=group, fontsize=8)
        ax.set_xlabel(x)
        ax.set_ylabel(plot_label(y, None, log))
        ax.set_title(f"{plot_label(y, None, log)} vs {x}" + (f" by {group}" if group else ""), fontsize=10)
        ax.grid(True, alpha=0.3)
        save(fig, out)
    return points

