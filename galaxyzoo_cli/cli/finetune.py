"""The finetune command: a user's own labels, learned on top of a run or a registry model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from galaxyzoo_cli.cli.app import (
    Cache,
    Device,
    JsonOut,
    RichReporter,
    RunsDir,
    Strict,
    Workers,
    app,
    emit,
    option,
)
from galaxyzoo_cli.cli.train import (
    Amp,
    Augment,
    Channels,
    Crop,
    Freeze,
    ImageSize,
    Name,
    Pretrained,
    Weights,
)
from galaxyzoo_cli.core.settings import Monitor

_D = "(default: {}, made for a few hundred labels)"


def _opt(name: str, text: str, default: object) -> object:
    return option(name, help=f"{text} {_D.format(default)}.", show_default=False)


@app.command()
def finetune(
    source: Annotated[
        str,
        typer.Argument(
            metavar="FROM",
            help="A run folder (its network and input; the head is replaced) or a model name "
            "(see `galaxyzoo models`; zoobot-* are galaxy-pretrained).",
        ),
    ],
    labels: Annotated[
        Path,
        typer.Option(
            "--labels",
            metavar="FILE.csv",
            help="An id column (image file stems) or a path column, and label columns: 0/1 or "
            "two values (binary), a few classes, or fractions in [0, 1]. Empty cells: unlabelled.",
        ),
    ],
    images: Annotated[
        Path | None,
        typer.Option("--images", metavar="DIR", help="The folder of the images named by id."),
    ] = None,
    column: Annotated[
        list[str] | None,
        typer.Option(
            "--column", metavar="NAME", help="A label column to learn (repeat; default: all)."
        ),
    ] = None,
    epochs: Annotated[int | None, _opt("--epochs", "Epochs in total", 20)] = None,
    head_epochs: Annotated[
        int | None, _opt("--head-epochs", "First epochs training the head alone", 5)
    ] = None,
    lr: Annotated[float | None, _opt("--lr", "Peak learning rate of the head", "5e-4")] = None,
    lr_decay: Annotated[
        float | None,
        _opt("--lr-decay", "Layer-wise decay: each block learns at this factor of the next", 0.5),
    ] = None,
    batch_size: Annotated[int | None, _opt("--batch-size", "Images per step", 32)] = None,
    weight_decay: Annotated[float | None, _opt("--weight-decay", "Weight decay", "1e-4")] = None,
    patience: Annotated[
        int | None, _opt("--patience", "Early stop after N epochs without a better metric", 6)
    ] = None,
    monitor: Annotated[
        Monitor | None,
        _opt(
            "--monitor",
            "What picks the best epoch and stops early: the task's metric or the validation loss",
            "metric",
        ),
    ] = None,
    epoch_images: Annotated[
        int | None, _opt("--epoch-images", "Images per epoch (a small set is repeated)", 512)
    ] = None,
    val_fraction: Annotated[
        float | None, _opt("--val-fraction", "Share of each class held out for validation", 0.2)
    ] = None,
    seed: Annotated[int | None, _opt("--seed", "Random seed", 0)] = None,
    image_size: ImageSize = None,
    crop: Crop = None,
    channels: Channels = None,
    augment: Augment = None,
    pretrained: Pretrained = None,
    weights: Weights = None,
    freeze: Freeze = None,
    workers: Workers = None,
    name: Name = None,
    amp: Amp = True,
    cache: Cache = None,
    strict: Strict = False,
    device: Device = "auto",
    runs_dir: RunsDir = Path("runs"),
    as_json: JsonOut = False,
) -> None:
    """Learn your own labels (a flag, classes or fractions) from a run or a model: a new run."""
    from galaxyzoo_cli.training.device import setup_runtime
    from galaxyzoo_cli.training.finetune import finetune as run_finetune
    from galaxyzoo_cli.training.finetune import finetune_config

    config = finetune_config(
        epochs=epochs, head_epochs=head_epochs, lr=lr, lr_decay=lr_decay, batch_size=batch_size,
        weight_decay=weight_decay, patience=patience, monitor=monitor, epoch_images=epoch_images,
        val_fraction=val_fraction, seed=seed, image_size=image_size, crop=crop,
        channels=channels, augment=augment, pretrained=pretrained,
        weights=weights, freeze=freeze, workers=workers,
        name=name, amp=amp, cache=cache, strict=strict, device=device,
    )  # fmt: skip
    config.check()
    reporter = RichReporter()
    result = run_finetune(
        source, labels=labels, images=images, columns=column or (), config=config,
        runs_dir=runs_dir, reporter=reporter, runtime=setup_runtime(config.device, reporter),
    )  # fmt: skip
    emit(result, as_json)
