"""zoo_cli.main's ZooGroup: operating-system errors (a disk full, a folder that cannot be written,
and safetensors' error around one) are one `error:` line and exit 1; programming errors keep
their traceback."""

from __future__ import annotations

import errno

import pytest
from safetensors import SafetensorError
from zoo_helpers import assert_one_line_error, run_cli

import zoo_cli.query_cmds as query_cmds


@pytest.mark.parametrize("error, words", [
    (OSError(errno.ENOSPC, "No space left on device"), ["No space left on device", "free some space"]),
    (PermissionError(errno.EACCES, "Permission denied", "out/res.csv"),
     ["Permission denied: out/res.csv", "check its permissions"]),
    (OSError(errno.EROFS, "Read-only file system", "out/res.csv"), ["Read-only file system", "write elsewhere"]),
    (SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),
     ["I/O error: No space left on device (os error 28)", "free some space"]),
    (SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                     '"No space left on device" })'), ["StorageFull", "free some space"]),
])
def test_os_errors_are_one_line(zoo_dir, tmp_path, monkeypatch, error, words):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(query_cmds, "write_result", fail)
    assert_one_line_error(run_cli("query", zoo_dir, "--limit", "1", "--out", tmp_path / "res.csv"), *words)


@pytest.mark.parametrize("error", [ValueError("a bug"), SafetensorError("Error while deserializing header: "
                                                                           "HeaderTooLarge")])
def test_programming_errors_keep_their_traceback(zoo_dir, tmp_path, monkeypatch, error):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(query_cmds, "write_result", fail)
    with pytest.raises(type(error)):
        run_cli("query", zoo_dir, "--limit", "1", "--out", tmp_path / "res.csv")


def test_the_line_names_the_paths():
    from zoo_cli.main import os_error_line

    e = OSError(errno.EXDEV, "Invalid cross-device link", "a", None, "b")  # a rename
    assert os_error_line(e) == ("Invalid cross-device link: a -> b; check the path and the disk, then run the "
                                "command again")
