"""``--layout auto``: which importer layout a source folder is in, from its file names alone
(nothing is opened, so detection never reads a pickle).

Rules, in order (the first that matches wins; folders that are zoos are not looked into):

| layout          | the source holds                                                            |
| --------------- | --------------------------------------------------------------------------- |
| `hf-models`     | an ``hf://`` URL (or a list of them)                                        |
| `small-cnn-zoo` | ``weights.npy`` and ``layout.csv`` at the top                               |
| `modelzoos`     | a sub-folder with ``params.json`` (a Ray Tune trial folder)                 |
| `dws-inr`       | ``*/checkpoints/model_final.pth`` (DWSNets' INR folders)                    |
| `nfn-inr`       | ``net<idx>.pth`` files (NFN's SIREN folders)                                |
| `hf-models`     | ``model.safetensors`` or ``model.safetensors.index.json``, at the top, or in |
|                 | sub-folders when every weight file is one of those (or its shards)         |
| `state-dicts`   | any other ``.safetensors``/``.pt``/``.pth``/``.bin``/``.ckpt`` file        |
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from catalog.format import MANIFEST_NAME
from zoo_builders.importers.common import SourceError
from zoo_builders.importers.hf_models import is_snapshot
from zoo_builders.importers.statedict import MODEL_SUFFIXES

#: What each layout is recognised by, for the error when nothing matches.
LOOKED_FOR = (
    ("small-cnn-zoo", "weights.npy + layout.csv"),
    ("modelzoos", "trial folders with params.json"),
    ("dws-inr", "*/checkpoints/model_final.pth"),
    ("nfn-inr", "net<idx>.pth"),
    ("hf-models", "model.safetensors or model.safetensors.index.json"),
    ("state-dicts", ", ".join("*" + s for s in MODEL_SUFFIXES)),
)
_NFN = re.compile(r"net\d+\.pth")
_HF_FILES = re.compile(r"model\.safetensors|model\.safetensors\.index\.json|model-\d+-of-\d+\.safetensors")


def detect_layout(src: str | os.PathLike | Sequence[str | os.PathLike]) -> str:
    """The layout of ``src`` (see the module docstring).

    Raises:
        SourceError: ``src`` is not a directory, or no rule matches (the message lists what
            each layout is recognised by).
    """
    if not isinstance(src, str | os.PathLike):
        items = [str(s) for s in src]
        if items and all(s.startswith("hf://") or is_snapshot(Path(s)) for s in items):
            return "hf-models"
        raise SourceError("--layout auto detects the layout of one folder; give a list only of Hugging Face "
                          "snapshots or hf:// URLs, or name the layout")
    if str(src).startswith("hf://"):
        return "hf-models"
    root = Path(src)
    if not root.is_dir():
        raise SourceError(f"{root} is not a directory; --layout auto detects the layout of a folder")
    top = {p.name for p in root.iterdir()}
    if {"weights.npy", "layout.csv"} <= top:
        return "small-cnn-zoo"
    if any((root / name / "params.json").is_file() for name in top):
        return "modelzoos"
    dws = nfn = False
    hf_files, other_models = 0, 0
    for dirpath, dirs, files in os.walk(root):
        parent = Path(dirpath)
        if parent != root and MANIFEST_NAME in files:  # a zoo (an earlier import's --out): not the source's
            dirs.clear()
            continue
        for f in files:
            if f == "model_final.pth" and parent.name == "checkpoints" and parent != root:
                dws = True
            elif _NFN.fullmatch(f):
                nfn = True
            elif _HF_FILES.fullmatch(f):
                hf_files += 1
            elif f.endswith(MODEL_SUFFIXES):
                other_models += 1
    if dws:
        return "dws-inr"
    if nfn:
        return "nfn-inr"
    if hf_files and (is_snapshot(root) or not other_models):
        return "hf-models"
    if hf_files or other_models:
        return "state-dicts"
    looked = "; ".join(f"{layout}: {what}" for layout, what in LOOKED_FOR)
    raise SourceError(f"--layout auto found no known layout in {root} (looked for {looked}); name the layout "
                      f"(zoo import LAYOUT SOURCE)")
