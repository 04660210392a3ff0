"""Custom networks trained from scratch, registered by name: the notebook's two, ours (the default,
a fast one and the 0.1 default) and a tiny one for tests.

Registration imports no torch (so ``galaxyzoo models`` answers at once); each factory builds its
network from :mod:`galaxyzoo_cli.models.nets` when called. Sizes are derived from the input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from galaxyzoo_cli.models.registry import register_model

if TYPE_CHECKING:
    from torch import nn


@register_model(
    "convnet",
    kind="custom",
    description="The notebook's ConvNet: 3 conv layers (10/20/40, kernel 4) + max-pool, FC 300.",
    channels=1,
    image_size=64,
    crop=256,
    parameters=327_667,
)
def convnet(channels: int, image_size: int, **_: object) -> nn.Module:
    from galaxyzoo_cli.models import nets

    return nets.convnet(channels, image_size)


@register_model(
    "linnet",
    kind="custom",
    description="The notebook's LinNet: one hidden fully connected layer of 300 units.",
    channels=1,
    image_size=64,
    crop=256,
    parameters=1_240_237,
)
def linnet(channels: int, image_size: int, **_: object) -> nn.Module:
    from galaxyzoo_cli.models import nets

    return nets.linnet(channels, image_size)


def _galaxynet(channels: int, width: int) -> nn.Module:
    from galaxyzoo_cli.models import nets

    return nets.GalaxyNet(channels, width=width)


@register_model(
    "galaxynet",
    kind="custom",
    description="The default: galaxynet with 16-128 channels, RGB crop 256 → 96 px.",
    channels=3,
    image_size=96,
    crop=256,
    parameters=155_797,
)
def galaxynet(channels: int, **_: object) -> nn.Module:
    return _galaxynet(channels, width=16)


@register_model(
    "galaxynet-s",
    kind="custom",
    description="The fast recipe: the default network at 64 px (2× faster), for laptops and CI.",
    channels=3,
    image_size=64,
    crop=256,
    parameters=155_797,
)
def galaxynet_s(channels: int, **_: object) -> nn.Module:
    return _galaxynet(channels, width=16)


@register_model(
    "galaxynet-v1",
    kind="custom",
    description="The 0.1 default: strided stem, 6 conv layers (16-128), RGB crop 208 → 64 px.",
    channels=3,
    image_size=64,
    crop=208,
    parameters=155_797,
)
def galaxynet_v1(channels: int, **_: object) -> nn.Module:
    return _galaxynet(channels, width=16)


@register_model(
    "test_tiny",
    kind="custom",
    description="A tiny CNN for tests (milliseconds per batch).",
    channels=1,
    image_size=24,
    crop=256,
    test=True,
    parameters=3_595,
)
def test_tiny(channels: int, **_: object) -> nn.Module:
    return _galaxynet(channels, width=2)
