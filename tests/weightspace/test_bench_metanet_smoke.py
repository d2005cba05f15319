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
