"""``statnn-kinds``: StatNN's statistics per kind of tensor, so one model reads zoos of mixed
architectures (CNNs and ResNets of several depths and widths); invariant to neuron symmetries
of graph architectures; `zoo train` on a mixed zoo, where `statnn` refuses and points to it."""

from __future__ import annotations

import pytest
import torch
from zoo_helpers import assert_one_line_error, random_weights, run_cli

from weightspace.graph_symmetry import graph_symmetries, permute_graph, random_graph_permutation
from weightspace.models.statnn import TENSOR_KINDS, KindStatNN
from zoo_builders.graph_architectures import ResNetConfig

#: Two families on digits: a plain CNN and a ResNet-8 with batch norm, two seeds each.
CNN_RESNET_ZOO = {
    "name": "tiny-cnn-resnet", "dataset": {"name": "digits", "test_fraction": 0.25},
    "training": {"epochs": 1, "batch_size": 128, "lr": 0.01, "checkpoints": [1]},
    "families": [{"architecture": {"name": "cnn", "channels": [4, 4], "kernel_size": 3}, "grid": {"seed": [0, 1, 2]}},
                 {"architecture": {"name": "resnet", "width_multiplier": 0.25, "batchnorm": True},
                  "grid": {"seed": [0, 1, 2]}}]}
TRAIN = ("--target", "test_acc", "--epochs", "2", "--fractions", "0.5,0.25,0.25", "-q", "--json",
         "--hparam", "hidden=8")


def test_features_by_hand() -> None:
    """Two conv layers (input 1->2 channels 1x1, output linear 2->1 after pooling) by hand:
    kind 'input.weight' pools the 2 entries [1, 3] -> mean 2, variance 1, quantiles 1, 1.5, 2, 2.5, 3
    and log(1 + 2)."""
    from zoo_builders.architectures import CNNConfig

    spec = CNNConfig(channels=(2,), kernel_size=1).network_spec((1, 2, 2), 1)
    model = KindStatNN(spec, 1, hidden=4)
    params = {p.name: torch.zeros((1, *p.shape)) for p in spec.params}
    params[spec.params[0].name] = torch.tensor([1.0, 3.0]).view(1, *spec.params[0].shape)
    f = model.features(params, spec)
    k = TENSOR_KINDS.index("input.weight") * 8
    torch.testing.assert_close(f[0, k:k + 8], torch.tensor(
        [2.0, 1.0, 1.0, 1.5, 2.0, 2.5, 3.0, float(torch.log1p(torch.tensor(2.0)))]))


def test_invariant_to_residual_stream_symmetries() -> None:
    spec = ResNetConfig(depth=8, width_multiplier=0.25, batchnorm=True).network_spec((1, 8, 8), 10)
    p = random_weights(spec, 3, seed=0)
    sym = graph_symmetries(spec)
    q = permute_graph(sym, p, random_graph_permutation(sym, 3, torch.Generator().manual_seed(1)))
    assert any(not torch.equal(p[k], q[k]) for k in p)  # the permutation moved weights
    torch.manual_seed(0)
    model = KindStatNN(spec, 2, hidden=8).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(q), model(p), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_zoo_train_on_a_mixed_zoo(zoo_factory, tmp_path) -> None:
    from catalog import open_zoo
    from weightspace import TrainedMetanetwork

    zoo = zoo_factory(CNN_RESNET_ZOO)
    assert sorted(s.family for s in open_zoo(zoo).select().network_specs.values()) == ["cnn", "resnet"]
    # statnn summarises named tensors, so it refuses two layouts and names the alternatives
    assert_one_line_error(run_cli("train", zoo, "--model", "statnn", *TRAIN, "--out", tmp_path / "s"),
                          "'statnn-kinds'", "'gmn'")
    r = run_cli("train", zoo, "--model", "statnn-kinds", *TRAIN, "--out", tmp_path / "k")
    assert r.exit_code == 0, r.output
    loaded = TrainedMetanetwork.load(tmp_path / "k")
    r = run_cli("predict", tmp_path / "k", zoo, "-q", "--out", tmp_path / "pred.csv")
    assert r.exit_code == 0, r.output
    lines = (tmp_path / "pred.csv").read_text().splitlines()  # --out's extension picks the format
    assert lines[0].startswith("\"model_id\",\"pred_test_acc\"") and len(lines) == 1 + 6  # every row of both families
    assert_one_line_error(run_cli("predict", tmp_path / "k", zoo, "-q", "--out", tmp_path / "pred.xlsx"),
                          "extension .xlsx")
    assert loaded.net.name == "statnn-kinds"
