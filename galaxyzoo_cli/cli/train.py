"""The training commands: train and select-init, which share their options.

Every training option is a :class:`~galaxyzoo_cli.core.settings.TrainConfig` field:
:data:`TRAIN_OPTIONS` names each field's option (flag and help), the commands get them with
TrainConfig's defaults (:func:`~galaxyzoo_cli.cli.app.with_options`), and build the settings from
them in one step.
"""

from __future__ import annotations

from dataclasses import fields
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
    with_options,
)
from galaxyzoo_cli.core.settings import (
    AugmentKind,
    Head,
    Loss,
    Optimizer,
    Schedule,
    Tracker,
    TrainConfig,
    ValSplit,
)

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
AugmentKindOpt = Annotated[
    AugmentKind,
    option(
        "--augment-kind",
        help="affine: any angle, flips, zoom and shifts (resampled); dihedral: only the 8 exact "
        "quarter turns and flips (no resampling).",
    ),
]
WarmupEpochs = Annotated[
    float | None,
    option(
        "--warmup-epochs",
        help="Epochs of linear warm-up of the learning rate, then cosine decay (default: 30% of "
        "--epochs).",
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
    str | None, option("--weights", metavar="FILE", help="Local backbone weights (offline).")
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
Log = Annotated[Tracker, option("--log", help="Also log the metrics to an experiment tracker.")]

TRAIN_OPTIONS: dict[str, Any] = {
    "model": Model,
    "epochs": Epochs,
    "batch_size": BatchSize,
    "lr": Lr,
    "weight_decay": WeightDecay,
    "optimizer": OptimizerOpt,
    "schedule": ScheduleOpt,
    "warmup_epochs": WarmupEpochs,
    "ema": Ema,
    "loss": LossOpt,
    "head": HeadOpt,
    "image_size": ImageSize,
    "crop": Crop,
    "channels": Channels,
    "augment": Augment,
    "augment_kind": AugmentKindOpt,
    "val_fraction": ValFraction,
    "val_split": ValSplitOpt,
    "fold": Fold,
    "limit": Limit,
    "seed": Seed,
    "patience": Patience,
    "pretrained": Pretrained,
    "weights": Weights,
    "freeze": Freeze,
    "workers": Workers,
    "name": Name,
    "amp": Amp,
    "cache": Cache,
    "strict": Strict,
    "log": Log,
    "device": Device,
}
"""The option of each TrainConfig field that train and select-init take, in ``--help`` order."""

NOT_TRAIN_OPTIONS = ("head_epochs", "lr_decay", "monitor", "epoch_images")
"""The TrainConfig fields without a train option: finetune's own."""

train_options = with_options(TRAIN_OPTIONS, {f.name: f.default for f in fields(TrainConfig)})


@app.command()
@train_options
def train(
    ctx: typer.Context,
    *,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            metavar="RUN",
            help="Continue RUN in place up to --epochs (it may also change --patience, "
            "--device, --workers, --amp, --cache, --strict and --log).",
        ),
    ] = None,
    data_dir: DataDir = Path("data"),
    runs_dir: RunsDir = Path("runs"),
    as_json: JsonOut = False,
    **options: Any,
) -> None:
    """Train one model into a new run folder (defaults: the recommended recipe)."""
    from galaxyzoo_cli.training import loop as training
    from galaxyzoo_cli.training.device import setup_runtime

    reporter = RichReporter()
    if resume is not None:
        # Only what the user typed changes; the run keeps every other setting of its own,
        # its device included unless --device is typed.
        given = {
            p: v
            for p, v in ctx.params.items()
            if getattr(ctx.get_parameter_source(p), "name", "") == "COMMANDLINE"
            and p not in ("resume", "as_json")
        }
        runtime = setup_runtime(given["device"], reporter) if "device" in given else None
        emit(training.resume(resume, reporter=reporter, runtime=runtime, **given), as_json)
        return
    config = TrainConfig.from_dict(options)
    config.check()
    runtime = setup_runtime(config.device, reporter)
    emit(
        training.train(config, data_dir=data_dir, runs_dir=runs_dir, reporter=reporter,
                       runtime=runtime),
        as_json,
    )  # fmt: skip


@app.command("select-init")
@train_options
def select_init(
    trials: Annotated[int, typer.Option("--trials", help="Fresh initialisations to try.")] = 10,
    trial_epochs: Annotated[int, typer.Option("--trial-epochs", help="Epochs of each trial.")] = 1,
    *,
    data_dir: DataDir = Path("data"),
    runs_dir: RunsDir = Path("runs"),
    as_json: JsonOut = False,
    **options: Any,
) -> None:
    """Try several initialisations briefly, keep the best by validation loss, train it on."""
    from galaxyzoo_cli.training.device import setup_runtime
    from galaxyzoo_cli.training.loop import select_init as run_select_init

    config, reporter = TrainConfig.from_dict(options), RichReporter()
    config.check()
    result = run_select_init(
        config, trials=trials, trial_epochs=trial_epochs, data_dir=data_dir, runs_dir=runs_dir,
        reporter=reporter, runtime=setup_runtime(config.device, reporter),
    )  # fmt: skip
    emit(result, as_json)
