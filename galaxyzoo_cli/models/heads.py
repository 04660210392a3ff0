"""Output heads: 37 values in [0, 1] from a feature vector.

``sigmoid``: one independent sigmoid per answer (the notebook's choice).
``tree``: the competition winner's decision-tree layer: non-negative outputs, each question
normalised to a distribution and scaled by the answer leading to it, so the outputs obey the tree
sums by construction. The non-negative map is a softplus: the winner's ReLU lets a rare answer
die (its unit goes negative once, then gets no gradient and the answer stays at the floor, ~2e-7,
for every galaxy: Class1.3 did so on real data, worse than predicting its mean); a softplus always
has a gradient. Runs written before keep their ReLU (``ModelConfig.activation``).

Both start from the training set's mean answers (:meth:`init_to_mean`): an untrained model predicts
the mean baseline, so a short run starts there instead of far above it.

``TaskHead``: the head of a user's own labels (binary, classes, fractions), probabilities too.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from galaxyzoo_cli.core.schema import N_OUTPUTS, QUESTIONS, TREE_ORDER, question
from galaxyzoo_cli.core.settings import Head
from galaxyzoo_cli.core.tasks import Task, TaskKind


def tree_normalise(raw: torch.Tensor, floor: float = 1e-6) -> torch.Tensor:
    """Map non-negative (B, 37) values to outputs that obey the decision tree.

    Each question is divided by its sum, then multiplied by its parent answer's output, in an order
    where parents come first. A tiny ``floor`` is added to every answer so that a question whose
    raw outputs are all 0 becomes uniform instead of summing to 0: the sums then hold exactly.
    """
    parts: dict[int, torch.Tensor] = {}
    for number in TREE_ORDER:
        q = question(number)
        part = raw[:, q.slice] + floor
        dist = part / part.sum(dim=1, keepdim=True)
        if q.parent is not None:
            parent_q, parent_a = q.parent
            dist = dist * parts[parent_q][:, parent_a - 1 : parent_a]
        parts[number] = dist
    return torch.cat([parts[q.number] for q in QUESTIONS], dim=1)


def answer_shares(means: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """Each answer's share of its question (37,), from per-column means of tree-consistent labels:
    mean(answer) / sum of its question's means. A question without labels (NaN) gets equal shares;
    every share is at least ``floor``, so no answer starts dead."""
    shares = np.empty(N_OUTPUTS)
    for q in QUESTIONS:
        m = np.nan_to_num(np.asarray(means[q.slice], dtype=np.float64), nan=0.0)
        part = m / m.sum() if m.sum() > 0 else np.full(len(m), 1 / len(m))
        part = np.maximum(part, floor)
        shares[q.slice] = part / part.sum()
    return shares


class TreeHead(nn.Module):
    """Linear → softplus (or ReLU) → per-question normalisation and scaling down the tree."""

    def __init__(self, in_features: int, activation: str = "softplus") -> None:
        super().__init__()
        if activation not in ("softplus", "relu"):
            raise ValueError(f"tree head activation {activation!r}: softplus or relu")
        self.activation = activation
        self.linear = nn.Linear(in_features, N_OUTPUTS)
        self.init_to_mean(np.full(N_OUTPUTS, np.nan))

    def init_to_mean(self, means: np.ndarray) -> None:
        """Output ``means`` (the training labels' column means) whatever the input: zero weights,
        and biases whose activations are each answer's share of its question (so every ReLU
        starts alive)."""
        shares = answer_shares(means)
        bias = shares if self.activation == "relu" else np.log(np.expm1(shares))  # softplus⁻¹
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.copy_(torch.from_numpy(bias))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = self.linear(features).float()
        raw = torch.relu(z) if self.activation == "relu" else F.softplus(z)
        return tree_normalise(raw)


class SigmoidHead(nn.Module):
    """Linear → sigmoid: 37 independent probabilities."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, N_OUTPUTS)

    def init_to_mean(self, means: np.ndarray) -> None:
        """Output ``means`` whatever the input (0.5 for unlabelled columns)."""
        m = np.clip(np.nan_to_num(np.asarray(means, dtype=np.float64), nan=0.5), 1e-4, 1 - 1e-4)
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.copy_(torch.from_numpy(np.log(m / (1 - m))))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(features).float())


def make_head(kind: Head, in_features: int, activation: str = "softplus") -> TreeHead | SigmoidHead:
    return TreeHead(in_features, activation) if kind == Head.TREE else SigmoidHead(in_features)


# ---------------------------------------------------------------------------------------------
# The head for a user's own labels: one linear layer, then per target a sigmoid (binary, and
# each fraction) or a softmax over the classes (multi-class). Outputs are probabilities in
# [0, 1], like the tree head's, so predict, evaluate and export treat both alike.
# ---------------------------------------------------------------------------------------------

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
