"""Training: :func:`train`, :func:`resume` and :func:`select_init`.

Read :func:`train` top to bottom: setup (device, seed, settings and the model's input resolved
once, images decoded once) → the model → the run folder → the loop → the best weights. The loop
itself is :meth:`galaxyzoo_cli.fit.Fit.run`.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from galaxyzoo_cli.errors import BadInputError, GalaxyZooError, Interrupted
from galaxyzoo_cli.fit import Fit, Setup, prepare
from galaxyzoo_cli.metrics import column_means, kaggle_rmse
from galaxyzoo_cli.progress import SILENT, Reporter
from galaxyzoo_cli.runs import (
    Checkpoint,
    check_runs_dir,
    create_run_dir,
    load_checkpoint,
    resolve_run,
    save_checkpoint,
    write_config,
    write_csv,
    write_status,
)
from galaxyzoo_cli.settings import RESUMABLE, TrainConfig
from galaxyzoo_cli.signals import stop_on_signals
from galaxyzoo_cli.tracking import open_tracker

METRIC_NAMES = {"rmse": "RMSE", "roc_auc": "ROC AUC", "accuracy": "accuracy", "loss": "loss"}


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
# Public entry points
# ---------------------------------------------------------------------------------------------


@stop_on_signals()
def train(
    config: TrainConfig | None = None,
    *,
    data_dir: Path = Path("data"),
    runs_dir: Path = Path("runs"),
    reporter: Reporter = SILENT,
) -> TrainResult:
    """Train one model into a new run folder under ``runs_dir`` (never an existing one)."""
    start = time.perf_counter()
    check_runs_dir(runs_dir)  # before minutes of decoding, not after
    # Setup: device and rank, seed, settings and input resolved once, images decoded once.
    setup, reporter = prepare(config or TrainConfig(), data_dir, reporter)
    # The model, its optimizer and random generator.
    fit = Fit(setup, seed=setup.config.seed)
    # The run folder, written by the main process only.
    run_dir = _new_run(runs_dir, setup, reporter, command="train")
    # The loop up to the last epoch (or an early stop), then the best epoch's weights.
    return _fit_to_the_end(fit, run_dir, start, reporter)


@stop_on_signals()
def resume(
    run: str | os.PathLike[str],
    *,
    reporter: Reporter = SILENT,
    **changes: Any,
) -> TrainResult:
    """Continue a run in place from its weights/last.pt, up to ``epochs`` in total.

    ``changes`` may set the options in :data:`galaxyzoo_cli.settings.RESUMABLE` (``None`` keeps
    the run's own); everything else, the data and the split are the run's.
    """
    start = time.perf_counter()
    other = sorted(k for k, v in changes.items() if v is not None and k not in RESUMABLE)
    if other:
        names = ", ".join("--" + k.replace("_", "-") for k in other)
        raise BadInputError(
            f"--resume {run}: {names} cannot change when continuing a run (it may change: "
            f"{', '.join('--' + k for k in RESUMABLE)}). Start a new run to change them."
        )
    ckpt: Checkpoint = load_checkpoint(resolve_run(run, prefer="last").checkpoint)
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
    setup, reporter = prepare(
        config, ckpt.data_dir, reporter, val_ids=ckpt.val_ids, model_config=ckpt.model
    )
    fit = Fit(setup, seed=config.seed, load_pretrained=False)
    fit.restore(ckpt.state, ckpt.progress)
    fit.saved_epoch = ckpt.progress.epoch
    if setup.runtime.is_main:
        _write_run_config(ckpt.run_dir, setup, command="train")
    reporter.log(f"Resuming {ckpt.run_dir} at epoch {ckpt.progress.epoch + 1} of {config.epochs}.")
    return _fit_to_the_end(
        fit, ckpt.run_dir, start, reporter, resumed_from_epoch=ckpt.progress.epoch
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
) -> TrainResult:
    """Short trainings from ``trials`` fresh initialisations; keep the best; train it on.

    Trial ``k`` is seeded with ``seed + k``. The best trial (lowest validation loss) is kept as a
    deep copy of its weights and optimizer state (saved as weights/init.pt), then trained on to
    ``config.epochs`` epochs in total. Every trial is recorded in trials.csv.
    """
    start = time.perf_counter()
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
    setup, reporter = prepare(config, data_dir, reporter)
    extra = {"trials": trials, "trial_epochs": trial_epochs}
    run_dir = _new_run(runs_dir, setup, reporter, command="select-init", **extra)

    records: list[dict[str, float]] = []
    best: dict[str, Any] = {}
    for k in range(1, trials + 1):
        trial_start, seed = time.perf_counter(), setup.config.seed + k
        reporter.log(f"Trial {k}/{trials} (seed {seed})")
        fit = Fit(setup, seed)
        fit.run(trial_epochs, None, reporter, early_stopping=False)
        last = fit.progress.metrics[-1]
        record = {
            "trial": k,
            "seed": seed,
            "val_loss": last["val_loss"],
            "val_rmse": last["val_rmse"],
            "seconds": time.perf_counter() - trial_start,
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
    fit = Fit(setup, setup.config.seed, load_pretrained=False)
    fit.restore(best, best["progress"])
    if run_dir is not None:
        save_checkpoint(
            run_dir / "weights" / "init.pt", fit.averaged, setup.config,
            data_dir=data_dir.resolve(), val_ids=setup.val_ids, progress=fit.progress,
        )  # fmt: skip
    return _fit_to_the_end(fit, run_dir, start, reporter, trials=records)


# ---------------------------------------------------------------------------------------------
# Run folder and result
# ---------------------------------------------------------------------------------------------


def _new_run(runs_dir: Path, setup: Setup, reporter: Reporter, **extra: Any) -> Path | None:
    """A new run folder with its config.json (on the main process; None elsewhere)."""
    if not setup.runtime.is_main:
        return None
    name = setup.config.name or setup.model_config.name.replace("/", "-")
    run_dir = create_run_dir(runs_dir, name)
    _write_run_config(run_dir, setup, **extra)
    reporter.log(f"Run folder: {run_dir}")
    return run_dir


def _write_run_config(run_dir: Path, setup: Setup, **extra: Any) -> None:
    """config.json: every resolved setting, for people to read (checkpoints hold the truth)."""
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
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )


def _fit_to_the_end(
    fit: Fit,
    run_dir: Path | None,
    start: float,
    reporter: Reporter,
    trials: list[dict[str, float]] | None = None,
    resumed_from_epoch: int = 0,
) -> TrainResult:
    """Train up to the configured epochs, put the best epoch's weights back, end the runtime."""
    s = fit.setup
    tracker = open_tracker(s.config.log, run_dir)
    write_status(run_dir, "running")
    try:
        stopped = fit.run(s.config.epochs, run_dir, reporter, tracker=tracker)
    except BaseException as e:
        # Best effort: on a full disk the status cannot be written, and the error that stopped
        # the run is the one to report.
        with contextlib.suppress(GalaxyZooError, OSError):
            write_status(run_dir, "interrupted" if isinstance(e, Interrupted) else "failed")
        raise
    write_status(run_dir, "finished", stopped_early=stopped)
    if tracker is not None and run_dir is not None:
        from galaxyzoo_cli.figures import RunData, loss_figure

        metrics = fit.progress.metrics
        curves = RunData(run_dir.name, run_dir, s.config.loss.value, metrics, None, None, {})
        tracker.finish(loss_figure(curves))
    if run_dir is not None and (run_dir / "weights" / "best.pt").is_file():
        best = load_checkpoint(run_dir / "weights" / "best.pt")
        fit.model.load_state_dict(best.state["model_state"])
    s.runtime.close()
    p = fit.progress
    baseline = math.nan
    if len(s.y_val) and s.model_config.task.is_tree:
        means = column_means(s.y_train)
        baseline = kaggle_rmse(np.broadcast_to(means, s.y_val.shape), s.y_val)
    return TrainResult(
        run_dir=run_dir or Path(),
        model=s.model_config.name,
        epochs_run=p.epoch,
        best_epoch=p.best_epoch,
        best_val_loss=p.best_val_loss,
        best_val_rmse=p.best_val_rmse,
        baseline_val_rmse=baseline,
        n_train=len(s.y_train),
        n_val=len(s.y_val),
        seconds=time.perf_counter() - start,
        images=p.images_seen,
        images_per_second=p.images_seen / max(p.train_seconds, 1e-9),
        stopped_early=stopped,
        device=str(s.runtime.device),
        metric=s.model_config.task.metric,
        trials=trials or [],
        skipped=s.skipped.as_dict(),
        resumed_from_epoch=resumed_from_epoch,
        run_seconds=float(sum(m.get("seconds", 0.0) for m in p.metrics)),
        session_epoch_seconds=float(sum(m.get("seconds", 0.0) for m in p.metrics
                                        if m.get("epoch", 0) > resumed_from_epoch)),
    )  # fmt: skip
