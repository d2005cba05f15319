"""Assertions shared by the hub tests."""

from __future__ import annotations


def assert_one_line_error(result, *fragments: str) -> None:
    """A CLI result that failed with exit 1 and one ``error:`` line holding every fragment."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
