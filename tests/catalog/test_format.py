"""catalog.format: the manifest's structure is validated on read (one clear error naming the
field), and files are written atomically with the permissions the umask asks for."""

from __future__ import annotations

import copy
import json
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from zoo_helpers import write_zoo

from catalog.errors import IntegrityError, ZooFormatError
from catalog.format import (
    MAX_JSON_DEPTH,
    TMP_PREFIX,
    Manifest,
    atomic_path,
    atomic_write_bytes,
    parse_json,
    read_manifest,
    tmp_path_for,
    write_manifest,
)


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ================================================================================ permissions
@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("mask, want", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_respect_the_umask(tmp_path: Path, mask: int, want: int) -> None:
    with umask(mask):
        atomic_write_bytes(tmp_path / "a.json", b"{}")
        tmp = tmp_path_for(tmp_path / "b.parquet")
        with atomic_path(tmp_path / "c.safetensors") as p:
            p.write_bytes(b"c")
    assert mode(tmp_path / "a.json") == want
    assert mode(tmp) == want
    assert mode(tmp_path / "c.safetensors") == want


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_every_file_of_a_built_zoo_is_readable_by_others_under_umask_022(tmp_path: Path) -> None:
    with umask(0o022):
        root = write_zoo(tmp_path / "zoo", "perm", range(3))
    files = [p for p in root.rglob("*") if p.is_file()]
    assert {p.relative_to(root).parts[0] for p in files} >= {"zoo.json", "README.md", "models", "weights"}
    assert {p.relative_to(root).as_posix(): oct(mode(p)) for p in files} == {
        p.relative_to(root).as_posix(): oct(0o644) for p in files}
    dirs = [p for p in root.rglob("*") if p.is_dir()]
    assert all(mode(d) == 0o755 for d in dirs), {str(d): oct(mode(d)) for d in dirs}


# ================================================================================ atomic_path
def test_atomic_path_renames_on_success(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "part-00000.parquet"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(TMP_PREFIX)
        assert tmp.suffix == ".parquet" and tmp.exists() and not target.exists()
        tmp.write_bytes(b"data")
    assert target.read_bytes() == b"data"
    assert [p.name for p in target.parent.iterdir()] == ["part-00000.parquet"]


def test_atomic_path_leaves_the_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "zoo.json"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["zoo.json"]


def test_atomic_path_works_when_the_writer_replaces_the_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    with atomic_path(target) as tmp:
        tmp.unlink()
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"


def test_tmp_names_are_unique(tmp_path: Path) -> None:
    names = {tmp_path_for(tmp_path / "a.parquet").name for _ in range(50)}
    assert len(names) == 50


# ================================================================================ manifest
@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = write_zoo(tmp_path_factory.mktemp("fmt") / "z", "z", range(2), hidden=(8, 6), parts=1)
    return json.loads((root / "zoo.json").read_text())


def test_good_manifest_round_trips(good: dict) -> None:
    m = Manifest.from_dict(good)
    assert m.to_dict() == good
    assert Manifest.from_dict(m.to_dict()) == m


def _arch(d: dict) -> str:
    return next(iter(d["architectures"]))


def _set(path: str, value: object) -> Callable[[dict], None]:
    """An edit that sets ``d[k1][k2]...`` (``#`` = the first architecture's key)."""
    def edit(d: dict) -> None:
        keys = [(_arch(d) if k == "#" else int(k) if k.isdigit() else k) for k in path.split(".")]
        target = d
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value
    return edit


def _rename_arch(new: str) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        old = _arch(d)
        d["architectures"][new] = d["architectures"].pop(old)
        for f in d["files"]:
            if f["arch_id"] == old:
                f["arch_id"] = new
    return edit


def _drop(key: str) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        del d["files"][0][key]
    return edit


TRAVERSAL = "../../../../victim/weights/mlp-0123456789"

MALFORMED = {
    # field named in the message, edit
    "string architecture": ("architectures", _set("architectures.#", "mlp")),
    "architectures list": ("architectures", _set("architectures", ["mlp"])),
    "architecture not a spec": ("architectures", _set("architectures.#.layers", "x")),
    "architecture bad shape": ("architectures", _set("architectures.#.input_shape", ["a"])),
    "arch id traversal": ("architectures", _rename_arch(TRAVERSAL)),
    "arch id slash": ("architectures", _rename_arch("mlp/x")),
    "file arch id traversal": ("files[0].arch_id", _set("files.0.arch_id", TRAVERSAL)),
    "counts string": ("counts", _set("counts", "48")),
    "counts value string": ("counts.rows", _set("counts.rows", "48")),
    "counts value negative": ("counts.rows", _set("counts.rows", -1)),
    "counts value bool": ("counts.rows", _set("counts.rows", True)),
    "files dict": ("files", _set("files", {})),
    "file not a dict": ("files[1]", _set("files.1", "models/part-00000.parquet")),
    "file path traversal": ("files[0].path", _set("files.0.path", "weights/../../x.safetensors")),
    "file path absolute": ("files[0].path", _set("files.0.path", "/etc/passwd")),
    "file path outside data folders": ("files[0].path", _set("files.0.path", "stats/x.safetensors")),
    "file path wrong folder": ("files[0].path", _set("files.0.path", "models/x.safetensors")),
    "file kind": ("files[0].kind", _set("files.0.kind", "table")),
    "file sha256": ("files[0].sha256", _set("files.0.sha256", "not-hex")),
    "file sha256 short": ("files[0].sha256", _set("files.0.sha256", "ab" * 10)),
    "file bytes negative": ("files[0].bytes", _set("files.0.bytes", -5)),
    "file rows string": ("files[0].rows", _set("files.0.rows", "12")),
    "file missing sha256": ("files[0]", _drop("sha256")),
    "file unknown key": ("files[0]", _set("files.0.extra", 1)),
    "shard without arch": ("files[0].arch_id", _set("files.0.arch_id", None)),
    "complete string": ("complete", _set("complete", "yes")),
    "source list": ("source", _set("source", [])),
    "spec string": ("spec", _set("spec", "spec.yaml")),
    "datasets list": ("datasets", _set("datasets", [])),
    "name int": ("name", _set("name", 3)),
    "name empty": ("name", _set("name", "")),
    "name traversal": ("name", _set("name", "../../x")),
    "name dotdot": ("name", _set("name", "..")),
    "name dot": ("name", _set("name", ".")),
    "name backslash": ("name", _set("name", "a\\b")),
    "created_by int": ("created_by", _set("created_by", 1)),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_manifest_names_the_field(good: dict, case: str) -> None:
    field, edit = MALFORMED[case]
    d = copy.deepcopy(good)
    assert d["files"][0]["kind"] == "shard"
    edit(d)
    with pytest.raises(ZooFormatError) as e:
        Manifest.from_dict(d)
    msg = str(e.value)
    assert f"zoo.json: {field}" in msg, msg
    assert "\n" not in msg


def test_read_manifest_names_the_file(good: dict, tmp_path: Path) -> None:
    d = copy.deepcopy(good)
    d["counts"] = "48"
    (tmp_path / "zoo.json").write_text(json.dumps(d))
    with pytest.raises(ZooFormatError, match=f"{tmp_path / 'zoo.json'}.*counts"):
        read_manifest(tmp_path)


def test_a_file_listed_twice_is_refused(good: dict, tmp_path: Path) -> None:
    """A part listed twice doubled every row of it (queries, selections, pulls) before."""
    from catalog import open_zoo

    d = copy.deepcopy(good)
    part = next(f for f in d["files"] if f["kind"] == "part")
    d["files"].append(dict(part))
    (tmp_path / "zoo.json").write_text(json.dumps(d))
    want = rf"zoo\.json: files\[{len(d['files']) - 1}\]\.path '{part['path']}' is listed already"
    with pytest.raises(ZooFormatError, match=want):
        open_zoo(tmp_path)
    m = Manifest.from_dict(good)
    m.files.append(copy.copy(m.files[0]))
    with pytest.raises(ZooFormatError, match="listed already"):
        write_manifest(tmp_path / "w", m)


def test_write_manifest_refuses_what_could_not_be_read(good: dict, tmp_path: Path) -> None:
    m = Manifest.from_dict(good)
    m.files[0].arch_id = TRAVERSAL
    with pytest.raises(ZooFormatError, match="arch_id"):
        write_manifest(tmp_path, m)
    assert not (tmp_path / "zoo.json").exists()


# ================================================================================ untrusted JSON
def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("text, reason", [
    (_nested(200_000), "more than 100 levels deep"),  # json.loads: RecursionError
    (_nested(MAX_JSON_DEPTH + 1), "more than 100 levels deep"),  # parses, but crashes the next recursive walk
    ('{"a": [1, 2}', "Expecting"),
    (b"\xff\xfe\x00", "decode"),
])
def test_parse_json_raises_the_callers_error_naming_the_file(text: str | bytes, reason: str) -> None:
    with pytest.raises(IntegrityError) as e:
        parse_json(text, "weights/x.safetensors' header", IntegrityError, "re-pull the zoo")
    msg = str(e.value)
    assert msg.startswith("weights/x.safetensors' header is not valid JSON (") and msg.endswith("; re-pull the zoo")
    assert reason in msg and "\n" not in msg
    assert parse_json(_nested(MAX_JSON_DEPTH), "x") == parse_json(b" " + _nested(MAX_JSON_DEPTH).encode(), "x")


@pytest.mark.parametrize("depth", [200_000, 900])
def test_read_manifest_refuses_deeply_nested_json(good: dict, tmp_path: Path, depth: int) -> None:
    """zoo.json as ``[[[[...]]]]``: a RecursionError traceback before; nested just under Python's
    limit (in ``spec``), it read, and writing the manifest back (a sidecar, a pull) crashed."""
    text = json.dumps({**good, "spec": {"deep": "@"}}).replace('"@"', _nested(depth))
    (tmp_path / "zoo.json").write_text(text)
    with pytest.raises(ZooFormatError, match=r"zoo\.json is not valid JSON \(.*levels deep\); the manifest is corrupt"):
        read_manifest(tmp_path)
