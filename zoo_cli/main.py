"""The `zoo` command group.

Each concern registers its commands from its own module (``build_cmds``, ``query_cmds``,
``hub_cmds``, ``train_cmds``). Any :class:`catalog.WeightzooError` raised by a command is printed
as one ``error:`` line, without a traceback, and the process exits with status 1; warnings are
one ``warning:`` line each.
"""

from __future__ import annotations

import importlib
import sys
import warnings

import click

from catalog.errors import WeightzooError


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one ``warning:`` line on stderr, without the source location."""
    click.echo(f"warning: {message}", err=True)


#: The module defining each command. A command's module is imported when that command runs
#: (``--help`` imports them all): ``zoo query`` then pays for DuckDB and pyarrow, not for
#: torch and the builders (about a second). A test checks this against every module's COMMANDS.
COMMAND_MODULES = {
    "build": "build_cmds", "presets": "build_cmds",
    "query": "query_cmds", "verify": "query_cmds", "info": "query_cmds", "catalog": "query_cmds",
    "train": "train_cmds", "predict": "train_cmds",
    "push": "hub_cmds", "pull": "hub_cmds",
    "analyze": "analyze_cmds", "plot": "analyze_cmds",
    "embed": "retrieval_cmds", "search": "retrieval_cmds", "build-hub": "retrieval_cmds",
    "train-ranker": "retrieval_cmds",
    "import": "import_cmds", "export": "import_cmds",
    "generate": "generate_cmds", "eval-gen": "generate_cmds",
    "drop": "sidecar_cmds",
}


class ZooGroup(click.Group):
    """A click group that turns user errors into one clear line and a non-zero exit, and
    imports a command's module only when the command is used (:data:`COMMAND_MODULES`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(name)
        if module is None:
            return None
        commands = importlib.import_module(f"zoo_cli.{module}").COMMANDS
        return next((c for c in commands if c.name == name), None)

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


if __name__ == "__main__":  # pragma: no cover
    cli()
