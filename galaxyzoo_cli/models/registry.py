"""The model registry: architectures, each with its named configurations (like timm's model
entry points and their pretrained tags).

An :class:`Architecture` is one network and the function that builds it (``galaxynet``,
``resnet``); each of its :class:`Config` entries is a name users type (``galaxynet``,
``galaxynet-s``, ``resnet50``, ``zoobot-resnet50``) with the keywords it is built with, the input it
expects and its weights. :func:`register_architecture` adds one architecture with all its
configurations; :func:`get_spec` resolves a name to a :class:`ModelSpec` (an architecture with
one configuration applied), also for families of names such as ``timm/<arch>``.

A leaf module: it imports no model and no torch (builders import torch when called).
``galaxyzoo_cli.models`` imports the model files, which register themselves.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.data.images import InputSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Builder = Callable[..., Any]
"""``build(input_spec, **args)`` → a feature extractor: a module mapping normalised images
(B, C, S, S) to features (B, F), with an int attribute ``num_features`` (the head is added by
:func:`galaxyzoo_cli.models.galaxy_model.create_model`). It takes the keywords it uses and no
others; builders that load weights also take ``pretrained: bool`` and ``weights: str | None``."""


@dataclass(frozen=True)
class Config:
    """One named configuration of an architecture: what users type after ``--model``."""

    name: str
    description: str
    channels: int
    image_size: int
    crop: int | None
    """The default input: channels, centre crop of the 424-px frame (None: the whole frame) and
    size in pixels."""
    parameters: int | None
    """With the default input and a 37-output head: declared, so listing builds nothing (a test
    checks it against the built model)."""
    args: Mapping[str, Any] = field(default_factory=dict)
    """Keywords of the architecture's builder (``{"width": 2}``); checked against its signature
    when registered."""
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    """Normalisation: 0.5 ± 0.5 per channel unless given."""
    has_weights: bool = False
    """A pretrained checkpoint exists for it (timm's, or a hub name in ``args``), loaded unless
    ``--no-pretrained``."""
    frozen: bool = False
    """Loaded weights (its own, or ``--weights FILE``) stay frozen by default: only the head
    trains unless ``--no-freeze``. Never random ones: frozen random features never learn."""
    test: bool = False
    """A tiny model for tests (listed with ``galaxyzoo models --all``)."""


@dataclass(frozen=True)
class Architecture:
    """A network, the function that builds it and its named configurations."""

    name: str
    kind: str
    """``custom`` (ours, trained from scratch) or ``timm`` (a timm backbone)."""
    build: Builder
    configs: tuple[Config, ...]
    loads_weights: bool = False
    """Its builder takes ``pretrained`` and ``weights`` (a local file)."""


@dataclass(frozen=True)
class ModelSpec:
    """A registered name resolved: its architecture with one configuration applied."""

    name: str
    architecture: Architecture
    description: str
    input: InputSpec
    """The default input: channels, crop, size and normalisation."""
    parameters: int | None
    args: Mapping[str, Any]
    has_weights: bool = False
    """A pretrained checkpoint exists, loaded by default (:attr:`Config.has_weights`)."""
    frozen: bool = False
    """Loaded weights stay frozen by default (:attr:`Config.frozen`)."""
    test: bool = False

    @property
    def kind(self) -> str:
        return self.architecture.kind

    @property
    def frozen_by_default(self) -> bool:
        """Its own weights are loaded and stay frozen unless the user says otherwise."""
        return self.has_weights and self.frozen

    @property
    def pretrained(self) -> bool:
        """Deprecated: read :attr:`has_weights` (weights exist, loaded by default) or
        :attr:`frozen` (features frozen by default); this one flag used to mean both."""
        return self.has_weights

    def check_weights(self, pretrained: bool, weights: str | None) -> None:
        """Refuse weights this model cannot load, naming the option and the fix."""
        if weights is not None and not self.architecture.loads_weights:
            raise BadInputError(
                f"--weights {weights}: {self.name} is trained from scratch and loads no weights "
                "file. Drop --weights, or pick a timm backbone (`galaxyzoo models`)."
            )
        if pretrained and weights is None and not self.has_weights:
            raise BadInputError(
                f"--pretrained: {self.name} has no pretrained weights. Drop --pretrained "
                "(or give --no-pretrained)"
                + (", or give a local file with --weights FILE." if self.architecture.loads_weights
                   else ".")
            )  # fmt: skip

    def weights_and_freeze(
        self, pretrained: bool | None, weights: str | None, freeze: bool | None
    ) -> tuple[bool, bool]:
        """Whether to load weights (its own, or the local file ``weights``) and whether to freeze
        the features, from the user's choices (None: this model's defaults); refused with the
        option to drop if this model cannot load them or would freeze random features."""
        load = weights is not None or (self.has_weights if pretrained is None else pretrained)
        self.check_weights(load, weights)
        frozen = (load and self.frozen) if freeze is None else freeze
        if frozen and not load:
            fix = (
                "load pretrained weights (--pretrained, or --weights FILE)"
                if self.architecture.loads_weights
                else "pick a pretrained backbone (`galaxyzoo models`)"
            )
            raise BadInputError(
                f"--freeze without pretrained weights: {self.name}'s features would stay random "
                f"and only the head would learn. Drop --freeze to train the whole network, or "
                f"{fix}."
            )
        return load, frozen

    def build(
        self, input_spec: InputSpec, *, pretrained: bool = False, weights: str | None = None
    ) -> Any:
        """The feature extractor for ``input_spec`` (channels, size) with this configuration's
        keywords, and its pretrained weights or the local file ``weights`` if asked."""
        self.check_weights(pretrained, weights)
        if self.architecture.loads_weights:
            return self.architecture.build(
                input_spec, **self.args, pretrained=pretrained, weights=weights
            )
        return self.architecture.build(input_spec, **self.args)


_ARCHITECTURES: dict[str, Architecture] = {}
_REGISTRY: dict[str, ModelSpec] = {}
_FAMILIES: dict[str, Callable[[str], ModelSpec]] = {}


def _check_args(build: Builder, name: str, args: Mapping[str, Any], loads_weights: bool) -> None:
    """Keywords the builder does not take are an error now, not at the first training run."""
    params = inspect.signature(build).parameters
    passes_on = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    weight_keywords = ("pretrained", "weights")
    if loads_weights and not passes_on and not set(weight_keywords) <= set(params):
        raise TypeError(f"model {name!r}: a builder that loads weights takes pretrained, weights")
    taken = [p for p in list(params)[1:] if p not in weight_keywords]
    unknown = sorted(set(args) & set(weight_keywords))  # given when built, never fixed
    if not passes_on:  # a builder with **kwargs passes the rest on (to timm), which checks them
        unknown += sorted(set(args) - set(taken) - set(weight_keywords))
    if unknown:
        raise TypeError(
            f"model {name!r}: {getattr(build, '__name__', 'its builder')}() takes no keyword "
            f"{', '.join(map(repr, unknown))} (it takes: {', '.join(taken) or 'none'})"
        )


def _spec(arch: Architecture, config: Config) -> ModelSpec:
    channels = config.channels
    return ModelSpec(
        name=config.name,
        architecture=arch,
        description=config.description,
        input=InputSpec(
            channels=channels,
            crop=config.crop,
            size=config.image_size,
            mean=config.mean or (0.5,) * channels,
            std=config.std or (0.5,) * channels,
        ),
        parameters=config.parameters,
        args=MappingProxyType(dict(config.args)),
        has_weights=config.has_weights,
        frozen=config.frozen,
        test=config.test,
    )


def register_architecture(
    name: str,
    *,
    kind: str,
    build: Builder,
    configs: tuple[Config, ...] | list[Config],
    loads_weights: bool = False,
) -> Architecture:
    """Register the architecture ``name``, built by ``build``, under each of its configurations'
    names. Checked now: unique names, builder keywords, frozen only with weights."""
    if name in _ARCHITECTURES:
        raise ValueError(f"architecture {name!r} is registered twice")
    if not configs:
        raise ValueError(f"architecture {name!r}: give at least one configuration")
    arch = Architecture(name, kind, build, tuple(configs), loads_weights)
    specs: list[ModelSpec] = []
    for config in arch.configs:
        key = config.name.lower()
        if key != config.name or key in _REGISTRY or any(s.name == key for s in specs):
            raise ValueError(f"model {config.name!r}: registered twice, or not lower case")
        if config.frozen and not loads_weights:
            raise ValueError(f"model {config.name!r}: frozen, but its builder loads no weights")
        if config.has_weights and not loads_weights:
            raise ValueError(f"model {config.name!r}: has weights its builder cannot load")
        _check_args(build, config.name, config.args, loads_weights)
        specs.append(_spec(arch, config))
    _ARCHITECTURES[name] = arch
    _REGISTRY.update((s.name, s) for s in specs)
    return arch


def register_family(prefix: str, resolve: Callable[[str], ModelSpec]) -> None:
    """Names ``<prefix><rest>`` resolve to ``resolve(rest)`` (e.g. ``timm/<architecture>``)."""
    _FAMILIES[prefix] = resolve


def spec_of(arch: Architecture, config: Config) -> ModelSpec:
    """The spec of a configuration made on the fly (a family's resolver), unregistered."""
    _check_args(arch.build, config.name, config.args, arch.loads_weights)
    return _spec(arch, config)


def list_models(pattern: str = "*", include_test: bool = True) -> list[str]:
    """Registered names matching a shell wildcard (``"res*"``), sorted."""
    return sorted(
        n
        for n, s in _REGISTRY.items()
        if fnmatch.fnmatchcase(n, pattern.lower()) and (include_test or not s.test)
    )


def list_architectures() -> list[str]:
    """The registered architectures, sorted (each has one or more named configurations)."""
    return sorted(_ARCHITECTURES)


def get_architecture(name: str) -> Architecture:
    """The architecture ``name`` (``galaxynet``, ``resnet``, …) with its configurations."""
    try:
        return _ARCHITECTURES[name]
    except KeyError:
        raise BadInputError(
            f"{name!r}: no such architecture. Registered: {', '.join(list_architectures())}."
        ) from None


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
    parameters: int | None,
    test: bool = False,
) -> Callable[[Builder], Builder]:
    """Decorator: an architecture with one configuration, both called ``name`` (for one-off
    models such as a benchmark's variants). ``build(input_spec)`` builds it."""

    def wrap(build: Builder) -> Builder:
        config = Config(
            name, description, channels, image_size, crop, parameters, mean=mean, std=std,
            test=test,
        )  # fmt: skip
        register_architecture(name, kind=kind, build=build, configs=[config])
        return build

    return wrap
