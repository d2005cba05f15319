"""The `zoo` command group.

Each concern registers its commands from its own module (``build_cmds``, ``query_cmds``,
``hub_cmds``, ``train_cmds``). Any :class:`catalog.WeightzooError` raised by a command is printed
as one ``error:`` line, without a traceback, and the process exits with status 1; so is an
operating-system error (``OSError``: a disk full, a folder that is not writable, ...; and
safetensors' error around one), with what to do. Warnings are one ``warning:`` line each.
"""

from __future__ import annotations

import errno
import importlib
import re
import sys
import warnings

import click

from catalog.errors import WeightzooError


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one ``warning:`` line on stderr, without the source location."""
    click.echo(f"warning: {message}", err=True)


#: Each command: the module defining it, imported only when that command runs (``zoo query``
#: then pays for DuckDB and pyarrow, not for torch and the builders, about a second), and the
#: one-line summary ``zoo --help`` lists, so that the listing imports no command module at all.
#: Tests check both against every module's COMMANDS.
COMMAND_INDEX: dict[str, tuple[str, str]] = {
    "analyze": ("analyze_cmds",
        "Compute loss-landscape metrics of ZOO's models and store them with the zoo."),
    "build": ("build_cmds",
        "Build the zoo described by SPEC (a YAML file or a preset name, see `zoo presets`)."),
    "build-hub": ("retrieval_cmds",
        "Build a retrieval hub at OUT: the template's runs trained once per source task."),
    "catalog": ("query_cmds",
        "The local catalog: zoos indexed once, queried together with `zoo query --catalog`."),
    "drop": ("sidecar_cmds",
        "Remove the sidecar table TABLE (GROUP/NAME, such as analysis/cka) from ZOO."),
    "embed": ("retrieval_cmds",
        "Compute one vector per model of ZOO and store them with it."),
    "eval-gen": ("generate_cmds",
        "Accuracy and novelty (max IoU of mispredictions, min L2) of GEN_ZOO's networks vs the training zoo; "
        "for INR zoos PSNR and the max PSNR of their images against the training networks' images."),
    "export": ("import_cmds",
        "Write every model of ZOO in LAYOUT: state-dicts (one .safetensors per model plus metadata.jsonl), "
        "dws-inr or nfn-inr (the INR datasets' folders; `zoo import` reads them back)."),
    "generate": ("generate_cmds",
        "Train a weight generator on ZOO's networks and write N samples as a new zoo."),
    "import": ("import_cmds",
        "Import SOURCE, a folder in LAYOUT, as a zoo at --out."),
    "info": ("query_cmds",
        "Describe ZOO: counts, architectures, columns, size and metric summaries."),
    "plot": ("analyze_cmds",
        "Plot a column of ZOO (metadata or analysis) as a phase heatmap, lines or points."),
    "predict": ("train_cmds",
        "Apply the metanetwork of RUN_DIR (from `zoo train`) to the networks of ZOO."),
    "presets": ("build_cmds",
        "List the built-in build specs (use one as `zoo build NAME`)."),
    "pull": ("hub_cmds",
        "Download the zoo in the Hub dataset repo REPO_ID (ORG/NAME) into a directory."),
    "push": ("hub_cmds",
        "Upload the zoo directory ZOO to the Hub dataset repo REPO_ID (ORG/NAME)."),
    "query": ("query_cmds",
        "Query zoo metadata with SQL; the rows are the table `models`."),
    "search": ("retrieval_cmds",
        "Rank the models of ZOO for a labelled task, best first."),
    "train": ("train_cmds",
        "Train a metanetwork on ZOO's weights to predict the column --target."),
    "train-ranker": ("retrieval_cmds",
        "Train a learned ranker on HUB's (model, task, linear-probe accuracy) triples."),
    "verify": ("query_cmds",
        "Check a zoo against its manifest: file checksums, the Parquet schema, row/shard consistency and "
        "every row's weights."),
}
#: The module defining each command.
COMMAND_MODULES = {name: module for name, (module, _) in COMMAND_INDEX.items()}


#: What to do about an operating-system error, by errno (default: :data:`_OS_FIX_DEFAULT`).
_OS_FIXES = {
    errno.ENOSPC: "free some space (or write elsewhere) and run the command again",
    errno.EDQUOT: "free some space within your quota (or write elsewhere) and run the command again",
    errno.EACCES: "check its permissions (or write elsewhere) and run the command again",
    errno.EPERM: "check its permissions (or write elsewhere) and run the command again",
    errno.EROFS: "the file system is read-only: write elsewhere",
}
_OS_FIX_DEFAULT = "check the path and the disk, then run the command again"
#: How safetensors (Rust) reports the OS error under its SafetensorError: "... (os error 28)", or
#: in older versions 'IoError(Os { code: 28, kind: StorageFull, message: "..." })'.
_WRAPPED_OS_ERROR = re.compile(r"\(os error (\d+)\)|Os \{ code: (\d+)")


def _is_wrapped_os_error(e: BaseException) -> bool:
    """Whether ``e`` is safetensors' ``SafetensorError`` around an OS error (checked by name, so
    that ``zoo --help`` imports no safetensors)."""
    return (type(e).__name__ == "SafetensorError" and type(e).__module__.startswith("safetensors")
            and _WRAPPED_OS_ERROR.search(str(e)) is not None)


def os_error_line(e: BaseException) -> str:
    """One line for an operating-system error (an ``OSError``, or one wrapped by safetensors): what
    failed, on which path, and what to do."""
    if isinstance(e, OSError):
        code = e.errno
        what = e.strerror or str(e)
        paths = [p for p in (e.filename, e.filename2) if p is not None]
        where = f": {' -> '.join(map(str, paths))}" if paths else ""
        text = f"{what}{where}"
    else:
        m = _WRAPPED_OS_ERROR.search(str(e))
        code = int(m.group(1) or m.group(2))
        text = str(e).removeprefix("Error while serializing: ").removeprefix("Error while deserializing: ")
    return f"{text}; {_OS_FIXES.get(code, _OS_FIX_DEFAULT)}"


class ZooGroup(click.Group):
    """A click group that turns user errors into one clear line and a non-zero exit, and
    imports a command's module only when the command is used (:data:`COMMAND_MODULES`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``zoo --help`` as click writes it, from :data:`COMMAND_INDEX`."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        with formatter.section("Commands"):
            # click shortens a summary to the width as it shortens a command's own help
            formatter.write_dl([(name, click.Command(name, help=COMMAND_INDEX[name][1]).get_short_help_str(limit))
                                for name in names])

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
                # As Python shows them outside __main__: never. Under pytest (which shows them) a
                # library's, e.g. torch.jit.script's when torch_geometric is first imported, became
                # a 'warning:' line in whichever command imported it first.
                warnings.simplefilter("ignore", DeprecationWarning)
                return super().invoke(ctx)
        except WeightzooError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        except OSError as e:
            if e.errno == errno.EPIPE:  # `zoo query ... | head`: click quiets a closed pipe itself
                raise
            click.echo(f"error: {os_error_line(e)}", err=True)
            sys.exit(1)
        except Exception as e:
            if not _is_wrapped_os_error(e):
                raise  # a programming error: its traceback stays visible
            click.echo(f"error: {os_error_line(e)}", err=True)
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
