"""`zoo analyze` and `zoo plot`: thin wrappers over :mod:`weightspace.analysis.run`."""

from __future__ import annotations

import click

# The names the options offer, spelled out so `zoo --help` imports no torch (a test checks they
# equal weightspace.analysis's METRICS, PLOT_KINDS and AGGREGATIONS).
METRIC_NAMES = ("hessian", "cka", "connectivity", "averaging", "subspace")
PLOT_KIND_NAMES = ("heatmap", "line", "scatter")
AGGREGATION_NAMES = ("mean", "median", "min", "max", "std", "count")


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


@click.command()
@click.argument("zoo", type=click.Path())
@click.option("--metrics", default="all", show_default=True,
              help=f"Comma-separated metrics: {', '.join(METRIC_NAMES)} (or all).")
@click.option("--where", default=None, help="SQL condition selecting the models, e.g. \"lr = 0.01\".")
@click.option("--checkpoint", default=None,
              help="Epoch to analyze, 'last' (default: each run's last checkpoint) or 'all'.")
@click.option("--align", is_flag=True,
              help="connectivity: also mc_linear_aligned / mc_bezier_aligned, after weight matching.")
@click.option("--batches", type=click.IntRange(min=1), default=10, show_default=True,
              help="Hessian data: this many batches of --batch-size examples.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Hessian batch size (and the Bezier curve's training batch size).")
@click.option("--cka-layer", default=None, metavar="LAYER",
              help="cka: compare a hidden representation instead of the logits: a layer chain's hidden "
                   "layer index, or a graph's node name (e.g. layer2.0.relu2; a wrong name's error lists "
                   "them).")
@click.option("--seed", type=int, default=0, show_default=True, help="Mixed into every model's seed.")
@click.option("--chunk", type=click.IntRange(min=1), default=64, show_default=True,
              help="Most models (or pairs) computed at once: lower it to bound memory for large networks "
                   "(the values do not change).")
@click.option("--force", is_flag=True, help="Recompute models whose values are already stored.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Directory for figures (the subspace spectrum; default: next to the zoo).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def analyze(zoo: str, metrics: str, where: str | None, checkpoint: str | None, align: bool,
            batches: int, batch_size: int, cka_layer: str | None, seed: int, chunk: int, force: bool,
            out: str | None, quiet: bool) -> None:
    """Compute loss-landscape metrics of ZOO's models and store them with the zoo.

    \b
      zoo analyze ZOO --metrics hessian,cka
      zoo analyze ZOO --metrics connectivity --align --where "width >= 32"
      zoo query ZOO "SELECT width, batch_size, avg(hessian_trace_train) FROM models GROUP BY ALL"

    Each metric goes to the sidecar table analysis/<metric>.parquet (listed in zoo.json,
    joined into `zoo query`'s models table). By default each run's last checkpoint is analyzed;
    models already analyzed are skipped. Pairwise metrics (cka, connectivity, averaging) compare
    runs that differ only in their seed.
    """
    from weightspace.analysis.run import analyze_zoo

    layer = int(cka_layer) if cka_layer is not None and cka_layer.strip().isdigit() else cka_layer
    result = analyze_zoo(zoo, metrics, where=where, checkpoint=checkpoint, out=out, force=force,
                         progress=not quiet, align=align, batches=batches, batch_size=batch_size,
                         seed=seed, cka_layer=layer, chunk=chunk)
    which = {None: "each run's last checkpoint", "last": "each run's last checkpoint",
             "all": "every checkpoint"}.get(checkpoint, f"checkpoint {checkpoint}")
    click.echo(f"{result.zoo}: {result.rows} models ({which}, status ok)"
               + (f"; {result.excluded} other matching rows (other checkpoints or not ok) left out"
                  if result.excluded else ""))
    click.echo(f"{'metric':<14}{'computed':>9}{'skipped':>9}{'seconds':>9}  table")
    for r in result.reports:
        click.echo(f"{r.metric:<14}{r.computed:>9}{r.skipped:>9}{r.seconds:>9.1f}  {r.sidecar}")
    summary = result.summary()
    width = max(len(s["column"]) for s in summary)
    click.echo(f"{'column':<{width}}{'models':>8}{'min':>11}{'mean':>11}{'max':>11}")
    for s in summary:
        click.echo(f"{s['column']:<{width}}{s['rows']:>8}{_num(s['min']):>11}{_num(s['mean']):>11}"
                   f"{_num(s['max']):>11}")
    for f in result.figures:
        click.echo(f"figure: {f}")
    for r in result.reports:
        for note in r.left_out:
            click.echo(f"{r.metric}: left out {note}")


@click.command()
@click.argument("zoo", type=click.Path())
@click.option("--x", "x", required=True, help="Horizontal axis column, e.g. width.")
@click.option("--y", "y", default=None,
              help="Heatmap: vertical axis column (e.g. batch_size); line/scatter: one line or "
                   "colour per value.")
@click.option("--metric", required=True, help="Plotted column, e.g. hessian_trace_train or test_acc.")
@click.option("--kind", type=click.Choice(PLOT_KIND_NAMES), default="heatmap", show_default=True)
@click.option("--agg", default="mean", show_default=True,
              help=f"Aggregation over the rows of a cell or point: {', '.join(AGGREGATION_NAMES)}.")
@click.option("--log", is_flag=True,
              help="Plot log10 of the plotted aggregate (e.g. log10 of a cell's mean, not the mean of "
                   "log10 values); a scatter plot: log10 of each row's value.")
@click.option("--where", default=None, help="SQL condition selecting the rows.")
@click.option("--checkpoint", default=None,
              help="Rows at this epoch, or 'all' (default: each run's last checkpoint; every "
                   "checkpoint when --x or --y is checkpoint).")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Figure to write (.png).")
def plot(zoo: str, x: str, y: str | None, metric: str, kind: str, agg: str, log: bool,
         where: str | None, checkpoint: str | None, out: str) -> None:
    """Plot a column of ZOO (metadata or analysis) as a phase heatmap, lines or points.

    \b
      zoo plot ZOO --x width --y batch_size --metric hessian_trace_train --log --out trace.png
      zoo plot ZOO --kind line --x checkpoint --y lr --metric test_acc --out acc.png
    """
    from weightspace.analysis.run import plot_summary, plot_zoo

    res = plot_zoo(zoo, x, y, metric, out=out, kind=kind, agg=agg, log=log, where=where,
                   checkpoint=checkpoint)
    for line in plot_summary(res, kind, x, y, metric, agg=agg, log=log, out=out):
        click.echo(line)


COMMANDS = [analyze, plot]
