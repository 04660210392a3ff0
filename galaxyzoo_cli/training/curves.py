"""A run's training curves (loss, and the validation metric, per epoch), drawn with matplotlib
(imported lazily, headless Agg backend): for the experiment tracker at the end of training, and
for ``plot`` and ``report`` (:mod:`galaxyzoo_cli.outputs.drawing`), with the look they share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def pyplot() -> Any:
    """matplotlib.pyplot on the headless Agg backend, imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


STYLE: dict[str, Any] = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "figure.titlesize": 13,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
TRAIN_COLOR, VAL_COLOR = "#4C72B0", "#DD8452"


def column(metrics: list[dict[str, float]], key: str) -> np.ndarray:
    """One column of metrics.csv rows as floats (NaN where a row lacks it)."""
    return np.array([row.get(key, np.nan) for row in metrics], dtype=np.float64)


METRICS = {"val_roc_auc": "ROC AUC", "val_accuracy": "accuracy", "val_rmse": "RMSE"}
"""Validation metrics of metrics.csv: the tree's RMSE, or a finetuned task's."""


def val_metric(metrics: list[dict[str, float]]) -> str:
    """The validation metric column of a run's metrics (``val_rmse`` for the tree)."""
    return next((k for k in (metrics[0] if metrics else {}) if k in METRICS), "val_rmse")


def curves_figure(
    name: str, metrics: list[dict[str, float]], loss_name: str = "", best: int | None = None
) -> Figure:
    """Training and validation loss (left) and the validation metric (right) per epoch of a
    run's metrics.csv rows ``metrics``; ``best``: the row of its best epoch, marked."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    epoch = column(metrics, "epoch")
    marker = "o" if len(epoch) <= 40 else None
    with plt.rc_context(STYLE):
        fig, (ax_loss, ax_rmse) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
        for key, label, color in (
            ("train_loss", "training", TRAIN_COLOR),
            ("val_loss", "validation", VAL_COLOR),
        ):
            ax_loss.plot(epoch, column(metrics, key), marker=marker, label=label, color=color)
        key = val_metric(metrics)
        rmse = column(metrics, key)
        ax_rmse.plot(epoch, rmse, marker=marker, color=VAL_COLOR,
                     label=f"validation {METRICS[key]}")  # fmt: skip
        if best is not None:
            for ax in (ax_loss, ax_rmse):
                ax.axvline(
                    epoch[best], color="0.4", ls="--", lw=1, label=f"best epoch {epoch[best]:g}"
                )
            if np.isfinite(rmse[best]):
                ax_rmse.annotate(
                    f"{rmse[best]:.4f}",
                    (epoch[best], rmse[best]),
                    xytext=(6, 8),
                    textcoords="offset points",
                    fontsize=9,
                )
        ylabel = f"loss ({loss_name})" if loss_name else "loss"
        ax_loss.set(title="Loss per epoch", xlabel="epoch", ylabel=ylabel)
        title = "RMSE (the Kaggle metric)" if key == "val_rmse" else METRICS[key]
        ax_rmse.set(title=f"Validation {title}", xlabel="epoch", ylabel=METRICS[key])
        for ax in (ax_loss, ax_rmse):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend()
        fig.suptitle(f"{name}: training curves")
    return fig
