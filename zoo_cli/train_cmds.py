"""`zoo train` and `zoo predict`: metanetworks trained on a zoo's weights."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import click

from catalog.errors import WeightzooError


def _parse_hparams(items: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise WeightzooError(f"--hparam takes KEY=VALUE (e.g. --hparam hidden=32), got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _parse_fractions(text: str) -> tuple[float, float, float]:
    from catalog.split import check_fractions

    try:
        values = [float(x) for x in text.split(",")]
    except ValueError as e:
        raise WeightzooError(f"--fractions takes three numbers like 0.8,0.1,0.1, got {text!r}") from e
    return check_fractions(values)


def _fmt(metrics: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())


@click.command()
@click.argument("zoo", type=click.Path(exists=True, file_okay=False))
@click.option("--target", required=True, help="Metadata column to predict, e.g. test_acc.")
@click.option("--model", "model_name", required=True,
              help="Metanetwork: statnn, mlp, dws, nfn or gmn.")
@click.option("--where", default=None, help="SQL condition selecting the networks, e.g. \"checkpoint > 0\".")
@click.option("--task", type=click.Choice(["auto", "regression", "classification"]), default="auto",
              show_default=True,
              help="auto: classification for string/boolean columns, regression for numbers "
                   "(use classification for integer labels such as an INR's digit).")
@click.option("--epochs", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--weight-decay", type=float, default=0.0, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--patience", type=click.IntRange(min=1), default=10, show_default=True,
              help="Early stopping: epochs without a better validation loss.")
@click.option("--augment", is_flag=True,
              help="Random hidden-neuron permutations (and sign flips where the activation is odd).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the split and the training.")
@click.option("--fractions", default="0.8,0.1,0.1", show_default=True,
              help="train,val,test shares of the training runs (split by run_id).")
@click.option("--hparam", "hparams", multiple=True, metavar="KEY=VALUE",
              help="Metanetwork hyperparameter, repeatable (e.g. --hparam hidden=32).")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None,
              help="Run directory (default: runs/<zoo>-<target>-<model>).")
@click.option("--json", "as_json", is_flag=True, help="Print the test metrics as one JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def train(zoo: str, target: str, model_name: str, where: str | None, task: str, epochs: int,
          lr: float, weight_decay: float, batch_size: int, patience: int, augment: bool, seed: int,
          fractions: str, hparams: tuple[str, ...], out: str | None, as_json: bool, quiet: bool) -> None:
    """Train a metanetwork on ZOO's weights to predict the column --target.

    Networks are split into train/val/test by run_id (no run in two splits); weights are
    normalized with the zoo's stored training statistics (pooled per tensor, which keeps the
    permutation symmetry). The run directory gets the metanetwork's weights (safetensors), its
    config (JSON) and the test metrics (JSON).
    """
    from catalog import open_zoo
    from catalog.dataset import WeightDataset
    from weightspace.models.registry import get_metanetwork
    from weightspace.train import evaluate, fit

    get_metanetwork(model_name)  # fail fast, listing the valid names
    hp = _parse_hparams(hparams)
    fr = _parse_fractions(fractions)
    z = open_zoo(zoo)
    if target not in z.table.column_names:
        raise WeightzooError(
            f"zoo {z.name!r} has no column {target!r}; columns: {', '.join(z.table.column_names)}")
    selection = z.select(where=where)
    splits = {s: WeightDataset(selection, [target], s, fractions=fr, seed=seed)
              for s in ("train", "val", "test")}
    if task == "auto":
        task = "classification" if splits["train"].classes else "regression"
    info = {"zoo": str(Path(zoo).resolve()), "zoo_name": z.name, "where": where,
            "fractions": list(fr), "split_seed": seed,
            "rows": {s: len(d) for s, d in splits.items()}}
    if not quiet and not as_json:
        click.echo(f"{model_name} on {z.name}: predict {target!r} ({task}); "
                   f"networks train/val/test = {len(splits['train'])}/{len(splits['val'])}/"
                   f"{len(splits['test'])}", err=True)
    model, history = fit(model_name, splits["train"], splits["val"] if len(splits["val"]) else None,
                         task=task, epochs=epochs, lr=lr, weight_decay=weight_decay,
                         batch_size=batch_size, augment=augment, patience=patience, seed=seed,
                         progress=not quiet, hparams=hp, data_info=info)
    test = evaluate(model, splits["test"])
    metrics = {"test": test,
               "val": evaluate(model, splits["val"]) if len(splits["val"]) else None,
               "best_epoch": model.training["best_epoch"], "epochs_run": model.training["epochs_run"]}
    run_dir = Path(out) if out else Path("runs") / f"{z.name}-{target}-{model_name}"
    model.save(run_dir, metrics=metrics, history=history)
    if as_json:
        click.echo(json.dumps(test))
        return
    click.echo(f"test: {_fmt(test)}")
    click.echo(f"best epoch {model.training['best_epoch']} of {model.training['epochs_run']}; "
               f"run saved to {run_dir}")


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("zoo", type=click.Path(exists=True, file_okay=False))
@click.option("--where", default=None, help="SQL condition selecting the networks.")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Parquet file of predictions (default: RUN_DIR/predictions-<zoo>.parquet).")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON summary (rows, output path, metrics when ZOO has the target).")
def predict(run_dir: str, zoo: str, where: str | None, out: str | None, as_json: bool) -> None:
    """Apply the metanetwork of RUN_DIR (from `zoo train`) to the networks of ZOO.

    ZOO must hold the same architecture family; 'gmn' also reads other widths and depths.
    Writes one row per network: model_id and the prediction. If ZOO has the target column,
    the metrics against it are printed as well.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from catalog import open_zoo
    from weightspace.metrics import classification_metrics, regression_metrics
    from weightspace.trained import TrainedMetanetwork

    model = TrainedMetanetwork.load(run_dir)
    z = open_zoo(zoo)
    selection = z.select(where=where)
    if len(selection) == 0:
        raise WeightzooError("no networks selected; widen --where")
    target = model.targets[0]
    ids: list[str] = []
    preds: list[torch.Tensor] = []
    truths: list[Any] = []
    has_target = target in z.table.column_names
    for arch_id, sel in selection.by_arch().items():
        spec = z.network_spec(arch_id)
        preds.append(model.predict(sel.stacked(), spec))
        ids += sel.column("model_id")
        if has_target:
            truths += sel.column(target)
    pred = torch.cat(preds)
    column = f"pred_{target}"
    if model.task == "classification":
        labels = [model.classes[i] for i in pred.tolist()]
        table = pa.table({"model_id": ids, column: labels})
    else:
        table = pa.table({"model_id": ids, column: pred[:, 0].double().numpy()})
    path = Path(out) if out else Path(run_dir) / f"predictions-{z.name}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    metrics = None
    if has_target and None not in truths:
        if model.task == "classification":
            lookup = {str(c): i for i, c in enumerate(model.classes)}
            y = torch.tensor([lookup.get(str(v), -1) for v in truths])
            metrics = classification_metrics(pred, y)
        else:
            metrics = regression_metrics(pred[:, 0], torch.tensor(truths, dtype=torch.float64))
    summary = {"rows": len(ids), "predictions": str(path), "target": target, "metrics": metrics}
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"{len(ids)} predictions of {target!r} written to {path}")
    if metrics:
        click.echo(f"against {z.name}'s {target}: {_fmt(metrics)}")


COMMANDS = [train, predict]
