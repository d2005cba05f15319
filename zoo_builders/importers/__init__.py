"""Importers: zoos built from models that already exist, one file per source layout.

Each importer reads its layout, infers or is told the architectures, and writes a regular zoo
through :class:`catalog.writer.ZooWriter` (which takes the zoo's lock and makes the import
resumable). :data:`IMPORTERS` maps a layout name to its function; :func:`import_zoo` dispatches.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from catalog.format import Manifest
from catalog.paths import check_output_path
from zoo_builders.importers.common import SourceError
from zoo_builders.importers.detect import LOOKED_FOR, detect_layout
from zoo_builders.importers.hf_models import import_hf_models
from zoo_builders.importers.inr import export_dws_inrs, export_nfn_inrs, import_dws_inrs, import_nfn_inrs
from zoo_builders.importers.modelzoos import import_modelzoos
from zoo_builders.importers.small_cnn_zoo import import_small_cnn_zoo
from zoo_builders.importers.statedict import export_statedict, import_statedicts, infer_chain, read_state_dict

#: Layout name -> ``fn(src, out, **options) -> Manifest``.
IMPORTERS: dict[str, Callable[..., Manifest]] = {
    "state-dicts": import_statedicts,
    "small-cnn-zoo": import_small_cnn_zoo,
    "modelzoos": import_modelzoos,
    "hf-models": import_hf_models,
    "dws-inr": import_dws_inrs,
    "nfn-inr": import_nfn_inrs,
}

#: Layout name -> ``fn(zoo, out_dir, quiet=False) -> [written model files]``: the inverse of
#: the importer of that name.
EXPORTERS: dict[str, Callable[..., list]] = {
    "state-dicts": export_statedict,
    "dws-inr": export_dws_inrs,
    "nfn-inr": export_nfn_inrs,
}


def export_zoo(layout: str, zoo: str | os.PathLike, out: str | os.PathLike, quiet: bool = False) -> list:
    """Write every model of ``zoo`` into ``out`` in ``layout`` (see :data:`EXPORTERS`).

    Raises:
        WeightzooError: an unknown layout (the message lists the valid ones), or what the
            exporter refuses (a non-empty ``out``, an architecture the layout cannot hold).
    """
    if layout not in EXPORTERS:
        raise SourceError(f"unknown export layout {layout!r}; valid layouts: {', '.join(sorted(EXPORTERS))}")
    return EXPORTERS[layout](zoo, out, quiet=quiet)


def get_importer(layout: str) -> Callable[..., Manifest]:
    """The importer of ``layout``.

    Raises:
        SourceError: an unknown layout; the message lists the valid ones.
    """
    if layout not in IMPORTERS:
        raise SourceError(f"unknown layout {layout!r}; valid layouts: {', '.join(sorted(IMPORTERS))} "
                          f"(or auto, to detect it)")
    return IMPORTERS[layout]


def import_zoo(layout: str, src: str | os.PathLike, out: str | os.PathLike, **options) -> Manifest:
    """Import ``src`` (in ``layout``) as a zoo at ``out``; ``options`` go to the importer
    (``None`` values are left out, so the importer's defaults apply). ``layout`` ``"auto"``
    detects the layout from the source's file names
    (:func:`zoo_builders.importers.detect.detect_layout`).

    Raises:
        SourceError: an unknown layout, an option the layout does not take, a bad source.
        OutputPathError: ``out`` lies inside a zoo or another command's output (an existing zoo
            at ``out`` itself is resumed; see :func:`catalog.paths.check_output_path`).
    """
    import inspect

    check_output_path(out, "out", "zoo", flag="--out")  # before any work (detecting the layout reads the source)
    detected = layout == "auto"
    if detected:
        layout = detect_layout(src)
        if layout not in IMPORTERS:
            raise SourceError(f"{src} looks like the {layout} layout, which this installation cannot import "
                              f"(valid layouts: {', '.join(sorted(IMPORTERS))})")
    fn = get_importer(layout)
    options = {k: v for k, v in options.items() if v is not None}
    accepted = set(inspect.signature(fn).parameters)
    unknown = sorted(set(options) - accepted)
    try:
        if unknown:
            raise SourceError(f"layout {layout!r} does not take "
                              f"{', '.join('--' + u.replace('_', '-') for u in unknown)}")
        return fn(src, out, **options)
    except SourceError as e:
        if not detected:
            raise
        # a guess from file names alone: say what it was and how to choose another layout
        raise SourceError(f"{e} (--layout auto detected {layout}, as the source holds {dict(LOOKED_FOR)[layout]}; if "
                          f"it is another layout, name it: zoo import LAYOUT SOURCE with LAYOUT one of "
                          f"{', '.join(sorted(IMPORTERS))})") from e


__all__ = ["EXPORTERS", "IMPORTERS", "export_dws_inrs", "export_nfn_inrs", "export_zoo", "import_dws_inrs",
           "import_nfn_inrs", "SourceError", "export_statedict", "get_importer", "import_hf_models", "import_modelzoos",
           "import_small_cnn_zoo", "import_statedicts", "import_zoo", "infer_chain", "read_state_dict"]
