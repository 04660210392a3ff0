"""The registry's shape: architectures with named configurations, builders that take only the
keywords they use, and "has weights" apart from "frozen by default"."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from galaxyzoo_cli.cli import app
from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.data.images import InputSpec
from galaxyzoo_cli.models import (
    describe_models,
    get_architecture,
    get_spec,
    list_architectures,
    list_models,
    registry,
    resolve_config,
)
from galaxyzoo_cli.models.galaxy_model import create_model
from galaxyzoo_cli.models.registry import Config, register_architecture
from galaxyzoo_cli.models.scratch import build_galaxynet, build_plainnet
from galaxyzoo_cli.models.timm_backbones import build_backbone

runner = CliRunner()


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by a test vanish after it."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_ARCHITECTURES", dict(registry._ARCHITECTURES))


def test_each_architecture_lists_its_named_configurations() -> None:
    galaxynet = get_architecture("galaxynet")
    assert [c.name for c in galaxynet.configs] == [
        "galaxynet", "galaxynet-s", "galaxynet-v1", "test_tiny"
    ]  # fmt: skip
    inputs = {n: get_spec(n).input for n in ("galaxynet", "galaxynet-s", "galaxynet-v1")}
    assert {n: (i.channels, i.crop, i.size) for n, i in inputs.items()} == {
        "galaxynet": (3, 256, 96),
        "galaxynet-s": (3, 256, 64),
        "galaxynet-v1": (3, 208, 64),
    }
    assert all(get_spec(n).architecture is galaxynet for n in inputs)
    # The Zoobot encoders are configurations of their timm architectures (other weights).
    assert {c.name for c in get_architecture("resnet").configs} == {
        "resnet18", "resnet50", "zoobot-resnet18", "zoobot-resnet50"
    }  # fmt: skip
    assert get_spec("zoobot-resnet50").args == {
        "arch": "resnet50", "hub": "hf_hub:mwalmsley/zoobot-encoder-resnet50"
    }  # fmt: skip
    # Every registered name belongs to exactly one registered architecture.
    names = [c.name for a in list_architectures() for c in get_architecture(a).configs]
    assert sorted(names) == list_models() and len(set(names)) == len(names)
    with pytest.raises(BadInputError, match="'galaxynets': no such architecture"):
        get_architecture("galaxynets")


def test_plainnet_configurations_build_their_widths() -> None:
    for name, first, size in (("plainnet", 32, 64), ("plainnet-s", 16, 64)):
        config = resolve_config(name)
        assert (config.input.channels, config.input.crop, config.input.size) == (3, 256, size)
        assert not config.freeze and not get_spec(name).has_weights
        model = create_model(config)
        convs = [m for m in model.features.modules() if isinstance(m, torch.nn.Conv2d)]
        assert convs[0].out_channels == first and convs[-1].out_channels == 128
        assert len(convs) == 8  # four stages of two convolutions
        assert model(torch.rand(2, 3, size, size)).shape == (2, 37)


def test_unknown_builder_keywords_are_refused_by_name(scratch_registry: None) -> None:
    bad = Config("test_typo", "a typo", channels=3, image_size=32, crop=256, parameters=None,
                 args={"widht": 8})  # fmt: skip
    with pytest.raises(TypeError, match="'widht'.*takes: width, depth, dropout, stem_stride"):
        register_architecture("typo", kind="custom", build=build_galaxynet, configs=[bad])
    assert "test_typo" not in list_models() and "typo" not in list_architectures()
    with pytest.raises(TypeError, match="widths"):
        build_galaxynet(InputSpec(3, 256, 32), widths=(8,))  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'weights'"):  # a custom net loads no weights file
        register_architecture(
            "typo2", kind="custom", build=build_plainnet,
            configs=[Config("test_typo2", "", 3, 32, 256, None, args={"weights": "x.pth"})],
        )  # fmt: skip


def test_timm_builder_passes_other_keywords_on_to_timm() -> None:
    spec = InputSpec(3, 256, 32)
    assert build_backbone(spec, arch="test_resnet", drop_rate=0.25).drop_rate == 0.25
    with pytest.raises(TypeError, match="'nonsense'"):
        build_backbone(spec, arch="test_resnet", nonsense=1)


def test_has_weights_is_not_frozen_by_default(scratch_registry: None) -> None:
    # Both, as before: ImageNet and Zoobot backbones load weights and freeze them by default.
    for name in ("resnet18", "zoobot-greyscale-convnext-pico", "test_timm"):
        spec = get_spec(name)
        assert spec.has_weights and spec.frozen_by_default
        assert spec.pretrained  # the old name of has_weights, kept for a while
        assert resolve_config(name).freeze
        assert spec.weights_and_freeze(None, None, None) == (True, True)
    # A backbone whose weights are fine-tuned by default: weights, not frozen.
    register_architecture(
        "test_resnet_tuned", kind="timm", build=build_backbone, loads_weights=True,
        configs=[Config("test_tuned", "tuned", 3, 32, 256, None, args={"arch": "test_resnet"},
                        has_weights=True, frozen=False, test=True)],
    )  # fmt: skip
    tuned = get_spec("test_tuned")
    assert tuned.has_weights and not tuned.frozen_by_default
    assert not resolve_config("test_tuned").freeze
    assert tuned.weights_and_freeze(None, None, None) == (True, False)
    assert tuned.weights_and_freeze(None, None, True) == (True, True)
    row = next(r for r in describe_models("test_tuned", include_test=True))
    assert row["has_weights"] and row["pretrained_by_default"] and not row["frozen_by_default"]
    # A custom network loads no weights, so it cannot freeze them.
    with pytest.raises(ValueError, match="frozen, but its builder loads no weights"):
        register_architecture(
            "test_frozen", kind="custom", build=build_plainnet,
            configs=[Config("test_frozen", "", 3, 32, 256, None, frozen=True)],
        )  # fmt: skip
    with pytest.raises(ValueError, match="has weights its builder cannot load"):
        register_architecture(
            "test_custom_weights", kind="custom", build=build_plainnet,
            configs=[Config("test_cw", "", 3, 32, 256, None, has_weights=True)],
        )  # fmt: skip


def test_the_users_weights_and_freeze_choices() -> None:
    resnet = get_spec("resnet18")
    assert resnet.weights_and_freeze(False, None, None) == (False, False)  # --no-pretrained
    assert resnet.weights_and_freeze(None, None, False) == (True, False)  # --no-freeze
    assert resnet.weights_and_freeze(False, "r.pth", None) == (True, True)  # a file wins
    # timm has no weights for seresnet18: trained whole, unless a local file is given (frozen).
    bare = get_spec("timm/seresnet18")
    assert not bare.has_weights and not resolve_config("timm/seresnet18").freeze
    assert bare.weights_and_freeze(None, None, None) == (False, False)
    assert bare.weights_and_freeze(None, "s.pth", None) == (True, True)
    tiny = get_spec("test_tiny")
    assert tiny.weights_and_freeze(None, None, None) == (False, False)
    with pytest.raises(BadInputError, match="--freeze without pretrained weights.*pick a pre"):
        tiny.weights_and_freeze(None, None, True)
    with pytest.raises(BadInputError, match="--freeze without.*--pretrained, or --weights FILE"):
        resnet.weights_and_freeze(False, None, True)
    with pytest.raises(BadInputError, match="--pretrained: test_tiny has no pretrained weights"):
        tiny.weights_and_freeze(True, None, None)
    with pytest.raises(BadInputError, match="--weights w.pth: test_tiny is trained from scratch"):
        tiny.weights_and_freeze(None, "w.pth", None)


def test_models_without_weights_refuse_them(tmp_path: Path) -> None:
    config = resolve_config("test_tiny")
    with pytest.raises(BadInputError, match="--pretrained: test_tiny has no pretrained weights"):
        create_model(config, pretrained=True)
    with pytest.raises(BadInputError, match="--weights .*test_tiny is trained from scratch"):
        create_model(config, pretrained=True, weights=str(tmp_path / "w.pth"))
    timm_config = resolve_config("timm/seresnet18")  # timm has no weights for it
    with pytest.raises(BadInputError, match="has no pretrained weights.*--weights FILE"):
        create_model(timm_config, pretrained=True)


def test_training_a_custom_net_with_weights_is_refused(
    synthetic_data: Path, tmp_path: Path
) -> None:
    """--weights (or --pretrained) on a custom net used to freeze its random features."""
    (tmp_path / "w.pth").touch()
    result = runner.invoke(
        app,
        ["train", "--model", "test_tiny", "--weights", str(tmp_path / "w.pth"), "--epochs", "1",
         "--data-dir", str(synthetic_data), "--runs-dir", str(tmp_path / "runs")],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "test_tiny is trained from scratch and loads no weights file" in result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
