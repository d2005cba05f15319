"""Opening a zoo straight from the Hub: :func:`load_zoo` and ``open_zoo("hf://datasets/...")``.

The files go to the standard Hugging Face cache (``HF_HOME``, shared with ``datasets`` and
every other user of ``huggingface_hub``), pinned to the commit the revision resolves to (the
cache's ``refs/`` records which commit a branch or tag named, so an offline open by that name
finds the same snapshot), and the returned :class:`HubZoo` reads the cache's snapshot
directory (treat it as read-only; ``zoo pull`` makes a copy of your own). Opening downloads
the metadata only (the manifest, card, Parquet parts and sidecar tables), so queries never
download weights; each weight shard is downloaded when a row of it is first loaded. Every
file is checked against the manifest's sha256 when it arrives or is first used from the cache
(the metadata on each load, a shard when first read); a file that does not match is deleted
from the cache and downloaded once more (:func:`hub.remote.fetch_checked`), so a damaged
cached copy is replaced, and a bad file in the repo is refused. The sha256 of a cached file
this process has already hashed is reused while the file is provably unchanged (same inode,
size, modification and change times: :func:`hub.remote.file_sha256`), so reopening a zoo does
not read its shards in full again.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote

from catalog.errors import WeightzooError
from catalog.format import MANIFEST_NAME, read_manifest
from catalog.zoo import Zoo
from hub.errors import HubError, HubUnreachableError, hub_errors
from hub.remote import (
    DEFAULT_REVISION,
    REPO_TYPE,
    RemoteZoo,
    bad_files,
    fetch_checked,
    fetch_manifest,
    integrity_error,
    resolve_remote,
)

URL_SCHEME = "hf://"
#: What happens to files that fail their checksum in the cache, for error messages.
_EVICTED = "the bad files were removed from the cache"
_URL_FORM = "hf://datasets/ORG/NAME[@REVISION]"


def parse_hf_url(url: str) -> tuple[str, str | None]:
    """``(repo_id, revision)`` of ``hf://datasets/ORG/NAME[@REVISION]``.

    The revision may be a branch (``/`` in it is fine), a tag or a commit sha; percent-escapes
    are decoded (``@refs%2Fpr%2F1``).

    Raises:
        WeightzooError: the URL has another form (e.g. a model repo, a path inside the repo).
    """
    if not url.startswith(URL_SCHEME):
        raise WeightzooError(f"{url!r} is not an hf:// URL; use {_URL_FORM}")
    rest = url[len(URL_SCHEME):]
    if not rest.startswith("datasets/"):
        raise WeightzooError(
            f"{url!r} does not name a dataset repo: zoos live in dataset repos, use {_URL_FORM}")
    repo, sep, revision = rest[len("datasets/"):].partition("@")
    repo = repo.strip("/")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise WeightzooError(
            f"{url!r} does not name one repo: use {_URL_FORM} (a zoo is a whole repo, not a "
            f"folder inside one)")
    if sep and not revision.strip("/"):
        raise WeightzooError(f"{url!r} has an empty revision after '@'; use {_URL_FORM}")
    return repo, (unquote(revision.strip("/")) if sep else None)


def load_zoo(repo_id: str, revision: str | None = None, *, token: str | bool | None = None,
             cache_dir: str | os.PathLike | None = None, progress: bool = True,
             local_files_only: bool = False) -> Zoo:
    """Open the zoo in the dataset repo ``repo_id`` through the Hugging Face cache.

    Args:
        repo_id: ``ORG/NAME``.
        revision: a branch, tag or commit sha (default ``None``: ``main``).
        token: a Hub token (default: ``HF_TOKEN`` or the saved login).
        cache_dir: the cache directory (default: the standard one under ``HF_HOME``).
        progress: show the client's progress bars (default ``True``).
        local_files_only: use only what the cache holds, without asking the Hub (default
            ``False``; also on when ``HF_HUB_OFFLINE=1``).

    Returns:
        a :class:`~catalog.zoo.Zoo` over the cache's snapshot of that commit; its
        ``manifest.source`` (in memory only) says ``repo_id``, ``revision`` and ``commit``.

    Raises:
        HubError: the repo or revision does not exist, no permission, the repo holds no zoo,
            the Hub cannot be reached, or a file does not match its checksum.
    """
    from huggingface_hub import HfApi, constants

    cache = None if cache_dir is None else os.fspath(cache_dir)
    if local_files_only or constants.HF_HUB_OFFLINE:
        return _load_cached(repo_id, revision, cache)
    remote = resolve_remote(HfApi(token=token), repo_id, revision, cache_dir=cache, record_ref=True)
    kwargs = {"cache_dir": cache, "token": token, "progress": progress}
    root, manifest = fetch_manifest(remote, **kwargs)
    meta = [f.path for f in manifest.files if f.kind != "shard"]
    if meta:
        root = fetch_checked(remote, meta, manifest, _EVICTED, **kwargs)
    return _opened(root, remote, kwargs)


def _load_cached(repo_id: str, revision: str | None, cache_dir: str | None) -> Zoo:
    """Open a zoo from the cache alone (offline)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    with hub_errors(repo_id, revision):
        try:
            root = snapshot_download(repo_id, repo_type=REPO_TYPE, revision=revision,
                                     cache_dir=cache_dir, local_files_only=True,
                                     allow_patterns=[MANIFEST_NAME])
        except LocalEntryNotFoundError as e:
            raise HubUnreachableError(
                f"revision {revision or DEFAULT_REVISION!r} of dataset repo {repo_id!r} is not in the "
                f"local cache (offline: local_files_only or HF_HUB_OFFLINE=1); open it online once "
                f"(hub.load_zoo or open_zoo('hf://datasets/{repo_id}')), which caches it, then "
                f"offline opens by that branch, tag or commit work") from e
    root = Path(root)
    manifest = read_manifest(root)
    remote = RemoteZoo(repo_id, revision or "main", root.name)
    # The metadata must be cached; shards are checked as they are read (and must be cached too).
    meta = [f.path for f in manifest.files if f.kind != "shard"]
    cached = [f.path for f in manifest.shard_files() if (root / f.path).is_file()]
    problems = bad_files(root, meta + cached, remote, manifest)
    if problems:
        raise integrity_error(remote, problems, "the cached copy is incomplete or damaged; "
                                                "load it online to repair it", fresh=False)
    return _opened(root, remote, None, checked=cached)


class HubZoo(Zoo):
    """A zoo in the Hugging Face cache whose weight shards are downloaded on first use.

    Each weight shard is checked against the manifest's sha256 once per opened zoo, when it
    is first read (or fetched): downloaded, or found in the cache, which other processes share
    and a disk can damage. A cached shard that does not match is downloaded again. (Its sha256
    is computed once per process while the file stays the same: :func:`hub.remote.file_sha256`.)

    Args:
        root: the cache's snapshot directory of the zoo's commit.
        remote: the repo at that commit.
        download_kwargs: ``cache_dir``, ``token`` and ``progress`` for downloads, or ``None``
            when offline (a shard that is not cached is then an error).
        checked: shards already checked against the manifest (default: none).
    """

    LOCAL_COPY = "in the local cache (weight shards download on first use)"

    def __init__(self, root: Path, remote: RemoteZoo, download_kwargs: dict | None,
                 checked: Iterable[str] = ()) -> None:
        super().__init__(root)
        self.remote = remote
        self._download_kwargs = download_kwargs
        self._checked: set[str] = set(checked)

    def fetch(self, paths: list[str] | None = None) -> None:
        """Download the listed weight shards not cached yet (default: all), and check those not
        checked yet; a cached one that fails is downloaded again."""
        listed = [f.path for f in self.manifest.shard_files()]
        wanted = [p for p in (listed if paths is None else paths) if p in listed and p not in self._checked]
        if not wanted:
            return
        missing = [p for p in wanted if not (self.root / p).is_file()]
        if missing and self._download_kwargs is None:
            raise HubError(f"{missing[0]} of {self.remote.label} is not in the cache and the zoo "
                           f"was opened offline; load it online once to fetch its weights")
        if self._download_kwargs is None:
            problems = bad_files(self.root, wanted, self.remote, self.manifest)
            if problems:
                raise integrity_error(self.remote, problems, "the cached copy is damaged; load the "
                                                             "zoo online to repair it", fresh=False)
        else:
            fetch_checked(self.remote, wanted, self.manifest, _EVICTED, **self._download_kwargs)
        self._checked.update(wanted)

    def _shard_file(self, rel: str):
        if rel not in self._shard_files:
            self.fetch([rel])
        return super()._shard_file(rel)

    def verify(self, check_weights: bool = True, progress: bool = False):
        """:meth:`Zoo.verify` after downloading every weight shard."""
        self.fetch()
        return super().verify(check_weights=check_weights, progress=progress)


def _opened(root: Path, remote: RemoteZoo, download_kwargs: dict | None,
            checked: Iterable[str] = ()) -> Zoo:
    zoo = HubZoo(root, remote, download_kwargs, checked)
    zoo.manifest.source = {"repo_id": remote.repo_id, "revision": remote.revision,
                           "commit": remote.commit, "pulled_where": None}
    return zoo


def load_zoo_url(url: str, **kwargs) -> Zoo:
    """:func:`load_zoo` for ``hf://datasets/ORG/NAME[@REVISION]`` (what ``open_zoo`` calls).

    Args:
        url: the URL.
        **kwargs: passed to :func:`load_zoo` (``revision`` only if the URL names none).
    """
    repo_id, revision = parse_hf_url(url)
    if revision is not None and kwargs.get("revision") not in (None, revision):
        raise HubError(f"{url!r} names revision {revision!r} but revision={kwargs['revision']!r} "
                       f"was passed too; give it once")
    if revision is not None:
        kwargs["revision"] = revision
    return load_zoo(repo_id, **kwargs)
