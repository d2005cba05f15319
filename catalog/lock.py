"""One writer per zoo: :class:`ZooLock`, an exclusive ``flock`` on ``<zoo>/.weightzoo.lock``.

Every process that writes a zoo directory (``zoo build`` through :class:`~catalog.ZooWriter`,
and any future importer, analysis or pull that writes one) holds this lock for as long as it
writes. The lock file records who holds it (pid, host, command, start time), so a second
writer fails at once with an error that names the first instead of interleaving its writes.

The kernel releases an ``flock`` when its holder exits, however it exits (kill -9 included), so
a lock file left behind by a dead process never blocks anyone: the next writer takes the lock
and overwrites the record. A clean release deletes the file. Readers (``open_zoo``, ``zoo
verify``, ``zoo build --dry-run``) never take the lock.

The lock file is the one file every writer writes without checking the zoo's data first, and a
zoo can come from anywhere (an archive, a copied folder): a ``.weightzoo.lock`` that is a symbolic
link, a hard link or not a regular file is refused (:class:`LockFileError`), never opened through,
truncated or deleted, so a crafted zoo cannot make a writer overwrite a file outside it.

POSIX only (``fcntl``). On a network file system ``flock`` is as reliable as the server's
locking; the error message says how to clear a lock whose holder is really gone.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import sys
from datetime import UTC, datetime
from pathlib import Path

from catalog.errors import WeightzooError, ZooFormatError
from catalog.format import parse_json

#: The lock file, at the top of the zoo directory. Not data: verify, strays and push skip it.
LOCK_NAME = ".weightzoo.lock"
#: Longest command line recorded in the lock file.
MAX_COMMAND_CHARS = 300


class ZooLockedError(WeightzooError):
    """Another process is writing the zoo directory."""


class LockFileError(WeightzooError):
    """The zoo's lock file is not a plain file of its own (a symbolic or hard link, a folder, a
    pipe): writing it would write somewhere else, so no writer touches it."""


class ZooLock:
    """Hold the exclusive write lock of the zoo directory ``root`` (created if missing).

    Usable as a context manager; :meth:`release` is idempotent, and a lock that is garbage
    collected or whose process exits is released too.

    Args:
        root: the zoo directory.
        command: what the holder is doing, shown to a refused writer (default: this process's
            command line).

    Raises:
        ZooLockedError: another process (or another writer in this one) holds the lock.
        LockFileError: the lock file is a symbolic link, a hard link or not a regular file.
    """

    def __init__(self, root: str | os.PathLike, command: str | None = None) -> None:
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self._fd: int | None = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._fd = _acquire(self.path, self.root)
        except OSError as e:
            raise WeightzooError(
                f"cannot write the zoo directory {self.root}: {e.strerror or e}; choose a "
                f"writable directory (or make it writable, or work on a copy of the zoo)") from e
        info = {"pid": os.getpid(), "hostname": socket.gethostname(),
                "command": (command or _command_line())[:MAX_COMMAND_CHARS],
                "started": datetime.now(UTC).astimezone().isoformat(timespec="seconds")}
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, (json.dumps(info) + "\n").encode(), 0)
        except OSError as e:  # a full disk or quota: the record needs a block, the empty file did not
            self.release()
            raise WeightzooError(
                f"cannot write the lock file {self.path}: {e.strerror or e}; free some space (or "
                f"write the zoo elsewhere) and run the command again") from e
        except BaseException:
            self.release()
            raise
        self.info = info

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Delete the lock file and let go of the lock (in that order: a writer that opened the
        file just before the delete finds it unlinked and retries, see :func:`_acquire`)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            # Only the file we locked: if something else has taken its name since, it is not ours.
            if _same_file(fd, self.path):
                self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)  # closing the last descriptor releases the flock

    def __enter__(self) -> ZooLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # noqa: S110 (interpreter shutdown: the kernel releases it anyway)
            pass


def _acquire(path: Path, root: Path) -> int:
    """Open ``path`` and take an exclusive, non-blocking flock on it; returns the descriptor.

    Raises:
        LockFileError: ``path`` is a symbolic link, a hard link or not a regular file.
        ZooLockedError: another writer holds the lock.
    """
    # O_NOFOLLOW: a symbolic link at the path fails the open (ELOOP) instead of opening, and
    # later truncating, whatever it points to. O_NONBLOCK: opening a named pipe does not hang.
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    while True:
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
                raise LockFileError(_not_a_lock_file_message(root, path)) from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
                raise LockFileError(_not_a_lock_file_message(root, path, st))
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            record = _read_record(fd)
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise ZooLockedError(_locked_message(root, path, record)) from None
        except BaseException:
            os.close(fd)
            raise
        # The holder deletes the file when it releases; if that happened between our open and
        # our flock, we locked an unlinked file that no one else will ever see: try again.
        if _same_file(fd, path):
            return fd
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    """Whether the name ``path`` (not followed if it is a link) is still the file open as ``fd``."""
    try:
        return os.path.samestat(os.fstat(fd), os.lstat(path))
    except FileNotFoundError:
        return False


def _read_record(fd: int) -> dict:
    """The holder's record in the open lock file ``fd`` (read through the descriptor we checked,
    not the name, which may have changed since)."""
    try:
        record = parse_json(os.pread(fd, 1 << 16, 0), "the lock file")
    except (OSError, ZooFormatError):  # being written right now, or not ours (not JSON, nested too deep)
        return {}
    return record if isinstance(record, dict) else {}


def _not_a_lock_file_message(root: Path, path: Path, st: os.stat_result | None = None) -> str:
    """Why the lock file ``path`` is refused, and the fix (remove it)."""
    if st is None:
        try:
            st = os.lstat(path)
        except OSError:
            st = None
    rm = "rm"
    if st is not None and stat.S_ISLNK(st.st_mode):
        try:
            what = f"a symbolic link (to {os.readlink(path)})"
        except OSError:
            what = "a symbolic link"
    elif st is not None and stat.S_ISDIR(st.st_mode):
        what, rm = "a directory", "rm -r"
    elif st is not None and stat.S_ISREG(st.st_mode):
        what = f"a hard link (one file with {st.st_nlink} names, the others perhaps outside the zoo)"
    else:
        what = "a special file (a pipe, socket or device)"
    return (f"the lock file {path} of zoo {root} is {what}; writing the lock through it "
            f"could overwrite a file outside the zoo, so nothing was written (weightzoo never makes one: it came "
            f"with the zoo's files). Remove it ({rm} {path}) and run the command again")


def _locked_message(root: Path, path: Path, holder: dict) -> str:
    pid = holder.get("pid")
    who = f"process {pid}" if pid is not None else "another process"
    host = holder.get("hostname")
    if host and host != socket.gethostname():
        who += f" on host {host}"
    details = ", ".join(x for x in (holder.get("command"),
                                    f"started {holder['started']}" if holder.get("started") else None) if x)
    if details:
        who += f" ({details})"
    return (f"zoo {root} is being written by {who}; wait for it to finish, or stop it (a stopped "
            f"build resumes when run again). If that process is gone and this still appears, the "
            f"file system kept its lock (e.g. a network mount): delete {path} and retry")


def _command_line() -> str:
    argv = sys.argv or ["python"]
    return " ".join([Path(argv[0]).name or "python", *argv[1:]])
