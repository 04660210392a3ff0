"""timm backbones: any timm architecture as a feature extractor (the head is ours).

Weights come from timm's normal hub path (cached after the first download) or, offline, from a
local file (``--weights FILE``). Without either, the error says so at once instead of letting the
hub client retry for most of a minute.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.data.images import InputSpec
from galaxyzoo_cli.models.registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Architecture,
    Config,
    ModelSpec,
    register_architecture,
    register_family,
    spec_of,
)

if TYPE_CHECKING:
    from torch import nn

BACKBONE_CROP = 256
"""Centre crop (424-px frame) for backbones: it holds the galaxy light with a margin."""


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection quickly (honours HF_ENDPOINT)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Make the hub client use its local cache only (it reads this flag at call time)."""
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


def create_backbone(
    arch: str,
    channels: int,
    pretrained: bool,
    weights: str | os.PathLike[str] | None,
    hub: str | None = None,
    **timm_args: Any,
) -> nn.Module:
    """A timm model without classifier (``num_classes=0``): images → pooled features. Its
    pretrained weights come from ``weights`` (a local file of ``arch``), else from ``hub`` (a
    ``hf_hub:`` name, for weights published apart from timm's own) or timm's own for ``arch``."""
    import timm

    kwargs: dict[str, Any] = {**timm_args, "num_classes": 0, "in_chans": channels}
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise BadInputError(f"--weights {path}: file not found. Give a local weights file.")
        try:
            model = timm.create_model(
                arch, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs
            )
            # timm loads leniently when it adapts a model; every backbone tensor must come from
            # the file, or these are weights of another architecture.
            missing = sorted(set(model.state_dict()) - set(timm.models.load_state_dict(str(path))))
        except (RuntimeError, ValueError, KeyError, OSError) as e:
            missing = [(str(e).strip().splitlines() or [type(e).__name__])[0][:200]]
        if missing:
            raise BadInputError(
                f"--weights {path}: cannot load into {arch} (missing {', '.join(missing[:3])}"
                f"{'…' if len(missing) > 3 else ''}). "
                "Give weights saved from the same architecture."
            )
        return model
    if not pretrained:
        return timm.create_model(arch, pretrained=False, **kwargs)
    source = hub or arch
    if _hub_reachable():
        return timm.create_model(source, pretrained=True, **kwargs)
    try:
        with _hub_offline():
            return timm.create_model(source, pretrained=True, **kwargs)
    except Exception:  # any failure of the cache lookup means: no weights here
        raise BadInputError(
            f"{source}: pretrained weights are not cached and the Hugging Face hub is "
            "unreachable. Give a local file with --weights FILE, or train from scratch with "
            "--no-pretrained."
        ) from None


def build_backbone(
    input_spec: InputSpec,
    *,
    arch: str,
    hub: str | None = None,
    pretrained: bool = False,
    weights: str | None = None,
    **timm_args: Any,
) -> nn.Module:
    """The builder of every timm architecture: ``arch`` with ``input_spec.channels`` input
    channels; ``timm_args`` (e.g. ``drop_path_rate``) go to ``timm.create_model`` as they are."""
    return create_backbone(arch, input_spec.channels, pretrained, weights, hub, **timm_args)


def timm_spec(arch: str) -> ModelSpec:
    """A spec for any timm architecture, with its input size and normalisation from timm, and its
    weights if timm has a pretrained checkpoint for it (loaded weights are frozen by default)."""
    import timm

    if not timm.is_model(arch):
        raise BadInputError(
            f"--model timm/{arch}: timm has no such architecture. "
            "See timm.list_models() for names (e.g. timm/resnet50, timm/convnext_tiny)."
        )
    cfg = timm.get_pretrained_cfg(arch)
    has_weights = cfg is not None and bool(cfg.hf_hub_id or cfg.url or cfg.file)
    config = Config(
        f"timm/{arch}",
        f"timm {arch}",
        channels=3,
        image_size=cfg.input_size[-1] if cfg is not None else 224,
        crop=BACKBONE_CROP,
        parameters=None,
        args={"arch": arch},
        mean=tuple(cfg.mean) if cfg is not None else IMAGENET_MEAN,
        std=tuple(cfg.std) if cfg is not None else IMAGENET_STD,
        has_weights=has_weights,
        frozen=True,
    )
    return spec_of(TIMM, config)


# Every timm architecture, as one unregistered entry: the family timm/<arch> resolves into it.
TIMM = Architecture("timm", "timm", build_backbone, (), loads_weights=True)
register_family("timm/", timm_spec)


def _imagenet(name: str, description: str, parameters: int, arch: str | None = None) -> Config:
    """``arch`` (default: ``name``) with timm's ImageNet weights: 224 px, crop 256, frozen."""
    return Config(
        name, description, channels=3, image_size=224, crop=BACKBONE_CROP, parameters=parameters,
        args={"arch": arch or name}, mean=IMAGENET_MEAN, std=IMAGENET_STD, has_weights=True,
        frozen=True,
    )  # fmt: skip


# Galaxy-pretrained encoders: Zoobot's (Walmsley et al.), published as timm models on the Hugging
# Face hub under Apache-2.0 and trained on GZ Evo (820k galaxies from every major Galaxy Zoo
# campaign, GZ2 among them). Their input, from Zoobot's docs: 224-px images with values in [0, 1]
# and no further normalisation (so mean 0, std 1 here), the galaxy large and centred. The crop is
# ours: Zoobot's data module crops 70-80% of the image's area before resizing to 224, a side of
# about sqrt(0.75) = 0.87 of the frame: 368 of 424 px. The greyscale variants take one channel.
ZOOBOT_CROP = 368


def _zoobot(arch: str, parameters: int, greyscale: bool = False) -> Config:
    """Zoobot's encoder of the timm architecture ``arch``: ``zoobot-[greyscale-]<arch>``."""
    variant = f"{'greyscale-' if greyscale else ''}{arch}"
    channels = 1 if greyscale else 3
    return Config(
        f"zoobot-{variant.replace('_', '-')}",
        f"Zoobot's {arch} encoder{' (greyscale)' if greyscale else ''}, pretrained on 820k "
        "Galaxy Zoo galaxies: the galaxy-pretrained start for finetune.",
        channels=channels, image_size=224, crop=ZOOBOT_CROP, parameters=parameters,
        args={"arch": arch, "hub": f"hf_hub:mwalmsley/zoobot-encoder-{variant}"},
        mean=(0.0,) * channels, std=(1.0,) * channels, has_weights=True, frozen=True,
    )  # fmt: skip


# One entry per timm architecture family; its configurations are timm's ImageNet weights and
# Zoobot's galaxy-pretrained ones (like timm's pretrained tags: the same network, other weights).
register_architecture(
    "resnet",
    kind="timm",
    build=build_backbone,
    loads_weights=True,
    configs=[
        _imagenet(
            "resnet18", "ResNet-18 (ImageNet): the notebook's frozen-feature transfer model.",
            11_195_493,
        ),
        _imagenet(
            "resnet50", "ResNet-50 (ImageNet): the strong later single-model baseline when "
            "fine-tuned.", 23_583_845,
        ),
        _zoobot("resnet18", 11_195_493),
        _zoobot("resnet50", 23_583_845),
    ],
)  # fmt: skip

register_architecture(
    "densenet",
    kind="timm",
    build=build_backbone,
    loads_weights=True,
    configs=[
        _imagenet(
            "densenet121", "DenseNet-121 (ImageNet): the notebook's other frozen-feature model.",
            6_991_781,
        ),
    ],
)  # fmt: skip

register_architecture(
    "convnext",
    kind="timm",
    build=build_backbone,
    loads_weights=True,
    configs=[
        _imagenet("convnext_tiny", "ConvNeXt-Tiny (ImageNet): a modern backbone.", 27_848_581),
        _zoobot("convnext_nano", 14_976_277),
        _zoobot("convnext_small", 49_483_141),
        _zoobot("convnext_base", 87_604_389),
        _zoobot("convnext_nano", 14_973_717, greyscale=True),
        _zoobot("convnext_pico", 8_549_605, greyscale=True),
    ],
)  # fmt: skip

register_architecture(
    "efficientnet",
    kind="timm",
    build=build_backbone,
    loads_weights=True,
    configs=[
        Config(
            "efficientnet_lite0", "EfficientNet-Lite0 (ImageNet), fine-tuned whole at 96 px: "
            "the quality recipe where the hub is reachable (docs/results.md).",
            channels=3, image_size=96, crop=BACKBONE_CROP, parameters=3_418_405,
            args={"arch": "efficientnet_lite0"}, mean=IMAGENET_MEAN, std=IMAGENET_STD,
            has_weights=True, frozen=False,
        ),
        _zoobot("efficientnet_b0", 4_054_945),
    ],
)  # fmt: skip

register_architecture(
    "test_resnet",
    kind="timm",
    build=build_backbone,
    loads_weights=True,
    configs=[
        Config(
            "test_timm", "timm's tiny test_resnet, for tests of the backbone path.",
            channels=3, image_size=32, crop=BACKBONE_CROP, parameters=376_277,
            args={"arch": "test_resnet"}, has_weights=True, frozen=True, test=True,
        ),
    ],
)  # fmt: skip
