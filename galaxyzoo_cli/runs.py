"""Run folders and self-describing checkpoints.

``runs/<name>/`` holds config.json (every resolved setting), metrics.csv (one row per epoch),
weights/best.pt and weights/last.pt, and what evaluate, predict and plot add. A checkpoint is a
dict of plain values and state dicts, loadable with ``torch.load(weights_only=True)`` and enough
to rebuild its model without the original command line.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from galaxyzoo_cli import __version__
from galaxyzoo_cli.data import Preprocess
from galaxyzoo_cli.errors import BadInputError
from galaxyzoo_cli.files import atomic_path, write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    from galaxyzoo_cli.models import GalaxyModel

CHECKPOINT_FORMAT = "galaxyzoo-cli/checkpoint/1"
METRIC_COLUMNS = ("epoch", "train_loss", "val_loss", "val_rmse", "lr", "seconds")


def create_run_dir(runs_dir: Path, name: str) -> Path:
    """A new, empty folder ``runs_dir/name`` (or ``name-2``, ``name-3``… if taken): never reused."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise BadInputError(
            f"--name {name!r}: use letters, digits, '.', '_' and '-' (no spaces or slashes)."
        )
    runs_dir.mkdir(parents=True, exist_ok=True)
    for i in range(1, 10_000):
        path = runs_dir / (name if i == 1 else f"{name}-{i}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        (path / "weights").mkdir()
        return path
    raise BadInputError(f"{runs_dir}: too many runs named {name!r}; choose another --name.")


@dataclass(frozen=True)
class RunRef:
    """A run folder and the checkpoint to use from it."""

    run_dir: Path
    checkpoint: Path


def resolve_run(arg: str | os.PathLike[str], prefer: str = "best") -> RunRef:
    """Accept a run folder (its ``weights/<prefer>.pt``) or a checkpoint file inside one."""
    path = Path(arg)
    if path.is_dir():
        ckpt = path / "weights" / f"{prefer}.pt"
        if not ckpt.is_file():
            raise BadInputError(
                f"{path}: not a run folder (no weights/{prefer}.pt). "
                "Give a folder made by `galaxyzoo train`, or a .pt file inside one."
            )
        return RunRef(path, ckpt)
    if path.is_file():
        run_dir = path.parent.parent if path.parent.name == "weights" else path.parent
        return RunRef(run_dir, path)
    raise BadInputError(f"{path}: no such run folder or checkpoint. See the folders in ./runs.")


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    write_json_atomic(run_dir / "config.json", {"version": __version__, **config})


def read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.json"
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise BadInputError(
            f"{path}: missing. Give a run folder made by `galaxyzoo train`."
        ) from None
    except json.JSONDecodeError as e:
        raise BadInputError(f"{path}: not valid JSON ({e}).") from None


def write_metrics(run_dir: Path, rows: list[dict[str, float]]) -> None:
    """Rewrite metrics.csv with ``rows`` (atomic: a reader never sees half a file)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k)) for k in METRIC_COLUMNS})
    write_text_atomic(run_dir / "metrics.csv", buf.getvalue())


def _fmt(v: float | None) -> str:
    if v is None:
        return ""
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:.6g}"


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [
            {k: float(v) if v not in ("", None) else float("nan") for k, v in row.items()}
            for row in csv.DictReader(f)
        ]


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


def save_checkpoint(path: Path, model: GalaxyModel, prep: Preprocess, **extra: Any) -> None:
    """Write a self-describing checkpoint atomically: the last good one survives a crash."""
    import torch

    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": __version__,
        "model": model.config.as_dict(),
        "preprocess": prep.as_dict(),
        "model_state": model.state_dict(),
        **extra,
    }
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``); a bad file is a clear error."""
    import pickle

    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BadInputError(f"{path}: checkpoint not found.") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise BadInputError(
            f"{path}: not a readable galaxyzoo-cli checkpoint ({first}). "
            "Use weights/best.pt or weights/last.pt of a run."
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise BadInputError(
            f"{path}: not a galaxyzoo-cli checkpoint (no '{CHECKPOINT_FORMAT}' format tag)."
        )
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> tuple[GalaxyModel, Preprocess]:
    """Rebuild the model (architecture + weights, eval mode) and its preprocessing."""
    from galaxyzoo_cli.models import ModelConfig, create_model

    model = create_model(ModelConfig.from_dict(ckpt["model"]), pretrained=False)
    model.load_state_dict(ckpt["model_state"])
    model.eval()
    return model, Preprocess.from_dict(ckpt["preprocess"])
