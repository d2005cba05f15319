import pytest
import torch
from ws_helpers import cnn_spec, mlp_spec, random_params

from catalog.errors import WeightzooError
from weightspace import flat_to_params, layers_to_params, params_to_flat, params_to_layers


@pytest.mark.parametrize(
    "spec", [mlp_spec(), cnn_spec(1), cnn_spec(2)], ids=["mlp", "cnn1d", "cnn2d"]
)
def test_flat_round_trip(spec):
    params = random_params(spec, 3)
    flat = params_to_flat(spec, params)
    assert flat.shape == (3, spec.n_params)
    back = flat_to_params(spec, flat)
    assert list(back) == spec.param_names
    for name in params:
        assert torch.equal(back[name], params[name])


def test_layers_round_trip_and_shapes():
    spec = cnn_spec(2)
    params = random_params(spec, 2)
    lt = params_to_layers(spec, params)
    assert [tuple(w.shape) for w in lt.weights] == [(2, 4, 1, 3, 3), (2, 5, 4, 3, 3), (2, 3, 5)]
    assert [tuple(b.shape) for b in lt.biases] == [(2, 4), (2, 5), (2, 3)]
    back = layers_to_params(spec, lt)
    assert all(torch.equal(back[k], params[k]) for k in params)


def test_bad_shapes_are_user_errors():
    spec = mlp_spec()
    params = random_params(spec, 2)
    params["layers.0.weight"] = params["layers.0.weight"][0]  # forgot the batch dim
    with pytest.raises(WeightzooError, match="batch of networks"):
        params_to_flat(spec, params)
    with pytest.raises(WeightzooError, match="parameters"):
        flat_to_params(spec, torch.zeros(2, 3))
