"""Paths built from zoo data, kept inside the zoo: :func:`safe_join` and :func:`check_name`.

A zoo's manifest and Parquet rows come from wherever the zoo came from (a Hub repo anyone with
write access can change, an archive), and some of their values become paths: a shard goes to
``weights/<arch_id>/shard-00000.safetensors``, a row's weights are read from its
``weights_shard``. A crafted value such as ``arch_id = "../../../../victim/weights/x"`` would
make a pull write into another directory, or a load read a file outside the zoo. So:

- ids that become one path component (arch ids) must match :data:`NAME_PATTERN`, checked when
  the manifest is read (:meth:`catalog.format.Manifest.from_dict`) and before it is written;
- every path made from zoo data is joined to its root by :func:`safe_join` (and only by it),
  which refuses anything but a plain relative path of such components, and checks that the
  directory it lands in, with symbolic links resolved, is inside the root.

The last component is deliberately not resolved: the Hugging Face cache, which
:func:`hub.load_zoo` reads zoos from, links every file of a snapshot to a blob outside the
snapshot directory. Writes replace such a link rather than follow it (``os.replace``), and no
zoo data can create one.
"""

from __future__ import annotations

import fnmatch
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from catalog.errors import WeightzooError, ZooFormatError

#: One path component made from zoo data (an arch id, a file or folder name): a letter or digit
#: first (so never ``.``, ``..`` or a hidden/temp file), then letters, digits, ``.``, ``_``, ``-``.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_NAME_RULE = ("letters, digits, '.', '_' and '-', starting with a letter or digit, at most 128 "
              "characters")
_UNTRUSTED = ("the zoo's files are corrupt or were crafted to reach outside it; refusing to use "
              "them (rebuild the zoo with `zoo build`, or pull it again with `zoo pull` from a "
              "source you trust)")


def check_name(value: object, what: str, fix: str = _UNTRUSTED) -> str:
    """``value`` if it is a string matching :data:`NAME_PATTERN` (one safe path component).

    Args:
        value: the id to check (an arch id, say).
        what: what it is, for the message (e.g. ``"zoo.json: files[3].arch_id"``).
        fix: what the message says to do (default: the value came from a zoo's files, which
            are not to be trusted).

    Raises:
        ZooFormatError: naming ``what`` and the rule.
    """
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise ZooFormatError(f"{what} {value!r} is not a valid name (use {_NAME_RULE}); {fix}")
    return value


def check_relpath(rel: object, what: str = "path", fix: str = _UNTRUSTED) -> PurePosixPath:
    """``rel`` as a relative POSIX path whose every component matches :data:`NAME_PATTERN`.

    No absolute path, no ``..``/``.``, no empty component, no backslash or drive: a path that
    passes cannot leave the directory it is joined to (symbolic links aside: see
    :func:`safe_join`).

    Args:
        fix: what the message says to do (default: the path came from a zoo's files).

    Raises:
        ZooFormatError: naming ``what``.
    """
    if not isinstance(rel, str) or not rel:
        raise ZooFormatError(f"{what} {rel!r} is not a valid path inside the zoo; {fix}")
    parts = rel.split("/")
    if not all(NAME_PATTERN.fullmatch(p) for p in parts):
        leads_out = rel.startswith(("/", "\\")) or ".." in re.split(r"[/\\]", rel)
        how = "leads outside the zoo" if leads_out else f"is not a valid path inside the zoo " \
                                                        f"(each part: {_NAME_RULE})"
        raise ZooFormatError(f"{what} {rel!r} {how}; {fix}")
    return PurePosixPath(*parts)


def safe_join(root: str | os.PathLike, rel: str, what: str = "path", fix: str = _UNTRUSTED) -> Path:
    """``root / rel`` for a path ``rel`` that comes from zoo data, checked to stay inside ``root``.

    Every path built from a manifest or a metadata row (file paths, ``weights/<arch_id>/...``,
    a row's ``weights_shard``) goes through this one function, for reading and for writing.

    Args:
        root: the zoo (or staging) directory.
        rel: a relative POSIX path, e.g. ``"weights/mlp-0123456789/shard-00000.safetensors"``.
        what: what the path is, for the message (default ``"path"``).
        fix: what the message says to do (default: the path came from a zoo's files, which are
            not to be trusted; a cache folder of the zoo says to remove the link instead).

    Returns:
        ``Path(root) / rel`` (not resolved, so it reads as the caller's root does).

    Raises:
        ZooFormatError: ``rel`` is not a plain relative path (see :func:`check_relpath`), or
            the directory it lands in lies outside ``root`` once symbolic links are resolved.
    """
    path = Path(root).joinpath(*check_relpath(rel, what, fix).parts)
    base = Path(root).resolve()
    if not path.parent.resolve().is_relative_to(base):
        raise ZooFormatError(
            f"{what} {rel!r} leads outside the zoo at {root} (through a symbolic link to "
            f"{path.parent.resolve()}); {fix}")
    return path


def safe_dir(root: str | os.PathLike, rel: str, what: str = "folder", fix: str = _UNTRUSTED) -> Path:
    """``root / rel`` for a folder of the zoo that is listed or cleaned (``models/``, ``weights/``),
    checked like :func:`safe_join` and, if it exists, itself inside ``root`` with symbolic links
    resolved: files listed there are taken for the zoo's, and files deleted there must be.

    Raises:
        ZooFormatError: as :func:`safe_join`, or the folder is a link that leads outside ``root``.
    """
    path = safe_join(root, rel, what, fix)
    if path.exists() and not path.resolve().is_relative_to(Path(root).resolve()):
        raise ZooFormatError(
            f"{what} {rel!r} leads outside the zoo at {root} (it is a symbolic link to "
            f"{path.resolve()}); {fix}")
    return path


# ====================================================================================== outputs
#: The directories commands write, by kind: the file that marks one, and the files it owns.
#: A command's output must not land inside another one (see :func:`check_output_path`).
OUTPUT_KINDS: dict[str, tuple[str, ...]] = {
    "zoo": ("zoo.json",),
    "metanetwork run": ("metanetwork.safetensors", "config.json", "metrics.json", "history.json",
                        "seen_networks.parquet"),
    "generator": ("generator.json", "generator.safetensors"),
    "ranker": ("ranker.json", "ranker.safetensors"),
    "eval-gen": ("eval_gen.json", "eval_gen.png"),
}


def output_kind(directory: str | os.PathLike) -> str | None:
    """The kind of output (a key of :data:`OUTPUT_KINDS`) ``directory`` is, by its marker file,
    or ``None`` (not a directory, or none of them)."""
    d = Path(directory)
    for kind, files in OUTPUT_KINDS.items():
        if (d / files[0]).is_file():
            return kind
    return None


class OutputPathError(WeightzooError):
    """An output path that would overwrite or mix into a zoo, a run or another command's output."""


def check_output_path(path: str | os.PathLike, option: str, kind: str | None,
                      directory: bool | None = None, flag: str | None = None,
                      writable: bool = True) -> Path:
    """Refuse an output path that would write into a zoo or into another command's output.

    One rule for every command that writes (``zoo build/import/pull --out``, ``zoo train --out``,
    ``zoo predict --out``, ``zoo generate --out/--save-to``, ``zoo eval-gen --out``, ``zoo
    train-ranker --out``, ``zoo build-hub OUT``, ``zoo analyze --out``, ``zoo plot --out``, ``zoo
    query --out``, ``zoo export --out``), checked before any work:

    - nothing is written inside a zoo (a folder with ``zoo.json`` at or above the path): a file
      there would replace the zoo's own data, or be taken for part of it;
    - a directory output (``kind`` given) lies inside no other output directory, and an existing
      directory is replaced only by an output of its own kind (``zoo train --out`` onto an old
      metanetwork run, ``zoo generate --out`` onto a generated zoo of the same settings);
    - a file output (``kind=None``, e.g. predictions) may go into a run directory (its default
      place) but never takes the name of a file the directory owns (``config.json``, ...);
    - the output can be written: an existing one is writable, a new one's nearest existing
      folder is a writable directory (so a read-only location fails now, not after the work).

    Args:
        path: the output path as given.
        option: the option, for the message: a CLI option (``"--out"``), or with ``flag`` the
            Python argument (``"out"``).
        kind: the directory's kind (a key of :data:`OUTPUT_KINDS`), or ``None`` for a file.
        directory: whether the output is a directory (default: when ``kind`` is given); a
            directory of no kind (e.g. ``zoo analyze --out``'s figures) follows the rules of a
            file and must not be a zoo itself.
        flag: the CLI option that passes the argument ``option`` (default none); the message then
            names both, as ``out='runs/x' (--out)``, so a Python caller learns the argument.
        writable: also check that the output can be written (default ``True``; ``False`` for a
            run that writes nothing, such as ``zoo build --dry-run`` reading a read-only zoo).

    Returns:
        ``Path(path)``.

    Raises:
        OutputPathError: naming the option, what it would overwrite and what to do.
    """
    given = Path(path)
    p = given.resolve()
    named = f"{option}={str(given)!r} ({flag})" if flag else f"{option} {given}"
    fix = "choose a path outside it"
    if kind is not None:
        own = output_kind(p) if p.is_dir() else None
        if own is not None and own != kind:
            raise OutputPathError(
                f"{named} is a {own} directory, not a {kind} directory; writing there would "
                f"mix the two: choose a new directory")
        above = p.parents
    else:
        if directory and output_kind(p) == "zoo":
            raise OutputPathError(f"{named} is a zoo; writing there would change the zoo's files: {fix}")
        parent = output_kind(p.parent)
        if parent == "zoo":
            raise OutputPathError(f"{named} lies inside the zoo at {p.parent}; writing there "
                                  f"would change the zoo's files: {fix}")
        if parent is not None and p.name in OUTPUT_KINDS[parent]:
            raise OutputPathError(f"{named} would overwrite {p.name}, a file of the {parent} "
                                  f"directory {p.parent}: choose another file name")
        above = p.parent.parents
    for a in above:
        found = output_kind(a)
        if found == "zoo" or (found is not None and kind is not None):
            raise OutputPathError(
                f"{named} lies inside the {found} directory {a}; writing there would change "
                f"its files: {fix}")
    if writable:
        _check_writable(p, given, named, directory=kind is not None if directory is None else directory)
    return given


def _check_writable(p: Path, given: Path, named: str, directory: bool) -> None:
    """Refuse, before any work, an output that cannot be written: an existing output that is not
    writable, or a new one whose nearest existing folder is not (permissions, a read-only file
    system), or that would have to be made inside a file.

    Raises:
        OutputPathError: naming the path, what is in the way and what to do.
    """
    what = "directory" if directory else "file"
    if p.exists() and (p.is_dir() != directory):
        raise OutputPathError(f"{named} is a {'file' if directory else 'directory'}, not a {what}: "
                              f"choose another path")
    if p.exists() and not os.access(p, os.W_OK | (os.X_OK if directory else 0)):
        raise OutputPathError(f"{named} is not writable (its permissions, or a read-only file system): "
                              f"make it writable (chmod u+w {given}) or choose another path")
    nearest = p if directory and p.exists() else p.parent
    while not nearest.exists() and nearest != nearest.parent:
        nearest = nearest.parent
    if not nearest.is_dir():
        raise OutputPathError(f"{named} cannot be created: {nearest} is a file, not a directory; "
                              f"choose another path")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise OutputPathError(f"{named} cannot be written: the directory {nearest} is not writable "
                              f"(its permissions, or a read-only file system); choose a path you can write to, "
                              f"or make {nearest} writable")


# ====================================================================================== saving
#: Files of an output directory that belong to the output it replaces and go with it (not
#: carried into the new one): predictions made by a metanetwork that is replaced.
STALE_WITH_OUTPUT: dict[str, tuple[str, ...]] = {"metanetwork run": ("predictions-*.parquet",)}
#: The states of a save, in the names of its directories beside the output ``<name>``:
#: ``.<name>.saving-<hex>`` (being written), ``.<name>.saved-<hex>`` (complete, not yet in
#: place) and ``.<name>.old-<hex>`` (the replaced output, until it is deleted).
SAVE_STATES = ("saving", "saved", "old")


@contextmanager
def saved_output_dir(target: str | os.PathLike, kind: str) -> Iterator[Path]:
    """Save the output directory ``target`` all or nothing: ``with saved_output_dir(run, kind) as d:``
    then write the output's files into ``d``.

    ``d`` is a new directory beside ``target`` (``.<name>.saving-<hex>``). When the block ends
    without an error it is renamed ``.<name>.saved-<hex>`` (complete) and swapped in: an existing
    ``target`` is renamed ``.<name>.old-<hex>``, the new directory takes its name, the old one's
    other files (not the kind's own :data:`OUTPUT_KINDS` files, nor :data:`STALE_WITH_OUTPUT`;
    e.g. predictions written elsewhere into a run) move into it, and the old one is deleted. On an
    error (Ctrl-C included) ``d`` is removed and ``target`` is as it was. So readers find the old
    output or the new one, never new weights beside an old config; a save killed between the
    renames leaves leftovers that :func:`recover_output_dir` (the next save or load) completes.

    A directory that holds other files but no output of this ``kind``, a symbolic link, the
    current directory (or one that holds it), or one in a folder that is not writable is not
    moved: ``d`` is ``target`` itself and the files are written in place, as the output's own
    writer orders them (no earlier output to keep, or no way to write beside it).

    Args:
        target: the output directory (created if missing).
        kind: its kind, a key of :data:`OUTPUT_KINDS` (e.g. ``"metanetwork run"``).
    """
    target = Path(target)
    recover_output_dir(target, kind)
    if target.is_dir() and (_in_place(target, kind) or not os.access(target.parent, os.W_OK | os.X_OK)):
        yield target
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.saving-{secrets.token_hex(4)}"
    os.mkdir(staging)  # the mode a new directory gets (not mkdtemp's 0700)
    try:
        yield staging
        saved = staging.with_name(staging.name.replace(".saving-", ".saved-", 1))
        os.rename(staging, saved)  # complete: from here on a recovery puts it in place
        staging = saved
        if target.is_dir():
            os.chmod(saved, stat.S_IMODE(target.stat().st_mode))  # keep the output's permissions
            old = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
            os.rename(target, old)
        else:
            old = None
        os.rename(saved, target)
        _fsync_dir(target.parent)
        if old is not None:
            _retire(old, target, kind)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def recover_output_dir(target: str | os.PathLike, kind: str, best_effort: bool = False) -> None:
    """Complete (or undo) a save of the output directory ``target`` that was killed (see
    :func:`saved_output_dir`): a complete new directory goes in place if ``target`` is missing,
    a replaced one's other files move into ``target`` and it is deleted, and unfinished ones
    are removed. Nothing to do (the usual case) costs one directory listing.

    Args:
        best_effort: for readers (loading a run): an output that cannot be changed (e.g. on a
            read-only disk) is left as it is, without an error.
    """
    if best_effort:
        try:
            recover_output_dir(target, kind)
        except OSError:
            pass
        return
    target = Path(target)
    found = {state: _save_leftovers(target, state) for state in SAVE_STATES}
    if not any(found.values()):
        return
    if not target.exists():  # killed between renaming the old output aside and the new one in
        back = found["saved"] or found["old"]
        newest = max(back, key=lambda p: p.stat().st_mtime, default=None)
        if newest is not None:
            os.rename(newest, target)
            found["saved" if newest in found["saved"] else "old"].remove(newest)
    for old in found["old"]:
        _retire(old, target, kind)
    for p in found["saved"] + found["saving"]:
        shutil.rmtree(p, ignore_errors=True)


def _in_place(target: Path, kind: str) -> bool:
    """Whether a save into the existing directory ``target`` writes in place (see
    :func:`saved_output_dir`)."""
    if target.is_symlink() or Path.cwd().resolve().is_relative_to(target.resolve()):
        return True  # renaming it would move the link, or the directory a shell stands in
    return output_kind(target) != kind and any(target.iterdir())


def _save_leftovers(target: Path, state: str) -> list[Path]:
    """The directories a save of ``target`` left in ``state`` (one of :data:`SAVE_STATES`)."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.{state}-[0-9a-f]{{8}}")
    try:
        return sorted(p for p in target.parent.iterdir()
                      if pattern.fullmatch(p.name) and p.is_dir() and not p.is_symlink())
    except OSError:  # no parent yet, or not readable: nothing of ours there
        return []


def _retire(old: Path, target: Path, kind: str) -> None:
    """Move the files of the replaced output ``old`` that are not the output's own into ``target``
    (unless it has them), then delete ``old``."""
    owned = OUTPUT_KINDS[kind]
    stale = STALE_WITH_OUTPUT.get(kind, ())
    for entry in old.iterdir():
        if entry.name in owned or any(fnmatch.fnmatchcase(entry.name, pat) for pat in stale):
            continue
        dest = target / entry.name
        if not dest.exists() and not dest.is_symlink():
            os.rename(entry, dest)
    shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    """Make the renames in directory ``path`` durable (best effort: not every system can)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
