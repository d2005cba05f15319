"""``zoo push``: upload a zoo to a Hub dataset repo, whose layout is the zoo's layout.

Before uploading, the zoo's files are checked against its manifest (a corrupt zoo is never
pushed) and its dataset card (``README.md``) is rewritten to name the repo. The upload sends
exactly the zoo: ``zoo.json``, ``README.md`` and the files the manifest lists; files under
``models/`` and ``weights/`` that the repo holds from an earlier push but this zoo does not list
are deleted in the same commit, so ``models/*.parquet`` (what ``datasets`` reads) is always
this zoo's metadata. The client skips files the repo already has, so pushing an unchanged
zoo again uploads nothing and makes no commit.

A push holds the zoo's write lock (:class:`~catalog.lock.ZooLock`) from the checks to the end of
the upload, like every writer: it rewrites the card, and a ``zoo build``, ``zoo analyze`` or
``zoo embed`` writing the zoo meanwhile would change its files between the checks and the upload.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from catalog.card import render_card
from catalog.errors import IntegrityError, WeightzooError
from catalog.format import CARD_NAME, MANIFEST_NAME, atomic_write_bytes, read_manifest
from catalog.lock import ZooLock
from catalog.verify import verify_zoo
from hub.errors import HubError, HubPermissionError, hub_errors
from hub.progress import client_output
from hub.remote import DATA_FOLDERS, DEFAULT_REVISION, REPO_TYPE, allow_patterns

_SHA = re.compile(r"[0-9a-f]{40}")


@dataclass
class PushResult:
    """What :func:`push_zoo` did.

    Args:
        repo_id: the dataset repo.
        revision: the branch pushed to.
        commit: the branch's head after the push.
        commit_url: the URL of that commit.
        repo_url: the URL of the repo.
        changed: whether the push made a new commit (``False``: the branch already held this zoo).
        created_repo: whether the repo was created by this push.
        created_branch: whether the branch was created by this push.
    """

    repo_id: str
    revision: str
    commit: str
    commit_url: str
    repo_url: str
    changed: bool
    created_repo: bool = False
    created_branch: bool = False


def push_zoo(zoo: str | os.PathLike, repo_id: str, *, revision: str | None = None,
             private: bool = False, message: str | None = None,
             token: str | bool | None = None, progress: bool = True) -> PushResult:
    """Upload the zoo directory ``zoo`` to the dataset repo ``repo_id``.

    Args:
        zoo: a complete zoo directory.
        repo_id: ``ORG/NAME``; the dataset repo is created if it does not exist.
        revision: the branch to push to; a missing branch is created from the default branch
            (default ``None``: ``main``).
        private: create the repo private (default ``False``); pushing with ``private=True`` to an
            existing public repo is refused rather than publishing the zoo.
        message: the commit message (default: ``"Upload zoo NAME with weightzoo"``).
        token: a Hub token with write access (default: ``HF_TOKEN`` or the saved login).
        progress: show the client's progress bars (default ``True``).

    Raises:
        WeightzooError: the directory is not a complete zoo, or fails its checksums.
        ZooLockedError: another process is writing the zoo (a build, ``zoo analyze``, ...).
        HubError: no permission, a revision that is not a branch, an unreachable Hub, ...
    """
    root = Path(zoo)
    read_manifest(root)  # a zoo at all, before the lock (which would create a missing directory)
    with ZooLock(root, f"zoo push {repo_id}"):
        return _push_locked(root, repo_id, revision=revision, private=private, message=message,
                            token=token, progress=progress)


def _push_locked(root: Path, repo_id: str, *, revision: str | None, private: bool, message: str | None,
                 token: str | bool | None, progress: bool) -> PushResult:
    """:func:`push_zoo`'s work, with the zoo's write lock held."""
    from huggingface_hub import HfApi

    manifest = read_manifest(root)  # again, under the lock: a writer may have just finished
    if not manifest.complete:
        raise WeightzooError(
            f"{root} is an unfinished zoo (its build did not complete); finish it with `zoo build` "
            f"(it resumes) before pushing")
    report = verify_zoo(root, check_weights=False)
    if not report.ok:
        raise IntegrityError(
            f"{root} does not match its manifest ({len(report.problems)} problem(s), first: "
            f"{report.problems[0]}); refusing to push it. Run `zoo verify {root}` and rebuild or "
            f"re-pull the zoo")
    card = render_card(root, repo_id=repo_id).encode()
    card_path = root / CARD_NAME
    if not card_path.is_file() or card_path.read_bytes() != card:
        atomic_write_bytes(card_path, card)

    branch = revision or DEFAULT_REVISION
    api = HfApi(token=token)
    with client_output(progress), hub_errors(repo_id, revision, writing=True):
        created_repo = not api.repo_exists(repo_id, repo_type=REPO_TYPE)
        repo_url = api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
        if private and not created_repo and not api.dataset_info(repo_id).private:
            raise HubPermissionError(
                f"dataset repo {repo_id!r} already exists and is public; --private only applies "
                f"to a new repo, so nothing was pushed. Make the repo private on the Hub first "
                f"(HfApi().update_repo_settings({repo_id!r}, private=True, repo_type='dataset')), "
                f"or push without --private")
        created_branch = _ensure_branch(api, repo_id, branch)
        head = api.dataset_info(repo_id, revision=branch).sha
        info = api.upload_folder(
            folder_path=root, repo_id=repo_id, repo_type=REPO_TYPE, revision=branch,
            commit_message=message or f"Upload zoo {manifest.name} with weightzoo",
            allow_patterns=allow_patterns([MANIFEST_NAME, CARD_NAME, *(f.path for f in manifest.files)]),
            delete_patterns=[f"{d}/*" for d in DATA_FOLDERS],
        )
    return PushResult(repo_id, branch, info.oid, info.commit_url, str(repo_url),
                      changed=info.oid != head, created_repo=created_repo,
                      created_branch=created_branch)


def _ensure_branch(api, repo_id: str, branch: str) -> bool:
    """Create ``branch`` (from the default branch) if the repo lacks it; whether it did."""
    refs = api.list_repo_refs(repo_id, repo_type=REPO_TYPE)
    if branch in {b.name for b in refs.branches}:
        return False
    if branch in {t.name for t in refs.tags} or _SHA.fullmatch(branch):
        kind = "a tag" if branch in {t.name for t in refs.tags} else "a commit sha"
        raise HubError(
            f"cannot push to {branch!r} of dataset repo {repo_id!r}: it is {kind}, and pushes go to "
            f"a branch; name a new or existing branch with --revision")
    api.create_branch(repo_id, branch=branch, repo_type=REPO_TYPE, exist_ok=True)
    return True
