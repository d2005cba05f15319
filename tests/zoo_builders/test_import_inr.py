"""INR datasets: DWSNets' and NFN's SIREN folders written as the papers' code writes them, imported,
checked against hand-written SIRENs in each layout's own convention, and bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch
from torch import nn
from zoo_helpers import run_cli

from catalog.coordinates import image_coordinates
from catalog.verify import verify_zoo
from catalog.zoo import open_zoo
from zoo_builders.importers import SourceError, import_dws_inrs, import_nfn_inrs, import_statedicts

SIDE = 6  # image side of the fixtures (the datasets use 28; any size computes the same way)


# ================================================================================ the layouts' own code
class DwsSiren(nn.Module):
    """DWSNets' ``Siren`` layer (nn/inr.py): its own weight/bias, ``sin(w0 * (W x + b))``."""

    def __init__(self, dim_in: int, dim_out: int, w0: float = 30.0) -> None:
        super().__init__()
        self.w0 = w0
        self.weight = nn.Parameter(torch.empty(dim_out, dim_in).uniform_(-1 / dim_in, 1 / dim_in))
        self.bias = nn.Parameter(torch.empty(dim_out).uniform_(-0.5, 0.5))

    def forward(self, x):
        return torch.sin(self.w0 * nn.functional.linear(x, self.weight, self.bias))


class DwsInr(nn.Module):
    """DWSNets' ``INR``: seq = Siren, Siren, Linear; forward ``seq(x) + 0.5``."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.seq = nn.Sequential(DwsSiren(2, hidden), DwsSiren(hidden, hidden), nn.Linear(hidden, 1))

    def forward(self, x):
        return self.seq(x) + 0.5


def dws_coordinates(side: int) -> torch.Tensor:
    """DWSNets' ``make_coordinates``: ``np.meshgrid(x, y)`` ('xy' indexing), so each point is
    ``(x, y) = (col, row)``; the output is viewed as ``[H, W]``."""
    lin = np.linspace(-1, 1, side)
    xs, ys = np.meshgrid(lin, lin)
    return torch.from_numpy(np.stack([xs.flatten(), ys.flatten()]).T).float()


class NfnSineLayer(nn.Module):
    """NFN's ``SineLayer`` (experiments/siren_utils.py): ``sin(omega_0 * self.linear(x))``."""

    def __init__(self, n_in: int, n_out: int, omega_0: float = 30.0) -> None:
        super().__init__()
        self.omega_0 = omega_0
        self.linear = nn.Linear(n_in, n_out)

    def forward(self, x):
        return torch.sin(self.omega_0 * self.linear(x))


class NfnSiren(nn.Module):
    """NFN's ``Siren(2, 32, hidden_layers=1, 1, outermost_linear=True)``: net = Sine, Sine, Linear."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(NfnSineLayer(2, hidden), NfnSineLayer(hidden, hidden), nn.Linear(hidden, 1))

    def forward(self, coords):
        return self.net(coords)


def nfn_coordinates(side: int) -> torch.Tensor:
    """NFN's ``get_mgrid``: ``meshgrid(..., indexing="ij")``: ``(row, col)``."""
    lin = torch.linspace(-1, 1, side)
    return torch.stack(torch.meshgrid(lin, lin, indexing="ij"), dim=-1).reshape(-1, 2)


# ================================================================================ fixtures
DWS_MODELS = [("training", 3, 7), ("training", 5, 8), ("testing", 1, 2), ("training", 0, 9)]


@pytest.fixture
def dws_folder(tmp_path):
    """Four DWSNets INRs in ``mnist_png_<split>_<label>_<idx>/checkpoints/model_final.pth`` and a
    ``mnist_splits.json`` as generate_data_splits.py writes it (absolute paths, string labels,
    one training INR moved to val)."""
    src = tmp_path / "mnist-inrs"
    nets = {}
    splits = {"train": {"path": [], "label": []}, "val": {"path": [], "label": []},
              "test": {"path": [], "label": []}}
    for k, (split, label, idx) in enumerate(DWS_MODELS):
        torch.manual_seed(k)
        net = DwsInr().eval()
        rel = f"mnist_png_{split}_{label}_{idx}/checkpoints/model_final.pth"
        (src / rel).parent.mkdir(parents=True)
        torch.save(net.state_dict(), src / rel)
        nets[rel] = net
        s = "test" if split == "testing" else "val" if idx == 8 else "train"
        splits[s]["path"].append(f"/home/someone/dataset/mnist-inrs/{rel}")
        splits[s]["label"].append(str(label))
    (src / "mnist_splits.json").write_text(json.dumps(splits))
    return src, nets


@pytest.fixture
def nfn_folder(tmp_path):
    """Six NFN SIRENs in ``randinit_smaller_<label>s/net<idx>.pth`` with the dataset config's
    ``split_points: [3, 5]`` (train 0-2, val 3-4, test 5)."""
    src = tmp_path / "siren_mnist_wts"
    nets = {}
    for idx in range(6):
        torch.manual_seed(100 + idx)
        net = NfnSiren().eval()
        rel = f"randinit_smaller_{idx % 3}s/net{idx}.pth"
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        torch.save(net.state_dict(), src / rel)
        nets[rel] = net
    (src / "mnist.yaml").write_text("_target_: experiments.data_utils.SirenDataset\nprefix: randinit_smaller\n"
                                    "split_points: [3, 5]\n")
    return src, nets


# ================================================================================ DWSNets
def test_dws_import_columns_weights_and_function(dws_folder, tmp_path):
    src, nets = dws_folder
    out = tmp_path / "zoo"
    manifest = import_dws_inrs(src, out, image_shape=(SIDE, SIDE), quiet=True)
    assert manifest.counts["rows"] == 4 and manifest.counts["runs"] == 4 and manifest.format_version == 1
    assert verify_zoo(out).ok
    z = open_zoo(out)
    (spec,) = [z.network_spec(a) for a in z.select().arch_ids]
    assert spec.is_chain and spec.param_names[0] == "seq.0.weight" and spec.layers[-1].shift == 0.5
    assert [layer.omega for layer in spec.layers] == [30.0, 30.0, 1.0]
    table = z.table
    assert table.schema.field("label").type == pa.int64() and table.schema.field("split").type == pa.string()
    by_path = {r["source_path"]: r for r in table.to_pylist()}
    assert set(by_path) == set(nets)
    for rel, r in by_path.items():
        folder = rel.split("/")[0].split("_")
        assert r["label"] == int(folder[3]) and r["image_index"] == int(folder[4])
        assert r["source_layout"] == "dws-inr"
    # the split file wins over the folder name: idx 8 was moved to val
    assert {r["image_index"]: r["split"] for r in by_path.values()} == {7: "train", 8: "val", 2: "test", 9: "train"}

    coords = image_coordinates(SIDE, SIDE)  # this project's (row, col) grid
    for rel, net in nets.items():
        mid = by_path[rel]["model_id"]
        sd, orig = z.state_dict(mid), net.state_dict()
        # bit-identical after the one documented transform: seq.0.weight's columns swapped
        assert torch.equal(sd["seq.0.weight"], orig["seq.0.weight"][:, [1, 0]])
        assert all(torch.equal(sd[k], orig[k]) for k in orig if k != "seq.0.weight")
        # the imported INR renders the image the DWSNets code renders from the file
        with torch.no_grad():
            ours = z.module(mid)(coords).reshape(SIDE, SIDE)
            theirs = net(dws_coordinates(SIDE)).view(SIDE, SIDE)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=2e-6)


def test_dws_split_file_next_to_the_folder(dws_folder, tmp_path):
    """Where DWSNets writes it: dataset/mnist_splits.json beside dataset/mnist-inrs/."""
    src, _ = dws_folder
    (src / "mnist_splits.json").rename(src.parent / "mnist_splits.json")
    import_dws_inrs(src, tmp_path / "zoo", quiet=True)
    table = open_zoo(tmp_path / "zoo").table
    assert dict(zip(table.column("image_index").to_pylist(), table.column("split").to_pylist()))[8] == "val"


@pytest.mark.slow
def test_dws_without_split_file_uses_folders_and_trains_metanetworks(dws_folder, tmp_path):
    src, _ = dws_folder
    (src / "mnist_splits.json").unlink()
    out = tmp_path / "zoo"
    r = run_cli("import", "dws-inr", src, "--out", out, "-q")
    assert r.exit_code == 0, r.output
    splits = sorted(open_zoo(out).table.column("split").to_pylist())
    assert splits == ["test", "train", "train", "train"]
    # statnn; dws, which reads layer chains only (the imported SIREN stays a chain); gmn, whose
    # parameter graph leaves out the output shift
    for model in ("statnn", "dws", "gmn"):
        r = run_cli("train", out, "--target", "label", "--model", model, "--epochs", "1", "-q",
                    "--out", tmp_path / f"run-{model}")
        assert r.exit_code == 0, r.output


def test_dws_bad_inputs(dws_folder, tmp_path):
    src, nets = dws_folder
    doc = json.loads((src / "mnist_splits.json").read_text())
    doc["train"]["label"][0] = "9"
    (src / "mnist_splits.json").write_text(json.dumps(doc))
    with pytest.raises(SourceError, match="has label '9' but its folder says"):
        import_dws_inrs(src, tmp_path / "o1", quiet=True)
    doc["train"]["label"][0] = "3"
    doc["train"]["path"].append("/x/mnist_png_training_4_99/checkpoints/model_final.pth")
    doc["train"]["label"].append("4")
    (src / "mnist_splits.json").write_text(json.dumps(doc))
    with pytest.raises(SourceError, match="not an INR of the folder"):
        import_dws_inrs(src, tmp_path / "o2", quiet=True)
    (src / "mnist_splits.json").unlink()
    bad = src / "oddly_named/checkpoints/model_final.pth"
    bad.parent.mkdir(parents=True)
    torch.save(DwsInr().state_dict(), bad)
    with pytest.raises(SourceError, match="<prefix>_<split>_<label>_<idx>"):
        import_dws_inrs(src, tmp_path / "o3", quiet=True)
    bad.unlink()
    rel = next(iter(nets))
    torch.save({"seq.0.weight": torch.zeros(32, 3), "seq.0.bias": torch.zeros(32)}, src / rel)
    with pytest.raises(SourceError, match="2 coordinates to 1 intensity; these weights map 3 -> 32"):
        import_dws_inrs(src, tmp_path / "o4", quiet=True)
    assert not (tmp_path / "o4").exists()  # a failed import leaves nothing behind
    torch.save({**nets[rel].state_dict(), "seq.2.scale": torch.ones(1)}, src / rel)
    with pytest.raises(SourceError, match=r"not a SIREN of this layout .*'seq.2.scale'"):
        import_dws_inrs(src, tmp_path / "o5", quiet=True)


# ================================================================================ NFN
def test_nfn_import_columns_weights_and_function(nfn_folder, tmp_path):
    src, nets = nfn_folder
    out = tmp_path / "zoo"
    manifest = import_nfn_inrs(src, out, image_shape=(SIDE, SIDE), quiet=True)
    assert manifest.counts["rows"] == 6 and verify_zoo(out).ok
    z = open_zoo(out)
    (spec,) = [z.network_spec(a) for a in z.select().arch_ids]
    assert spec.is_chain and spec.layers[-1].shift == 0.0 and spec.meta["output_range"] == [-1.0, 1.0]
    assert spec.param_names == ["net.0.linear.weight", "net.0.linear.bias", "net.1.linear.weight",
                                "net.1.linear.bias", "net.2.weight", "net.2.bias"]
    by_path = {r["source_path"]: r for r in z.table.to_pylist()}
    # split_points [3, 5] of mnist.yaml: idx < 3 train, < 5 val, else test
    assert {r["image_index"]: r["split"] for r in by_path.values()} == {
        0: "train", 1: "train", 2: "train", 3: "val", 4: "val", 5: "test"}
    coords = image_coordinates(SIDE, SIDE)
    for rel, net in nets.items():
        r = by_path[rel]
        assert r["label"] == r["image_index"] % 3 and r["source_prefix"] == "randinit_smaller"
        sd, orig = z.state_dict(r["model_id"]), net.state_dict()
        assert sorted(sd) == sorted(orig) and all(torch.equal(sd[k], orig[k]) for k in orig)  # as stored
        with torch.no_grad():
            ours = z.module(r["model_id"])(coords).reshape(SIDE, SIDE)
            theirs = net(nfn_coordinates(SIDE)).reshape(SIDE, SIDE)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=2e-6)


def test_nfn_cli_import_trains_statnn(nfn_folder, tmp_path):
    src, _ = nfn_folder
    out = tmp_path / "zoo"
    r = run_cli("import", "nfn-inr", src, "--out", out, "-q")
    assert r.exit_code == 0 and "imported 6 models (1 architecture(s))" in r.output, r.output
    r = run_cli("train", out, "--target", "label", "--model", "statnn", "--epochs", "1", "-q",
                "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output


def test_nfn_bad_inputs(nfn_folder, tmp_path):
    src, nets = nfn_folder
    with pytest.raises(SourceError, match="VAL,TEST"):
        import_nfn_inrs(src, tmp_path / "o1", split_points=(5, 3), quiet=True)
    (src / "randinit_smaller_1s" / "weights.pth").write_bytes(b"x")
    with pytest.raises(SourceError, match="net<idx>.pth"):
        import_nfn_inrs(src, tmp_path / "o2", quiet=True)
    (src / "randinit_smaller_1s" / "weights.pth").unlink()
    rel = next(iter(nets))
    torch.save({"net.0.linear.weight": torch.zeros(4, 2), "net.0.linear.bias": torch.zeros(4),
                "net.1.weight": torch.zeros(3, 4), "net.1.bias": torch.zeros(3)}, src / rel)
    with pytest.raises(SourceError, match="2 coordinates to 1 intensity"):
        import_nfn_inrs(src, tmp_path / "o3", quiet=True)
    # the bad file found before anything is written, though 5 good ones come first (one per part)
    (src / "randinit_smaller_9s").mkdir()
    (src / rel).rename(src / "randinit_smaller_9s" / "net99.pth")  # read last
    with pytest.raises(SourceError, match="randinit_smaller_9s/net99.pth: .*2 coordinates to 1 intensity"):
        import_nfn_inrs(src, tmp_path / "o4", rows_per_part=1, quiet=True)
    assert not (tmp_path / "o4").exists()


# ================================================================================ run counts
def test_a_run_split_across_parts_counts_once(tmp_path):
    """Six checkpoints of two runs written two models per part: the runs straddle parts, and the
    manifest says 2 runs (the writer alone would add each part's runs: 4)."""
    from safetensors.torch import save_file

    src = tmp_path / "src"
    src.mkdir()
    lines = []
    for i in range(6):
        torch.manual_seed(i)
        save_file(nn.Sequential(nn.Linear(3, 2)).state_dict(), src / f"m{i}.safetensors")
        lines.append(json.dumps({"file": f"m{i}.safetensors", "run_id": f"run{i // 3}", "checkpoint": i % 3}))
    (src / "metadata.jsonl").write_text("\n".join(lines))
    manifest = import_statedicts(src, tmp_path / "zoo", rows_per_part=2, quiet=True)
    assert len(manifest.part_files()) == 3
    assert manifest.counts["rows"] == 6 and manifest.counts["runs"] == 2
    assert verify_zoo(tmp_path / "zoo").ok
