"""`zoo import` and `zoo export`: zoos from existing models, and models back out of zoos."""

from __future__ import annotations

import click

from catalog.errors import WeightzooError
from zoo_builders.importers import export_statedict, import_zoo

EXPORTERS = {"state-dicts": export_statedict}


def _shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        shape = ()
    if not shape or any(s < 1 for s in shape):
        raise WeightzooError(f"--input-shape {text!r}: give positive integers, e.g. 1,28,28")
    return shape


@click.command("import")
@click.argument("layout", metavar="LAYOUT")
@click.argument("source", type=click.Path())
@click.option("--out", required=True, type=click.Path(file_okay=False), help="The zoo directory to write.")
@click.option("--name", default=None, help="The zoo's name (default: the source directory's name).")
@click.option("--arch", default=None, metavar="PRESET|SPEC.json",
              help="The architecture instead of inferring it: a preset name or a NetworkSpec JSON file.")
@click.option("--arch-opt", "arch_opts", multiple=True, metavar="KEY=VALUE",
              help="A preset option, e.g. channels=[16,16,16] (repeatable).")
@click.option("--activation", default=None, help="The hidden layers' activation (default relu).")
@click.option("--input-shape", default=None, metavar="C,H,W",
              help="One example's shape (needed for convolutional nets and presets).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def import_(layout: str, source: str, out: str, name: str | None, arch: str | None, arch_opts: tuple[str, ...],
            activation: str | None, input_shape: str | None, quiet: bool) -> None:
    """Import SOURCE, a folder in LAYOUT (state-dicts, small-cnn-zoo), as a zoo at --out.

    Resumable: run the same command again after an interruption.
    """
    manifest = import_zoo(layout, source, out, name=name, arch=arch, arch_options=list(arch_opts) or None,
                          activation=activation, input_shape=_shape(input_shape), quiet=quiet)
    counts = manifest.counts
    click.echo(f"imported {counts.get('rows', 0)} models ({len(manifest.architectures)} architecture(s)) "
               f"into {out}")


@click.command("export")
@click.argument("zoo", type=click.Path(exists=True, file_okay=False))
@click.option("--layout", type=click.Choice(sorted(EXPORTERS)), default="state-dicts", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="A new or empty directory.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def export(zoo: str, layout: str, out: str, quiet: bool) -> None:
    """Write every model of ZOO in LAYOUT (one .safetensors per model plus metadata.jsonl)."""
    files = EXPORTERS[layout](zoo, out, quiet=quiet)
    click.echo(f"exported {len(files)} models to {out}")


COMMANDS = (import_, export)
