"""Optional experiment tracking: ``train --log tensorboard`` writes every epoch's losses, RMSE and
learning rate, and the learning-curve figure at the end, into ``RUN/tensorboard/``.

The run folder's metrics.csv stays the record; a tracker only mirrors it for the tools people
already watch. TensorBoard comes with the extra ``galaxyzoo-cli[tensorboard]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.core.settings import Tracker

_SCALARS = {
    "train_loss": "loss/train",
    "val_loss": "loss/validation",
    "val_rmse": "rmse/validation",
    "lr": "learning_rate",
}


def check_available(kind: Tracker) -> None:
    """Fail before training when the chosen tracker's package is missing."""
    if kind == Tracker.TENSORBOARD:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise BadInputError(
                "--log tensorboard needs TensorBoard: pip install 'galaxyzoo-cli[tensorboard]'"
            ) from None


class TensorBoard:
    """Scalars per epoch, and the curves figure when the run ends."""

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.folder = run_dir / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.folder))

    def epoch(self, row: dict[str, float]) -> None:
        step = int(row["epoch"])
        for key, tag in _SCALARS.items():
            if row.get(key) is not None and row[key] == row[key]:  # NaN: nothing to draw
                self.writer.add_scalar(tag, row[key], step)
        self.writer.flush()

    def finish(self, figure: Any) -> None:
        self.writer.add_figure("curves", figure, close=True)
        self.writer.close()


def open_tracker(kind: Tracker, run_dir: Path | None) -> TensorBoard | None:
    """The tracker of a run (None: none chosen, or not the main process)."""
    if kind == Tracker.NONE or run_dir is None:
        return None
    return TensorBoard(run_dir)
