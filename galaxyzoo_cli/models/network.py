"""The networks: :class:`GalaxyModel` (normalisation → features → head) and
:func:`create_model`, which builds one from its :class:`~galaxyzoo_cli.models.ModelConfig`."""

from __future__ import annotations

import torch
from torch import nn

from galaxyzoo_cli.models import ModelConfig, get_spec
from galaxyzoo_cli.models.heads import make_head


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


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
