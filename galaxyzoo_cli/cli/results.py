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
from galaxyzoo_cli.core.settings import EvalSplit, EvaluateSettings, ExportFormat, PredictSettings

Runs = Annotated[
    list[Path],
    typer.Argument(
        metavar="RUN",
        help="One run (its folder, or a checkpoint in it), or several: averaged by evaluate and "
        "predict (an ensemble), compared by plot and report.",
    ),
]
Tta = Annotated[int, typer.Option("--tta", help="Average N rotated/flipped views (1: none).")]
FitsBands = Annotated[
    str,
    typer.Option(
        "--fits-bands",
        metavar="R,G,B",
        help="FITS cubes: the planes shown as red, green, blue (0-based; 2,1,0 for g,r,i).",
    ),
]
FitsScale = Annotated[
    str,
    typer.Option(
        "--fits-scale",
        metavar="percentile|sdss",
        help="FITS: 'percentile' (any units: black at each band's sky median, white at "
        "--fits-percentile) or 'sdss' (fixed --fits-stretch, for SDSS images in nanomaggies).",
    ),
]
FitsPercentile = Annotated[
    float,
    typer.Option(
        "--fits-percentile", help="FITS, percentile scale: the intensity percentile shown white."
    ),
]
FitsStretch = Annotated[
    float,
    typer.Option("--fits-stretch", help="FITS, sdss scale: linear stretch of the asinh scaling."),
]
FitsQ = Annotated[
    float, typer.Option("--fits-q", help="FITS: asinh softening Q (Lupton et al. 2004).")
]
FitsMinimum = Annotated[
    float | None,
    typer.Option(
        "--fits-minimum",
        help="FITS: black level in the data's units (default: the sky, i.e. the median).",
        show_default=False,
    ),
]
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
    runs: Runs,
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
    cache: Cache = None,
    strict: Strict = False,
    device: Device = "auto",
    as_json: JsonOut = False,
) -> None:
    """Kaggle RMSE, per-question RMSE and accuracy, per-answer RMSE against the training mean's,
    and the baselines (writes RUN/eval.json). Questions the run never learned are not scored."""
    from galaxyzoo_cli.inference.evaluation import evaluate as run_evaluate
    from galaxyzoo_cli.training.device import choose_device

    settings = EvaluateSettings(
        data_dir=data_dir, split=split, tta=tta, cache=cache, workers=workers, out=out,
        predictions=predictions, strict=strict,
    )  # fmt: skip
    reporter = RichReporter()
    dev = choose_device(device, reporter)
    emit(run_evaluate(runs, settings, device=dev, reporter=reporter), as_json)


@app.command()
def predict(
    runs: Runs,
    data_dir: RunDataDir = None,
    images: Annotated[
        Path | None,
        typer.Option(
            "--images",
            help="A folder of JPEG, PNG or FITS cutouts, searched recursively (default: "
            "images_test_rev1 of the data, a Kaggle submission). File stems are the ids.",
        ),
    ] = None,
    catalogue: Annotated[
        Path | None,
        typer.Option(
            "--catalogue",
            metavar="FILE.csv",
            help="A CSV with columns id and path (and any others) to predict; every column but "
            "id is passed through unchanged.",
        ),
    ] = None,
    derived: Annotated[
        bool,
        typer.Option(
            "--derived",
            help="Add 0/1 columns derived_smooth, derived_featured, derived_edge_on, "
            "derived_barred, derived_spiral (GZ2 thresholds), those the run's questions allow.",
        ),
    ] = False,
    embeddings: Annotated[
        Path | None,
        typer.Option(
            "--embeddings",
            metavar="FILE.npy",
            help="Also write the model's feature vectors, one row per CSV row.",
        ),
    ] = None,
    fits_bands: FitsBands = "2,1,0",
    fits_scale: FitsScale = "percentile",
    fits_percentile: FitsPercentile = 99.5,
    fits_stretch: FitsStretch = 0.5,
    fits_q: FitsQ = 8.0,
    fits_minimum: FitsMinimum = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="CSV to write (default: RUN/submission.csv, RUN/predictions.csv for --images, "
            "--catalogue or --derived, or a new name beside it when that holds a result of other "
            "inputs).",
        ),
    ] = None,
    tta: Tta = 1,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size", "-b", help="Images per batch (default: 256 at 64 px, fewer if larger)."
        ),
    ] = None,
    workers: Workers = None,
    cache: Cache = None,
    strict: Strict = False,
    device: Device = "auto",
    as_json: JsonOut = False,
) -> None:
    """Predict the 37 answers: a Kaggle submission, or a CSV for any folder of cutouts (the
    answers of questions the run never had labels for left empty)."""
    from galaxyzoo_cli.core.settings import FitsOptions, parse_bands
    from galaxyzoo_cli.inference.prediction import predict as run_predict
    from galaxyzoo_cli.training.device import choose_device

    fits = FitsOptions(
        bands=parse_bands(fits_bands), scale=fits_scale, percentile=fits_percentile,
        stretch=fits_stretch, q=fits_q, minimum=fits_minimum,
    )  # fmt: skip
    settings = PredictSettings(
        data_dir=data_dir, images=images, catalogue=catalogue, out=out, tta=tta,
        batch_size=batch_size, cache=cache, workers=workers, strict=strict, derived=derived,
        embeddings=embeddings, fits=fits,
    )  # fmt: skip
    reporter = RichReporter()
    dev = choose_device(device, reporter)
    emit(run_predict(runs, settings, device=dev, reporter=reporter), as_json)


@app.command()
def plot(
    runs: Runs,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder for the PNGs (default: each run's folder)."),
    ] = None,
    data_dir: RunDataDir = None,
    workers: Workers = None,
    cache: Cache = None,
    device: Device = "auto",
    as_json: JsonOut = False,
) -> None:
    """PNG figures: loss curves, per-question accuracy, predicted vs true, gallery, comparison."""
    from galaxyzoo_cli.outputs.figure_data import plot_runs
    from galaxyzoo_cli.training.device import choose_device
    from galaxyzoo_cli.training.run_folder import resolve_runs

    resolve_runs(runs)  # a bad RUN is the one line, before the device's
    reporter = RichReporter()
    result = plot_runs(
        runs,
        out_dir=out,
        data_dir=data_dir,
        device=choose_device(device, reporter),
        use_cache=cache,
        workers=workers,
        reporter=reporter,
    )
    emit(result, as_json)


@app.command()
def report(
    runs: Runs,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="HTML file to write (default: RUN/report.html)."),
    ] = None,
    data_dir: RunDataDir = None,
    workers: Workers = None,
    cache: Cache = None,
    device: Device = "auto",
    as_json: JsonOut = False,
) -> None:
    """One self-contained HTML page: settings, metrics, curves, galleries of galaxies."""
    from galaxyzoo_cli.outputs.html_report import report as make_report
    from galaxyzoo_cli.training.device import choose_device
    from galaxyzoo_cli.training.run_folder import resolve_runs

    resolve_runs(runs)  # a bad RUN is the one line, before the device's
    reporter = RichReporter()
    result = make_report(
        runs, out=out, data_dir=data_dir, device=choose_device(device, reporter),
        use_cache=cache, workers=workers, reporter=reporter,
    )  # fmt: skip
    emit(result, as_json)


@app.command()
def export(
    run: Annotated[
        Path, typer.Argument(metavar="RUN", help="A run folder or a checkpoint in one.")
    ],
    format: Annotated[
        ExportFormat, option("--format", "-f", help="ONNX (onnxruntime) or TorchScript.")
    ] = ExportFormat.ONNX,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="File to write (default: RUN/model.onnx); a model over 2 GB also writes "
            "FILE.data. Copy every file the export lists.",
        ),
    ] = None,
    as_json: JsonOut = False,
) -> None:
    """The model for deployment (normalisation inside, any batch size), with its input spec."""
    from galaxyzoo_cli.inference.export import export as run_export

    emit(run_export(run, format=format, out=out, reporter=RichReporter()), as_json)


@app.command("runs")
def list_runs(
    runs_dir: Annotated[
        Path,
        typer.Argument(envvar="GALAXYZOO_RUNS_DIR", help="Folder holding the run folders."),
    ] = Path("runs"),
    sort: Annotated[
        str,
        typer.Option("--sort", help="val_rmse, eval_rmse, name, date (newest first) or minutes."),
    ] = "val_rmse",
    as_json: JsonOut = False,
) -> None:
    """A leaderboard of runs: model, epochs, RMSE, minutes, date, status."""
    from galaxyzoo_cli.outputs.runs_table import list_runs as table

    emit(table(runs_dir, sort=sort), as_json)
