"""What a model learns to predict: a :class:`Task`, one object that the head, the loss, the
metrics, predict's columns and the export spec all read.

The Kaggle decision tree (37 vote fractions) is one kind of task; a user's own labels are others:
each label column (or group of fraction columns) is a :class:`Target` of kind ``binary`` (one
output, P(value = the positive class)), ``multiclass`` (one output per class, summing to 1) or
``fractions`` (one output in [0, 1] per column). A task with no targets is the Kaggle tree, so a
checkpoint written before tasks existed reads as one.

Labels of a target live in the label matrix as: binary, 0/1; multi-class, the class index;
fractions, the values themselves; NaN where a cell is missing. No torch here: the CLI and the
model configuration import this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from galaxyzoo_cli.core.schema import COLUMNS, Learned
from galaxyzoo_cli.core.settings import Choice, choice

HIGHER_IS_BETTER = ("roc_auc", "accuracy")
"""The metrics where higher is better (RMSE and losses: lower)."""


class TaskKind(Choice):
    TREE = "tree"
    """The Kaggle decision tree: 37 vote fractions."""
    BINARY = "binary"
    MULTICLASS = "multiclass"
    FRACTIONS = "fractions"


@dataclass(frozen=True)
class Target:
    """One thing to predict: a label column (binary, multi-class) or a group of fraction
    columns (one regression head)."""

    name: str
    kind: TaskKind
    columns: tuple[str, ...]
    """The label-file columns it is read from."""
    classes: tuple[str, ...] = ()
    """Binary: (negative, positive); multi-class: every class, in output order."""

    @property
    def n_outputs(self) -> int:
        if self.kind == TaskKind.MULTICLASS:
            return len(self.classes)
        return len(self.columns) if self.kind == TaskKind.FRACTIONS else 1

    @property
    def n_labels(self) -> int:
        return len(self.columns) if self.kind == TaskKind.FRACTIONS else 1

    @property
    def outputs(self) -> tuple[str, ...]:
        """Names of its output columns: ``spiral`` = P(spiral = positive class), one
        ``kind=<value>`` per class, or the fraction columns themselves."""
        if self.kind == TaskKind.MULTICLASS:
            return tuple(f"{self.name}={c}" for c in self.classes)
        return self.columns if self.kind == TaskKind.FRACTIONS else (self.name,)

    @property
    def metric(self) -> str:
        """The figure early stopping and ``runs`` use: roc_auc, accuracy or rmse."""
        return {TaskKind.BINARY: "roc_auc", TaskKind.MULTICLASS: "accuracy"}.get(self.kind, "rmse")

    def describe(self) -> str:
        if self.kind == TaskKind.BINARY:
            return f"{self.name} (binary: P({self.name} = {self.classes[1]}))"
        if self.kind == TaskKind.MULTICLASS:
            return f"{self.name} (multi-class: {', '.join(self.classes)})"
        return f"{', '.join(self.columns)} (fractions in [0, 1])"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind.value,
            "columns": list(self.columns),
            "classes": list(self.classes),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Target:
        return cls(
            name=str(d["name"]),
            kind=choice(TaskKind, d["kind"], "task kind"),
            columns=tuple(str(c) for c in d["columns"]),
            classes=tuple(str(c) for c in d.get("classes", ())),
        )


@dataclass(frozen=True)
class Task:
    """What a model predicts: the Kaggle tree (no targets) or the user's targets, in order."""

    targets: tuple[Target, ...] = ()
    learned: Learned = Learned()
    """The tree's questions that had labels in training (:class:`galaxyzoo_cli.core.schema.Learned`;
    saved as the model configuration's ``trained_questions``). A user's task learns every
    target it has."""

    @property
    def is_tree(self) -> bool:
        return not self.targets

    @property
    def kind(self) -> str:
        """``tree``, a target kind, or ``mixed``."""
        kinds = {t.kind.value for t in self.targets} or {TaskKind.TREE.value}
        return kinds.pop() if len(kinds) == 1 else "mixed"

    @property
    def n_outputs(self) -> int:
        return len(COLUMNS) if self.is_tree else sum(t.n_outputs for t in self.targets)

    @property
    def output_columns(self) -> tuple[str, ...]:
        return COLUMNS if self.is_tree else tuple(c for t in self.targets for c in t.outputs)

    @property
    def label_columns(self) -> tuple[str, ...]:
        return COLUMNS if self.is_tree else tuple(c for t in self.targets for c in t.columns)

    def slices(self) -> list[tuple[Target, slice, slice]]:
        """Each target with its slice of the outputs and of the label matrix."""
        out, o, k = [], 0, 0
        for t in self.targets:
            out.append((t, slice(o, o + t.n_outputs), slice(k, k + t.n_labels)))
            o, k = o + t.n_outputs, k + t.n_labels
        return out

    @property
    def metric(self) -> str:
        """The validation figure: the Kaggle RMSE for the tree; the targets' metric when they
        share one (averaged over them); the validation loss for a mix."""
        if self.is_tree:
            return "rmse"
        metrics = {t.metric for t in self.targets}
        return metrics.pop() if len(metrics) == 1 else "loss"

    @property
    def higher_is_better(self) -> bool:
        return self.metric in HIGHER_IS_BETTER

    def describe(self) -> str:
        if self.is_tree:
            return "the Kaggle decision tree (37 vote fractions)"
        return "; ".join(t.describe() for t in self.targets)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "targets": [t.as_dict() for t in self.targets]}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Task:
        """``None`` (a checkpoint from before tasks) is the Kaggle tree."""
        if not d:
            return cls()
        return cls(tuple(Target.from_dict(t) for t in d.get("targets", ())))


TREE = Task()
"""The Kaggle decision tree."""


# ---------------------------------------------------------------------------------------------
# Figures of a prediction against labels (numpy)
# ---------------------------------------------------------------------------------------------


def roc_auc(score: np.ndarray, truth: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for the 0/1 ``truth`` (ties share their rank; the
    Mann-Whitney statistic); NaN when one class is absent."""
    score, truth = np.asarray(score, np.float64), np.asarray(truth) > 0.5
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    if not n_pos or not n_neg:
        return math.nan
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    # Average ranks over ties.
    starts = np.flatnonzero(np.r_[True, np.diff(sorted_scores) != 0])
    ends = np.r_[starts[1:], len(score)]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def target_scores(target: Target, pred: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """One target's figures over its labelled rows: ROC AUC (binary), accuracy and the confusion
    matrix (rows: true class, columns: predicted; classification), RMSE (fractions)."""
    if target.kind == TaskKind.FRACTIONS:
        valid = ~np.isnan(labels)
        diff = pred[valid] - labels[valid]
        return {
            "kind": target.kind.value,
            "rmse": float(np.sqrt(np.mean(diff**2))) if diff.size else math.nan,
            "n_galaxies": int(valid.any(axis=1).sum()),
            "n_cells": int(valid.sum()),
        }
    y = labels[:, 0]
    keep = ~np.isnan(y)
    y = y[keep].astype(np.int64)
    if target.kind == TaskKind.BINARY:
        p = pred[keep, 0]
        guess = (p >= 0.5).astype(np.int64)
        figures: dict[str, Any] = {"kind": target.kind.value, "roc_auc": roc_auc(p, y)}
    else:
        guess = pred[keep].argmax(axis=1)
        figures = {"kind": target.kind.value}
    k = len(target.classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y, guess), 1)
    figures.update(
        accuracy=float((guess == y).mean()) if len(y) else math.nan,
        classes=list(target.classes),
        confusion=confusion.tolist(),
        n_galaxies=int(len(y)),
    )
    return figures


def task_scores(task: Task, pred: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, Any]]:
    """Every target's figures (see :func:`target_scores`), by target name."""
    return {t.name: target_scores(t, pred[:, o], labels[:, k]) for t, o, k in task.slices()}


def headline(task: Task, scores: dict[str, dict[str, Any]]) -> float:
    """The task's metric from its scores: the mean over targets (NaN if any is undefined)."""
    values = [scores[t.name][task.metric] for t in task.targets]
    return float(np.mean(values)) if values else math.nan


def output_means(task: Task, labels: np.ndarray) -> np.ndarray:
    """What an untrained head should output: per output column, the training labels' mean (the
    share of each class for classification; 0 where nothing is labelled)."""
    if task.is_tree:
        counts = (~np.isnan(labels)).sum(axis=0)
        return np.where(counts > 0, np.nansum(labels, axis=0) / np.maximum(counts, 1), 0.0)
    out = np.zeros(task.n_outputs)
    for t, o, k in task.slices():
        y = labels[:, k]
        if t.kind == TaskKind.FRACTIONS:
            counts = (~np.isnan(y)).sum(axis=0)
            out[o] = np.where(counts > 0, np.nansum(y, axis=0) / np.maximum(counts, 1), 0.5)
            continue
        cls = y[~np.isnan(y[:, 0]), 0].astype(np.int64)
        if t.kind == TaskKind.BINARY:
            out[o] = cls.mean() if len(cls) else 0.5
        else:
            freq = np.bincount(cls, minlength=len(t.classes)).astype(np.float64)
            out[o] = freq / freq.sum() if freq.sum() else 1 / len(t.classes)
    return out
