"""``galaxyzoo runs``: one line per run folder, to see which of many runs to keep.

Read from the small files of each run folder, without torch (it answers at once for hundreds of
runs): config.json (the run's creation record, written once: its model, task, date and the epochs
asked), its summary (summary.json, or rebuilt from metrics.csv for runs older than it; see
:func:`galaxyzoo_cli.core.summary.read_summary`: the epochs run, the minutes, and the best epoch,
the one ``weights/best.pt`` keeps, with its figures), status.json (finished, running…) and
eval*.json (what ``evaluate`` measured).
"""

from __future__ import annotations

import math
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.core.files import read_json_object
from galaxyzoo_cli.core.summary import read_summary

SORT_KEYS = ("val_rmse", "eval_rmse", "name", "date", "minutes")


@dataclass
class RunRow:
    name: str
    model: str
    epochs: int
    epochs_asked: int | None
    val_rmse: float
    """The validation RMSE of the best epoch (the one ``weights/best.pt`` keeps: for the Kaggle
    tree, the lowest validation loss; not the lowest RMSE when the loss is not the RMSE's)."""
    eval_rmse: float
    """The best evaluated RMSE (eval*.json on the validation split), with its TTA."""
    eval_tta: int | None
    minutes: float
    date: str
    status: str
    """finished, stopped early, running, interrupted, failed or unknown."""
    task: str = "tree"
    """What the run predicts: ``tree`` (the Kaggle answers) or a finetuned task's kind."""
    val_metric: str = "rmse"
    """A finetuned run's validation metric (roc_auc, accuracy, rmse or loss)."""
    val_best: float = math.nan
    """A finetuned run's value of it at its best epoch (its val_rmse column is then empty)."""


@dataclass
class RunsTable:
    runs_dir: Path
    rows: list[RunRow]
    sort: str

    def as_dict(self) -> dict[str, Any]:
        rows = [
            {
                k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in asdict(r).items()
            }
            for r in self.rows
        ]
        return {"runs_dir": str(self.runs_dir), "sort": self.sort, "runs": rows}

    def summary(self) -> str:
        if not self.rows:
            return f"No runs in {self.runs_dir}."
        head = ("run", "model", "task", "epochs", "best val", "evaluated", "minutes", "date",
                "status")  # fmt: skip
        lines = [head]
        for run in self.rows:
            evaluated = _five_places(run.eval_rmse)
            if evaluated != "–":
                evaluated += f" (tta {run.eval_tta})"
            best = _five_places(run.val_rmse)
            if run.task != "tree":
                best = f"{run.val_metric} {_five_places(run.val_best)}"
            epochs = f"{run.epochs}/{run.epochs_asked or '?'}"
            lines.append((
                run.name, run.model, run.task, epochs, best, evaluated, f"{run.minutes:.1f}",
                run.date[:16].replace("T", " "), run.status,
            ))  # fmt: skip
        widths = [max(len(str(row[i])) for row in lines) for i in range(len(head))]
        return "\n".join(
            "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in lines
        )


def _five_places(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.5f}"


def list_runs(runs_dir: Path = Path("runs"), sort: str = "val_rmse") -> RunsTable:
    """Every run folder of ``runs_dir`` (folders with a config.json), sorted by ``sort``
    (lowest RMSE, newest date, or name/minutes ascending; runs without the figure last)."""
    if sort not in SORT_KEYS:
        raise BadInputError(f"--sort {sort!r}: use one of {', '.join(SORT_KEYS)}.")
    if not runs_dir.is_dir():
        raise BadInputError(
            f"{runs_dir}: no such runs folder. Give the folder that `train --runs-dir` wrote "
            "to as the argument: `galaxyzoo runs RUNS_DIR` (or set GALAXYZOO_RUNS_DIR)."
        )
    folders = sorted(runs_dir.iterdir())
    rows = [_run_row(folder) for folder in folders if (folder / "config.json").is_file()]
    if sort == "date":
        rows.sort(key=lambda r: r.date, reverse=True)
    elif sort == "name":
        rows.sort(key=lambda r: r.name)
    else:
        rows.sort(key=lambda r: (math.isnan(getattr(r, sort)), getattr(r, sort)))
    return RunsTable(runs_dir, rows, sort)


def _run_row(run_dir: Path) -> RunRow:
    config = read_json_object(run_dir / "config.json")
    summary = read_summary(run_dir) or {}
    best = summary.get("best") or {}  # the best epoch's metrics.csv row
    model = _mapping(config.get("model"))
    task = _mapping(config.get("task") or model.get("task"))
    kind = str(task.get("kind", "tree"))
    metric = "rmse"
    if kind != "tree":  # a finetuned run: its metric column (val_roc_auc, …)
        metric = next((k[4:] for k in best if k.startswith("val_") and k != "val_loss"), "loss")
    best_eval, tta = math.inf, None
    for path in run_dir.glob("eval*.json"):
        found = read_json_object(path)
        value = found.get("rmse") if kind == "tree" else found.get("value")
        if kind != "tree" and isinstance(value, float) and metric in ("roc_auc", "accuracy"):
            value = -value  # higher is better: keep the best as the lowest, shown positive
        if found.get("split") == "val" and isinstance(value, float) and not value >= best_eval:
            best_eval, tta = value, found.get("tta")
    settings = _mapping(config.get("settings"))
    return RunRow(
        name=run_dir.name,
        model=str(model.get("name", "?")),
        epochs=int(summary.get("epochs_run") or 0),
        epochs_asked=summary.get("epochs_asked") or settings.get("epochs"),
        val_rmse=_number(best.get("val_rmse")),
        eval_rmse=abs(best_eval) if math.isfinite(best_eval) else math.nan,
        eval_tta=tta,
        minutes=_number(summary.get("train_seconds"), 0.0) / 60,
        date=str(config.get("created", "")),
        status=_status(run_dir),
        task=kind,
        val_metric=metric,
        val_best=_number(best.get(f"val_{metric}")) if kind != "tree" else math.nan,
    )


def _number(value: Any, missing: float = math.nan) -> float:
    """A figure read from JSON (None, or not a number: ``missing``)."""
    return float(value) if isinstance(value, (int, float)) else missing


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _status(run_dir: Path) -> str:
    status = read_json_object(run_dir / "status.json")
    state = status.get("status", "unknown")
    if state == "finished" and status.get("stopped_early"):
        return "stopped early"
    if state == "running" and status.get("host") == socket.gethostname():
        if not _alive(int(status.get("pid", -1))):
            return "interrupted"  # the process is gone: killed
    return str(state)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
