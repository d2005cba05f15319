"""A small Hugging-Face-Hub-compatible HTTP server for offline tests (stdlib only).

It implements the subset of the Hub API that ``huggingface_hub`` (legacy LFS upload path,
i.e. ``HF_HUB_DISABLE_XET=1``) and ``datasets`` use for: ``create_repo``/``delete_repo``,
``upload_file``/``upload_folder``/``create_commit`` (add, delete, copy), ``create_branch``/
``create_tag``, ``repo_info``/``dataset_info``, ``list_repo_files``/``list_repo_tree``/
``get_paths_info``, ``list_repo_refs``, ``list_repo_commits``, ``hf_hub_download``,
``snapshot_download``, ``HfFileSystem`` and ``datasets.load_dataset("org/name")``.
It binds to ``127.0.0.1`` only; state is in memory, blobs under ``storage_dir/blobs``.

Behaviour copied from the real Hub:

* A new repo gets an ``initial commit`` holding the default ``.gitattributes``, so
  ``*.parquet``, ``*.safetensors``, ``*.bin`` ... are uploaded as LFS (as are files that
  look binary or are >= 10 MiB).  ``snapshot_download`` therefore also fetches ``.gitattributes``.
* ``preupload`` returns the remote ``oid`` of existing files (sha256 for LFS, git blob sha1
  for regular files); the client drops unchanged files and, when nothing changed, makes
  **no commit at all** (it returns the current head).  The LFS batch endpoint answers
  "already present" (no ``actions``) for objects the repo already has, so no PUT happens.
* ``resolve`` sets ``X-Repo-Commit``, ``ETag`` (git sha1 for regular files, sha256 for LFS),
  ``X-Linked-Etag``/``X-Linked-Size`` for LFS files, supports ``Range`` and answers errors
  with ``X-Error-Code`` ``RepoNotFound``/``RevisionNotFound``/``EntryNotFound`` (mapped by
  the client to ``RepositoryNotFoundError``/``RevisionNotFoundError``/``EntryNotFoundError``).
  Unlike the Hub, LFS content is served directly (200) instead of via a 302 to a CDN.
* Commits only target branches; ``create_pr`` is not supported (400).  Private repos are only
  visible to the token that created them (others get 404 ``RepoNotFound``).

Test helpers: ``requests_log`` ((method, unquoted path) of every request; LFS uploads are
``PUT /__lfs__/{type}/{org}/{name}/{sha256}``), ``resolved_files()`` (paths fetched through
``resolve``), ``tamper()`` (corrupt served bytes without a commit), ``set_read_only()`` (writes
answer 403), ``get_file()``, ``reset()``.

Recommended setup: ``huggingface_hub`` and ``datasets`` read ``HF_ENDPOINT`` (and build a
default ``HfApi``) *at import time*, so one process-wide server must be started and the
environment configured before they are imported anywhere.  Put this at the very top of
``tests/conftest.py`` (before any import of the package under test)::

    import hubserver  # or `from tests import hubserver` if tests/ is a package

    HUB = hubserver.ensure_global_server()  # starts once, sets HF_* env vars, blocks egress

and in test modules (``huggingface_hub``/``datasets`` imported afterwards, or inside tests)::

    HUB = hubserver.ensure_global_server()  # same instance; idempotent

    @pytest.fixture
    def hub():
        HUB.requests_log.clear()
        yield HUB

Use unique repo ids per test (or ``HUB.reset()``).  ``ensure_global_server`` sets
``HF_ENDPOINT``, ``HF_HOME`` (a temp dir), ``HF_TOKEN=dummy-token``, ``HF_HUB_DISABLE_XET=1``,
``HF_HUB_DISABLE_TELEMETRY=1``, ``HF_UPDATE_DOWNLOAD_COUNTS=0`` (``datasets`` otherwise HEADs
s3.amazonaws.com on every load), progress-bar switches and ``NO_PROXY``, and removes offline
and cache overrides.  It also installs a ``socket.getaddrinfo`` guard refusing non-loopback
hosts (recorded in ``BLOCKED_HOSTS``): ``datasets.load_dataset`` probes
``http://datasets-server.<endpoint host>`` (harmless once refused); ``configure_datasets()``
switches that probe off.
"""

from __future__ import annotations

import atexit
import base64
import dataclasses
import fnmatch
import hashlib
import ipaddress
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_TOKEN = "dummy-token"
DEFAULT_USER = "test-user"
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LFS_THRESHOLD = 10 * 1024 * 1024
_LFS_EXTS = (
    "7z arrow bin bz2 ckpt ftz gz h5 joblib mlmodel model msgpack npy npz onnx ot parquet pb pickle "
    "pkl pt pth rar safetensors tar tflite tgz wasm xz zip zst"
).split()
_LFS_GLOBS = ["*.lfs.*", "*.tar.*", "saved_model/**/*", "*tfevents*"]
_LFS_PATTERNS = [f"*.{ext}" for ext in _LFS_EXTS] + _LFS_GLOBS
DEFAULT_GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in _LFS_PATTERNS)
_API_SUBPATHS = set("revision tree paths-info preupload commit commits refs branch tag".split())
_WRITE_ACTIONS = ("preupload", "commit", "branch", "tag")
BLOCKED_HOSTS: list[str] = []


def git_blob_sha1(data: bytes) -> str:
    """Git object id of a blob holding ``data``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """Content of the git-lfs pointer file stored in git for an LFS file."""
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


@dataclasses.dataclass(frozen=True)
class FileEntry:
    """A file in a commit snapshot; ``data_key`` names the blob actually served."""

    sha256: str
    size: int
    lfs: bool
    git_oid: str
    data_key: str


@dataclasses.dataclass
class Commit:
    """A commit: full snapshot ``path -> FileEntry``."""

    oid: str
    parent: str | None
    title: str
    message: str
    date: str
    files: dict[str, FileEntry]


@dataclasses.dataclass
class Repo:
    """A repository with its commits, branches, tags and uploaded LFS objects (oid -> size)."""

    repo_type: str
    repo_id: str
    private: bool
    token: str | None
    created_at: str
    commits: dict[str, Commit] = dataclasses.field(default_factory=dict)
    branches: dict[str, str] = dataclasses.field(default_factory=dict)
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    lfs_objects: dict[str, int] = dataclasses.field(default_factory=dict)


class HubError(Exception):
    """Answered as ``{"error": message, **extra}`` with ``X-Error-Code``/``X-Error-Message``."""

    def __init__(self, status: int, message: str, code: str | None = None, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers: dict[str, str] = extra.pop("headers", {})
        self.extra = extra


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients hanging up are fine
            super().handle_error(request, client_address)


class HubServer:
    """In-process fake of the Hugging Face Hub; see the module docstring."""

    def __init__(self, storage_dir: Path | str, user: str = DEFAULT_USER):
        self.storage_dir = Path(storage_dir)
        (self.storage_dir / "blobs").mkdir(parents=True, exist_ok=True)
        self.user = user
        self.url = ""
        self.requests_log: list[tuple[str, str]] = []
        self.read_only: set[str] = set()
        self.repos: dict[tuple[str, str], Repo] = {}
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> str:
        """Serve on ``127.0.0.1:<free port>`` in a daemon thread; return the endpoint URL."""
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.hub = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        self._thread = threading.Thread(target=httpd.serve_forever, name="hubserver", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> HubServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget all repos, permissions and the request log (blobs stay on disk)."""
        with self._lock:
            self.repos.clear()
            self.read_only.clear()
            self.requests_log.clear()

    # ----------------------------------------------------------------- test helpers
    def set_read_only(self, repo_id_or_namespace: str, read_only: bool = True) -> None:
        """Make writes to a repo (``org/name``) or a whole namespace (``org``) answer 403."""
        (self.read_only.add if read_only else self.read_only.discard)(repo_id_or_namespace)

    def tamper(
        self, repo_type: str, repo_id: str, path: str, new_bytes: bytes, revision: str = "main"
    ) -> None:
        """Serve ``new_bytes`` for ``path`` at ``revision`` without a new commit.

        Advertised metadata (ETag, sizes, oids) is unchanged: this simulates corruption.
        Only the commit that ``revision`` resolves to is affected.
        """
        with self._lock:
            repo = self._repo(repo_type, repo_id, write=False, check_private=False)
            commit = repo.commits[self._resolve(repo, revision)]
            key = self._store(new_bytes)
            commit.files[path] = dataclasses.replace(commit.files[path], data_key=key)

    def get_file(self, repo_type: str, repo_id: str, path: str, revision: str = "main") -> bytes:
        """Bytes currently served for ``path`` at ``revision``."""
        with self._lock:
            repo = self._repo(repo_type, repo_id, write=False, check_private=False)
            return self._read(repo.commits[self._resolve(repo, revision)].files[path].data_key)

    def resolved_files(self, method: str = "GET") -> list[str]:
        """Paths in repo of the files requested through ``resolve`` with ``method``."""
        out = []
        for meth, path in list(self.requests_log):
            segs = path.split("/")
            if meth == method and "resolve" in segs[2:5]:
                out.append("/".join(segs[segs.index("resolve", 2) + 2 :]))
        return out

    # ----------------------------------------------------------------- storage
    def _store(self, data: bytes) -> str:
        key = hashlib.sha256(data).hexdigest()
        target = self.storage_dir / "blobs" / key
        if not target.exists():
            tmp = target.with_name(f"{key}.{uuid.uuid4().hex}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        return key

    def _read(self, key: str) -> bytes:
        return (self.storage_dir / "blobs" / key).read_bytes()

    def _repo(
        self,
        repo_type: str,
        repo_id: str,
        token: str | None = None,
        *,
        write: bool,
        check_private: bool = True,
    ) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (check_private and repo.private and token != repo.token):
            raise HubError(404, "Repository not found", "RepoNotFound")
        if write and (repo_id in self.read_only or repo_id.split("/")[0] in self.read_only):
            raise HubError(403, f"You don't have the rights to write to {repo_type}s/{repo_id}")
        return repo

    @staticmethod
    def _resolve(repo: Repo, rev: str) -> str:
        """Commit oid of a branch, tag (optionally ``refs/...``), full or >= 7-char short sha."""
        for prefix, refs in (("refs/heads/", repo.branches), ("refs/tags/", repo.tags)):
            name = rev.removeprefix(prefix)
            if name in refs:
                return refs[name]
        matches = [oid for oid in repo.commits if len(rev) >= 7 and oid.startswith(rev.lower())]
        if len(matches) == 1:
            return matches[0]
        raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")

    def _commit(
        self, repo: Repo, branch: str, files: dict[str, FileEntry], title: str, msg: str
    ) -> str:
        parent = repo.branches.get(branch)
        oid = hashlib.sha1(
            f"{repo.repo_id}\0{parent}\0{title}\0{uuid.uuid4()}".encode()
        ).hexdigest()
        repo.commits[oid] = Commit(oid, parent, title, msg, _now(), files)
        repo.branches[branch] = oid
        return oid

    def _entry(self, data: bytes, lfs: bool) -> FileEntry:
        key = self._store(data)
        git_oid = git_blob_sha1(lfs_pointer(key, len(data)) if lfs else data)
        return FileEntry(sha256=key, size=len(data), lfs=lfs, git_oid=git_oid, data_key=key)

    def _repo_url(self, repo: Repo) -> str:
        return f"{self.url}/{URL_PREFIXES[repo.repo_type]}{repo.repo_id}"

    # ----------------------------------------------------------------- JSON views
    def _last_commit(self, repo: Repo, commit: Commit, path: str) -> dict[str, str]:
        """Newest commit (from ``commit`` backwards) that changed ``path`` (file or folder)."""

        def view(c: Commit) -> dict[str, str]:
            return {
                p: e.git_oid for p, e in c.files.items() if p == path or p.startswith(f"{path}/")
            }

        current = commit
        while current.parent is not None and view(repo.commits[current.parent]) == view(current):
            current = repo.commits[current.parent]
        return {"id": current.oid, "title": current.title, "date": current.date}

    def _path_info(self, repo: Repo, commit: Commit, path: str, expand: bool) -> dict | None:
        entry = commit.files.get(path)
        if entry is not None:
            info: dict[str, Any] = {
                "type": "file",
                "oid": entry.git_oid,
                "size": entry.size,
                "path": path,
            }
            if entry.lfs:
                pointer_size = len(lfs_pointer(entry.sha256, entry.size))
                info["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": pointer_size}
        else:
            children = sorted(
                (p, e.git_oid) for p, e in commit.files.items() if p.startswith(f"{path}/")
            )
            if not children:
                return None
            tree_oid = hashlib.sha1(json.dumps(children).encode()).hexdigest()
            info = {"type": "directory", "oid": tree_oid, "size": 0, "path": path}
        if expand:
            info["lastCommit"] = self._last_commit(repo, commit, path)
        return info

    def _tree(self, repo: Repo, commit: Commit, path: str, recursive: bool, expand: bool) -> list:
        prefix = f"{path}/" if path else ""
        if path and (path in commit.files or not any(p.startswith(prefix) for p in commit.files)):
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        entries: set[str] = set()
        for file_path in commit.files:
            if file_path.startswith(prefix):
                parts = file_path[len(prefix) :].split("/")
                depth = len(parts) if recursive else 1
                entries.update(prefix + "/".join(parts[: i + 1]) for i in range(depth))
        infos = [self._path_info(repo, commit, p, expand) for p in sorted(entries)]
        return sorted((i for i in infos if i), key=lambda i: (i["type"] != "directory", i["path"]))

    def _repo_info(self, repo: Repo, commit: Commit, blobs: bool) -> dict[str, Any]:
        siblings = []
        for path, entry in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=entry.size, blobId=entry.git_oid)
                if entry.lfs:
                    pointer_size = len(lfs_pointer(entry.sha256, entry.size))
                    sibling["lfs"] = {
                        "sha256": entry.sha256,
                        "size": entry.size,
                        "pointerSize": pointer_size,
                    }
            siblings.append(sibling)
        info = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24], "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0], "sha": commit.oid, "createdAt": repo.created_at,
            "lastModified": commit.date, "private": repo.private, "gated": False, "disabled": False,
            "downloads": 0, "likes": 0, "tags": [], "siblings": siblings,
            "usedStorage": sum(e.size for e in commit.files.values()),
        }  # fmt: skip
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
        return info

    # ----------------------------------------------------------------- API operations
    def create_repo(self, body: dict[str, Any], token: str | None) -> dict[str, Any]:
        """``POST /api/repos/create``: new repo with an ``initial commit`` of ``.gitattributes``."""
        name, org = body.get("name"), body.get("organization") or self.user
        repo_type = body.get("type") or "model"
        if not name or repo_type not in URL_PREFIXES:
            raise HubError(400, "Invalid repo name or type")
        repo_id = f"{org}/{name}"
        if repo_id in self.read_only or org in self.read_only:
            raise HubError(403, f"You don't have the rights to create a {repo_type} under {org}")
        if (existing := self.repos.get((repo_type, repo_id))) is not None:
            raise HubError(
                409, f"You already created this {repo_type} repo", url=self._repo_url(existing)
            )
        private = bool(body.get("private")) or body.get("visibility") in ("private", "protected")
        repo = Repo(repo_type, repo_id, private, token, _now())
        gitattributes = self._entry(DEFAULT_GITATTRIBUTES.encode(), lfs=False)
        self._commit(repo, "main", {".gitattributes": gitattributes}, "initial commit", "")
        self.repos[(repo_type, repo_id)] = repo
        return {"url": self._repo_url(repo), "name": repo_id, "id": repo_id}

    def _is_lfs(self, commit: Commit, path: str, size: int, sample: bytes) -> bool:
        if size >= LFS_THRESHOLD or b"\0" in sample:
            return True
        attributes = commit.files.get(".gitattributes")
        text = self._read(attributes.data_key).decode(errors="replace") if attributes else ""
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 2 and "filter=lfs" in parts[1:]:
                pattern = parts[0].lstrip("/")
                target = path if "/" in pattern else path.rsplit("/", 1)[-1]
                if fnmatch.fnmatchcase(target, pattern):
                    return True
        return False

    def preupload(self, repo: Repo, revision: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /api/{type}s/{id}/preupload/{rev}``: upload mode and remote ``oid`` per file."""
        commit = repo.commits[self._resolve(repo, revision)]
        files = []
        for item in body.get("files", []):
            path, size = item["path"], int(item.get("size", 0))
            lfs = self._is_lfs(commit, path, size, base64.b64decode(item.get("sample", "")))
            old = commit.files.get(path)
            oid = None if old is None else (old.sha256 if old.lfs else old.git_oid)
            mode = "lfs" if lfs else "regular"
            files.append({"path": path, "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        return {"files": files, "commitOid": commit.oid}

    def lfs_batch(self, repo: Repo, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /{prefix}{id}.git/info/lfs/objects/batch`` (upload operation, basic transfer)."""
        if body.get("operation") != "upload":
            raise HubError(400, "Only the 'upload' LFS operation is supported")
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            out: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if not re.fullmatch(r"[0-9a-f]{64}", oid):
                out["error"] = {"code": 422, "message": f"Invalid oid {oid}"}
            elif oid not in repo.lfs_objects:  # already-present objects get no actions
                verify = f"{self._repo_url(repo)}.git/info/lfs/objects/verify"
                put = f"{self.url}/__lfs__/{repo.repo_type}/{repo.repo_id}/{oid}?size={size}"
                out["actions"] = {"upload": {"href": put}, "verify": {"href": verify}}
            objects.append(out)
        return {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}

    def lfs_put(self, repo: Repo, oid: str, data: bytes) -> None:
        """PUT target of an LFS upload action: verify the sha256 and keep the object."""
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, f"sha256 mismatch for LFS object {oid}")
        self._store(data)
        repo.lfs_objects[oid] = len(data)

    def create_commit(self, repo: Repo, revision: str, lines: list[dict[str, Any]]) -> dict:
        """``POST /api/{type}s/{id}/commit/{rev}`` with an NDJSON body; ``rev`` must be a branch."""
        branch = revision.removeprefix("refs/heads/")
        if branch not in repo.branches:
            raise HubError(404, f"Invalid rev id: {revision} (not a branch)", "RevisionNotFound")
        files = dict(repo.commits[repo.branches[branch]].files)
        header: dict[str, Any] = {}
        for line in lines:
            key, value = line.get("key"), line.get("value", {})
            if key == "header":
                header = value
                parent = header.get("parentCommit")
                if parent and not repo.branches[branch].startswith(parent.lower()):
                    raise HubError(
                        412, "A commit has happened since. Please refresh and try again."
                    )
            elif key == "file":
                files[value["path"]] = self._entry(base64.b64decode(value["content"]), lfs=False)
            elif key == "lfsFile":
                oid = value["oid"]
                if (size := repo.lfs_objects.get(oid)) is None:
                    raise HubError(422, f"LFS object {oid} for {value['path']} was not uploaded")
                files[value["path"]] = FileEntry(
                    oid, size, True, git_blob_sha1(lfs_pointer(oid, size)), oid
                )
            elif key in ("deletedFile", "deletedFolder"):
                folder = value["path"].rstrip("/") + "/"
                is_folder = key == "deletedFolder"
                doomed = [
                    p for p in files if (p.startswith(folder) if is_folder else p == value["path"])
                ]
                if not doomed:
                    msg = f"A {key[7:].lower()} with this name doesn't exist: {value['path']}"
                    raise HubError(404, msg, "EntryNotFound")
                for path in doomed:
                    del files[path]
            else:
                raise HubError(400, f"Unsupported commit operation: {key!r}")
        title = header.get("summary") or "Commit"
        oid = self._commit(repo, branch, files, title, header.get("description") or "")
        url = f"{self._repo_url(repo)}/commit/{oid}"
        return {"success": True, "commitOid": oid, "commitUrl": url, "pullRequestUrl": None}

    def commits(self, repo: Repo, revision: str) -> list[dict[str, Any]]:
        """``GET /api/{type}s/{id}/commits/{rev}``: newest first."""
        out, oid = [], self._resolve(repo, revision)
        while oid is not None:
            c = repo.commits[oid]
            author = [{"user": "system" if c.parent is None else self.user}]
            out.append(
                {
                    "id": oid,
                    "title": c.title,
                    "message": c.message,
                    "date": c.date,
                    "authors": author,
                }
            )
            oid = c.parent
        return out

    def refs(self, repo: Repo) -> dict[str, Any]:
        """``GET /api/{type}s/{id}/refs``."""

        def fmt(refs: dict[str, str], kind: str) -> list[dict[str, str]]:
            return [
                {"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": c}
                for n, c in sorted(refs.items())
            ]

        branches, tags = fmt(repo.branches, "heads"), fmt(repo.tags, "tags")
        return {"branches": branches, "tags": tags, "converts": [], "pullRequests": []}


class _Handler(BaseHTTPRequestHandler):
    """Routes requests to the :class:`HubServer` in ``self.server.hub``."""

    protocol_version = "HTTP/1.1"
    server_version = "hubserver/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # silence per-request stderr logging
        return

    def _dispatch(self) -> None:
        hub: HubServer = self.server.hub  # type: ignore[attr-defined]
        self.hub, self.method = hub, self.command
        split = urlsplit(self.path)
        hub.requests_log.append((self.method, unquote(split.path)))
        self.query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        self.body = self._read_body() if self.method in ("POST", "PUT", "DELETE") else b""
        content_type = self.headers.get("Content-Type", "")
        is_json = self.body and "json" in content_type and "ndjson" not in content_type
        auth = self.headers.get("Authorization", "")
        self.token = auth[7:] if auth.lower().startswith("bearer ") else None
        try:
            self.json_body = json.loads(self.body) if is_json else {}
            with hub._lock:
                self._route([unquote(s) for s in split.path.strip("/").split("/")])
        except HubError as err:
            headers = {
                "X-Error-Message": err.message.encode("ascii", "replace").decode(),
                **err.headers,
            }
            if err.code:
                headers["X-Error-Code"] = err.code
            self._json({"error": err.message, **err.extra}, err.status, headers)
        except Exception as err:  # a 400, since a 5xx makes the client retry with backoff
            self._json({"error": f"hubserver: {type(err).__name__}: {err}"}, 400)
        self._flush()

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, headers: dict[str, str], content_type: str) -> None:
        """Queue the response; it is written by ``_dispatch`` once the state lock is released."""
        self._response = (status, body, {"Content-Type": content_type, **headers})

    def _flush(self) -> None:
        status, body, headers = self._response
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.method != "HEAD":
            self.wfile.write(body)

    def _json(
        self,
        payload: Any,
        status: int = 200,
        headers: dict | None = None,
        ctype: str = "application/json",
    ) -> None:
        self._send(status, json.dumps(payload).encode(), headers or {}, ctype)

    def _flag(self, name: str) -> bool:
        return str(self.query.get(name, "")).lower() in ("1", "true")

    def _route(self, segs: list[str]) -> None:
        hub, method = self.hub, self.method
        if segs[0] == "api" and len(segs) == 2:
            if segs[1] == "whoami-v2":
                auth = {
                    "type": "access_token",
                    "accessToken": {"role": "write", "displayName": "test"},
                }
                return self._json(
                    {
                        "type": "user",
                        "name": hub.user,
                        "fullname": hub.user,
                        "orgs": [],
                        "auth": auth,
                    }
                )
            if segs[1] == "agent-harnesses":
                return self._json({"standardEnvVars": [], "harnesses": {}})
            if segs[1] == "validate-yaml":
                return self._json({"errors": [], "warnings": []})
        if segs[:3] == ["api", "repos", "create"] and method == "POST":
            return self._json(hub.create_repo(self.json_body, self.token))
        if segs[:3] == ["api", "repos", "delete"] and method == "DELETE":
            body = self.json_body
            repo_id = f"{body.get('organization') or hub.user}/{body.get('name')}"
            repo = hub._repo(body.get("type") or "model", repo_id, self.token, write=True)
            del hub.repos[(repo.repo_type, repo.repo_id)]
            return self._json({})
        if segs[0] == "api" and len(segs) >= 3 and segs[1] in REPO_TYPES:
            n = 2 if len(segs) >= 4 and segs[3] not in _API_SUBPATHS else 1
            return self._repo_api(REPO_TYPES[segs[1]], "/".join(segs[2 : 2 + n]), segs[2 + n :])
        if segs[0] == "__lfs__" and method == "PUT":  # like a presigned URL: no token needed
            repo = hub._repo(segs[1], "/".join(segs[2:-1]), write=False, check_private=False)
            hub.lfs_put(repo, segs[-1], self.body)
            return self._json({})
        repo_type = "model"
        if segs[0] in ("datasets", "spaces"):
            repo_type, segs = REPO_TYPES[segs[0]], segs[1:]
        git = next((i for i, s in enumerate(segs[:2]) if s.endswith(".git")), None)
        if (
            git is not None
            and segs[git + 1 : git + 4] == ["info", "lfs", "objects"]
            and method == "POST"
        ):
            repo_id = "/".join([*segs[:git], segs[git].removesuffix(".git")])
            repo = hub._repo(repo_type, repo_id, self.token, write=True)
            if segs[git + 4 :] == ["batch"]:
                return self._json(
                    hub.lfs_batch(repo, self.json_body), ctype="application/vnd.git-lfs+json"
                )
            if self.json_body.get("oid") not in repo.lfs_objects:  # verify
                raise HubError(404, "LFS object not found", "EntryNotFound")
            return self._json({"success": True})
        resolve = next((i for i in (1, 2) if len(segs) > i + 1 and segs[i] == "resolve"), None)
        if resolve is not None and method in ("GET", "HEAD"):
            repo_id, rev, path = (
                "/".join(segs[:resolve]),
                segs[resolve + 1],
                "/".join(segs[resolve + 2 :]),
            )
            return self._resolve_file(repo_type, repo_id, rev, path)
        raise HubError(404, f"Not found: {method} {self.path}")

    def _repo_api(self, repo_type: str, repo_id: str, rest: list[str]) -> None:
        hub, method, body = self.hub, self.method, self.json_body
        action, args = (rest[0], rest[1:]) if rest else ("", [])
        write = method in ("POST", "DELETE") and action in _WRITE_ACTIONS
        repo = hub._repo(repo_type, repo_id, self.token, write=write)
        if method == "GET" and action in ("", "revision"):
            commit = repo.commits[hub._resolve(repo, args[0] if args else "main")]
            return self._json(hub._repo_info(repo, commit, self._flag("blobs")))
        if method == "GET" and action == "tree" and args:
            commit = repo.commits[hub._resolve(repo, args[0])]
            path = "/".join(args[1:]).strip("/")
            return self._json(
                hub._tree(repo, commit, path, self._flag("recursive"), self._flag("expand"))
            )
        if method == "POST" and action == "paths-info" and args:
            commit = repo.commits[hub._resolve(repo, args[0])]
            form = body or {
                k: v if k == "paths" else v[-1] for k, v in parse_qs(self.body.decode()).items()
            }
            paths = (
                [form["paths"]] if isinstance(form.get("paths"), str) else form.get("paths") or []
            )
            expand = str(form.get("expand", "")).lower() in ("1", "true")
            infos = [hub._path_info(repo, commit, p.strip("/"), expand) for p in paths]
            return self._json([i for i in infos if i])
        if method == "GET" and action == "refs":
            return self._json(hub.refs(repo))
        if method == "GET" and action == "commits" and args:
            return self._json(hub.commits(repo, args[0]))
        if method == "POST" and action in ("preupload", "commit") and args:
            if self._flag("create_pr"):
                raise HubError(400, "hubserver does not support create_pr")
            if action == "preupload":
                return self._json(hub.preupload(repo, args[0], body))
            lines = [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]
            return self._json(hub.create_commit(repo, args[0], lines))
        if action in ("branch", "tag") and args and method in ("POST", "DELETE"):
            refs = repo.branches if action == "branch" else repo.tags
            name = (
                "/".join(args) if action == "branch" or method == "DELETE" else body.get("tag", "")
            )
            if method == "DELETE" and refs.pop(name, None) is None:
                raise HubError(404, f"Invalid rev id: {name}", "RevisionNotFound")
            if method == "POST":
                if not name or name in refs:
                    raise HubError(409, f"Reference already exists or is invalid: {name}")
                start = (
                    body.get("startingPoint") or "main" if action == "branch" else "/".join(args)
                )
                refs[name] = hub._resolve(repo, start)
            return self._json({})
        raise HubError(404, f"Not found: {method} {self.path}")

    def _resolve_file(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        hub = self.hub
        repo = hub._repo(repo_type, repo_id, self.token, write=False)
        commit = repo.commits[hub._resolve(repo, revision)]
        if (entry := commit.files.get(path)) is None:
            raise HubError(
                404, "Entry not found", "EntryNotFound", headers={"X-Repo-Commit": commit.oid}
            )
        data, etag = hub._read(entry.data_key), entry.sha256 if entry.lfs else entry.git_oid
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if entry.lfs:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(entry.size)})
        total, status = len(data), 200
        match = re.fullmatch(
            r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", self.headers.get("Range") or ""
        )
        if match and any(match.groups()):
            first, last = match.groups()
            start = int(first) if first else max(total - int(last), 0)
            end = min(int(last), total - 1) if first and last else total - 1
            if start >= total or start > end:
                headers["Content-Range"] = f"bytes */{total}"
                raise HubError(416, "Requested range not satisfiable", headers=headers)
            data, status = data[start : end + 1], 206
            headers["Content-Range"] = f"bytes {start}-{end}/{total}"
        self._send(status, data, headers, "application/octet-stream")


# --------------------------------------------------------------------- test-suite setup
_GLOBAL: HubServer | None = None
_CLEARED_ENV = (
    "HF_HUB_OFFLINE HF_DATASETS_OFFLINE TRANSFORMERS_OFFLINE HUGGINGFACE_CO_STAGING HF_HUB_CACHE "
    "HUGGINGFACE_HUB_CACHE HF_ASSETS_CACHE HUGGINGFACE_ASSETS_CACHE HF_DATASETS_CACHE HF_TOKEN_PATH "
    "HF_XET_CACHE HF_HUB_ENABLE_HF_TRANSFER"
).split()
_ENV_FLAGS = {"HF_UPDATE_DOWNLOAD_COUNTS": "0"} | dict.fromkeys(
    "HF_HUB_DISABLE_XET HF_HUB_DISABLE_TELEMETRY HF_HUB_DISABLE_UPDATE_CHECK "
    "HF_HUB_DISABLE_PROGRESS_BARS HF_DATASETS_DISABLE_PROGRESS_BARS".split(),
    "1",
)


def configure_env(url: str, hf_home: Path | str, token: str = DEFAULT_TOKEN) -> None:
    """Point ``huggingface_hub``/``datasets`` at ``url``. Must run before either is imported."""
    if "huggingface_hub" in sys.modules or "datasets" in sys.modules:
        import huggingface_hub.constants

        if huggingface_hub.constants.ENDPOINT != url.rstrip("/"):
            raise RuntimeError(
                "huggingface_hub was imported before hubserver.configure_env(): start the server "
                "(hubserver.ensure_global_server()) at the top of tests/conftest.py instead."
            )
    for var in _CLEARED_ENV:
        os.environ.pop(var, None)
    no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1,localhost"]))
    os.environ.update(_ENV_FLAGS, HF_ENDPOINT=url, HF_HOME=str(hf_home), HF_TOKEN=token)
    os.environ.update(NO_PROXY=no_proxy, no_proxy=no_proxy)


def configure_datasets() -> None:
    """Stop ``datasets`` from probing the dataset-viewer host (``datasets-server.<host>``)."""
    import datasets.config

    datasets.config.USE_PARQUET_EXPORT = False


def install_network_guard() -> None:
    """Make ``socket.getaddrinfo`` refuse any non-loopback host (recorded in ``BLOCKED_HOSTS``)."""
    original = socket.getaddrinfo
    if getattr(original, "_hubserver_guard", False):
        return

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        try:
            local = name in (None, "", "localhost", socket.gethostname())
            local = local or ipaddress.ip_address(name).is_loopback
        except ValueError:
            local = False
        if not local:
            BLOCKED_HOSTS.append(name)
            raise socket.gaierror(socket.EAI_NONAME, f"hubserver network guard: refused {name!r}")
        return original(host, *args, **kwargs)

    guarded._hubserver_guard = True  # type: ignore[attr-defined]
    socket.getaddrinfo = guarded


def ensure_global_server(block_network: bool = True) -> HubServer:
    """Start (once per process) a shared server in a temp dir and configure the environment."""
    global _GLOBAL
    for name in ("hubserver", "tests.hubserver"):  # the module may be imported under two names
        other = sys.modules.get(name)
        _GLOBAL = _GLOBAL or getattr(other, "_GLOBAL", None)
    if _GLOBAL is None:
        root = Path(tempfile.mkdtemp(prefix="hubserver-"))
        server = HubServer(root / "storage")
        try:
            configure_env(server.start(), root / "hf_home")
        except Exception:
            server.stop()
            raise
        atexit.register(shutil.rmtree, root, True)
        atexit.register(server.stop)
        _GLOBAL = server
    if block_network:
        install_network_guard()
    return _GLOBAL
