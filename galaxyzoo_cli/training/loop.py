"""Training: :func:`train`, :func:`resume` and :func:`select_init` (and
:func:`galaxyzoo_cli.training.finetune.finetune`) share one loop, read here top to bottom.

Each entry point does setup (device, seed, settings and the model's input resolved once) → data
(decoded once: :func:`galaxyzoo_cli.training.setup.prepare`) → the model
(:class:`galaxyzoo_cli.training.setup.Fit`) → the run folder (config.json, written once; a resume
appends to resumes.jsonl instead), then hands over to :func:`train_to_the_end`: the inputs (a frozen
backbone's features computed once, before the first epoch), the loop (:func:`run_loop`: per epoch
:func:`train_one_epoch`, the validation, :func:`record_epoch` and :func:`save_checkpoints`) and the
finish (status.json, summary.json, the result). :func:`stops_cleanly` is the one interrupt path.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from galaxyzoo_cli._version import __version__
from galaxyzoo_cli.core.errors import BadInputError, GalaxyZooError, Interrupted, JobFailedError
from galaxyzoo_cli.core.metrics import column_means, kaggle_rmse
from galaxyzoo_cli.core.progress import SILENT, Reporter
from galaxyzoo_cli.core.settings import RESUMABLE, AugmentKind, Schedule, TrainConfig
from galaxyzoo_cli.core.signals import how_stopped, stop_on_signals
from galaxyzoo_cli.core.summary import better, build_summary, read_summary, write_summary
from galaxyzoo_cli.data import transforms
from galaxyzoo_cli.training import losses
from galaxyzoo_cli.training.device import Runtime, autocast, to_float
from galaxyzoo_cli.training.run_folder import (
    Checkpoint,
    append_resume,
    check_runs_dir,
    create_run_dir,
    load_checkpoint,
    resolve_run,
    save_checkpoint,
    write_config,
    write_csv,
    write_status,
)
from galaxyzoo_cli.training.setup import (
    Fit,
    Inputs,
    Setup,
    all_reduce_sums,
    batch_of,
    lr_factor,
    prepare,
    training_inputs,
)
from galaxyzoo_cli.training.tracking import TensorBoard, open_tracker

METRIC_NAMES = {"rmse": "RMSE", "roc_auc": "ROC AUC", "accuracy": "accuracy", "loss": "loss"}

_ESTIMATE_AFTER = 10
"""Batches after which training says how long an epoch will take."""


@dataclass
class TrainResult:
    run_dir: Path
    model: str
    epochs_run: int
    best_epoch: int
    best_val_loss: float
    best_val_rmse: float
    baseline_val_rmse: float
    """RMSE of predicting the training means on the validation split."""
    n_train: int
    n_val: int
    seconds: float
    images: int
    """Images through the network (a frozen backbone's: each once, for its features)."""
    images_per_second: float
    stopped_early: bool
    device: str
    metric: str = "rmse"
    """What ``best_val_rmse`` holds: the Kaggle RMSE, or a user task's metric (roc_auc…)."""
    trials: list[dict[str, float]] = field(default_factory=list)
    skipped: dict[str, list[int | str]] = field(default_factory=dict)
    """Labelled galaxies left out, by reason (no image, unreadable image)."""
    resumed_from_epoch: int = 0
    """The epochs the run had before this session (``--resume``); 0 for a new run."""
    run_seconds: float = math.nan
    """The whole run's epochs, every session's: the sum of metrics.csv's ``seconds``."""
    session_epoch_seconds: float = math.nan
    """This session's epochs (``seconds`` of its rows of metrics.csv); ``seconds`` adds the
    setup (decoding, model loading) to it."""

    @property
    def beats_baseline(self) -> bool | None:
        """Whether the kept model beats predicting the training means (None: no validation)."""
        if math.isnan(self.best_val_rmse) or math.isnan(self.baseline_val_rmse):
            return None
        return self.best_val_rmse < self.baseline_val_rmse

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["run_dir"] = str(self.run_dir)
        d["beats_baseline"] = self.beats_baseline
        return d

    def summary(self) -> str:
        epochs = f"{self.epochs_run} epoch{'s' if self.epochs_run != 1 else ''}"
        early = ", stopped early" if self.stopped_early else ""
        if self.resumed_from_epoch:
            first = self.resumed_from_epoch + 1
            these = (f"epoch {first}" if first == self.epochs_run
                     else f"epochs {first}–{self.epochs_run}")  # fmt: skip
            head = (
                f"Run {self.run_dir}: {self.model}, {epochs} in {self.run_seconds:.1f} s of "
                f"training over the whole run ({self.images_per_second:.0f} images/s){early}; "
                f"this session: {these} in {self.session_epoch_seconds:.1f} s "
                f"({self.seconds:.1f} s with the setup)"
            )
        else:
            head = (f"Run {self.run_dir}: {self.model}, {epochs} in {self.seconds:.1f} s "
                    f"({self.images_per_second:.0f} images/s){early}")  # fmt: skip
        lines = [head]
        if self.n_val:
            baseline = (
                f" (training-mean baseline {self.baseline_val_rmse:.5f})"
                if not math.isnan(self.baseline_val_rmse)
                else ""
            )
            what = METRIC_NAMES.get(self.metric, self.metric)
            lines.append(
                f"Best epoch {self.best_epoch}: validation {what} {self.best_val_rmse:.5f}"
                f"{baseline} on {self.n_val} galaxies"
            )
        if self.beats_baseline is False:
            lines.append(
                "Warning: this model is no better than predicting the training means; train "
                "longer (--epochs), on more galaxies, or with the default settings."
            )
        if self.trials:
            best = min(self.trials, key=lambda t: t["val_loss"])
            lines.append(
                f"select-init: kept trial {int(best['trial'])} of {len(self.trials)} "
                f"(validation loss {best['val_loss']:.5f})"
            )
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


@stop_on_signals()
def train(
    config: TrainConfig | None = None,
    *,
    data_dir: Path = Path("data"),
    runs_dir: Path = Path("runs"),
    reporter: Reporter = SILENT,
    runtime: Runtime | None = None,
) -> TrainResult:
    """Train one model into a new run folder under ``runs_dir`` (never an existing one), on
    ``runtime`` (None: the device of ``config.device``)."""
    started = time.perf_counter()
    check_runs_dir(runs_dir)  # before minutes of decoding, not after
    # Setup and data: device and rank, seed, settings and input resolved once, images decoded.
    setup, reporter = prepare(config or TrainConfig(), data_dir, reporter, runtime=runtime)
    # The model, its optimizer and random generator.
    fit = Fit(setup, seed=setup.config.seed)
    # The run folder, written by the main process only.
    run_dir = new_run(runs_dir, setup, reporter, command="train")
    # The loop up to the last epoch (or an early stop), and the finish.
    return train_to_the_end(fit, run_dir, reporter, started=started)


@stop_on_signals()
def resume(
    run: str | os.PathLike[str],
    *,
    reporter: Reporter = SILENT,
    runtime: Runtime | None = None,
    **changes: Any,
) -> TrainResult:
    """Continue a run in place from its weights/last.pt, up to ``epochs`` in total, on
    ``runtime`` (None: the device of the run's settings, or of ``device`` among the changes).

    ``changes`` may set the options in :data:`galaxyzoo_cli.core.settings.RESUMABLE` (``None`` keeps
    the run's own); everything else, the data and the split are the run's. config.json stays as
    the run was created; the resume is recorded in the run's resumes.jsonl.
    """
    started = time.perf_counter()
    other = sorted(k for k, v in changes.items() if v is not None and k not in RESUMABLE)
    if other:
        names = ", ".join("--" + k.replace("_", "-") for k in other)
        raise BadInputError(
            f"--resume {run}: {names} cannot change when continuing a run (it may change: "
            f"{', '.join('--' + k for k in RESUMABLE)}). Start a new run to change them."
        )
    ckpt = load_checkpoint(resolve_run(run, prefer="last").checkpoint)
    if "optimizer_state" not in ckpt.state or ckpt.data_dir is None:
        raise BadInputError(f"{ckpt.path}: has no training state to continue from.")
    if ckpt.labels is not None:
        raise BadInputError(
            f"--resume {run}: a finetuned run (its labels: {ckpt.labels}) is not continued; "
            f"finetune it again (galaxyzoo finetune {ckpt.run_dir} --labels …) or start anew."
        )
    config = ckpt.settings.replace(**{k: v for k, v in changes.items() if v is not None})
    if config.epochs <= ckpt.progress.epoch:
        raise BadInputError(
            f"--resume {run}: the run already has {ckpt.progress.epoch} "
            f"epoch{'s' if ckpt.progress.epoch != 1 else ''}; "
            f"give --epochs larger than that to continue."
        )
    # Setup and data: the run's split and model, the settings with the changes.
    setup, reporter = prepare(
        config, ckpt.data_dir, reporter, runtime=runtime, val_ids=ckpt.val_ids,
        model_config=ckpt.model,
    )  # fmt: skip
    # The model as last.pt left it: weights, optimizer, generator, step counter, progress.
    fit = Fit(setup, seed=config.seed, load_pretrained=False)
    fit.restore(ckpt.state, ckpt.progress)
    fit.saved_epoch = ckpt.progress.epoch
    # The run folder: this resume's record.
    run_dir = ckpt.run_dir if setup.runtime.is_main else None
    if run_dir is not None:
        append_resume(run_dir, _resume_record(ckpt, setup))
    reporter.log(f"Resuming {ckpt.run_dir} at epoch {ckpt.progress.epoch + 1} of {config.epochs}.")
    return train_to_the_end(
        fit, run_dir, reporter, started=started, resumed_from_epoch=ckpt.progress.epoch
    )


@stop_on_signals()
def select_init(
    config: TrainConfig | None = None,
    *,
    trials: int = 10,
    trial_epochs: int = 1,
    data_dir: Path = Path("data"),
    runs_dir: Path = Path("runs"),
    reporter: Reporter = SILENT,
    runtime: Runtime | None = None,
) -> TrainResult:
    """Short trainings from ``trials`` fresh initialisations; keep the best; train it on.

    Trial ``k`` is seeded with ``seed + k``. The best trial (lowest validation loss) is kept as a
    deep copy of its weights and optimizer state (saved as weights/init.pt), then trained on to
    ``config.epochs`` epochs in total. Every trial is recorded in trials.csv.
    """
    started = time.perf_counter()
    config = config or TrainConfig()
    if trials < 1:
        raise BadInputError(f"--trials {trials}: give at least 1.")
    if not 1 <= trial_epochs < config.epochs:
        raise BadInputError(
            f"--trial-epochs {trial_epochs}: give at least 1 and fewer than --epochs "
            f"({config.epochs})."
        )
    if config.val_fraction <= 0:
        raise BadInputError("--val-fraction 0: select-init needs a validation split to compare.")
    check_runs_dir(runs_dir)
    setup, reporter = prepare(config, data_dir, reporter, runtime=runtime)
    run_dir = new_run(runs_dir, setup, reporter, command="select-init", trials=trials,
                      trial_epochs=trial_epochs)  # fmt: skip

    # The trials, each through the loop for trial_epochs (on the features computed once).
    records: list[dict[str, float]] = []
    best: dict[str, Any] = {}
    inputs: Inputs | None = None
    for k in range(1, trials + 1):
        trial_started, seed = time.perf_counter(), setup.config.seed + k
        reporter.log(f"Trial {k}/{trials} (seed {seed})")
        fit = Fit(setup, seed)
        with stops_cleanly(fit, None, trial_epochs):
            if inputs is None:
                inputs = training_inputs(fit, reporter)
            run_loop(fit, inputs, trial_epochs, None, reporter, early_stopping=False)
        last = fit.progress.metrics[-1]
        record = {
            "trial": k,
            "seed": seed,
            "val_loss": last["val_loss"],
            "val_rmse": last["val_rmse"],
            "seconds": time.perf_counter() - trial_started,
        }
        records.append(record)
        if not best or record["val_loss"] < best["record"]["val_loss"]:
            best = {"record": record, **fit.snapshot()}
        if run_dir is not None:
            write_csv(run_dir / "trials.csv", records, tuple(record))
    reporter.log(
        f"Best trial: {int(best['record']['trial'])} "
        f"(validation loss {best['record']['val_loss']:.5f}); training it on."
    )
    # The best trial, trained on to the end.
    fit = Fit(setup, setup.config.seed, load_pretrained=False)
    fit.restore(best, best["progress"])
    if run_dir is not None:
        save_checkpoint(
            run_dir / "weights" / "init.pt", fit.averaged, setup.config,
            data_dir=data_dir.resolve(), val_ids=setup.val_ids, progress=fit.progress,
        )  # fmt: skip
    return train_to_the_end(fit, run_dir, reporter, started=started, inputs=inputs,
                            trials=records)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The run folder's record: config.json once, resumes.jsonl, summary.json
# ---------------------------------------------------------------------------------------------


def new_run(runs_dir: Path, setup: Setup, reporter: Reporter, **extra: Any) -> Path | None:
    """A new run folder with its config.json: every resolved setting, for people to read
    (checkpoints hold the truth), written once, never rewritten. On the main process; None
    elsewhere. ``extra``: what the command adds (its name, select-init's trials…)."""
    if not setup.runtime.is_main:
        return None
    name = setup.config.name or setup.model_config.name.replace("/", "-")
    run_dir = create_run_dir(runs_dir, name)
    write_config(
        run_dir,
        {
            **extra,
            "settings": setup.config.as_dict(),
            "model": setup.model_config.as_dict(),
            "device": str(setup.runtime.device),
            "world_size": setup.runtime.world_size,
            "data": {
                "data_dir": str(setup.data_dir.resolve()),
                "n_labelled": setup.n_labelled,
                "n_train": len(setup.y_train),
                "n_val": len(setup.y_val),
                "n_missing_cells_train": int(np.isnan(setup.y_train).sum()),
                "val_ids": setup.val_ids.tolist(),
            },
            "created": _now(),
        },
    )
    reporter.log(f"Run folder: {run_dir}")
    return run_dir


def _resume_record(ckpt: Checkpoint, setup: Setup) -> dict[str, Any]:
    """A line of resumes.jsonl: when, by which version, from which epoch, on which device, and
    each setting that changed, with its old and new value."""
    before, after = ckpt.settings.as_dict(), setup.config.as_dict()
    changed = {k: {"old": before.get(k), "new": v} for k, v in after.items() if before.get(k) != v}
    return {
        "time": _now(),
        "version": __version__,
        "from_epoch": ckpt.progress.epoch,
        "changed": changed,
        "device": str(setup.runtime.device),
        "world_size": setup.runtime.world_size,
    }


def _write_summary(fit: Fit, run_dir: Path, stopped_early: bool = False) -> None:
    """summary.json: the run so far, its best epoch by the same rule that chose best.pt's."""
    progress = fit.progress
    summary = build_summary(
        progress.metrics,
        fit.setup.best_by,
        epochs_asked=fit.setup.config.epochs,
        stopped_early=stopped_early,
        train_seconds=progress.train_seconds,
        images_seen=progress.images_seen,
    )
    write_summary(run_dir, summary)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# ---------------------------------------------------------------------------------------------
# A training session: inputs → the loop → the finish
# ---------------------------------------------------------------------------------------------


def train_to_the_end(
    fit: Fit,
    run_dir: Path | None,
    reporter: Reporter,
    *,
    started: float,
    inputs: Inputs | None = None,
    trials: list[dict[str, float]] | None = None,
    resumed_from_epoch: int = 0,
) -> TrainResult:
    """Train ``fit`` up to the configured epochs (or an early stop) into ``run_dir`` (None: a
    process that writes nothing), then finish: status.json, summary.json, the tracker's figure,
    the runtime closed, the result. ``inputs``: computed already (select-init's trials)."""
    setup = fit.setup
    epochs = setup.config.epochs
    tracker = open_tracker(setup.config.log, run_dir)
    write_status(run_dir, "running")
    with stops_cleanly(fit, run_dir, epochs):
        # Inputs: the images, or a frozen backbone's features, computed once before the loop.
        if inputs is None:
            inputs = training_inputs(fit, reporter)
        fit.progress.images_seen += inputs.images
        fit.progress.train_seconds += inputs.seconds
        # The loop.
        stopped = run_loop(fit, inputs, epochs, run_dir, reporter, tracker=tracker)
    # The finish.
    write_status(run_dir, "finished", stopped_early=stopped)
    if run_dir is not None:
        _write_summary(fit, run_dir, stopped_early=stopped)
    if tracker is not None and run_dir is not None:
        from galaxyzoo_cli.training.curves import curves_figure

        metrics = fit.progress.metrics
        best_epoch = (read_summary(run_dir) or {}).get("best_epoch")
        best = next((i for i, m in enumerate(metrics) if m.get("epoch") == best_epoch), None)
        tracker.finish(curves_figure(run_dir.name, metrics, setup.config.loss.value, best))
    setup.runtime.close()
    return _result(fit, run_dir, started, stopped, trials or [], resumed_from_epoch)


@contextlib.contextmanager
def stops_cleanly(fit: Fit, run_dir: Path | None, epochs: int) -> Iterator[None]:
    """The one interrupt path of training. Ctrl-C, SIGTERM and SIGUSR1 (a batch scheduler's stop
    and time-limit warning) end it with :class:`Interrupted` (exit 130, 143, 138) naming the
    checkpoint kept and the resume command; any other error (a failed checkpoint write: a full
    disk) goes on with its own message. status.json then says interrupted or failed."""
    try:
        yield
    except KeyboardInterrupt as e:
        how, code = how_stopped(e)
        _mark(run_dir, "interrupted")
        if run_dir is None:
            raise Interrupted(f"{how} in epoch {fit.progress.epoch + 1}.", code) from None
        kept = _kept(fit, run_dir, epochs)
        raise Interrupted(f"{how} after epoch {fit.saved_epoch}; {kept}", code) from None
    except BaseException:
        _mark(run_dir, "failed")
        raise


def _mark(run_dir: Path | None, status: str) -> None:
    """status.json, best effort: on a full disk it cannot be written, and the error that stopped
    the run is the one to report."""
    with contextlib.suppress(GalaxyZooError, OSError):
        write_status(run_dir, status)


def _kept(fit: Fit, run_dir: Path, epochs: int) -> str:
    """What a stopped run keeps, and how to continue it."""
    if not fit.saved_epoch:
        return f"no epoch of {run_dir} was saved yet, so there is nothing to resume."
    if fit.setup.labels is not None:  # finetune: not resumed, its best epoch is kept
        return f"{run_dir}/weights/best.pt holds its best epoch so far."
    return (
        f"{run_dir}/weights/last.pt holds epoch {fit.saved_epoch}. "
        f"Continue with: galaxyzoo train --resume {run_dir} --epochs {epochs}"
    )


def _result(
    fit: Fit,
    run_dir: Path | None,
    started: float,
    stopped: bool,
    trials: list[dict[str, float]],
    resumed_from_epoch: int,
) -> TrainResult:
    setup, progress = fit.setup, fit.progress
    baseline = math.nan
    if len(setup.y_val) and setup.model_config.task.is_tree:
        means = column_means(setup.y_train)
        baseline = kaggle_rmse(np.broadcast_to(means, setup.y_val.shape), setup.y_val)
    return TrainResult(
        run_dir=run_dir or Path(),
        model=setup.model_config.name,
        epochs_run=progress.epoch,
        best_epoch=progress.best_epoch,
        best_val_loss=progress.best_val_loss,
        best_val_rmse=progress.best_val_rmse,
        baseline_val_rmse=baseline,
        n_train=len(setup.y_train),
        n_val=len(setup.y_val),
        seconds=time.perf_counter() - started,
        images=progress.images_seen,
        images_per_second=progress.images_seen / max(progress.train_seconds, 1e-9),
        stopped_early=stopped,
        device=str(setup.runtime.device),
        metric=setup.model_config.task.metric,
        trials=trials,
        skipped=setup.skipped.as_dict(),
        resumed_from_epoch=resumed_from_epoch,
        run_seconds=float(sum(m.get("seconds", 0.0) for m in progress.metrics)),
        session_epoch_seconds=float(sum(m.get("seconds", 0.0) for m in progress.metrics
                                        if m.get("epoch", 0) > resumed_from_epoch)),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EpochPlan:
    """How the epochs are cut into optimizer steps, and the learning rate of each step."""

    rows: int
    """Training rows per epoch, over all ranks (a small set is repeated up to --epoch-images)."""
    per_rank: int
    """Rows per batch on each process."""
    steps: int
    """Optimizer steps per epoch."""
    warmup: int
    """Warm-up steps at the start of each phase."""
    epochs: int
    head_epochs: int
    lr: float
    schedule: Schedule

    @classmethod
    def of(cls, setup: Setup, epochs: int) -> EpochPlan:
        config, world = setup.config, setup.runtime.world_size
        rows = max(len(setup.y_train), config.epoch_images or 0)
        per_rank = max(1, config.batch_size // world)
        steps = max(1, math.ceil(rows // world / per_rank))  # equal shares: ranks in lockstep
        warmup = int(config.warmup * steps)
        return cls(rows, per_rank, steps, warmup, epochs, config.head_epochs, config.lr,
                   config.schedule)  # fmt: skip

    def lr_at(self, step: int) -> float:
        """The learning rate of global step ``step`` (counted from 0): each phase (the head
        alone for the first ``head_epochs``, then all of it) has its own warm-up and cosine
        decay."""
        epoch = step // self.steps + 1
        first, last = ((0, self.head_epochs) if epoch <= self.head_epochs
                       else (self.head_epochs, self.epochs))  # fmt: skip
        total = (last - first) * self.steps
        return self.lr * lr_factor(step - first * self.steps, self.warmup, total, self.schedule)


def run_loop(
    fit: Fit,
    inputs: Inputs,
    epochs: int,
    run_dir: Path | None,
    reporter: Reporter,
    *,
    early_stopping: bool = True,
    tracker: TensorBoard | None = None,
) -> bool:
    """Train from the epoch after ``fit.progress.epoch`` up to ``epochs``; True if it stopped
    early. Writes metrics.csv, summary.json, weights/best.pt (on improvement) and
    weights/last.pt (every epoch) into ``run_dir`` when given and this is the main process."""
    setup, config = fit.setup, fit.setup.config
    plan = EpochPlan.of(setup, epochs)
    net = fit.learner(inputs)
    first = fit.progress.epoch + 1
    # The one step counter stands where this epoch starts (as last.pt saved it; a run resumed
    # on another number of processes, or from a checkpoint without it, is put there).
    fit.steps = (first - 1) * plan.steps
    for epoch in range(first, epochs + 1):
        started = time.perf_counter()
        # Train: one pass over this process's share of the shuffled rows.
        train_loss, lr = train_one_epoch(fit, net, inputs, plan, epoch, reporter,
                                         say_cost=epoch == first)  # fmt: skip
        # Validate: one global loss and the task's metric (the tree's: the Kaggle RMSE over
        # all labelled cells).
        val_loss, val_metric = fit.validate(inputs.val, setup.y_val, features=inputs.features)
        # Record: the epoch's row, whether it is the best so far, the patience left.
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
               f"val_{setup.model_config.task.metric}": val_metric, "lr": lr,
               "seconds": time.perf_counter() - started}  # fmt: skip
        improved = record_epoch(fit, row, 0 if inputs.features else plan.rows, epochs, reporter)
        # Checkpoints: best on improvement, last every epoch (what --resume continues).
        if run_dir is not None and setup.runtime.is_main:
            save_checkpoints(fit, run_dir, improved, epochs)
        if tracker is not None:
            tracker.epoch(row)
        if early_stopping and config.patience and fit.progress.bad_epochs >= config.patience:
            reporter.log(
                f"Early stop: no improvement for {config.patience} "
                f"epoch{'s' if config.patience != 1 else ''}."
            )
            return True
    return False


def train_one_epoch(
    fit: Fit,
    net: torch.nn.Module,
    inputs: Inputs,
    plan: EpochPlan,
    epoch: int,
    reporter: Reporter,
    *,
    say_cost: bool = False,
) -> tuple[float, float]:
    """One pass over this process's share of the shuffled training rows: the mean training loss
    (over every rank) and the last step's learning rate. ``say_cost``: say after a few batches
    how long an epoch takes."""
    setup, config, runtime = fit.setup, fit.setup.config, fit.setup.runtime
    task = setup.model_config.task
    started = time.perf_counter()
    # Phase: the head alone for the first head_epochs (features frozen), then all of it.
    head_only = epoch <= config.head_epochs
    if config.head_epochs and not fit.model.config.freeze:
        fit.model.features.requires_grad_(not head_only)
    fit.set_mode("head" if head_only else "train")
    # Shuffle (the same order on every rank), then take this rank's share.
    world = runtime.world_size
    order = _shuffled(fit.generator, len(setup.y_train), plan.rows)
    order = order[: plan.rows // world * world][runtime.rank :: world]
    loss_sum, n_batches = torch.zeros((), device=runtime.device), 0
    lr = plan.lr_at(fit.steps)
    with reporter.task(f"Epoch {epoch}/{plan.epochs}", len(order)) as bar:
        for b in range(0, len(order), plan.per_rank):
            idx = np.sort(order[b : b + plan.per_rank])  # sorted: faster cache reads
            # Learning rate of this step: warm-up, then cosine decay; layer-wise scales.
            lr = plan.lr_at(fit.steps)
            for group in fit.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            # Batch: uint8 → [0, 1] floats on the device, augmented as a tensor.
            xb = to_float(batch_of(inputs.train, idx), runtime.device)
            yb = torch.from_numpy(setup.y_train[idx]).to(runtime.device, non_blocking=True)
            if config.augment and not inputs.features:
                if config.augment_kind == AugmentKind.DIHEDRAL:
                    xb = transforms.dihedral_batch(xb, fit.generator)
                else:
                    xb = transforms.augment_batch(xb, fit.generator)
            # Forward, loss over the labelled cells, backward, step, the running average.
            with autocast(runtime.device, config.amp):
                pred = net(xb)
            loss = losses.task_loss(task, config.loss, pred.float(), yb)
            fit.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            fit.optimizer.step()
            fit.steps += 1
            fit.update_average()
            loss_sum += loss.detach()
            n_batches += 1
            bar.advance(len(idx))
            if say_cost and n_batches == _ESTIMATE_AFTER:
                _say_cost(started, plan.steps, plan.epochs - epoch + 1, reporter)
            # Stop a diverged epoch early (alone: distributed ranks step together).
            if not runtime.distributed and n_batches % 50 == 0 and not torch.isfinite(loss_sum):
                break
    total, batches = all_reduce_sums(runtime, float(loss_sum), float(n_batches))
    train_loss = total / max(1.0, batches)
    if not math.isfinite(train_loss):
        raise JobFailedError(
            f"training diverged in epoch {epoch} (loss {train_loss}); the last good "
            f"checkpoint is kept. Lower --lr (now {config.lr:g}) or try --loss mse."
        )
    return train_loss, lr


def record_epoch(
    fit: Fit, row: dict[str, float], images: int, epochs: int, reporter: Reporter
) -> bool:
    """Add an epoch's metrics ``row`` (and the ``images`` it put through the network) to the
    progress; whether it beats the best epoch so far by the one definition of best
    (:func:`galaxyzoo_cli.core.summary.better` on :attr:`Setup.best_by`), which weights/best.pt
    then keeps, and summary.json names. Counts the epochs without improvement."""
    setup, progress = fit.setup, fit.progress
    config, metric = setup.config, f"val_{setup.model_config.task.metric}"
    epoch = int(row["epoch"])
    improved = better(row, progress.best_row(), setup.best_by)
    progress.epoch = epoch
    progress.metrics.append(row)
    progress.train_seconds += row["seconds"]
    progress.images_seen += images
    if improved:
        progress.best_epoch = epoch
        progress.best_val_loss, progress.best_val_rmse = row["val_loss"], row[metric]
    if config.head_epochs and not fit.model.config.freeze and epoch == config.head_epochs + 1:
        progress.bad_epochs = 0  # patience counts in the second phase
    progress.bad_epochs = 0 if improved else progress.bad_epochs + 1
    validation = (
        f"val_loss {row['val_loss']:.5f}  {metric} {row[metric]:.5f}"
        if math.isfinite(row["val_loss"])
        else "no validation split"  # --val-fraction 0: every epoch is kept
    )
    reporter.log(
        f"epoch {epoch:3d}/{epochs}  train_loss {row['train_loss']:.5f}  {validation}  "
        f"{row['seconds']:5.1f}s" + ("  *" if improved else "")
    )
    return improved


def save_checkpoints(fit: Fit, run_dir: Path, improved: bool, epochs: int) -> None:
    """weights/best.pt (when ``improved``), weights/last.pt, metrics.csv and summary.json; a
    failed write (a full disk) says what the run keeps."""
    try:
        fit.save(run_dir, improved)
        _write_summary(fit, run_dir)
    except GalaxyZooError as e:
        e.args = (f"{e} {_kept(fit, run_dir, epochs)}",)
        raise


def _shuffled(generator: torch.Generator, n_train: int, rows: int) -> np.ndarray:
    """One epoch's order of the training rows: a shuffle, repeated (each time another one)
    until it holds ``rows`` rows."""
    perms = [torch.randperm(n_train, generator=generator).numpy()
             for _ in range(math.ceil(rows / max(1, n_train)))]  # fmt: skip
    return np.concatenate(perms)[:rows]


def _say_cost(started: float, steps: int, epochs: int, reporter: Reporter) -> None:
    """The cost, said after the first batches: an epoch's training steps, and the run's."""
    if steps <= 2 * _ESTIMATE_AFTER:
        return  # a short epoch says it itself
    per_epoch = (time.perf_counter() - started) / _ESTIMATE_AFTER * steps
    reporter.log(
        f"About {per_epoch:.0f} s per epoch ({per_epoch * epochs / 60:.1f} min for "
        f"{epochs} epoch{'s' if epochs != 1 else ''}, without validation)."
    )
