"""User-facing errors. Each message says what was wrong and what to do about it.

The CLI prints any :class:`WeightzooError` as one line (no traceback) and exits non-zero.
"""


class WeightzooError(Exception):
    """Base class of every error a user can fix (bad input, bad files, bad requests)."""


class ZooFormatError(WeightzooError):
    """A zoo's files do not follow the zoo format (or a spec/manifest is malformed)."""


class ZooNotFoundError(WeightzooError):
    """No zoo where one was expected."""


class IntegrityError(WeightzooError):
    """Bytes on disk do not match the checksum recorded for them."""


class QueryError(WeightzooError):
    """A query could not run (unknown column, syntax error, write attempt, ...)."""


class RowIndexError(QueryError, IndexError):
    """A row position outside a selection: an ``IndexError`` for Python code (as a list's), a
    one-line error for the CLI."""


def format_bytes(n: float) -> str:
    """A size for messages: ``"137.1 MiB"``, ``"3.0 GiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
