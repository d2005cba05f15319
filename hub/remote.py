"""A zoo in a Hub dataset repository: resolving a revision to a commit, downloading files at
that commit with the ``huggingface_hub`` client, and checking what arrived.

Every download is pinned to the resolved commit sha, so the files of one pull all come from
one commit even if the branch moves meanwhile. Each downloaded file is checked twice: against
the Hub's own record of the commit (the LFS sha256, or the git blob id of regular files) and,
for data files, against the sha256 in the zoo's manifest. A file this process has already
hashed is not hashed again while it is provably the same file, unchanged (:func:`file_sha256`).
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from catalog.errors import ZooFormatError
from catalog.format import (
    CARD_NAME,
    DATA_FOLDERS,
    MANIFEST_NAME,
    Manifest,
    read_manifest,
    sha256_file,
)
from catalog.paths import safe_join
from hub.errors import HubError, HubIntegrityError, NotAZooError, hub_errors
from hub.progress import client_output

#: The Hub repository type zoos live in.
REPO_TYPE = "dataset"
#: The branch used when no revision is given.
DEFAULT_REVISION = "main"
_CHUNK = 1 << 22
#: Errors of writing files (what :func:`cache_errors` turns into one line).
_FILE_SYSTEM_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True)
class RemoteFile:
    """One file of a repo at a commit, as the Hub describes it.

    Args:
        path: the path in the repo.
        size: bytes (``None`` if the Hub did not say).
        sha256: the LFS object id, for files stored with LFS (else ``None``).
        git_oid: the git blob id (of the LFS pointer, for LFS files).
    """

    path: str
    size: int | None = None
    sha256: str | None = None
    git_oid: str | None = None


@dataclass
class RemoteZoo:
    """A dataset repo resolved at one commit.

    Args:
        repo_id: ``ORG/NAME``.
        revision: the revision that was asked for (a branch, tag or commit; ``"main"`` by default).
        commit: the full commit sha it resolved to.
        files: ``{path: RemoteFile}`` for every file of the commit.
        private: whether the repo is private.
    """

    repo_id: str
    revision: str
    commit: str
    files: dict[str, RemoteFile] = field(default_factory=dict)
    private: bool = False

    @property
    def label(self) -> str:
        """``ORG/NAME@revision (commit abc123456789)`` for messages."""
        rev = self.revision if self.revision == self.commit else f"{self.revision} (commit {self.commit[:12]})"
        return f"{self.repo_id}@{rev}"


@contextmanager
def cache_errors(repo_id: str, cache_dir: str | os.PathLike | None = None) -> Iterator[None]:
    """Re-raise an OS error of writing the Hugging Face cache (``HF_HOME`` not writable, a read-only
    file system, a full disk) as one :class:`HubError` naming the folder and what to do.

    Network errors are ``hub_errors``' (inside this block); only the file system's reach here.
    """
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno not in _FILE_SYSTEM_ERRNOS:
            raise  # not the file system (a connection reset the client did not map, say)
        from huggingface_hub import constants

        cache = cache_dir or constants.HF_HUB_CACHE
        where = f" ({e.filename})" if e.filename else ""
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            fix = "free some space, or set HF_HOME (or HF_HUB_CACHE) to a folder on another disk"
        else:
            fix = "set HF_HOME (or HF_HUB_CACHE) to a folder you can write"
        raise HubError(
            f"cannot write the Hugging Face cache {cache} to open {repo_id}: {e.strerror or e}{where}; "
            f"{fix}, or pull the zoo into a folder of its own (`zoo pull {repo_id} --out DIR`)") from e


def resolve_remote(api, repo_id: str, revision: str | None = None, *,
                   cache_dir: str | os.PathLike | None = None, record_ref: bool = False) -> RemoteZoo:
    """Resolve ``revision`` of the dataset repo ``repo_id`` and list its files.

    Args:
        api: a ``huggingface_hub.HfApi``.
        repo_id: ``ORG/NAME``.
        revision: a branch, tag or commit sha (default ``None``: ``main``).
        cache_dir: the HF cache ``record_ref`` writes to (default: ``HF_HOME``'s).
        record_ref: record in the HF cache which commit ``revision`` names (its
            ``refs/<revision>`` file), so that an offline open by that name finds the commit's
            snapshot (default ``False``: a pull into a directory of its own leaves the cache alone).

    Raises:
        RepoNotFoundError, RevisionNotFoundError, HubPermissionError, HubUnreachableError: as
            mapped by :func:`hub.errors.hub_errors`.
        NotAZooError: the commit has no ``zoo.json`` at its root.
    """
    with cache_errors(repo_id, cache_dir), hub_errors(repo_id, revision):
        at = revision
        if record_ref:
            # Downloads are pinned to the commit sha, and the client records a branch or tag in
            # refs/ only when it resolves the name itself: resolve_revision is its way to do that.
            at = api.resolve_revision(repo_id, repo_type=REPO_TYPE, revision=revision, cache_dir=cache_dir).resolved
        info = api.dataset_info(repo_id, revision=at, files_metadata=True)
    files = {}
    for s in info.siblings or []:
        lfs = s.lfs
        sha = (lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)) if lfs else None
        files[s.rfilename] = RemoteFile(s.rfilename, s.size, sha, s.blob_id)
    remote = RemoteZoo(repo_id, revision or DEFAULT_REVISION, info.sha, files, bool(info.private))
    if MANIFEST_NAME not in files:
        raise NotAZooError(
            f"dataset repo {remote.label} is not a weightzoo zoo: it has no {MANIFEST_NAME} at its "
            f"root. Push a zoo to it with `zoo push ZOO {repo_id}`; plain datasets load with "
            f"`datasets.load_dataset({repo_id!r})`")
    return remote


def check_manifest(manifest: Manifest, remote: RemoteZoo) -> None:
    """Refuse a manifest whose file paths are unsafe or missing from the repo.

    Every listed path must be relative, inside ``models/`` or ``weights/``, free of ``..``,
    and present in the commit.

    Raises:
        ZooFormatError: an unsafe path.
        HubError: a listed file is not in the repo (an incomplete push).
    """
    for entry in manifest.files:
        p = PurePosixPath(entry.path)
        if (p.is_absolute() or "\\" in entry.path or ".." in p.parts or len(p.parts) < 2
                or p.parts[0] not in DATA_FOLDERS):
            raise ZooFormatError(
                f"{MANIFEST_NAME} of {remote.label} lists the file {entry.path!r}, which is not a "
                f"path inside models/ or weights/; the manifest is corrupt, refusing to use it")
    missing = [f.path for f in manifest.files if f.path not in remote.files]
    if missing:
        raise HubError(
            f"{remote.label} is incomplete: its {MANIFEST_NAME} lists {len(missing)} file(s) the repo "
            f"does not have (e.g. {missing[0]}); push the zoo again with `zoo push`")


def allow_patterns(paths: Iterable[str]) -> list[str]:
    """Exact-path ``allow_patterns`` (glob characters escaped)."""
    return [glob.escape(p) for p in paths]


def download(remote: RemoteZoo, paths: Sequence[str], *, local_dir: Path | None = None,
             cache_dir: Path | None = None, token: str | bool | None = None,
             progress: bool = True) -> Path:
    """Download ``paths`` of ``remote`` at its commit with ``snapshot_download``.

    Args:
        remote: the resolved repo.
        paths: files to fetch (paths in the repo).
        local_dir: download into this directory (default: the HF cache).
        cache_dir: the HF cache to use when ``local_dir`` is not given (default: ``HF_HOME``'s).
        token: a Hub token (default: the client's: ``HF_TOKEN`` or the login).
        progress: show the client's progress bars (default ``True``).

    Returns:
        the directory holding the files (``local_dir``, or the cache's snapshot directory).
    """
    from contextlib import nullcontext

    from huggingface_hub import snapshot_download

    # Writing the shared cache fails in a way the user fixes by pointing HF_HOME elsewhere; a
    # local_dir is the caller's own output, whose errors are its own.
    cache = cache_errors(remote.repo_id, cache_dir) if local_dir is None else nullcontext()
    with cache, client_output(progress), hub_errors(remote.repo_id, remote.revision):
        path = snapshot_download(
            remote.repo_id, repo_type=REPO_TYPE, revision=remote.commit,
            allow_patterns=allow_patterns(paths), local_dir=local_dir, cache_dir=cache_dir,
            token=token)
    return Path(path)


def git_blob_sha1(path: Path) -> str:
    """The git object id of the file at ``path`` (as the Hub reports for regular files)."""
    h = hashlib.sha1(usedforsecurity=False)
    h.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


#: A file changed less than this long (ns) before it was hashed is not remembered by
#: :func:`file_sha256`: a change within the same file-system timestamp tick would leave its
#: stat as it was (git's "racy clean" files); 2 s covers the coarsest clocks (FAT's mtime).
RACY_NS = 2_000_000_000
#: At most this many digests are remembered (then forgotten all at once).
_DIGESTS_MAX = 4096
#: ``{(st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns): sha256}`` of files this process hashed.
_digests: dict[tuple[int, ...], str] = {}


def _identity(path: Path) -> tuple[int, ...] | None:
    """The file's identity and version: ``(st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns)``,
    or ``None`` where they prove nothing (not POSIX, whose ``st_ctime`` is the inode's last change,
    which no program can set back; no inode numbers)."""
    if os.name != "posix":
        return None
    # fstat of an open file, not stat: opening revalidates a network file system's cached
    # attributes (NFS's close-to-open consistency), so another client's change is seen.
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
    if not st.st_ino:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def file_sha256(path: Path) -> str:
    """The sha256 of the file at ``path`` (:func:`catalog.format.sha256_file`), remembered for
    the life of the process and reused while the file provably has not changed, so reopening a
    zoo does not hash its cached shards again.

    Reused only for the same inode of the same device with the same size, modification and
    inode-change times. Whatever damages or replaces the file through the file system changes
    one of these: a write or truncation sets both times (and the change time cannot be set back
    by a program, unlike the modification time); a replacement, such as the Hugging Face
    cache's download-then-rename, is a new inode. A file changed within :data:`RACY_NS` before
    it was hashed, or during the hashing, is not remembered (its times may not show a change
    made in the same clock tick). What bypasses the file system (a failing disk) keeps the
    file's stat: rows read with ``verify=True`` (the default) are still checked against their
    own sha256.
    """
    key = _identity(path)
    known = None if key is None else _digests.get(key)  # one lookup: another thread may clear it
    if known is not None:
        return known
    started = time.time_ns()
    digest = sha256_file(path)
    if key is not None and max(key[3], key[4]) < started - RACY_NS and _identity(path) == key:
        if len(_digests) >= _DIGESTS_MAX:
            _digests.clear()
        _digests[key] = digest
    return digest


def bad_files(root: Path, paths: Iterable[str], remote: RemoteZoo,
              manifest: Manifest | None = None) -> dict[str, str]:
    """Check downloaded files; returns ``{path: what is wrong}`` (empty when all are good).

    Each file must exist, match the Hub's record of the commit (LFS sha256 or git blob id,
    when the Hub gave one) and, if the manifest lists it, the manifest's size and sha256 (the
    sha256 from :func:`file_sha256`: not computed again for a file this process hashed and that
    has not changed since).
    """
    listed = {f.path: f for f in manifest.files} if manifest is not None else {}
    problems: dict[str, str] = {}
    for rel in paths:
        p = safe_join(root, rel, f"file of {remote.label}")
        if not p.is_file():
            problems[rel] = "missing after the download"
            continue
        rf = remote.files.get(rel, RemoteFile(rel))
        entry = listed.get(rel)
        digest = file_sha256(p) if (entry is not None or rf.sha256) else None
        if entry is not None and (digest != entry.sha256 or p.stat().st_size != entry.bytes):
            problems[rel] = (f"sha256 {digest[:12]}... does not match the manifest's "
                             f"{entry.sha256[:12]}...")
        elif rf.sha256 and digest != rf.sha256:
            problems[rel] = f"sha256 {digest[:12]}... does not match the Hub's {rf.sha256[:12]}..."
        elif not rf.sha256 and rf.git_oid and git_blob_sha1(p) != rf.git_oid:
            problems[rel] = f"git blob id does not match the Hub's {rf.git_oid[:12]}..."
    return problems


def integrity_error(remote: RemoteZoo, problems: Mapping[str, str], consequence: str,
                    fresh: bool = True) -> HubIntegrityError:
    """The error for files that failed :func:`bad_files`.

    Args:
        remote: the repo.
        problems: ``{path: what is wrong}``.
        consequence: what was (not) done about it, e.g. ``"nothing was written to out"``.
        fresh: the files were downloaded afresh from the Hub (default ``True``), so the repo
            is at fault; ``False``: they are copies in the local cache, which may be.
    """
    path, what = next(iter(problems.items()))
    more = f" (and {len(problems) - 1} more file(s))" if len(problems) > 1 else ""
    why = (f"a fresh download from the Hub does not match either, so the repo's files do not "
           f"match its {MANIFEST_NAME} (or the connection corrupts downloads); {consequence}. "
           f"Ask the repo's maintainers to push the zoo again" if fresh else consequence)
    return HubIntegrityError(
        f"refusing {remote.label}: a downloaded file does not match its checksum: "
        f"{path}: {what}{more}. {why[0].upper()}{why[1:]}")


def fetch_checked(remote: RemoteZoo, paths: Sequence[str], manifest: Manifest | None,
                  consequence: str, *, local_dir: Path | None = None, cache_dir: Path | None = None,
                  token: str | bool | None = None, progress: bool = True) -> Path:
    """:func:`download` ``paths`` and check them with :func:`bad_files`, giving each file that
    fails one fresh download.

    A file that fails may be a damaged copy in the Hugging Face cache rather than a bad file in
    the repo: the cache keeps it across calls, and a download into ``local_dir`` copies a
    cached file instead of fetching it again, so one damaged blob would fail every later pull
    and load. Its copies (in ``local_dir`` and in the cache) are deleted and it is downloaded
    once more; if it then matches, a warning says the cache was at fault.

    Args:
        remote, paths, local_dir, cache_dir, token, progress: as for :func:`download`.
        manifest: the zoo's manifest, whose sha256 the files must match (``None``: only the
            Hub's record, e.g. for the manifest itself).
        consequence: for the error, what the caller leaves undone (e.g. ``"nothing was used"``).

    Returns:
        the directory holding the files.

    Raises:
        HubIntegrityError: a file fails again after the fresh download (its copy is deleted).
    """
    kwargs = {"local_dir": local_dir, "cache_dir": cache_dir, "token": token, "progress": progress}
    root = download(remote, paths, **kwargs)
    problems = bad_files(root, paths, remote, manifest)
    if not problems:
        return root
    cached = [rel for rel in problems if _evict_everywhere(remote, root, rel, local_dir, cache_dir)]
    download(remote, list(problems), **kwargs)
    left = bad_files(root, list(problems), remote, manifest)
    if left:
        evict_cached(root, list(left), local_dir)
        raise integrity_error(remote, left, consequence)
    if cached:
        more = f" (and {len(cached) - 1} more file(s))" if len(cached) > 1 else ""
        warnings.warn(
            f"the Hugging Face cache's copy of {cached[0]}{more} of {remote.label} was damaged (it "
            f"did not match its checksum; the repo's file does): it was deleted and downloaded again",
            stacklevel=2)
    return root


def _evict_everywhere(remote: RemoteZoo, root: Path, rel: str, local_dir: Path | None,
                      cache_dir: Path | None) -> bool:
    """Delete the downloaded copy of ``rel`` under ``root`` and the HF cache's copy at the
    commit; whether the cache held one (with ``local_dir``, the download may have copied it)."""
    from huggingface_hub import try_to_load_from_cache

    evict_cached(root, [rel], local_dir)
    if local_dir is None:
        return True  # root is the cache's snapshot
    cached = try_to_load_from_cache(remote.repo_id, rel, cache_dir=cache_dir, revision=remote.commit,
                                    repo_type=REPO_TYPE)
    if not isinstance(cached, str):
        return False
    snapshot = Path(cached).parents[len(PurePosixPath(rel).parts) - 1]
    evict_cached(snapshot, [rel])
    return True


def fetch_manifest(remote: RemoteZoo, **download_kwargs) -> tuple[Path, Manifest]:
    """Download and check ``zoo.json`` (and the card, if the repo has one) of ``remote``.

    Returns:
        ``(directory, manifest)``; the manifest's structure, ids and paths are checked when it
        is read (:meth:`~catalog.format.Manifest.from_dict`), and its files against the repo
        with :func:`check_manifest`.

    Raises:
        ZooFormatError: the manifest is malformed or names unsafe paths (a crafted repo).
    """
    meta = [MANIFEST_NAME] + ([CARD_NAME] if CARD_NAME in remote.files else [])
    root = fetch_checked(remote, meta, None, "nothing was used", **download_kwargs)
    manifest = read_manifest(root, label=f"{MANIFEST_NAME} of {remote.label}")
    check_manifest(manifest, remote)
    return root, manifest


def evict_cached(root: Path, paths: Iterable[str], local_dir: Path | None = None) -> None:
    """Delete downloaded copies of ``paths`` (and, in the HF cache, the blobs they link to),
    so that the next attempt downloads them again."""
    for rel in paths:
        p = safe_join(root, rel, "cached file")
        if local_dir is None and p.is_symlink():
            target = p.resolve()
            p.unlink(missing_ok=True)
            if target.is_file():
                os.unlink(target)
        elif p.is_file():
            p.unlink()
