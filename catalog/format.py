"""The zoo format: path templates, the typed manifest (``zoo.json``) and checksums.

Version 1 zoos hold layer-chain architectures only; version 2 adds graph architectures
(``NetworkSpec`` with ``nodes``: residual, normalization, attention, ...). A zoo is written
with the lowest version its architectures need, so chain-only zoos stay version 1 and open in
older weightzoo; this code reads both.

A zoo is a directory::

    <zoo>/
      README.md                                   dataset card
      zoo.json                                    manifest (written last)
      models/part-00000.parquet                   one row per (model, checkpoint)
      weights/<arch_id>/shard-00000.safetensors   "<param name>" -> [rows_in_shard, *shape]
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import stat
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from catalog.errors import WeightzooError, ZooFormatError, ZooNotFoundError
from catalog.network import NetworkSpec
from catalog.paths import check_name, check_relpath

if TYPE_CHECKING:
    from torch import Tensor

#: The newest format version this code reads and writes.
FORMAT_VERSION = 2
#: Every format version this code reads.
SUPPORTED_FORMAT_VERSIONS = (1, 2)
MANIFEST_NAME = "zoo.json"
CARD_NAME = "README.md"
PART_TEMPLATE = "models/part-{index:05d}.parquet"
SHARD_TEMPLATE = "weights/{arch_id}/shard-{index:05d}.safetensors"
#: Files being written carry this prefix until they are complete and renamed.
TMP_PREFIX = ".tmp-"
#: Sidecar tables: extra columns keyed by ``model_id`` (analysis metrics, embeddings), one
#: Parquet file per table, joined into ``models`` for queries (see :mod:`catalog.sidecar`).
SIDECAR_TEMPLATE = "{group}/{name}.parquet"
#: The groups (top-level folders) a sidecar table may live in.
SIDECAR_GROUPS = ("analysis", "embeddings")
#: The top-level folder(s) of each kind of data file the manifest lists.
FILE_KINDS = {"part": ("models",), "shard": ("weights",), "sidecar": SIDECAR_GROUPS}
#: Top-level folders that hold a zoo's data files.
DATA_FOLDERS = tuple(folder for folders in FILE_KINDS.values() for folder in folders)
#: A file's sha256 as the manifest records it: 64 lowercase hex digits.
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
#: A zoo's name: it may become part of a file name (``runs/<name>-...``) or a directory
#: (``zoos/<name>``), so no path separators, control characters, ``.`` or ``..``.
ZOO_NAME_PATTERN = re.compile(r"(?!\.\.?\Z)[^/\\\x00-\x1f]{1,200}")
#: :data:`ZOO_NAME_PATTERN` in words, for messages.
ZOO_NAME_RULE = "a string of 1 to 200 characters without '/', '\\' or control characters, not '.' or '..'"
_CORRUPT = ("the manifest is corrupt or was edited, refusing to use it (rebuild the zoo with "
            "`zoo build`, or pull it again with `zoo pull`)")

#: Columns every metadata row carries, with their Arrow types.
CORE_COLUMNS = {
    "model_id": "string",
    "run_id": "string",
    "checkpoint": "int64",
    "arch_id": "string",
    "status": "string",
    "n_params": "int64",
    "weights_shard": "string",
    "weights_row": "int64",
    "sha256": "string",
}
STATUSES = ("ok", "diverged")


@dataclass
class FileEntry:
    """One data file of the zoo, with its checksum.

    Args:
        path: the path inside the zoo (POSIX, under the folder of its ``kind``).
        sha256: the file's sha256 (64 lowercase hex digits).
        bytes: its size.
        rows: the metadata rows (parts, sidecars) or stacked models (shards) it holds.
        kind: ``"part"``, ``"shard"`` or ``"sidecar"`` (see :data:`FILE_KINDS`).
        arch_id: the architecture of its rows (required for shards; default ``None``).
    """

    path: str
    sha256: str
    bytes: int
    rows: int
    kind: str  # "part", "shard" or "sidecar"
    arch_id: str | None = None

    @classmethod
    def from_dict(cls, d: object, where: str) -> FileEntry:
        """A validated entry from its JSON form; ``where`` names it in errors (``files[3]``)."""
        if not isinstance(d, Mapping):
            raise _bad(where, f"must be an object, got {_kind(d)}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise _bad(where, f"has unknown keys {unknown} (a file entry has {', '.join(names)})")
        missing = [n for n in names[:5] if n not in d]
        if missing:
            raise _bad(where, f"lacks {', '.join(map(repr, missing))}")
        kind = d["kind"]
        if kind not in FILE_KINDS:
            raise _bad(f"{where}.kind", f"is {kind!r}; it must be one of {', '.join(FILE_KINDS)}")
        sha = d["sha256"]
        if not isinstance(sha, str) or not SHA256_PATTERN.fullmatch(sha):
            raise _bad(f"{where}.sha256", f"{sha!r} is not a sha256 (64 lowercase hex digits)")
        for key in ("bytes", "rows"):
            _count(d[key], f"{where}.{key}")
        arch_id = d.get("arch_id")
        if arch_id is not None or kind == "shard":
            check_name(arch_id, f"{MANIFEST_NAME}: {where}.arch_id")
        path = d["path"]
        parts = check_relpath(path, f"{MANIFEST_NAME}: {where}.path").parts
        folders = FILE_KINDS[kind]
        if len(parts) < 2 or parts[0] not in folders:
            raise _bad(f"{where}.path", f"{path!r} is not inside {' or '.join(f + '/' for f in folders)}, "
                                        f"where a {kind} belongs")
        return cls(path, sha, d["bytes"], d["rows"], kind, arch_id)


@dataclass
class Manifest:
    """The typed contents of ``zoo.json``."""

    name: str
    format_version: int = 1
    spec: dict = field(default_factory=dict)
    architectures: dict[str, dict] = field(default_factory=dict)
    datasets: dict[str, dict] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    files: list[FileEntry] = field(default_factory=list)
    complete: bool = False
    source: dict = field(default_factory=dict)  # e.g. {"repo_id":..., "revision":..., "commit":...}
    created_by: str = "weightzoo"

    @classmethod
    def from_dict(cls, d: Mapping, label: str = MANIFEST_NAME) -> Manifest:
        """The manifest in ``d`` (parsed ``zoo.json``), its structure checked.

        Every field is checked for its type; ids and paths that become file paths (arch ids,
        file paths, the name) against strict patterns (:mod:`catalog.paths`); every
        architecture must parse as a :class:`~catalog.network.NetworkSpec`. Unknown keys are
        ignored with a warning.

        Args:
            d: the JSON object.
            label: how errors name the manifest (default ``"zoo.json"``; e.g. its path).

        Raises:
            ZooFormatError: one line naming the first malformed field.
        """
        try:
            return cls._from_dict(d)
        except ZooFormatError as e:
            if label == MANIFEST_NAME:
                raise
            text = str(e)
            text = label + text[len(MANIFEST_NAME):] if text.startswith(MANIFEST_NAME) else text
            raise ZooFormatError(text) from e

    @classmethod
    def _from_dict(cls, d: Mapping) -> Manifest:
        if not isinstance(d, Mapping):
            raise ZooFormatError(f"{MANIFEST_NAME} must hold a JSON object, not {_kind(d)}; {_CORRUPT}")
        version = d.get("format_version")
        if isinstance(version, bool) or version not in SUPPORTED_FORMAT_VERSIONS:
            raise ZooFormatError(
                f"zoo format version {version!r} is not supported by this weightzoo (it reads "
                f"versions {', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))}); upgrade weightzoo, or "
                f"rebuild the zoo from its spec (zoo.json's 'spec') with `zoo build`")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            warnings.warn(f"zoo.json has unknown keys {unknown}; they are ignored", stacklevel=3)
        if "name" not in d:
            raise _bad("name", "is missing")
        kwargs = {k: v for k, v in d.items() if k in known}
        _check_fields(kwargs)
        kwargs["files"] = [FileEntry.from_dict(f, f"files[{i}]")
                           for i, f in enumerate(kwargs.get("files", []))]
        first: dict[str, int] = {}
        for i, f in enumerate(kwargs["files"]):
            # A part listed twice is read twice: every row of it would be doubled in queries,
            # selections and pulls. No writer lists a file twice.
            if f.path in first:
                raise _bad(f"files[{i}].path", f"{f.path!r} is listed already (files[{first[f.path]}]); "
                                               f"each file must be listed once")
            first[f.path] = i
        return cls(**kwargs)

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        """Check this manifest as :meth:`from_dict` would read it back (what
        :func:`write_manifest` does before writing).

        Raises:
            ZooFormatError: naming the malformed field.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Manifest.from_dict(json.loads(json.dumps(self.to_dict())))

    def network_spec(self, arch_id: str) -> NetworkSpec:
        if arch_id not in self.architectures:
            raise ZooFormatError(
                f"unknown arch_id {arch_id!r}; this zoo has: {', '.join(sorted(self.architectures))}")
        return NetworkSpec.from_dict(self.architectures[arch_id])

    def part_files(self) -> list[FileEntry]:
        return [f for f in self.files if f.kind == "part"]

    def shard_files(self) -> list[FileEntry]:
        return [f for f in self.files if f.kind == "shard"]

    def sidecar_files(self) -> list[FileEntry]:
        return [f for f in self.files if f.kind == "sidecar"]

    def shard_entry(self, path: str) -> FileEntry | None:
        """The listed weight shard at ``path`` (zoo-relative), or ``None``."""
        return next((f for f in self.files if f.kind == "shard" and f.path == path), None)


def is_zoo_name(value: object) -> bool:
    """Whether ``value`` may name a zoo (:data:`ZOO_NAME_PATTERN`)."""
    return isinstance(value, str) and ZOO_NAME_PATTERN.fullmatch(value) is not None


def _bad(where: str, problem: str) -> ZooFormatError:
    return ZooFormatError(f"{MANIFEST_NAME}: {where} {problem}; {_CORRUPT}")


def _kind(value: object) -> str:
    """The JSON type of ``value``, for messages."""
    names = {str: "a string", bool: "a boolean", int: "a number", float: "a number",
             list: "a list", dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _count(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(where, f"must be a non-negative integer, got {value!r}")
    return value


def _object(value: object, where: str) -> Mapping:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise _bad(where, f"must be an object, got {_kind(value)}")
    return value


def _check_fields(d: Mapping) -> None:
    """Types and patterns of the manifest's top-level fields (``files`` entries apart)."""
    name = d["name"]
    if not is_zoo_name(name):
        raise _bad("name", f"{name!r} is not a valid zoo name ({ZOO_NAME_RULE})")
    if not isinstance(d.get("created_by", ""), str):
        raise _bad("created_by", f"must be a string, got {_kind(d['created_by'])}")
    if not isinstance(d.get("complete", False), bool):
        raise _bad("complete", f"must be true or false, got {d['complete']!r}")
    for key in ("spec", "source"):
        _object(d.get(key, {}), key)
    for ds, info in _object(d.get("datasets", {}), "datasets").items():
        _object(info, f"datasets[{ds!r}]")
    for key, value in _object(d.get("counts", {}), "counts").items():
        _count(value, f"counts.{key}")
    for arch_id, spec in _object(d.get("architectures", {}), "architectures").items():
        check_name(arch_id, f"{MANIFEST_NAME}: architectures key")
        if not isinstance(spec, Mapping):
            raise _bad(f"architectures[{arch_id!r}]", f"must be a NetworkSpec object, got {_kind(spec)}")
        try:
            net = NetworkSpec.from_dict(spec)
        except (ZooFormatError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise _bad(f"architectures[{arch_id!r}]", f"is not a valid NetworkSpec ({e})") from e
        if net.format_version > d["format_version"]:
            raise _bad(f"architectures[{arch_id!r}]",
                       f"is a graph architecture, which needs format_version {net.format_version} "
                       f"(the manifest says {d['format_version']})")
    if not isinstance(d.get("files", []), list):
        raise _bad("files", f"must be a list, got {_kind(d['files'])}")


def core_column_problems(schema: pa.Schema, columns: Iterable[str] = CORE_COLUMNS) -> list[str]:
    """What is wrong with the core columns ``columns`` (default: all of :data:`CORE_COLUMNS`) of
    a metadata ``schema``: each one it lacks, and each whose type is not the format's (large
    strings pass for strings). Empty when they are all right."""
    problems = []
    for col in columns:
        alias = CORE_COLUMNS[col]
        if col not in schema.names:
            problems.append(f"schema lacks the core column {col!r} ({alias})")
            continue
        typ = schema.field(col).type
        if not (typ == pa.type_for_alias(alias) or (alias == "string" and typ == pa.large_string())):
            problems.append(f"column {col!r} has type {typ}, expected {alias}")
    return problems


# ================================================================================ io helpers
#: What to do about a metadata part that cannot be read as the format says.
PART_FIX = "the metadata is corrupt or was edited: run `zoo verify`, then rebuild or re-pull the zoo"


def read_parquet(path: str | os.PathLike, label: str, columns: Sequence[str] | None = None,
                 schema_only: bool = False, advice: str = PART_FIX) -> pa.Table | pa.Schema:
    """``pq.read_table`` (or ``pq.read_schema`` with ``schema_only``) of one of a zoo's Parquet
    files, with a file that is missing or not Parquet as one error naming it (pyarrow's
    ``ArrowInvalid`` escaped as a traceback).

    Args:
        path: the file.
        label: how the message names it, e.g. ``"metadata part models/part-00000.parquet"``.
        columns: read only these (default: all).
        schema_only: return the schema alone (the file's footer; default ``False``).
        advice: what to do, ending the message (default :data:`PART_FIX`).

    Raises:
        ZooFormatError: ``"<label> is not a readable Parquet file (<pyarrow's reason>); <advice>"``.
    """
    import pyarrow.parquet as pq  # here: importing catalog.format stays light

    try:
        return pq.read_schema(path) if schema_only else pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as e:
        raise ZooFormatError(f"{label} is not a readable Parquet file ({str(e).strip().splitlines()[0]}); "
                             f"{advice}") from e


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def weights_sha256(tensors: Iterable[Tensor | np.ndarray]) -> str:
    """Checksum of one model's weights: sha256 over the little-endian bytes of each tensor,
    contiguous, in the NetworkSpec's parameter order."""
    h = hashlib.sha256()
    for t in tensors:
        # A torch tensor (duck-typed: this module imports no torch) or anything numpy takes.
        arr = t.detach().cpu().contiguous().numpy() if hasattr(t, "detach") else np.ascontiguousarray(t)
        h.update(arr.tobytes())
    return h.hexdigest()


#: Mode asked for new files; the kernel clears the bits of the process umask (0644 under 022).
FILE_MODE = 0o666


def tmp_path_for(path: Path) -> Path:
    """Create an empty temp file beside ``path`` and return its name.

    The name is ``TMP_PREFIX`` + random + ``path``'s suffix, in ``path``'s directory (so the
    final rename is atomic). Unlike ``tempfile.mkstemp``, which always makes files 0600, the
    file is created with :data:`FILE_MODE` less the process umask, like any file ``open``
    creates: a zoo written under umask 022 is readable by everyone who can reach it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = path.parent / f"{TMP_PREFIX}{secrets.token_hex(8)}{path.suffix}"
        try:
            os.close(os.open(tmp, flags, FILE_MODE))
            return tmp
        except FileExistsError:  # pragma: no cover - 64 random bits
            continue


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Write a file atomically through a temp path: ``with atomic_path(p) as tmp: write(tmp)``.

    Yields an empty temp file beside ``path`` (see :func:`tmp_path_for`: same directory,
    ``TMP_PREFIX``, ``path``'s suffix, umask-respecting mode) for any writer that takes a file
    name (``pq.write_table``, ``safetensors.save_file``, ...). When the block ends without an
    error, the temp file is fsynced and renamed over ``path`` (and the directory fsynced), so
    readers see the old file or the complete new one, never a half-written one. On an error
    the temp file is removed and ``path`` is left as it was.

    The file ends with the mode a new file gets in that directory (0644 under umask 022),
    even if the writer replaced the temp file with one of its own (``safetensors`` writes
    0600 files): the mode is taken from the temp file as created, so the umask is never read
    or changed (``os.umask`` can only be read by setting it, which races with other threads).

    Args:
        path: the file to (re)write; its directory is created if needed.
    """
    path = Path(path)
    tmp = tmp_path_for(path)
    try:
        mode = stat.S_IMODE(tmp.stat().st_mode)  # what the umask leaves of FILE_MODE here
        yield tmp
        if stat.S_IMODE(tmp.stat().st_mode) != mode:
            os.chmod(tmp, mode)  # the writer replaced the file (safetensors makes it 0600)
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (where directories can be opened: POSIX)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def save_safetensors(tensors: Mapping[str, Tensor], path: str | os.PathLike, metadata: Mapping[str, str]) -> None:
    """``safetensors.torch.save_file``, with bytes that depend only on ``tensors`` and ``metadata``.

    safetensors keeps the header's metadata in a hash map whose order changes from call to call,
    so the same shard came out with different bytes (and sha256 in the manifest) from build to
    build. The header is rewritten in place with the metadata keys sorted: the same JSON, the
    same length (it is read back equal, padded with spaces as safetensors pads it).

    Raises:
        ZooFormatError: the header would not keep its length (names the library would escape
            differently; zoo names are plain ASCII, so never for a zoo's shards).
    """
    from safetensors.torch import save_file  # torch: only where weights are written

    save_file(dict(tensors), os.fspath(path), metadata=dict(metadata))
    with open(path, "r+b") as f:
        size = int.from_bytes(f.read(8), "little")
        header = _sorted_header(f.read(size), path)
        if header is not None:
            f.seek(8)
            f.write(header)


def safetensors_bytes(tensors: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """``safetensors.torch.save`` (the file's bytes, for :func:`atomic_write_bytes`), with the
    metadata keys sorted as :func:`save_safetensors` sorts them: bytes that depend only on
    ``tensors`` and ``metadata``."""
    from safetensors.torch import save  # torch: only where weights are written

    data = save(dict(tensors), metadata=None if metadata is None else dict(metadata))
    size = int.from_bytes(data[:8], "little")
    header = _sorted_header(data[8:8 + size], "safetensors data")
    return data if header is None else data[:8] + header + data[8 + size:]


def _sorted_header(raw: bytes, where: object) -> bytes | None:
    """A safetensors header (``raw``, its JSON padded with spaces) with its metadata keys sorted,
    padded to the same length; ``None`` when it has no metadata (nothing to sort)."""
    header = json.loads(raw)
    if "__metadata__" not in header:
        return None
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    canonical = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if len(canonical) > len(raw):
        raise ZooFormatError(f"{where}: the safetensors header cannot be rewritten in sorted order "
                             f"({len(canonical)} bytes for {len(raw)}); use plain ASCII tensor names")
    return canonical.ljust(len(raw), b" ")


#: The deepest nesting of arrays and objects :func:`parse_json` accepts. No file weightzoo reads
#: comes near it (a manifest nests about 8 levels); Python code that walks parsed JSON recursively
#: (``dataclasses.asdict``, ``json.dumps``) runs out of stack near 1000 levels.
MAX_JSON_DEPTH = 100


def parse_json(raw: str | bytes, where: str, error: type[WeightzooError] = ZooFormatError,
               advice: str = "") -> Any:
    """``json.loads(raw)`` for JSON that comes from outside: a zoo's files, a source folder,
    a run directory.

    ``json.loads`` raises ``RecursionError`` on deeply nested text (``[[[[...``), which no
    caller catches, and text nested just under that limit parses but crashes the next code
    that walks it recursively; both are refused here, as malformed text is.

    Args:
        raw: the text, or its bytes (UTF-8, or UTF-16/32 with a BOM, as ``json.loads`` reads).
        where: the file (and line) for the message, e.g. ``"metadata.jsonl line 3"``.
        error: the exception to raise (default :class:`ZooFormatError`).
        advice: what to do, appended to the message (default: nothing).

    Raises:
        error: one line, ``"<where> is not valid JSON (<reason>); <advice>"``.
    """
    try:
        value = json.loads(raw)
        too_deep = _json_depth_exceeds(value, MAX_JSON_DEPTH)
    except RecursionError:
        too_deep = True
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError both are ValueErrors
        raise error(f"{where} is not valid JSON ({e})" + (f"; {advice}" if advice else "")) from e
    if too_deep:
        raise error(f"{where} is not valid JSON (it nests arrays or objects more than {MAX_JSON_DEPTH} "
                    f"levels deep)" + (f"; {advice}" if advice else ""))
    return value


def _json_depth_exceeds(value: object, limit: int) -> bool:
    """Whether parsed JSON ``value`` nests containers more than ``limit`` levels deep (iterative:
    the check itself must not recurse)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def read_manifest(root: str | os.PathLike, label: str | None = None) -> Manifest:
    """The checked manifest of the zoo at ``root``.

    Args:
        root: the zoo directory.
        label: how errors name the manifest (default: its path).

    Raises:
        ZooNotFoundError: there is no ``zoo.json``.
        ZooFormatError: it is not valid JSON, or malformed (see :meth:`Manifest.from_dict`).
    """
    root = Path(root)
    path = root / MANIFEST_NAME
    if not path.is_file():
        if not root.exists():
            raise ZooNotFoundError(f"no zoo at {root}: the directory does not exist")
        raise ZooNotFoundError(
            f"{root} is not a weightzoo zoo: it has no {MANIFEST_NAME} (build one with `zoo build`, "
            f"or pull one with `zoo pull`)")
    label = label or str(path)
    data = parse_json(path.read_bytes(), label, advice="the manifest is corrupt")
    return Manifest.from_dict(data, label)


def write_manifest(root: str | os.PathLike, manifest: Manifest) -> None:
    """Write ``zoo.json`` atomically, after checking it would read back.

    Raises:
        ZooFormatError: the manifest is malformed (nothing is written).
    """
    manifest.validate()
    text = json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n"
    atomic_write_bytes(Path(root) / MANIFEST_NAME, text.encode())


def recount(previous: Mapping[str, int], tables: Iterable[pa.Table], architectures: int) -> dict[str, int]:
    """The manifest's ``counts`` recomputed from metadata tables (each with ``run_id`` and
    ``status``): ``rows``, ``runs``, ``architectures`` and ``status_<s>``; any other key of
    ``previous`` is kept."""
    counts = {k: v for k, v in previous.items()
              if k not in ("rows", "runs", "architectures") and not k.startswith("status_")}
    rows, runs, statuses = 0, set(), Counter()
    for table in tables:
        rows += table.num_rows
        runs.update(table.column("run_id").to_pylist())
        statuses.update(table.column("status").to_pylist())
    counts.update(rows=rows, runs=len(runs), architectures=architectures)
    counts.update({f"status_{k}": v for k, v in sorted(statuses.items())})
    return counts
