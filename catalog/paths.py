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

import os
import re
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


def check_relpath(rel: object, what: str = "path") -> PurePosixPath:
    """``rel`` as a relative POSIX path whose every component matches :data:`NAME_PATTERN`.

    No absolute path, no ``..``/``.``, no empty component, no backslash or drive: a path that
    passes cannot leave the directory it is joined to (symbolic links aside: see
    :func:`safe_join`).

    Raises:
        ZooFormatError: naming ``what``.
    """
    if not isinstance(rel, str) or not rel:
        raise ZooFormatError(f"{what} {rel!r} is not a valid path inside the zoo; {_UNTRUSTED}")
    parts = rel.split("/")
    if not all(NAME_PATTERN.fullmatch(p) for p in parts):
        leads_out = rel.startswith(("/", "\\")) or ".." in re.split(r"[/\\]", rel)
        how = "leads outside the zoo" if leads_out else f"is not a valid path inside the zoo " \
                                                        f"(each part: {_NAME_RULE})"
        raise ZooFormatError(f"{what} {rel!r} {how}; {_UNTRUSTED}")
    return PurePosixPath(*parts)


def safe_join(root: str | os.PathLike, rel: str, what: str = "path") -> Path:
    """``root / rel`` for a path ``rel`` that comes from zoo data, checked to stay inside ``root``.

    Every path built from a manifest or a metadata row (file paths, ``weights/<arch_id>/...``,
    a row's ``weights_shard``) goes through this one function, for reading and for writing.

    Args:
        root: the zoo (or staging) directory.
        rel: a relative POSIX path, e.g. ``"weights/mlp-0123456789/shard-00000.safetensors"``.
        what: what the path is, for the message (default ``"path"``).

    Returns:
        ``Path(root) / rel`` (not resolved, so it reads as the caller's root does).

    Raises:
        ZooFormatError: ``rel`` is not a plain relative path (see :func:`check_relpath`), or
            the directory it lands in lies outside ``root`` once symbolic links are resolved.
    """
    path = Path(root).joinpath(*check_relpath(rel, what).parts)
    base = Path(root).resolve()
    if not path.parent.resolve().is_relative_to(base):
        raise ZooFormatError(
            f"{what} {rel!r} leads outside the zoo at {root} (through a symbolic link to "
            f"{path.parent.resolve()}); {_UNTRUSTED}")
    return path


# ====================================================================================== outputs
#: The directories commands write, by kind: the file that marks one, and the files it owns.
#: A command's output must not land inside another one (see :func:`check_output_path`).
OUTPUT_KINDS: dict[str, tuple[str, ...]] = {
    "zoo": ("zoo.json",),
    "metanetwork run": ("metanetwork.safetensors", "config.json", "metrics.json", "history.json"),
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


def check_output_path(path: str | os.PathLike, option: str, kind: str | None) -> Path:
    """Refuse an output path that would write into a zoo or into another command's output.

    One rule for every command that writes (``zoo train --out``, ``zoo predict --out``, ``zoo
    generate --out/--save-to``, ``zoo eval-gen --out``, ``zoo train-ranker --out``, ``zoo
    build-hub OUT``), checked before any work:

    - nothing is written inside a zoo (a folder with ``zoo.json`` at or above the path): a file
      there would replace the zoo's own data, or be taken for part of it;
    - a directory output (``kind`` given) lies inside no other output directory, and an existing
      directory is replaced only by an output of its own kind (``zoo train --out`` onto an old
      metanetwork run, ``zoo generate --out`` onto a generated zoo of the same settings);
    - a file output (``kind=None``, e.g. predictions) may go into a run directory (its default
      place) but never takes the name of a file the directory owns (``config.json``, ...).

    Args:
        path: the output path as given.
        option: the option, for the message (e.g. ``"--out"``).
        kind: the directory's kind (a key of :data:`OUTPUT_KINDS`), or ``None`` for a file.

    Returns:
        ``Path(path)``.

    Raises:
        OutputPathError: naming the option, what it would overwrite and what to do.
    """
    given = Path(path)
    p = given.resolve()
    fix = "choose a path outside it"
    if kind is not None:
        own = output_kind(p) if p.is_dir() else None
        if own is not None and own != kind:
            raise OutputPathError(
                f"{option} {given} is a {own} directory, not a {kind} directory; writing there would "
                f"mix the two: choose a new directory")
        above = p.parents
    else:
        parent = output_kind(p.parent)
        if parent == "zoo":
            raise OutputPathError(f"{option} {given} lies inside the zoo at {p.parent}; writing there "
                                  f"would change the zoo's files: {fix}")
        if parent is not None and p.name in OUTPUT_KINDS[parent]:
            raise OutputPathError(f"{option} {given} would overwrite {p.name}, a file of the {parent} "
                                  f"directory {p.parent}: choose another file name")
        above = p.parent.parents
    for a in above:
        found = output_kind(a)
        if found == "zoo" or (found is not None and kind is not None):
            raise OutputPathError(
                f"{option} {given} lies inside the {found} directory {a}; writing there would change "
                f"its files: {fix}")
    return given
