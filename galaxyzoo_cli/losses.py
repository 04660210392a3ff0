"""Training losses over the 37 outputs; empty label cells (NaN) are skipped."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from galaxyzoo_cli.settings import Loss, choice


def masked_loss(kind: Loss, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Loss over the labelled cells of ``target`` (NaN = missing); 0 when none is labelled.

    ``mse``: mean squared error. ``rmse``: its square root (the metric itself; the notebook's
    choice). ``bce``: binary cross-entropy per cell against the vote fraction.
    """
    kind = choice(Loss, kind, "--loss")
    valid = ~torch.isnan(target)
    n = valid.sum()
    p = pred.float()[valid]
    t = target[valid]
    if kind == Loss.BCE:
        eps = 1e-6
        total = F.binary_cross_entropy(p.clamp(eps, 1 - eps), t, reduction="sum")
        return total / n.clamp(min=1)
    mse = ((p - t) ** 2).sum() / n.clamp(min=1)
    return mse if kind == Loss.MSE else torch.sqrt(mse + 1e-12)
