"""The Hugging Face model repo layout: one model per repo revision, weights in safetensors.

Layout (one snapshot, i.e. a repo at one revision)::

    model.safetensors                    the weights, or sharded:
    model.safetensors.index.json         {"metadata": {...}, "weight_map": {tensor: shard file}}
    model-00001-of-00002.safetensors     the shards the index names
    config.json                          optional: every key becomes a column

Sources (``SOURCE``):

* a local snapshot directory (one model);
* a directory whose sub-folders are snapshots (one model per snapshot folder, e.g. a Hugging
  Face cache's ``models--ORG--NAME/snapshots/<commit>/``);
* ``hf://ORG/NAME[@REVISION]`` (or ``hf://models/ORG/NAME[@REVISION]``): that revision (default
  ``main``) is downloaded with ``huggingface_hub.snapshot_download`` into the Hugging Face cache
  (``HF_ENDPOINT`` picks the server), only ``config.json``, the index and the safetensors files;
* a list of any of these (the Python API).

Rows: ``run_id`` per repo (``ORG/NAME`` for the Hub and for cache folders
``models--ORG--NAME/snapshots/<commit>``, else the snapshot folder), ``model_id`` per (repo,
commit); ``checkpoint`` numbers the revisions of one repo in the order they are given (0, 1,
...), as a repo's revisions carry no epoch. Columns: ``repo_id``, ``revision`` (the commit when
known), every ``config.json`` key (:func:`~zoo_builders.importers.common.column_names`: a key
whose name is taken becomes ``config_<name>``, with a warning; objects as JSON text),
``source_layout`` and ``source_path`` (the snapshot folder relative to ``SOURCE``, or
``hf://ORG/NAME@<commit>``).

The index is untrusted data: every shard it names must be a plain relative path inside the
snapshot (:func:`catalog.paths.safe_join`), a ``.safetensors`` file, holding exactly the tensors
the index assigns to it; anything else is refused before any weight is read. No file read from a
snapshot (``config.json``, the index, a shard, ``model.safetensors``) may be a symbolic link out of
the snapshot, but for a Hugging Face cache's links into its repo's ``blobs`` folder
(:func:`snapshot_file`). Architectures are
inferred as for state-dict folders (:func:`~zoo_builders.importers.statedict.infer_network`: a
chain of linear/conv layers, with batch norms after layers as ``batchnorm`` nodes; the
activation from ``activation``, else ``config.json``'s ``hidden_act``/``activation``, an error
when it names one a zoo does not express (``silu``), else ``relu``; residual blocks and embedding
tables refused, the layer order taken from the names said in a warning), or given by ``arch``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import Tensor
from tqdm.auto import tqdm

from catalog.errors import WeightzooError
from catalog.format import Manifest, parse_json
from catalog.network import NetworkSpec
from catalog.nodes import ACTIVATIONS
from catalog.paths import safe_join
from catalog.writer import ZooWriter
from zoo_builders.importers.common import (
    GroupWriter,
    SourceError,
    check_activation,
    column_names,
    dataset_entry,
    finish_import,
    json_scalar,
    no_empty_zoo_on_error,
    parse_arch_options,
    rows_schema,
    stable_id,
    warn_renames,
)
from zoo_builders.importers.statedict import SpecCache, infer_network, read_state_dict

LAYOUT = "hf-models"
#: Models per part: Hub models are often large, and a part's models are held in memory until written.
HF_ROWS_PER_PART = 16
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
CONFIG = "config.json"
URL_SCHEME = "hf://"
#: A Hugging Face cache snapshot folder: ``models--ORG--NAME/snapshots/<commit>``.
CACHE_SNAPSHOT = re.compile(r"models--(?P<org>[^/]+?)--(?P<name>[^/]+)/snapshots/(?P<commit>[0-9a-f]{40})$")
#: ``config.json`` keys naming the hidden activation, in order of preference.
ACTIVATION_KEYS = ("hidden_act", "activation", "activation_function")


@dataclass
class Snapshot:
    """One model: a snapshot directory on disk and where it came from."""

    path: Path
    repo: str  # ORG/NAME, or the folder for a snapshot of unknown repo
    revision: str | None  # the commit when known
    source_path: str


# ================================================================================ sources
def is_snapshot(path: Path) -> bool:
    """True if ``path`` is a directory holding ``model.safetensors`` or its index."""
    return path.is_dir() and ((path / WEIGHTS).is_file() or (path / INDEX).is_file())


def _parse_url(text: str) -> tuple[str, str | None]:
    """``(repo_id, revision)`` of ``hf://[models/]ORG/NAME[@REVISION]``."""
    rest = text[len(URL_SCHEME):].removeprefix("models/")
    repo, _, revision = rest.partition("@")
    if rest.startswith(("datasets/", "spaces/")) or repo.count("/") != 1 or not all(repo.split("/")):
        raise SourceError(f"{text!r} is not a model repo URL; use hf://ORG/NAME[@REVISION]")
    return repo, revision or None


def download_snapshot(repo_id: str, revision: str | None, quiet: bool = True) -> Path:
    """The Hub repo ``repo_id`` at ``revision`` (default ``main``) in the Hugging Face cache:
    ``config.json``, the weights or the index, then the shards the (checked) index names.

    Raises:
        SourceError: no such repo or revision, no weights in it, a hostile index, the server
            unreachable.
    """
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    label = f"{repo_id}@{revision or 'main'}"
    was_disabled = are_progress_bars_disabled()
    if quiet:
        disable_progress_bars()
    try:
        root = Path(snapshot_download(repo_id, repo_type="model", revision=revision,
                                      allow_patterns=[CONFIG, WEIGHTS, INDEX]))
        if not is_snapshot(root):
            raise SourceError(f"hf://{label} has neither {WEIGHTS} nor {INDEX}; the hf-models layout "
                              f"imports repos whose weights are safetensors")
        if (root / INDEX).is_file():
            shards = sorted(set(read_index(root).values()))
            snapshot_download(repo_id, repo_type="model", revision=root.name, allow_patterns=shards)
    except RepositoryNotFoundError as e:
        raise SourceError(f"hf://{repo_id} was not found on {constants.ENDPOINT}: check the name (ORG/NAME of a "
                          f"model repo), and for a private or gated repo log in (hf auth login or HF_TOKEN)") from e
    except RevisionNotFoundError as e:
        raise SourceError(f"hf://{repo_id} has no revision {revision!r}: give a branch, tag or commit it has "
                          f"(hf://{repo_id}@REVISION)") from e
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SourceError(f"cannot download hf://{label}: {first}") from e
    finally:
        if quiet and not was_disabled:
            enable_progress_bars()
    return root


def snapshot_file(root: Path, rel: str, where: str) -> Path:
    """``root / rel``, a file of the snapshot (``config.json``, the index, a weight file), checked
    to be a plain relative path inside it (:func:`catalog.paths.safe_join`) that, with symbolic
    links resolved, lies inside the snapshot or, in a Hugging Face cache
    (``models--ORG--NAME/snapshots/<commit>``, whose files link to ``../../blobs/<hash>``), inside
    that repo's ``blobs`` folder.

    Raises:
        SourceError: naming ``where`` and the file: a path out of the snapshot, or a link that
            leads anywhere else (it would read another file as the model's weights, index or
            config, whose keys become columns of the zoo).
    """
    try:
        path = safe_join(root, rel, "file")
    except WeightzooError as e:
        raise SourceError(f"{where} names {rel!r}, which is not a file inside the snapshot; refusing it (the "
                          f"snapshot is corrupt or crafted to read other files)") from e
    base = root.resolve()
    allowed = [base]
    if CACHE_SNAPSHOT.search(base.as_posix()):
        allowed.append(base.parent.parent / "blobs")
    target = path.resolve()
    if not any(target.is_relative_to(a) for a in allowed):
        named = rel if where == "." else f"{where}: {rel}"  # "." is a lone snapshot given as SOURCE
        raise SourceError(f"{named} is a symbolic link to {target}, outside the snapshot; refusing to read "
                          f"it (the snapshot is corrupt or crafted to read other files; if that file is the model's "
                          f"own, copy it into the snapshot in place of the link)")
    return path


def read_index(root: Path) -> dict[str, str]:
    """``{tensor name: shard file}`` from the snapshot's index, every shard checked to be a
    ``.safetensors`` file inside the snapshot.

    Raises:
        SourceError: an index that is a symbolic link out of the snapshot, is not JSON, has no
            ``weight_map`` object, or names a shard outside the snapshot (``../``, an absolute
            path, a symbolic link out: see :func:`snapshot_file`) or not ``.safetensors``.
    """
    where = f"{root.name}/{INDEX}"
    index = parse_json(snapshot_file(root, INDEX, root.name).read_bytes(), where, SourceError)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise SourceError(f"{where} has no weight_map object ({{tensor name: shard file}})")
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str):
            raise SourceError(f"{where} maps {tensor!r} to {shard!r}, not a file name")
        snapshot_file(root, shard, f"{where} (for {tensor!r})")
        if not shard.endswith(".safetensors"):
            raise SourceError(f"{where} maps {tensor!r} to {shard!r}, not a .safetensors file")
    return dict(weight_map)


def _snapshot_of(path: Path, source_path: str) -> Snapshot:
    m = CACHE_SNAPSHOT.search(path.resolve().as_posix())
    if m:
        return Snapshot(path, f"{m['org']}/{m['name']}", m["commit"], source_path)
    return Snapshot(path, source_path, None, source_path)


def find_snapshots(src: str | os.PathLike | Sequence[str | os.PathLike], quiet: bool = True) -> list[Snapshot]:
    """The snapshots ``src`` names (see the module docstring), downloading Hub revisions.

    Raises:
        SourceError: a path that does not exist or holds no snapshot, a bad ``hf://`` URL or a
            failed download.
    """
    items = [src] if isinstance(src, str | os.PathLike) else list(src)
    if not items:
        raise SourceError("no source given: a snapshot directory, a folder of snapshots or hf://ORG/NAME")
    local = [Path(i) for i in items if not str(i).startswith(URL_SCHEME)]
    common = Path(os.path.commonpath([p.resolve() for p in local])) if local else None
    if common is not None and len(local) == 1:
        common = local[0].resolve()
    out: list[Snapshot] = []
    for item in items:
        text = str(item)
        if text.startswith(URL_SCHEME):
            repo, revision = _parse_url(text)
            root = download_snapshot(repo, revision, quiet)
            out.append(Snapshot(root, repo, root.name, f"hf://{repo}@{root.name}"))
            continue
        path = Path(item)
        if not path.is_dir():
            raise SourceError(f"{path} is not a directory; the hf-models layout reads a snapshot directory (with "
                              f"{WEIGHTS} or {INDEX}), a folder of them, or hf://ORG/NAME[@REVISION]")

        def rel(p: Path) -> str:
            r = p.resolve().relative_to(common).as_posix()
            return "." if r == "" else r

        if is_snapshot(path):
            out.append(_snapshot_of(path, rel(path)))
            continue
        found = sorted({p.parent for name in (WEIGHTS, INDEX) for p in path.rglob(name)})
        if not found:
            raise SourceError(f"{path} holds no Hugging Face model snapshot ({WEIGHTS} or {INDEX})")
        out += [_snapshot_of(p, rel(p)) for p in found]
    return out


# ================================================================================ reading
#: safetensors' dtype names -> torch dtypes (for the header-only read of :func:`read_snapshot`).
_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}


def _header_tensor(f: Any, name: str, where: str) -> Tensor:
    """A ``meta`` tensor of ``name``'s shape and dtype, from a safetensors header (no data read)."""
    s = f.get_slice(name)
    dtype = _SAFETENSORS_DTYPES.get(s.get_dtype())
    if dtype is None:
        raise SourceError(f"{where}: {name!r} is {s.get_dtype()}, not a weight dtype a zoo holds")
    return torch.empty(s.get_shape(), dtype=dtype, device="meta")


def read_snapshot(snap: Snapshot, shapes_only: bool = False) -> dict[str, Tensor]:
    """The snapshot's tensors (``{name: tensor}``, natural name order, ``module.`` stripped);
    with ``shapes_only``, ``meta`` tensors read from the safetensors headers alone (which
    safetensors checks against each file's size, so a cut-short file fails here too).

    Raises:
        SourceError: a damaged safetensors file, a hostile index, shards that do not hold
            exactly the tensors the index assigns them.
    """
    if not (snap.path / INDEX).is_file() and not shapes_only:
        return read_state_dict(snapshot_file(snap.path, WEIGHTS, snap.source_path), f"{snap.source_path}/{WEIGHTS}")
    by_shard: dict[str, list[str] | None] = {WEIGHTS: None}  # None: every tensor of the file
    if (snap.path / INDEX).is_file():
        by_shard = {}
        for tensor, shard in read_index(snap.path).items():
            by_shard.setdefault(shard, []).append(tensor)
    tensors: dict[str, Tensor] = {}
    for shard, names in by_shard.items():
        path = snapshot_file(snap.path, shard, snap.source_path)
        if not path.is_file():
            raise SourceError(f"{snap.source_path}: {INDEX} names shard {shard!r}, which is missing")
        try:
            with safe_open(str(path), framework="pt") as f:
                held = set(f.keys())
                if names is None:
                    names = sorted(held)
                if held != set(names):
                    extra, missing = sorted(held - set(names)), sorted(set(names) - held)
                    raise SourceError(f"{snap.source_path}: shard {shard} does not hold what {INDEX} says "
                                      f"(missing {missing[:3]}, not in the index {extra[:3]})")
                for n in names:
                    tensors[n] = _header_tensor(f, n, snap.source_path) if shapes_only else f.get_tensor(n)
        except SourceError:
            raise
        except Exception as e:  # SafetensorError, OSError on a damaged file
            raise SourceError(f"{snap.source_path}: {shard} is not a readable safetensors file: {e}") from e
    out: dict[str, Tensor] = {}
    for name in sorted(tensors, key=lambda n: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", n)]):
        clean = name
        while clean.startswith("module."):
            clean = clean[len("module."):]
        out[clean] = tensors[name]
    return out


def read_config(snap: Snapshot) -> dict[str, Any]:
    """``config.json`` of the snapshot (empty when absent).

    Raises:
        SourceError: a ``config.json`` that is not a JSON object, or a symbolic link out of the
            snapshot (:func:`snapshot_file`).
    """
    if not (snap.path / CONFIG).is_file():
        return {}
    path = snapshot_file(snap.path, CONFIG, snap.source_path)
    config = parse_json(path.read_bytes(), f"{snap.source_path}/{CONFIG}", SourceError)
    if not isinstance(config, dict):
        raise SourceError(f"{snap.source_path}/{CONFIG} is not a JSON object")
    return config


def config_activation(config: Mapping[str, Any], given: str | None, where: str) -> str:
    """The hidden activation: ``given`` (``--activation``) if any, else the first of ``config.json``'s
    :data:`ACTIVATION_KEYS` it has, else ``relu``.

    Raises:
        SourceError: ``config.json`` names an activation a zoo architecture does not express
            (``silu``, ``gelu_new``, ...): reading it as another would import a different function.
    """
    if given is not None:
        return given
    for key in ACTIVATION_KEYS:
        if config.get(key) is None:
            continue
        value = str(config[key]).lower().replace("leakyrelu", "leaky_relu")
        if value not in ACTIVATIONS:
            raise SourceError(f"{where}/{CONFIG}: {key} {config[key]!r} is not an activation a zoo architecture "
                              f"expresses ({', '.join(ACTIVATIONS)}); if the model computes one of those, say which "
                              f"with --activation, else give the architecture with --arch")
        return value
    return "relu"


# ================================================================================ import
def import_hf_models(src: str | os.PathLike | Sequence[str | os.PathLike], out: str | os.PathLike, *,
                     name: str | None = None, arch: str | os.PathLike | Mapping | NetworkSpec | None = None,
                     arch_options: Sequence[str] | Mapping[str, Any] | None = None, activation: str | None = None,
                     input_shape: Sequence[int] | None = None, dataset: str | Mapping | None = None,
                     rows_per_part: int = HF_ROWS_PER_PART, quiet: bool = False) -> Manifest:
    """Import Hugging Face model snapshots (local or from the Hub) as a zoo at ``out``
    (resumable: run it again after an interruption; imported revisions are skipped).

    Args:
        src: a snapshot directory, a folder of snapshots, ``hf://ORG/NAME[@REVISION]``, or a list
            of these.
        out: the zoo directory to write.
        name: the zoo's name (default: the source folder's or repo's name).
        arch: the architecture instead of inferring it (a preset name, a spec JSON file, a spec
            dict or a :class:`NetworkSpec`).
        arch_options: the preset's options.
        activation: the hidden activation (default: ``config.json``'s, else ``relu``).
        input_shape: one example's shape (needed for convolutional nets and presets).
        dataset: the dataset the models were evaluated on (a registered name or its config),
            recorded so ``zoo verify --recompute`` can re-evaluate them (default none).
        rows_per_part: models per part (default :data:`HF_ROWS_PER_PART`); at most this many
            models are in memory at once.
        quiet: no progress bar.

    Returns:
        the finished zoo's manifest.

    Raises:
        SourceError: no snapshot, a failed download, a hostile or inconsistent index, tensors no
            architecture fits. Every config, index and safetensors header is checked (and every
            architecture found) before anything is written, so a bad source leaves no zoo.
    """
    check_activation(activation)
    snaps = find_snapshots(src, quiet)
    configs = [read_config(s) for s in snaps]
    for s in snaps:
        if (s.path / INDEX).is_file():
            read_index(s.path)  # a hostile index fails here, before anything is written
    order: dict[str, int] = {}
    rows = []
    own = ("source_layout", "source_path", "repo_id", "revision")  # the columns each row names itself
    columns = column_names({k for config in configs for k in config}, own, prefix="config_")
    warn_renames(columns, "config.json")
    for s, config in zip(snaps, configs):
        ckpt = order[s.repo] = order.get(s.repo, -1) + 1
        run_id = stable_id(s.repo, "hf-")
        row: dict[str, Any] = {"model_id": stable_id(f"{s.repo}@{s.revision or s.source_path}", "hf-"),
                               "run_id": run_id, "checkpoint": ckpt, "status": "ok", "source_layout": LAYOUT,
                               "source_path": s.source_path, "repo_id": s.repo, "revision": s.revision}
        for k, v in config.items():
            row[columns[k]] = json_scalar(v)
        rows.append(row)
    if len({r["model_id"] for r in rows}) != len(rows):
        raise SourceError("the sources name one repo revision twice; give each revision once")
    rows, schema = rows_schema(rows)
    options = parse_arch_options(arch_options)
    preset = None if arch is None else (arch.to_dict() if isinstance(arch, NetworkSpec) else
                                        dict(arch) if isinstance(arch, Mapping) else str(arch))
    sources = [str(s) for s in ([src] if isinstance(src, str | os.PathLike) else src)]
    build_spec = {"importer": LAYOUT, "source": [str(Path(s).resolve()) if not s.startswith(URL_SCHEME) else s
                                                 for s in sources],
                  "arch": preset, "arch_options": options, "activation": activation,
                  "input_shape": None if input_shape is None else list(input_shape)}
    ds_spec, ds_facts = dataset_entry(dataset)
    if ds_spec is not None:
        build_spec["dataset"] = ds_spec
    first = sources[0]
    default_name = _parse_url(first)[0].split("/")[1] if first.startswith(URL_SCHEME) else Path(first).resolve().name
    spec_of = SpecCache(arch, options, input_shape, infer_network)

    # Every snapshot's architecture from its safetensors headers (shapes and dtypes, no weights)
    # before anything is written: a damaged file or tensors no architecture fits leave nothing.
    acts = [config_activation(config, activation, snap.source_path) for snap, config in zip(snaps, configs)]
    signatures = [spec_of(read_snapshot(snap, shapes_only=True), act, snap.source_path)[0]
                  for snap, act in zip(snaps, acts)]
    spec_of.warn()
    with no_empty_zoo_on_error(out), \
            ZooWriter(out, name or default_name, build_spec, datasets=ds_facts,
                      command=f"zoo import {LAYOUT} {first}") as writer:
        done = writer.done_model_ids()  # model ids already in the zoo (a resumed import skips them)
        groups = GroupWriter(writer, schema, rows_per_part)
        with tqdm(total=len(rows), disable=quiet, unit="model", desc=f"import {default_name}") as bar:
            for i, (snap, row) in enumerate(zip(snaps, rows)):
                if row["model_id"] in done:
                    bar.update(1)
                    continue
                tensors = read_snapshot(snap)  # one model read at a time
                signature, spec = spec_of(tensors, acts[i], snap.source_path)
                if signature != signatures[i]:
                    raise SourceError(f"{snap.source_path} changed while it was imported; run the import again")
                finite = all(bool(torch.isfinite(t).all()) for t in tensors.values())
                status = "ok" if finite else "diverged"
                groups.add(spec, {p: tensors[p] for p in spec.param_names}, {**row, "status": status})
                bar.update(1)
            groups.flush()
        # a repo's revisions may land in two parts: finish_import counts each run once
        return finish_import(writer)
