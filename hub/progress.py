"""Switching the transfer progress bars of ``huggingface_hub`` off for one call."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """Within the block, show ``huggingface_hub``'s progress bars only if ``enabled``.

    ``enabled=True`` leaves the client's setting alone (``HF_HUB_DISABLE_PROGRESS_BARS`` still
    wins); ``enabled=False`` turns the bars off and restores the previous state afterwards.
    """
    if enabled:
        yield
        return
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    was_disabled = are_progress_bars_disabled()
    if not was_disabled:
        disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()
