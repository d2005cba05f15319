"""`zoo build`, `zoo presets`, `zoo info`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from catalog import open_zoo
from catalog.errors import WeightzooError
from zoo_builders import build_zoo, list_presets
from zoo_builders.spec import PRESET_DIR


@click.command()
@click.argument("spec")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None,
              help="Zoo directory to write (default: zoos/<spec name>).")
@click.option("--max-population", type=int, default=None,
              help="Most runs trained as one vectorized computation (default: what fits in memory).")
@click.option("--dry-run", is_flag=True, help="Print the runs, populations and rows; train nothing.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def build(spec: str, out: str | None, max_population: int | None, dry_run: bool, quiet: bool) -> None:
    """Build the zoo described by SPEC (a YAML file or a preset name, see `zoo presets`).

    Running the same command again resumes an interrupted build; on a finished zoo it does nothing.
    """
    from zoo_builders.spec import BuildSpec

    parsed = BuildSpec.load(spec)
    out_dir = Path(out) if out else Path("zoos") / parsed.name
    plan = build_zoo(parsed, out_dir, max_population=max_population, quiet=quiet, dry_run=dry_run)
    if dry_run:
        click.echo(plan.describe())
        for r in plan.runs[:10]:
            hp = r.hparams()
            shown = {k: hp[k] for k in ("lr", "weight_decay", "seed", "optimizer", "activation") if k in hp}
            click.echo(f"  run {r.run_id} {shown}" + (f" image={r.image_index}" if r.image_index is not None else ""))
        if len(plan.runs) > 10:
            click.echo(f"  ... and {len(plan.runs) - 10} more runs")
        return
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
    for name in list_presets():
        data = yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text())
        click.echo(f"{name:14s} {data.get('description', '')}")


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


@click.command()
@click.argument("zoo")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info(zoo: str, as_json: bool) -> None:
    """Describe ZOO: counts, architectures, columns, size and metric summaries."""
    d = open_zoo(zoo).info()
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    c = d["counts"]
    click.echo(f"{d['name']}  ({d['path']}, format v{d['format_version']}"
               + ("" if d["complete"] else ", INCOMPLETE: run `zoo build` again to finish") + ")")
    status = ", ".join(f"{v} {k}" for k, v in sorted(c["status"].items()))
    click.echo(f"  {c['rows']} rows, {c['runs']} runs, {c['architectures']} architectures; status: {status}")
    click.echo(f"  size on disk: {_fmt_bytes(d['size_bytes'])}")
    for a, s in d["architectures"].items():
        click.echo(f"  arch {a}: {s['summary']}")
    click.echo("  columns:")
    for name, typ in d["columns"].items():
        click.echo(f"    {name:18s} {typ}")
    if d["metrics"]:
        click.echo("  metrics at the last checkpoint (status ok):")
        for k, v in d["metrics"].items():
            click.echo(f"    {k:12s} min {v['min']:.4g}  mean {v['mean']:.4g}  max {v['max']:.4g}")


COMMANDS = [build, presets, info]
