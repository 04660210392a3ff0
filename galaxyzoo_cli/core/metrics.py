"""The Kaggle metric and per-question figures, over labelled cells only.

The Kaggle score is ONE root of the mean squared error over all labelled (galaxy, answer) cells;
it is not the mean of per-batch RMSEs. :class:`ErrorSum` accumulates it exactly across batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from galaxyzoo_cli.core.schema import COLUMNS, MEANINGFUL, QUESTIONS, meaningful


@dataclass
class ErrorSum:
    """Running sum of squared errors and labelled-cell count; ``rmse`` is the Kaggle metric."""

    sse: float = 0.0
    count: int = 0

    def add(self, pred: np.ndarray, target: np.ndarray) -> None:
        valid = ~np.isnan(target)
        diff = np.asarray(pred, dtype=np.float64)[valid] - np.asarray(target, np.float64)[valid]
        self.sse += float(diff @ diff)
        self.count += int(valid.sum())

    @property
    def rmse(self) -> float:
        return float(np.sqrt(self.sse / self.count)) if self.count else float("nan")


def kaggle_rmse(pred: np.ndarray, target: np.ndarray) -> float:
    """sqrt(mean over labelled cells of (pred - target)^2); NaN if no cell is labelled."""
    acc = ErrorSum()
    acc.add(pred, target)
    return acc.rmse


@dataclass(frozen=True)
class QuestionScore:
    number: int
    rmse: float
    accuracy: float
    """Fraction of galaxies where the predicted top answer is the voters' top answer."""
    n_accuracy: int
    """Galaxies counted for accuracy: question reached by most volunteers
    (:func:`galaxyzoo_cli.core.schema.meaningful`) and fully labelled."""
    n_cells: int


def question_scores(pred: np.ndarray, target: np.ndarray) -> list[QuestionScore]:
    """RMSE and top-answer accuracy per question.

    Accuracy compares, per galaxy, the argmax over that question's answers (never over the
    batch), counting only galaxies whose answers are all labelled and where most volunteers
    reached the question (the answer leading to it is at least 0.5,
    :func:`galaxyzoo_cli.core.schema.meaningful`): where a few did, the top answer is a handful of
    votes, and Q8's "accuracy" over every galaxy anyone sent to it read as failure.
    """
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    was_reached = meaningful(target)
    scores = []
    for i, q in enumerate(QUESTIONS):
        p, t = pred[:, q.slice], target[:, q.slice]
        rmse = kaggle_rmse(p, t)
        counted = ~np.isnan(t).any(axis=1) & was_reached[:, i]
        hits = p[counted].argmax(axis=1) == t[counted].argmax(axis=1)
        scores.append(
            QuestionScore(
                number=q.number,
                rmse=rmse,
                accuracy=float(hits.mean()) if hits.size else float("nan"),
                n_accuracy=int(counted.sum()),
                n_cells=int((~np.isnan(t)).sum()),
            )
        )
    return scores


ACCURACY_NOTE = (
    "accuracy: the predicted top answer is the volunteers' top answer, over the galaxies where "
    f"most volunteers reached the question (the answer leading to it at least {MEANINGFUL:g})"
)


def column_rmse(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """RMSE per answer column (37,) over its labelled cells; NaN where none is labelled."""
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    valid = ~np.isnan(target)
    sq = np.where(valid, pred - np.where(valid, target, 0.0), 0.0) ** 2
    counts = valid.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, np.sqrt(sq.sum(axis=0) / np.maximum(counts, 1)), np.nan)


@dataclass(frozen=True)
class Scores:
    rmse: float
    n_images: int
    n_cells: int
    n_missing: int
    questions: list[QuestionScore] = field(default_factory=list)
    columns: np.ndarray = field(default_factory=lambda: np.full(len(COLUMNS), np.nan))
    """RMSE per answer column (37,), NaN where none is labelled."""

    def as_dict(self) -> dict[str, object]:
        return {
            "rmse": self.rmse,
            "n_images": self.n_images,
            "n_cells": self.n_cells,
            "n_missing_cells": self.n_missing,
            "questions": {
                f"Q{s.number}": {
                    "rmse": s.rmse,
                    "accuracy": s.accuracy,
                    "n_accuracy": s.n_accuracy,
                    "n_cells": s.n_cells,
                }
                for s in self.questions
            },
        }


def score(pred: np.ndarray, target: np.ndarray) -> Scores:
    """All figures of one prediction against labels (NaN = missing)."""
    n_cells = int((~np.isnan(target)).sum())
    return Scores(
        rmse=kaggle_rmse(pred, target),
        n_images=int(len(target)),
        n_cells=n_cells,
        n_missing=int(target.size - n_cells),
        questions=question_scores(pred, target),
        columns=column_rmse(pred, target),
    )


def column_means(target: np.ndarray) -> np.ndarray:
    """Per-column mean over labelled cells (0 where a column has no labels): the mean baseline."""
    counts = (~np.isnan(target)).sum(axis=0)
    sums = np.nansum(target, axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
