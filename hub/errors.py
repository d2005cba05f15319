"""User-facing errors of Hub transfers, and :func:`hub_errors`, which turns the errors of
``huggingface_hub`` into them.

Every message names the repository (and revision) and says what to do. The CLI prints any
:class:`~catalog.errors.WeightzooError` as one line and exits 1.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager

from catalog.errors import IntegrityError, WeightzooError

__all__ = [
    "HubError", "HubIntegrityError", "HubPermissionError", "HubUnreachableError",
    "NotAZooError", "RepoNotFoundError", "RevisionNotFoundError", "hub_errors",
]

_LOGIN_HINT = "set HF_TOKEN to a token that can read it, or log in with `hf auth login`"


class HubError(WeightzooError):
    """A Hub transfer failed for a reason the user can fix."""


class RepoNotFoundError(HubError):
    """The dataset repository does not exist (or is private and the token cannot see it)."""


class RevisionNotFoundError(HubError):
    """The branch, tag or commit does not exist in the repository."""


class HubPermissionError(HubError):
    """The token may not read (gated repo) or write the repository."""


class HubUnreachableError(HubError):
    """The Hub could not be reached (network down, wrong endpoint, offline mode)."""


class NotAZooError(HubError):
    """The repository exists but holds no weightzoo zoo (no ``zoo.json`` at its root)."""


class HubIntegrityError(IntegrityError, HubError):
    """A downloaded file does not match the checksum recorded for it."""


def endpoint() -> str:
    """The Hub endpoint ``huggingface_hub`` talks to (``HF_ENDPOINT``)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network-level exception classes of the HTTP stacks ``huggingface_hub`` may use."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, attr in (("httpx2", "TransportError"), ("httpx", "TransportError"),
                         ("requests.exceptions", "ConnectionError"),
                         ("requests.exceptions", "Timeout")):
        try:
            cls = getattr(importlib.import_module(module), attr, None)
        except ImportError:
            continue
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


def _status(err: BaseException) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def _server_message(err: BaseException) -> str:
    """The Hub's own one-line explanation of an HTTP error, if it gave one."""
    msg = getattr(err, "server_message", None) or ""
    return " ".join(str(msg).split())[:200]


@contextmanager
def hub_errors(repo_id: str, revision: str | None = None, *, writing: bool = False) -> Iterator[None]:
    """Re-raise the errors of ``huggingface_hub`` calls in the block as :class:`HubError`\\ s.

    Args:
        repo_id: the dataset repository the block talks to (``ORG/NAME``).
        revision: the branch, tag or commit it asked for (default ``None``: the default branch).
        writing: the block writes to the repository (default ``False``); a 401/403 then means
            no write permission.
    """
    from huggingface_hub import errors as hf

    where = f"dataset repo {repo_id!r} on {endpoint()}"
    try:
        yield
    except WeightzooError:
        raise
    except hf.GatedRepoError as e:
        raise HubPermissionError(
            f"{where} is gated: accept its conditions at {endpoint()}/datasets/{repo_id} with "
            f"the account of your token, then retry ({_LOGIN_HINT})") from e
    except hf.RepositoryNotFoundError as e:
        raise RepoNotFoundError(
            f"{where} was not found (or it is private and your token cannot see it); check "
            f"the name (ORG/NAME), or {_LOGIN_HINT}") from e
    except hf.RevisionNotFoundError as e:
        if writing:
            raise RevisionNotFoundError(
                f"cannot push to revision {revision!r} of {where}: it is not a branch (pushes go "
                f"to a branch; name a new or existing branch with --revision)") from e
        raise RevisionNotFoundError(
            f"revision {revision!r} does not exist in {where}; pass a branch, a tag or a commit "
            f"sha the repo has (list them with `HfApi().list_repo_refs({repo_id!r}, "
            f"repo_type='dataset')`)") from e
    except hf.DisabledRepoError as e:
        raise HubPermissionError(f"{where} has been disabled by the Hub and cannot be used") from e
    except hf.HFValidationError as e:
        raise HubError(f"{repo_id!r} is not a valid repo id ({e}); use the form ORG/NAME") from e
    except hf.HfHubHTTPError as e:
        status = _status(e)
        server = _server_message(e)
        detail = f" (the Hub said: {server})" if server else ""
        if status in (401, 403) and writing:
            raise HubPermissionError(
                f"no permission to write to {where}{detail}; use a token with write access to "
                f"it (set HF_TOKEN or run `hf auth login`), or push to a repo in your own "
                f"namespace") from e
        if status in (401, 403):
            raise HubPermissionError(f"no permission to read {where}{detail}; {_LOGIN_HINT}") from e
        if status == 404:
            raise HubError(f"{where} answered 404 Not Found{detail}; check the repo id and "
                           f"revision") from e
        raise HubError(f"the Hub refused the request for {where} with HTTP {status}{detail}; "
                       f"retry later, or check the repo on the Hub") from e
    except hf.OfflineModeIsEnabled as e:
        raise HubUnreachableError(
            f"cannot reach {where}: offline mode is on (HF_HUB_OFFLINE=1) and the files are not "
            f"in the local cache; unset HF_HUB_OFFLINE to download them") from e
    except hf.RevisionResolutionError as e:  # resolve_revision: no Hub and no cached ref
        raise HubUnreachableError(
            f"cannot reach {where} to resolve revision {revision or 'main'!r}, and the local cache "
            f"does not record it; check your network connection and HF_ENDPOINT") from e
    except hf.LocalEntryNotFoundError as e:
        raise HubUnreachableError(
            f"cannot reach {where} and the files are not in the local cache; check your "
            f"network connection and HF_ENDPOINT") from e
    except _transport_errors() as e:
        raise HubUnreachableError(
            f"cannot reach {where} ({type(e).__name__}: {e}); check your network connection "
            f"and HF_ENDPOINT") from e
