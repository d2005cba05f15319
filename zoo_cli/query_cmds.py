"""`zoo query`, `zoo verify` and `zoo catalog add|list|remove`."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import click

from catalog.card import METRICS_OVER
from catalog.errors import IntegrityError, QueryError, format_bytes
from catalog.export import FORMATS, check_result_output, write_result
from catalog.query import QueryEngine
from catalog.store import LocalCatalog
from catalog.zoo import open_zoo

_SQL_STARTS = ("select", "with", "from", "(", "values", "describe", "summarize", "show", "table",
               "pivot", "unpivot", "update", "delete", "insert", "copy", "attach", "create",
               "drop", "alter", "pragma", "set", "install", "load", "export", "import", "call")


def _looks_like_sql(arg: str) -> bool:
    try:
        if Path(arg).exists():
            return False
    except OSError:  # e.g. a query longer than a file name may be: not a path
        pass
    text = arg.strip().lower()
    return any(c.isspace() for c in text) or text.startswith("(") or text in _SQL_STARTS


def _split_args(args: tuple[str, ...], use_catalog: bool) -> tuple[list[str], str | None]:
    """``(zoo paths, sql)`` from the positional arguments."""
    args = tuple(a for a in args if a.strip())
    if use_catalog:
        if len(args) > 1:
            raise QueryError("with --catalog, give only the SQL (the catalog says which zoos); "
                             "to query zoo directories, leave out --catalog")
        return [], (args[0] if args else None)
    if not args:
        raise QueryError('name a zoo directory, e.g. `zoo query zoos/digits-mlp "SELECT * FROM '
                         'models LIMIT 5"`, or use --catalog')
    if _looks_like_sql(args[-1]):
        zoos, sql = list(args[:-1]), args[-1]
        if not zoos:
            raise QueryError(f"name the zoo directory before the SQL: zoo query ZOO {sql!r}")
        return zoos, sql
    return list(args), None


def _echo_warnings(caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)


@click.command()
@click.argument("args", nargs=-1, metavar="[ZOO]... [SQL]")
@click.option("--catalog", "use_catalog", is_flag=True,
              help="Query every zoo in the local catalog (see `zoo catalog`) instead of directories.")
@click.option("--where", default=None, help="SQL condition, e.g. \"test_acc > 0.9 AND activation = 'relu'\".")
@click.option("--order-by", default=None, help='SQL ordering, e.g. "test_acc DESC".')
@click.option("--limit", type=click.IntRange(min=0), default=None, help="At most this many rows.")
@click.option("--columns", default=None, help="Comma-separated columns to show, e.g. model_id,lr,test_acc.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Output format (default: table on a terminal, else csv; with --out: from its suffix, "
                   ".csv, .json or .parquet; table is for the terminal only).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the result to this file.")
def query(args: tuple[str, ...], use_catalog: bool, where: str | None, order_by: str | None,
          limit: int | None, columns: str | None, fmt: str | None, out: str | None) -> None:
    """Query zoo metadata with SQL; the rows are the table `models`.

    \b
      zoo query ZOO "SELECT model_id, test_acc FROM models WHERE test_acc > 0.9"
      zoo query ZOO --where "activation = 'relu'" --order-by "test_acc DESC" --limit 10
      zoo query ZOO1 ZOO2 "SELECT zoo, count(*) FROM models GROUP BY zoo"
      zoo query --catalog "SELECT zoo, max(test_acc) FROM models GROUP BY zoo"

    Several zoos are queried as their union, with a `zoo` column (columns a zoo lacks are
    NULL). Queries are read-only: only a single SELECT runs, and files cannot be touched.
    With SQL and --where/--order-by/--limit/--columns, the options filter the SQL's result.
    """
    zoo_paths, sql = _split_args(args, use_catalog)
    out_fmt = check_result_output(out, fmt, sys.stdout.isatty())  # before any work
    cols = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if use_catalog:
            engine = LocalCatalog().engine()
        else:
            # one query: copying the rows is the cost; compacting them would not pay off
            engine = QueryEngine.over_zoos([open_zoo(p) for p in zoo_paths], compact=False)
    _echo_warnings(caught)
    try:
        shortcuts = any(x is not None for x in (where, order_by, limit, cols))
        if sql is None or shortcuts:
            text = engine.build_select(where, order_by, limit, cols, source=sql)
        else:
            text = sql
        table = engine.execute(text)
        text = write_result(table, out_fmt, out)
        if text is not None:
            click.echo(text, nl=False)
        if out is not None:
            click.echo(f"wrote {table.num_rows} rows to {out} ({out_fmt})", err=True)
    finally:
        engine.close()


@click.command()
@click.argument("zoo", type=click.Path())
@click.option("--no-weights", is_flag=True, help="Skip hashing every row's weights (much faster).")
@click.option("--recompute", is_flag=True,
              help="Also re-evaluate a seeded sample of models on the zoo's dataset (test_acc/test_loss, or "
                   "mse/psnr for INRs) and compare with the stored metrics.")
@click.option("--sample", default=64, show_default=True, type=click.IntRange(min=1),
              help="--recompute: models to re-evaluate.")
@click.option("--seed", default=0, show_default=True, help="--recompute: the sample's seed.")
@click.option("--tolerance", default=1e-4, show_default=True, type=click.FloatRange(min=0),
              help="--recompute: the largest allowed |stored - recomputed| per metric.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def verify(zoo: str, no_weights: bool, recompute: bool, sample: int, seed: int, tolerance: float,
           quiet: bool) -> None:
    """Check a zoo against its manifest: file checksums, the Parquet schema, row/shard
    consistency and every row's weights. Exits 0 when clean; otherwise lists each bad file
    or row and exits 1. With --recompute, stored metrics are re-evaluated too."""
    from catalog.verify import verify_zoo  # reads weights: torch, only for this command

    report = verify_zoo(zoo, check_weights=not no_weights, progress=not quiet and sys.stderr.isatty())
    for w in report.warnings:
        click.echo(f"warning: {w}")
    for p in report.problems:
        click.echo(f"BAD {p}")
    click.echo(report.summary())
    if not report.ok:
        raise IntegrityError(
            f"{len(report.problems)} problem(s) in {zoo}; {report.repair_hint}")
    if recompute:
        from zoo_builders.recompute import recompute_metrics  # only when asked: it loads the data stack

        again = recompute_metrics(zoo, sample=sample, seed=seed, tolerance=tolerance,
                                  quiet=quiet or not sys.stderr.isatty())
        for line in again.lines():
            click.echo(line)
        if not again.ok:
            models = sorted({m.model_id for m in again.mismatches})
            raise IntegrityError(f"{len(again.mismatches)} stored metric(s) differ from recomputed ones by more "
                                 f"than {tolerance:g} in {zoo} (models: {', '.join(models[:5])}"
                                 f"{', ...' if len(models) > 5 else ''})")


@click.group("catalog")
def catalog_group() -> None:
    """The local catalog: zoos indexed once, queried together with `zoo query --catalog`.

    It is a DuckDB file under your data directory; set WEIGHTZOO_CATALOG (a file) or
    WEIGHTZOO_HOME (a directory) to use another.
    """


@catalog_group.command("add")
@click.argument("zoo", type=click.Path())
@click.option("--name", default=None, help="Name in the `zoo` column (default: the zoo's name).")
def catalog_add(zoo: str, name: str | None) -> None:
    """Index ZOO's metadata in the catalog (again, to refresh it)."""
    cat = LocalCatalog()
    entry = cat.add(zoo, name=name)
    click.echo(f"catalogued {entry.name!r}: {entry.rows} rows from {entry.path} (catalog {cat.path})")


@catalog_group.command("list")
def catalog_list() -> None:
    """List the catalogued zoos."""
    cat = LocalCatalog()
    entries = cat.list()
    if not entries:
        click.echo(f"the catalog {cat.path} is empty; add zoos with `zoo catalog add ZOO`")
        return
    width = max(len(e.name) for e in entries)
    for e in entries:
        click.echo(f"{e.name:<{width}}  {e.rows:>9} rows  {e.state:<7}  {e.path}")


@catalog_group.command("remove")
@click.argument("name")
def catalog_remove(name: str) -> None:
    """Forget the zoo NAME (its files are not touched)."""
    LocalCatalog().remove(name)
    click.echo(f"removed {name!r} from the catalog")


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
    click.echo(f"  size: {format_bytes(d['size_bytes'])} (the files zoo.json lists); "
               f"{format_bytes(d['local_bytes'])} {d['local_copy']}")
    for a, s in d["architectures"].items():
        click.echo(f"  arch {a}: {s['summary']}")
    click.echo("  columns:")
    for name, typ in d["columns"].items():
        click.echo(f"    {name:18s} {typ}")
    if d["metrics"]:
        click.echo(f"  metrics at {METRICS_OVER}:")
        for k, v in d["metrics"].items():
            click.echo(f"    {k:12s} min {v['min']:.4g}  mean {v['mean']:.4g}  max {v['max']:.4g}")


COMMANDS = [query, verify, info, catalog_group]
