"""zoo export --layout state-dicts: every model gets a valid, unique file name (its own where safe,
else ``<model_id>.safetensors``), clashes are found before anything is written, a failed export
leaves no half-written folder, and export -> import -> export is byte-identical (lines sorted)."""

from __future__ import annotations

import filecmp
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from catalog.zoo import open_zoo
from zoo_builders.importers import export_statedict, import_statedicts


def _same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    return not mismatch and not errors and all(_same_tree(a / d, b / d) for d in cmp.common_dirs)


def _folder(root: Path, names: list[str]) -> Path:
    for i, name in enumerate(names):
        torch.manual_seed(i)
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sd = nn.Sequential(nn.Linear(4, 2)).state_dict()
        save_file(sd, path) if name.endswith(".safetensors") else torch.save(sd, path)
    return root


def _round_trip(src: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Import, export, import, export: the two exports are byte-identical; returns the first
    export and {source_path: exported file} of the first import."""
    import_statedicts(src, tmp_path / "z1", quiet=True)
    export_statedict(tmp_path / "z1", tmp_path / "e1", quiet=True)
    import_statedicts(tmp_path / "e1", tmp_path / "z2", quiet=True)
    export_statedict(tmp_path / "z2", tmp_path / "e2", quiet=True)
    assert _same_tree(tmp_path / "e1", tmp_path / "e2")
    lines = [json.loads(s) for s in (tmp_path / "e1" / "metadata.jsonl").read_text().splitlines()]
    assert [r["file"] for r in lines] == sorted(r["file"] for r in lines)  # a deterministic order
    by_run = {r["run_id"]: r["file"] for r in lines}
    rows = open_zoo(tmp_path / "z1").table.to_pylist()
    return tmp_path / "e1", {r["source_path"]: by_run[r["run_id"]] for r in rows}


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_names_an_import_accepted_export_and_round_trip(tmp_path):
    src = _folder(tmp_path / "src", ["my model (1).pt", "modèle.pt", "-v2.pt", "sub dir/ckpt.pt", "ok/fine.pt"])
    exported, names = _round_trip(src, tmp_path)
    ids = {r["source_path"]: r["model_id"] for r in open_zoo(tmp_path / "z1").table.to_pylist()}
    for unsafe in ("my model (1).pt", "modèle.pt", "-v2.pt", "sub dir/ckpt.pt"):
        assert names[unsafe] == f"{ids[unsafe]}.safetensors"  # the documented fallback
    assert names["ok/fine.pt"] == "ok/fine.safetensors"  # a safe name is kept
    assert (exported / "ok" / "fine.safetensors").is_file()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_stems_that_clash_keep_the_file_already_so_named(tmp_path):
    src = _folder(tmp_path / "src", ["m.pt", "m.safetensors", "n.pt", "n.pth", "M.bin", "a.pt",
                                     "a.safetensors/b.pt"])
    _, names = _round_trip(src, tmp_path)
    ids = {r["source_path"]: r["model_id"] for r in open_zoo(tmp_path / "z1").table.to_pylist()}
    assert names["m.safetensors"] == "m.safetensors"
    for renamed in ("m.pt", "M.bin", "n.pt", "n.pth", "a.pt"):  # M.bin: m.safetensors on a case-blind disk
        assert names[renamed] == f"{ids[renamed]}.safetensors"
    assert names["a.safetensors/b.pt"] == "a.safetensors/b.safetensors"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_failed_export_leaves_no_half_written_folder(tmp_path, monkeypatch):
    import zoo_builders.importers.statedict as statedict

    src = _folder(tmp_path / "src", ["a.pt", "b.pt", "c.pt"])
    import_statedicts(src, tmp_path / "zoo", quiet=True)
    real, calls = statedict.save_file, []

    def failing(tensors, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(tensors, path)

    monkeypatch.setattr(statedict, "save_file", failing)
    with pytest.raises(OSError, match="disk full"):
        export_statedict(tmp_path / "zoo", tmp_path / "new" / "out", quiet=True)
    assert not (tmp_path / "new").exists()  # created by the export: removed, parents too
    (tmp_path / "empty").mkdir()
    calls.clear()
    with pytest.raises(OSError, match="disk full"):
        export_statedict(tmp_path / "zoo", tmp_path / "empty", quiet=True)
    assert list((tmp_path / "empty").iterdir()) == []  # given empty: left empty


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_two_architectures_round_trip_to_the_same_bytes(multi_arch_dir, tmp_path):
    """A zoo's rows are in the order it was made (here: two widths, written interleaved); the
    re-imported zoo groups them by architecture. metadata.jsonl is sorted by file, so both
    exports are the same bytes."""
    first, again, second = tmp_path / "e1", tmp_path / "z", tmp_path / "e2"
    export_statedict(multi_arch_dir, first, quiet=True)
    import_statedicts(first, again, quiet=True)
    export_statedict(again, second, quiet=True)
    assert _same_tree(first, second)
    files = [json.loads(line)["file"] for line in (first / "metadata.jsonl").read_text().splitlines()]
    assert files == sorted(files) and len(files) == len(open_zoo(multi_arch_dir).table)


@pytest.mark.parametrize("ids, message", [
    (["m", "m"], "model_id 'm' is given to two rows (rows 0 and 1)"),  # said 'their ids differ only in case'
    (["M", "m"], "their ids differ only in case"),
    (["../../x", "m"], "its file '../../x.safetensors' leads outside the export folder OUT"),  # said 'the zoo'
    (["a b", "m"], "its file 'a b.safetensors' is not a valid file path in the export folder OUT"),
])
def test_ids_that_cannot_name_an_exported_file_are_refused_in_their_own_words(ids, message):
    from catalog.errors import WeightzooError
    from zoo_builders.importers.statedict import export_names

    records = [{"model_id": i} for i in ids]
    with pytest.raises(WeightzooError, match=re.escape(message)):
        export_names(records, "the export folder OUT")
    assert export_names([{"model_id": "a/b"}, {"model_id": "m"}]) == ["a/b.safetensors", "m.safetensors"]


def test_export_of_a_path_like_model_id_names_the_export_folder_and_writes_nothing(zoo_copy, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from zoo_helpers import assert_one_line_error, rewrite_part, run_cli

    part = "models/part-00000.parquet"
    table = pq.read_table(zoo_copy / part)
    ids = ["../../escaped"] + table.column("model_id").to_pylist()[1:]
    rewrite_part(zoo_copy, part, table.set_column(table.schema.get_field_index("model_id"), "model_id", pa.array(ids)))
    out = tmp_path / "deep" / "out"
    r = run_cli("export", zoo_copy, "--layout", "state-dicts", "--out", out, "-q")
    assert_one_line_error(r, "'../../escaped.safetensors' leads outside the export folder", str(out))
    assert "the zoo's files" not in r.output and not out.exists() and not (tmp_path / "escaped.safetensors").exists()
