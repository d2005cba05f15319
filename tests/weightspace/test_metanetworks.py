"""Every metanetwork: shapes, the registry, and seeded permutation invariance/equivariance."""

import pytest
import torch
from ws_helpers import cnn_spec, mlp_spec, random_params, siren_spec

from catalog.errors import WeightzooError
from weightspace import (
    GMN,
    build_metanetwork,
    flip_signs,
    get_metanetwork,
    metanetwork_names,
    params_to_graph_batch,
    permute_neurons,
    random_permutations,
    random_signs,
)

SPECS = {"mlp": mlp_spec(), "siren": siren_spec(), "cnn1d": cnn_spec(1), "cnn2d": cnn_spec(2)}


def _supports(name: str, arch: str) -> bool:
    """Whether the registered model ``name`` takes networks of ``arch`` (it refuses the others)."""
    try:
        build_metanetwork(name, SPECS[arch], 1)
    except WeightzooError:
        return False
    return True


#: Every registered model on every architecture it takes, from the registry (no name lists):
#: the invariant ones for the invariance test, those with a weight-space output for equivariance.
SUPPORTED = [(n, a) for n in metanetwork_names() for a in SPECS if _supports(n, a)]
CASES = [(n, a) for n, a in SUPPORTED if get_metanetwork(n).invariant]
EQUIVARIANT = [(n, a) for n, a in SUPPORTED if get_metanetwork(n).weight_output]


def _permuted(spec, params, seed):
    return permute_neurons(spec, params, random_permutations(spec, params[spec.param_names[0]].shape[0],
                                                             torch.Generator().manual_seed(seed)))


def test_every_model_is_tested_on_some_architecture():
    assert {n for n, _ in SUPPORTED} == set(metanetwork_names())
    assert len(CASES) >= 8 and len(EQUIVARIANT) >= 4


def test_registry_lists_names():
    assert metanetwork_names() == ["dws", "gmn", "mlp", "nfn", "statnn", "statnn-kinds"]
    with pytest.raises(WeightzooError, match="valid names: dws, gmn, mlp, nfn, statnn, statnn-kinds"):
        build_metanetwork("transformer", mlp_spec(), 1)
    with pytest.raises(WeightzooError, match="valid: hidden"):
        build_metanetwork("mlp", mlp_spec(), 1, widht=3)


@pytest.mark.parametrize("name,arch", CASES)
def test_invariant_to_hidden_permutations(name, arch):
    torch.manual_seed(0)
    spec = SPECS[arch]
    model = build_metanetwork(name, spec, 4).eval()
    params = random_params(spec, 5, seed=1)
    with torch.no_grad():
        out = model(params)
        out_perm = model(_permuted(spec, params, seed=2))
    assert out.shape == (5, 4)
    torch.testing.assert_close(out_perm, out, rtol=1e-4, atol=1e-5 * out.abs().max().item())


def test_bad_hparams_name_the_hparams_argument():
    from weightspace.models.registry import check_hparams

    with pytest.raises(WeightzooError, match=r"hyperparameter hidden=1\.5 is not .*; give e\.g\. hidden=\d+ "
                                             r"\(hparams=, --hparam\)"):
        check_hparams("statnn", {"hidden": 1.5})


def test_mlp_is_not_invariant():
    torch.manual_seed(0)
    spec = mlp_spec()
    model = build_metanetwork("mlp", spec, 4).eval()
    params = random_params(spec, 5, seed=1)
    with torch.no_grad():
        out, out_perm = model(params), model(_permuted(spec, params, seed=2))
    assert (out - out_perm).abs().max() > 1e-2 * out.abs().max()


@pytest.mark.parametrize("name,arch", EQUIVARIANT)
def test_weight_output_is_equivariant(name, arch):
    torch.manual_seed(0)
    spec = SPECS[arch]
    model = build_metanetwork(name, spec, 1).eval()
    with torch.no_grad():
        model.edit_scale.fill_(1.0)  # starts at 0 (the identity map); make the head count
    params = random_params(spec, 3, seed=1)
    perms = random_permutations(spec, 3, torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model.forward_weights(params)
        out_perm = model.forward_weights(permute_neurons(spec, params, perms))
    expected = permute_neurons(spec, out, perms)
    assert out.keys() == params.keys()
    for k in params:
        assert out[k].shape == params[k].shape
        assert not torch.allclose(out[k], params[k])
        torch.testing.assert_close(out_perm[k], expected[k], rtol=1e-4, atol=1e-5)


def test_weight_output_starts_as_identity():
    spec = siren_spec()
    params = random_params(spec, 2)
    for name in ("dws", "gmn"):
        out = build_metanetwork(name, spec, 1).forward_weights(params)
        assert all(torch.equal(out[k], params[k]) for k in params)


def test_gmn_runs_on_sign_flipped_networks():
    # sign flips are a symmetry of the *function*, not of these layers: just check they run
    spec = siren_spec()
    params = random_params(spec, 2)
    flipped = flip_signs(spec, params, random_signs(spec, 2, torch.Generator().manual_seed(0)))
    assert build_metanetwork("gmn", spec, 2)(flipped).shape == (2, 2)


def test_dws_refuses_cnns():
    with pytest.raises(WeightzooError, match="nfn"):
        build_metanetwork("dws", cnn_spec(2), 1)


def test_gmn_heterogeneous_batch_matches_single():
    torch.manual_seed(0)
    wide = mlp_spec((5, 11, 9, 8, 3))
    specs = [mlp_spec(), cnn_spec(2), siren_spec(), wide]
    model = GMN(specs, 2).eval()
    groups = [(s, random_params(s, 2, seed=i)) for i, s in enumerate(specs)]
    with torch.no_grad():
        out = model(params_to_graph_batch(groups, edge_dim=model.edge_dim))
        alone = torch.cat([model(params_to_graph_batch([g], edge_dim=model.edge_dim)) for g in groups])
        # a dict batch of the first spec goes through the same graph path
        first = model(groups[0][1])
    assert out.shape == (8, 2)
    torch.testing.assert_close(out, alone, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(first, out[:2], rtol=1e-4, atol=1e-6)
    with pytest.raises(WeightzooError, match="built for"):
        GMN(mlp_spec(), 1)(params_to_graph_batch(wide, random_params(wide, 1)))


@pytest.mark.parametrize("name", metanetwork_names())
def test_trains_one_step(name):
    torch.manual_seed(0)
    spec = mlp_spec()
    model = build_metanetwork(name, spec, 1)
    params = random_params(spec, 8)
    loss = model(params).pow(2).mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert model.config()["model"] == name
