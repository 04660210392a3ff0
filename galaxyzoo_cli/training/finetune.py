"""Your own labels: :func:`finetune` learns them from a run or a registry model
(:func:`galaxyzoo_cli.inference.evaluation.evaluate_labels` scores a finetuned run on them).

Read :func:`finetune` top to bottom: the labels and the task they imply → the starting point (a
run's network and input, or a registry model with its pretrained weights) → the images of the
labelled galaxies → a stratified split → the same loop as ``train``
(:func:`galaxyzoo_cli.training.loop.train_to_the_end`): the head alone for the first
``head_epochs``, then the whole network with layer-wise learning-rate decay, early stopping on the
task's metric.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.core.progress import SILENT, Reporter
from galaxyzoo_cli.core.settings import TrainConfig
from galaxyzoo_cli.core.signals import stop_on_signals
from galaxyzoo_cli.core.tasks import Task
from galaxyzoo_cli.data.cache import Rows, load_images
from galaxyzoo_cli.data.catalogue import Skipped
from galaxyzoo_cli.data.labels import encode, infer_task, match_images, read_label_file
from galaxyzoo_cli.data.labels import stratified_split as split_labels
from galaxyzoo_cli.models import ModelConfig, get_spec, resolve_config
from galaxyzoo_cli.training.device import Runtime, seed_everything, setup_runtime
from galaxyzoo_cli.training.loop import TrainResult, new_run, train_to_the_end
from galaxyzoo_cli.training.run_folder import check_runs_dir, load_checkpoint, resolve_run
from galaxyzoo_cli.training.setup import Fit, Setup
from galaxyzoo_cli.training.tracking import check_available

FINETUNE_DEFAULTS: dict[str, Any] = {
    "epochs": 20,
    "head_epochs": 5,
    "batch_size": 32,
    "lr": 5e-4,
    "lr_decay": 0.5,
    "patience": 6,
    "epoch_images": 512,
    "val_fraction": 0.2,
    "augment_kind": "affine",
    "warmup_epochs": 1.0,
}
"""Where ``finetune``'s defaults differ from ``train``'s: made for a few hundred labels (a small
set is repeated to 512 images per epoch, so 25 labels still make 16 steps an epoch). Augmentation
stays resampled rotations, zooms and shifts: the learning curve of docs/finetuning.md was measured
with it; the exact views won the cross-validation of ``train`` on 4,000 Kaggle galaxies only."""


def finetune_config(**options: Any) -> TrainConfig:
    """The settings of a finetune: ``options`` that are not None over :data:`FINETUNE_DEFAULTS`
    over train's."""
    given = {k: v for k, v in options.items() if v is not None}
    return TrainConfig(**{**FINETUNE_DEFAULTS, **given})


def _is_run(source: str) -> bool:
    return Path(source).exists()


def _starting_point(
    source: str, config: TrainConfig, task: Task
) -> tuple[TrainConfig, ModelConfig, dict[str, Any] | None, dict[str, Any]]:
    """The settings, model configuration and starting features (a run's, else None: the
    registry model's own) of ``source``, and where they come from."""
    freeze = bool(config.freeze)
    if _is_run(source):
        given = [f for f in ("channels", "image_size", "crop") if getattr(config, f) is not None]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise BadInputError(
                f"{flag}: finetuning the run {source} keeps its input ({flag} is the run's). "
                "Drop it, or start from a registry model."
            )
        ref = resolve_run(source)
        ckpt = load_checkpoint(ref.checkpoint)
        state = ckpt.state["model_state"]
        features = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        model_config = replace(ckpt.model, task=task, freeze=freeze)
        config = config.replace(model=ckpt.model.name, pretrained=False, weights=None)
        origin = {"run": str(ref.run_dir.resolve()), "checkpoint": str(ref.checkpoint.resolve()),
                  "model": ckpt.model.name, "task": ckpt.model.task.describe()}  # fmt: skip
        return config, model_config, features, origin
    spec = get_spec(source)
    pretrained, freeze = spec.weights_and_freeze(config.pretrained, config.weights, freeze)
    model_config = resolve_config(
        source, channels=config.channels, image_size=config.image_size, crop=config.crop,
        freeze=freeze, task=task,
    )  # fmt: skip
    config = config.replace(model=model_config.name, pretrained=pretrained)
    return config, model_config, None, {"model": model_config.name, "pretrained": pretrained,
                                        "weights": config.weights}  # fmt: skip


@stop_on_signals()
def finetune(
    source: str,
    *,
    labels: Path,
    images: Path | None = None,
    columns: Sequence[str] = (),
    config: TrainConfig | None = None,
    runs_dir: Path = Path("runs"),
    reporter: Reporter = SILENT,
    runtime: Runtime | None = None,
) -> TrainResult:
    """Learn the labels of ``labels`` (a CSV: ``id`` or ``path`` and label columns, ``columns``
    picking some) for the images in ``images``, starting from ``source``: a run folder (its
    network and input spec; the head is replaced) or a registry model name (its pretrained
    weights, or from scratch with ``pretrained=False``). Writes a new run folder, like train.

    ``config.freeze``: the features stay as loaded and only the head learns (a linear probe);
    otherwise the head learns alone for ``head_epochs``, then the whole network, each block of
    the features at ``lr_decay`` times the rate of the block above it. Galaxies whose image is
    missing or unreadable are left out and named (``strict``: an error). Computed on
    ``runtime`` (None: the device of ``config.device``).
    """
    started = time.perf_counter()
    config = config or finetune_config()
    config.check()
    check_available(config.log)
    check_runs_dir(runs_dir)  # before minutes of decoding, not after
    # The labels, and the task they imply.
    table = read_label_file(labels, columns)
    task = infer_task(table)
    y_all = encode(table, task)
    # The starting point: a run's network and input, or a registry model.
    config, model_config, features, origin = _starting_point(source, config, task)
    learned = features is not None or bool(config.pretrained)
    config = config.replace(
        # Random features have nothing to keep: no head-only phase; frozen ones: all of it.
        head_epochs=config.head_epochs if learned and not model_config.freeze else 0,
        augment=(not model_config.freeze) if config.augment is None else config.augment,
    )
    runtime = runtime or setup_runtime(config.device, reporter)
    seed_everything(config.seed)
    # The images of the labelled galaxies, decoded once (through the cache).
    paths, _ = match_images(table, images)
    skipped = Skipped()
    skipped.add("missing image", [table.ids[i] for i, p in enumerate(paths) if p is None])
    found = np.array([i for i, p in enumerate(paths) if p is not None], dtype=np.int64)
    if not len(found):
        raise BadInputError(
            f"--labels {labels}: no labelled galaxy has an image"
            + (f" in {images}" if images is not None else "")
            + " (ids are the image file stems, e.g. 12345 for 12345.jpg)."
        )
    decoded = load_images([paths[i] for i in found], model_config.input, workers=config.workers,
                          reporter=reporter, use_cache=config.cache)  # fmt: skip
    skipped.add("unreadable image", [table.ids[found[i]] for i in decoded.unreadable])
    skipped.enforce(config.strict, f"--labels {labels}", reporter)
    readable = np.flatnonzero(decoded.readable)
    rows = found[readable]
    y, ids = y_all[rows], np.array([table.ids[i] for i in rows])
    # A stratified validation split.
    is_val = np.zeros(len(rows), dtype=bool)
    is_val[split_labels(task, y, config.val_fraction, config.seed, f"--labels {labels}")] = True
    x_train, x_val = runtime.keep_on_device(
        (Rows(decoded.pixels, readable[~is_val]), Rows(decoded.pixels, readable[is_val])),
        reporter,
    )
    data_dir = images if images is not None and table.paths is None else labels.parent
    setup = Setup(
        config, model_config, runtime, data_dir, len(table.ids), ids[is_val], x_train,
        y[~is_val], x_val, y[is_val], skipped, labels=labels,
    )  # fmt: skip
    # The model (the run's features, or the registry's weights) with a new head; the run folder.
    fit = Fit(setup, seed=config.seed, features_state=features)
    run_dir = new_run(runs_dir, setup, reporter, command="finetune", source=origin,
                      task=task.as_dict(), labels=str(labels.resolve()))  # fmt: skip
    reporter.log(
        f"Task: {task.describe()}; {int((~is_val).sum())} galaxies to train on, "
        f"{int(is_val.sum())} to validate."
    )
    # The same loop as train's, and the finish.
    return train_to_the_end(fit, run_dir, reporter, started=started)
