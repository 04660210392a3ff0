"""Custom networks trained from scratch: one entry per architecture, each with its named
configurations. The notebook's two (``convnet``, ``linnet``), ours (``galaxynet``: the default,
a fast one, the 0.1 default and a tiny one for tests) and a plain VGG-style one (``plainnet``).

Registration imports no torch (so ``galaxyzoo models`` answers at once); each builder builds its
network from :mod:`galaxyzoo_cli.models.cnns` when called, sized from the input it is given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from galaxyzoo_cli.models.registry import Config, register_architecture

if TYPE_CHECKING:
    from torch import nn

    from galaxyzoo_cli.data.images import InputSpec


def build_convnet(input_spec: InputSpec) -> nn.Module:
    from galaxyzoo_cli.models import cnns

    return cnns.convnet(input_spec.channels, input_spec.output_side())


def build_linnet(input_spec: InputSpec) -> nn.Module:
    from galaxyzoo_cli.models import cnns

    return cnns.linnet(input_spec.channels, input_spec.output_side())


def build_galaxynet(
    input_spec: InputSpec,
    *,
    width: int = 16,
    depth: tuple[int, ...] = (1, 2, 2, 1),
    dropout: float = 0.0,
    stem_stride: int = 2,
) -> nn.Module:
    from galaxyzoo_cli.models import cnns

    return cnns.GalaxyNet(
        input_spec.channels, width=width, depth=depth, dropout=dropout, stem_stride=stem_stride
    )


def build_plainnet(
    input_spec: InputSpec,
    *,
    widths: tuple[int, ...] = (32, 64, 128, 128),
    convs: int = 2,
    dropout: float = 0.3,
) -> nn.Module:
    from galaxyzoo_cli.models import cnns

    return cnns.PlainNet(input_spec.channels, widths=widths, convs=convs, dropout=dropout)


register_architecture(
    "convnet",
    kind="custom",
    build=build_convnet,
    configs=[
        Config(
            "convnet",
            "The notebook's ConvNet: 3 conv layers (10/20/40, kernel 4) + max-pool, FC 300.",
            channels=1, image_size=64, crop=256, parameters=327_667,
        ),
    ],
)  # fmt: skip

register_architecture(
    "linnet",
    kind="custom",
    build=build_linnet,
    configs=[
        Config(
            "linnet",
            "The notebook's LinNet: one hidden fully connected layer of 300 units.",
            channels=1, image_size=64, crop=256, parameters=1_240_237,
        ),
    ],
)  # fmt: skip

register_architecture(
    "galaxynet",
    kind="custom",
    build=build_galaxynet,
    configs=[
        Config(
            "galaxynet",
            "The default: galaxynet with 16-128 channels, RGB crop 256 → 96 px.",
            channels=3, image_size=96, crop=256, parameters=155_797,
        ),
        Config(
            "galaxynet-s",
            "The fast recipe: the default network at 64 px (2× faster), for laptops and CI.",
            channels=3, image_size=64, crop=256, parameters=155_797,
        ),
        Config(
            "galaxynet-v1",
            "The 0.1 default: strided stem, 6 conv layers (16-128), RGB crop 208 → 64 px.",
            channels=3, image_size=64, crop=208, parameters=155_797,
        ),
        Config(
            "test_tiny",
            "A tiny CNN for tests (milliseconds per batch): galaxynet with 2-16 channels.",
            channels=1, image_size=24, crop=256, parameters=3_595, args={"width": 2}, test=True,
        ),
    ],
)  # fmt: skip

register_architecture(
    "plainnet",
    kind="custom",
    build=build_plainnet,
    configs=[
        Config(
            "plainnet",
            "A plain VGG-style CNN: no strided stem, 4 stages of two 3×3 convs (32-128) and "
            "max-pooling, RGB crop 256 → 64 px.",
            channels=3, image_size=64, crop=256, parameters=587_653,
        ),
        Config(
            "plainnet-s",
            "plainnet with 16-128 channels: a third of its multiply-adds, RGB crop 256 → 64 px.",
            channels=3, image_size=64, crop=256, parameters=298_773,
            args={"widths": (16, 32, 64, 128)},
        ),
    ],
)  # fmt: skip
