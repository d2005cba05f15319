"""`zoo embed`, `zoo search`, `zoo build-hub` and `zoo train-ranker`: thin wrappers over
:mod:`retrieval`."""

from __future__ import annotations

import json
import sys

import click


def _split(text: str | None) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()] if text else []


@click.command()
@click.argument("zoo", type=click.Path(file_okay=False))
@click.option("--method", required=True, metavar="NAME",
              help="behavior (outputs on probe inputs), statnn (standardized per-tensor weight "
                   "statistics) or weights (a trained metanetwork's invariant trunk; needs --run).")
@click.option("--where", default=None, metavar="EXPR",
              help="SQL condition selecting the models to embed, e.g. \"checkpoint = 16\".")
@click.option("--probe", default=None, metavar="TASK",
              help="behavior: the dataset whose training inputs are the probes, as a task spec "
                   "(e.g. digits; default: the zoo's own dataset).")
@click.option("--n-probes", type=int, default=None, metavar="N",
              help="behavior: number of probe inputs (default 256, or the stored number).")
@click.option("--seed", type=int, default=None, help="behavior: seed of the probe draw (default 0).")
@click.option("--run", "run_dir", type=click.Path(file_okay=False), default=None,
              help="weights: the `zoo train` run directory of the metanetwork.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def embed(zoo: str, method: str, where: str | None, probe: str | None, n_probes: int | None,
          seed: int | None, run_dir: str | None, as_json: bool, quiet: bool) -> None:
    """Compute one vector per model of ZOO and store them with it.

    \b
      zoo embed zoos/hub --method behavior --n-probes 32
      zoo embed zoos/hub --method statnn --where "checkpoint = 16"
      zoo embed zoos/hub --method weights --run runs/gmn-test-acc

    The vectors go to the sidecar table embeddings/METHOD.parquet (model_id and a FLOAT[d]
    column emb_METHOD), listed in zoo.json with its sha256: zoo verify checks it, zoo push and
    zoo pull carry it, and zoo query sees emb_METHOD in `models`. Running again embeds only the
    models without a vector (the options must match the stored ones).
    """
    from retrieval import embed_zoo

    r = embed_zoo(zoo, method, where=where, probe=probe, n_probes=n_probes, seed=seed,
                  run=run_dir, progress=not quiet and sys.stderr.isatty())
    if as_json:
        click.echo(json.dumps({"method": r.method, "path": r.path, "column": r.column, "dim": r.dim,
                               "embedded": r.embedded, "skipped": r.skipped, "diverged": r.diverged, "config": {
                                   k: v for k, v in r.config.items() if k not in ("center", "scale")}}))
        return
    done = f" ({r.skipped} already embedded, skipped)" if r.skipped else ""
    click.echo(f"embedded {r.embedded} models with {r.method}{done}: {r.dim}-dim vectors in "
               f"column {r.column} of {zoo}/{r.path}")
    if r.diverged:
        click.echo(f"warning: {r.diverged} diverged model(s) (non-finite weights or outputs) left out", err=True)


@click.command()
@click.argument("zoo", type=click.Path(file_okay=False))
@click.option("--task", required=True, metavar="SPEC",
              help="The task: a dataset spec NAME[:OPTION=VALUE]..., e.g. digits, "
                   "\"digits:classes=0,1,2\", \"npz:path=my.npz\" or my.npz.")
@click.option("--method", default="logme", show_default=True, metavar="NAME",
              help="logme, hscore, leep, nce (estimators), behavior (embedding similarity; "
                   "needs zoo embed --method behavior) or ranker (needs --ranker).")
@click.option("--k", "k", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many models to show.")
@click.option("--where", default=None, metavar="EXPR", help="SQL condition selecting the candidates.")
@click.option("--columns", default=None, help="Comma-separated metadata columns to show, e.g. test_acc,lr.")
@click.option("--ranker", "ranker_dir", type=click.Path(file_okay=False), default=None,
              help="ranker: the directory of a trained ranker (zoo train-ranker).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="Only the ranked table (no header line; warnings still on stderr).")
def search(zoo: str, task: str, method: str, k: int, where: str | None, columns: str | None,
           ranker_dir: str | None, as_json: bool, quiet: bool) -> None:
    """Rank the models of ZOO for a labelled task, best first.

    \b
      zoo search zoos/hub --task "digits:classes=3,5,8" --k 5 --columns source_task,test_acc
      zoo search zoos/hub --task digits --method behavior --json
      zoo search zoos/hub --task my_data.npz --method ranker --ranker rankers/hub

    Task syntax: NAME[:OPTION=VALUE]..., where NAME is a registered dataset (digits, mnist1d,
    mnist5k, moons, blobs, npz) and the options are its config (test_fraction, split_seed,
    path, n_samples, noise, n_classes, n_features) plus classes=I,J,... (only those classes'
    examples, labels unchanged). Scores are the method's: higher is better.
    """
    from catalog.export import render_table
    from retrieval import search_zoo

    if method == "ranker" and ranker_dir is None:
        from catalog.errors import WeightzooError

        raise WeightzooError("--method ranker needs --ranker DIR, a trained ranker's directory "
                             "(zoo train-ranker)")
    r = search_zoo(zoo, task, method=method, k=k, where=where, columns=_split(columns),
                   ranker=ranker_dir)
    if as_json:
        click.echo(json.dumps(r.to_dict(), default=str))
        return
    if not quiet:
        click.echo(f"task {r.task}: top {r.table.num_rows} of {r.candidates} models by {r.method} "
                   f"({r.seconds * 1000:.0f} ms)")
    if r.missing:
        click.echo(f"warning: {r.missing} candidate model(s) have no {r.method} embedding and were "
                   f"left out; run zoo embed {zoo} --method behavior", err=True)
    for note in r.notes:
        click.echo(f"warning: {note}", err=True)
    click.echo(render_table(r.table), nl=False)


@click.command("build-hub")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--template", default="retrieval-hub", show_default=True,
              help="The build spec every source task's models follow (preset name or YAML).")
@click.option("--source-task", "source_tasks", multiple=True, metavar="SPEC",
              help="A source task (repeat; default: the retrieval module's class subsets of digits).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def build_hub_cmd(out: str, template: str, source_tasks: tuple[str, ...], quiet: bool) -> None:
    """Build a retrieval hub at OUT: the template's runs trained once per source task.

    \b
      zoo build-hub zoos/hub
      zoo build-hub zoos/hub2 --source-task "digits:classes=0,1" --source-task digits

    Every row records its source_task. Running it again resumes.
    """
    from retrieval.hub import SOURCE_TASKS, build_hub

    r = build_hub(out, template, list(source_tasks) or SOURCE_TASKS, quiet=quiet)
    click.echo(f"hub {out}: {r.runs} runs on {len(r.source_tasks)} source tasks "
               f"({r.trained} trained now)")


@click.command("train-ranker")
@click.argument("hub", type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory for the ranker.")
@click.option("--task", "tasks", multiple=True, metavar="SPEC",
              help="A training task (repeat; default: the hub's source tasks).")
@click.option("--estimators", default=None, metavar="NAMES",
              help="Estimator scores to use as features, e.g. logme,leep,nce,hscore (default none).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Training epochs (default 150).")
@click.option("--where", default=None, metavar="EXPR", help="SQL condition selecting the hub's models.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def train_ranker_cmd(hub: str, out: str, tasks: tuple[str, ...], estimators: str | None,
                     epochs: int | None, where: str | None, quiet: bool) -> None:
    """Train a learned ranker on HUB's (model, task, linear-probe accuracy) triples.

    \b
      zoo embed zoos/hub --method behavior --n-probes 32
      zoo train-ranker zoos/hub --out rankers/hub --estimators logme,leep,nce,hscore

    HUB needs behaviour embeddings. The ranker is saved as ranker.safetensors + ranker.json;
    use it with zoo search --method ranker --ranker DIR.
    """
    from catalog.zoo import open_zoo
    from retrieval.hub import train_ranker
    from retrieval.ranker import RankerConfig

    z = open_zoo(hub)
    task_list = list(tasks) or list(z.manifest.spec.get("source_tasks") or [])
    if not task_list:
        from catalog.errors import WeightzooError

        raise WeightzooError(f"{hub} records no source tasks; name the training tasks with --task")
    cfg = RankerConfig(estimators=tuple(_split(estimators)),
                       **({"epochs": epochs} if epochs is not None else {}))
    r = train_ranker(z, task_list, cfg, where=where, out=out,
                     progress=not quiet and sys.stderr.isatty())
    click.echo(f"trained a ranker on {len(task_list)} tasks x {r.info['models_per_task'][0]} models "
               f"(final loss {r.info['final_loss']:.4g}); saved to {out}")


COMMANDS = [embed, search, build_hub_cmd, train_ranker_cmd]
