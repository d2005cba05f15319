"""URL openers: how :func:`catalog.open_zoo` opens a zoo that is not a local directory.

``catalog`` knows no remote store. A package above it registers a function per URL scheme,
either by calling :func:`register_opener` or, so that it is found without being imported
first, through the ``weightzoo.openers`` entry point group::

    [project.entry-points."weightzoo.openers"]
    hf = "hub.load:load_zoo_url"

``open_zoo("hf://datasets/ORG/NAME@REV")`` then looks up ``hf`` here, loading the entry point
on first use. A scheme nobody registered is an error that lists the known ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from catalog.errors import WeightzooError

if TYPE_CHECKING:
    from catalog.zoo import Zoo

#: The entry point group packages use to provide openers.
ENTRY_POINT_GROUP = "weightzoo.openers"
#: ``scheme://...``; a Windows drive letter (``C:\\``) or a plain path never matches.
_URL = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]+)://")

Opener = Callable[..., "Zoo"]
_OPENERS: dict[str, Opener] = {}


def register_opener(scheme: str, opener: Opener) -> None:
    """Open URLs ``scheme://...`` with ``opener(url, **kwargs) -> Zoo``."""
    if not re.fullmatch(r"[a-z][a-z0-9+.-]+", scheme):
        raise ValueError(f"invalid URL scheme {scheme!r}")
    _OPENERS[scheme] = opener


def url_scheme(text: str) -> str | None:
    """The scheme of ``text`` if it is a URL (``"hf"`` for ``hf://...``), else ``None``."""
    m = _URL.match(text)
    return m.group("scheme") if m else None


def _from_entry_points(scheme: str) -> Opener | None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == scheme:
            opener = ep.load()
            _OPENERS[scheme] = opener
            return opener
    return None


def known_schemes() -> list[str]:
    """Schemes registered so far or offered by an installed entry point."""
    return sorted(set(_OPENERS) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def open_url(url: str, **kwargs: Any) -> Zoo:
    """Open ``url`` with the opener registered for its scheme."""
    scheme = url_scheme(url)
    if scheme is None:
        raise WeightzooError(f"{url!r} is not a URL (scheme://...)")
    opener = _OPENERS.get(scheme) or _from_entry_points(scheme)
    if opener is None:
        known = ", ".join(f"{s}://" for s in known_schemes()) or "none"
        raise WeightzooError(
            f"no opener for {scheme}:// URLs (known: {known}); give a local zoo directory, or "
            f"install the package that provides {scheme}://")
    return opener(url, **kwargs)
