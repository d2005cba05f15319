"""`zoo generate` and `zoo eval-gen`: thin wrappers over :mod:`weightspace.generators`."""

from __future__ import annotations

import click

from catalog.errors import WeightzooError


@click.command()
@click.argument("zoo", type=click.Path())
@click.option("--method", default=None,
              help="Generator: noise, average, gaussian, hyperrep, pdiff, mip (default with --load: the saved one).")
@click.option("--where", default=None,
              help="SQL condition selecting the training networks (one architecture, >= 10, status ok), "
                   "e.g. \"activation = 'relu' AND checkpoint = 20\".")
@click.option("--n", "n", type=click.IntRange(min=1), default=100, show_default=True, help="Networks to generate.")
@click.option("--condition", multiple=True, metavar="COL=VALUE",
              help="Condition value of a conditional method (repeatable), e.g. --condition lr=0.005.")
@click.option("--hparam", multiple=True, metavar="KEY=VALUE",
              help="Generator hyperparameter (repeatable), e.g. --hparam sigma=0.05.")
@click.option("--load", "load", type=click.Path(file_okay=False), default=None,
              help="Sample from the generator saved in this run directory instead of training one.")
@click.option("--save-to", type=click.Path(file_okay=False), default=None,
              help="Save the trained generator to this run directory.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="The generated zoo's directory.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of training and sampling.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def generate(zoo: str, method: str | None, where: str | None, n: int, condition: tuple[str, ...],
             hparam: tuple[str, ...], load: str | None, save_to: str | None, out: str, seed: int,
             quiet: bool) -> None:
    """Train a weight generator on ZOO's networks and write N samples as a new zoo.

    \b
      zoo generate ZOO --method noise --hparam sigma=0.05 --where "checkpoint = 20" --n 100 --out gen
      zoo generate ZOO --method mip --condition lr=0.005 --where "..." --out gen-lr
      zoo eval-gen gen --train ZOO --out gen-eval

    Every sample is evaluated on ZOO's test split (test_acc/test_loss, or mse/psnr for INRs);
    rows carry generator, source_zoo and source_manifest_sha256.
    """
    from weightspace.generators.output import generate_zoo

    result = generate_zoo(zoo, method, where, n, out, condition=list(condition), hparams=list(hparam),
                          load_from=load, save_to=save_to, seed=seed, quiet=quiet)
    for line in result.report_lines():
        click.echo(line)


@click.command("eval-gen")
@click.argument("gen_zoo", type=click.Path())
@click.option("--train", "train", required=True, type=click.Path(), help="The zoo GEN_ZOO was generated from.")
@click.option("--where", default=None,
              help="SQL condition selecting the training networks (default: the one the generator used).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Directory for eval_gen.json and eval_gen.png (default: GEN_ZOO-eval).")
@click.option("--no-baselines", is_flag=True, help="Skip the noise/average/gaussian baselines.")
@click.option("--align", is_flag=True, help="Also the min L2 after weight matching to the nearest training network.")
@click.option("--finetune", is_flag=True,
              help="Also epochs to the training median accuracy, generated vs random init (retrains a few runs).")
@click.option("--finetune-models", type=click.IntRange(min=1), default=4, show_default=True,
              help="Runs retrained per initialization with --finetune.")
@click.option("--finetune-epochs", type=click.IntRange(min=1), default=None,
              help="Epochs each --finetune run trains (default: the source zoo's).")
@click.option("--sigmas", default="0.01,0.05,0.1,0.3", show_default=True,
              help="Comma-separated noise levels of the noise baseline.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the baselines and the alignment.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def eval_gen(gen_zoo: str, train: str, where: str | None, out: str | None, no_baselines: bool, align: bool,
             finetune: bool, finetune_models: int, finetune_epochs: int | None, sigmas: str, seed: int,
             quiet: bool) -> None:
    """Accuracy and novelty (max IoU of mispredictions, min L2) of GEN_ZOO's networks vs the training zoo;
    for INR zoos PSNR and the max PSNR of their images against the training networks' images.

    \b
      zoo eval-gen gen --train zoos/digits-mlp --out gen-eval
    """
    from weightspace.generators.evaluate import evaluate_generated

    try:
        levels = tuple(float(v) for v in sigmas.split(",") if v.strip())
    except ValueError:
        raise WeightzooError(f"--sigmas {sigmas!r} is not a comma-separated list of numbers, e.g. 0.01,0.1") from None
    r = evaluate_generated(gen_zoo, train, where=where, out_dir=out, baselines=not no_baselines, sigmas=levels,
                           align=align, finetune=finetune, finetune_models=finetune_models,
                           finetune_epochs=finetune_epochs, seed=seed,
                           progress=not quiet)
    for line in r.report_lines():
        click.echo(line)


COMMANDS = [generate, eval_gen]
