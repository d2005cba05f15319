"""`zoo drop`: remove a sidecar table (analysis metrics, embeddings) from a zoo."""

from __future__ import annotations

import click


@click.command()
@click.argument("zoo", type=click.Path(file_okay=False, exists=True))
@click.argument("table")
def drop(zoo: str, table: str) -> None:
    """Remove the sidecar table TABLE (GROUP/NAME, such as analysis/cka) from ZOO.

    \b
      zoo drop zoos/digits-mlp analysis/connectivity
      zoo drop zoos/digits-mlp embeddings/behavior

    Its columns leave the models table; `zoo analyze` or `zoo embed` writes it again.
    """
    from catalog.sidecar import delete_sidecar

    entry = delete_sidecar(zoo, table, command="zoo drop")
    click.echo(f"dropped {entry.path} ({entry.rows} rows) from {zoo}")


COMMANDS = [drop]
