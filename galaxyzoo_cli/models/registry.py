"""The model registry: names → factories and their declared preprocessing.

A leaf module: it imports no model. Model files register their factories with
:func:`register_model`; ``galaxyzoo_cli.models`` imports those files and re-exports the lookups.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from galaxyzoo_cli.errors import BadInputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TIMM_PREFIX = "timm/"


@dataclass(frozen=True)
class ModelSpec:
    """What a registered model is and what input it expects.

    ``factory(channels=, image_size=, pretrained=, weights=)`` returns a feature extractor: a module
    mapping normalised images (B, C, S, S) to features (B, F), with an int attribute
    ``num_features``. The head is added by :func:`galaxyzoo_cli.models.create_model`.
    """

    name: str
    kind: str
    """``custom`` (trained from scratch) or ``timm`` (a timm backbone)."""
    factory: Callable[..., Any]
    description: str
    channels: int
    image_size: int
    crop: int | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pretrained: bool = False
    """Pretrained weights exist and are used by default (and features are frozen by default)."""
    test: bool = False
    """A tiny model for tests."""


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    kind: str,
    description: str,
    channels: int,
    image_size: int,
    crop: int | None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    pretrained: bool = False,
    test: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a feature-extractor factory under ``name`` with its input defaults."""

    def wrap(factory: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(
            name=name,
            kind=kind,
            factory=factory,
            description=description,
            channels=channels,
            image_size=image_size,
            crop=crop,
            mean=mean or (0.5,) * channels,
            std=std or (0.5,) * channels,
            pretrained=pretrained,
            test=test,
        )
        return factory

    return wrap


def list_models(pattern: str = "*", include_test: bool = True) -> list[str]:
    """Registered names matching a shell wildcard (``"res*"``), sorted."""
    return sorted(
        n
        for n, s in _REGISTRY.items()
        if fnmatch.fnmatchcase(n, pattern.lower()) and (include_test or not s.test)
    )


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered name, or of any timm architecture addressed as ``timm/<name>``."""
    key = name.strip().lower()
    if key in _REGISTRY:
        return _REGISTRY[key]
    if key.startswith(TIMM_PREFIX):
        from galaxyzoo_cli.models.backbones import timm_spec

        return timm_spec(key[len(TIMM_PREFIX) :])
    close = [n for n in _REGISTRY if n[:3] == key[:3]] or list_models(include_test=False)
    raise BadInputError(
        f"--model {name!r}: unknown model. Known: {', '.join(close)} "
        f"(see `galaxyzoo models`), or any timm architecture as timm/<name>."
    )
