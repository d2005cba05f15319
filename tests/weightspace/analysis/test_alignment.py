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
