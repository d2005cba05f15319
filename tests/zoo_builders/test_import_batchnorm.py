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
from zoo_builders.importers.statedict import fit_arch, infer_network


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


class _Block(nn.Module):
    """A CIFAR ResNet basic block named like the ``resnet`` preset (kuangliu/pytorch-cifar's)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + self.shortcut(x))


class _ResNet8(nn.Module):
    """ResNet-8 (16-32-64 channels, 10 outputs) with the ``resnet`` preset's parameter names."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = nn.Sequential(_Block(16, 16, 1))
        self.layer2 = nn.Sequential(_Block(16, 32, 2))
        self.layer3 = nn.Sequential(_Block(32, 64, 2))
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(torch.relu(self.bn1(self.conv1(x))))))
        return self.fc(x.mean((2, 3)))


def _resnets(src, n: int = 2, fc_first: bool = False) -> list[nn.Module]:
    """``n`` ResNet-8s with trained statistics saved as ``src/r<i>.pt`` (``fc_first``: the file
    holds the classifier first, so its last tensor is a batch norm's 0-dim counter)."""
    src.mkdir()
    nets = []
    for i in range(n):
        torch.manual_seed(i)
        net = _trained_stats(_ResNet8(), torch.randn(4, 3, 8, 8))
        sd = net.state_dict()
        if fc_first:
            sd = {**{k: v for k, v in sd.items() if k.startswith("fc.")}, **sd}
        torch.save(sd, src / f"r{i}.pt")
        nets.append(net)
    return nets


def test_a_resnet_state_dict_imports_with_the_arch_preset(tmp_path):
    """num_batches_tracked (int64) is dropped with --arch as it is by inference."""
    nets = _resnets(tmp_path / "src")
    out = tmp_path / "zoo"
    import_statedicts(tmp_path / "src", out, arch="resnet", input_shape=(3, 8, 8), quiet=True)
    assert verify_zoo(out).ok
    sel = open_zoo(out).select(order_by="source_path")
    (spec,) = sel.network_specs.values()
    assert spec.n_outputs == 10 and not any(p.endswith("num_batches_tracked") for p in spec.param_names)
    x = torch.randn(5, 3, 8, 8)
    for net, sd, module in zip(nets, sel.state_dicts(), sel.modules()):
        want = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
        assert sorted(sd) == sorted(want) and all(torch.equal(sd[k], want[k]) for k in want)
        loaded = module.state_dict()  # the loaded module's weights, under the file's names
        assert sorted(loaded) == sorted(want) and all(torch.equal(loaded[k], want[k]) for k in want)
        with torch.no_grad():
            torch.testing.assert_close(module(x), net(x), rtol=0, atol=1e-5)


def test_an_exported_bn_spec_imports_the_same_state_dict_with_arch(tmp_path):
    torch.manual_seed(0)
    net = _trained_stats(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 6, 3),
                                       nn.BatchNorm2d(6), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                       nn.Linear(6, 3)), torch.randn(8, 1, 8, 8))
    spec = infer_network(net.state_dict(), input_shape=(1, 8, 8))
    assert fit_arch(spec, net.state_dict(), "m.pt") == spec


def test_arch_takes_the_output_width_from_the_output_layer_not_the_last_tensor(tmp_path):
    """The file's last tensor is a batch norm's 0-dim counter (it used to be read as the output
    width: an IndexError), the classifier comes first in the file."""
    nets = _resnets(tmp_path / "src", n=1, fc_first=True)
    import_statedicts(tmp_path / "src", tmp_path / "zoo", arch="resnet", input_shape=(3, 8, 8), quiet=True)
    (module,) = open_zoo(tmp_path / "zoo").select().modules()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(module(x), nets[0](x), rtol=0, atol=1e-5)


def test_an_imported_bn_network_computes_its_module_bit_for_bit(tmp_path):
    """Eval-mode batch norm is torch's own kernel (F.batch_norm), not a formula that rounds differently."""
    torch.manual_seed(0)
    src = tmp_path / "src"
    src.mkdir()
    net = _trained_stats(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 6, 3),
                                       nn.BatchNorm2d(6), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                       nn.Linear(6, 10)), torch.randn(64, 1, 8, 8) * 2 + 1)
    torch.save(net.state_dict(), src / "m.pt")
    import_statedicts(src, tmp_path / "zoo", input_shape=(1, 8, 8), quiet=True)
    (module,) = open_zoo(tmp_path / "zoo").select().modules()
    x = torch.randn(64, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(module(x), net(x))


def test_eval_batch_norm_is_differentiable_in_statistics_that_carry_gradients():
    """torch's eval kernel (used for bit-exactness with nn.BatchNorm*d) refuses running statistics
    that require grad; a generator's output does (mip trains through the networks it generates),
    so those take the formula: the gradient of sum((x - mean) / sqrt(var + eps)) with respect to
    mean is -N / sqrt(var + eps) per channel, N the values of that channel (here 2 * 3 = 6)."""
    from catalog import nodes as nd

    bn = nd.BatchNorm("bn", ("input",), 2, affine=False)
    mean = torch.tensor([0.5, -1.0], requires_grad=True)
    var = torch.tensor([3.0, 0.25], requires_grad=True)
    x = torch.randn(2, 2, 3)
    out, _ = bn._normalize(x, {"running_mean": mean, "running_var": var}, nd.Context(training=False))
    out.sum().backward()
    torch.testing.assert_close(mean.grad, -6 / torch.sqrt(var.detach() + bn.eps))
