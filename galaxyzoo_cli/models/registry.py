"""The model registry: names → factories and the input each model declares.

A leaf module: it imports no model. Model files register their factories with
:func:`register_model` (and families of names, such as ``timm/<arch>``, with
:func:`register_family`); ``galaxyzoo_cli.models`` imports those files and re-exports the lookups.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from galaxyzoo_cli.errors import BadInputError
from galaxyzoo_cli.images import InputSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
    input: InputSpec
    """The default input: channels, crop, size and normalisation."""
    parameters: int | None
    """With the default input and a head: declared, so listing builds nothing (a test checks it)."""
    pretrained: bool = False
    """Pretrained weights exist and are used by default (and features are frozen by default)."""
    test: bool = False
    """A tiny model for tests."""


_REGISTRY: dict[str, ModelSpec] = {}
_FAMILIES: dict[str, Callable[[str], ModelSpec]] = {}


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
    parameters: int,
    pretrained: bool = False,
    test: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a feature-extractor factory under ``name`` with its input defaults
    (normalisation: 0.5 ± 0.5 per channel unless given)."""

    def wrap(factory: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(
            name=name,
            kind=kind,
            factory=factory,
            description=description,
            input=InputSpec(
                channels=channels,
                crop=crop,
                size=image_size,
                mean=mean or (0.5,) * channels,
                std=std or (0.5,) * channels,
            ),
            parameters=parameters,
            pretrained=pretrained,
            test=test,
        )
        return factory

    return wrap


def register_family(prefix: str, resolve: Callable[[str], ModelSpec]) -> None:
    """Names ``<prefix><rest>`` resolve to ``resolve(rest)`` (e.g. ``timm/<architecture>``)."""
    _FAMILIES[prefix] = resolve


def list_models(pattern: str = "*", include_test: bool = True) -> list[str]:
    """Registered names matching a shell wildcard (``"res*"``), sorted."""
    return sorted(
        n
        for n, s in _REGISTRY.items()
        if fnmatch.fnmatchcase(n, pattern.lower()) and (include_test or not s.test)
    )


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered name, or of a name in a registered family (``timm/<name>``)."""
    key = name.strip().lower()
    if key in _REGISTRY:
        return _REGISTRY[key]
    for prefix, resolve in _FAMILIES.items():
        if key.startswith(prefix):
            return resolve(key[len(prefix) :])
    close = [n for n in list_models(include_test=False) if n[:3] == key[:3]]
    known = ", ".join(list_models(include_test=False))
    hint = f"Did you mean {' or '.join(close)}? " if close else ""
    families = ", ".join(f"{p}<name>" for p in _FAMILIES)
    raise BadInputError(
        f"--model {name!r}: unknown model. {hint}Registered: {known}"
        + (f"; or any {families}." if families else ".")
    )
