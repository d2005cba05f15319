"""Hostile Hub repos: a manifest crafted so that a pull would write outside ``--out`` (or read
outside the zoo) is refused, and nothing outside ``--out`` changes."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from hub_helpers import assert_one_line_error
from zoo_helpers import nest_shard_header

from catalog import open_zoo
from catalog.errors import ZooFormatError
from catalog.format import read_manifest
from zoo_cli.main import cli

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _everything(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def _push_hostile(zoo: Path, repo_id: str, edit: Callable[[dict], None]) -> None:
    """Push ``zoo``, then commit an edited ``zoo.json`` over it (as an attacker with write
    access to the repo would; the Hub's checksums then match the edited file)."""
    from huggingface_hub import HfApi

    from hub import push_zoo

    push_zoo(zoo, repo_id, progress=False)
    d = json.loads((zoo / "zoo.json").read_text())
    edit(d)
    HfApi().upload_file(path_or_fileobj=json.dumps(d, indent=2).encode(), path_in_repo="zoo.json",
                        repo_id=repo_id, repo_type="dataset")


@pytest.fixture
def victim(tmp_path: Path, built_zoo: Path) -> tuple[Path, str]:
    """Another local zoo at ``tmp_path/victim`` whose first shard has recognisable bytes, and the
    arch id of that shard."""
    root = tmp_path / "victim"
    shutil.copytree(built_zoo, root)
    shard = read_manifest(root).shard_files()[0]
    (root / shard.path).write_bytes(b"the victim's own shard")
    return root, shard.arch_id


def _traversal(arch: str) -> str:
    # --out is tmp_path/pulls/out; a pull stages in tmp_path/pulls/.tmp-pull-*/zoo, so four
    # levels up from its weights/ folder is tmp_path.
    return f"../../../../victim/weights/{arch}"


def _shard_arch(arch: str) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        for f in d["files"]:
            if f["kind"] == "shard" and f["arch_id"] == arch:
                f["arch_id"] = _traversal(arch)
    return edit


def _arch_key(arch: str) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        d["architectures"][_traversal(arch)] = d["architectures"].pop(arch)
        for f in d["files"]:
            if f["arch_id"] == arch:
                f["arch_id"] = _traversal(arch)
    return edit


def _file_path(arch: str) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        for f in d["files"]:
            if f["kind"] == "shard" and f["arch_id"] == arch:
                f["path"] = f"weights/{_traversal(arch)}/shard-00000.safetensors"
    return edit


@pytest.mark.parametrize("edit", [_shard_arch, _arch_key, _file_path])
@pytest.mark.parametrize("partial", [True, False], ids=["where", "full"])
def test_traversal_in_the_manifest_is_refused_and_nothing_outside_out_changes(
        hub, zoo_copy: Path, repo_id: str, tmp_path: Path, victim: tuple[Path, str],
        edit: Callable[[str], Callable[[dict], None]], partial: bool) -> None:
    victim_root, arch = victim
    _push_hostile(zoo_copy, repo_id, edit(arch))
    before = _tree(victim_root)
    outside = _everything(tmp_path)
    out = tmp_path / "pulls" / "out"
    where = ["--where", f"arch_id = '{arch}'"] if partial else []
    result = CliRunner().invoke(cli, ["pull", repo_id, *where, "--out", str(out), "-q"])
    assert_one_line_error(result, repo_id, "zoo.json", "refusing")
    assert _tree(victim_root) == before
    assert not out.exists()
    assert _everything(tmp_path) == sorted(outside + ["pulls"])
    assert list((tmp_path / "pulls").iterdir()) == []


def test_load_zoo_refuses_a_traversal_arch_id(hub, zoo_copy: Path, repo_id: str,
                                              victim: tuple[Path, str]) -> None:
    from hub import load_zoo

    _, arch = victim
    _push_hostile(zoo_copy, repo_id, _arch_key(arch))
    with pytest.raises(ZooFormatError, match="architectures"):
        load_zoo(repo_id, progress=False)


def _upload_crafted(zoo: Path, repo_id: str) -> None:
    """Upload ``zoo`` as it is, its manifest's checksums recomputed (`zoo push` refuses a zoo
    that does not verify; an attacker uploads directly)."""
    from huggingface_hub import HfApi

    from catalog.format import sha256_file, write_manifest

    manifest = read_manifest(zoo)
    for f in manifest.files:
        f.sha256, f.bytes = sha256_file(zoo / f.path), (zoo / f.path).stat().st_size
    write_manifest(zoo, manifest)
    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset")
    api.upload_folder(folder_path=zoo, repo_id=repo_id, repo_type="dataset")


@pytest.mark.parametrize("partial", [True, False], ids=["where", "full"])
def test_rows_pointing_outside_the_zoo_are_refused(hub, zoo_copy: Path, repo_id: str,
                                                   tmp_path: Path, partial: bool) -> None:
    """Rows whose weights_shard leads out of the zoo: a full pull accepted them (and `zoo
    verify` then said to pull again); both pulls refuse them now, and loading refuses them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    part = read_manifest(zoo_copy).part_files()[0]
    table = pq.read_table(zoo_copy / part.path)
    i = table.schema.get_field_index("weights_shard")
    table = table.set_column(i, "weights_shard", pa.array(["../../x"] * table.num_rows))
    pq.write_table(table, zoo_copy / part.path)
    _upload_crafted(zoo_copy, repo_id)

    where = ["--where", "true"] if partial else []
    result = CliRunner().invoke(cli, ["pull", repo_id, *where, "--out", str(tmp_path / "out"), "-q"])
    assert_one_line_error(result, "'../../x'", "does not list", "nothing was written")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ZooFormatError, match=r"'\.\./\.\./x'.*not a weight shard"):
        open_zoo(zoo_copy).select().stacked(arch_id=part.arch_id)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "deep"])
@pytest.mark.parametrize("partial", [True, False], ids=["where", "full"])
def test_a_shard_that_is_not_safetensors_is_refused(hub, zoo_copy: Path, repo_id: str, tmp_path: Path,
                                                    damage: str, partial: bool) -> None:
    """A shard whose checksum matches (a crafted repo) but whose header is not a safetensors
    header (garbage; JSON nested so deep that it raised a RecursionError), or names tensors past
    the end of the file, is refused by the pull itself."""
    shard = read_manifest(zoo_copy).shard_files()[0]
    path = zoo_copy / shard.path
    data = path.read_bytes()
    if damage == "deep":
        nest_shard_header(zoo_copy)
    else:
        path.write_bytes(b"\xff" * 64 if damage == "garbage" else data[:-8])
    _upload_crafted(zoo_copy, repo_id)

    where = ["--where", f"arch_id = '{shard.arch_id}'"] if partial else []
    result = CliRunner().invoke(cli, ["pull", repo_id, *where, "--out", str(tmp_path / "out"), "-q"])
    assert_one_line_error(result, shard.path, "safetensors", "nothing was written")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("partial", [True, False], ids=["where", "full"])
def test_a_part_listed_twice_is_refused_before_anything_is_written(hub, zoo_copy: Path, repo_id: str,
                                                                   tmp_path: Path, partial: bool) -> None:
    """The pull accepted it and wrote a zoo whose rows were all doubled (which verify refused)."""
    def edit(d: dict) -> None:
        d["files"].append(next(f for f in d["files"] if f["kind"] == "part"))

    _push_hostile(zoo_copy, repo_id, edit)
    where = ["--where", "true"] if partial else []
    result = CliRunner().invoke(cli, ["pull", repo_id, *where, "--out", str(tmp_path / "out"), "-q"])
    assert_one_line_error(result, "zoo.json", "is listed already")
    assert not (tmp_path / "out").exists()


def test_a_deeply_nested_manifest_is_refused(hub, zoo_copy: Path, repo_id: str, tmp_path: Path) -> None:
    """zoo.json as [[[[...]]]]: the pull printed a RecursionError traceback."""
    from huggingface_hub import HfApi

    from hub import push_zoo

    push_zoo(zoo_copy, repo_id, progress=False)
    HfApi().upload_file(path_or_fileobj=("[" * 200_000 + "]" * 200_000).encode(), path_in_repo="zoo.json",
                        repo_id=repo_id, repo_type="dataset")
    result = CliRunner().invoke(cli, ["pull", repo_id, "--out", str(tmp_path / "out"), "-q"])
    assert_one_line_error(result, "zoo.json", "is not valid JSON", "levels deep")
    assert not (tmp_path / "out").exists()


def test_subset_refuses_a_traversal_arch_id_even_past_the_manifest_check(
        pushed, tmp_path: Path, victim: tuple[Path, str]) -> None:
    """Defense in depth: subset_zoo builds every destination with safe_join."""
    from hub.subset import subset_zoo

    victim_root, arch = victim
    _, _, src_zoo = pushed
    src = tmp_path / "pulls" / ".tmp-pull-x" / "download"
    shutil.copytree(src_zoo, src)
    manifest = read_manifest(src)
    for f in manifest.files:
        if f.kind == "shard" and f.arch_id == arch:
            f.arch_id = _traversal(arch)  # in memory: past Manifest.from_dict
    before = _tree(victim_root)
    ids = open_zoo(src).table.column("model_id").to_pylist()
    with pytest.raises(ZooFormatError, match="outside|not a valid"):
        subset_zoo(src, tmp_path / "pulls" / ".tmp-pull-x" / "zoo", manifest, ids)
    assert _tree(victim_root) == before
