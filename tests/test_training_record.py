"""One record of a run (config.json once, resumes.jsonl, summary.json) and the one loop: its
step counter across a resume, frozen features computed once before the first epoch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import galaxyzoo_cli.training.loop as training
from galaxyzoo_cli.cli import app
from galaxyzoo_cli.core.errors import Interrupted
from galaxyzoo_cli.core.settings import TrainConfig
from galaxyzoo_cli.models.galaxy_model import GalaxyModel
from galaxyzoo_cli.training.loop import resume, select_init, train
from galaxyzoo_cli.training.run_folder import load_checkpoint, read_metrics

runner = CliRunner()
TINY = {"model": "test_tiny", "batch_size": 16, "device": "cpu", "lr": 3e-3}


def _resumes(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "resumes.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_a_resume_keeps_config_json_and_records_itself(
    synthetic_data: Path, tmp_path: Path
) -> None:
    first = train(TrainConfig(**TINY, epochs=2), data_dir=synthetic_data, runs_dir=tmp_path)
    config = (first.run_dir / "config.json").read_bytes()
    assert not (first.run_dir / "resumes.jsonl").exists()
    result = runner.invoke(app, ["train", "--resume", str(first.run_dir), "--epochs", "3"])
    assert result.exit_code == 0, result.output
    resume(first.run_dir, epochs=4, patience=5)
    assert (first.run_dir / "config.json").read_bytes() == config  # written once
    one, two = _resumes(first.run_dir)
    assert one["changed"] == {"epochs": {"old": 2, "new": 3}} and one["from_epoch"] == 2
    assert two["changed"] == {"epochs": {"old": 3, "new": 4}, "patience": {"old": 0, "new": 5}}
    assert two["from_epoch"] == 3 and two["device"] == "cpu" and two["world_size"] == 1
    assert one["version"] and one["time"] <= two["time"]
    summary = json.loads((first.run_dir / "summary.json").read_text())
    assert summary["epochs_run"] == 4 and summary["epochs_asked"] == 4


def test_a_resumed_select_init_run_still_says_select_init(
    synthetic_data: Path, tmp_path: Path
) -> None:
    result = select_init(TrainConfig(**TINY, epochs=2, augment=False), trials=2,
                         data_dir=synthetic_data, runs_dir=tmp_path)  # fmt: skip
    before = (result.run_dir / "config.json").read_bytes()
    resume(result.run_dir, epochs=3)
    assert (result.run_dir / "config.json").read_bytes() == before
    config = json.loads(before)
    assert config["command"] == "select-init" and config["trials"] == 2
    assert config["trial_epochs"] == 1 and config["settings"]["epochs"] == 2
    assert [r["changed"] for r in _resumes(result.run_dir)] == [{"epochs": {"old": 2, "new": 3}}]


def test_summary_names_the_epoch_best_pt_holds(synthetic_data: Path, tmp_path: Path) -> None:
    result = train(
        TrainConfig(**{**TINY, "lr": 0.05}, epochs=6, patience=2, augment=False),
        data_dir=synthetic_data,
        runs_dir=tmp_path,
    )
    summary = json.loads((result.run_dir / "summary.json").read_text())
    best = load_checkpoint(result.run_dir / "weights" / "best.pt")
    last = load_checkpoint(result.run_dir / "weights" / "last.pt")
    assert summary["best_epoch"] == best.progress.best_epoch == best.progress.epoch
    assert summary["best_epoch"] == result.best_epoch and summary["best_by"] == "val_loss"
    assert summary["best"]["val_loss"] == pytest.approx(best.progress.best_val_loss, rel=1e-6)
    assert summary["stopped_early"] == result.stopped_early
    assert summary["epochs_run"] == len(read_metrics(result.run_dir)) == last.progress.epoch
    assert summary["epochs_asked"] == 6 and summary["images_seen"] == result.images
    assert summary["train_seconds"] == pytest.approx(last.progress.train_seconds)
    # The status of the run and its outcome agree.
    assert json.loads((result.run_dir / "status.json").read_text())["status"] == "finished"


def test_without_validation_the_newest_epoch_is_kept(synthetic_data: Path, tmp_path: Path) -> None:
    result = train(TrainConfig(**TINY, epochs=2, val_fraction=0.0), data_dir=synthetic_data,
                   runs_dir=tmp_path)  # fmt: skip
    summary = json.loads((result.run_dir / "summary.json").read_text())
    best = load_checkpoint(result.run_dir / "weights" / "best.pt")
    assert result.n_val == 0 and summary["best_epoch"] == best.progress.epoch == 2
    assert summary["best"]["val_loss"] is None  # strict JSON: no NaN


def test_the_documented_all_galaxies_recipe_says_there_is_no_validation(
    synthetic_data: Path, tmp_path: Path
) -> None:
    args = ["train", "--data-dir", str(synthetic_data), "--runs-dir", str(tmp_path), "--model",
            "test_tiny", "--epochs", "2", "--val-fraction", "0", "--device", "cpu"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    epochs = [line for line in result.output.splitlines() if line.startswith("epoch")]
    assert len(epochs) == 2 and all("no validation split" in line for line in epochs), epochs
    assert "nan" not in result.output


def test_a_stopped_and_resumed_run_continues_the_same_schedule(
    synthetic_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Warm-up, a head-only phase, cosine decay and weight averaging: all read the step counter.
    cfg = TrainConfig(**TINY, epochs=3, warmup_epochs=1.5, head_epochs=1, ema=0.9, name="run")
    whole = train(cfg, data_dir=synthetic_data, runs_dir=tmp_path / "a")
    real = training.train_one_epoch

    def stop_before_epoch_3(*args: Any, **kwargs: Any) -> tuple[float, float]:
        if args[4] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(training, "train_one_epoch", stop_before_epoch_3)
        with pytest.raises(Interrupted, match="after epoch 2"):
            train(cfg, data_dir=synthetic_data, runs_dir=tmp_path / "b")
    stopped = tmp_path / "b" / "run"
    assert load_checkpoint(stopped / "weights" / "last.pt").state["steps"] == 2 * 7
    resume(stopped)
    lr_whole = [r["lr"] for r in read_metrics(whole.run_dir)]
    assert [r["lr"] for r in read_metrics(stopped)] == lr_whole
    assert lr_whole[2] < lr_whole[1] < cfg.lr  # each phase warms up; the second then decays
    wa = load_checkpoint(whole.run_dir / "weights" / "last.pt").state
    wb = load_checkpoint(stopped / "weights" / "last.pt").state
    assert wa["steps"] == wb["steps"] == 3 * 7
    for key in ("model_state", "train_state"):
        assert all(torch.allclose(wa[key][k].float(), wb[key][k].float(), atol=1e-6)
                   for k in wa[key])  # fmt: skip


def test_frozen_features_are_computed_once_before_the_first_epoch(
    synthetic_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import timm

    weights = tmp_path / "w.pth"
    torch.save(timm.create_model("test_resnet", num_classes=1000).state_dict(), weights)
    calls = {"embed": 0}
    at_epoch_start: list[int] = []
    embed, one_epoch = GalaxyModel.embed, training.train_one_epoch

    def counting_embed(self: GalaxyModel, images: torch.Tensor) -> torch.Tensor:
        calls["embed"] += 1
        return embed(self, images)

    def noting_epoch(*args: Any, **kwargs: Any) -> tuple[float, float]:
        at_epoch_start.append(calls["embed"])
        return one_epoch(*args, **kwargs)

    monkeypatch.setattr(GalaxyModel, "embed", counting_embed)
    monkeypatch.setattr(training, "train_one_epoch", noting_epoch)
    cfg = TrainConfig(model="test_timm", weights=str(weights), epochs=3, device="cpu")
    result = train(cfg, data_dir=synthetic_data, runs_dir=tmp_path / "r")
    once = calls["embed"]  # the training and the validation images' batches
    assert once >= 2 and at_epoch_start == [once, once, once]
    assert result.images == 120  # each image once, for its features
    # select-init's trials and the kept run share them: still computed once.
    calls["embed"], at_epoch_start[:] = 0, []
    select_init(cfg, trials=3, data_dir=synthetic_data, runs_dir=tmp_path / "s")
    assert at_epoch_start == [once] * 5 and calls["embed"] == once
