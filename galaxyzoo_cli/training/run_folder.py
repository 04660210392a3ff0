"""Run folders and self-describing checkpoints.

``runs/<name>/`` holds config.json (every resolved setting, for people to read: written once,
when the run is created, and never changed), resumes.jsonl (one line per ``--resume``: when, by
which version, the settings it changed with their old and new values, from which epoch, on which
device), metrics.csv (one row per epoch), summary.json (the run's outcome and best epoch:
:mod:`galaxyzoo_cli.core.summary`), status.json, weights/best.pt and weights/last.pt, and what
evaluate, predict and plot add.

A checkpoint is the run's one source of truth: a dict of plain values and state dicts, loadable
with ``torch.load(weights_only=True)``, holding the model's configuration (with its input spec),
the training settings, the data split and the training progress. Nothing reads config.json back.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from galaxyzoo_cli._version import __version__
from galaxyzoo_cli.core.errors import BadInputError, os_error, require_runs
from galaxyzoo_cli.core.files import atomic_path, to_json, write_json_atomic, write_text_atomic
from galaxyzoo_cli.core.settings import TrainConfig
from galaxyzoo_cli.core.summary import read_metrics

if TYPE_CHECKING:
    from galaxyzoo_cli.models import ModelConfig
    from galaxyzoo_cli.models.galaxy_model import GalaxyModel

CHECKPOINT_FORMAT = "galaxyzoo-cli/checkpoint/2"
LEGACY_FORMATS = {"galaxyzoo-cli/checkpoint/1": "0.1"}
"""Older formats still read, and the package versions that wrote them."""
_RENAMED_SINCE_01 = {"galaxynet": "galaxynet-v1"}
"""Models whose 0.1 architecture lives on under another name."""
_STATE_KEYS = ("model_state", "optimizer_state", "rng_state", "steps", "train_state")
METRIC_COLUMNS = ("epoch", "train_loss", "val_loss", "val_rmse", "lr", "seconds")


def create_run_dir(runs_dir: Path, name: str) -> Path:
    """A new, empty folder ``runs_dir/name`` (or ``name-2``, ``name-3``… if taken): never reused."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise BadInputError(
            f"--name {name!r}: use letters, digits, '.', '_' and '-' (no spaces or slashes)."
        )
    if runs_dir.exists() and not runs_dir.is_dir():
        raise BadInputError(f"--runs-dir {runs_dir}: is a file. Give a folder for the runs.")
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        for i in range(1, 10_000):
            path = runs_dir / (name if i == 1 else f"{name}-{i}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            (path / "weights").mkdir()
            return path
    except OSError as e:
        raise os_error(e) from None
    raise BadInputError(f"{runs_dir}: too many runs named {name!r}; choose another --name.")


def check_runs_dir(runs_dir: Path) -> None:
    """Refuse, before any work, a runs folder where no run can be written (read-only, forbidden,
    a file in the way): the same one-line error a failed write would give, minutes earlier.
    Creates nothing: the folder that exists nearest to ``runs_dir`` is the one checked."""
    existing = runs_dir.absolute()
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing == runs_dir.absolute() and not existing.is_dir():
        raise BadInputError(f"--runs-dir {runs_dir}: is a file. Give a folder for the runs.")
    if not existing.is_dir():
        code = errno.ENOTDIR
        raise os_error(OSError(code, os.strerror(code), str(existing)), existing)
    if not os.access(existing, os.W_OK | os.X_OK):
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
        code = errno.EROFS if read_only else errno.EACCES
        raise os_error(OSError(code, os.strerror(code), str(existing)), existing)


def run_dir_of(checkpoint: Path) -> Path:
    """The run folder of a checkpoint: the folder holding its ``weights/`` (or, for a .pt file
    elsewhere, its own folder)."""
    return checkpoint.parent.parent if checkpoint.parent.name == "weights" else checkpoint.parent


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
        return RunRef(run_dir_of(path), path)
    parent = path.parent if str(path.parent) not in ("", ".") else Path("./runs")
    raise BadInputError(f"{path}: no such run folder or checkpoint. See the folders in {parent}.")


def resolve_runs(
    runs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
) -> list[RunRef]:
    """Each RUN's folder and the checkpoint to use (its ``weights/best.pt``, or the file given);
    none at all, or one that is neither, is a :class:`BadInputError` (before any work starts)."""
    return [resolve_run(run) for run in require_runs(runs)]


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    """config.json: the run's settings for people and other tools to read (never read back),
    written once, when the run is created; a resume records itself in resumes.jsonl."""
    write_json_atomic(run_dir / "config.json", {"version": __version__, **config})


RESUMES_FILE = "resumes.jsonl"


def append_resume(run_dir: Path, record: dict[str, Any]) -> None:
    """Add one line (a JSON object) to the run's resumes.jsonl; the file is rewritten whole and
    atomically, so a crash never leaves half a line."""
    path = run_dir / RESUMES_FILE
    try:
        before = path.read_text(encoding="utf-8") if path.is_file() else ""
    except OSError as e:
        raise os_error(e, path) from None
    write_text_atomic(path, before + to_json(record, indent=None) + "\n")


def write_status(run_dir: Path | None, status: str, **extra: Any) -> None:
    """status.json: running (with this process), finished, interrupted or failed; for the
    leaderboard (a run whose process is gone while "running" was killed)."""
    if run_dir is None:
        return
    import socket
    import time

    write_json_atomic(
        run_dir / "status.json",
        {"status": status, "pid": os.getpid(), "host": socket.gethostname(),
         "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra},
    )  # fmt: skip


def write_metrics(run_dir: Path, rows: list[dict[str, float]]) -> None:
    """Rewrite metrics.csv with ``rows`` (atomic: a reader never sees half a file). The columns
    are :data:`METRIC_COLUMNS`, with the task's metric (``val_roc_auc``…) in place of
    ``val_rmse`` for a user's labels."""
    write_csv(run_dir / "metrics.csv", rows, tuple(rows[0]) if rows else METRIC_COLUMNS)


def write_csv(path: Path, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    """A small CSV of numbers, written atomically (integers without a decimal point)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k)) for k in columns})
    write_text_atomic(path, buf.getvalue())


def _fmt(v: float | None) -> str:
    if v is None:
        return ""
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:.6g}"


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


@dataclass
class Progress:
    """How far a training run got: what survives an epoch, and what --resume continues from."""

    epoch: int = 0
    best_val_loss: float = math.inf
    best_val_rmse: float = math.nan
    """The validation metric at the best epoch: the Kaggle RMSE, or a user task's metric."""
    best_epoch: int = 0
    bad_epochs: int = 0
    images_seen: int = 0
    train_seconds: float = 0.0
    metrics: list[dict[str, float]] = field(default_factory=list)
    """One row per epoch (what metrics.csv shows)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def best_row(self) -> dict[str, float] | None:
        """The metrics row of the best epoch (None before there is one)."""
        return next((r for r in self.metrics if int(r["epoch"]) == self.best_epoch), None)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Progress:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class Checkpoint:
    """A loaded checkpoint: what the run is, how it was trained, on what, and how far."""

    path: Path
    run_dir: Path
    model: ModelConfig
    settings: TrainConfig
    data_dir: Path | None
    """The data folder the run was trained on."""
    val_ids: np.ndarray
    """GalaxyIDs of its validation split (for a user's labels: their ids, strings)."""
    progress: Progress
    version: str
    """The galaxyzoo-cli version that wrote it."""
    labels: Path | None
    """The user's labels file a ``finetune`` run learned (None: the Kaggle labels)."""
    state: dict[str, Any]
    """``model_state`` (the weights to use), and in last.pt what continuing needs:
    ``optimizer_state``, ``rng_state``, ``steps`` and, with weight averaging, ``train_state``."""

    def build_model(self) -> GalaxyModel:
        """The model with its weights, in eval mode, on the CPU."""
        from galaxyzoo_cli.models.galaxy_model import create_model

        model = create_model(self.model, pretrained=False)
        model.load_state_dict(self.state["model_state"])
        return model.eval()


def save_checkpoint(
    path: Path,
    model: GalaxyModel,
    settings: TrainConfig,
    *,
    data_dir: Path,
    val_ids: np.ndarray,
    progress: Progress,
    labels: Path | None = None,
    **state: Any,
) -> None:
    """Write a self-describing checkpoint atomically: the last good one survives a crash."""
    import torch

    data: dict[str, Any] = {"data_dir": str(data_dir)}
    if labels is not None:  # a user's labels: their file, and the ids (strings) of the split
        data.update(labels=str(labels), val_ids=[str(i) for i in val_ids])
    else:
        data["val_ids"] = torch.as_tensor(val_ids, dtype=torch.int64)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": __version__,
        "model": model.config.as_dict(),
        "settings": settings.as_dict(),
        "data": data,
        "progress": progress.as_dict(),
        "model_state": model.state_dict(),
        **state,
    }
    nbytes = sum(_tensor_bytes(v) for v in payload.values())
    # Through a file object: a failed write then carries its OSError (a full disk) as context.
    with atomic_path(path, suffix=".pt", size=nbytes) as tmp, tmp.open("wb") as f:
        torch.save(payload, f)


def _tensor_bytes(value: Any) -> int:
    """The bytes of the tensors in a (nested) state dict: about a checkpoint's size on disk."""
    if hasattr(value, "nbytes") and hasattr(value, "dtype"):
        return int(value.nbytes)
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def load_checkpoint(path: Path) -> Checkpoint:
    """Load a checkpoint safely (``weights_only=True``); a bad file is a clear error."""
    import pickle

    import torch

    path = Path(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BadInputError(f"{path}: checkpoint not found.") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        kind = "a pickled object" if "Weights only load failed" in str(e) else type(e).__name__
        raise BadInputError(
            f"{path}: not a readable galaxyzoo-cli checkpoint ({kind}). "
            "Use weights/best.pt or weights/last.pt of a run."
        ) from None
    fmt = raw.get("format") if isinstance(raw, dict) else None
    run_dir = run_dir_of(path)
    if fmt in LEGACY_FORMATS:
        raw = _upgrade_v1(raw, run_dir)
    elif fmt != CHECKPOINT_FORMAT:
        raise BadInputError(
            f"{path}: not a galaxyzoo-cli checkpoint of a known format ({fmt or 'no format tag'}"
            f"; this is galaxyzoo-cli {__version__}, which reads {CHECKPOINT_FORMAT} and "
            f"{', '.join(LEGACY_FORMATS)})."
        )
    from galaxyzoo_cli.models import ModelConfig

    try:
        data = raw["data"]
        return Checkpoint(
            path=path,
            run_dir=run_dir,
            model=ModelConfig.from_dict(raw["model"]),
            settings=TrainConfig.from_saved(raw["settings"]),
            data_dir=Path(data["data_dir"]) if data.get("data_dir") else None,
            val_ids=np.asarray(data["val_ids"], dtype=str if data.get("labels") else np.int64),
            progress=Progress.from_dict(raw["progress"]),
            version=str(raw.get("version", "?")),
            labels=Path(data["labels"]) if data.get("labels") else None,
            state={k: raw[k] for k in _STATE_KEYS if k in raw},
        )
    except (KeyError, TypeError, ValueError) as e:
        raise BadInputError(
            f"{path}: a damaged checkpoint (written by galaxyzoo-cli {raw.get('version', '?')}; "
            f"{type(e).__name__}: {e}). Use another checkpoint of the run."
        ) from None


def _upgrade_v1(raw: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """A version-0.1 checkpoint in today's layout. Its split lived in the run's config.json, which
    is read here, for these old runs only."""
    try:
        data = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError, TypeError):
        data = {"data_dir": None, "val_ids": []}
    m, prep = raw["model"], raw["preprocess"]
    progress = {k: raw[k] for k in Progress.__dataclass_fields__ if k in raw}
    name = _RENAMED_SINCE_01.get(m["name"], m["name"])
    return {
        **raw,
        "settings": {**raw["settings"], "model": name},
        "model": {
            "name": name,
            "head": m["head"],
            "input": {
                "channels": prep["channels"],
                "crop": prep["crop"],
                "size": prep["image_size"] or m["image_size"],
                "mean": m["mean"],
                "std": m["std"],
            },
            "freeze": m["freeze"],
        },
        "data": {"data_dir": data.get("data_dir"), "val_ids": data.get("val_ids", [])},
        "progress": {**progress, "metrics": read_metrics(run_dir)},
    }
