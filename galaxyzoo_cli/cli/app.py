"""The app, its one error boundary, and what the commands share (options, reporter, output).

The ``galaxyzoo_cli.cli`` package is the only code that imports typer and rich. Each command builds
typed settings and forwards them to one library function. Errors are handled once, by
:class:`_Boundary` around the whole app: a :class:`~galaxyzoo_cli.core.errors.GalaxyZooError`
becomes a one-line message on stderr and its exit code (2 bad input, 1 failed job, 130 interrupted,
143 stopped by SIGTERM, 138 by SIGUSR1), plus one JSON object on stdout with ``--json``; so does an
operating-system error that reached it (:func:`~galaxyzoo_cli.core.errors.os_error`). Heavy
libraries (torch, timm, matplotlib, pandas) are imported inside the commands that need them, so
``--help`` stays fast.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from galaxyzoo_cli._version import __version__
from galaxyzoo_cli.core.errors import GalaxyZooError, os_error
from galaxyzoo_cli.core.files import to_json
from galaxyzoo_cli.core.signals import how_stopped, stop_on_signals

# PyTorch's OpenMP threads spin while they wait; when another process holds a core, that spinning
# made training several times slower here. Passive waiting costs little when the CPU is idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class _Boundary(TyperGroup):
    """The app's one error boundary: every command runs inside :meth:`invoke`."""

    debug = False

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        as_json = "--json" in ctx.args
        try:
            with stop_on_signals():  # SIGTERM and SIGUSR1 stop a job as Ctrl-C does
                return super().invoke(ctx)
        except (GalaxyZooError, OSError) as e:
            # An OSError that no code path translated (a full disk, a read-only folder…) still
            # becomes one line that names its path.
            error = e if isinstance(e, GalaxyZooError) else os_error(e)
            if self.debug or os.environ.get("GALAXYZOO_DEBUG") == "1":
                traceback.print_exc()
            self._fail(str(error), error.exit_code, as_json)
        except KeyboardInterrupt as e:
            how, code = how_stopped(e)
            self._fail(f"{how}.", code, as_json)
        except typer.TyperException as e:  # bad usage, found by the parser: it prints the message
            if as_json:
                message = e.format_message() if hasattr(e, "format_message") else str(e)
                code = getattr(e, "exit_code", 2)
                typer.echo(to_json({"error": message, "exit_code": code}, None))
            raise

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:  # type: ignore[override]
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            params = command.get_params
            command.get_params = lambda ctx: _plain_help(params(ctx))  # type: ignore[method-assign]
        return command

    def get_params(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        return _plain_help(super().get_params(ctx))

    @staticmethod
    def _fail(message: str, code: int, as_json: bool) -> None:
        typer.echo(f"Error: {message}", err=True)
        if as_json:
            typer.echo(to_json({"error": message, "exit_code": code}, None))
        raise typer.Exit(code)


def _plain_help(params: list[Any]) -> list[Any]:
    """No type column where it says nothing: flags take no value (not ``<bool>``), and a
    ``RUN...`` argument names its own kind (not ``<list[Path]>``)."""
    for param in params:
        if getattr(param, "is_flag", False) or (
            param.param_type_name == "argument" and param.nargs != 1
        ):
            param.display_type_rich = lambda ctx: None
    return params


app = typer.Typer(
    name="galaxyzoo",
    cls=_Boundary,
    help="Galaxy Zoo morphology: fetch the Kaggle data, train, evaluate, predict and plot.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# ---------------------------------------------------------------------------------------------
# Options shared by several commands, defined once.
# ---------------------------------------------------------------------------------------------
DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="GALAXYZOO_DATA_DIR",
        help="Folder with the Kaggle layout (images_training_rev1/, training_solutions_rev1.csv, "
        "images_test_rev1/).",
    ),
]
RunsDir = Annotated[
    Path,
    typer.Option(
        "--runs-dir", envvar="GALAXYZOO_RUNS_DIR", help="Folder holding one folder per run."
    ),
]
Device = Annotated[
    str, typer.Option("--device", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")
]
JsonOut = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else there.")
]
Seed = Annotated[int, typer.Option("--seed", help="Random seed.")]
Workers = Annotated[
    int | None, typer.Option("--workers", help="Threads decoding images (default: CPU count, ≤ 8).")
]
Cache = Annotated[
    bool | None,
    typer.Option(
        "--cache/--no-cache",
        help="Keep decoded images in the on-disk cache (default: when it takes up to 4 GB and "
        "fits on the disk; larger inputs are decoded as needed).",
        show_default=False,
    ),
]
Strict = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Stop at a galaxy without a readable image (default: leave it out and name it).",
    ),
]


def option(*names: str, help: str, **kw: Any) -> Any:
    """A Typer option whose choices match whatever the case."""
    return typer.Option(*names, help=help, case_sensitive=False, **kw)


def with_options(
    options: dict[str, Any], defaults: dict[str, Any]
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command taking ``**options`` a keyword parameter per entry of ``options`` (name:
    its ``Annotated`` option), with its value in ``defaults``: generated from a table of
    settings instead of written out in each command that shares them.

    Typer reads a command's options from its signature, so the generated parameters go into the
    signature: after the command's own positional-or-keyword parameters, before its keyword-only
    ones (which ``--help`` lists last)."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own = inspect.signature(command, eval_str=True).parameters.values()
        generated = [
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=defaults[name], annotation=kind
            )
            for name, kind in options.items()
        ]
        command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [p for p in own if p.kind == p.POSITIONAL_OR_KEYWORD]
            + generated
            + [p for p in own if p.kind == p.KEYWORD_ONLY]
        )
        return command

    return decorate


class RichReporter:
    """Progress bars and messages on stderr; bars only when stderr is a terminal."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)

    @contextlib.contextmanager
    def task(self, description: str, total: float | None) -> Iterator[Any]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            disable=not self.console.is_terminal,
        )
        with progress:
            task_id = progress.add_task(description, total=total)

            class _Task:
                def advance(self, n: float = 1) -> None:
                    progress.advance(task_id, n)

            yield _Task()

    def log(self, message: str) -> None:
        self.console.print(message, markup=False)


def emit(result: Any, as_json: bool) -> None:
    """The command's result: its JSON on stdout with --json, else its human summary.

    Under torchrun only rank 0 reports, so stdout holds one result.
    """
    if os.environ.get("RANK", "0") != "0":
        return
    if as_json:
        typer.echo(to_json(result.as_dict()))
    else:
        typer.echo(result.summary())


def _version(value: bool) -> None:
    if value:
        typer.echo(f"galaxyzoo-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", envvar="GALAXYZOO_DEBUG", help="Show tracebacks on errors.")
    ] = False,
) -> None:
    """Galaxy Zoo morphology from the command line."""
    _Boundary.debug = debug


def main() -> None:
    """Console-script entry point."""
    app(prog_name=os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "galaxyzoo")
