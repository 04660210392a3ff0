"""The one definition of a run's best epoch, and summary.json (read back or rebuilt)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from galaxyzoo_cli.core.summary import (
    best_row,
    better,
    build_summary,
    criterion,
    read_summary,
    write_summary,
)

NAN = math.nan


def test_criterion_tree_by_loss_task_by_metric() -> None:
    assert criterion("rmse", tree=True) == "val_loss"
    assert criterion("roc_auc", tree=False) == "val_roc_auc"
    assert criterion("rmse", tree=False) == "val_rmse"  # fraction targets: their RMSE
    assert criterion("roc_auc", tree=False, monitor="loss") == "val_loss"
    assert criterion("loss", tree=False) == "val_loss"


def test_better_by_loss_metric_and_ties() -> None:
    a = {"epoch": 1, "val_loss": 0.5, "val_roc_auc": 0.80}
    b = {"epoch": 2, "val_loss": 0.4, "val_roc_auc": 0.79}
    c = {"epoch": 3, "val_loss": 0.3, "val_roc_auc": 0.80}
    assert better(b, a, "val_loss") and not better(a, b, "val_loss")
    assert better(a, b, "val_roc_auc") and not better(b, a, "val_roc_auc")  # higher wins
    assert better(c, a, "val_roc_auc")  # a tie on the metric: the lower loss
    assert not better(a, c, "val_roc_auc")
    assert best_row([a, b, c], "val_roc_auc") is c
    assert best_row([a, b, c], "val_loss") is c
    assert best_row([b, a], "val_rmse") is b  # RMSE: lower is better (by name)


def test_no_validation_keeps_the_newest_and_nan_metric_falls_back_to_loss() -> None:
    rows = [{"epoch": e, "val_loss": NAN, "val_rmse": NAN} for e in (1, 2, 3)]
    assert best_row(rows, "val_loss")["epoch"] == 3  # type: ignore[index]
    x = {"epoch": 1, "val_loss": 0.2, "val_roc_auc": NAN}
    y = {"epoch": 2, "val_loss": 0.3, "val_roc_auc": NAN}
    assert best_row([x, y], "val_roc_auc") is x
    # An epoch whose validation gave no loss never replaces one that did.
    z = {"epoch": 3, "val_loss": NAN, "val_roc_auc": NAN}
    assert not better(z, x, "val_loss") and not better(z, x, "val_roc_auc")
    assert best_row([x, z], "val_loss") is x and better(x, z, "val_loss")


def test_summary_written_read_and_rebuilt_from_metrics_csv(tmp_path: Path) -> None:
    rows = [
        {"epoch": 1.0, "train_loss": 0.05, "val_loss": 0.04, "val_rmse": 0.20, "seconds": 2.0},
        {"epoch": 2.0, "train_loss": 0.03, "val_loss": 0.03, "val_rmse": 0.17, "seconds": 3.0},
        {"epoch": 3.0, "train_loss": 0.02, "val_loss": 0.035, "val_rmse": 0.16, "seconds": 2.5},
    ]
    s = build_summary(rows, "val_loss", epochs_asked=5)
    assert (s["best_epoch"], s["epochs_run"], s["train_seconds"]) == (2, 3, 7.5)
    assert s["best"]["val_rmse"] == 0.17  # the kept checkpoint's figure, not the lowest RMSE
    write_summary(tmp_path, s)
    assert read_summary(tmp_path) == json.loads((tmp_path / "summary.json").read_text())
    # An older run: no summary.json, rebuilt from metrics.csv and config.json the same way.
    old = tmp_path / "old"
    old.mkdir()
    (old / "metrics.csv").write_text(
        "epoch,train_loss,val_loss,val_rmse,lr,seconds\n"
        "1,0.05,0.04,0.20,0.001,2\n2,0.03,0.03,0.17,0.001,3\n3,0.02,0.035,0.16,0.0,2.5\n"
    )
    (old / "config.json").write_text(json.dumps({"settings": {"epochs": 5}}))
    rebuilt = read_summary(old)
    assert rebuilt is not None
    assert (rebuilt["best_epoch"], rebuilt["epochs_asked"], rebuilt["best_by"]) == (
        2,
        5,
        "val_loss",
    )
    assert read_summary(tmp_path / "missing") is None
