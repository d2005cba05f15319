"""``zoo pull``: download a zoo from a Hub dataset repo into a directory, whole or in part.

A pull resolves the revision to a commit sha first and downloads every file at that commit,
into a staging folder beside ``out`` (inside it, when ``out`` is an existing empty directory);
each file is checked against the Hub's record and the manifest's sha256, and only a zoo whose
files all match is moved to ``out`` (one rename). A failed pull leaves nothing at ``out``.

The staging folder is named after the pull (``out``, repo, commit) and locked while the pull
runs (:class:`~catalog.lock.ZooLock`). An interrupted pull (Ctrl-C, or killed) leaves it, and
the same pull run again resumes with the files it holds; any later pull in that directory
removes staging folders that no running pull holds.

The pulled zoo records where it came from in its manifest's ``source``::

    {"repo_id": "ORG/NAME", "revision": "main", "commit": "<sha>", "pulled_where": null}

so ``zoo pull ORG/NAME --revision <commit>`` (plus the same ``--where``) reproduces it exactly.
Apart from ``source`` the manifest, the card and every data file are byte-identical to the
repo's for a full pull. A partial pull (``where``) keeps the matching rows, and the weight
shards that hold them, and rewrites the manifest (and card) to describe just that (see
:mod:`hub.subset`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from catalog.card import render_card
from catalog.errors import WeightzooError, ZooFormatError
from catalog.format import CARD_NAME, MANIFEST_NAME, TMP_PREFIX, Manifest, atomic_write_bytes, write_manifest
from catalog.lock import ZooLock, ZooLockedError
from catalog.paths import check_output_path
from catalog.zoo import Zoo
from hub.errors import HubIntegrityError
from hub.remote import RemoteZoo, fetch_checked, fetch_manifest, resolve_remote
from hub.subset import subset_zoo

_NOTHING_WRITTEN = "nothing was written to {out}"
#: A pull stages its download and the checked zoo in a folder named STAGING_PREFIX + a key of
#: (out, repo, commit), beside ``out`` (inside it, when it is an existing directory).
STAGING_PREFIX = f"{TMP_PREFIX}pull-"
#: The file that marks a folder as a pull's staging folder (what it pulls, as JSON).
STAGING_MARKER = "pull.json"


@dataclass
class PullResult:
    """What :func:`pull_zoo` did.

    Args:
        path: the pulled zoo's directory.
        repo_id: the repo it came from.
        revision: the revision asked for (``"main"`` by default).
        commit: the commit sha that revision resolved to.
        where: the row filter, or ``None`` for a full pull.
        rows: metadata rows in the pulled zoo.
        rows_total: metadata rows in the repo's zoo.
        shards: weight shards pulled.
        shards_total: weight shards in the repo's zoo.
        out: the ``out`` the pull was given (default ``None``: it chose ``./NAME``).
    """

    path: Path
    repo_id: str
    revision: str
    commit: str
    where: str | None
    rows: int
    rows_total: int
    shards: int
    shards_total: int
    out: str | None = None

    def reproduce_command(self) -> str:
        """The ``zoo pull`` command that fetches exactly this zoo again (into the same ``--out``,
        when one was given: once that folder is moved or deleted)."""
        args = ["zoo", "pull", self.repo_id, "--revision", self.commit]
        args += ["--where", self.where] if self.where else []
        args += ["--out", self.out] if self.out is not None else []
        # Every argument quoted for a POSIX shell: a --where holds quotes, $ and spaces of its own
        # ('"hidden" = 8' inside "..." lost its quotes).
        return shlex.join(args)


def default_out(repo_id: str) -> Path:
    """Where ``zoo pull ORG/NAME`` writes without ``--out``: ``./NAME``."""
    return Path(repo_id.rstrip("/").rsplit("/", 1)[-1])


def pull_zoo(repo_id: str, out: str | os.PathLike | None = None, *, revision: str | None = None,
             where: str | None = None, token: str | bool | None = None,
             progress: bool = True) -> PullResult:
    """Download the zoo in the dataset repo ``repo_id`` into ``out``.

    Args:
        repo_id: ``ORG/NAME``.
        out: the directory to create, or an empty one (``.`` or a symbolic link to one is fine)
            (default ``./NAME``).
        revision: a branch, tag or commit sha (default ``None``: ``main``).
        where: a SQL condition on the ``models`` table (e.g. ``"lr = 0.01 AND checkpoint = 1"``);
            only the matching rows and the weight shards that hold them are downloaded
            (default ``None``: the whole zoo).
        token: a Hub token (default: ``HF_TOKEN`` or the saved login).
        progress: show the client's progress bars (default ``True``).

    Raises:
        WeightzooError: ``out`` is a file or not empty, lies inside a zoo or another command's
            output (:class:`~catalog.paths.OutputPathError`), another pull is writing into it,
            ``where`` is invalid or matches nothing, or any of the errors of :mod:`hub.errors`
            (missing repo or revision, no permission, not a zoo, a file that does not match its
            checksum or a shard that is not safetensors). Nothing is written to ``out`` then.
    """
    from huggingface_hub import HfApi

    given = os.fspath(out) if out is not None else None
    flag = "--out" if given is not None else "--out; default: ./NAME"
    out = Path(out) if out is not None else default_out(repo_id)
    into_existing = check_out(out, flag)
    check_output_path(out, "out", "zoo", flag=flag)  # nor inside another zoo or command output
    if where is not None and not where.strip():
        where = None
    remote = resolve_remote(HfApi(token=token), repo_id, revision)
    # A new directory is the staged zoo, renamed into place in one step. An existing (empty)
    # one may be '.' or reached through a symbolic link, neither of which a rename can replace:
    # the zoo is staged inside it (so on its file system) and its entries moved in.
    parent = out if into_existing else out.parent
    staging, lock = _open_staging(parent, out, remote, flag)
    try:
        result = _pull_into(remote, staging, out, where, token, progress)
        try:
            if into_existing:
                _move_entries(staging / "zoo", out)
            else:
                os.replace(staging / "zoo", out)
        except OSError as e:  # another process created out meanwhile
            raise WeightzooError(f"cannot move the pulled zoo to out={str(out)!r} ({flag}): {e.strerror or e}; "
                                 f"pull into a new directory (out=, --out)") from e
        shutil.rmtree(staging, ignore_errors=True)
    except Exception:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        # An interrupt (Ctrl-C: not an Exception) leaves the staging folder, so the same pull,
        # run again, resumes with the files it holds.
        lock.release()
    result.path, result.out = out, given
    return result


def _staging_name(out: Path, remote: RemoteZoo) -> str:
    """The staging folder's name for pulling ``remote`` into ``out``: the same for the same
    pull, so that running it again finds what it had downloaded."""
    key = hashlib.sha256(f"{os.path.abspath(out)}\0{remote.repo_id}\0{remote.commit}".encode()).hexdigest()
    return STAGING_PREFIX + key[:16]


def _open_staging(parent: Path, out: Path, remote: RemoteZoo, flag: str = "--out") -> tuple[Path, ZooLock]:
    """Create (or reopen, to resume) this pull's staging folder in ``parent`` and lock it, and
    remove the staging folders of pulls that died there (see :func:`remove_stale_staging`).
    ``flag`` names the CLI option ``out`` came from, for messages.

    Raises:
        WeightzooError: ``parent`` cannot be written, or another pull is writing into ``out``
            (it holds this pull's staging folder, or stages inside ``out``).
    """
    staging = parent / _staging_name(out, remote)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        lock = ZooLock(staging, command=f"zoo pull {remote.repo_id} --out {out}")
    except ZooLockedError as e:
        raise ZooLockedError(f"another zoo pull of {remote.label} into {out} is running; wait for it "
                             f"to finish (its staging folder: {e})") from e
    except OSError as e:
        raise WeightzooError(f"cannot write into {parent} for out={str(out)!r} ({flag}): {e.strerror or e}; "
                             f"choose another out (--out)") from e
    try:
        atomic_write_bytes(staging / STAGING_MARKER, json.dumps(
            {"repo_id": remote.repo_id, "commit": remote.commit, "out": str(out)}).encode())
        live = remove_stale_staging(parent, keep=staging)
        if live and parent == out:
            raise WeightzooError(f"another zoo pull is writing into {out} ({live[0].name}); wait for it "
                                 f"to finish, or pull into another directory")
        shutil.rmtree(staging / "zoo", ignore_errors=True)  # only the download resumes
    except BaseException:
        lock.release()
        raise
    return staging, lock


def remove_stale_staging(parent: Path, keep: Path | None = None) -> list[Path]:
    """Delete the staging folders in ``parent`` of pulls that no process runs any more (killed,
    say, or interrupted and not run again); returns the ones a running pull holds.

    Only folders a pull made are considered (named ``.tmp-pull-*`` and holding
    :data:`STAGING_MARKER`), and only those whose :class:`~catalog.lock.ZooLock` can be taken: a
    running pull holds its folder's lock, and the kernel releases it when the pull dies.

    Args:
        parent: the directory to clean.
        keep: a staging folder to leave alone (the caller's own).
    """
    live = []
    for folder in sorted(parent.glob(STAGING_PREFIX + "*")):
        if folder == keep or not (folder / STAGING_MARKER).is_file():
            continue
        try:
            lock = ZooLock(folder, command="zoo pull (removing a stale staging folder)")
        except ZooLockedError:
            live.append(folder)
            continue
        except WeightzooError:  # not ours to remove (permissions)
            continue
        try:
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            lock.release()
    return live


def check_out(out: Path, flag: str = "--out") -> bool:
    """Check that a pull can write its zoo at ``out``, before anything is downloaded. Messages name
    the argument and ``flag``, the CLI option it came from: ``out='x' (--out)``.

    Returns:
        whether ``out`` is an existing (empty) directory, possibly ``.`` or a symbolic link
        to one; ``False`` when it does not exist yet.

    Raises:
        WeightzooError: ``out`` is a file, a dangling symbolic link, or a directory that is not
            empty.
    """
    if out.is_symlink() and not out.exists():
        raise WeightzooError(
            f"out={str(out)!r} ({flag}) is a symbolic link to {os.readlink(out)}, which does not exist; create "
            f"that directory, or choose another out (--out)")
    if not out.exists():
        return False
    if not out.is_dir():
        raise WeightzooError(f"out={str(out)!r} ({flag}) exists and is not a directory; choose a new or empty "
                             f"directory")
    if any(not p.name.startswith(STAGING_PREFIX) for p in out.iterdir()):  # a pull's own: see _open_staging
        raise WeightzooError(
            f"out={str(out)!r} ({flag}) already exists and is not empty; pull into a new directory (out=, "
            f"--out), or delete {out} first")
    return True


def _move_entries(src: Path, dst: Path) -> None:
    """Move everything in ``src`` into the empty directory ``dst``, the manifest last (a zoo
    without its manifest is never mistaken for a complete one)."""
    for entry in sorted(src.iterdir(), key=lambda p: p.name == MANIFEST_NAME):
        os.replace(entry, dst / entry.name)


def _pull_into(remote: RemoteZoo, staging: Path, out: Path, where: str | None,
               token: str | bool | None, progress: bool) -> PullResult:
    """Download and check the zoo into ``staging/zoo``."""
    dl = staging / "download"
    kwargs = {"local_dir": dl, "token": token, "progress": progress}
    _, manifest = fetch_manifest(remote, **kwargs)
    # Metadata: the parts and the sidecar tables (analysis metrics, embeddings) joined to them.
    parts = [f.path for f in manifest.part_files()] + [f.path for f in manifest.sidecar_files()]
    all_shards = [f.path for f in manifest.shard_files()]
    rows_total = sum(f.rows for f in manifest.part_files())
    consequence = _NOTHING_WRITTEN.format(out=out)

    # A full pull keeps the repo's bytes as they are, so its rows and shards get the same checks
    # as a partial pull's: every row points into a listed shard, every shard is a safetensors
    # file of its architecture (loading would refuse either, but only once the zoo was "pulled").
    if parts:
        fetch_checked(remote, parts, manifest, consequence, **kwargs)
    ids, needed = _matching_rows(dl, where, remote)
    unknown = sorted(needed - set(all_shards), key=str)  # a NULL weights_shard is None
    if unknown:
        raise ZooFormatError(
            f"rows of {remote.label} point to weight shard {unknown[0]!r}, which its manifest "
            f"does not list; the zoo is corrupt ({consequence})")
    wanted = all_shards if where is None else [s for s in all_shards if s in needed]
    if wanted:
        fetch_checked(remote, wanted, manifest, consequence, **kwargs)
    _check_shards(dl, manifest, wanted, remote, consequence)
    if where is None:
        shutil.rmtree(dl / ".cache", ignore_errors=True)  # the client's download bookkeeping
        zoo_dir, rows, shards = dl, rows_total, len(all_shards)
    else:
        zoo_dir = staging / "zoo"
        manifest = subset_zoo(dl, zoo_dir, manifest, ids)
        rows, shards = len(ids), len(wanted)

    manifest.source = {"repo_id": remote.repo_id, "revision": remote.revision,
                       "commit": remote.commit, "pulled_where": where}
    write_manifest(zoo_dir, manifest)
    if where is not None:
        atomic_write_bytes(zoo_dir / CARD_NAME, render_card(zoo_dir, repo_id=remote.repo_id).encode())
    if zoo_dir != staging / "zoo":
        os.replace(zoo_dir, staging / "zoo")
    return PullResult(out, remote.repo_id, remote.revision, remote.commit, where, rows, rows_total,
                      shards, len(all_shards))


def _check_shards(root: Path, manifest: Manifest, paths: list[str], remote: RemoteZoo,
                  consequence: str) -> None:
    """Check that each downloaded shard in ``paths`` is a well-formed safetensors file (a header
    of sane size that parses, every tensor inside the file) holding its architecture's tensors,
    with the loader's own checks (:class:`catalog.loading.ShardFile`).

    Raises:
        HubIntegrityError: naming the shard and what is wrong with it.
    """
    from catalog.loading import open_shard  # torch: only once the metadata checked out

    for rel in paths:
        entry = manifest.shard_entry(rel)
        try:
            open_shard(root, manifest, rel).check(manifest.network_spec(entry.arch_id))
        except WeightzooError as e:
            # The loader's messages end with advice for a local zoo ("run zoo verify"): keep the
            # reason only.
            reason = str(e.__cause__ or e).split("; ")[0]
            raise HubIntegrityError(
                f"refusing {remote.label}: weight shard {rel} is not a safetensors file of "
                f"architecture {entry.arch_id} ({reason}), although it matches its checksum; the "
                f"repo holds a corrupt or crafted zoo ({consequence}). Ask its maintainers to push "
                f"the zoo again") from e


def _matching_rows(root: Path, where: str | None, remote: RemoteZoo) -> tuple[list[str], set[str]]:
    """``(model_ids, weight shards)`` of the rows matching ``where`` (default ``None``: every
    row), from the parts already in ``root``."""
    zoo = Zoo(root)
    try:
        table = zoo.select(where=where, columns=["model_id", "weights_shard"]).table
        total = len(zoo)
    finally:
        zoo.close()
    if table.num_rows == 0 and where is not None:
        raise WeightzooError(
            f"--where {where!r} matches none of the {total} rows of {remote.label}; nothing was "
            f"pulled. Check the condition against the rows (`datasets.load_dataset("
            f"{remote.repo_id!r})` shows them)")
    return table.column("model_id").to_pylist(), set(table.column("weights_shard").to_pylist())
