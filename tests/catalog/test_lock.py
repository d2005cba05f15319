"""ZooLock: one writer per zoo directory; the error names the other process; a dead holder
never blocks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from catalog.errors import WeightzooError
from catalog.lock import LOCK_NAME, LockFileError, ZooLock, ZooLockedError

HOLD = textwrap.dedent("""
    import sys, time
    from catalog.lock import ZooLock
    lock = ZooLock(sys.argv[1], command="zoo build spec.yaml --out somewhere")
    print("locked", flush=True)
    sys.stdin.read()  # hold until the test closes stdin (or kills us)
    lock.release()
""")


def _holder(root: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_records_the_holder_and_release_removes_it(tmp_path):
    root = tmp_path / "zoo"
    lock = ZooLock(root, command="zoo build x")
    info = json.loads((root / LOCK_NAME).read_text())
    assert info["pid"] == os.getpid() and info["command"] == "zoo build x"
    assert info["hostname"] and info["started"]
    lock.release()
    assert not (root / LOCK_NAME).exists()
    lock.release()  # idempotent


def test_second_lock_in_the_same_process_is_refused(tmp_path):
    with ZooLock(tmp_path, command="zoo build first"):
        with pytest.raises(ZooLockedError) as e:
            ZooLock(tmp_path, command="zoo build second")
        msg = str(e.value)
        assert f"process {os.getpid()}" in msg and "zoo build first" in msg
        assert "wait for it to finish" in msg and "\n" not in msg
    ZooLock(tmp_path).release()  # free again


def test_lock_held_by_another_process_names_it(tmp_path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(ZooLockedError, match=rf"process {proc.pid} \(zoo build spec.yaml"):
            ZooLock(tmp_path)
    finally:
        proc.stdin.close()
        proc.wait(10)
    ZooLock(tmp_path).release()


def test_a_lock_record_nested_too_deep_still_names_a_holder(tmp_path):
    """A RecursionError traceback before (the record is read to name the holder)."""
    with ZooLock(tmp_path, command="zoo build first"):
        with open(tmp_path / LOCK_NAME, "r+b") as f:  # the same file, crafted content
            f.write(b"[" * 30_000 + b"]" * 30_000)
        with pytest.raises(ZooLockedError, match="another process"):
            ZooLock(tmp_path)


def test_a_killed_holder_never_blocks(tmp_path):
    proc = _holder(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == proc.pid  # the file stays ...
    lock = ZooLock(tmp_path, command="zoo build again")  # ... but does not block
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()


def test_lock_file_replaced_under_a_waiter_is_not_trusted(tmp_path, monkeypatch):
    """The holder unlinks the file on release; a lock taken on the unlinked inode is retried."""
    import catalog.lock as lockmod

    first = ZooLock(tmp_path)
    real_flock = lockmod.fcntl.flock
    calls = []

    def flock(fd, op):
        if not calls and op & lockmod.fcntl.LOCK_EX:
            calls.append(op)
            first.release()  # the holder lets go (and unlinks) between our open and flock
        return real_flock(fd, op)

    monkeypatch.setattr(lockmod.fcntl, "flock", flock)
    second = ZooLock(tmp_path)
    monkeypatch.undo()
    # The lock the second writer holds is on the file at the path, so a third is refused.
    with pytest.raises(ZooLockedError):
        ZooLock(tmp_path)
    second.release()



def test_unwritable_directory_is_a_user_error(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(WeightzooError, match="cannot write the zoo directory"):
        ZooLock(tmp_path / "file")


def test_a_lock_record_that_cannot_be_written_is_a_user_error(tmp_path, monkeypatch):
    """The lock file is created empty, then its record written: on a full disk the write fails
    (ENOSPC) after the open succeeded. One clear error, and the lock is let go."""
    import errno

    import catalog.lock as lock

    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(lock.os, "pwrite", full)
        with pytest.raises(WeightzooError, match=rf"cannot write the lock file {tmp_path / LOCK_NAME}: No space "
                                                 rf"left on device; free some space"):
            ZooLock(tmp_path)
    assert not (tmp_path / LOCK_NAME).exists()
    ZooLock(tmp_path).release()  # not held by the failed attempt


# A zoo comes from anywhere (an archive, a copied folder): its lock file is never written through.
def _refused(root: Path) -> str:
    with pytest.raises(LockFileError) as e:
        ZooLock(root, command="zoo embed")
    msg = str(e.value)
    assert "\n" not in msg and str(root / LOCK_NAME) in msg and "Remove it" in msg
    return msg


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious user data\n")
    root = tmp_path / "zoo"
    root.mkdir()
    (root / LOCK_NAME).symlink_to(victim)
    msg = _refused(root)
    assert f"a symbolic link (to {victim})" in msg and f"rm {root / LOCK_NAME}" in msg
    assert victim.read_bytes() == b"precious user data\n"  # not truncated, not written
    assert (root / LOCK_NAME).is_symlink()  # and neither it nor the link is deleted


def test_a_dangling_symlinked_lock_file_creates_nothing(tmp_path):
    root = tmp_path / "zoo"
    root.mkdir()
    (root / LOCK_NAME).symlink_to(tmp_path / "created-outside")
    _refused(root)
    assert not (tmp_path / "created-outside").exists()


def test_a_hard_linked_lock_file_is_refused(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious user data\n")
    root = tmp_path / "zoo"
    root.mkdir()
    os.link(victim, root / LOCK_NAME)
    assert "a hard link" in _refused(root)
    assert victim.read_bytes() == b"precious user data\n"


def test_a_lock_file_that_is_a_pipe_or_folder_is_refused(tmp_path):
    os.mkfifo(tmp_path / LOCK_NAME)
    assert "a special file" in _refused(tmp_path)  # and the open did not hang
    (tmp_path / LOCK_NAME).unlink()
    (tmp_path / LOCK_NAME).mkdir()
    assert f"rm -r {tmp_path / LOCK_NAME}" in _refused(tmp_path)


def test_release_deletes_only_its_own_lock_file(tmp_path):
    """A lock file replaced by someone else while held (here by a link) is not ours to delete."""
    lock = ZooLock(tmp_path)
    (tmp_path / LOCK_NAME).unlink()
    (tmp_path / "other").write_text("x")
    (tmp_path / LOCK_NAME).symlink_to(tmp_path / "other")
    lock.release()
    assert (tmp_path / LOCK_NAME).is_symlink() and (tmp_path / "other").read_text() == "x"
