"""Models by name, without torch: the registry's lookups, each model's configuration and the
listing. Importing this package imports the model files, which register themselves (no torch:
the networks are built by :func:`galaxyzoo_cli.models.galaxy_model.create_model`).

The modules: the registry (registry), the networks trained from scratch and their entries
(cnns, scratch), timm backbones (timm_backbones), the heads (heads) and the whole model
(galaxy_model: ``GalaxyModel``, ``create_model``).

Layer rule: a module here imports from ``galaxyzoo_cli.models``, ``data`` and ``core`` only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from galaxyzoo_cli.core.schema import Learned
from galaxyzoo_cli.core.settings import DEFAULT_MODEL, Head, choice
from galaxyzoo_cli.core.tasks import TREE, Task
from galaxyzoo_cli.data.images import InputSpec
from galaxyzoo_cli.models import scratch, timm_backbones  # noqa: F401  (they register their models)
from galaxyzoo_cli.models.registry import (
    Architecture,
    Config,
    ModelSpec,
    get_architecture,
    get_spec,
    list_architectures,
    list_models,
)

__all__ = [
    "Architecture",
    "Config",
    "ModelConfig",
    "ModelSpec",
    "get_architecture",
    "get_spec",
    "list_architectures",
    "list_models",
    "describe_models",
    "resolve_config",
]


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model and feed it (saved once, in checkpoints)."""

    name: str
    head: Head
    input: InputSpec
    """Channels, crop, size and normalisation: the one copy every command reads."""
    freeze: bool = False
    activation: str = "softplus"
    """The tree head's map to non-negative values before each question is normalised:
    ``softplus`` since 0.3; ``relu`` in runs written before (a rare answer's ReLU could die,
    leaving it at ~0 for every galaxy), which keep it so their predictions do not change."""
    task: Task = TREE
    """What it predicts: the Kaggle tree (``head`` then says how; with the questions it learned)
    or the user's labels."""

    @property
    def learned(self) -> Learned:
        """The tree questions the run had labels for (:attr:`Task.learned`)."""
        return self.task.learned

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "head": self.head.value,
            "activation": self.activation,
            "input": self.input.as_dict(),
            "freeze": self.freeze,
            "trained_questions": list(self.learned.questions),
            "task": self.task.as_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        activation = str(d.get("activation", "relu"))  # absent: written before softplus
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation {activation!r}: one of {', '.join(ACTIVATIONS)}")
        return cls(
            name=str(d["name"]),
            head=choice(Head, d["head"], "head"),
            input=InputSpec.from_dict(d["input"]),
            freeze=bool(d["freeze"]),
            activation=activation,
            # Absent in older checkpoints: the tree.
            task=replace(
                Task.from_dict(d.get("task")),
                learned=Learned.from_value(d.get("trained_questions")),
            ),
        )

    def with_learned(self, labels: Any) -> ModelConfig:
        """This configuration, recording the questions with labels in ``labels`` (N, 37)."""
        return replace(self, task=replace(self.task, learned=Learned.from_labels(labels)))


ACTIVATIONS = ("softplus", "relu")


def _channel_stats(values: tuple[float, ...], channels: int) -> tuple[float, ...]:
    if len(values) == channels:
        return tuple(values)
    mean = sum(values) / len(values)
    return (mean,) * channels


def resolve_config(
    name: str,
    *,
    head: Head | str = Head.TREE,
    channels: int | None = None,
    image_size: int | None = None,
    crop: int | None = None,
    freeze: bool | None = None,
    task: Task = TREE,
) -> ModelConfig:
    """The model's configuration: unset options filled from its declared defaults, once.

    The input's normalisation follows the channels (an RGB mean averaged for grayscale).
    """
    spec = get_spec(name)
    default = spec.input
    ch = channels or default.channels
    return ModelConfig(
        name=spec.name,
        head=choice(Head, head, "--head"),
        input=replace(
            default,
            channels=ch,
            crop=default.crop if crop is None else crop,
            size=image_size or default.size,
            mean=_channel_stats(default.mean, ch),
            std=_channel_stats(default.std, ch),
        ),
        freeze=spec.frozen_by_default if freeze is None else freeze,
        task=task,
    )


def describe_models(pattern: str = "*", include_test: bool = False) -> list[dict[str, Any]]:
    """One row per registered model matching ``pattern``: name, its architecture and kind,
    parameters (declared: no model is built), default input, whether it has pretrained weights
    and freezes them by default, and which one is the default."""
    rows = []
    for name in list_models(pattern, include_test=include_test):
        spec = get_spec(name)
        crop = f", crop {spec.input.crop}" if spec.input.crop else ""
        rows.append(
            {
                "name": name,
                "default": name == DEFAULT_MODEL,
                "architecture": spec.architecture.name,
                "kind": spec.kind,
                "parameters": spec.parameters,
                "input": f"{'gray' if spec.input.channels == 1 else 'RGB'} "
                f"{spec.input.size} px{crop}",
                "has_weights": spec.has_weights,
                "frozen_by_default": spec.frozen_by_default,
                "pretrained_by_default": spec.has_weights,
                "description": spec.description,
            }
        )
    return rows
