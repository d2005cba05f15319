import math

import numpy as np
import pyarrow as pa
import pytest

from catalog.errors import WeightzooError
from weightspace.analysis import line_plot, phase_heatmap, scatter_plot

PNG = b"\x89PNG\r\n\x1a\n"


def _table():
    # width x batch_size x 2 seeds; hessian_trace chosen so the cell means are easy by hand.
    rows = []
    for width in (8, 32, 16):  # unsorted on purpose
        for batch in (128, 16):
            for seed in (0, 1):
                rows.append({"width": width, "batch_size": batch, "seed": seed,
                             "hessian_trace": width / batch * (1 + seed),
                             "mc": (seed - 0.5) * width, "checkpoint": seed + 1,
                             "lr": 0.1 if seed else 0.01})
    return {k: [r[k] for r in rows] for k in rows[0]}


def test_heatmap_cells_are_the_hand_computed_means(tmp_path):
    out = tmp_path / "phase.png"
    grid = phase_heatmap(_table(), "width", "batch_size", "hessian_trace", out=out)
    assert out.read_bytes()[:8] == PNG
    assert grid.x_values == [8, 16, 32] and grid.y_values == [16, 128]
    # mean over seeds of w / b * (1 + seed) = 1.5 w / b
    want = np.array([[1.5 * w / b for w in (8, 16, 32)] for b in (16, 128)])
    np.testing.assert_allclose(grid.values, want)
    assert (grid.counts == 2).all()
    assert grid.label == "mean hessian_trace"


def test_heatmap_log_and_other_aggregations(tmp_path):
    table = pa.table(_table())
    grid = phase_heatmap(table, "width", "batch_size", "hessian_trace", agg="max", log=True,
                         out=tmp_path / "log.png")
    np.testing.assert_allclose(grid.values[0, 0], math.log10(2 * 8 / 16))
    assert grid.label == "log10 max hessian_trace"
    # A metric changing sign is drawn on a colour map centered on 0.
    signed = phase_heatmap(table, "width", "batch_size", "mc", agg="min", out=tmp_path / "mc.png")
    np.testing.assert_allclose(signed.values[0], [-4.0, -8.0, -16.0])
    with pytest.raises(WeightzooError, match="log needs a positive"):
        phase_heatmap(table, "width", "batch_size", "mc", log=True)


def test_heatmap_empty_cells_are_nan():
    t = _table()
    keep = [i for i in range(len(t["width"])) if not (t["width"][i] == 8 and t["batch_size"][i] == 16)]
    t = {k: [v[i] for i in keep] for k, v in t.items()}
    grid = phase_heatmap(t, "width", "batch_size", "hessian_trace")
    assert math.isnan(grid.values[0, 0]) and grid.counts[0, 0] == 0


def test_unknown_column_names_the_valid_ones():
    with pytest.raises(WeightzooError, match="unknown column 'depth'.*width, batch_size, seed"):
        phase_heatmap(_table(), "depth", "batch_size", "hessian_trace")
    with pytest.raises(WeightzooError, match="unknown column 'hessian'"):
        line_plot(_table(), "checkpoint", "hessian")
    with pytest.raises(WeightzooError, match="unknown column 'nope'"):
        scatter_plot(_table(), "width", "mc", group="nope")
    with pytest.raises(WeightzooError, match="unknown aggregation 'avg'; valid: mean"):
        phase_heatmap(_table(), "width", "batch_size", "mc", agg="avg")


def test_line_and_scatter_plots(tmp_path):
    lines = line_plot(_table(), "width", "hessian_trace", group="batch_size", out=tmp_path / "l.png")
    assert (tmp_path / "l.png").read_bytes()[:8] == PNG
    assert list(lines) == [16, 128]
    np.testing.assert_allclose(lines[16][0], [8, 16, 32])
    np.testing.assert_allclose(lines[16][1], [1.5 * w / 16 for w in (8, 16, 32)])
    points = scatter_plot(_table(), "width", "mc", group="lr", out=tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:8] == PNG
    assert sorted(points) == [0.01, 0.1] and len(points[0.1][0]) == 6
    # More numeric groups than max_legend: a colour scale with a colour bar instead of a legend.
    many = scatter_plot(_table(), "width", "mc", group="hessian_trace", out=tmp_path / "c.png",
                        max_legend=5)
    assert len(many) == 7 and (tmp_path / "c.png").read_bytes()[:8] == PNG


def test_heatmap_cell_of_a_diverged_run_is_left_out_and_marked(tmp_path):
    # lr x seed over every checkpoint: run (0.1, seed 1) diverged after its initial checkpoint
    t = {"lr": [0.01, 0.01, 0.1, 0.1, 0.01, 0.01, 0.1, 0.1], "seed": [0, 0, 0, 0, 1, 1, 1, 1],
         "checkpoint": [0, 3] * 4, "test_loss": [2.3, 0.5, 2.3, 0.4, 2.3, 0.6, 2.3, float("nan")]}
    t["test_loss"] = [None if i == 1 else v for i, v in enumerate(t["test_loss"])]  # a null is not a divergence
    grid = phase_heatmap(t, "lr", "seed", "test_loss", out=tmp_path / "d.png")
    assert math.isnan(grid.values[1, 1]) and grid.diverged[1, 1] == 1  # not the initial loss 2.3
    np.testing.assert_allclose(grid.values[0, 0], 2.3)  # the null is skipped as before
    assert grid.diverged.sum() == 1 and (tmp_path / "d.png").is_file()
