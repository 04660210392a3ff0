"""The model registry, heads and losses; tests are generated from the registry."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from galaxyzoo_cli.cli import app
from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.core.schema import check_consistency
from galaxyzoo_cli.models import get_spec, list_models, resolve_config
from galaxyzoo_cli.models.galaxy_model import count_parameters, create_model, fuse_for_inference
from galaxyzoo_cli.models.heads import tree_normalise
from galaxyzoo_cli.training.losses import masked_loss

runner = CliRunner()


def test_registry_lists_with_wildcards() -> None:
    assert {"convnet", "linnet", "galaxynet", "resnet18", "densenet121"} <= set(list_models())
    assert list_models("res*", include_test=False) == ["resnet18", "resnet50"]
    assert "test_tiny" not in list_models(include_test=False)
    assert list_models("nothing*") == []


def test_models_command_lists_registry() -> None:
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    import json

    rows = {r["name"]: r for r in json.loads(result.output)["models"]}
    assert rows["convnet"]["parameters"] == 327_667  # the notebook's ConvNet with 37 outputs
    assert rows["resnet18"]["kind"] == "timm" and rows["resnet18"]["frozen_by_default"]
    assert rows["convnet"]["input"] == "gray 64 px, crop 256"
    assert [r["name"] for r in rows.values() if r["default"]] == ["galaxynet"]
    result = runner.invoke(app, ["models", "dense*"])
    assert (
        result.exit_code == 0 and "densenet121" in result.output and "convnet" not in result.output
    )
    assert "galaxynet (default)" in runner.invoke(app, ["models", "galaxy*"]).output


@pytest.mark.parametrize("name", list_models())
def test_declared_parameters_are_the_built_models(name: str) -> None:
    with torch.device("meta"):
        model = create_model(resolve_config(name))
    assert get_spec(name).parameters == count_parameters(model)


def test_listing_models_imports_no_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from galaxyzoo_cli.models import describe_models; describe_models(); "
        "print('torch' in sys.modules, 'timm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("head", ["tree", "sigmoid"])
def test_every_model_forward_backward(name: str, head: str) -> None:
    spec = get_spec(name)
    size = min(spec.input.size or 64, 64)  # small inputs keep the big backbones fast here
    config = resolve_config(name, head=head, image_size=size, freeze=False)
    model = create_model(config)
    x = torch.rand(2, config.input.channels, size, size)
    out = model(x)
    assert out.shape == (2, 37)
    assert out.min() >= 0 and out.max() <= 1
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    if head == "tree":
        assert check_consistency(out.detach().numpy(), tolerance=1e-5).ok


@pytest.mark.parametrize("name", list_models())
def test_prediction_folds_batch_norm_without_changing_outputs(name: str) -> None:
    """Prediction folds each batch norm into the convolution before it: the features (and so the
    outputs) stay the same up to float rounding, and the custom nets keep no batch norm."""
    config = resolve_config(name, image_size=min(get_spec(name).input.size or 64, 64), freeze=False)
    model = create_model(config)
    x = torch.rand(4, config.input.channels, config.input.size or 64, config.input.size or 64)
    with torch.no_grad():
        model.train()(x * 2.0)  # running statistics that are not the initial 0 and 1
        expected = model.eval().embed(x)
        fused = create_model(config)
        fused.load_state_dict(model.state_dict())
        got = fuse_for_inference(fused).embed(x)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4)
    if get_spec(name).kind == "custom":
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())


def test_model_declares_its_preprocessing() -> None:
    c = resolve_config("resnet18", channels=1)
    assert c.input.mean == pytest.approx((0.449,), abs=1e-3)  # ImageNet mean, grayscale
    convnet = resolve_config("convnet").input
    assert (convnet.channels, convnet.crop, convnet.size) == (1, 256, 64)
    assert resolve_config("resnet18").freeze and not resolve_config("galaxynet").freeze


def test_convnet_is_sized_from_its_input() -> None:
    for size in (48, 64, 96):
        model = create_model(resolve_config("convnet", image_size=size))
        assert model(torch.rand(1, 1, size, size)).shape == (1, 37)


def test_tree_head_obeys_the_tree_on_random_inputs() -> None:
    g = torch.Generator().manual_seed(0)
    raw = torch.rand(500, 37, generator=g) * (torch.rand(500, 37, generator=g) > 0.3)
    out = tree_normalise(raw).numpy()
    report = check_consistency(out, tolerance=1e-5)
    assert report.ok, report.describe()
    assert out[:, 0:3].sum(axis=1) == pytest.approx(np.ones(500), abs=1e-5)


def test_masked_losses_ignore_empty_cells() -> None:
    pred = torch.full((2, 37), 0.5)
    target = torch.full((2, 37), float("nan"))
    target[0, 0] = 1.0  # error 0.5
    target[1, 3] = 0.25  # error 0.25
    mse = (0.25 + 0.0625) / 2
    assert masked_loss("mse", pred, target).item() == pytest.approx(mse)
    assert masked_loss("rmse", pred, target).item() == pytest.approx(mse**0.5)
    bce = -(np.log(0.5) * 1.0) / 1
    assert masked_loss("bce", pred, target).item() == pytest.approx(bce, rel=1e-5)
    target[:] = float("nan")
    assert masked_loss("mse", pred, target).item() == 0.0  # nothing labelled: no signal
    with pytest.raises(BadInputError, match="--loss 'hinge'"):
        masked_loss("hinge", pred, torch.zeros(2, 37))  # type: ignore[arg-type]


def test_unknown_model_is_a_clear_error(synthetic_data: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "train",
            "--model",
            "resnet19",
            "--data-dir",
            str(synthetic_data),
            "--runs-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2
    assert "--model 'resnet19': unknown model" in result.output and "resnet18" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(
        app, ["train", "--model", "timm/not_a_net", "--data-dir", str(synthetic_data)]
    )
    assert result.exit_code == 2 and "timm has no such architecture" in result.output


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No cached weights and a hub that refuses connections at once."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def test_missing_pretrained_weights_fail_fast(
    offline_hub: None, synthetic_data: Path, tmp_path: Path
) -> None:
    start = time.perf_counter()
    result = runner.invoke(
        app,
        ["train", "--model", "test_timm", "--epochs", "1", "--data-dir", str(synthetic_data),
         "--runs-dir", str(tmp_path / "runs")],
    )  # fmt: skip
    assert time.perf_counter() - start < 20  # no 45-second retry loop
    assert result.exit_code == 2, result.output
    assert "--weights FILE" in result.output and "--no-pretrained" in result.output
    result = runner.invoke(
        app,
        ["train", "--model", "test_timm", "--weights", str(tmp_path / "nope.pth"),
         "--data-dir", str(synthetic_data), "--runs-dir", str(tmp_path / "runs")],
    )  # fmt: skip
    assert result.exit_code == 2 and "nope.pth: file not found" in result.output


def test_wrong_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    import timm

    path = tmp_path / "other.pth"
    torch.save(timm.create_model("test_vit", num_classes=0).state_dict(), path)
    with pytest.raises(BadInputError, match="cannot load into test_resnet .missing"):
        create_model(resolve_config("test_timm"), pretrained=True, weights=str(path))


def test_timm_backbone_loads_local_weights(tmp_path: Path) -> None:
    import timm

    source = timm.create_model("test_resnet", num_classes=1000)  # an ImageNet-style checkpoint
    path = tmp_path / "test_resnet.pth"
    torch.save(source.state_dict(), path)
    model = create_model(resolve_config("test_timm"), pretrained=True, weights=str(path))
    loaded = model.features.state_dict()
    for key, value in source.state_dict().items():
        if key.startswith("fc."):
            assert key not in loaded  # the ImageNet classifier is dropped; our head replaces it
        else:
            assert torch.equal(loaded[key], value), key
    assert model.config.freeze and not any(p.requires_grad for p in model.features.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
