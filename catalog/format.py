"""Zoo format v1: path templates, the typed manifest (``zoo.json``) and checksums.

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
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from catalog.errors import ZooFormatError, ZooNotFoundError
from catalog.network import NetworkSpec

FORMAT_VERSION = 1
MANIFEST_NAME = "zoo.json"
CARD_NAME = "README.md"
PART_TEMPLATE = "models/part-{index:05d}.parquet"
SHARD_TEMPLATE = "weights/{arch_id}/shard-{index:05d}.safetensors"
#: Files being written carry this prefix until they are complete and renamed.
TMP_PREFIX = ".tmp-"

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
    """One data file of the zoo, with its checksum."""

    path: str
    sha256: str
    bytes: int
    rows: int
    kind: str  # "part" or "shard"
    arch_id: str | None = None


@dataclass
class Manifest:
    """The typed contents of ``zoo.json``."""

    name: str
    format_version: int = FORMAT_VERSION
    spec: dict = field(default_factory=dict)
    architectures: dict[str, dict] = field(default_factory=dict)
    datasets: dict[str, dict] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    files: list[FileEntry] = field(default_factory=list)
    complete: bool = False
    source: dict = field(default_factory=dict)  # e.g. {"repo_id":..., "revision":..., "commit":...}
    created_by: str = "weightzoo"

    @classmethod
    def from_dict(cls, d: Mapping) -> Manifest:
        if not isinstance(d, Mapping):
            raise ZooFormatError("zoo.json must hold a JSON object")
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise ZooFormatError(
                f"zoo format version {version!r} is not supported by this weightzoo (it reads "
                f"version {FORMAT_VERSION}); upgrade weightzoo, or rebuild the zoo from its spec "
                f"(zoo.json's 'spec') with `zoo build`")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            warnings.warn(f"zoo.json has unknown keys {unknown}; they are ignored", stacklevel=2)
        if "name" not in d:
            raise ZooFormatError("zoo.json has no 'name'; the manifest is corrupt")
        kwargs = {k: v for k, v in d.items() if k in known}
        try:
            kwargs["files"] = [FileEntry(**f) for f in d.get("files", [])]
        except TypeError as e:
            raise ZooFormatError(f"zoo.json has a malformed file entry: {e}") from e
        return cls(**kwargs)

    def to_dict(self) -> dict:
        return asdict(self)

    def network_spec(self, arch_id: str) -> NetworkSpec:
        if arch_id not in self.architectures:
            raise ZooFormatError(
                f"unknown arch_id {arch_id!r}; this zoo has: {', '.join(sorted(self.architectures))}")
        return NetworkSpec.from_dict(self.architectures[arch_id])

    def part_files(self) -> list[FileEntry]:
        return [f for f in self.files if f.kind == "part"]

    def shard_files(self) -> list[FileEntry]:
        return [f for f in self.files if f.kind == "shard"]


# ================================================================================ io helpers
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
        arr = t.detach().cpu().contiguous().numpy() if isinstance(t, Tensor) else np.ascontiguousarray(t)
        h.update(arr.tobytes())
    return h.hexdigest()


def rows_sha256(stacked: Mapping[str, Tensor], names: list[str]) -> list[str]:
    """Per-row :func:`weights_sha256` of a stacked batch ``{name: [N, *shape]}``."""
    arrays = [stacked[n].detach().cpu().contiguous().numpy() for n in names]
    n_rows = arrays[0].shape[0] if arrays else 0
    out = []
    for i in range(n_rows):
        h = hashlib.sha256()
        for a in arrays:
            h.update(a[i].tobytes())
        out.append(h.hexdigest())
    return out


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def tmp_path_for(path: Path) -> Path:
    """A temp name beside ``path`` (same directory, so the final rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=path.suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def read_manifest(root: str | os.PathLike) -> Manifest:
    root = Path(root)
    path = root / MANIFEST_NAME
    if not path.is_file():
        if not root.exists():
            raise ZooNotFoundError(f"no zoo at {root}: the directory does not exist")
        raise ZooNotFoundError(
            f"{root} is not a weightzoo zoo: it has no {MANIFEST_NAME} (build one with `zoo build`, "
            f"or pull one with `zoo pull`)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ZooFormatError(f"{path} is not valid JSON ({e}); the manifest is corrupt") from e
    return Manifest.from_dict(data)


def write_manifest(root: str | os.PathLike, manifest: Manifest) -> None:
    text = json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n"
    atomic_write_bytes(Path(root) / MANIFEST_NAME, text.encode())


def stack_state_dicts(state_dicts: list[Mapping[str, Tensor]], names: list[str]) -> dict[str, Tensor]:
    """``[{name: Tensor[*shape]}] * N`` -> ``{name: Tensor[N, *shape]}``."""
    return {n: torch.stack([sd[n] for sd in state_dicts]) for n in names}
