"""The dense GMN of benchmarks/bench_metanet.py computes what the sparse GMN computes.

The benchmark's throughput comparison is only meaningful if both variants are the same function
with the same parameters; this checks outputs and gradients on an MLP and a CNN weight space, in
seconds (the full benchmark itself takes ~28 minutes, its --quick mode under one).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from weightspace.models.registry import build_metanetwork
from zoo_builders.architectures import CNNConfig, MLPConfig

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_metanet.py"


@pytest.fixture(scope="module")
def bench():
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
                      for m, a in zip(bench.INR_MODELS, (0.2, 0.3, 0.6, 0.5, 0.7))}}
    cnn = {"models": {m: {"kendall_tau": t} for m, t in zip(bench.CNN_MODELS, (0.8, 0.85, 0.9))}}
    md = bench.table(inr, cnn)
    assert md.count("\n") == 1 + len(bench.INR_MODELS)
    assert "| `dws` | 60.0% ± 1.0 | — |" in md
    t = bench.targets(inr, cnn)
    assert t["dws_ge_mlp_plus_30_points"]["met"] and t["gmn_ge_dws"]["met"]
    assert t["gmn_tau_gt_statnn_tau"]["met"]
