import pytest
import torch
from analysis_helpers import MLPConfig, digits, mlp_spec, random_params, train

from catalog.errors import WeightzooError
from weightspace.analysis import (
    plot_spectrum,
    rank_for_variance,
    subspace_analysis,
)


def _orthonormal_rows(n: int, d: int, k: int, g: torch.Generator) -> torch.Tensor:
    """``[n, d]`` rows ``mean + C U^T``: ``k`` orthonormal directions ``U`` and orthonormal,
    centered coefficient columns ``C``, so the centered rows have exactly ``k`` singular values,
    all equal to 1: a fraction ``f`` of the variance needs ``ceil(f k)`` of them."""
    u, _ = torch.linalg.qr(torch.randn(d, k, generator=g, dtype=torch.float64))
    c = torch.randn(n, k, generator=g, dtype=torch.float64)
    c, _ = torch.linalg.qr(c - c.mean(0))
    return torch.randn(d, generator=g, dtype=torch.float64) + c @ u.T


def _layer_rank_population(spec, n: int, ranks: list[int], seed: int = 0) -> dict[str, torch.Tensor]:
    """``n`` networks whose layer ``l`` (weight and bias) varies in a ``ranks[l]``-dim subspace
    (float64, so that "exact" means to rounding)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for layer, k in zip(spec.layers, ranks):
        w_shape = (layer.out_features, layer.in_features)
        rows = _orthonormal_rows(n, w_shape[0] * w_shape[1] + layer.out_features, k, g)
        out[layer.weight] = rows[:, :w_shape[0] * w_shape[1]].reshape(n, *w_shape)
        out[layer.bias] = rows[:, w_shape[0] * w_shape[1]:]
    return out


def test_rank_for_variance():
    s = torch.tensor([3.0, 2.0, 1.0, 0.0])  # variances 9, 4, 1 of 14
    assert rank_for_variance(s, 9 / 14) == 1
    assert rank_for_variance(s, 0.9) == 2  # 13/14 = 0.929
    assert rank_for_variance(s, 0.99) == 3
    assert rank_for_variance(s, 1.0) == 3
    # No variance at all (one model, identical ones): the mean alone, rank 0 for any fraction.
    assert rank_for_variance(torch.zeros(3, dtype=torch.float64), 0.9) == 0
    assert rank_for_variance(torch.zeros(1), 1.0) == 0
    with pytest.raises(WeightzooError, match="fraction"):
        rank_for_variance(s, 90)


def test_exact_ranks_of_a_low_rank_population():
    spec = mlp_spec((6, 8, 4))
    params = _layer_rank_population(spec, 30, [3, 5])
    res = subspace_analysis(spec, params)
    # Equal singular values: the 90% rank is ceil(0.9 k) = k for k < 10, as is the 99% rank.
    assert res.ranks == {0.9: [3, 5], 0.99: [3, 5]}
    assert [len(s) for s in res.singular_values] == [29, 29]
    for s, k in zip(res.singular_values, [3, 5]):
        torch.testing.assert_close(s[:k], torch.ones(k, dtype=torch.float64), rtol=1e-9, atol=0)
        assert s[k:].max() < 1e-9
    torch.testing.assert_close(res.explained[0][:3], torch.tensor([1 / 3, 2 / 3, 1.0],
                               dtype=torch.float64), rtol=1e-6, atol=0)


def test_population_in_a_subspace_projects_with_zero_error():
    spec = mlp_spec((6, 8, 4))
    params = _layer_rank_population(spec, 30, [3, 5], seed=1)
    res = subspace_analysis(spec, params, project_variance=0.99)
    assert (res.projection_ranks == torch.tensor([3, 5])).all()
    assert res.projection_error.max() < 1e-9
    # Projecting onto fewer directions than the population spans leaves an error.
    assert subspace_analysis(spec, params, project_variance=0.5).projection_error.mean() > 0.3


def test_two_models_project_onto_each_other_with_rank_0():
    # Each of 2 models is held out against the other alone: a zero-dimensional subspace, its mean
    # the other model. So every rank is 0, the projection is the other model, the error
    # |w - other| / |w - other| is exactly 1 per layer, and the projected accuracy is the other's.
    spec = mlp_spec((5, 7, 3))
    params = random_params(spec, 2, seed=4)
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(40, 5, generator=g), torch.randint(0, 3, (40,), generator=g)
    res = subspace_analysis(spec, params, x, y)
    assert res.projection_ranks.tolist() == [[0, 0], [0, 0]]
    assert torch.equal(res.projection_error, torch.ones(2, 2, dtype=torch.float64))
    assert torch.equal(res.projected_accuracy, res.accuracy.flip(0))
    assert res.accuracy[0] != res.accuracy[1]


def test_identical_other_models_are_a_zero_dimensional_subspace():
    # 3 identical float64 networks A and one other, B, leave-one-out. Held-out B sees A, A, A: no
    # variance (their computed mean is A to a few ulps), rank 0, projected onto A, error exactly
    # 1. Held-out A sees A, A, B: the line through A and B, on which A lies: error 0. The whole
    # selection's spectrum is one singular value per layer, |B - A| sqrt(3) / 2 (centered rows
    # (A - B) / 4 three times and 3 (B - A) / 4), then zeros.
    spec = mlp_spec((5, 7, 3))
    g = torch.Generator().manual_seed(6)  # full float64 mantissas (float32 values would mean exactly)
    pair = {p.name: torch.randn(2, *p.shape, generator=g, dtype=torch.float64) for p in spec.params}
    params = {k: torch.stack([v[0], v[0], v[0], v[1]]) for k, v in pair.items()}
    res = subspace_analysis(spec, params, folds=None)
    b = int((res.fold == 3).nonzero())  # B's fold
    assert res.projection_ranks[b].tolist() == [0, 0]
    assert torch.equal(res.projection_error[3], torch.ones(2, dtype=torch.float64))
    assert (res.projection_ranks[[f for f in range(4) if f != b]] == 1).all()
    assert res.projection_error[:3].abs().max() < 1e-12
    for layer, sv in zip(spec.layers, res.singular_values):
        gap = torch.cat([(pair[k][1] - pair[k][0]).flatten() for k in (layer.weight, layer.bias)]).norm()
        torch.testing.assert_close(sv[0], gap * 3 ** 0.5 / 2, rtol=1e-12, atol=0)
        assert sv[1:].eq(0).all()


def test_identical_models_have_rank_0_and_the_spectrum_marks_none():
    from weightspace.analysis.subspace import _spectrum_figure

    spec = mlp_spec((5, 7, 3))
    one = random_params(spec, 1, seed=2)
    res = subspace_analysis(spec, {k: v.expand(3, *v.shape[1:]).clone() for k, v in one.items()})
    assert res.ranks == {0.9: [0, 0], 0.99: [0, 0]}
    assert res.projection_ranks.eq(0).all() and res.projection_error.eq(0).all()  # 0 / 0 counts as 0
    lines = _spectrum_figure(res).axes[0].get_lines()
    assert len(lines) == 2 and not [line for line in lines if line.get_marker() == "o"]


def test_heldout_projection_accuracy_on_trained_models(tmp_path):
    spec = MLPConfig(hidden=(16,)).network_spec((1, 8, 8), 10)
    x, y, xt, yt = digits()
    params = train(spec, random_params(spec, 10, seed=3), x, y, 100)
    res = subspace_analysis(spec, params, xt, yt, folds=5)
    assert res.accuracy.shape == res.projected_accuracy.shape == (10,)
    assert (res.accuracy > 0.8).all()
    assert sorted(torch.bincount(res.fold).tolist()) == [2, 2, 2, 2, 2]
    assert res.projection_error.shape == (10, 2)
    # 8 training models span at most 7 directions: independent seeds do not share a subspace.
    assert (res.projection_ranks <= 7).all()
    assert (res.projected_accuracy < res.accuracy).any()
    loo = subspace_analysis(spec, params, folds=None)
    assert torch.equal(loo.fold.sort().values, torch.arange(10))
    out = plot_spectrum(res, tmp_path / "figs" / "spectrum.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_input():
    spec = mlp_spec()
    with pytest.raises(WeightzooError, match="at least 2 models"):
        subspace_analysis(spec, random_params(spec, 1))
    with pytest.raises(WeightzooError, match="folds"):
        subspace_analysis(spec, random_params(spec, 3), folds=1)
    with pytest.raises(WeightzooError, match="both x and y"):
        subspace_analysis(spec, random_params(spec, 3), x=torch.zeros(2, 5))


def test_graph_with_batch_norm_layers_and_recomputed_statistics():
    # A VGG (conv-BN-relu-maxpool x 2, linear): its "layers" are the nodes with trained parameters;
    # 4 copies of one network span a zero-dimensional subspace around their mean, so each
    # projects onto itself exactly and, with statistics recomputed from the same data for both,
    # keeps its accuracy.
    from zoo_builders.graph_architectures import VGGConfig

    spec = VGGConfig(channels=(2, 4), hidden=()).network_spec((1, 8, 8), 10)
    one = random_params(spec, 1, seed=3)
    params = {k: v.expand(4, *v.shape[1:]).clone() for k, v in one.items()}
    for p in spec.params:
        if p.role == "running_var":
            params[p.name] = params[p.name].abs() + 0.5
    x, y, _, _ = digits()
    x, y = x[:128].reshape(128, 1, 8, 8), y[:128]
    with pytest.raises(WeightzooError, match="has batch norm: pass bn_x"):
        subspace_analysis(spec, params, x, y)
    res = subspace_analysis(spec, params, x, y, folds=2, bn_x=x)
    assert res.layers == ["features.0: conv2d", "features.1: batchnorm", "features.4: conv2d",
                          "features.5: batchnorm", "classifier.0: linear"]
    assert torch.equal(res.projection_error, torch.zeros_like(res.projection_error))
    from weightspace.analysis import population_loss_accuracy, recompute_batch_norm

    fixed = {**params, **recompute_batch_norm(spec, params, x)}
    torch.testing.assert_close(res.projected_accuracy, population_loss_accuracy(spec, fixed, x, y)[1])


def test_spectrum_plot_gives_every_layer_its_own_colour_and_keeps_the_legend_off_the_data(tmp_path):
    from matplotlib.colors import to_hex

    from weightspace.analysis.subspace import SubspaceResult, _spectrum_figure
    n = 14  # more layers than matplotlib's 10-colour cycle
    sv = [torch.linspace(3, 0.1, 5) for _ in range(n)]
    res = SubspaceResult([f"layer {i}" for i in range(n)], sv, [torch.ones(5)] * n, {0.9: [2] * n}, 0.9,
                         torch.arange(6), torch.ones(1, n, dtype=torch.long), torch.zeros(6, n))
    fig = _spectrum_figure(res)
    ax = fig.axes[0]
    colours = [to_hex(line.get_color()) for line in ax.get_lines() if line.get_label().startswith("layer")]
    assert len(colours) == n and len(set(colours)) == n
    fig.canvas.draw()
    legend = fig.legends[0].get_window_extent()
    assert not legend.overlaps(ax.get_window_extent())
    assert plot_spectrum(res, tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
