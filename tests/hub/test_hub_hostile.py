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


def test_rows_pointing_outside_the_zoo_are_refused_when_loading(hub, zoo_copy: Path, repo_id: str,
                                                                tmp_path: Path) -> None:
    """A full pull keeps the repo's Parquet bytes as they are; loading the pulled zoo must still
    refuse a row whose weights_shard leads out of it."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from huggingface_hub import HfApi

    from catalog.format import sha256_file, write_manifest
    from hub import pull_zoo

    manifest = read_manifest(zoo_copy)
    part = manifest.part_files()[0]
    table = pq.read_table(zoo_copy / part.path)
    i = table.schema.get_field_index("weights_shard")
    table = table.set_column(i, "weights_shard", pa.array(["../../x"] * table.num_rows))
    pq.write_table(table, zoo_copy / part.path)
    part.sha256, part.bytes = sha256_file(zoo_copy / part.path), (zoo_copy / part.path).stat().st_size
    write_manifest(zoo_copy, manifest)
    api = HfApi()  # `zoo push` refuses a zoo that does not verify; an attacker uploads directly
    api.create_repo(repo_id, repo_type="dataset")
    api.upload_folder(folder_path=zoo_copy, repo_id=repo_id, repo_type="dataset")

    with pytest.raises(ZooFormatError, match=r"'\.\./\.\./x'"):
        pull_zoo(repo_id, tmp_path / "partial", where="true", progress=False)
    out = pull_zoo(repo_id, tmp_path / "full", progress=False).path
    zoo = open_zoo(out)
    with pytest.raises(ZooFormatError, match=r"'\.\./\.\./x'.*not a weight shard"):
        zoo.select().stacked(arch_id=part.arch_id)


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
