"""The training commands: train and select-init, which share their options."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from galaxyzoo_cli.cli.app import (
    Cache,
    DataDir,
    Device,
    JsonOut,
    RichReporter,
    RunsDir,
    Seed,
    Strict,
    Workers,
    app,
    emit,
    option,
)
from galaxyzoo_cli.settings import (
    Head,
    Loss,
    Optimizer,
    Schedule,
    Tracker,
    TrainConfig,
    ValSplit,
)

_TC = TrainConfig()  # the library's defaults, shown by --help


Model = Annotated[str, option("--model", "-m", help="Model name (see `galaxyzoo models`).")]
Epochs = Annotated[int, option("--epochs", help="Epochs in total.")]
BatchSize = Annotated[int, option("--batch-size", "-b", help="Images per step.")]
Lr = Annotated[float, option("--lr", help="Peak learning rate.")]
WeightDecay = Annotated[float, option("--weight-decay", help="Weight decay.")]
OptimizerOpt = Annotated[Optimizer, option("--optimizer", help="The optimizer.")]
ScheduleOpt = Annotated[Schedule, option("--schedule", help="cosine (with warm-up) or constant.")]
LossOpt = Annotated[Loss, option("--loss", help="Training loss (missing labels skipped).")]
HeadOpt = Annotated[Head, option("--head", help="tree (decision-tree outputs) or sigmoid.")]
ImageSize = Annotated[
    int | None, option("--image-size", help="Input side in pixels (default: the model's).")
]
Crop = Annotated[
    int | None,
    option(
        "--crop", help="Centre crop side, in pixels of the 424-px frame (default: the model's)."
    ),
]
Channels = Annotated[
    int | None, option("--channels", help="1 (grayscale) or 3 (RGB) (default: the model's).")
]
Augment = Annotated[
    bool | None,
    option(
        "--augment/--no-augment",
        help="Random rotations, flips, zoom and shifts (default: on, off for frozen backbones).",
        show_default=False,
    ),
]
ValFraction = Annotated[float, option("--val-fraction", help="Share held out for validation.")]
ValSplitOpt = Annotated[
    ValSplit,
    option(
        "--val-split",
        help="last (highest GalaxyIDs, the winner's), random, or fold (block --fold K of "
        "GalaxyIDs, for cross-validation).",
    ),
]
Fold = Annotated[
    int, option("--fold", help="With --val-split fold: which block of --val-fraction (1-based).")
]
Ema = Annotated[
    float,
    option("--ema", help="Average the weights over steps with this decay (0: off), e.g. 0.995."),
]
Limit = Annotated[
    int | None, option("--limit", metavar="N", help="Use the first N labelled images.")
]
Patience = Annotated[
    int, option("--patience", help="Early stop after N epochs without improvement (0: off).")
]
Pretrained = Annotated[
    bool | None,
    option(
        "--pretrained/--no-pretrained",
        help="Pretrained backbone weights (default: yes for timm backbones).",
        show_default=False,
    ),
]
Weights = Annotated[
    Path | None, option("--weights", metavar="FILE", help="Local backbone weights (offline).")
]
Freeze = Annotated[
    bool | None,
    option(
        "--freeze/--no-freeze",
        help="Freeze backbone features (default: yes for pretrained backbones).",
        show_default=False,
    ),
]
Name = Annotated[str | None, option("--name", help="Run folder name (default: the model's).")]
Amp = Annotated[bool, option("--amp/--no-amp", help="bfloat16 mixed precision on CUDA.")]


def _train_config(o: dict[str, Any]) -> TrainConfig:
    """The training settings among a command's options (every field named: a renamed option
    fails loudly here instead of falling back to a default)."""
    return TrainConfig(
        model=o["model"],
        head=o["head"],
        loss=o["loss"],
        epochs=o["epochs"],
        batch_size=o["batch_size"],
        lr=o["lr"],
        weight_decay=o["weight_decay"],
        optimizer=o["optimizer"],
        schedule=o["schedule"],
        ema=o["ema"],
        channels=o["channels"],
        image_size=o["image_size"],
        crop=o["crop"],
        augment=o["augment"],
        val_fraction=o["val_fraction"],
        val_split=o["val_split"],
        fold=o["fold"],
        limit=o["limit"],
        seed=o["seed"],
        patience=o["patience"],
        pretrained=o["pretrained"],
        weights=None if o["weights"] is None else str(o["weights"]),
        freeze=o["freeze"],
        workers=o["workers"],
        name=o["name"],
        device=o["device"],
        amp=o["amp"],
        cache=o["cache"],
        strict=o["strict"],
        log=o["log"],
    )


@app.command()
def train(
    ctx: typer.Context,
    model: Model = _TC.model,
    epochs: Epochs = _TC.epochs,
    batch_size: BatchSize = _TC.batch_size,
    lr: Lr = _TC.lr,
    weight_decay: WeightDecay = _TC.weight_decay,
    optimizer: OptimizerOpt = _TC.optimizer,
    schedule: ScheduleOpt = _TC.schedule,
    ema: Ema = _TC.ema,
    loss: LossOpt = _TC.loss,
    head: HeadOpt = _TC.head,
    image_size: ImageSize = None,
    crop: Crop = None,
    channels: Channels = None,
    augment: Augment = None,
    val_fraction: ValFraction = _TC.val_fraction,
    val_split: ValSplitOpt = _TC.val_split,
    fold: Fold = _TC.fold,
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
        typer.Option(
            "--resume",
            metavar="RUN",
            help="Continue RUN in place up to --epochs (it may also change --patience, "
            "--device, --workers, --amp, --cache, --strict and --log).",
        ),
    ] = None,
    amp: Amp = _TC.amp,
    cache: Cache = _TC.cache,
    strict: Strict = _TC.strict,
    log: Annotated[
        Tracker, option("--log", help="Also log the metrics to an experiment tracker.")
    ] = _TC.log,
    device: Device = _TC.device,
    data_dir: DataDir = Path("data"),
    runs_dir: RunsDir = Path("runs"),
    as_json: JsonOut = False,
) -> None:
    """Train one model into a new run folder (defaults: the recommended recipe)."""
    from galaxyzoo_cli import training

    reporter = RichReporter()
    if resume is not None:
        # Only what the user typed changes; the run keeps every other setting of its own.
        given = {
            p: v
            for p, v in ctx.params.items()
            if getattr(ctx.get_parameter_source(p), "name", "") == "COMMANDLINE"
            and p not in ("resume", "as_json")
        }
        emit(training.resume(resume, reporter=reporter, **given), as_json)
        return
    config = _train_config(ctx.params)
    emit(training.train(config, data_dir=data_dir, runs_dir=runs_dir, reporter=reporter), as_json)


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
    shared = [p for n, p in train_params.items() if n not in ("resume", "ctx")]
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

    result = run_select_init(
        _train_config(options),
        trials=trials,
        trial_epochs=trial_epochs,
        data_dir=options["data_dir"],
        runs_dir=options["runs_dir"],
        reporter=RichReporter(),
    )
    emit(result, options["as_json"])
