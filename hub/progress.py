"""Quieting the ``huggingface_hub`` client (progress bars and log messages) for one call."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def client_output(enabled: bool) -> Iterator[None]:
    """Within the block, let ``huggingface_hub`` show progress bars and log messages only if
    ``enabled``.

    ``enabled=True`` leaves the client's settings alone (``HF_HUB_DISABLE_PROGRESS_BARS`` and
    ``HF_HUB_VERBOSITY`` still apply); ``enabled=False`` (``--quiet``) turns the bars off and
    its logger down to errors (its warnings, e.g. "No files have been modified since last
    commit", say nothing our own output does not), restoring both afterwards.
    """
    if enabled:
        yield
        return
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
        logging,
    )

    was_disabled = are_progress_bars_disabled()
    logger = logging.get_logger()
    level = logger.level
    if not was_disabled:
        disable_progress_bars()
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
        if not was_disabled:
            enable_progress_bars()
