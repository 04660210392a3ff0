"""The head for a user's own labels: one linear layer, then per target a sigmoid (binary, and
each fraction) or a softmax over the classes (multi-class). Outputs are probabilities in
[0, 1], like the tree head's, so predict, evaluate and export treat both alike."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from galaxyzoo_cli.tasks import Task, TaskKind

_EPS = 1e-4


class TaskHead(nn.Module):
    """Linear → per target: sigmoid or softmax."""

    def __init__(self, in_features: int, task: Task) -> None:
        super().__init__()
        self.task = task
        self.linear = nn.Linear(in_features, task.n_outputs)
        self._parts = [(t.kind, o) for t, o, _ in task.slices()]

    def init_to_mean(self, means: np.ndarray) -> None:
        """Output ``means`` (per output column: the training labels' mean, or each class's share)
        whatever the input: zero weights and the matching biases (log-odds or log-shares)."""
        m = np.clip(np.asarray(means, dtype=np.float64), _EPS, 1 - _EPS)
        bias = np.empty_like(m)
        for kind, o in self._parts:
            bias[o] = np.log(m[o]) if kind == TaskKind.MULTICLASS else np.log(m[o] / (1 - m[o]))
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.copy_(torch.from_numpy(bias))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = self.linear(features).float()
        parts = [
            torch.softmax(z[:, o], dim=1) if kind == TaskKind.MULTICLASS else torch.sigmoid(z[:, o])
            for kind, o in self._parts
        ]
        return torch.cat(parts, dim=1)
