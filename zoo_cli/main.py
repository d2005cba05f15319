"""The `zoo` command group.

Each concern registers its commands from its own module (``build_cmds``, ``query_cmds``,
``hub_cmds``, ``train_cmds``). Any :class:`catalog.WeightzooError` raised by a command is printed
as one ``error:`` line, without a traceback, and the process exits with status 1; warnings are
one ``warning:`` line each.
"""

from __future__ import annotations

import sys
import warnings

import click

from catalog.errors import WeightzooError


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one ``warning:`` line on stderr, without the source location."""
    click.echo(f"warning: {message}", err=True)


class ZooGroup(click.Group):
    """A click group that turns user errors into one clear line and a non-zero exit."""

    def invoke(self, ctx: click.Context):
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                return super().invoke(ctx)
        except WeightzooError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted; run the same command again to resume", err=True)
            sys.exit(130)


@click.group(cls=ZooGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="weightzoo")
def cli() -> None:
    """weightzoo: build, query, share and learn on model zoos."""


def _register() -> None:
    from zoo_cli import (
        analyze_cmds,
        build_cmds,
        generate_cmds,
        hub_cmds,
        import_cmds,
        query_cmds,
        retrieval_cmds,
        sidecar_cmds,
        train_cmds,
    )

    for module in (build_cmds, query_cmds, train_cmds, hub_cmds, analyze_cmds, retrieval_cmds, import_cmds,
                   generate_cmds, sidecar_cmds):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()

if __name__ == "__main__":  # pragma: no cover
    cli()
