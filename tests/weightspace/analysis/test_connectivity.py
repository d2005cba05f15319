import math

import pytest
import torch
from analysis_helpers import MLPConfig, digits, mlp_spec, random_params, train

from catalog.errors import WeightzooError
from catalog.network import LayerSpec, NetworkSpec
from weightspace.analysis import bezier_barrier, linear_barrier, mode_connectivity


def _softplus(v: float) -> float:
    return math.log1p(math.exp(v))


@pytest.fixture(scope="module")
def seed_pair():
    """Two pairs of digits MLPs trained from different seeds (a clear linear barrier)."""
    spec = MLPConfig(hidden=(16,)).network_spec((1, 8, 8), 10)
    x, y, _, _ = digits()
    p = train(spec, random_params(spec, 4, seed=1), x, y, 200)
    return spec, {k: v[:2] for k, v in p.items()}, {k: v[2:] for k, v in p.items()}


def test_line_from_a_network_to_itself_has_no_barrier(seed_pair):
    spec, a, _ = seed_pair
    _, _, x, y = digits()
    res = linear_barrier(spec, a, a, x, y, points=7)
    assert res.loss.shape == res.accuracy.shape == (2, 7)
    assert res.mc.abs().max() < 1e-6
    assert res.mc_accuracy.abs().max() < 1e-6
    torch.testing.assert_close(res.t, torch.linspace(0, 1, 7))


def test_line_hand_checked_one_dimensional_case():
    # logit_0 = v * w * x, logit_1 = 0, x = 1, label 0: loss = softplus(-v w).
    # a = (w, v) = (2, 2), b = (-2, -2): along the line w = v = 2 - 4t, so v w = (2 - 4t)^2;
    # at t = 0, 1/3, 2/3, 1: v w = 4, 4/9, 4/9, 4 and the loss is softplus(-4), softplus(-4/9), ...
    spec = NetworkSpec("mlp", (1,), (LayerSpec("linear", 1, 1, "w"), LayerSpec("linear", 1, 2, "v")))
    a = {"w": torch.tensor([[[2.0]]]), "v": torch.tensor([[[2.0], [0.0]]])}
    b = {"w": torch.tensor([[[-2.0]]]), "v": torch.tensor([[[-2.0], [0.0]]])}
    res = linear_barrier(spec, a, b, torch.ones(1, 1), torch.zeros(1, dtype=torch.long), points=4)
    want = [_softplus(-4), _softplus(-4 / 9), _softplus(-4 / 9), _softplus(-4)]
    torch.testing.assert_close(res.loss[0], torch.tensor(want), rtol=1e-6, atol=1e-6)
    # mc = (L0 + L1) / 2 - L_k: the path is worse than its ends, a barrier, so negative.
    assert float(res.mc[0]) == pytest.approx(_softplus(-4) - _softplus(-4 / 9), abs=1e-6)
    assert float(res.mc[0]) < 0
    assert res.accuracy.eq(1).all() and float(res.mc_accuracy[0]) == 0


def test_mode_connectivity_sign_and_furthest_point():
    loss = torch.tensor([[1.0, 3.0, 0.5, 1.0], [1.0, 0.2, 1.2, 1.0], [0.0, 0.1, 0.1, 4.0]])
    # row 0: furthest from the ends' mean 1.0 is 3.0: mc = 1 - 3 = -2 (barrier);
    # row 1: furthest is 0.2: mc = 0.8 (the path is lower);
    # row 2: ends' mean 2.0; furthest are the ends themselves (|0 - 2| = |4 - 2|): mc = 2 - 0.
    torch.testing.assert_close(mode_connectivity(loss), torch.tensor([-2.0, 0.8, 2.0]))
    acc = torch.tensor([[0.9, 0.5, 0.9]])
    torch.testing.assert_close(mode_connectivity(acc, higher_is_better=True), torch.tensor([-0.4]))


def test_untrained_bezier_is_the_line(seed_pair):
    spec, a, b = seed_pair
    x, y, xt, yt = digits()
    line = linear_barrier(spec, a, b, xt, yt, points=5)
    curve = bezier_barrier(spec, a, b, x, y, xt, yt, epochs=0, points=5)
    torch.testing.assert_close(curve.loss, line.loss, rtol=1e-4, atol=1e-5)
    assert curve.bends["layers.0.weight"].shape == (2, 1, 16, 64)


def test_trained_bezier_removes_most_of_the_barrier(seed_pair):
    spec, a, b = seed_pair
    x, y, xt, yt = digits()
    line = linear_barrier(spec, a, b, xt, yt, points=5)
    curve = bezier_barrier(spec, a, b, x, y, xt, yt, epochs=3, n_bends=4)
    assert (line.mc < -0.2).all()
    assert (curve.mc > 0.25 * line.mc).all()
    # Each pair trains independently of the others (its own data order and t).
    alone = bezier_barrier(spec, {k: v[1:] for k, v in a.items()}, {k: v[1:] for k, v in b.items()},
                           x, y, xt, yt, epochs=3, n_bends=4, seed=[1])
    torch.testing.assert_close(alone.loss[0], curve.loss[1], rtol=1e-4, atol=1e-5)


def test_bad_input(seed_pair):
    spec, a, b = seed_pair
    x, y, xt, yt = digits()
    with pytest.raises(WeightzooError, match="params_a holds 2 networks but params_b holds 1"):
        linear_barrier(spec, a, {k: v[:1] for k, v in b.items()}, xt, yt)
    with pytest.raises(WeightzooError, match="points"):
        linear_barrier(spec, a, b, xt, yt, points=1)
    with pytest.raises(WeightzooError, match="n_bends"):
        bezier_barrier(spec, a, b, x, y, xt, yt, n_bends=2)


# ------------------------------------------------------------------------------ batch norm
def _bn_net() -> NetworkSpec:
    from catalog import nodes as nd

    return NetworkSpec("bn", (2,), nodes=(nd.BatchNorm("bn", ("input",), 2), nd.Linear("fc", ("bn",), 2, 3)))


def test_recompute_batch_norm_by_hand():
    # 5 examples in batches of 2, 2, 1: the mean is the mean of all 5 (batch means weighted by
    # size); the variance is the size-weighted mean of each batch's unbiased variance, and a
    # batch of one has variance 0 (as the builder treats it). Feature 0: batches (1, 3), (5, 9),
    # (2): means 2, 7, 2 -> (2*2 + 2*7 + 2) / 5 = 4; unbiased vars 2, 8, 0 -> (4 + 16) / 5 = 4.
    # Feature 1 is feature 0 times -2: mean -8, variance 16.
    from weightspace.analysis import recompute_batch_norm

    spec = _bn_net()
    col = torch.tensor([1.0, 3.0, 5.0, 9.0, 2.0])
    x = torch.stack([col, -2 * col], 1)
    params = {"bn.weight": torch.ones(2, 2), "bn.bias": torch.zeros(2, 2), "bn.running_mean": torch.full((2, 2), 7.0),
              "bn.running_var": torch.full((2, 2), 7.0), "fc.weight": torch.ones(2, 3, 2), "fc.bias": torch.zeros(2, 3)}
    stats = recompute_batch_norm(spec, params, x, batch_size=2)
    torch.testing.assert_close(stats["bn.running_mean"], torch.tensor([[4.0, -8.0]] * 2))
    torch.testing.assert_close(stats["bn.running_var"], torch.tensor([[4.0, 16.0]] * 2))
    assert recompute_batch_norm(mlp_spec(), random_params(mlp_spec(), 2), torch.zeros(3, 4)) == {}


def test_batch_norm_line_recomputes_statistics_at_every_point():
    spec = _bn_net()
    g = torch.Generator().manual_seed(0)
    a = {"bn.weight": torch.rand(1, 2, generator=g) + 0.5, "bn.bias": torch.randn(1, 2, generator=g),
         "bn.running_mean": torch.zeros(1, 2), "bn.running_var": torch.ones(1, 2),
         "fc.weight": torch.randn(1, 3, 2, generator=g), "fc.bias": torch.randn(1, 3, generator=g)}
    x = torch.randn(40, 2, generator=g) * 3 + 5
    y = torch.randint(0, 3, (40,), generator=g)
    with pytest.raises(WeightzooError, match="has batch norm: pass bn_x"):
        linear_barrier(spec, a, a, x, y)
    # a network to itself: the same statistics at every point, so no barrier; and the endpoints
    # are evaluated with statistics from bn_x, not the stored (wrong) ones
    same = linear_barrier(spec, a, a, x, y, points=5, bn_x=x)
    assert torch.equal(same.loss[0], same.loss[0, :1].expand(5)) and float(same.mc[0]) == 0.0
    from weightspace.analysis import population_loss_accuracy, recompute_batch_norm

    fixed = {**a, **recompute_batch_norm(spec, a, x)}
    assert float(same.loss[0, 0]) == pytest.approx(float(population_loss_accuracy(spec, fixed, x, y)[0][0]), rel=1e-6)
    assert float(same.loss[0, 0]) != pytest.approx(float(population_loss_accuracy(spec, a, x, y)[0][0]), rel=1e-3)


def test_evaluation_passes_shrink_with_the_population_and_values_do_not_change(monkeypatch):
    # 300 networks (e.g. the points of 27 paths): passes of max(16, 4096 // 300) = 16 examples,
    # not 1,024, so the activations held stay bounded; 3 networks keep 1,024-example passes. Each
    # network's loss and accuracy equal its own evaluation alone.
    import weightspace.analysis.evaluation as ev
    from weightspace.analysis import population_loss_accuracy

    spec = mlp_spec((64, 16, 10), "relu")
    params = random_params(spec, 300, seed=3)
    _, _, x, y = digits()
    x = x.reshape(x.shape[0], -1)  # 360 test digits
    sizes: list[int] = []
    forward = ev.population_forward
    monkeypatch.setattr(ev, "population_forward", lambda s, p, xb: sizes.append(xb.shape[0]) or forward(s, p, xb))
    loss, acc = population_loss_accuracy(spec, params, x, y)
    assert max(sizes) == 16 and len(sizes) == -(-x.shape[0] // 16)
    sizes.clear()
    few = {k: v[:3] for k, v in params.items()}
    few_loss, few_acc = population_loss_accuracy(spec, few, x, y)
    assert sizes == [x.shape[0]]  # one pass: fewer than 1,024 examples
    torch.testing.assert_close(few_loss, loss[:3])
    assert torch.equal(few_acc, acc[:3])
    for i in (0, 150, 299):
        one_loss, one_acc = population_loss_accuracy(spec, {k: v[i:i + 1] for k, v in params.items()}, x, y)
        torch.testing.assert_close(one_loss[0], loss[i])
        assert one_acc[0] == acc[i]


def test_a_network_with_non_finite_outputs_has_nan_accuracy():
    # A NaN network's logits argmax to class 0: its "accuracy" would be the share of class 0. It is
    # NaN, like its loss; the finite networks beside it keep their exact values.
    from weightspace.analysis import population_loss_accuracy

    spec = mlp_spec((64, 16, 10), "relu")
    params = random_params(spec, 3, seed=3)
    _, _, x, y = digits()
    x = x.reshape(x.shape[0], -1)
    loss, acc = population_loss_accuracy(spec, params, x, y)
    broken = {k: v.clone() for k, v in params.items()}
    broken["layers.0.weight"][1] = float("nan")
    broken_loss, broken_acc = population_loss_accuracy(spec, broken, x, y)
    assert math.isnan(float(broken_loss[1])) and math.isnan(float(broken_acc[1]))
    assert torch.equal(broken_acc[[0, 2]], acc[[0, 2]]) and torch.equal(broken_loss[[0, 2]], loss[[0, 2]])
