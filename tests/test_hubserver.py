"""Tests of the offline Hub server (tests/hubserver.py) against the real huggingface_hub client.

``huggingface_hub`` reads ``HF_ENDPOINT`` at import time, so the shared server is started and the
environment configured at import of this module; ``huggingface_hub`` is only imported inside tests.
"""

from __future__ import annotations

import io
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    import hubserver
except ImportError:  # tests/ is a package
    from tests import hubserver

HUB = hubserver.ensure_global_server()

# huggingface_hub's LFS PUT passes a file object as `data=`, which httpx2 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")


@pytest.fixture
def hub() -> Iterator[hubserver.HubServer]:
    """The shared server with an empty request log."""
    HUB.requests_log.clear()
    yield HUB


def _repo_id() -> str:
    return f"test-org/repo-{uuid.uuid4().hex[:10]}"


def _parquet_bytes(rows: dict[str, list]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table(rows), buf)
    return buf.getvalue()


def _make_folder(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def _lfs_puts(hub: hubserver.HubServer) -> list[str]:
    return [path for method, path in hub.requests_log if method == "PUT"]


README = b"""---
configs:
- config_name: default
  data_files:
  - split: train
    path: "models/*.parquet"
---
# A test dataset
"""


@pytest.fixture
def dataset_files() -> dict[str, bytes]:
    return {
        "README.md": README,
        "config.json": b'{"a": 1}\n',
        "models/part-0.parquet": _parquet_bytes({"name": ["m0", "m1"], "score": [0.5, 0.25]}),
        "models/part-1.parquet": _parquet_bytes({"name": ["m2"], "score": [1.0]}),
        "weights/model.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + bytes(range(64)),
    }


@pytest.fixture
def pushed(hub: hubserver.HubServer, tmp_path: Path, dataset_files: dict[str, bytes]):
    """A dataset repo with ``dataset_files`` pushed in one commit; returns (repo_id, commit)."""
    from huggingface_hub import HfApi

    api = HfApi()
    repo_id = _repo_id()
    api.create_repo(repo_id, repo_type="dataset")
    folder = _make_folder(tmp_path / "src", dataset_files)
    info = api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type="dataset")
    return repo_id, info.oid


def test_create_repo_conflict_and_exist_ok(hub: hubserver.HubServer) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    repo_id = _repo_id()
    url = api.create_repo(repo_id, repo_type="dataset")
    assert url.repo_id == repo_id and url.repo_type == "dataset"
    assert url == f"{hub.url}/datasets/{repo_id}"
    with pytest.raises(HfHubHTTPError) as excinfo:
        api.create_repo(repo_id, repo_type="dataset")
    assert excinfo.value.response.status_code == 409
    assert api.create_repo(repo_id, repo_type="dataset", exist_ok=True).repo_id == repo_id
    assert api.list_repo_files(repo_id, repo_type="dataset") == [".gitattributes"]
    refs = api.list_repo_refs(repo_id, repo_type="dataset")
    assert [b.name for b in refs.branches] == ["main"] and refs.tags == []
    assert api.repo_exists(repo_id, repo_type="dataset")
    assert not api.repo_exists(repo_id, repo_type="model")


def test_upload_folder_regular_and_lfs(hub, pushed, dataset_files) -> None:
    from huggingface_hub import HfApi

    api = HfApi()
    repo_id, commit = pushed
    assert sorted(_lfs_puts(hub)) == sorted(
        f"/__lfs__/dataset/{repo_id}/{hubserver.hashlib.sha256(dataset_files[p]).hexdigest()}"
        for p in ("models/part-0.parquet", "models/part-1.parquet", "weights/model.safetensors")
    )
    assert sorted(api.list_repo_files(repo_id, repo_type="dataset")) == sorted(
        [".gitattributes", *dataset_files]
    )
    infos = {
        i.path: i
        for i in api.get_paths_info(
            repo_id, list(dataset_files), repo_type="dataset", revision=commit, expand=True
        )
    }
    assert infos["config.json"].lfs is None
    assert infos["config.json"].blob_id == hubserver.git_blob_sha1(dataset_files["config.json"])
    parquet = infos["models/part-0.parquet"]
    assert parquet.lfs is not None and parquet.size == len(dataset_files["models/part-0.parquet"])
    assert parquet.lfs.sha256 == hubserver.hashlib.sha256(dataset_files[parquet.path]).hexdigest()
    assert infos["weights/model.safetensors"].lfs is not None
    assert parquet.last_commit is not None and parquet.last_commit.oid == commit
    tree = api.list_repo_tree(repo_id, repo_type="dataset")
    assert {(t.path, type(t).__name__) for t in tree} == {
        (".gitattributes", "RepoFile"),
        ("README.md", "RepoFile"),
        ("config.json", "RepoFile"),
        ("models", "RepoFolder"),
        ("weights", "RepoFolder"),
    }
    sub = api.list_repo_tree(repo_id, "models", repo_type="dataset", recursive=True)
    assert sorted(t.path for t in sub) == ["models/part-0.parquet", "models/part-1.parquet"]
    info = api.dataset_info(repo_id, files_metadata=True)
    assert info.sha == commit and info.id == repo_id and info.private is False
    siblings = {s.rfilename: s for s in info.siblings}
    assert siblings["models/part-1.parquet"].lfs is not None
    assert siblings["README.md"].lfs is None and siblings["README.md"].size == len(README)
    commits = api.list_repo_commits(repo_id, repo_type="dataset")
    assert [c.commit_id for c in commits][0] == commit
    assert [c.title for c in commits] == ["Upload folder using huggingface_hub", "initial commit"]


def test_second_identical_upload_is_a_no_op(hub, pushed, tmp_path, dataset_files) -> None:
    from huggingface_hub import HfApi

    api = HfApi()
    repo_id, commit = pushed
    folder = _make_folder(tmp_path / "again", dataset_files)
    hub.requests_log.clear()
    info = api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type="dataset")
    # Unchanged files are dropped client-side from the preupload `oid`s, LFS objects already
    # present get no upload action => no PUT, no commit request, head unchanged.
    assert info.oid == commit
    assert _lfs_puts(hub) == []
    assert not [p for m, p in hub.requests_log if m == "POST" and "/commit/" in p]
    assert len(api.list_repo_commits(repo_id, repo_type="dataset")) == 2

    # Changing one regular file commits only that file (and still uploads no LFS object).
    (folder / "config.json").write_bytes(b'{"a": 2}\n')
    hub.requests_log.clear()
    info2 = api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type="dataset")
    assert info2.oid != commit and _lfs_puts(hub) == []
    assert api.list_repo_commits(repo_id, repo_type="dataset")[0].commit_id == info2.oid


def test_snapshot_download_full_and_allow_patterns(hub, pushed, tmp_path, dataset_files) -> None:
    from huggingface_hub import snapshot_download

    repo_id, commit = pushed
    hub.requests_log.clear()
    path = Path(snapshot_download(repo_id, repo_type="dataset", cache_dir=tmp_path / "c1"))
    assert path.name == commit
    for rel, data in dataset_files.items():
        assert (path / rel).read_bytes() == data
    assert sorted(hub.resolved_files()) == sorted([".gitattributes", *dataset_files])

    hub.requests_log.clear()
    path2 = snapshot_download(
        repo_id, repo_type="dataset", allow_patterns="models/*", cache_dir=tmp_path / "c2"
    )
    assert sorted(hub.resolved_files()) == ["models/part-0.parquet", "models/part-1.parquet"]
    assert sorted(p.name for p in Path(path2).rglob("*") if p.is_file()) == [
        "part-0.parquet",
        "part-1.parquet",
    ]

    hub.requests_log.clear()
    local = tmp_path / "local"
    snapshot_download(repo_id, repo_type="dataset", local_dir=local, allow_patterns=["*.json"])
    assert (local / "config.json").read_bytes() == dataset_files["config.json"]
    assert hub.resolved_files() == ["config.json"]


def test_hf_hub_download_earlier_commit_and_tag(hub, pushed, tmp_path) -> None:
    from huggingface_hub import HfApi, hf_hub_download

    api = HfApi()
    repo_id, first = pushed
    api.create_tag(repo_id, tag="v1", repo_type="dataset")
    api.upload_file(
        path_or_fileobj=b'{"a": 42}\n',
        path_in_repo="config.json",
        repo_id=repo_id,
        repo_type="dataset",
    )

    def read(revision: str | None) -> bytes:
        return Path(
            hf_hub_download(
                repo_id,
                "config.json",
                repo_type="dataset",
                revision=revision,
                cache_dir=tmp_path / "cache",
            )
        ).read_bytes()

    assert read(None) == b'{"a": 42}\n'
    assert read(first) == b'{"a": 1}\n'
    assert read(first[:12]) == b'{"a": 1}\n'
    assert read("v1") == b'{"a": 1}\n'
    assert [t.name for t in api.list_repo_refs(repo_id, repo_type="dataset").tags] == ["v1"]
    # LFS file through hf_hub_download: ETag is the sha256 (X-Linked-Etag), size from X-Linked-Size.
    meta = api.get_hf_file_metadata(
        url=f"{hub.url}/datasets/{repo_id}/resolve/main/models/part-0.parquet"
    )
    info = api.get_paths_info(repo_id, "models/part-0.parquet", repo_type="dataset")[0]
    assert meta.etag == info.lfs.sha256 and meta.size == info.size
    assert meta.commit_hash == api.dataset_info(repo_id).sha


def test_branch_create_and_upload(hub, pushed, tmp_path) -> None:
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import RevisionNotFoundError

    api = HfApi()
    repo_id, main_commit = pushed
    folder = _make_folder(tmp_path / "b", {"extra.txt": b"on dev\n"})
    with pytest.raises(RevisionNotFoundError):
        api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type="dataset", revision="dev")
    api.create_branch(repo_id, branch="dev", repo_type="dataset")
    api.create_branch(repo_id, branch="dev", repo_type="dataset", exist_ok=True)
    info = api.upload_folder(
        folder_path=folder, repo_id=repo_id, repo_type="dataset", revision="dev"
    )
    refs = {
        b.name: b.target_commit for b in api.list_repo_refs(repo_id, repo_type="dataset").branches
    }
    assert refs == {"main": main_commit, "dev": info.oid}
    assert "extra.txt" in api.list_repo_files(repo_id, repo_type="dataset", revision="dev")
    assert "extra.txt" not in api.list_repo_files(repo_id, repo_type="dataset")
    path = hf_hub_download(
        repo_id, "extra.txt", repo_type="dataset", revision="dev", cache_dir=tmp_path / "c"
    )
    assert Path(path).read_bytes() == b"on dev\n"
    assert api.dataset_info(repo_id, revision="dev").sha == info.oid


def test_not_found_errors(hub, pushed, tmp_path) -> None:
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    api = HfApi()
    repo_id, _ = pushed
    cache = tmp_path / "cache"
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("test-org/missing", "x.txt", repo_type="dataset", cache_dir=cache)
    with pytest.raises(RepositoryNotFoundError):
        api.dataset_info("test-org/missing")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(repo_id, "config.json", cache_dir=cache)  # wrong repo type
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(
            repo_id, "config.json", repo_type="dataset", revision="nope", cache_dir=cache
        )
    with pytest.raises(RevisionNotFoundError):
        api.dataset_info(repo_id, revision="0" * 40)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "missing.txt", repo_type="dataset", cache_dir=cache)
    assert not api.file_exists(repo_id, "missing.txt", repo_type="dataset")
    assert api.file_exists(repo_id, "config.json", repo_type="dataset")


def test_tamper_changes_served_bytes_only(hub, pushed, tmp_path, dataset_files) -> None:
    from huggingface_hub import HfApi, hf_hub_download

    api = HfApi()
    repo_id, commit = pushed
    original = dataset_files["weights/model.safetensors"]
    corrupted = bytes([original[0] ^ 0xFF]) + original[1:]
    hub.tamper("dataset", repo_id, "weights/model.safetensors", corrupted)
    assert api.dataset_info(repo_id).sha == commit  # no new commit
    path = hf_hub_download(
        repo_id, "weights/model.safetensors", repo_type="dataset", cache_dir=tmp_path / "c"
    )
    assert Path(path).read_bytes() == corrupted
    info = api.get_paths_info(repo_id, "weights/model.safetensors", repo_type="dataset")[0]
    assert info.lfs.sha256 == hubserver.hashlib.sha256(original).hexdigest()  # metadata unchanged


def test_resolve_headers_and_range(hub, pushed, dataset_files) -> None:
    repo_id, commit = pushed
    base = f"{hub.url}/datasets/{repo_id}/resolve/main"
    head = urllib.request.urlopen(urllib.request.Request(f"{base}/config.json", method="HEAD"))
    assert head.headers["X-Repo-Commit"] == commit
    assert head.headers["ETag"] == f'"{hubserver.git_blob_sha1(dataset_files["config.json"])}"'
    assert "X-Linked-Etag" not in head.headers
    req = urllib.request.Request(f"{base}/models/part-0.parquet", headers={"Range": "bytes=4-9"})
    resp = urllib.request.urlopen(req)
    data = dataset_files["models/part-0.parquet"]
    assert resp.status == 206 and resp.read() == data[4:10]
    assert resp.headers["Content-Range"] == f"bytes 4-9/{len(data)}"
    assert resp.headers["X-Linked-Size"] == str(len(data))
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(f"{base}/nope.txt")
    assert excinfo.value.code == 404 and excinfo.value.headers["X-Error-Code"] == "EntryNotFound"


def test_hf_file_system_reads(hub, pushed, dataset_files) -> None:
    from huggingface_hub import HfFileSystem

    repo_id, _ = pushed
    fs = HfFileSystem()
    assert sorted(fs.glob(f"datasets/{repo_id}/models/*.parquet")) == [
        f"datasets/{repo_id}/models/part-0.parquet",
        f"datasets/{repo_id}/models/part-1.parquet",
    ]
    with fs.open(f"datasets/{repo_id}/models/part-1.parquet", "rb", block_size=16) as f:
        f.seek(3)
        assert f.read(20) == dataset_files["models/part-1.parquet"][3:23]
    assert fs.info(f"datasets/{repo_id}/config.json")["size"] == len(dataset_files["config.json"])


def test_read_only_and_private(hub, pushed, tmp_path) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    api = HfApi()
    repo_id, _ = pushed
    hub.set_read_only(repo_id)
    try:
        folder = _make_folder(tmp_path / "ro", {"x.txt": b"x"})
        with pytest.raises(HfHubHTTPError) as excinfo:
            api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type="dataset")
        assert excinfo.value.response.status_code == 403
        assert api.create_repo(repo_id, repo_type="dataset", exist_ok=True).repo_id == repo_id
    finally:
        hub.set_read_only(repo_id, False)

    private_id = _repo_id()
    api.create_repo(private_id, private=True)
    assert api.model_info(private_id).private is True
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token="someone-else").model_info(private_id)


def test_delete_operations(hub, pushed) -> None:
    from huggingface_hub import CommitOperationDelete, HfApi
    from huggingface_hub.errors import EntryNotFoundError

    api = HfApi()
    repo_id, _ = pushed
    api.delete_folder("models", repo_id=repo_id, repo_type="dataset")
    api.delete_file("config.json", repo_id=repo_id, repo_type="dataset")
    files = api.list_repo_files(repo_id, repo_type="dataset")
    assert sorted(files) == [".gitattributes", "README.md", "weights/model.safetensors"]
    with pytest.raises(EntryNotFoundError):
        api.create_commit(
            repo_id,
            [CommitOperationDelete("config.json")],
            commit_message="again",
            repo_type="dataset",
        )


def test_load_dataset_from_hub(hub, pushed, tmp_path) -> None:
    datasets = pytest.importorskip("datasets")
    hubserver.configure_datasets()
    repo_id, _ = pushed
    del hubserver.BLOCKED_HOSTS[:]
    ds = datasets.load_dataset(repo_id, split="train", cache_dir=str(tmp_path / "ds"))
    assert sorted(zip(ds["name"], ds["score"], strict=True)) == [
        ("m0", 0.5),
        ("m1", 0.25),
        ("m2", 1.0),
    ]
    assert hubserver.BLOCKED_HOSTS == []  # nothing tried to leave localhost


def test_chunked_lfs_put_and_unread_stream_does_not_block(hub) -> None:
    import http.client

    from huggingface_hub import HfApi

    api = HfApi()
    repo_id = _repo_id()
    api.create_repo(repo_id)
    host, port = hub.url.removeprefix("http://").split(":")
    data = b"chunked body"
    oid = hubserver.hashlib.sha256(data).hexdigest()
    for target, expected in ((oid, 200), ("0" * 64, 400)):
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("PUT", f"/__lfs__/model/{repo_id}/{target}", body=iter([data[:5], data[5:]]))
        assert conn.getresponse().status == expected
        conn.close()
    assert hub.repos[("model", repo_id)].lfs_objects == {oid: len(data)}

    big = bytes(24 << 20)  # larger than the socket buffers
    api.upload_file(path_or_fileobj=big, path_in_repo="big.bin", repo_id=repo_id)
    stream = http.client.HTTPConnection(host, int(port), timeout=10)
    stream.request("GET", f"/{repo_id}/resolve/main/big.bin")
    response = stream.getresponse()  # body left unread: the server thread blocks writing it
    assert api.model_info(repo_id).sha is not None  # ... without holding the state lock
    assert response.read() == big
    stream.close()
