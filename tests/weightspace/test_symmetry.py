import pytest
import torch
from ws_helpers import cnn_spec, mlp_spec, random_params, siren_spec

from catalog.errors import WeightzooError
from catalog.network import build_module
from weightspace import (
    RandomNeuronSymmetry,
    flip_signs,
    permute_neurons,
    random_permutations,
    random_signs,
    scale_neurons,
)


def _outputs(spec, params, x):
    outs = []
    for i in range(params[spec.param_names[0]].shape[0]):
        net = build_module(spec, {k: v[i] for k, v in params.items()})
        with torch.no_grad():
            outs.append(net(x))
    return torch.stack(outs)


def _inputs(spec, n=16, seed=0):
    return torch.rand(n, *spec.input_shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("spec", [mlp_spec(), mlp_spec(activation="tanh"), siren_spec(),
                                  cnn_spec(1), cnn_spec(2)],
                         ids=["relu-mlp", "tanh-mlp", "siren", "cnn1d", "cnn2d"])
def test_permutation_preserves_function(spec):
    g = torch.Generator().manual_seed(0)
    params = random_params(spec, 4)
    perms = random_permutations(spec, 4, g)
    new = permute_neurons(spec, params, perms)
    assert any(not torch.equal(new[k], params[k]) for k in params)
    x = _inputs(spec)
    torch.testing.assert_close(_outputs(spec, new, x), _outputs(spec, params, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("spec", [mlp_spec(activation="tanh"), siren_spec(), cnn_spec(2, "tanh")],
                         ids=["tanh-mlp", "siren", "tanh-cnn"])
def test_sign_flips_preserve_odd_activations(spec):
    g = torch.Generator().manual_seed(1)
    params = random_params(spec, 3)
    signs = random_signs(spec, 3, g)
    assert set(signs) == set(range(len(spec.layers) - 1))
    new = flip_signs(spec, params, signs)
    x = _inputs(spec)
    torch.testing.assert_close(_outputs(spec, new, x), _outputs(spec, params, x), rtol=1e-4, atol=1e-5)


def test_sign_flip_refused_for_relu():
    spec = mlp_spec()
    with pytest.raises(WeightzooError, match="not odd"):
        flip_signs(spec, random_params(spec, 1), {0: -torch.ones(7)})
    assert random_signs(spec, 2) == {}


def test_scaling_preserves_relu():
    spec = mlp_spec()
    params = random_params(spec, 2)
    scales = {0: torch.rand(2, 7) + 0.5, 1: torch.rand(2, 6) + 0.5}
    new = scale_neurons(spec, params, scales)
    x = _inputs(spec)
    torch.testing.assert_close(_outputs(spec, new, x), _outputs(spec, params, x), rtol=1e-4, atol=1e-5)


def test_output_neurons_are_not_permutable():
    spec = mlp_spec()
    with pytest.raises(WeightzooError, match="hidden"):
        permute_neurons(spec, random_params(spec, 1), {2: torch.arange(3)})


def test_augmentation_copies_and_preserves():
    spec = siren_spec()
    params = random_params(spec, 3)
    before = {k: v.clone() for k, v in params.items()}
    aug = RandomNeuronSymmetry(spec, seed=0)
    new = aug(params)
    assert all(torch.equal(params[k], before[k]) for k in params)  # input untouched
    assert any(not torch.equal(new[k], params[k]) for k in params)
    x = _inputs(spec)
    torch.testing.assert_close(_outputs(spec, new, x), _outputs(spec, params, x), rtol=1e-4, atol=1e-5)
    # seeded: the same transform again
    torch.testing.assert_close(RandomNeuronSymmetry(spec, seed=0)(params), new)
