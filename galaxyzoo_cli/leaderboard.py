"""``galaxyzoo runs``: one line per run folder, to see which of many runs to keep.

Read from what each run folder shows (config.json, metrics.csv, status.json, eval*.json), without
torch: it answers at once for hundreds of runs.
"""

from __future__ import annotations

import json
import math
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from galaxyzoo_cli.errors import BadInputError
from galaxyzoo_cli.runs import read_metrics

SORT_KEYS = ("val_rmse", "eval_rmse", "name", "date", "minutes")


@dataclass
class RunRow:
    name: str
    model: str
    epochs: int
    epochs_asked: int | None
    val_rmse: float
    """Best validation RMSE during training."""
    eval_rmse: float
    """The best evaluated RMSE (eval*.json on the validation split), with its TTA."""
    eval_tta: int | None
    minutes: float
    date: str
    status: str
    """finished, stopped early, running, interrupted, failed or unknown."""


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
        head = ("run", "model", "epochs", "best val", "evaluated", "minutes", "date", "status")
        lines = [head]
        for r in self.rows:
            evaluated = "–" if math.isnan(r.eval_rmse) else f"{r.eval_rmse:.5f} (tta {r.eval_tta})"
            lines.append((
                r.name, r.model, f"{r.epochs}/{r.epochs_asked or '?'}",
                "–" if math.isnan(r.val_rmse) else f"{r.val_rmse:.5f}", evaluated,
                f"{r.minutes:.1f}", r.date[:16].replace("T", " "), r.status,
            ))  # fmt: skip
        widths = [max(len(str(row[i])) for row in lines) for i in range(len(head))]
        return "\n".join(
            "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in lines
        )


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
    rows = [_row(d) for d in sorted(runs_dir.iterdir()) if (d / "config.json").is_file()]
    if sort == "date":
        rows.sort(key=lambda r: r.date, reverse=True)
    elif sort == "name":
        rows.sort(key=lambda r: r.name)
    else:
        rows.sort(key=lambda r: (math.isnan(getattr(r, sort)), getattr(r, sort)))
    return RunsTable(runs_dir, rows, sort)


def _row(run_dir: Path) -> RunRow:
    config = _json(run_dir / "config.json")
    metrics = read_metrics(run_dir)
    val = [m["val_rmse"] for m in metrics if not math.isnan(m.get("val_rmse", math.nan))]
    best_eval, tta = math.nan, None
    for path in run_dir.glob("eval*.json"):
        found = _json(path)
        rmse = found.get("rmse")
        if found.get("split") == "val" and isinstance(rmse, float) and not rmse >= best_eval:
            best_eval, tta = rmse, found.get("tta")
    return RunRow(
        name=run_dir.name,
        model=str(config.get("model", {}).get("name", "?")),
        epochs=len(metrics),
        epochs_asked=config.get("settings", {}).get("epochs"),
        val_rmse=min(val) if val else math.nan,
        eval_rmse=best_eval,
        eval_tta=tta,
        minutes=sum(m.get("seconds", 0.0) for m in metrics) / 60,
        date=str(config.get("created", "")),
        status=_status(run_dir),
    )


def _json(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _status(run_dir: Path) -> str:
    status = _json(run_dir / "status.json")
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
