"""Models by name: ``create_model`` and ``list_models``, over the registry.

Importing this package imports the model files, which register themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from galaxyzoo_cli.images import InputSpec
from galaxyzoo_cli.models import backbones, custom  # noqa: F401  (they register their models)
from galaxyzoo_cli.models.heads import make_head
from galaxyzoo_cli.models.registry import ModelSpec, get_spec, list_models
from galaxyzoo_cli.settings import Head, choice

__all__ = [
    "GalaxyModel",
    "ModelConfig",
    "ModelSpec",
    "create_model",
    "get_spec",
    "list_models",
    "count_parameters",
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

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "head": self.head.value,
            "input": self.input.as_dict(),
            "freeze": self.freeze,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        return cls(
            name=str(d["name"]),
            head=choice(Head, d["head"], "head"),
            input=InputSpec.from_dict(d["input"]),
            freeze=bool(d["freeze"]),
        )


class GalaxyModel(nn.Module):
    """Normalisation → feature extractor → head: images in [0, 1] to 37 outputs in [0, 1].

    The model owns its normalisation, so no caller can forget it or use the wrong constants.
    """

    def __init__(self, config: ModelConfig, features: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.features = features
        self.head = make_head(config.head, int(features.num_features))  # type: ignore[arg-type]
        spec = config.input
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, -1, 1, 1), persistent=False)
        if config.freeze:
            self.features.requires_grad_(False)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Features (B, F) of images (B, C, S, S) with values in [0, 1]."""
        x = (images - self.mean) / self.std  # type: ignore[operator]
        return self.features(x.contiguous(memory_format=torch.channels_last))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(images))

    def train(self, mode: bool = True) -> GalaxyModel:
        super().train(mode)
        if self.config.freeze:
            self.features.eval()  # frozen features: batch-norm statistics stay as loaded
        return self


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
        freeze=spec.pretrained if freeze is None else freeze,
    )


def create_model(
    config: ModelConfig, *, pretrained: bool = False, weights: str | None = None
) -> GalaxyModel:
    """Build the model of ``config``; a backbone gets pretrained or local weights if asked."""
    spec = get_spec(config.name)
    features = spec.factory(
        channels=config.input.channels,
        image_size=config.input.size,
        pretrained=pretrained,
        weights=weights,
    )
    # Channels-last convolutions trained 20-27% faster on the CPU (benchmarks/model_speed.py);
    # embed() hands the features the same layout.
    return GalaxyModel(config, features).to(memory_format=torch.channels_last)


def describe_models(pattern: str = "*", include_test: bool = False) -> list[dict[str, Any]]:
    """One row per registered model matching ``pattern``: name, kind, parameters, default input."""
    rows = []
    for name in list_models(pattern, include_test=include_test):
        spec = get_spec(name)
        config = resolve_config(name)
        with torch.device("meta"):  # count parameters without allocating or loading weights
            model = create_model(config, pretrained=False)
        crop = f", crop {spec.input.crop}" if spec.input.crop else ""
        rows.append(
            {
                "name": name,
                "kind": spec.kind,
                "parameters": count_parameters(model),
                "input": f"{'gray' if spec.input.channels == 1 else 'RGB'} "
                f"{spec.input.size} px{crop}",
                "frozen_by_default": config.freeze,
                "pretrained_by_default": spec.pretrained,
                "description": spec.description,
            }
        )
    return rows


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
