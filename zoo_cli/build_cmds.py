"""`zoo build`, `zoo presets`, `zoo info`."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import click

from catalog import open_zoo
from catalog.errors import WeightzooError
from zoo_builders import build_zoo, list_presets
from zoo_builders.build import DEFAULT_THREADS
from zoo_builders.executors import parse_workers
from zoo_builders.spec import PRESET_DIR


@click.command()
@click.argument("spec")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None,
              help="Zoo directory to write (default: zoos/<spec name>).")
@click.option("--max-population", type=int, default=None,
              help="Most runs trained as one vectorized computation (default: what fits in memory).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help=f"Torch threads to train with (default {DEFAULT_THREADS}: populations are already "
                   f"vectorized; use --workers to train on more cores). With --workers: each worker's.")
@click.option("--workers", default=None, metavar="N|auto",
              help="Processes training populations in parallel on this machine ('auto': one per "
                   "core; default 1: train in this process). With --executor ray: the CPUs of "
                   "the local Ray cluster started for the build.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default=None,
              help="Where populations train: 'local' (this machine; default) or 'ray' (as Ray "
                   "tasks; needs `pip install 'weightzoo[ray]'`). This process alone writes the zoo.")
@click.option("--address", default=None, metavar="ADDR",
              help="With --executor ray: the cluster to use, e.g. HEAD_IP:6379 (default: "
                   "RAY_ADDRESS, else a local cluster started for this build).")
@click.option("--dry-run", is_flag=True,
              help="Print the populations to train (reading an existing zoo at --out to skip its "
                   "finished runs); train and write nothing.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def build(spec: str, out: str | None, max_population: int | None, threads: int | None,
          workers: str | None, executor: str | None, address: str | None, dry_run: bool,
          quiet: bool) -> None:
    """Build the zoo described by SPEC (a YAML file or a preset name, see `zoo presets`).

    Running the same command again resumes an interrupted build, after checking the files
    already built and rebuilding any that are missing or corrupt; on a finished, intact zoo it
    does nothing. One build at a time may write a zoo directory.

    \b
    Parallel builds train whole populations side by side; the zoo is the same as a serial
    build's (rows and weights), and this process alone writes it:
      zoo build SPEC --workers auto            one process per core
      zoo build SPEC --executor ray            a local Ray cluster
      zoo build SPEC --executor ray --address HEAD_IP:6379
    A build has as many populations as --dry-run lists; a smaller --max-population makes more.
    """
    from zoo_builders.spec import BuildSpec

    parsed = BuildSpec.load(spec)
    out_dir = Path(out) if out else Path("zoos") / parsed.name
    plan = build_zoo(parsed, out_dir, max_population=max_population, quiet=quiet, dry_run=dry_run,
                     threads=threads, workers=workers, executor=executor, address=address)
    if dry_run:
        click.echo(plan.describe())
        return
    for r in plan.repaired:
        click.echo(f"repaired: dropped {r.path} ({r.reason}); its runs were trained again")
    n_workers = parse_workers(workers) if executor != "ray" else 1
    if 0 < len(plan.populations) < n_workers:
        runs = max(len(p.runs) for p in plan.populations)
        click.echo(f"note: {len(plan.populations)} population(s) to train, so at most that many "
                   f"of the {n_workers} workers were busy; --max-population "
                   f"{max(1, -(-runs // n_workers))} splits them")
    zoo = open_zoo(out_dir)
    built = sum(len(p.runs) for p in plan.populations)
    click.echo(f"zoo {zoo.name!r} at {out_dir}: {zoo.manifest.counts.get('rows', 0)} rows, "
               f"{zoo.manifest.counts.get('runs', 0)} runs ({built} trained now"
               + (f", {plan.skipped_runs} already there" if plan.skipped_runs else "") + ")")


@click.command()
@click.option("--show", default=None, metavar="NAME", help="Print one preset's YAML spec.")
def presets(show: str | None) -> None:
    """List the built-in build specs (use one as `zoo build NAME`)."""
    import yaml

    if show:
        path = PRESET_DIR / f"{show}.yaml"
        if not path.is_file():
            raise WeightzooError(f"unknown preset {show!r}; presets: {', '.join(list_presets())}")
        click.echo(path.read_text().rstrip())
        return
    names = list_presets()
    # Names in one column as wide as the longest; descriptions wrapped to the terminal under it.
    indent = max(map(len, names)) + 2
    width = max(shutil.get_terminal_size((100, 24)).columns, indent + 40)
    for name in names:
        data = yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text())
        click.echo(textwrap.fill(data.get("description", ""), width=width, initial_indent=name.ljust(indent),
                                 subsequent_indent=" " * indent, break_on_hyphens=False, break_long_words=False))


COMMANDS = [build, presets]
