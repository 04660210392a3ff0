"""Checkpoints: today's format, the 0.1 format still read, and clear errors for the others."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from galaxyzoo_cli.cli import app
from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.core.settings import EvaluateSettings, TrainConfig
from galaxyzoo_cli.inference import evaluate
from galaxyzoo_cli.models import resolve_config
from galaxyzoo_cli.training.loop import resume, train
from galaxyzoo_cli.training.run_folder import load_checkpoint

runner = CliRunner()


@pytest.fixture
def run_dir(synthetic_data: Path, tmp_path: Path) -> Path:
    config = TrainConfig(model="test_tiny", epochs=2, batch_size=16, device="cpu", patience=0)
    return train(config, data_dir=synthetic_data, runs_dir=tmp_path / "runs").run_dir


def _as_version_01(path: Path) -> None:
    """Rewrite a checkpoint in the layout galaxyzoo-cli 0.1.0 wrote (its split and data folder
    lived only in config.json; settings held the resolved input)."""
    raw = torch.load(path, weights_only=True)
    spec = raw["model"]["input"]
    old = {
        "format": "galaxyzoo-cli/checkpoint/1",
        "version": "0.1.0",
        "model": {
            "name": raw["model"]["name"],
            "head": raw["model"]["head"],
            "channels": spec["channels"],
            "image_size": spec["size"],
            "freeze": raw["model"]["freeze"],
            "mean": spec["mean"],
            "std": spec["std"],
        },
        "preprocess": {
            "channels": spec["channels"],
            "crop": spec["crop"],
            "image_size": spec["size"],
        },
        "settings": {
            **{
                k: v
                for k, v in raw["settings"].items()
                if k not in ("augment_kind", "warmup_epochs")
            },
            "channels": 1,
            "image_size": 24,
            "crop": 256,
        },
        **{k: v for k, v in raw["progress"].items() if k != "metrics"},
        **{k: raw[k] for k in ("model_state", "optimizer_state", "rng_state") if k in raw},
    }
    torch.save(old, path)


def test_checkpoint_holds_everything_a_run_needs(run_dir: Path, synthetic_data: Path) -> None:
    ckpt = load_checkpoint(run_dir / "weights" / "last.pt")
    assert ckpt.model.input.size == 24 and ckpt.model.input.crop == 256
    assert ckpt.data_dir == synthetic_data.resolve() and len(ckpt.val_ids) == 12
    assert [row["epoch"] for row in ckpt.progress.metrics] == [1, 2]
    assert ckpt.settings.epochs == 2 and ckpt.settings.crop is None  # as given: the model's
    # config.json shows the same facts but is never read back: changing it changes nothing.
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"] == ckpt.model.as_dict()
    (run_dir / "config.json").write_text("{}")
    assert evaluate(run_dir, EvaluateSettings(write=False)).scores["n_images"] == 12


@pytest.fixture
def relu_run_dir(synthetic_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run with the tree head's ReLU, as every run before 0.3 had."""
    import dataclasses

    import galaxyzoo_cli.training.setup as fit

    def relu_config(*args: object, **kwargs: object) -> object:
        return dataclasses.replace(resolve_config(*args, **kwargs), activation="relu")  # type: ignore[arg-type]

    monkeypatch.setattr(fit, "resolve_config", relu_config)
    config = TrainConfig(model="test_tiny", epochs=2, batch_size=16, device="cpu", patience=0)
    return train(config, data_dir=synthetic_data, runs_dir=tmp_path / "runs").run_dir


def test_version_01_checkpoints_still_load(relu_run_dir: Path) -> None:
    run_dir = relu_run_dir
    assert load_checkpoint(run_dir / "weights" / "best.pt").model.activation == "relu"
    before = evaluate(run_dir, EvaluateSettings(write=False)).scores["rmse"]
    for name in ("best.pt", "last.pt"):
        _as_version_01(run_dir / "weights" / name)
    ckpt = load_checkpoint(run_dir / "weights" / "best.pt")
    assert ckpt.version == "0.1.0" and ckpt.model.input.size == 24
    assert ckpt.model.activation == "relu" and ckpt.model.learned.complete
    # Settings 0.1/0.2 did not record are the ones they used: a resume trains on as it did.
    assert (ckpt.settings.augment_kind, ckpt.settings.warmup_epochs) == ("affine", 1.0)
    assert evaluate(run_dir, EvaluateSettings(write=False)).scores["rmse"] == pytest.approx(before)
    result = resume(run_dir, epochs=3, device="cpu")
    assert result.epochs_run == 3
    assert load_checkpoint(run_dir / "weights" / "last.pt").version != "0.1.0"  # rewritten


def test_unknown_checkpoint_format_names_the_versions(tmp_path: Path) -> None:
    path = tmp_path / "weights" / "best.pt"
    path.parent.mkdir()
    torch.save({"format": "galaxyzoo-cli/checkpoint/9", "version": "9.0"}, path)
    with pytest.raises(BadInputError, match="checkpoint/9.*galaxyzoo-cli 0.*reads"):
        load_checkpoint(path)
    result = runner.invoke(app, ["evaluate", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
