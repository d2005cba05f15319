"""What a state dict cannot show: the forward order and skip connections. Tensors that are
recognisably no chain (residual blocks, embedding tables, numbering out of order) are refused with
the --arch hint; every layer order taken from a file is said (an InferredArchitectureWarning)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from zoo_helpers import run_cli

from catalog.zoo import open_zoo
from zoo_builders.importers import SourceError, import_statedicts
from zoo_builders.importers.common import InferredArchitectureWarning
from zoo_builders.importers.statedict import infer_network


class _Block(nn.Module):
    """A ResNet basic block: relu(x + bn2(conv2(relu(bn1(conv1(x))))))."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)


class _Rev(nn.Module):
    """fc2 defined before fc1; forward fc1 -> fc2 -> out."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc2, self.fc1, self.out = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 2)

    def forward(self, x):
        return self.out(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def _residual_sd() -> dict[str, torch.Tensor]:
    net = nn.ModuleDict({"stem": nn.Conv2d(1, 4, 3, padding=1), "b": _Block(4), "fc": nn.Linear(4, 10)})
    return net.state_dict()


@pytest.mark.parametrize(("sd", "message"), [
    (_residual_sd(), r"module 'b' holds 'b.conv1' and 'b.conv2', a residual block.*--arch"),
    ({f"layer1.0.{k}": v for k, v in _Block(4).state_dict().items()},
     r"'layer1.0' holds 'layer1.0.conv1' and 'layer1.0.conv2'.*--arch"),
    ({"conv.weight": torch.zeros(4, 1, 3, 3), "shortcut.0.weight": torch.zeros(4, 1, 1, 1),
      "fc.weight": torch.zeros(2, 4)}, r"'shortcut.0' is named like the projection of a skip connection.*--arch"),
    ({"embedding.weight": torch.zeros(16, 16), "fc.weight": torch.zeros(3, 16), "fc.bias": torch.zeros(3)},
     r"'embedding' \[weight \[16, 16\]\] is an embedding table.*--arch"),
    ({"model.embed_tokens.weight": torch.zeros(16, 16), "head.weight": torch.zeros(3, 16)}, "embedding table"),
    (_Rev().state_dict(), r"holds 'fc2' before 'fc1'.*numbering disagree.*--arch"),
], ids=["basic-block", "torchvision-layer", "shortcut", "embedding", "embed-tokens", "numbering"])
def test_recognisably_not_a_chain_is_refused(sd, message):
    with pytest.raises(SourceError, match=message):
        infer_network(sd, input_shape=(1, 8, 8))


def test_chains_that_look_alike_still_import():
    """Top-level conv1/conv2 (no block), a linear named embed (it has a bias), numbering in order."""
    ok = [{"conv1.weight": torch.zeros(4, 1, 3, 3), "bn1.weight": torch.ones(4), "bn1.bias": torch.zeros(4),
           "bn1.running_mean": torch.zeros(4), "bn1.running_var": torch.ones(4),
           "conv2.weight": torch.zeros(4, 4, 3, 3), "fc1.weight": torch.zeros(3, 4), "fc2.weight": torch.zeros(2, 3)},
          {"embed.weight": torch.zeros(8, 6), "embed.bias": torch.zeros(8), "head.weight": torch.zeros(2, 8)},
          {f"layers.{i}.weight": torch.zeros(4, 4) for i in (0, 2, 10)}]
    for sd in ok:
        infer_network(sd, input_shape=(1, 8, 8) if "conv1.weight" in sd else None)


def test_residual_block_file_is_refused_and_leaves_no_zoo(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    torch.save(_residual_sd(), src / "a.pt")
    r = run_cli("import", "state-dicts", src, "--out", tmp_path / "zoo", "--input-shape", "1,8,8", "-q")
    assert r.exit_code == 1 and "residual block" in r.output and "--arch" in r.output, r.output
    assert not (tmp_path / "zoo").exists()


def test_inferred_order_is_said_once_per_architecture(tmp_path):
    """safetensors keeps no order: proj_in/body/head are read in name order, and the warning lists it."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        net = nn.ModuleDict({"proj_in": nn.Linear(4, 4), "body": nn.Linear(4, 4), "head": nn.Linear(4, 4)})
        save_file(net.state_dict(), src / f"m{i}.safetensors")
    with pytest.warns(InferredArchitectureWarning) as record:
        import_statedicts(src, tmp_path / "zoo", quiet=True)
    (w,) = record
    text = str(w.message)
    (arch_id,) = open_zoo(tmp_path / "zoo").manifest.architectures
    assert text.startswith(f"{arch_id} (m0.safetensors and 2 more models): layer order inferred from the file: "
                           f"body (linear 4->4) -> head (linear 4->4) -> proj_in (linear 4->4). "), text
    assert text.endswith("confirm or change it with --arch SPEC.json listing the layers in forward order"), text
    assert len(text) < 300, text  # a line or two, not a paragraph
    r = run_cli("import", "state-dicts", src, "--out", tmp_path / "zoo2", "-q")  # the CLI shows it
    assert r.exit_code == 0 and f"warning: {arch_id} (m0.safetensors and 2 more models)" in r.output, r.output


def test_a_long_inferred_order_is_elided_to_stay_short(tmp_path):
    """Twelve layers: the first and last three are listed, the middle counted."""
    src = tmp_path / "src"
    src.mkdir()
    torch.save(nn.Sequential(*[nn.Linear(4, 4) for _ in range(12)]).state_dict(), src / "deep.pt")
    with pytest.warns(InferredArchitectureWarning) as record:
        import_statedicts(src, tmp_path / "zoo", quiet=True)
    (w,) = record
    text = str(w.message)
    assert "(deep.pt): layer order inferred from the file: 0 (linear 4->4) -> 1 (linear 4->4) -> 2 (linear 4->4) " \
           "-> ... 6 more ... -> 9 (linear 4->4) -> 10 (linear 4->4) -> 11 (linear 4->4). " in text, text
    assert len(text) < 330, text


def test_exported_architectures_need_no_notice(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    save_file(nn.Sequential(nn.Linear(4, 3)).state_dict(), src / "m.safetensors")
    import_statedicts(src, tmp_path / "zoo", quiet=True)
    from zoo_builders.importers import export_statedict

    export_statedict(tmp_path / "zoo", tmp_path / "exported", quiet=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InferredArchitectureWarning)
        import_statedicts(tmp_path / "exported", tmp_path / "again", quiet=True)


def test_a_spec_file_naming_the_parameters_gives_the_forward_order(tmp_path):
    """The refused fc2-before-fc1 file imports with --arch SPEC.json whose layers name fc1, fc2, out:
    the spec's order is kept (not the file's), so the module computes the original forward."""
    from catalog.network import LayerSpec, NetworkSpec

    src = tmp_path / "src"
    src.mkdir()
    net = _Rev().eval()
    torch.save(net.state_dict(), src / "a.pt")
    forward = (("fc1", 6, "relu"), ("fc2", 6, "relu"), ("out", 2, "identity"))
    layers = tuple(LayerSpec(kind="linear", in_features=6, out_features=o, weight=f"{n}.weight", bias=f"{n}.bias",
                             activation=a) for n, o, a in forward)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(NetworkSpec("mlp", (6,), layers).to_dict()))
    with warnings.catch_warnings():
        warnings.simplefilter("error", InferredArchitectureWarning)  # the spec names every layer: no notice
        import_statedicts(src, tmp_path / "zoo", arch=spec_file, quiet=True)
    (module,) = open_zoo(tmp_path / "zoo").select().modules()
    x = torch.randn(5, 6)
    torch.testing.assert_close(module(x), net(x), rtol=0, atol=1e-6)
    # a preset takes the file's layers in the file's order, and says so
    took = r"\(a.pt\): --arch's layers took the file's in its order: fc2 as layers.0 -> fc1 as layers.1"
    with pytest.warns(InferredArchitectureWarning, match=took):
        import_statedicts(src, tmp_path / "zoo2", arch="mlp", arch_options=["hidden=[6,6]"], input_shape=(6,),
                          quiet=True)


def test_a_lone_layer_is_noted_as_the_top_level(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    torch.save(nn.Linear(4, 2).state_dict(), src / "a.pt")  # keys: weight, bias
    with pytest.warns(InferredArchitectureWarning, match=r"\(top level\) \(linear 4->2\)"):
        import_statedicts(src, tmp_path / "zoo", quiet=True)


def test_one_notice_per_architecture_whatever_the_files_tensor_order(tmp_path):
    """A torch file keeps 0.weight before 0.bias, safetensors reads 0.bias first: one architecture."""
    src = tmp_path / "src"
    src.mkdir()
    sd = nn.Sequential(nn.Linear(4, 3)).state_dict()
    torch.save(sd, src / "a.pt")
    save_file(sd, src / "b.safetensors")
    with pytest.warns(InferredArchitectureWarning) as record:
        manifest = import_statedicts(src, tmp_path / "zoo", quiet=True)
    assert len(manifest.architectures) == 1 and len(record) == 1 and "and 1 more model)" in str(record[0].message)
