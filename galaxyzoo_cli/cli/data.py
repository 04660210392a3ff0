"""Commands for data and models: fetch, check, preview, models."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from galaxyzoo_cli.cli.app import DataDir, JsonOut, RichReporter, Seed, Workers, app, emit
from galaxyzoo_cli.cli.results import (
    FitsBands,
    FitsMinimum,
    FitsPercentile,
    FitsQ,
    FitsScale,
    FitsStretch,
)
from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.core.files import to_json


@app.command()
def fetch(
    data_dir: DataDir = Path("data"),
    force: Annotated[
        bool, typer.Option("--force", help="Start over: replace what is there.")
    ] = False,
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
        typer.Option(
            "--test-images", metavar="M", help="With --synthetic: M unlabelled test images."
        ),
    ] = 0,
    seed: Seed = 0,
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="With --synthetic: processes rendering (default: CPUs)."),
    ] = None,
    keep_archives: Annotated[
        bool, typer.Option("--keep-archives", help="Keep the downloaded zip files.")
    ] = False,
    as_json: JsonOut = False,
) -> None:
    """Download the Kaggle competition data (or write synthetic galaxies with --synthetic N)."""
    reporter = RichReporter()
    if synthetic is not None:
        from galaxyzoo_cli.data.synthetic import generate

        result: Any = generate(
            data_dir, synthetic, test_images, seed=seed, force=force, workers=workers,
            reporter=reporter,
        )  # fmt: skip
    else:
        if test_images:
            raise BadInputError("--test-images only goes with --synthetic N.")
        from galaxyzoo_cli.data.fetch import fetch_kaggle

        result = fetch_kaggle(data_dir, force=force, keep_archives=keep_archives, reporter=reporter)
    emit(result, as_json)


@app.command()
def check(
    data_dir: DataDir = Path("data"), workers: Workers = None, as_json: JsonOut = False
) -> None:
    """Validate a data folder: labels CSV, every image decoded, the labels' decision-tree sums.

    Exits 2 when something is wrong (labelled galaxies without images, unreadable images, labels
    that break the tree), after listing what.
    """
    from galaxyzoo_cli.data.catalogue import check_layout

    report = check_layout(data_dir, decode=True, workers=workers, reporter=RichReporter())
    emit(report, as_json)
    if not report.ok:
        raise typer.Exit(2)


@app.command()
def preview(
    data_dir: DataDir = Path("data"),
    n: Annotated[int, typer.Option("-n", "--n", help="Galaxies per row.")] = 5,
    transform: Annotated[
        list[str] | None,
        typer.Option(
            "--transform",
            "-t",
            metavar="SPEC",
            help="One row per spec, e.g. 'gray,crop=256,size=64' (tokens: original, gray, crop=N, "
            "size=N), or 'model': the model's input. Default: the notebook's five rows (with "
            "--images or --run: original and model).",
        ),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            "--images",
            help="Show cutouts from this folder (JPEG, PNG, FITS, as predict reads them) instead "
            "of the data's training images.",
        ),
    ] = None,
    run: Annotated[
        Path | None,
        typer.Option(
            "--run",
            metavar="RUN",
            help="The run whose input the 'model' row shows (default: the default model's).",
        ),
    ] = None,
    fits_bands: FitsBands = "2,1,0",
    fits_scale: FitsScale = "percentile",
    fits_percentile: FitsPercentile = 99.5,
    fits_stretch: FitsStretch = 0.5,
    fits_q: FitsQ = 8.0,
    fits_minimum: FitsMinimum = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")] = Path(
        "preview.png"
    ),
    seed: Seed = 0,
    as_json: JsonOut = False,
) -> None:
    """Write a grid of galaxies: one row per preprocessing transform, as the model sees them."""
    from galaxyzoo_cli.core.settings import FitsOptions, parse_bands
    from galaxyzoo_cli.outputs.preview import preview as make_preview

    fits = FitsOptions(
        bands=parse_bands(fits_bands), scale=fits_scale, percentile=fits_percentile,
        stretch=fits_stretch, q=fits_q, minimum=fits_minimum,
    )  # fmt: skip
    emit(
        make_preview(
            data_dir, n=n, transforms=transform or [], out=out, seed=seed, images=images,
            run=run, fits=fits,
        ),
        as_json,
    )  # fmt: skip


@app.command()
def models(
    pattern: Annotated[str, typer.Argument(help="Shell wildcard, e.g. 'res*'.")] = "*",
    all_models: Annotated[
        bool, typer.Option("--all", help="Also list the tiny models used by tests.")
    ] = False,
    as_json: JsonOut = False,
) -> None:
    """List the model registry: name, kind, parameters, default input."""
    from galaxyzoo_cli.models import describe_models

    rows = describe_models(pattern=pattern, include_test=all_models)
    if as_json and rows:
        typer.echo(to_json({"models": rows}))
        return
    if not rows:
        raise BadInputError(
            f"no model matches {pattern!r}. `galaxyzoo models` lists them all (--all adds the "
            "test models); any timm architecture also works as timm/<name>."
        )
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("name", "kind", "parameters", "input", "description"):
        table.add_column(col, justify="right" if col == "parameters" else "left")
    for r in rows:
        table.add_row(
            r["name"] + (" (default)" if r["default"] else ""),
            r["kind"] + (" (frozen)" if r["frozen_by_default"] else ""),
            f"{r['parameters'] / 1e6:.2f} M",
            r["input"],
            r["description"],
        )
    Console(width=max(120, Console().width)).print(table)
    typer.echo("Any timm architecture also works as timm/<name> (e.g. timm/resnet50).")


cache_app = typer.Typer(
    name="cache",
    help="The decoded-image caches: list them (default) or clear them.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(cache_app)
CacheDataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Only the caches of images in this folder.", show_default=False
    ),
]


@cache_app.callback()
def cache(ctx: typer.Context, data_dir: CacheDataDir = None, as_json: JsonOut = False) -> None:
    """The decoded-image caches: preprocessing, images, size, last used."""
    if ctx.invoked_subcommand is None:
        from galaxyzoo_cli.data.cache import list_caches

        emit(list_caches(data_dir), as_json)


@cache_app.command("list")
def cache_list(data_dir: CacheDataDir = None, as_json: JsonOut = False) -> None:
    """List the caches: preprocessing, images, size, last used."""
    from galaxyzoo_cli.data.cache import list_caches

    emit(list_caches(data_dir), as_json)


@cache_app.command("clear")
def cache_clear(
    data_dir: CacheDataDir = None,
    everything: Annotated[
        bool, typer.Option("--all", help="Every cache in the cache folder, without asking.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOut = False,
) -> None:
    """Remove the caches of --data-dir's images (or all, after asking); rebuilt when needed."""
    from galaxyzoo_cli.data.cache import clear_caches, list_caches

    if data_dir is None and not (everything or yes):
        listed = list_caches()
        what = f"all {listed.describe()}"
        if not listed.entries:
            pass  # nothing to lose
        elif _interactive():
            typer.confirm(f"Remove {what}?", abort=True, err=True)
        else:
            raise BadInputError(
                f"`cache clear` without --data-dir removes {what}. Add --all (or --yes) to do "
                "that without a terminal, or --data-dir DIR for the caches of one folder."
            )
    emit(clear_caches(data_dir), as_json)


def _interactive() -> bool:
    """Whether someone can answer a question (stdin is a terminal)."""
    return sys.stdin.isatty()
