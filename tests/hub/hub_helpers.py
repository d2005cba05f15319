"""Assertions shared by the hub tests (the one-line-error check is the suite's, in zoo_helpers)."""

from __future__ import annotations

from zoo_helpers import assert_one_line_error

__all__ = ["assert_one_line_error"]
