"""Output heads: 37 values in [0, 1] from a feature vector.

``sigmoid``: one independent sigmoid per answer (the notebook's choice).
``tree``: the competition winner's decision-tree layer: non-negative outputs, each question
normalised to a distribution and scaled by the answer leading to it, so the outputs obey the tree
sums by construction.
"""

from __future__ import annotations

import torch
from torch import nn

from galaxyzoo_cli.schema import N_OUTPUTS, QUESTIONS, TREE_ORDER, question
from galaxyzoo_cli.settings import Head


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


class TreeHead(nn.Module):
    """Linear → ReLU → per-question normalisation and scaling down the tree."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, N_OUTPUTS)
        # Start with every answer alive and near-uniform: a ReLU output that starts at 0 for all
        # answers of a question would give that question no gradient.
        nn.init.constant_(self.linear.bias, 1.0)
        nn.init.normal_(self.linear.weight, std=0.01)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return tree_normalise(torch.relu(self.linear(features).float()))


class SigmoidHead(nn.Module):
    """Linear → sigmoid: 37 independent probabilities."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, N_OUTPUTS)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(features).float())


def make_head(kind: Head, in_features: int) -> nn.Module:
    return TreeHead(in_features) if kind == Head.TREE else SigmoidHead(in_features)
