"""Exporters: zoo -> layout -> zoo round trips (bit-identical weights), layout -> zoo -> layout
(the source files back), and what a layout cannot hold."""

from __future__ import annotations

import pytest
import test_import_inr as inr_fixtures
import torch
from analyze_helpers import TINY_INR
from zoo_helpers import run_cli

from catalog.coordinates import image_coordinates
from catalog.errors import WeightzooError
from catalog.zoo import open_zoo
from zoo_builders.importers import (
    EXPORTERS,
    export_dws_inrs,
    export_nfn_inrs,
    export_zoo,
    import_dws_inrs,
    import_nfn_inrs,
)

DWS_MODELS = inr_fixtures.DWS_MODELS
dws_folder = inr_fixtures.dws_folder  # the fixtures of the import tests, the sources exported back
nfn_folder = inr_fixtures.nfn_folder


def _by(zoo, *keys):
    """``{(key values): (row, state dict)}`` of every model of ``zoo``."""
    z = open_zoo(zoo)
    return {tuple(r[k] for k in keys): (r, z.state_dict(r["model_id"])) for r in z.table.to_pylist()}


def _load(path):
    return torch.load(path, weights_only=True)


def test_registry_holds_every_export_layout():
    assert sorted(EXPORTERS) == ["dws-inr", "nfn-inr", "state-dicts"]
    with pytest.raises(WeightzooError, match="valid layouts: dws-inr, nfn-inr, state-dicts"):
        export_zoo("onnx", "anything", "anywhere")


def test_dws_import_export_import_is_identical(dws_folder, tmp_path):
    src, nets = dws_folder
    first = tmp_path / "first"
    import_dws_inrs(src, first, quiet=True)
    files = export_dws_inrs(first, tmp_path / "exported", quiet=True)
    assert len(files) == len(DWS_MODELS) and (tmp_path / "exported" / "splits.json").is_file()
    # the exported files are the source files' tensors, bit for bit (the column swap undone)
    for (split, label, idx), net in zip(DWS_MODELS, nets.values()):
        s = "test" if split == "testing" else "val" if idx == 8 else "train"
        back = _load(tmp_path / "exported" / f"{s}_{label}_{idx}" / "checkpoints" / "model_final.pth")
        orig = net.state_dict()
        assert list(back) == list(orig) and all(torch.equal(back[k], orig[k]) for k in orig)
    second = tmp_path / "second"
    import_dws_inrs(tmp_path / "exported", second, quiet=True)
    a, b = _by(first, "label", "split", "image_index"), _by(second, "label", "split", "image_index")
    assert a.keys() == b.keys()
    for key in a:
        assert all(torch.equal(a[key][1][k], b[key][1][k]) for k in a[key][1])
        assert a[key][0]["arch_id"] == b[key][0]["arch_id"] and a[key][0]["sha256"] == b[key][0]["sha256"]


def test_nfn_import_export_import_is_identical(nfn_folder, tmp_path):
    src, nets = nfn_folder
    first = tmp_path / "first"
    import_nfn_inrs(src, first, quiet=True)
    r = run_cli("export", first, "--layout", "nfn-inr", "--out", tmp_path / "exported", "-q")
    assert r.exit_code == 0 and "exported 6 models" in r.output, r.output
    for rel, net in nets.items():
        back, orig = _load(tmp_path / "exported" / rel), net.state_dict()  # the same relative paths
        assert list(back) == list(orig) and all(torch.equal(back[k], orig[k]) for k in orig)
    # the split travels as NFN's config line (the fixture's [3, 5]: the smallest points for its rows)
    assert "split_points: [3, 5]" in (tmp_path / "exported" / "split_points.yaml").read_text()
    second = tmp_path / "second"
    import_nfn_inrs(tmp_path / "exported", second, quiet=True)
    a, b = _by(first, "source_path"), _by(second, "source_path")
    assert a.keys() == b.keys()
    assert sorted(r["split"] for r, _ in b.values()) == ["test", "train", "train", "train", "val", "val"]
    for key in a:
        assert a[key][0]["model_id"] == b[key][0]["model_id"] and a[key][0]["sha256"] == b[key][0]["sha256"]
        assert a[key][0]["split"] == b[key][0]["split"] and a[key][0]["label"] == b[key][0]["label"]


def test_nfn_split_points_are_the_smallest_that_hold_the_splits(nfn_folder, tmp_path):
    """Splits moved by index: the written points follow them (train 0-1, val 2-4, test 5 ->
    [2, 5]); a split NFN's ranges cannot hold (a val index below a train index) is refused
    before anything is written."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from zoo_helpers import rewrite_part

    from catalog.format import read_manifest

    src, _ = nfn_folder
    zoo = tmp_path / "zoo"
    import_nfn_inrs(src, zoo, split_points=(2, 5), quiet=True)
    export_nfn_inrs(zoo, tmp_path / "a", quiet=True)
    assert "split_points: [2, 5]" in (tmp_path / "a" / "split_points.yaml").read_text()
    import_nfn_inrs(tmp_path / "a", tmp_path / "back", quiet=True)
    assert {r["image_index"]: r["split"] for r in open_zoo(tmp_path / "back").table.to_pylist()} == {
        0: "train", 1: "train", 2: "val", 3: "val", 4: "val", 5: "test"}

    # image 0 becomes val and image 2 train: no index ranges give that
    (part,) = read_manifest(zoo).part_files()
    table = pq.read_table(zoo / part.path)
    idx = table.column("image_index")
    split = pc.if_else(pc.equal(idx, 0), "val", pc.if_else(pc.equal(idx, 2), "train", table.column("split")))
    rewrite_part(zoo, part.path, table.set_column(table.schema.get_field_index("split"), "split",
                                                  split.cast(pa.string())))
    with pytest.raises(WeightzooError, match="not NFN's index ranges.*export as dws-inr"):
        export_nfn_inrs(zoo, tmp_path / "b", quiet=True)
    assert not (tmp_path / "b").exists()


def test_a_built_siren_zoo_exports_and_imports_back(zoo_factory, tmp_path):
    """A zoo built here (names layers.{i}.*, no shift): export -> import gives its weights back
    bit for bit (NFN: as stored; DWSNets: the columns swapped back and forth), and the DWSNets
    INR computes the built one's image (DWSNets adds 0.5 itself: the export takes it off the
    last bias, so that one tensor is equal to float rounding)."""
    built = zoo_factory(TINY_INR)
    zb = open_zoo(built)
    rows = {r["image_index"]: r for r in zb.table.to_pylist()}
    export_nfn_inrs(built, tmp_path / "nfn", quiet=True)
    import_nfn_inrs(tmp_path / "nfn", tmp_path / "nfn-zoo", image_shape=(8, 8), quiet=True)
    export_dws_inrs(built, tmp_path / "dws", quiet=True)
    import_dws_inrs(tmp_path / "dws", tmp_path / "dws-zoo", image_shape=(8, 8), quiet=True)
    coords = image_coordinates(8, 8)
    for zoo, names in ((tmp_path / "nfn-zoo", "net"), (tmp_path / "dws-zoo", "seq")):
        back = _by(zoo, "image_index")
        assert sorted(k[0] for k in back) == sorted(rows)
        for (idx,), (row, sd) in back.items():
            assert row["label"] == rows[idx]["label"]
            orig = zb.state_dict(rows[idx]["model_id"])
            ours = list(sd.values())
            theirs = list(orig.values())
            exact = len(theirs) if names == "net" else len(theirs) - 1
            assert all(torch.equal(o, t) for o, t in zip(ours[:exact], theirs[:exact]))
            with torch.no_grad():
                torch.testing.assert_close(open_zoo(zoo).module(row["model_id"])(coords),
                                           zb.module(rows[idx]["model_id"])(coords), rtol=0, atol=1e-6)


def test_exports_refuse_what_the_layout_cannot_hold(tiny_digits_zoo, dws_folder, tmp_path):
    with pytest.raises(WeightzooError, match="is not a SIREN that nfn-inr holds"):
        export_nfn_inrs(tiny_digits_zoo, tmp_path / "a", quiet=True)
    src, _ = dws_folder
    import_dws_inrs(src, tmp_path / "dws-zoo", quiet=True)
    with pytest.raises(WeightzooError, match="adds 0.5 to its output, which NFN's SIREN does not"):
        export_nfn_inrs(tmp_path / "dws-zoo", tmp_path / "b", quiet=True)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("x")
    with pytest.raises(WeightzooError, match="is not empty"):
        export_dws_inrs(tmp_path / "dws-zoo", tmp_path / "c", quiet=True)


@pytest.mark.parametrize("layout", sorted(EXPORTERS))
def test_exports_check_out_before_any_work(layout, zoo_copy, tmp_path, monkeypatch):
    """An export into a zoo, or where no folder can be made, is refused before the zoo is read."""
    import catalog.zoo

    opened = []
    monkeypatch.setattr(catalog.zoo, "open_zoo", lambda *a, **k: opened.append(a))
    with pytest.raises(WeightzooError, match=r"^out_dir='.*exported' \(--out\) lies inside the zoo at .*choose a "
                                             r"path outside it"):
        export_zoo(layout, zoo_copy, zoo_copy / "exported", quiet=True)
    assert not (zoo_copy / "exported").exists()
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(WeightzooError, match="cannot be created: .*a-file is a file, not a directory"):
        export_zoo(layout, zoo_copy, tmp_path / "a-file" / "exported", quiet=True)
    assert opened == []
    r = run_cli("export", zoo_copy, "--layout", layout, "--out", zoo_copy / "exported", "-q")
    assert r.exit_code == 1 and r.output.startswith("error: out_dir=") and "lies inside the zoo" in r.output


def test_a_failed_inr_export_leaves_no_half_written_folder(dws_folder, tmp_path, monkeypatch):
    src, _ = dws_folder
    import_dws_inrs(src, tmp_path / "dws-zoo", quiet=True)
    real, calls = torch.save, []

    def failing(obj, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(obj, path)

    monkeypatch.setattr(torch, "save", failing)
    with pytest.raises(OSError, match="disk full"):
        export_dws_inrs(tmp_path / "dws-zoo", tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists()
