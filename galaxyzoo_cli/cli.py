"""The command line: thin Typer commands over the library, and the one error boundary.

This is the only module that imports typer and rich. Each command forwards its options to one library
function; :class:`~galaxyzoo_cli.errors.GalaxyZooError` is caught once in :func:`_run` and becomes a
one-line message on stderr and an exit code (2 bad input, 1 failed job). Heavy libraries (torch,
timm, matplotlib, pandas) are imported inside the library functions, so ``--help`` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from galaxyzoo_cli import __version__
from galaxyzoo_cli.errors import BadInputError, GalaxyZooError

app = typer.Typer(
    name="galaxyzoo",
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
    typer.Option("--runs-dir", envvar="GALAXYZOO_RUNS_DIR", help="Folder holding one folder per run."),
]
Device = Annotated[
    str, typer.Option("--device", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")
]
JsonOut = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else there.")
]
Seed = Annotated[int, typer.Option("--seed", help="Random seed.")]

_debug = False
T = TypeVar("T")


class _RichReporter:
    """Progress bars and messages on stderr; bars only when stderr is a terminal."""

    def __init__(self, quiet: bool = False) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self.quiet = quiet

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
        if not self.quiet:
            self.console.print(message, markup=False)


def _run(fn: Callable[..., T], /, **kwargs: Any) -> T:
    """Call a library function; turn its errors into a one-line message and an exit code."""
    try:
        return fn(**kwargs)
    except GalaxyZooError as e:
        if _debug:
            traceback.print_exc()
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        raise typer.Exit(130) from None


def _emit(obj: dict[str, Any], as_json: bool, human: str) -> None:
    """The command's result: JSON on stdout with --json, else the human summary."""
    if as_json:
        typer.echo(json.dumps(obj, indent=2, default=str))
    else:
        typer.echo(human)


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
    global _debug
    _debug = debug


# ---------------------------------------------------------------------------------------------
# fetch
# ---------------------------------------------------------------------------------------------
@app.command()
def fetch(
    data_dir: DataDir = Path("data"),
    force: Annotated[bool, typer.Option("--force", help="Start over: replace what is there.")] = False,
    synthetic: Annotated[
        int | None,
        typer.Option(
            "--synthetic",
            metavar="N",
            help="Offline: write N labelled synthetic galaxies instead of downloading.",
        ),
    ] = None,
    test_images: Annotated[
        int,
        typer.Option("--test-images", metavar="M", help="With --synthetic: M unlabelled test images."),
    ] = 0,
    seed: Seed = 0,
    keep_archives: Annotated[
        bool, typer.Option("--keep-archives", help="Keep the downloaded zip files.")
    ] = False,
    as_json: JsonOut = False,
) -> None:
    """Download the Kaggle competition data (or write synthetic galaxies with --synthetic N)."""
    reporter = _RichReporter(quiet=as_json)
    if synthetic is not None:
        from galaxyzoo_cli.synthetic import generate

        result = _run(
            generate,
            data_dir=data_dir,
            n_train=synthetic,
            n_test=test_images,
            seed=seed,
            force=force,
            reporter=reporter,
        )
    else:
        if test_images:
            _run(_fail_usage, message="--test-images only goes with --synthetic N.")
        from galaxyzoo_cli.fetch import fetch_kaggle

        result = _run(
            fetch_kaggle,
            data_dir=data_dir,
            force=force,
            keep_archives=keep_archives,
            reporter=reporter,
        )
    _emit(result.as_dict(), as_json, result.summary())


def _fail_usage(message: str) -> None:
    raise BadInputError(message)


def main() -> None:
    """Console-script entry point."""
    app(prog_name=os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "galaxyzoo")
