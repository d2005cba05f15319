"""`zoo push` and `zoo pull`: thin wrappers over :mod:`hub`."""

from __future__ import annotations

import click


@click.command()
@click.argument("zoo", type=click.Path(file_okay=False))
@click.argument("repo_id")
@click.option("--revision", default=None, metavar="BRANCH",
              help="Branch to push to (created from the default branch if missing; default: main).")
@click.option("--private", is_flag=True, help="Create the dataset repo private.")
@click.option("--message", "-m", default=None, help="Commit message.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def push(zoo: str, repo_id: str, revision: str | None, private: bool, message: str | None,
         quiet: bool) -> None:
    """Upload the zoo directory ZOO to the Hub dataset repo REPO_ID (ORG/NAME).

    \b
      zoo push zoos/digits-mlp my-org/digits-mlp
      zoo push zoos/digits-mlp my-org/digits-mlp --revision v2 --message "more seeds"

    The repo is created if needed and gets the zoo's layout plus a dataset card, so
    `datasets.load_dataset("my-org/digits-mlp")` reads the metadata rows. Pushing an unchanged
    zoo again uploads nothing. The token comes from HF_TOKEN or `hf auth login`.
    """
    from hub import push_zoo

    result = push_zoo(zoo, repo_id, revision=revision, private=private, message=message,
                      progress=not quiet)
    where = f"{repo_id}@{result.revision}"
    if result.changed:
        click.echo(f"pushed {zoo} to {where}: commit {result.commit[:12]} {result.commit_url}")
    else:
        click.echo(f"{where} already holds this zoo (commit {result.commit[:12]}); nothing uploaded")
    if result.created_repo or result.created_branch:
        click.echo(f"created {'the repo' if result.created_repo else 'branch ' + result.revision}: "
                   f"{result.repo_url}")


@click.command()
@click.argument("repo_id")
@click.option("--revision", default=None, metavar="REV",
              help="Branch, tag or commit sha (default: main).")
@click.option("--where", default=None, metavar="EXPR",
              help="SQL condition on the models table, e.g. \"lr = 0.01 AND checkpoint = 6\"; "
                   "downloads only the matching rows and the weight shards that hold them.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Directory to create, or an empty one ('.' and links to one too; default: ./NAME).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def pull(repo_id: str, revision: str | None, where: str | None, out: str | None,
         quiet: bool) -> None:
    """Download the zoo in the Hub dataset repo REPO_ID (ORG/NAME) into a directory.

    \b
      zoo pull my-org/digits-mlp --out digits
      zoo pull my-org/digits-mlp --where "test_acc > 0.9 AND checkpoint = 6" --out best
      zoo pull my-org/digits-mlp --revision 3f2a9c... --out exact

    Every file is checked against the zoo's manifest; a zoo that does not match is refused and
    nothing is written. The pulled zoo records the resolved commit in zoo.json ("source").
    """
    from hub import pull_zoo

    r = pull_zoo(repo_id, out, revision=revision, where=where, progress=not quiet)
    part = "" if r.where is None else f" (--where matched {r.rows} of {r.rows_total} rows)"
    click.echo(f"pulled {repo_id}@{r.revision} (commit {r.commit[:12]}) into {r.path}: "
               f"{r.rows} rows, {r.shards} of {r.shards_total} weight shards{part}")
    click.echo(f"reproduce with: {r.reproduce_command()}")


COMMANDS = [push, pull]
