"""Probe features: neuron values on learned inputs, equivariant, exact, saved with the model."""

import pytest
import torch
from ws_helpers import cnn_spec, mlp_spec, random_params, siren_spec

from catalog.errors import WeightzooError
from catalog.network import build_module, population_forward
from weightspace import (
    ParamNormalizer,
    TrainedMetanetwork,
    build_metanetwork,
    fit,
    params_to_graph_batch,
    permute_neurons,
    random_permutations,
)
from weightspace.probes import ProbeFeatures

SPECS = {"mlp": mlp_spec(), "siren": siren_spec(), "cnn2d": cnn_spec(2)}


def test_population_forward_reports_every_neuron():
    spec = mlp_spec((5, 7, 6, 3))
    params = random_params(spec, 4)
    x = torch.randn(9, 5)
    acts: list[torch.Tensor] = []
    out = population_forward(spec, params, x, activations=acts)
    assert [tuple(a.shape) for a in acts] == [(4, 9, 7), (4, 9, 6), (4, 9, 3)]
    torch.testing.assert_close(acts[-1], out)
    h1 = torch.relu(x @ params["layers.0.weight"][2].T + params["layers.0.bias"][2])
    torch.testing.assert_close(acts[0][2], h1)
    # asking for activations does not change the output
    torch.testing.assert_close(population_forward(spec, params, x), out, rtol=0, atol=0)


def test_population_forward_reports_channel_means_of_convolutions():
    spec = cnn_spec(2)
    params = random_params(spec, 3)
    x = torch.randn(2, *spec.input_shape)
    acts: list[torch.Tensor] = []
    population_forward(spec, params, x, activations=acts)
    assert [a.shape[-1] for a in acts] == spec.layer_widths[1:]
    net = build_module(spec, {k: v[1] for k, v in params.items()})
    first = net._acts[0](net.layers[0](x))  # the first convolution and its activation, member 1
    torch.testing.assert_close(acts[0][1], first.flatten(2).mean(-1), rtol=1e-5, atol=1e-6)


def test_probe_features_undo_the_normalization():
    spec = mlp_spec()  # (a SIREN amplifies float32 rounding by omega0 = 30)
    params = random_params(spec, 6)
    norm = ParamNormalizer.from_weights(params)
    torch.manual_seed(0)
    probe = ProbeFeatures(spec, 5)
    raw = probe(params)
    probe.attach(norm)
    from_normalized = probe(norm.normalize(params))
    assert [tuple(a.shape) for a in raw] == [(6, w, 5) for w in spec.layer_widths]
    for a, b in zip(raw, from_normalized):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert ProbeFeatures(siren_spec(), 64).inputs.abs().max() <= 1  # inside the coordinate range
    with pytest.raises(WeightzooError, match="n_probes"):
        ProbeFeatures(spec, 0)


@pytest.mark.parametrize("name,arch", [("dws", "mlp"), ("dws", "siren"), ("nfn", "mlp"),
                                       ("nfn", "cnn2d"), ("gmn", "siren"), ("gmn", "cnn2d")])
def test_probe_models_stay_invariant(name, arch):
    torch.manual_seed(0)
    spec = SPECS[arch]
    params = random_params(spec, 5, seed=1)
    model = build_metanetwork(name, spec, 4, probes=3).eval()
    model.attach_normalizer(ParamNormalizer.from_weights(params))
    perms = random_permutations(spec, 5, torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model(params)
        out_perm = model(permute_neurons(spec, params, perms))
        weights_only = build_metanetwork(name, spec, 4).eval()(params)
    torch.testing.assert_close(out_perm, out, rtol=1e-4, atol=1e-5 * out.abs().max().item())
    assert out.shape == weights_only.shape


@pytest.mark.parametrize("name", ["dws", "gmn"])
def test_probe_weight_output_is_equivariant(name):
    torch.manual_seed(0)
    spec = siren_spec()
    model = build_metanetwork(name, spec, 1, probes=3).eval()
    with torch.no_grad():
        model.edit_scale.fill_(1.0)
    params = random_params(spec, 3, seed=1)
    perms = random_permutations(spec, 3, torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = permute_neurons(spec, model.forward_weights(params), perms)
        out_perm = model.forward_weights(permute_neurons(spec, params, perms))
    for k in params:
        torch.testing.assert_close(out_perm[k], expected[k], rtol=1e-4, atol=1e-5)


def test_probes_are_learned():
    torch.manual_seed(0)
    spec = mlp_spec()
    model = build_metanetwork("gmn", spec, 2, hidden=8, probes=4)
    model(random_params(spec, 4)).pow(2).mean().backward()
    assert model.probe.inputs.grad is not None and model.probe.inputs.grad.abs().sum() > 0


def test_probe_gmn_refuses_graph_batches():
    spec = mlp_spec()
    params = random_params(spec, 2)
    model = build_metanetwork("gmn", spec, 2, probes=2)
    with pytest.raises(WeightzooError, match="parameter dicts"):
        model(params_to_graph_batch(spec, params, edge_dim=model.edge_dim))
    with pytest.raises(WeightzooError, match="probes=-1 is not an integer >= 0"):
        build_metanetwork("dws", spec, 2, probes=-1)


@pytest.mark.parametrize("name", ["dws", "gmn"])
def test_probe_model_run_dir_round_trip(tmp_path, name):
    spec = siren_spec()
    params = random_params(spec, 24, seed=3)
    params = {k: v * 3 + 0.5 for k, v in params.items()}  # a normalizer far from the identity
    y = torch.arange(24) % 3
    model, history = fit(name, (params, y), None, spec=spec, task="classification", epochs=2,
                         batch_size=8, progress=False, hparams={"hidden": 8, "probes": 4})
    probes_before = model.net.probe.inputs.detach().clone()
    model.save(tmp_path / "run", history=history)
    loaded = TrainedMetanetwork.load(tmp_path / "run")
    assert loaded.net.probe.normalizer is loaded.normalizer
    torch.testing.assert_close(loaded.net.probe.inputs, probes_before, rtol=0, atol=0)
    torch.testing.assert_close(loaded.predict(params), model.predict(params), rtol=0, atol=0)


def test_probes_that_cannot_fit_in_memory_are_refused_before_they_are_allocated(monkeypatch):
    """The probe inputs are [probes, *input_shape], input_shape from zoo.json: their bytes are
    checked against half the available memory (as the Hessian metrics' are) before torch.randn."""
    import zoo_builders.build as build_mod

    monkeypatch.setattr(build_mod, "available_memory", lambda: 1 << 30)  # 1 GiB: 512 MiB for probes
    real_randn, asked = torch.randn, []

    def randn(*shape, **kwargs):
        asked.append(torch.Size(shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape).numel())
        return real_randn(*shape, **kwargs)

    monkeypatch.setattr(torch, "randn", randn)
    spec = cnn_spec(2)  # [1, 8, 8] inputs
    ProbeFeatures(spec, 4)  # a few KiB
    assert asked == [4 * 64]
    with pytest.raises(WeightzooError, match=r"probes=500000: 500000 probe inputs of shape \[1, 8, 8\] \(architecture "
                                             r"cnn-[0-9a-f]+\) and the values they produce in one network need about "
                                             r".* GiB, more than half the 1.0 GiB of memory available; "
                                             r"use fewer probes"):
        ProbeFeatures(spec, 500_000)
    with pytest.raises(WeightzooError, match="probes=500000"):  # through the metanetwork's hyperparameter
        build_metanetwork("gmn", spec, 1, probes=500_000)
    assert max(asked) == 4 * 64  # the refused probes were never drawn
