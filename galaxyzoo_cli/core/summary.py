"""A run's outcome in one small file, and the one definition of its best epoch (no torch).

``summary.json`` sits beside ``config.json`` in every run folder. Training rewrites it with every
checkpoint (so it always describes the checkpoints kept) and once more at the end; ``runs``,
``plot`` and ``report`` read it instead of working the outcome out again. Runs written before it
existed get the same record from their ``metrics.csv`` (:func:`read_summary`).

"Best" has one definition, :func:`better`: the epoch whose weights ``weights/best.pt`` keeps.
The Kaggle tree (and a run told ``--monitor loss``) is judged by the validation loss; a user's
task by its metric (ROC AUC, accuracy: higher; RMSE: lower), ties broken by the loss. Without a
validation split every epoch is better than the one before (the last one is kept).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from galaxyzoo_cli.core.files import read_json_object, write_json_atomic
from galaxyzoo_cli.core.tasks import HIGHER_IS_BETTER

SUMMARY_FILE = "summary.json"
SUMMARY_FORMAT = 1


def criterion(metric: str, *, tree: bool, monitor: str = "metric") -> str:
    """The metrics.csv column that picks the best epoch: ``val_loss`` for the Kaggle tree, for
    ``monitor="loss"`` and for a task without one metric; else ``val_<metric>``."""
    if tree or monitor == "loss" or metric == "loss":
        return "val_loss"
    return f"val_{metric}"


def higher_is_better(column: str) -> bool:
    """Whether a metrics.csv column (``val_<metric>``) is better higher."""
    return column.removeprefix("val_") in HIGHER_IS_BETTER


def _value(row: Mapping[str, float] | None, column: str) -> float:
    value = math.nan if row is None else row.get(column, math.nan)
    return float(value) if value is not None else math.nan


def better(candidate: Mapping[str, float], best: Mapping[str, float] | None, by: str) -> bool:
    """Whether the epoch ``candidate`` (a metrics.csv row) beats ``best`` (None: none yet).

    Judged by column ``by`` (higher or lower is better by its name); where it is undefined (NaN)
    by the validation loss; where that is undefined too (no validation split), the newer epoch
    wins, but an epoch without a loss never beats one with. Ties on ``by`` go to the lower
    loss."""
    if best is None:
        return True
    new, old = _value(candidate, by), _value(best, by)
    if math.isnan(new) or math.isnan(old):
        if by == "val_loss":
            return math.isnan(old)  # no validation: the newest epoch is kept
        return better(candidate, best, "val_loss")
    if new == old:
        return by != "val_loss" and _value(candidate, "val_loss") < _value(best, "val_loss")
    return new > old if higher_is_better(by) else new < old


def best_row(rows: Iterable[Mapping[str, float]], by: str) -> Mapping[str, float] | None:
    """The best epoch's row by :func:`better` (the earliest of equals), None if there is none."""
    best: Mapping[str, float] | None = None
    for row in rows:
        if better(row, best, by):
            best = row
    return best


def build_summary(
    rows: Sequence[Mapping[str, float]],
    by: str,
    *,
    epochs_asked: int | None,
    stopped_early: bool = False,
    train_seconds: float | None = None,
    images_seen: int | None = None,
) -> dict[str, Any]:
    """The summary of a run whose metrics.csv rows are ``rows``."""
    best = best_row(rows, by)
    return {
        "format": SUMMARY_FORMAT,
        "epochs_run": int(rows[-1]["epoch"]) if rows else 0,
        "epochs_asked": epochs_asked,
        "stopped_early": stopped_early,
        "best_by": by,
        "best_epoch": int(best["epoch"]) if best is not None else None,
        "best": {k: _json_number(v) for k, v in best.items()} if best is not None else None,
        "train_seconds": train_seconds
        if train_seconds is not None
        else math.fsum(s for r in rows if not math.isnan(s := _value(r, "seconds"))),
        "images_seen": images_seen,
    }


def _json_number(value: float) -> float | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    """summary.json, written atomically."""
    write_json_atomic(run_dir / SUMMARY_FILE, summary)


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The run's summary.json; for a run older than it, the same record from its metrics.csv
    and config.json (None when neither says anything)."""
    summary = read_json_object(run_dir / SUMMARY_FILE)
    if summary.get("format") == SUMMARY_FORMAT:
        return summary
    if not (run_dir / "metrics.csv").is_file():
        return None
    rows = read_metrics(run_dir)
    config = read_json_object(run_dir / "config.json")
    settings = config.get("settings", {}) if isinstance(config.get("settings"), dict) else {}
    metric = next((k[4:] for k in (rows[0] if rows else {}) if k.startswith("val_")
                   and k != "val_loss"), "rmse")  # fmt: skip
    model = config.get("model")
    task = model.get("task") if isinstance(model, dict) else None
    task = task if isinstance(task, dict) else {}
    tree = not task.get("targets")  # 0.1/0.2 runs have no task: the tree
    by = criterion(metric, tree=tree, monitor=str(settings.get("monitor", "metric")))
    epochs = settings.get("epochs")
    return build_summary(rows, by, epochs_asked=epochs if isinstance(epochs, int) else None)


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    """The rows of the run's metrics.csv (none when it has none); an empty or unreadable cell is
    NaN."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [
            {k: _float(v) for k, v in row.items() if k is not None} for row in csv.DictReader(f)
        ]


def _float(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan
