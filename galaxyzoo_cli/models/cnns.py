"""The custom networks themselves (torch): feature extractors mapping images (B, C, S, S) to
features (B, F), each with an int ``num_features``. Registered in
:mod:`galaxyzoo_cli.models.scratch`.
"""

from __future__ import annotations

import torch
from torch import nn


def _flat_size(module: nn.Module, channels: int, image_size: int) -> int:
    with torch.no_grad():
        return int(module(torch.zeros(1, channels, image_size, image_size)).flatten(1).shape[1])


class _Sequential(nn.Sequential):
    def __init__(self, *layers: nn.Module, num_features: int) -> None:
        super().__init__(*layers)
        self.num_features = num_features


def convnet(channels: int, image_size: int) -> nn.Module:
    """The seed notebook's ConvNet, sized from its input."""
    convs = nn.Sequential(
        nn.Conv2d(channels, 10, 4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(10, 20, 4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(20, 40, 4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
    )
    flat = _flat_size(convs, channels, image_size)  # 1000 for 64-px input, as in the notebook
    return _Sequential(convs, nn.Linear(flat, 300), nn.ReLU(), num_features=300)


def linnet(channels: int, image_size: int) -> nn.Module:
    """The seed notebook's LinNet: one hidden layer of 300 units."""
    return _Sequential(
        nn.Flatten(),
        nn.Linear(channels * image_size * image_size, 300),
        nn.ReLU(),
        num_features=300,
    )


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class GalaxyNet(nn.Module):
    """A compact CNN for centred galaxies: a strided stem, stages of 3×3 conv + batch norm + ReLU
    separated by max-pooling, then global average and max pooling.

    The strided stem keeps the cost low on CPUs (most of a VGG-style net's time goes to the
    full-resolution layers); global pooling makes the features independent of where (and, with
    rotation augmentation, how rotated) a structure appears. Stage ``i`` has ``width * 2**i``
    channels and ``depth[i]`` conv layers.
    """

    def __init__(
        self,
        channels: int,
        width: int = 16,
        depth: tuple[int, ...] = (1, 2, 2, 1),
        dropout: float = 0.0,
        stem_stride: int = 2,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(channels, width, 3, stride=stem_stride, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        ]
        c = width
        for i, n in enumerate(depth):
            if i:
                layers.append(nn.MaxPool2d(2))
            for _ in range(n):
                layers += _block(c, width * 2**i)
                c = width * 2**i
        self.stages = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.num_features = 2 * c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(x)
        return self.dropout(torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1))


class PlainNet(nn.Module):
    """A plain VGG-style CNN: stages of ``convs`` 3×3 conv + batch norm + ReLU at full resolution,
    a 2×2 max-pool between stages, global average pooling and dropout.

    No strided stem: the first stage sees every input pixel, which costs more per image than
    :class:`GalaxyNet` but keeps the fine structure (spiral arms, bars) that a strided stem
    blurs. Stage ``i`` has ``widths[i]`` channels.
    """

    def __init__(
        self,
        channels: int,
        widths: tuple[int, ...] = (32, 64, 128, 128),
        convs: int = 2,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = channels
        for i, w in enumerate(widths):
            if i:
                layers.append(nn.MaxPool2d(2))
            for _ in range(convs):
                layers += _block(c, w)
                c = w
        self.stages = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.num_features = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.stages(x).mean(dim=(2, 3)))
