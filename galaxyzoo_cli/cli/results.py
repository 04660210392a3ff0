"""Commands on finished runs: evaluate, predict, plot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from galaxyzoo_cli.cli.app import (
    Cache,
    Device,
    JsonOut,
    RichReporter,
    Strict,
    Workers,
    app,
    emit,
    option,
)
from galaxyzoo_cli.settings import EvalSplit

Tta = Annotated[int, typer.Option("--tta", help="Average N rotated/flipped views (1: none).")]
RunDataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="GALAXYZOO_DATA_DIR",
        help="Kaggle-layout folder (default: the one the run was trained on).",
        show_default=False,
    ),
]


@app.command()
def evaluate(
    runs: Annotated[
        list[Path],
        typer.Argument(metavar="RUN", help="One run, or several to average (an ensemble)."),
    ],
    data_dir: RunDataDir = None,
    split: Annotated[
        EvalSplit, option("--split", help="The run's validation or training galaxies, or all.")
    ] = EvalSplit.VAL,
    tta: Tta = 1,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="JSON file to write (default: RUN/eval.json, or a new name beside it when that "
            "holds an evaluation of other inputs).",
        ),
    ] = None,
    predictions: Annotated[
        Path | None,
        typer.Option(
            "--predictions",
            metavar="FILE.csv",
            help="Also write the predictions for the evaluated galaxies (Kaggle format).",
        ),
    ] = None,
    workers: Workers = None,
    cache: Cache = True,
    strict: Strict = False,
    device: Device = "auto",
    as_json: JsonOut = False,
) -> None:
    """Kaggle RMSE, per-question RMSE and accuracy, and the baselines (writes RUN/eval.json)."""
    from galaxyzoo_cli.inference import evaluate as run_evaluate

    result = run_evaluate(
        runs,
        data_dir=data_dir,
        split=split,
        tta=tta,
        device=device,
        use_cache=cache,
        workers=workers,
        out=out,
        predictions=predictions,
        strict=strict,
        reporter=RichReporter(),
    )
    emit(result, as_json)


@app.command()
def predict(
    runs: Annotated[
        list[Path],
        typer.Argument(metavar="RUN", help="One run, or several to average (an ensemble)."),
    ],
    data_dir: RunDataDir = None,
    images: Annotated[
        Path | None,
        typer.Option(
            "--images", help="Folder of <GalaxyID>.jpg (default: images_test_rev1 of the data)."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="CSV to write (default: RUN/submission.csv, or a new name beside it when that "
            "holds a submission of other inputs).",
        ),
    ] = None,
    tta: Tta = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Images per batch.")] = 256,
    workers: Workers = None,
    cache: Cache = True,
    strict: Strict = False,
    device: Device = "auto",
    as_json: JsonOut = False,
) -> None:
    """Write a Kaggle submission CSV (GalaxyID + 37 columns, sorted by GalaxyID)."""
    from galaxyzoo_cli.inference import predict as run_predict

    result = run_predict(
        runs,
        data_dir=data_dir,
        images=images,
        out=out,
        tta=tta,
        device=device,
        batch_size=batch_size,
        use_cache=cache,
        workers=workers,
        strict=strict,
        reporter=RichReporter(),
    )
    emit(result, as_json)


@app.command()
def plot(
    runs: Annotated[
        list[Path], typer.Argument(metavar="RUN", help="One run, or several to compare.")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder for the PNGs (default: each run's folder)."),
    ] = None,
    data_dir: RunDataDir = None,
    workers: Workers = None,
    cache: Cache = True,
    device: Device = "auto",
    as_json: JsonOut = False,
) -> None:
    """PNG figures: loss curves, per-question accuracy, predicted vs true, gallery, comparison."""
    from galaxyzoo_cli.plotting import plot_runs

    result = plot_runs(
        runs,
        out_dir=out,
        data_dir=data_dir,
        device=device,
        use_cache=cache,
        workers=workers,
        reporter=RichReporter(),
    )
    emit(result, as_json)
