"""The command line: thin Typer commands over the library, and the one error boundary.

This is the only module that imports typer and rich. Each command forwards its options to one
library function; :class:`~galaxyzoo_cli.errors.GalaxyZooError` is caught once in :func:`_run`
and becomes a one-line message on stderr and an exit code (2 bad input, 1 failed job). Heavy
libraries (torch, timm, matplotlib, pandas) are imported inside the library functions, so
``--help`` stays fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
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
from galaxyzoo_cli.training import TrainConfig

# PyTorch's OpenMP threads spin while they wait; when another process holds a core, that spinning
# made training several times slower here. Passive waiting costs little when the CPU is idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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

_debug = False
T = TypeVar("T")


class _RichReporter:
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
    """The command's result: JSON on stdout with --json, else the human summary.

    Under torchrun only rank 0 reports, so stdout holds one result.
    """
    if os.environ.get("RANK", "0") != "0":
        return
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
    keep_archives: Annotated[
        bool, typer.Option("--keep-archives", help="Keep the downloaded zip files.")
    ] = False,
    as_json: JsonOut = False,
) -> None:
    """Download the Kaggle competition data (or write synthetic galaxies with --synthetic N)."""
    reporter = _RichReporter()
    if synthetic is not None:
        from galaxyzoo_cli.synthetic import generate

        result: Any = _run(
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


@app.command()
def check(
    data_dir: DataDir = Path("data"),
    as_json: JsonOut = False,
) -> None:
    """Validate a data folder: labels CSV, images, and that the labels obey the decision tree."""
    from galaxyzoo_cli.data import check_layout

    result = _run(check_layout, data_dir=data_dir)
    _emit(result.as_dict(), as_json, result.summary())


# ---------------------------------------------------------------------------------------------
# preview
# ---------------------------------------------------------------------------------------------
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
            "size=N). Default: the notebook's five rows.",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")] = Path(
        "preview.png"
    ),
    seed: Seed = 0,
    as_json: JsonOut = False,
) -> None:
    """Write a grid of galaxies: one row per preprocessing transform."""
    from galaxyzoo_cli.plotting import preview as make_preview

    result = _run(
        make_preview, data_dir=data_dir, n=n, transforms=transform or [], out=out, seed=seed
    )
    _emit(result.as_dict(), as_json, result.summary())


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------
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

    rows = _run(describe_models, pattern=pattern, include_test=all_models)
    if as_json:
        _emit({"models": rows}, True, "")
        return
    if not rows:
        typer.echo(f"No model matches {pattern!r}. Any timm architecture works as timm/<name>.")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("name", "kind", "parameters", "input", "description"):
        table.add_column(col, justify="right" if col == "parameters" else "left")
    for r in rows:
        table.add_row(
            r["name"],
            r["kind"] + (" (frozen)" if r["frozen_by_default"] else ""),
            f"{r['parameters'] / 1e6:.2f} M",
            r["input"],
            r["description"],
        )
    Console(width=max(120, Console().width)).print(table)
    typer.echo("Any timm architecture also works as timm/<name> (e.g. timm/resnet50).")


# ---------------------------------------------------------------------------------------------
# train and select-init share their options
# ---------------------------------------------------------------------------------------------
_TC = TrainConfig()  # the library's defaults, shown by --help

Model = Annotated[str, typer.Option("--model", "-m", help="Model name (see `galaxyzoo models`).")]
Epochs = Annotated[int, typer.Option("--epochs", help="Epochs in total.")]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", help="Images per step.")]
Lr = Annotated[float, typer.Option("--lr", help="Peak learning rate.")]
WeightDecay = Annotated[float, typer.Option("--weight-decay", help="Weight decay.")]
Optimizer = Annotated[str, typer.Option("--optimizer", help="adamw or adam.")]
Schedule = Annotated[str, typer.Option("--schedule", help="cosine (with warm-up) or constant.")]
Loss = Annotated[str, typer.Option("--loss", help="mse, rmse or bce (missing labels skipped).")]
Head = Annotated[str, typer.Option("--head", help="tree (decision-tree outputs) or sigmoid.")]
ImageSize = Annotated[
    int | None, typer.Option("--image-size", help="Input side in pixels (default: the model's).")
]
Crop = Annotated[
    int | None,
    typer.Option(
        "--crop", help="Centre crop side, in pixels of the 424-px frame (default: the model's)."
    ),
]
Channels = Annotated[
    int | None, typer.Option("--channels", help="1 (grayscale) or 3 (RGB) (default: the model's).")
]
Augment = Annotated[
    bool | None,
    typer.Option(
        "--augment/--no-augment",
        help="Random rotations, flips, zoom and shifts (default: on, off for frozen backbones).",
        show_default=False,
    ),
]
ValFraction = Annotated[
    float, typer.Option("--val-fraction", help="Share held out for validation.")
]
ValSplit = Annotated[
    str, typer.Option("--val-split", help="last (highest GalaxyIDs, the winner's) or random.")
]
Limit = Annotated[
    int | None, typer.Option("--limit", metavar="N", help="Use the first N labelled images.")
]
Patience = Annotated[
    int, typer.Option("--patience", help="Early stop after N epochs without improvement (0: off).")
]
Pretrained = Annotated[
    bool | None,
    typer.Option(
        "--pretrained/--no-pretrained",
        help="Pretrained backbone weights (default: yes for timm backbones).",
        show_default=False,
    ),
]
Weights = Annotated[
    Path | None, typer.Option("--weights", metavar="FILE", help="Local backbone weights (offline).")
]
Freeze = Annotated[
    bool | None,
    typer.Option(
        "--freeze/--no-freeze",
        help="Freeze backbone features (default: yes for pretrained backbones).",
        show_default=False,
    ),
]
Workers = Annotated[
    int | None, typer.Option("--workers", help="Threads decoding images (default: CPU count, ≤ 8).")
]
Name = Annotated[str | None, typer.Option("--name", help="Run folder name (default: the model's).")]
Amp = Annotated[bool, typer.Option("--amp/--no-amp", help="bfloat16 mixed precision on CUDA.")]
Cache = Annotated[
    bool, typer.Option("--cache/--no-cache", help="Keep decoded images in the on-disk cache.")
]


def _train_config(options: dict[str, Any]) -> TrainConfig:
    """The training settings among a command's options."""
    kw = {f.name: options[f.name] for f in dataclasses.fields(TrainConfig) if f.name in options}
    if kw.get("weights") is not None:
        kw["weights"] = str(kw["weights"])
    return TrainConfig(**kw)


@app.command()
def train(
    model: Model = _TC.model,
    epochs: Epochs = _TC.epochs,
    batch_size: BatchSize = _TC.batch_size,
    lr: Lr = _TC.lr,
    weight_decay: WeightDecay = _TC.weight_decay,
    optimizer: Optimizer = _TC.optimizer,
    schedule: Schedule = _TC.schedule,
    loss: Loss = _TC.loss,
    head: Head = _TC.head,
    image_size: ImageSize = None,
    crop: Crop = None,
    channels: Channels = None,
    augment: Augment = None,
    val_fraction: ValFraction = _TC.val_fraction,
    val_split: ValSplit = _TC.val_split,
    limit: Limit = None,
    seed: Seed = _TC.seed,
    patience: Patience = _TC.patience,
    pretrained: Pretrained = None,
    weights: Weights = None,
    freeze: Freeze = None,
    workers: Workers = None,
    name: Name = None,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", metavar="RUN", help="Continue RUN in place up to --epochs."),
    ] = None,
    amp: Amp = _TC.amp,
    cache: Cache = _TC.cache,
    device: Device = "auto",
    data_dir: DataDir = Path("data"),
    runs_dir: RunsDir = Path("runs"),
    as_json: JsonOut = False,
) -> None:
    """Train one model into a new run folder (defaults: the recommended recipe)."""
    options = dict(locals())
    from galaxyzoo_cli.training import train as run_train

    config = _run(_train_config, options=options)
    result = _run(
        run_train,
        config=config,
        data_dir=data_dir,
        runs_dir=runs_dir,
        resume=resume,
        reporter=_RichReporter(),
    )
    _emit(result.as_dict(), as_json, result.summary())


def _with_train_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` (which takes ``**options``) every option of `train` but --resume.

    Typer reads a command's signature, so the options are declared once, on `train`.
    """
    own = [
        p
        for p in inspect.signature(command, eval_str=True).parameters.values()
        if p.kind != p.VAR_KEYWORD
    ]
    train_params = inspect.signature(train, eval_str=True).parameters
    shared = [p for n, p in train_params.items() if n != "resume"]
    command.__signature__ = inspect.Signature(own + shared)  # type: ignore[attr-defined]
    command.__annotations__ = {**train.__annotations__, **command.__annotations__}
    return command


@app.command("select-init")
@_with_train_options
def select_init(
    trials: Annotated[int, typer.Option("--trials", help="Fresh initialisations to try.")] = 10,
    trial_epochs: Annotated[int, typer.Option("--trial-epochs", help="Epochs of each trial.")] = 1,
    **options: Any,
) -> None:
    """Try several initialisations briefly, keep the best by validation loss, train it on."""
    from galaxyzoo_cli.training import select_init as run_select_init

    config = _run(_train_config, options=options)
    result = _run(
        run_select_init,
        config=config,
        trials=trials,
        trial_epochs=trial_epochs,
        data_dir=options["data_dir"],
        runs_dir=options["runs_dir"],
        reporter=_RichReporter(),
    )
    _emit(result.as_dict(), options["as_json"], result.summary())


# ---------------------------------------------------------------------------------------------
# evaluate, predict, plot
# ---------------------------------------------------------------------------------------------
RunArg = Annotated[Path, typer.Argument(metavar="RUN", help="A run folder or a checkpoint in one.")]
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
    run: RunArg,
    data_dir: RunDataDir = None,
    split: Annotated[
        str, typer.Option("--split", help="val (the run's validation split), train or all.")
    ] = "val",
    tta: Tta = 1,
    workers: Workers = None,
    cache: Cache = True,
    device: Device = "auto",
    as_json: JsonOut = False,
) -> None:
    """Kaggle RMSE, per-question RMSE and accuracy, and the baselines (writes RUN/eval.json)."""
    from galaxyzoo_cli.inference import evaluate as run_evaluate

    result = _run(
        run_evaluate,
        run=run,
        data_dir=data_dir,
        split=split,
        tta=tta,
        device=device,
        use_cache=cache,
        workers=workers,
        reporter=_RichReporter(),
    )
    _emit(result.as_dict(), as_json, result.summary())


@app.command()
def predict(
    runs: Annotated[
        list[Path],
        typer.Argument(metavar="RUN...", help="One run, or several to average (an ensemble)."),
    ],
    data_dir: DataDir = Path("data"),
    images: Annotated[
        Path | None,
        typer.Option("--images", help="Folder of <GalaxyID>.jpg (default: DATA/images_test_rev1)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="CSV to write (default: RUN/submission.csv)."),
    ] = None,
    tta: Tta = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Images per batch.")] = 256,
    workers: Workers = None,
    cache: Cache = True,
    device: Device = "auto",
    as_json: JsonOut = False,
) -> None:
    """Write a Kaggle submission CSV (GalaxyID + 37 columns, sorted by GalaxyID)."""
    from galaxyzoo_cli.inference import predict as run_predict

    result = _run(
        run_predict,
        runs=runs,
        data_dir=data_dir,
        images=images,
        out=out,
        tta=tta,
        device=device,
        batch_size=batch_size,
        use_cache=cache,
        workers=workers,
        reporter=_RichReporter(),
    )
    _emit(result.as_dict(), as_json, result.summary())


@app.command()
def plot(
    runs: Annotated[
        list[Path], typer.Argument(metavar="RUN...", help="One run, or several to compare.")
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

    result = _run(
        plot_runs,
        runs=runs,
        out_dir=out,
        data_dir=data_dir,
        device=device,
        use_cache=cache,
        workers=workers,
        reporter=_RichReporter(),
    )
    _emit(result.as_dict(), as_json, result.summary())


def _fail_usage(message: str) -> None:
    raise BadInputError(message)


def main() -> None:
    """Console-script entry point."""
    app(prog_name=os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "galaxyzoo")
