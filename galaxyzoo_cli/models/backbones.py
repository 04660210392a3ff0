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

from galaxyzoo_cli.errors import BadInputError
from galaxyzoo_cli.images import InputSpec
from galaxyzoo_cli.models.registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelSpec,
    register_family,
    register_model,
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
) -> nn.Module:
    """A timm model without classifier (``num_classes=0``): images → pooled features. Its
    pretrained weights come from ``weights`` (a local file of ``arch``), else from ``hub`` (a
    ``hf_hub:`` name, for weights published apart from timm's own) or timm's own for ``arch``."""
    import timm

    kwargs: dict[str, Any] = {"num_classes": 0, "in_chans": channels}
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


def _factory(arch: str, hub: str | None = None) -> Any:
    def factory(
        channels: int, pretrained: bool = False, weights: str | None = None, **_: object
    ) -> nn.Module:
        return create_backbone(arch, channels, pretrained, weights, hub)

    return factory


def timm_spec(arch: str) -> ModelSpec:
    """A spec for any timm architecture, with its input size and normalisation from timm."""
    import timm

    if not timm.is_model(arch):
        raise BadInputError(
            f"--model timm/{arch}: timm has no such architecture. "
            "See timm.list_models() for names (e.g. timm/resnet50, timm/convnext_tiny)."
        )
    cfg = timm.get_pretrained_cfg(arch)
    has_weights = cfg is not None and bool(cfg.hf_hub_id or cfg.url or cfg.file)
    size = cfg.input_size[-1] if cfg is not None else 224
    return ModelSpec(
        name=f"timm/{arch}",
        kind="timm",
        parameters=None,
        factory=_factory(arch),
        description=f"timm {arch}",
        input=InputSpec(
            channels=3,
            crop=BACKBONE_CROP,
            size=size,
            mean=tuple(cfg.mean) if cfg is not None else IMAGENET_MEAN,
            std=tuple(cfg.std) if cfg is not None else IMAGENET_STD,
        ),
        pretrained=has_weights,
    )


register_family("timm/", timm_spec)


for _name, _desc, _parameters in (
    ("resnet18", "ResNet-18 (ImageNet): the notebook's frozen-feature transfer model.", 11_195_493),
    (
        "densenet121",
        "DenseNet-121 (ImageNet): the notebook's other frozen-feature model.",
        6_991_781,
    ),
    (
        "resnet50",
        "ResNet-50 (ImageNet): the strong later single-model baseline when fine-tuned.",
        23_583_845,
    ),
    ("convnext_tiny", "ConvNeXt-Tiny (ImageNet): a modern backbone.", 27_848_581),
):
    register_model(
        _name,
        kind="timm",
        description=_desc,
        channels=3,
        image_size=224,
        crop=BACKBONE_CROP,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        pretrained=True,
        parameters=_parameters,
    )(_factory(_name))

register_model(
    "test_timm",
    kind="timm",
    description="timm's tiny test_resnet, for tests of the backbone path.",
    channels=3,
    image_size=32,
    crop=BACKBONE_CROP,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    pretrained=True,
    test=True,
    parameters=376_277,
)(_factory("test_resnet"))


# Galaxy-pretrained encoders: Zoobot's (Walmsley et al.), published as timm models on the Hugging
# Face hub under Apache-2.0 and trained on GZ Evo (820k galaxies from every major Galaxy Zoo
# campaign, GZ2 among them). Their input, from Zoobot's docs: 224-px images with values in [0, 1]
# and no further normalisation (so mean 0, std 1 here), the galaxy large and centred. The crop is
# ours: Zoobot's data module crops 70-80% of the image's area before resizing to 224, a side of
# about sqrt(0.75) = 0.87 of the frame: 368 of 424 px. The greyscale variants take one channel.
ZOOBOT_CROP = 368
for _arch, _grey, _parameters in (
    ("convnext_nano", False, 14_976_277),
    ("convnext_small", False, 49_483_141),
    ("convnext_base", False, 87_604_389),
    ("efficientnet_b0", False, 4_054_945),
    ("resnet18", False, 11_195_493),
    ("resnet50", False, 23_583_845),
    ("convnext_nano", True, 14_973_717),
    ("convnext_pico", True, 8_549_605),
):
    _variant = f"{'greyscale-' if _grey else ''}{_arch}"
    _channels = 1 if _grey else 3
    register_model(
        f"zoobot-{_variant.replace('_', '-')}",
        kind="timm",
        description=f"Zoobot's {_arch} encoder{' (greyscale)' if _grey else ''}, pretrained on "
        "820k Galaxy Zoo galaxies: the galaxy-pretrained start for finetune.",
        channels=_channels,
        image_size=224,
        crop=ZOOBOT_CROP,
        mean=(0.0,) * _channels,
        std=(1.0,) * _channels,
        pretrained=True,
        parameters=_parameters,
    )(_factory(_arch, hub=f"hf_hub:mwalmsley/zoobot-encoder-{_variant}"))
