"""Training losses: over the 37 outputs of the tree (:func:`masked_loss`, the ``--loss``
choice), or the loss a user's task implies (:func:`task_loss`); empty label cells (NaN) are
skipped."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from galaxyzoo_cli.core.schema import QUESTIONS
from galaxyzoo_cli.core.settings import Loss, choice
from galaxyzoo_cli.core.tasks import Task, TaskKind

_EPS = 1e-6


def masked_loss(kind: Loss, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Loss over the labelled cells of ``target`` (NaN = missing); 0 when none is labelled.

    ``mse``: mean squared error. ``rmse``: its square root (the metric itself; the notebook's
    choice). ``bce``: binary cross-entropy per cell against the vote fraction, every cell weighing
    the same. ``question-bce``: per galaxy and question, the mean cross-entropy of its labelled
    answers, summed over the questions (each question weighs the same, whatever its number of
    answers), averaged over the galaxies with a label.
    """
    kind = choice(Loss, kind, "--loss")
    if kind == Loss.QUESTION_BCE:
        return _question_bce(pred.float(), target)
    valid = ~torch.isnan(target)
    n = valid.sum()
    p = pred.float()[valid]
    t = target[valid]
    if kind == Loss.BCE:
        total = F.binary_cross_entropy(p.clamp(_EPS, 1 - _EPS), t, reduction="sum")
        return total / n.clamp(min=1)
    mse = ((p - t) ** 2).sum() / n.clamp(min=1)
    return mse if kind == Loss.MSE else torch.sqrt(mse + 1e-12)


def _question_bce(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    valid = ~torch.isnan(target)
    cells = (
        F.binary_cross_entropy(
            pred.clamp(_EPS, 1 - _EPS), torch.nan_to_num(target), reduction="none"
        )
        * valid
    )
    per_question = [
        cells[:, q.slice].sum(dim=1) / valid[:, q.slice].sum(dim=1).clamp(min=1) for q in QUESTIONS
    ]
    galaxies = valid.any(dim=1).sum()
    return torch.stack(per_question, dim=1).sum() / galaxies.clamp(min=1)


def task_loss(task: Task, kind: Loss, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The loss of ``task``: :func:`masked_loss` of ``kind`` for the tree; for a user's labels,
    per target over its labelled rows: binary cross-entropy (binary), cross-entropy
    (multi-class), mean squared error (fractions), summed over the targets."""
    if task.is_tree:
        return masked_loss(kind, pred, target)
    total = pred.new_zeros(())
    for t, o, k in task.slices():
        p, y = pred[:, o], target[:, k]
        if t.kind == TaskKind.FRACTIONS:
            total = total + masked_loss(Loss.MSE, p, y)
            continue
        labelled = ~torch.isnan(y[:, 0])
        if not labelled.any():
            continue
        p, y = p[labelled].clamp(_EPS, 1 - _EPS), y[labelled, 0]
        if t.kind == TaskKind.BINARY:
            total = total + F.binary_cross_entropy(p[:, 0], y)
        else:
            total = total + F.nll_loss(torch.log(p), y.long())
    return total
