"""`zoo import` and `zoo export`: zoos from existing models, and models back out of zoos."""

from __future__ import annotations

import click

from catalog.errors import WeightzooError
from zoo_builders.importers import EXPORTERS, IMPORTERS, export_zoo, import_zoo


def _shape(text: str | None, option: str = "--input-shape", allow_zero: bool = False) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        shape = ()
    if not shape or any(s < (0 if allow_zero else 1) for s in shape):
        raise WeightzooError(f"{option} {text!r}: give {'non-negative' if allow_zero else 'positive'} integers, "
                             f"e.g. {'45000,50000' if allow_zero else '1,28,28'}")
    return shape


#: Every layout `zoo import` takes: the registry's, and auto (detected from the file names).
LAYOUTS = (*sorted(IMPORTERS), "auto")


@click.command("import", help=f"""Import SOURCE, a folder in LAYOUT, as a zoo at --out. LAYOUT is the first
argument (zoo import auto SOURCE) or --layout (zoo import SOURCE --layout auto); auto detects the
layout from the file names.

\b
Layouts: {', '.join(LAYOUTS)}

Resumable: run the same command again after an interruption.""")
@click.argument("args", nargs=-1, required=True, metavar="[LAYOUT] SOURCE")
@click.option("--layout", "layout_opt", default=None, metavar="LAYOUT",
              help="The layout, instead of the first argument (one of the layouts above).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="The zoo directory to write.")
@click.option("--name", default=None, help="The zoo's name (default: the source directory's name).")
@click.option("--arch", default=None, metavar="PRESET|SPEC.json",
              help="The architecture instead of inferring it: a preset name or a NetworkSpec JSON file.")
@click.option("--arch-opt", "arch_opts", multiple=True, metavar="KEY=VALUE",
              help="A preset option, e.g. channels=[16,16,16] (repeatable).")
@click.option("--activation", default=None,
              help="The hidden layers' activation (state-dicts, small-cnn-zoo, hf-models). Default relu; "
                   "hf-models: config.json's hidden_act, else relu; small-cnn-zoo: each row's config.activation, "
                   "else this.")
@click.option("--input-shape", default=None, metavar="C,H,W",
              help="One example's shape (needed for convolutional nets and presets).")
@click.option("--dataset", default=None, metavar="NAME|JSON",
              help="The dataset the models were evaluated on (a registered name such as digits, or its JSON "
                   "config), recorded so `zoo verify --recompute` can re-evaluate them.")
@click.option("--splits", default=None, type=click.Path(dir_okay=False),
              help="dws-inr: a DWSNets split file (default: the *splits.json in SOURCE).")
@click.option("--split-points", default=None, metavar="VAL,TEST",
              help="nfn-inr: NFN's index split points (default: a split_points line of a *.yaml in SOURCE).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def import_(args: tuple[str, ...], layout_opt: str | None, out: str, name: str | None, arch: str | None,
            arch_opts: tuple[str, ...], activation: str | None, input_shape: str | None, dataset: str | None,
            splits: str | None, split_points: str | None, quiet: bool) -> None:
    if layout_opt is not None and len(args) == 1:
        layout, source = layout_opt, args[0]
    elif layout_opt is None and len(args) == 2:
        layout, source = args
    else:
        raise WeightzooError(f"give the layout once and one SOURCE: zoo import LAYOUT SOURCE or zoo import SOURCE "
                             f"--layout LAYOUT (got {len(args)} argument(s){' and --layout' if layout_opt else ''}); "
                             f"layouts: {', '.join(LAYOUTS)}")
    manifest = import_zoo(layout, source, out, name=name, arch=arch, arch_options=list(arch_opts) or None,
                          activation=activation, input_shape=_shape(input_shape), dataset=dataset, splits=splits,
                          split_points=_shape(split_points, "--split-points", allow_zero=True), quiet=quiet)
    counts = manifest.counts
    detected = f", layout {manifest.spec.get('importer')} detected from the file names" if layout == "auto" else ""
    click.echo(f"imported {counts.get('rows', 0)} models ({len(manifest.architectures)} architecture(s)) "
               f"into {out}{detected}")


@click.command("export")
@click.argument("zoo", type=click.Path(exists=True, file_okay=False))
@click.option("--layout", type=click.Choice(sorted(EXPORTERS)), default="state-dicts", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="A new or empty directory.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def export(zoo: str, layout: str, out: str, quiet: bool) -> None:
    """Write every model of ZOO in LAYOUT: state-dicts (one .safetensors per model plus
    metadata.jsonl), dws-inr or nfn-inr (the INR datasets' folders; `zoo import` reads them back)."""
    files = export_zoo(layout, zoo, out, quiet=quiet)
    click.echo(f"exported {len(files)} models to {out}")


COMMANDS = (import_, export)
