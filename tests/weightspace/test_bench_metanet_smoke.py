"""The dense GMN of benchmarks/bench_metanet.py computes what the sparse GMN computes.

The benchmark's throughput comparison is only meaningful if both variants are the same function
with the same parameters; this checks outputs and gradients on an MLP and a CNN weight space, in
seconds (the full benchmark itself takes ~28 minutes, its --quick mode under one).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from weightspace.models.registry import build_metanetwork
from weightspace.models.statnn import TENSOR_KINDS, KindStatNN, tensor_kind
from zoo_builders.architectures import CNNConfig, MLPConfig

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_metanet.py"


@pytest.fixture(scope="module")
def bench():
    # The script imports its sibling bench_common, as `python benchmarks/bench_metanet.py` would.
    if str(SCRIPT.parent) not in sys.path:
        sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("bench_metanet", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("net", [
    MLPConfig(hidden=(6, 5), activation="relu").network_spec((4,), 3),
    CNNConfig(channels=(3, 4, 4), kernel_size=3).network_spec((1, 8, 8), 10),
], ids=["mlp", "cnn"])
def test_dense_gmn_matches_sparse(bench, net):
    g = torch.Generator().manual_seed(0)
    params = {p.name: torch.randn((5, *p.shape), generator=g) for p in net.params}
    torch.manual_seed(0)
    sparse = build_metanetwork("gmn", net, 4, hidden=8, n_layers=2, head_hidden=16)
    dense = bench.DenseGMN(sparse)  # shares the parameters
    y = torch.tensor([0, 1, 2, 3, 0])
    out_s = sparse(params)
    F.cross_entropy(out_s, y).backward()
    grads = {k: p.grad.clone() for k, p in sparse.named_parameters() if p.grad is not None}
    sparse.zero_grad(set_to_none=True)
    out_d = dense(params)
    F.cross_entropy(out_d, y).backward()
    torch.testing.assert_close(out_d, out_s, atol=1e-5, rtol=1e-4)
    for k, p in sparse.named_parameters():
        if k in grads:
            torch.testing.assert_close(p.grad, grads[k], atol=1e-5, rtol=1e-4)


def test_table_and_targets(bench):
    inr = {"models": {m: {"accuracy": a, "accuracy_stderr": 0.01}
                      for m, a in zip(bench.INR_MODELS, (0.2, 0.3, 0.6, 0.5, 0.7))},
           "weights_only": {"dws": {"accuracy": 0.31, "accuracy_stderr": 0.01}}}
    rows = [key for key, _, _ in bench.cnn_rows(peers=True)]
    cnns = {z: {"seeds": [0, 1, 2], "models": {k: {"kendall_tau": 0.8, "kendall_tau_std": 0.01}
                                               for k in rows}} for z in bench.CNN_ZOOS}
    for z, t in zip(bench.CNN_ZOOS, (0.85, 0.91)):
        cnns[z]["models"]["gmn"]["kendall_tau"] = t
    md = bench.table(inr, cnns)
    lines = md.splitlines()
    assert len(lines) == 2 + len(bench.INR_MODELS) + len(bench.CNN_PUBLISHED) + len(bench.PEER_MODELS)
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert "| `dws` | 60.0% ± 1.0 | 31.0% ± 1.0 | — | — |" in md
    assert "| `statnn` | — | 30.0% ± 1.0 | 0.800 ± 0.010 | 0.800 ± 0.010 |" in md
    assert "| NFN-NP (PyPI `nfn`) | — | — | 0.800 ± 0.010 | 0.800 ± 0.010 | — / — |" in md
    assert "| `statnn`, published config | — | — |" in md
    t = bench.targets(inr, cnns)
    assert t["dws_ge_mlp_plus_30_points"]["met"] and t["gmn_ge_dws"]["met"]
    assert t["dws_weights_only_ge_statnn"]["met"]
    assert t["gmn_tau_ge_every_other_row_digits"]["met"]
    assert t["gmn_tau_ge_every_other_row_mnist5k"]["met"]
    assert t["moonshot_gmn_tau_ge_0.90_mnist5k"]["met"]


def test_cnn_rows_use_the_published_presets(bench):
    rows = {key: (model, hp) for key, model, hp in bench.cnn_rows(peers=False)}
    assert rows["statnn (published)"] == ("statnn", {"hidden": 1000, "depth": 2, "dropout": 0.0,
                                                     "quantiles": [0.0, 0.25, 0.5, 0.75, 1.0]})
    assert rows["nfn (published)"][1]["channels"] == [16, 16, 5]
    assert not set(bench.PEER_MODELS) & set(rows)


@pytest.mark.parametrize("cls", ["PeerNFNNP", "PeerStatNN"])
def test_peer_adapter_reads_our_weights(bench, cls):
    pytest.importorskip("nfn", reason="the peer rows need the PyPI nfn package")
    from weightspace import permute_neurons, random_permutations

    net = CNNConfig(channels=(3, 4, 4), kernel_size=3).network_spec((1, 8, 8), 10)
    g = torch.Generator().manual_seed(0)
    params = {p.name: torch.randn((5, *p.shape), generator=g) for p in net.params}
    torch.manual_seed(0)
    model = getattr(bench, cls)(net, 1).eval()
    wsfeat = model.to_wsfeat(params)
    assert wsfeat.weights[0].shape == (5, 1, 3, 1, 3, 3) and wsfeat.biases[-1].shape == (5, 1, 10)
    assert wsfeat.weights[-1].shape == (5, 1, 10, 4)
    permuted = permute_neurons(net, params, random_permutations(net, 5, torch.Generator().manual_seed(1)))
    with torch.no_grad():
        out, out_perm = model(params), model(permuted)
    assert out.shape == (5, 1)
    torch.testing.assert_close(out_perm, out, rtol=1e-4, atol=1e-5)


# ================================================================================ the heterogeneous zoo
def test_tensor_kinds_of_a_resnet_and_a_cnn(bench):
    from zoo_builders.graph_architectures import ResNetConfig

    res = ResNetConfig(depth=8, width_multiplier=0.25).network_spec((1, 8, 8), 10)
    kinds = {p.name: tensor_kind(res, i) for i, p in enumerate(res.params)}
    assert kinds["conv1.weight"] == "input.weight" and kinds["fc.weight"] == "output.weight"
    assert kinds["fc.bias"] == "output.bias" and kinds["bn1.weight"] == "norm.weight"
    assert kinds["layer2.0.shortcut.0.weight"] == "conv.weight"
    assert kinds["layer1.0.bn2.running_var"] == "norm.running_var"
    cnn = CNNConfig(channels=(3, 4, 4), kernel_size=3).network_spec((1, 8, 8), 10)
    assert [tensor_kind(cnn, i) for i in range(len(cnn.params))] == [
        "input.weight", "input.bias", "conv.weight", "conv.bias", "conv.weight", "conv.bias",
        "output.weight", "output.bias"]


def test_kind_statnn_reads_any_architecture_and_ignores_neuron_order(bench):
    from weightspace import permute_neurons, random_permutations
    from zoo_builders.graph_architectures import ResNetConfig

    cnn = CNNConfig(channels=(3, 4, 4), kernel_size=3).network_spec((1, 8, 8), 10)
    res = ResNetConfig(depth=8, width_multiplier=0.25, batchnorm=False).network_spec((1, 8, 8), 10)
    torch.manual_seed(0)
    model = KindStatNN([cnn, res], 1, hidden=8).eval()
    g = torch.Generator().manual_seed(0)
    p_cnn = {p.name: torch.randn((5, *p.shape), generator=g) for p in cnn.params}
    p_res = {p.name: torch.randn((5, *p.shape), generator=g) for p in res.params}
    f_cnn, f_res = model.features(p_cnn, cnn), model.features(p_res, res)
    assert f_cnn.shape == f_res.shape == (5, len(TENSOR_KINDS) * 8)
    # kinds a network lacks are zeros: the cnn has no norms, the resnet (no BN) none either
    norm = TENSOR_KINDS.index("norm.weight") * 8
    assert not f_cnn[:, norm:norm + 8].any() and not f_res[:, norm:norm + 8].any()
    # log(1 + count) of the input weights: 3 * 1 * 3 * 3 = 27 entries
    assert torch.allclose(f_cnn[:, 7], torch.full((5,), torch.log1p(torch.tensor(27.0)).item()))
    with torch.no_grad():
        out = model.forward_arch(p_res, res)
        permuted = permute_neurons(cnn, p_cnn, random_permutations(cnn, 5, torch.Generator().manual_seed(1)))
        torch.testing.assert_close(model.forward_arch(permuted, cnn), model.forward_arch(p_cnn, cnn))
    assert out.shape == (5, 1)


def test_wildpark_table_and_target(bench):
    wp = {"zoo": "wildpark-digits", "families": ["cnn", "resnet"], "seeds": [0, 1, 2],
          "published_cnn_wild_park": bench.WILDPARK_PUBLISHED,
          "models": {"statnn": {"model": "statnn", "refused": "reads one layout"},
                     "statnn-kinds": {"kendall_tau": 0.70, "kendall_tau_std": 0.01, "r2": 0.5, "train_seconds": 10,
                                      "kendall_tau_per_family": {"cnn": 0.71, "resnet": 0.69}},
                     "gmn": {"kendall_tau": 0.75, "kendall_tau_std": 0.02, "r2": 0.6, "train_seconds": 100,
                             "kendall_tau_per_family": {"cnn": 0.76, "resnet": 0.74}}}}
    md = bench.wildpark_table(wp)
    lines = md.splitlines()
    assert len(lines) == 2 + 3 + 2 and all(line.count("|") == lines[0].count("|") for line in lines)
    assert "| `gmn` | 0.750 ± 0.020 | 0.760 | 0.740 | 0.600 | 100 |" in md
    assert "| NG-T (published, CNN Wild Park) | 0.817 |" in md
    # statnn refused the zoo: gmn is compared with its architecture-agnostic form
    t = bench.wildpark_target(wp)
    assert t == {"gmn": 0.75, "statnn-kinds": 0.70, "met": True}
    # a later run of one model (same zoo, split, seeds, budget) joins the others; another setting replaces them
    later = {**{k: v for k, v in wp.items() if k != "models"}, "rows": 10, "split": {"test": 2}, "budget": {"e": 1},
             "models": {"gmn-probes": {"kendall_tau": 0.78, "kendall_tau_std": 0.01, "r2": 0.7, "train_seconds": 9,
                                       "kendall_tau_per_family": {"cnn": 0.79, "resnet": 0.77}}}}
    wp |= {"rows": 10, "split": {"test": 2}, "budget": {"e": 1}}
    merged, joined = bench.merge_wildpark_models(wp, later)
    assert joined and list(merged["models"]) == ["statnn", "statnn-kinds", "gmn", "gmn-probes"]
    assert "| `gmn-probes` | 0.780 ± 0.010 | 0.790 | 0.770 | 0.700 | 9 |" in bench.wildpark_table(merged)
    assert bench.wildpark_target(merged) == {"gmn": 0.75, "statnn-kinds": 0.70, "met": True,
                                             "gmn-probes": 0.78, "met_with_probes": True}
    other, joined = bench.merge_wildpark_models(wp, {**later, "seeds": [0]})
    assert not joined and list(other["models"]) == ["gmn-probes"]
    del wp["models"]["gmn"]
    assert bench.wildpark_target(wp)["met"] is None


def test_wildpark_runs_with_other_seeds_join_seed_by_seed(bench):
    def record(seed: int, tau: float) -> dict:
        return {"seed": seed, "kendall_tau": tau, "r2": tau - 0.1, "mae": 0.1, "n": 4, "train_seconds": 10.0,
                "hparams": {}, "metanet_params": 7,
                "per_family": {"cnn": {"kendall_tau": tau + 0.01}, "resnet": {"kendall_tau": tau - 0.01}}}

    setting = {"zoo": "wildpark-digits", "families": ["cnn", "resnet"], "rows": 10, "split": {"test": 4},
               "budget": {"e": 1}, "published_cnn_wild_park": {}}
    old = {**setting, "seeds": [0, 1, 2], "models": {
        "statnn-kinds": bench.seed_summary("statnn-kinds", [record(0, 0.70), record(1, 0.72), record(2, 0.74)]),
        "gmn": bench.seed_summary("gmn", [record(0, 0.71), record(1, 0.70), record(2, 0.78)]),
        "gmn-probes": bench.seed_summary("gmn", [record(0, 0.60), record(1, 0.62), record(2, 0.64)])}}
    new = {**setting, "seeds": [3, 4], "models": {
        "statnn-kinds": bench.seed_summary("statnn-kinds", [record(3, 0.70), record(4, 0.70)]),
        "gmn": bench.seed_summary("gmn", [record(4, 0.75), record(3, 0.72)])}}
    merged, joined = bench.merge_wildpark_models(old, new)
    assert joined and merged["seeds"] == [0, 1, 2, 3, 4]
    gmn = merged["models"]["gmn"]
    # five seeds, in seed order: mean (0.71 + 0.70 + 0.78 + 0.72 + 0.75) / 5 = 3.66 / 5 = 0.732
    assert gmn["seeds"] == [0, 1, 2, 3, 4] and gmn["kendall_tau"] == pytest.approx(0.732)
    assert gmn["kendall_tau_per_family"]["cnn"] == pytest.approx(0.742) and gmn["train_seconds"] == 50.0
    # sample std of (0.71, 0.70, 0.78, 0.72, 0.75): deviations -.022 -.032 .048 -.012 .018, squares sum
    # .000484 + .001024 + .002304 + .000144 + .000324 = .00428, / 4 = .00107, sqrt = .0327
    assert gmn["kendall_tau_std"] == pytest.approx(0.0327, abs=1e-4)
    assert merged["models"]["gmn-probes"]["seeds"] == [0, 1, 2]  # not rerun: keeps its own
    table = bench.wildpark_table(merged)
    assert "5 seeds" in table.splitlines()[0] and "± 0.020 (3 seeds) |" in table
    # seed by seed, gmn - statnn-kinds: .01, -.02, .04, .02, .05 -> ahead in 4 of 5, mean .02
    paired = bench.wildpark_target(merged)["paired"]
    assert paired["seeds"] == [0, 1, 2, 3, 4] and paired["gmn_ahead"] == 4
    assert paired["mean_difference"] == pytest.approx(0.02)
    # seeds in common with an earlier run: not comparable seed by seed, the new run alone
    again, joined = bench.merge_wildpark_models(old, {**new, "seeds": [2, 3]})
    assert not joined and again["seeds"] == [2, 3]


def test_wildpark_seeds_option(bench):
    assert bench.wildpark_seeds(None, "full") == (0, 1, 2) and bench.wildpark_seeds("3,4", "full") == (3, 4)
    for bad in ("3,x", "3,3", "-1", ""):
        with pytest.raises(SystemExit, match="--seeds"):
            bench.wildpark_seeds(bad, "full")
