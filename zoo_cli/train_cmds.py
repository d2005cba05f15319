"""`zoo train` and `zoo predict`: thin wrappers over :mod:`weightspace.pipeline`."""

from __future__ import annotations

import json
from typing import Any

import click

from catalog.errors import WeightzooError
from catalog.format import parse_json


def _parse_hparams(items: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise WeightzooError(f"--hparam takes KEY=VALUE (e.g. --hparam hidden=32), got {item!r}")
        try:  # JSON if it parses (a number, a list), else the text itself
            out[key] = parse_json(value, f"--hparam {key}", WeightzooError)
        except WeightzooError:
            out[key] = value
    return out


def _parse_fractions(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError as e:
        raise WeightzooError(f"--fractions takes three numbers like 0.8,0.1,0.1, got {text!r}") from e


def _fmt(metrics: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())


class _TrainCommand(click.Command):
    """`zoo train`, whose epilog lists every model's hyperparameters and presets, generated
    from the registry when --help is shown (importing torch only then)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from weightspace.pipeline import hparams_help

        formatter.write_paragraph()
        formatter.write_text("Hyperparameters (--hparam KEY=VALUE, defaults shown) and presets "
                             "(--preset NAME) of each model:")
        with formatter.indentation():
            for line in hparams_help():
                formatter.write_text(line)


class _ModelOption(click.Option):
    """`--model`, whose help lists the registered metanetworks (from the registry when --help is
    shown, importing torch only then), so it never misses one."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        from weightspace.models.registry import metanetworks_help

        self.help = metanetworks_help()
        return super().get_help_record(ctx)


@click.command(cls=_TrainCommand)
@click.argument("zoo", type=click.Path(exists=True, file_okay=False))
@click.option("--target", required=True, help="Metadata column to predict, e.g. test_acc.")
@click.option("--model", "model_name", cls=_ModelOption, required=True,
              help="Metanetwork (the registered names; see --help).")
@click.option("--where", default=None, help="SQL condition selecting the networks, e.g. \"lr < 0.01\".")
@click.option("--include-init", is_flag=True,
              help="Keep checkpoint-0 rows (the initializations); left out by default.")
@click.option("--task", type=click.Choice(["auto", "regression", "classification"]), default="auto",
              show_default=True,
              help="auto: classification for string/boolean columns, regression for numbers "
                   "(use classification for integer labels such as an INR's digit).")
@click.option("--epochs", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--weight-decay", type=float, default=0.0, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--patience", type=click.IntRange(min=0), default=10, show_default=True,
              help="Early stopping: stop after N epochs without a better validation loss "
                   "(0: off, every epoch runs). The best epoch's weights are kept.")
@click.option("--min-epochs", type=click.IntRange(min=0), default=5, show_default=True,
              help="Never stop early before this epoch.")
@click.option("--augment", is_flag=True,
              help="Random hidden-neuron permutations (and sign flips where the activation is odd).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the split and the training.")
@click.option("--fractions", default="0.8,0.1,0.1", show_default=True,
              help="train,val,test shares of the training runs (split by run_id).")
@click.option("--preset", default=None, metavar="NAME",
              help="Named hyperparameters of the model (listed below); --hparam overrides them.")
@click.option("--hparam", "hparams", multiple=True, metavar="KEY=VALUE",
              help="Metanetwork hyperparameter, repeatable (e.g. --hparam hidden=32); the valid "
                   "keys of each model are listed below.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Torch threads. 1 by default: the metanetworks are small, and on a shared "
                   "2-core machine torch's default (a thread per core) was 7x slower under "
                   "contention in our builds. Raise it on an idle machine with many cores.")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None,
              help="Run directory (default: runs/<zoo>-<target>-<model>).")
@click.option("--json", "as_json", is_flag=True, help="Print the test metrics as one JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar, no summary of the rows.")
def train(zoo: str, target: str, model_name: str, where: str | None, include_init: bool, task: str,
          epochs: int, lr: float, weight_decay: float, batch_size: int, patience: int,
          min_epochs: int, augment: bool, seed: int, fractions: str, preset: str | None,
          hparams: tuple[str, ...], threads: int, out: str | None, as_json: bool,
          quiet: bool) -> None:
    """Train a metanetwork on ZOO's weights to predict the column --target.

    Networks are split into train/val/test by run_id (no run in two splits); checkpoint 0 is
    left out unless --include-init, and the rows per checkpoint are printed to stderr. Weights
    are normalized with the zoo's stored training statistics (pooled per tensor, which keeps the
    permutation symmetry). The run directory gets metanetwork.safetensors, config.json (model,
    hyperparameters, training settings, what it was trained on), metrics.json and history.json.
    """
    from weightspace.pipeline import train_on_zoo

    result = train_on_zoo(
        zoo, target, model_name, where=where, include_init=include_init, task=task, epochs=epochs,
        lr=lr, weight_decay=weight_decay, batch_size=batch_size, augment=augment,
        patience=patience, min_epochs=min_epochs, seed=seed,
        fractions=_parse_fractions(fractions), preset=preset, hparams=_parse_hparams(hparams),
        out=out, threads=threads, progress=not quiet,
        log=None if quiet else (lambda message: click.echo(message, err=True)))
    if as_json:
        click.echo(json.dumps(result.test))
        return
    click.echo(f"test: {_fmt(result.test) if result.test else 'no test networks'}")
    click.echo(f"best epoch {result.metrics['best_epoch']} of {result.metrics['epochs_run']}; "
               f"run saved to {result.run_dir}")


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("zoo", type=click.Path(exists=True, file_okay=False))
@click.option("--where", default=None, help="SQL condition selecting the networks.")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Predictions file, .parquet, .csv or .json (default: RUN_DIR/predictions-<zoo>.parquet).")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON summary (rows, output path, metrics when ZOO has the target).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def predict(run_dir: str, zoo: str, where: str | None, out: str | None, batch_size: int,
            as_json: bool, quiet: bool) -> None:
    """Apply the metanetwork of RUN_DIR (from `zoo train`) to the networks of ZOO.

    ZOO's architectures must be ones the model reads ('gmn', 'statnn-kinds': any;
    'statnn'/'mlp': the same parameter shapes; 'dws'/'nfn': the training architecture).
    Writes one row per network, model_id and the prediction (Parquet, or CSV/JSON by --out's
    extension). If ZOO has the target column, the metrics against it are
    printed as well; on the zoo the model was trained on they are reported per split
    (train/val/test, recomputed from the run's config) and the file gets a `split` column. On
    another zoo, networks the model was trained or validated on (same sha256) are marked
    train/val in that column and left out of the metrics, which are over the 'unseen' rows.
    """
    from weightspace.pipeline import predict_on_zoo

    r = predict_on_zoo(run_dir, zoo, where=where, out=out, batch_size=batch_size,
                       progress=not quiet)
    if as_json:
        click.echo(json.dumps({"rows": r.rows, "predictions": str(r.predictions), "target": r.target,
                               "metrics": r.metrics, "training_zoo": r.training_zoo,
                               "split_metrics": r.split_metrics, "note": r.note}))
        return
    click.echo(f"{r.rows} predictions of {r.target!r} written to {r.predictions}")
    if r.note:
        click.echo(f"note: {r.note}", err=True)
    if r.split_metrics is not None:
        for split, m in r.split_metrics.items():
            click.echo(f"{split} ({r.rows_per_split[split]} rows): {_fmt(m)}")
    elif r.metrics:
        click.echo(f"against the zoo's {r.target}: {_fmt(r.metrics)}")


COMMANDS = [train, predict]
