"""catalog.paths: paths built from zoo data never leave the zoo, and loading refuses rows whose
``weights_shard`` is not a shard the manifest lists for the row's architecture."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from zoo_helpers import mlp_spec, random_weights, rewrite_part

from catalog import open_zoo
from catalog.errors import ZooFormatError
from catalog.paths import check_name, safe_join

PART = "models/part-00000.parquet"


# ================================================================================ safe_join
@pytest.mark.parametrize("rel", ["zoo.json", "models/part-00000.parquet",
                                 "weights/mlp-0123456789/shard-00000.safetensors",
                                 "stats/norm-abc.safetensors"])
def test_safe_join_accepts_paths_inside(tmp_path: Path, rel: str) -> None:
    assert safe_join(tmp_path, rel) == tmp_path / rel


@pytest.mark.parametrize("rel", [
    "../x", "weights/../../x", "weights/../../../../victim/weights/a/shard-00000.safetensors",
    "/etc/passwd", "", ".", "models/./part.parquet", "models//part.parquet", "models/",
    "models\\..\\x", "models/part\x00.parquet", ".hidden", "weights/.tmp-x", "C:/x",
    "models/part .parquet",
])
def test_safe_join_refuses_unsafe_paths(tmp_path: Path, rel: str) -> None:
    with pytest.raises(ZooFormatError, match="outside|not a valid"):
        safe_join(tmp_path, rel, "weight shard")


@pytest.mark.parametrize("rel", [None, 3, b"models/x", ["models", "x"]])
def test_safe_join_refuses_non_strings(tmp_path: Path, rel: object) -> None:
    with pytest.raises(ZooFormatError, match="not a valid"):
        safe_join(tmp_path, rel)  # type: ignore[arg-type]


def test_safe_join_refuses_a_symlinked_directory_that_leads_out(tmp_path: Path) -> None:
    root, outside = tmp_path / "zoo", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "weights").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ZooFormatError, match="outside"):
        safe_join(root, "weights/a/shard-00000.safetensors")


def test_safe_join_allows_a_symlinked_file_and_a_symlinked_root(tmp_path: Path) -> None:
    """The Hugging Face cache links each snapshot file to a blob outside the snapshot; a zoo
    directory may itself be reached through a link."""
    blob = tmp_path / "blobs" / "abc"
    blob.parent.mkdir()
    blob.write_bytes(b"x")
    snap = tmp_path / "snap"
    (snap / "weights" / "a").mkdir(parents=True)
    (snap / "weights" / "a" / "shard-00000.safetensors").symlink_to(blob)
    assert safe_join(snap, "weights/a/shard-00000.safetensors").read_bytes() == b"x"
    link = tmp_path / "link"
    link.symlink_to(snap, target_is_directory=True)
    assert safe_join(link, "weights/a/shard-00000.safetensors") == link / "weights/a/shard-00000.safetensors"


@pytest.mark.parametrize("value", ["mlp-0123456789", "cnn_a.b-1", "A" * 128])
def test_check_name_accepts(value: str) -> None:
    assert check_name(value, "arch_id") == value


@pytest.mark.parametrize("value", ["", ".", "..", "../x", "a/b", "a\\b", ".hidden", "-x", "a b",
                                   "A" * 129, None, 5])
def test_check_name_refuses(value: object) -> None:
    with pytest.raises(ZooFormatError, match="arch_id"):
        check_name(value, "arch_id")


# ================================================================================ loading
def _set_column(root: Path, part: str, column: str, values: list) -> pa.Table:
    table = pq.read_table(root / part)
    i = table.schema.get_field_index(column)
    table = table.set_column(i, column, pa.array(values, type=table.schema.field(i).type))
    rewrite_part(root, part, table)
    return table


def test_weights_shard_outside_the_zoo_is_refused(zoo_copy: Path, tmp_path: Path) -> None:
    """A row whose weights_shard is '../x' must not make loading read a file outside the zoo
    (here a copy of the real shard, so the read would otherwise succeed)."""
    table = pq.read_table(zoo_copy / PART)
    shard = table["weights_shard"][0].as_py()
    shutil.copyfile(zoo_copy / shard, zoo_copy.parent / "x")
    assert (zoo_copy / "../x").is_file()
    shards = table["weights_shard"].to_pylist()
    shards[0] = "../x"
    _set_column(zoo_copy, PART, "weights_shard", shards)
    zoo = open_zoo(zoo_copy)
    first = table["model_id"][0].as_py()
    with pytest.raises(ZooFormatError, match=r"'\.\./x'.*not a weight shard"):
        zoo.select(where=f"model_id = '{first}'").stacked()
    with pytest.raises(ZooFormatError, match=r"'\.\./x'"):
        zoo.state_dict(first)
    with pytest.raises(ZooFormatError, match=r"'\.\./x'"):
        zoo.select().stacked(verify=False)
    # the other rows still load
    assert len(zoo.select(where=f"model_id <> '{first}'").state_dicts()) == len(zoo) - 1


def test_unlisted_shard_inside_the_zoo_is_refused(zoo_copy: Path) -> None:
    table = pq.read_table(zoo_copy / PART)
    shard = table["weights_shard"][0].as_py()
    copy = Path(shard).with_name("shard-00099.safetensors").as_posix()
    shutil.copyfile(zoo_copy / shard, zoo_copy / copy)
    _set_column(zoo_copy, PART, "weights_shard", [copy] * table.num_rows)
    with pytest.raises(ZooFormatError, match="shard-00099.safetensors.*not a weight shard"):
        open_zoo(zoo_copy).select().stacked()


def test_row_pointing_into_a_shard_of_another_architecture_is_refused(tmp_path: Path) -> None:
    """Two architectures with the same parameter shapes (relu / tanh): the shard's tensors fit
    either, so only the manifest says whose they are."""
    from catalog import ZooWriter

    root = tmp_path / "acts"
    w = ZooWriter(root, "acts", {"name": "acts"})
    archs = []
    for i, act in enumerate(("relu", "tanh")):
        spec = mlp_spec(activation=act)
        arch = w.add_architecture(spec)
        rows = [{"model_id": f"{act}-{r}", "run_id": f"{act}-{r}", "checkpoint": 0, "status": "ok"}
                for r in range(3)]
        w.write_part(arch, random_weights(spec, 3, i), rows)
        archs.append(arch)
    w.finish(card="# acts\n")
    zoo = open_zoo(root)
    shard_b = next(f.path for f in zoo.manifest.shard_files() if f.arch_id == archs[1])
    part_a = next(f.path for f in zoo.manifest.part_files() if f.arch_id == archs[0])
    assert len(zoo.select().stacked(verify=False)["layers.0.weight"]) == 6  # same shapes stack
    _set_column(root, part_a, "weights_shard", [shard_b] * 3)
    zoo = open_zoo(root)
    sel = zoo.select(where=f"arch_id = '{archs[0]}'")
    with pytest.raises(ZooFormatError, match=f"{archs[0]} point into {shard_b}.*{archs[1]}"):
        sel.stacked(verify=False)
    with pytest.raises(ZooFormatError, match=f"{archs[0]} point into {shard_b}"):
        zoo.state_dict("relu-0", verify=False)


def test_clean_zoo_still_loads(zoo_dir: Path) -> None:
    zoo = open_zoo(zoo_dir)
    assert zoo.select().stacked()["layers.0.weight"].shape[0] == len(zoo) == 36


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_zoo_reached_through_a_symlink_loads(zoo_dir: Path, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(zoo_dir, target_is_directory=True)
    assert len(open_zoo(link).select().state_dicts()) == 36
