"""Models by name: ``create_model`` and ``list_models``, over the registry.

Importing this package imports the model files, which register themselves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from galaxyzoo_cli.models import backbones, custom  # noqa: F401  (they register their models)
from galaxyzoo_cli.models.heads import HEADS, make_head
from galaxyzoo_cli.models.registry import ModelSpec, get_spec, list_models

__all__ = [
    "HEADS",
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
    """Everything needed to rebuild a model's architecture (saved in checkpoints)."""

    name: str
    head: str = "tree"
    channels: int = 3
    image_size: int = 64
    freeze: bool = False
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        return cls(**{**d, "mean": tuple(d["mean"]), "std": tuple(d["std"])})


class GalaxyModel(nn.Module):
    """Normalisation → feature extractor → head: images in [0, 1] to 37 outputs in [0, 1].

    The model owns its normalisation, so no caller can forget it or use the wrong constants.
    """

    def __init__(self, config: ModelConfig, features: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.features = features
        self.head = make_head(config.head, int(features.num_features))  # type: ignore[arg-type]
        self.register_buffer("mean", torch.tensor(config.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, -1, 1, 1), persistent=False)
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
    head: str = "tree",
    channels: int | None = None,
    image_size: int | None = None,
    freeze: bool | None = None,
) -> ModelConfig:
    """Fill unset settings from the model's declared defaults."""
    spec = get_spec(name)
    if head not in HEADS:
        make_head(head, 1)  # raises the error that names the choices
    ch = channels or spec.channels
    return ModelConfig(
        name=spec.name,
        head=head,
        channels=ch,
        image_size=image_size or spec.image_size,
        freeze=spec.pretrained if freeze is None else freeze,
        mean=_channel_stats(spec.mean, ch),
        std=_channel_stats(spec.std, ch),
    )


def create_model(
    config: ModelConfig, *, pretrained: bool = False, weights: str | None = None
) -> GalaxyModel:
    """Build the model of ``config``; a backbone gets pretrained or local weights if asked."""
    spec = get_spec(config.name)
    features = spec.factory(
        channels=config.channels,
        image_size=config.image_size,
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
        crop = f", crop {spec.crop}" if spec.crop else ""
        rows.append(
            {
                "name": name,
                "kind": spec.kind,
                "parameters": count_parameters(model),
                "input": f"{'gray' if spec.channels == 1 else 'RGB'} {spec.image_size} px{crop}",
                "frozen_by_default": config.freeze,
                "pretrained_by_default": spec.pretrained,
                "description": spec.description,
            }
        )
    return rows


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
