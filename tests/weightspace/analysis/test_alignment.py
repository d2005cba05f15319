import pytest
import torch
from analysis_helpers import MLPConfig, cnn_spec, digits, mlp_spec, random_params, train

from catalog.errors import WeightzooError
from weightspace.analysis import align_to, avg_acc_delta, linear_barrier, weight_matching
from weightspace.symmetry import permute_neurons, random_permutations


@pytest.mark.parametrize("spec", [mlp_spec((5, 7, 6, 3)), mlp_spec((4, 16, 16, 16, 2), "tanh"),
                                  cnn_spec()], ids=["mlp", "deep-tanh-mlp", "cnn"])
def test_matching_recovers_a_hidden_neuron_permutation_exactly(spec):
    params = random_params(spec, 3, seed=4)
    # permute_neurons: new neuron k = old neuron perm[k]; the inverse permutation undoes it.
    perms = random_permutations(spec, 3, torch.Generator().manual_seed(5))
    shuffled = permute_neurons(spec, params, perms)
    found = weight_matching(spec, params, shuffled)
    for li, perm in perms.items():
        assert torch.equal(found[li], perm.argsort(1))
    aligned = align_to(spec, params, shuffled)
    for k in params:
        assert torch.equal(aligned[k], params[k])


@pytest.fixture(scope="module")
def seed_pairs_trained():
    spec = MLPConfig(hidden=(32,)).network_spec((1, 8, 8), 10)
    x, y, _, _ = digits()
    p = train(spec, random_params(spec, 4, seed=2), x, y, 300)
    return spec, {k: v[:2] for k, v in p.items()}, {k: v[2:] for k, v in p.items()}


def test_alignment_keeps_function_and_lowers_the_barrier(seed_pairs_trained):
    spec, a, b = seed_pairs_trained
    _, _, x, y = digits()
    aligned = align_to(spec, a, b)
    plain = linear_barrier(spec, a, b, x, y, points=5)
    rebased = linear_barrier(spec, a, aligned, x, y, points=5)
    torch.testing.assert_close(rebased.loss[:, -1], plain.loss[:, -1])  # same function as b
    assert (rebased.mc > plain.mc).all()


def test_avg_acc_delta(seed_pairs_trained):
    spec, a, b = seed_pairs_trained
    _, _, x, y = digits()
    assert avg_acc_delta(spec, a, a, x, y).abs().max() < 1e-6
    plain = avg_acc_delta(spec, a, b, x, y, align=False)
    rebased = avg_acc_delta(spec, a, b, x, y)
    assert plain.shape == rebased.shape == (2,)
    assert (plain < -0.1).all()
    assert (rebased > plain).all()


def test_bad_input():
    spec = mlp_spec()
    with pytest.raises(WeightzooError, match="max_iter"):
        weight_matching(spec, random_params(spec, 1), random_params(spec, 1), max_iter=0)
    with pytest.raises(WeightzooError, match="lacks"):
        weight_matching(spec, random_params(spec, 1), {})


@pytest.mark.parametrize("name", ["resnet-bn", "resnet-1d", "vgg", "modelzoo-cnn", "vit", "seq"])
def test_graph_matching_recovers_a_hidden_group_permutation_exactly(name):
    # Every neuron group (residual streams as one group, batch-norm statistics moving along) and
    # every attention node's heads and head dims permuted at random.
    from zoo_helpers import graph_specs

    from catalog.network import population_forward
    from weightspace.graph_symmetry import graph_symmetries, permute_graph, random_graph_permutation

    spec = graph_specs()[name]
    a = random_params(spec, 3, seed=4)
    for p in spec.params:  # valid running variances
        if p.role == "running_var":
            a[p.name] = a[p.name].abs() + 0.5
    sym = graph_symmetries(spec)
    hidden = random_graph_permutation(sym, 3, torch.Generator().manual_seed(2))
    assert bool(hidden.heads) == (name in ("vit", "seq"))
    b = permute_graph(sym, a, hidden)
    assert any(not torch.equal(a[k], b[k]) for k in a)
    back = align_to(spec, a, b, seed=[0, 1, 2])
    assert all(torch.equal(back[k], a[k]) for k in a)
    x = torch.rand(4, *spec.input_shape)
    torch.testing.assert_close(population_forward(spec, b, x), population_forward(spec, a, x), rtol=1e-4, atol=1e-5)


def test_graph_average_with_batch_norm_recomputes_statistics():
    from zoo_helpers import graph_specs

    spec = graph_specs()["resnet-bn"]
    a = random_params(spec, 1, seed=5)
    for p in spec.params:
        if p.role == "running_var":
            a[p.name] = a[p.name].abs() + 0.5
    x, y, _, _ = digits()
    x = x[:200].reshape(200, 1, 8, 8)
    with pytest.raises(WeightzooError, match="has batch norm: pass bn_x"):
        avg_acc_delta(spec, a, a, x, y[:200])
    # a network averaged with itself (aligned to itself: the identity) is itself: delta 0
    assert float(avg_acc_delta(spec, a, a, x, y[:200], bn_x=x)[0]) == 0.0
