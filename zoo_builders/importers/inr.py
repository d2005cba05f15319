"""INR datasets: DWSNets' and NFN's folders of SIREN state dicts, imported and exported.

**DWSNets** (Navon et al. 2023, "Equivariant Architectures for Learning in Deep Weight Spaces";
layout ``dws-inr``)::

    <prefix>_<split>_<label>_<idx>/checkpoints/model_final.pth    e.g. mnist_png_training_2_23089/...
    *splits.json      optional (``mnist_splits.json``), in the folder or next to it:
                      {"train"|"val"|"test": {"path": [...], "label": [...]}}

Keys ``seq.{0,1,2}.{weight,bias}``: ``seq.0`` and ``seq.1`` are sine layers
``sin(30 * (W h + b))`` (ω0 = 30 on the first layer too, weights unscaled), ``seq.2`` linear, and
the INR's output is ``seq(x) + 0.5``. Its inputs are ``np.meshgrid(x, y)`` ('xy' indexing) of
``linspace(-1, 1)``: pixel ``(row, col)`` gets ``(x, y) = (col, row)``. Mapping onto this project's
SIREN (:class:`zoo_builders.architectures.SirenConfig`, inputs ``(row, col)``,
:mod:`catalog.coordinates`) therefore swaps the two columns of ``seq.0.weight`` (a permutation:
bit-exact both ways) and gives the last layer a ``shift`` of 0.5; every other tensor is stored as it
is. The split and label come from the folder name (``training``/``testing`` become ``train``/``test``)
and, where a split file names the model (matched by its last three path parts: DWSNets writes
absolute paths), from the file (its ``val`` split is drawn from the training folders).
Output intensities are taken to be in ``[0, 1]`` (the ``+ 0.5`` centres them).

**NFN** (Zhou et al. 2023, "Permutation Equivariant Neural Functionals"; layout ``nfn-inr``)::

    <prefix>_<label>s/net<idx>.pth        e.g. siren_mnist_wts/randinit_smaller_3s/net123.pth

Keys ``net.{0,1}.linear.{weight,bias}`` (sine layers, ``sin(30 * (W h + b))``, ω0 = 30 first and
hidden) and ``net.2.{weight,bias}`` (linear); inputs ``meshgrid(..., indexing="ij")``, i.e.
``(row, col)`` as here, so every tensor is stored as it is. ``idx`` counts over the image dataset's
training images followed by its test images (``image_index``, as in a built INR zoo); the label is
the folder's digit. NFN splits by index (its dataset config's ``split_points: [VAL, TEST]``: train
below VAL, val below TEST, test from TEST): give them as ``split_points`` or put a ``*.yaml`` with
that line in the folder; without either the ``split`` column is empty. NFN normalizes images to
``[-1, 1]`` (``Normalize(0.5, 0.5)``), recorded as the spec's ``meta["output_range"]``.

Both record ``label``, ``split``, ``image_index`` (the folder's index), ``source_layout`` and
``source_path``; the model and run id are stable hashes of the path, and ``checkpoint`` is 1 (the
final fit: both layouts keep one unnumbered checkpoint, and 0 means an initialization here). Files are read with
``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from catalog.errors import WeightzooError
from catalog.format import Manifest, parse_json
from catalog.network import LayerSpec, NetworkSpec
from catalog.paths import check_output_path, safe_join
from catalog.writer import ZooWriter
from zoo_builders.importers.common import (
    ROWS_PER_PART,
    GroupWriter,
    SourceError,
    dataset_entry,
    finish_import,
    no_empty_zoo_on_error,
    no_partial_export,
    rows_schema,
    stable_id,
)
from zoo_builders.importers.statedict import read_state_dict

DWS, NFN = "dws-inr", "nfn-inr"
#: ω0 of every sine layer in both datasets (the SIREN paper's default, first layer included).
OMEGA0 = 30.0
#: What DWSNets' ``INR.forward`` adds to ``seq(x)``.
DWS_SHIFT = 0.5
DWS_FILE = "checkpoints/model_final.pth"
DWS_FOLDER = re.compile(r"^(?:(?P<prefix>.*)_)?(?P<split>train|training|test|testing|val|validation)_"
                        r"(?P<label>[^_]+)_(?P<idx>\d+)$")
NFN_FILE = re.compile(r"^net(?P<idx>\d+)\.pth$")
NFN_FOLDER = re.compile(r"^(?P<prefix>.+)_(?P<label>\d)s$")
_SPLITS = {"training": "train", "train": "train", "testing": "test", "test": "test", "val": "val",
           "validation": "val"}
#: The checkpoint of an imported INR: the final fit (0 means an initialization in a zoo).
FINAL_CHECKPOINT = 1
#: The default prefix of an exported NFN folder (NFN's MNIST SIREN config uses it).
NFN_PREFIX = "randinit_smaller"
#: The file an NFN export writes its ``split_points`` line to (the import reads any ``*.yaml``).
NFN_SPLIT_FILE = "split_points.yaml"


# ================================================================================ the architecture
def siren_spec(names: Sequence[tuple[str, str]], widths: Sequence[int], image_shape: Sequence[int],
               shift: float = 0.0, output_range: tuple[float, float] = (0.0, 1.0),
               layout: str | None = None) -> NetworkSpec:
    """This project's SIREN (sine hidden layers with ω0 = 30, linear output) with the source's
    parameter names ``names[i] = (weight, bias)`` and widths ``[2, h1, ..., 1]``."""
    n = len(widths) - 1
    layers = tuple(LayerSpec("linear", widths[i], widths[i + 1], w, b,
                             activation="sin" if i < n - 1 else "identity",
                             omega=OMEGA0 if i < n - 1 else 1.0, shift=shift if i == n - 1 else 0.0)
                   for i, (w, b) in enumerate(names))
    meta: dict[str, Any] = {"image_shape": list(image_shape), "coordinates": "[-1,1]^2 row-major",
                            "output": "intensity", "output_range": list(output_range)}
    if layout is not None:
        meta["source_layout"] = layout
    return NetworkSpec("siren", (2,), layers, meta=meta)


def _widths(tensors: Mapping[str, torch.Tensor], names: Sequence[tuple[str, str]], where: str) -> list[int]:
    """``[2, h1, ..., 1]`` from the weights, checked to chain with a bias per layer.

    Raises:
        SourceError: a missing or extra tensor, or shapes that are not a 2 -> ... -> 1 SIREN.
    """
    expected = {n for pair in names for n in pair}
    if set(tensors) != expected:
        extra, missing = sorted(set(tensors) - expected), sorted(expected - set(tensors))
        raise SourceError(f"{where}: not a SIREN of this layout (missing {missing[:3]}, unexpected {extra[:3]})")
    widths = [int(tensors[names[0][0]].shape[-1])]
    for w, b in names:
        shape = tuple(tensors[w].shape)
        if len(shape) != 2 or shape[1] != widths[-1] or tuple(tensors[b].shape) != (shape[0],):
            raise SourceError(f"{where}: {w} {list(shape)} / {b} {list(tensors[b].shape)} do not chain "
                              f"after a layer of {widths[-1]} outputs")
        widths.append(shape[0])
    if widths[0] != 2 or widths[-1] != 1:
        raise SourceError(f"{where}: a grayscale image SIREN maps 2 coordinates to 1 intensity; these "
                          f"weights map {widths[0]} -> {widths[-1]}")
    return widths


def _dws_names(tensors: Mapping[str, torch.Tensor]) -> list[tuple[str, str]]:
    n = len({k.split(".")[1] for k in tensors if k.startswith("seq.") and k.count(".") == 2})
    return [(f"seq.{i}.weight", f"seq.{i}.bias") for i in range(max(n, 1))]


def _nfn_names(tensors: Mapping[str, torch.Tensor]) -> list[tuple[str, str]]:
    n = max(1, len({k.split(".")[1] for k in tensors if k.startswith("net.")}))
    names = [(f"net.{i}.linear.weight", f"net.{i}.linear.bias") for i in range(n - 1)]
    return names + [(f"net.{n - 1}.weight", f"net.{n - 1}.bias")]


def _swap_xy(w: torch.Tensor) -> torch.Tensor:
    """``seq.0.weight`` ``[h, 2]`` with its two input columns swapped: (x, y) <-> (row, col)."""
    return w[:, [1, 0]].contiguous()


# ================================================================================ reading
def _label(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _dws_files(src: Path) -> list[tuple[str, dict[str, Any]]]:
    """``[(relative path, {split, label, image_index})]`` of every DWSNets INR under ``src``."""
    out = []
    for p in sorted(src.rglob("model_final.pth")):
        rel = p.relative_to(src).as_posix()
        if p.parent.name != "checkpoints":
            raise SourceError(f"{rel}: DWSNets keeps an INR at <folder>/{DWS_FILE}")
        folder = p.parent.parent.name
        m = DWS_FOLDER.match(folder)
        if m is None:
            raise SourceError(f"{rel}: the folder name {folder!r} is not <prefix>_<split>_<label>_<idx> "
                              f"(e.g. mnist_png_training_2_23089)")
        out.append((rel, {"split": _SPLITS[m["split"]], "label": _label(m["label"]), "image_index": int(m["idx"])}))
    if not out:
        raise SourceError(f"{src} holds no DWSNets INRs (<prefix>_<split>_<label>_<idx>/{DWS_FILE})")
    return out


def _dws_split_file(src: Path, splits: str | os.PathLike | None) -> Path | None:
    if splits is not None:
        path = Path(splits)
        if not path.is_file():
            raise SourceError(f"split file {path} does not exist")
        return path
    # DWSNets' generate_data_splits.py writes dataset/mnist_splits.json next to dataset/mnist-inrs/
    for where in (src, src.resolve().parent):
        found = sorted(where.glob("*splits.json"))
        if len(found) > 1:
            raise SourceError(f"{where} holds several split files ({', '.join(p.name for p in found)}); name "
                              f"one with --splits")
        if found:
            return found[0]
    return None


def _apply_dws_splits(path: Path, files: list[tuple[str, dict[str, Any]]]) -> None:
    """Set each named model's split and label from a DWSNets split file (in place).

    Raises:
        SourceError: not that JSON form, an entry naming no model of the folder, a label that
            disagrees with the folder's, a model in two splits.
    """
    doc = parse_json(path.read_bytes(), path.name, SourceError)
    if not isinstance(doc, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("path"), list) and isinstance(v.get("label"), list)
            and len(v["path"]) == len(v["label"]) for v in doc.values()):
        raise SourceError(f"{path.name} is not a DWSNets split file: expected {{split: {{\"path\": [...], "
                          f"\"label\": [...]}}}} with one label per path")
    by_tail = {"/".join(rel.split("/")[-3:]): meta for rel, meta in files}
    assigned: dict[str, str] = {}
    for split, entry in doc.items():
        for p, label in zip(entry["path"], entry["label"]):
            tail = "/".join(str(p).replace("\\", "/").split("/")[-3:])
            if tail not in by_tail:
                raise SourceError(f"{path.name}: split {split!r} names {p!r}, which is not an INR of the folder; "
                                  f"import the whole dataset or remove the split file")
            if tail in assigned:
                raise SourceError(f"{path.name}: {tail} is in both split {assigned[tail]!r} and {split!r}")
            meta = by_tail[tail]
            if str(label) != str(meta["label"]):
                raise SourceError(f"{path.name}: {tail} has label {label!r} but its folder says {meta['label']!r}")
            assigned[tail] = split
            meta["split"] = _SPLITS.get(split, split)


def _nfn_files(src: Path) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for p in sorted(src.rglob("*.pth")):
        rel = p.relative_to(src).as_posix()
        m, f = NFN_FILE.match(p.name), NFN_FOLDER.match(p.parent.name)
        if m is None or f is None:
            raise SourceError(f"{rel}: NFN keeps a SIREN at <prefix>_<label>s/net<idx>.pth "
                              f"(e.g. randinit_smaller_3s/net123.pth)")
        out.append((rel, {"label": int(f["label"]), "image_index": int(m["idx"]), "source_prefix": f["prefix"]}))
    if not out:
        raise SourceError(f"{src} holds no NFN SIRENs (<prefix>_<label>s/net<idx>.pth)")
    return out


def _nfn_split_points(src: Path, split_points: Sequence[int] | None) -> tuple[int, int] | None:
    if split_points is None:
        for p in sorted(src.glob("*.yaml")):
            m = re.search(r"^split_points:\s*\[\s*(\d+)\s*,\s*(\d+)\s*\]", p.read_text(errors="replace"), re.M)
            if m:
                split_points = (int(m[1]), int(m[2]))
                break
        else:
            return None
    pts = tuple(int(v) for v in split_points)
    if len(pts) != 2 or not 0 <= pts[0] <= pts[1]:
        raise SourceError(f"split points {list(split_points)}: give VAL,TEST with 0 <= VAL <= TEST (NFN's "
                          f"split_points, e.g. 45000,50000)")
    return pts


# ================================================================================ import
def _import(layout: str, src: Path, out: str | os.PathLike, files: list[tuple[str, dict[str, Any]]],
            build_spec: dict, name: str | None, image_shape: Sequence[int], dataset: str | None,
            rows_per_part: int, quiet: bool) -> Manifest:
    rows = []
    for rel, meta in files:
        model_id = stable_id(f"{layout}:{rel}", "inr-")
        # checkpoint 1: the one, final, fit the layouts keep (checkpoint 0 means an initialization)
        rows.append({"model_id": model_id, "run_id": model_id, "checkpoint": FINAL_CHECKPOINT, "status": "ok",
                     "label": meta["label"], "split": meta.get("split"), "image_index": meta["image_index"],
                     **({"source_prefix": meta["source_prefix"]} if "source_prefix" in meta else {}),
                     "source_layout": layout, "source_path": rel})
    rows, schema = rows_schema(rows)
    ds_spec, ds_facts = dataset_entry(dataset)
    if ds_spec is not None:
        build_spec["dataset"] = ds_spec
    specs: dict[tuple, NetworkSpec] = {}

    def read(rel: str) -> tuple[dict[str, torch.Tensor], tuple, list[tuple[str, str]]]:
        tensors = read_state_dict(src / rel, rel)
        names = _dws_names(tensors) if layout == DWS else _nfn_names(tensors)
        widths = _widths(tensors, names, rel)
        dtypes = {t.dtype for t in tensors.values()}
        if dtypes != {torch.float32}:
            raise SourceError(f"{rel}: the tensors are {sorted(map(str, dtypes))}; the INR datasets are float32")
        return tensors, tuple(widths), names

    # Every file is read and checked before anything is written: a refused pickle or a state dict
    # that is not the layout's SIREN, anywhere in the folder, leaves nothing behind (files read twice).
    for rel, _ in tqdm(files, disable=quiet, unit="file", desc=f"check {src.name}"):
        _, key, names = read(rel)
        if key not in specs:
            specs[key] = (siren_spec(names, list(key), image_shape, shift=DWS_SHIFT, layout=DWS) if layout == DWS
                          else siren_spec(names, list(key), image_shape, output_range=(-1.0, 1.0), layout=NFN))
    with no_empty_zoo_on_error(out), \
            ZooWriter(out, name or src.resolve().name, build_spec, datasets=ds_facts,
                      command=f"zoo import {layout} {src}") as writer:
        done = writer.done_model_ids()
        groups = GroupWriter(writer, schema, rows_per_part)
        for (rel, _), row in tqdm(list(zip(files, rows)), disable=quiet, unit="model", desc=f"import {src.name}"):
            if row["model_id"] in done:
                continue
            tensors, key, names = read(rel)
            if key not in specs:
                raise SourceError(f"{rel} changed while it was imported; run the import again")
            if layout == DWS:
                tensors = {**tensors, names[0][0]: _swap_xy(tensors[names[0][0]])}
            if not all(bool(torch.isfinite(t).all()) for t in tensors.values()):
                row = {**row, "status": "diverged"}
            groups.add(specs[key], tensors, row)
        groups.flush()
        return finish_import(writer)


def import_dws_inrs(src: str | os.PathLike, out: str | os.PathLike, *, name: str | None = None,
                    splits: str | os.PathLike | None = None, image_shape: Sequence[int] = (28, 28),
                    dataset: str | None = None, rows_per_part: int = ROWS_PER_PART,
                    quiet: bool = False) -> Manifest:
    """Import a DWSNets INR folder as a zoo at ``out`` (resumable; see the module docstring).

    Args:
        src: the folder (``dataset/mnist-inrs``).
        out: the zoo directory to write.
        name: the zoo's name (default: the folder's name).
        splits: a DWSNets split file (default: the one ``*splits.json`` in ``src``, else in its
            parent directory, where DWSNets writes it; none: the folder names' splits).
        image_shape: the images' ``(H, W)`` (default ``(28, 28)``, MNIST).
        dataset: the image dataset (a registered name or its JSON config), recorded so
            ``zoo verify --recompute`` can re-evaluate (default none).
        rows_per_part: models per part.
        quiet: no progress bar.

    Raises:
        SourceError: a file outside the layout, a state dict that is not a 2 -> ... -> 1 SIREN
            with ``seq.{i}`` names, a split file that disagrees with the folders.
    """
    src = Path(src)
    if not src.is_dir():
        raise SourceError(f"{src} is not a directory of DWSNets INRs")
    files = _dws_files(src)
    split_file = _dws_split_file(src, splits)
    if split_file is not None:
        _apply_dws_splits(split_file, files)
    build_spec = {"importer": DWS, "source": str(src.resolve()), "image_shape": list(image_shape),
                  "splits": None if split_file is None else split_file.name}
    return _import(DWS, src, out, files, build_spec, name, image_shape, dataset, rows_per_part, quiet)


def import_nfn_inrs(src: str | os.PathLike, out: str | os.PathLike, *, name: str | None = None,
                    split_points: Sequence[int] | None = None, image_shape: Sequence[int] = (28, 28),
                    dataset: str | None = None, rows_per_part: int = ROWS_PER_PART,
                    quiet: bool = False) -> Manifest:
    """Import an NFN SIREN folder as a zoo at ``out`` (resumable; see the module docstring).

    Args:
        src: the folder (``siren_mnist_wts``).
        out: the zoo directory to write.
        name: the zoo's name (default: the folder's name).
        split_points: NFN's ``(VAL, TEST)`` index split points (default: a ``split_points:``
            line of a ``*.yaml`` in ``src``; none: no split).
        image_shape: the images' ``(H, W)`` (default ``(28, 28)``).
        dataset: the image dataset, recorded for ``zoo verify --recompute`` (default none).
        rows_per_part: models per part.
        quiet: no progress bar.

    Raises:
        SourceError: a file outside the layout, a state dict that is not NFN's SIREN.
    """
    src = Path(src)
    if not src.is_dir():
        raise SourceError(f"{src} is not a directory of NFN SIRENs")
    files = _nfn_files(src)
    points = _nfn_split_points(src, split_points)
    if points is not None:
        for _, meta in files:
            idx = meta["image_index"]
            meta["split"] = "train" if idx < points[0] else "val" if idx < points[1] else "test"
    build_spec = {"importer": NFN, "source": str(src.resolve()), "image_shape": list(image_shape),
                  "split_points": None if points is None else list(points)}
    return _import(NFN, src, out, files, build_spec, name, image_shape, dataset, rows_per_part, quiet)


# ================================================================================ export
def _check_siren(spec: NetworkSpec, zoo_name: str, layout: str) -> None:
    """Raise unless ``spec`` is a 2 -> ... -> 1 chain of linear layers, ``sin`` with ω0 = 30
    except the identity output: what both layouts' code computes."""
    ok = (spec.is_chain and spec.input_shape == (2,) and spec.n_outputs == 1 and len(spec.layers) >= 2
          and all(layer.kind == "linear" and layer.bias is not None for layer in spec.layers)
          and all(layer.activation == "sin" and layer.omega == OMEGA0 for layer in spec.layers[:-1])
          and spec.layers[-1].activation == "identity" and spec.layers[-1].omega == 1.0)
    if not ok:
        raise WeightzooError(f"{zoo_name}: architecture {spec.arch_id} ({spec.summary()}) is not a SIREN that "
                             f"{layout} holds (2 -> ... -> 1 linear layers with biases, sin with omega 30, "
                             f"linear output)")


def _export(zoo: str | os.PathLike, out_dir: str | os.PathLike, layout: str, quiet: bool) -> list[Path]:
    from catalog.format import atomic_path, atomic_write_bytes
    from catalog.zoo import open_zoo

    # Before any work: never into a zoo (its files would change), and a folder that can be written.
    out = check_output_path(out_dir, "out_dir", None, directory=True, flag="--out")
    if out.exists() and any(out.iterdir()):
        raise WeightzooError(f"{out} is not empty; export into a new or empty directory")
    z = open_zoo(zoo)
    written: list[Path] = []
    seen: set[str] = set()
    splits: dict[str, dict[str, list]] = {}
    try:
        sel = z.select()
        cols = set(sel.columns)
        specs = {a: z.network_spec(a) for a in sel.arch_ids}
        for spec in specs.values():
            _check_siren(spec, z.name, layout)
            if layout == NFN and spec.layers[-1].shift != 0.0:
                raise WeightzooError(f"{z.name}: architecture {spec.arch_id} adds {spec.layers[-1].shift:g} to its "
                                     f"output, which NFN's SIREN does not; export it as dws-inr (+0.5) or state-dicts")
        want = [c for c in ("model_id", "arch_id", "label", "split", "image_index", "source_prefix") if c in cols]
        # NFN's split is index ranges: checked before any file is written
        points = _nfn_points_of(sel.metadata(want).to_pylist(), z.name) if layout == NFN else None
        step = 256
        with no_partial_export(out), \
                tqdm(total=len(sel), disable=quiet, unit="model", desc=f"export {z.name}") as bar:
            out.mkdir(parents=True, exist_ok=True)
            for start in range(0, len(sel), step):
                part = sel.take(range(start, min(start + step, len(sel))))
                for i, (rec, sd) in enumerate(zip(part.metadata(want).to_pylist(), part.state_dicts())):
                    spec = specs[rec["arch_id"]]
                    idx = rec.get("image_index")
                    idx = start + i if idx is None else int(idx)
                    label = rec.get("label")
                    label = 0 if label is None else label
                    tensors = [(sd[layer.weight], sd[layer.bias]) for layer in spec.layers]
                    n = len(tensors)
                    if layout == DWS:
                        split = rec.get("split") or "train"
                        rel = f"{split}_{label}_{idx}/{DWS_FILE}"
                        state = {}
                        for li, (w, b) in enumerate(tensors):
                            if li == 0:
                                w = _swap_xy(w)
                            if li == n - 1 and spec.layers[-1].shift != DWS_SHIFT:
                                # DWSNets adds 0.5 itself: keep the function (not the bits) of another shift
                                b = b + (spec.layers[-1].shift - DWS_SHIFT)
                            state[f"seq.{li}.weight"], state[f"seq.{li}.bias"] = w, b
                        entry = splits.setdefault(split, {"path": [], "label": []})
                        entry["path"].append(rel)
                        entry["label"].append(str(label))
                    else:
                        prefix = rec.get("source_prefix") or NFN_PREFIX
                        rel = f"{prefix}_{label}s/net{idx}.pth"
                        if not re.fullmatch(r"\d", str(label)):
                            raise WeightzooError(f"{rec['model_id']}: label {label!r} is not one digit, which NFN's "
                                                 f"folder names (<prefix>_<digit>s) need")
                        state = {}
                        for li, (w, b) in enumerate(tensors):
                            key = f"net.{li}.linear" if li < n - 1 else f"net.{li}"
                            state[f"{key}.weight"], state[f"{key}.bias"] = w, b
                    if rel in seen:
                        raise WeightzooError(f"two models of {z.name} export to {rel}: the layout holds one INR per "
                                             f"(split, label, image_index), e.g. not several checkpoints of a run")
                    seen.add(rel)
                    path = safe_join(out, rel, "exported INR")
                    path.parent.mkdir(parents=True, exist_ok=True)
                    with atomic_path(path) as tmp:
                        # a plain dict of tensors: torch.load(weights_only=True) reads it back
                        torch.save({k: v.clone().contiguous() for k, v in state.items()}, tmp)
                    written.append(path)
                    bar.update(1)
            if layout == DWS:
                atomic_write_bytes(out / "splits.json", json.dumps(splits, indent=1).encode())
            elif points is not None:
                atomic_write_bytes(out / NFN_SPLIT_FILE, (
                    "# NFN's dataset config line for the split by image index: train below VAL, val below TEST,\n"
                    f"# test from TEST (written by zoo export)\nsplit_points: [{points[0]}, {points[1]}]\n").encode())
    finally:
        z.close()
    return written


def _nfn_points_of(records: list[dict[str, Any]], zoo_name: str) -> tuple[int, int] | None:
    """NFN's ``split_points`` ``(VAL, TEST)`` that give every row its ``split`` (train below VAL,
    val below TEST, test from TEST; ``image_index`` or the row number), the smallest such
    points; ``None`` when no row has a split.

    Raises:
        WeightzooError: some rows have a split and others none, a split other than
            train/val/test, or splits that are not such index ranges.
    """
    by_split: dict[str, list[int]] = {}
    for i, rec in enumerate(records):
        idx = rec.get("image_index")
        by_split.setdefault(rec.get("split") or "", []).append(i if idx is None else int(idx))
    if set(by_split) <= {""}:
        return None
    fix = "export as dws-inr (a split file) or state-dicts, or select rows that NFN's index split can hold"
    if "" in by_split or not set(by_split) <= {"train", "val", "test"}:
        what = "some rows have no split" if "" in by_split else \
            f"splits {sorted(set(by_split) - {'train', 'val', 'test'})} are not train/val/test"
        raise WeightzooError(f"{zoo_name}: {what}; NFN splits every image by index (split_points), so {fix}")
    train, val, test = (by_split.get(k, []) for k in ("train", "val", "test"))
    lo = max(train) + 1 if train else 0
    hi = max(val) + 1 if val else lo
    if (val and min(val) < lo) or (test and min(test) < hi):
        raise WeightzooError(f"{zoo_name}: the split column is not NFN's index ranges (train below VAL, val below "
                             f"TEST, test from TEST): train reaches index {lo - 1}, val spans "
                             f"{[min(val), max(val)] if val else []}, test starts at {min(test) if test else None}; "
                             f"{fix}")
    return lo, hi


def export_dws_inrs(zoo: str | os.PathLike, out_dir: str | os.PathLike, quiet: bool = False) -> list[Path]:
    """Write every SIREN of ``zoo`` in DWSNets' layout: ``<split>_<label>_<idx>/checkpoints/
    model_final.pth`` (``split`` default ``train``, ``label`` default 0, ``idx`` the
    ``image_index`` or the row number) and ``splits.json`` (DWSNets' form, relative paths).

    The inverse of the import: ``seq.0.weight``'s columns swapped back to ``(x, y)``. A zoo whose
    output shift is 0.5 (an imported DWSNets zoo) exports bit-identically; another shift (a
    built SIREN: 0) is folded into ``seq.{last}.bias`` so DWSNets' ``seq(x) + 0.5`` computes the
    same function (to float rounding).

    Raises:
        WeightzooError: ``out_dir`` is not empty, an architecture is not a SIREN, two models
            map to one folder.
    """
    return _export(zoo, out_dir, DWS, quiet)


def export_nfn_inrs(zoo: str | os.PathLike, out_dir: str | os.PathLike, quiet: bool = False) -> list[Path]:
    """Write every SIREN of ``zoo`` in NFN's layout: ``<prefix>_<label>s/net<idx>.pth``
    (``prefix`` the ``source_prefix`` column or ``randinit_smaller``, ``idx`` the
    ``image_index`` or the row number), tensors as stored (bit-identical), and, when the rows
    have a ``split``, ``split_points.yaml`` with NFN's ``split_points: [VAL, TEST]`` line (the
    smallest points that give every row its split), which the import reads back.

    Raises:
        WeightzooError: ``out_dir`` is not empty, an architecture is not a SIREN or has an
            output shift, a label is not one digit, two models map to one file, a split column
            that NFN's index ranges cannot express (checked before anything is written).
    """
    return _export(zoo, out_dir, NFN, quiet)


__all__ = ["DWS", "NFN", "OMEGA0", "export_dws_inrs", "export_nfn_inrs", "import_dws_inrs", "import_nfn_inrs",
           "siren_spec"]
