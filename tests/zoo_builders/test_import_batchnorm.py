"""State dicts with batch norm: inferred as graphs with batchnorm nodes that compute what the
torch module computes in eval mode; modules the inference does not know are named."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from catalog.network import build_module
from catalog.verify import verify_zoo
from catalog.zoo import open_zoo
from zoo_builders.importers import SourceError, import_statedicts
from zoo_builders.importers.statedict import infer_network


def _trained_stats(net: nn.Module, x: torch.Tensor) -> nn.Module:
    """A few forward passes in train mode so the running statistics are not the defaults."""
    net.train()
    with torch.no_grad():
        for k in range(3):
            net(x * (1 + k) + k)
    return net.eval()


def test_conv_bn_relu_sequential_imports_as_a_graph_that_computes_the_same(tmp_path):
    torch.manual_seed(0)
    src = tmp_path / "src"
    src.mkdir()
    nets = []
    for i in range(2):
        net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 5, 3), nn.BatchNorm2d(5),
                            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3))
        nets.append(_trained_stats(net, torch.randn(16, 1, 8, 8)))
        torch.save(net.state_dict(), src / f"cnn{i}.pt")
    out = tmp_path / "zoo"
    manifest = import_statedicts(src, out, input_shape=(1, 8, 8), quiet=True)
    assert manifest.format_version == 2 and manifest.counts["rows"] == 2 and verify_zoo(out).ok
    z = open_zoo(out)
    sel = z.select(order_by="source_path")
    (spec,) = sel.network_specs.values()
    assert [n.KIND for n in spec.nodes if n.KIND == "batchnorm"] == ["batchnorm", "batchnorm"]
    # every tensor but the counter num_batches_tracked, under the file's own name, bit for bit
    for net, sd in zip(nets, sel.state_dicts()):
        want = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
        assert sorted(sd) == sorted(want) and all(torch.equal(sd[k], want[k]) for k in want)
    x = torch.randn(7, 1, 8, 8)
    for net, module in zip(nets, sel.modules()):
        with torch.no_grad():
            torch.testing.assert_close(module(x), net(x), rtol=0, atol=1e-5)


def test_linear_bn_mlp_and_affine_free_bn():
    torch.manual_seed(1)
    net = _trained_stats(nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5, affine=False), nn.Tanh(), nn.Linear(5, 2)),
                         torch.randn(32, 6))
    spec = infer_network(net.state_dict(), activation="tanh")
    module = build_module(spec, {k: v for k, v in net.state_dict().items() if k in spec.param_names})
    x = torch.randn(4, 6)
    with torch.no_grad():
        torch.testing.assert_close(module(x), net(x), rtol=0, atol=1e-6)


def test_unknown_modules_are_named_with_the_arch_hint():
    attn = nn.MultiheadAttention(8, 2)
    sd = {"embed.weight": torch.zeros(8, 4), "embed.bias": torch.zeros(8),
          **{f"attn.{k}": v for k, v in attn.state_dict().items()}}
    with pytest.raises(SourceError, match=r"module 'attn' \[in_proj_weight .*look like attention.*--arch"):
        infer_network(sd)
    with pytest.raises(SourceError, match="'bn.running_mean' has shape \\[4\\].*has 5 channels"):
        infer_network({"fc.weight": torch.zeros(5, 3), "fc.bias": torch.zeros(5),
                       "bn.running_mean": torch.zeros(4), "bn.running_var": torch.ones(4)})
