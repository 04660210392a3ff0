"""The Kaggle metric and per-question figures, over labelled cells only.

The Kaggle score is ONE root of the mean squared error over all labelled (galaxy, answer) cells;
it is not the mean of per-batch RMSEs. :class:`ErrorSum` accumulates it exactly across batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from galaxyzoo_cli.schema import QUESTIONS, reached


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
    """Galaxies counted for accuracy: question reached (:func:`galaxyzoo_cli.schema.reached`)
    and fully labelled."""
    n_cells: int


def question_scores(pred: np.ndarray, target: np.ndarray) -> list[QuestionScore]:
    """RMSE and top-answer accuracy per question.

    Accuracy compares, per galaxy, the argmax over that question's answers (never over the
    batch), counting only galaxies whose answers are all labelled and where volunteers reached the
    question (the answer leading to it has a value above 0).
    """
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    was_reached = reached(target)
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


@dataclass(frozen=True)
class Scores:
    rmse: float
    n_images: int
    n_cells: int
    n_missing: int
    questions: list[QuestionScore] = field(default_factory=list)

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
    )


def column_means(target: np.ndarray) -> np.ndarray:
    """Per-column mean over labelled cells (0 where a column has no labels): the mean baseline."""
    counts = (~np.isnan(target)).sum(axis=0)
    sums = np.nansum(target, axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
