"""train and select-init on real (synthetic) JPEGs with real models."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import galaxyzoo_cli.training.setup as fit_module
from galaxyzoo_cli.cli import app
from galaxyzoo_cli.core.errors import BadInputError, Interrupted, JobFailedError
from galaxyzoo_cli.core.progress import SILENT
from galaxyzoo_cli.core.settings import TrainConfig
from galaxyzoo_cli.data.catalogue import split_ids
from galaxyzoo_cli.data.synthetic import generate
from galaxyzoo_cli.training.loop import resume, select_init, train
from galaxyzoo_cli.training.run_folder import load_checkpoint, read_metrics

runner = CliRunner()
TINY = {"model": "test_tiny", "batch_size": 16, "device": "cpu", "lr": 3e-3}


@pytest.fixture(scope="module")
def data300(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("d300") / "data"
    generate(data_dir=data_dir, n_train=300, n_test=0, seed=3)
    return data_dir


def test_split_last_and_random() -> None:
    ids = np.array([500, 100, 400, 200, 300, 900, 800, 700, 600, 1000])
    va = split_ids(ids, 0.2, "last", seed=0)  # type: ignore[arg-type]
    assert va.tolist() == [900, 1000]  # the highest GalaxyIDs, like the winner
    va1 = split_ids(ids, 0.3, "random", seed=1)  # type: ignore[arg-type]
    va2 = split_ids(ids, 0.3, "random", seed=1)  # type: ignore[arg-type]
    assert va1.tolist() == va2.tolist() and len(va1) == 3 and set(va1) <= set(ids)
    assert split_ids(ids, 0.0, "random", 0).size == 0  # type: ignore[arg-type]


def test_training_beats_the_mean_baseline(data300: Path, tmp_path: Path) -> None:
    result = train(
        TrainConfig(model="galaxynet", epochs=12, batch_size=32, lr=3e-3, device="cpu", seed=0),
        data_dir=data300,
        runs_dir=tmp_path,
    )
    assert result.n_val == 30 and result.n_train == 270
    assert result.best_val_rmse < 0.85 * result.baseline_val_rmse, result.summary()


def test_run_folder_and_self_describing_checkpoints(synthetic_data: Path, tmp_path: Path) -> None:
    result = train(
        TrainConfig(**TINY, epochs=2, name="tiny"), data_dir=synthetic_data, runs_dir=tmp_path
    )
    run = result.run_dir
    assert run == tmp_path / "tiny"
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["model"] == "test_tiny" and config["settings"]["epochs"] == 2
    assert config["model"]["input"] == {
        "channels": 1, "crop": 256, "size": 24, "mean": [0.5], "std": [0.5]
    }  # fmt: skip
    assert config["model"]["head"] == "tree" and config["version"]
    assert len(config["data"]["val_ids"]) == 12 and config["device"] == "cpu"
    with (run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert list(rows[0]) == ["epoch", "train_loss", "val_loss", "val_rmse", "lr", "seconds"]
    # weights_only loading, and the model rebuilds from the checkpoint alone
    raw = torch.load(run / "weights" / "best.pt", weights_only=True)
    assert raw["model"]["name"] == "test_tiny" and "optimizer_state" not in raw
    best = load_checkpoint(run / "weights" / "best.pt")
    model = best.build_model()
    assert best.model.input.size == 24 and model(torch.rand(3, 1, 24, 24)).shape == (3, 37)
    assert best.val_ids.tolist() == config["data"]["val_ids"]
    assert "optimizer_state" in load_checkpoint(run / "weights" / "last.pt").state
    # a second run with the same name never overwrites the first
    again = train(
        TrainConfig(**TINY, epochs=1, name="tiny"), data_dir=synthetic_data, runs_dir=tmp_path
    )
    assert again.run_dir == tmp_path / "tiny-2"


def test_best_weights_are_restored_and_saved(synthetic_data: Path, tmp_path: Path) -> None:
    result = train(
        TrainConfig(**{**TINY, "lr": 0.05}, epochs=6, patience=2, augment=False),
        data_dir=synthetic_data,
        runs_dir=tmp_path,
    )
    rows = read_metrics(result.run_dir)
    losses = [r["val_loss"] for r in rows]
    assert result.best_epoch == int(np.argmin(losses)) + 1
    assert result.best_val_loss == pytest.approx(min(losses), rel=1e-5)
    best = load_checkpoint(result.run_dir / "weights" / "best.pt")
    assert best.progress.epoch == result.best_epoch
    # Either patience stopped it two epochs after the best, or it ran all six.
    assert len(rows) == (result.best_epoch + 2 if result.stopped_early else 6)


def test_same_seed_same_result_on_cpu(synthetic_data: Path, tmp_path: Path) -> None:
    a = train(TrainConfig(**TINY, epochs=2, seed=5), data_dir=synthetic_data, runs_dir=tmp_path)
    b = train(TrainConfig(**TINY, epochs=2, seed=5), data_dir=synthetic_data, runs_dir=tmp_path)
    c = train(TrainConfig(**TINY, epochs=2, seed=6), data_dir=synthetic_data, runs_dir=tmp_path)
    assert read_metrics(a.run_dir)[-1]["train_loss"] == read_metrics(b.run_dir)[-1]["train_loss"]
    sa = load_checkpoint(a.run_dir / "weights" / "last.pt").state["model_state"]
    sb = load_checkpoint(b.run_dir / "weights" / "last.pt").state["model_state"]
    sc = load_checkpoint(c.run_dir / "weights" / "last.pt").state["model_state"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_resume_continues_the_metrics(synthetic_data: Path, tmp_path: Path) -> None:
    first = train(
        TrainConfig(**TINY, epochs=2, patience=0), data_dir=synthetic_data, runs_dir=tmp_path
    )
    before = read_metrics(first.run_dir)
    result = runner.invoke(
        app, ["train", "--resume", str(first.run_dir), "--epochs", "4", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["epochs_run"] == 4
    after = read_metrics(first.run_dir)
    assert [r["epoch"] for r in after] == [1, 2, 3, 4]
    assert after[:2] == before
    assert load_checkpoint(first.run_dir / "weights" / "last.pt").progress.epoch == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.run_dir.name]  # in place
    result = runner.invoke(app, ["train", "--resume", str(first.run_dir), "--epochs", "3"])
    assert result.exit_code == 2 and "already has 4 epochs" in result.output


def test_resumed_run_equals_uninterrupted_run(synthetic_data: Path, tmp_path: Path) -> None:
    # One epoch of warm-up in both: by default it is 30% of the epochs the run was created with.
    cfg = TrainConfig(**TINY, epochs=3, patience=0, schedule="constant", warmup_epochs=1.0)
    whole = train(cfg, data_dir=synthetic_data, runs_dir=tmp_path / "a")
    part = train(cfg.replace(epochs=1), data_dir=synthetic_data, runs_dir=tmp_path / "b")
    resume(part.run_dir, epochs=3, device="cpu")
    wa = load_checkpoint(whole.run_dir / "weights" / "last.pt").state["model_state"]
    wb = load_checkpoint(part.run_dir / "weights" / "last.pt").state["model_state"]
    assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=1e-6) for k in wa)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(
    synthetic_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import galaxyzoo_cli.training.losses as losses

    real = losses.masked_loss
    calls = {"n": 0}
    steps_per_epoch = -(-108 // 16)

    def poisoned(kind, pred, target):
        loss = real(kind, pred, target)
        if not torch.is_grad_enabled():
            return loss  # validation
        calls["n"] += 1
        return loss * float("nan") if calls["n"] > steps_per_epoch else loss

    monkeypatch.setattr(losses, "masked_loss", poisoned)
    with pytest.raises(JobFailedError, match="diverged in epoch 2"):
        train(TrainConfig(**TINY, epochs=3, name="nan"), data_dir=synthetic_data, runs_dir=tmp_path)
    last = load_checkpoint(tmp_path / "nan" / "weights" / "last.pt")
    assert last.progress.epoch == 1
    assert all(
        torch.isfinite(v).all() for v in last.state["model_state"].values() if v.is_floating_point()
    )
    assert len(read_metrics(tmp_path / "nan")) == 1


def test_ctrl_c_saves_and_says_how_to_resume(
    synthetic_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import galaxyzoo_cli.data.transforms as transforms

    real = transforms.dihedral_batch  # the default augmentation
    calls = {"n": 0}

    def interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(transforms, "dihedral_batch", interrupt)
    with pytest.raises(Interrupted, match="interrupted after epoch 1.*--resume"):
        train(TrainConfig(**TINY, epochs=3, name="cc"), data_dir=synthetic_data, runs_dir=tmp_path)
    assert load_checkpoint(tmp_path / "cc" / "weights" / "last.pt").progress.epoch == 1


def test_select_init_keeps_the_truly_best_trial(synthetic_data: Path, tmp_path: Path) -> None:
    result = select_init(
        TrainConfig(**TINY, epochs=3, patience=0, augment=False),
        trials=4,
        trial_epochs=1,
        data_dir=synthetic_data,
        runs_dir=tmp_path,
    )
    with (result.run_dir / "trials.csv").open() as f:
        trials = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    assert [int(t["trial"]) for t in trials] == [1, 2, 3, 4]
    assert len({t["val_loss"] for t in trials}) == 4  # different initialisations
    best = min(trials, key=lambda t: t["val_loss"])
    # The kept weights really are the best trial's (not the last trial's): re-evaluate them.
    init = load_checkpoint(result.run_dir / "weights" / "init.pt")
    setup, _ = fit_module.prepare(
        TrainConfig(**TINY, epochs=3, augment=False), synthetic_data, SILENT
    )
    fit = fit_module.Fit(setup, seed=0)
    fit.model.load_state_dict(init.state["model_state"])
    loss, _ = fit.validate(setup.x_val, setup.y_val)
    assert loss == pytest.approx(best["val_loss"], rel=1e-5)
    assert [r["epoch"] for r in read_metrics(result.run_dir)] == [1, 2, 3]
    assert result.trials and len(result.trials) == 4


def test_select_init_rejects_bad_options(synthetic_data: Path, tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="--trial-epochs 3"):
        select_init(
            TrainConfig(**TINY, epochs=3), trials=2, trial_epochs=3, data_dir=synthetic_data
        )
    result = runner.invoke(
        app,
        [
            "select-init",
            "--trials",
            "0",
            "--data-dir",
            str(synthetic_data),
            "--runs-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2 and "--trials 0" in result.output


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--epochs", "0", "--epochs 0"),
        ("--lr", "-1", "--lr -1"),
        ("--val-fraction", "1.5", "--val-fraction 1.5"),
        ("--loss", "hinge", "'hinge' is not one of"),
        ("--head", "softmax", "'softmax' is not one of"),
        ("--channels", "2", "--channels 2"),
        ("--crop", "1000", "--crop 1000"),
        ("--device", "tpu", "--device 'tpu'"),
        ("--name", "a/b", "--name 'a/b'"),
    ],
)
def test_bad_train_options_exit_2(
    synthetic_data: Path, tmp_path: Path, flag: str, value: str, message: str
) -> None:
    result = runner.invoke(
        app,
        ["train", "--model", "test_tiny", flag, value, "--data-dir", str(synthetic_data),
         "--runs-dir", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not any(tmp_path.iterdir())  # nothing half-made


def test_train_cli_json(synthetic_data: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["train", "--model", "test_tiny", "--epochs", "1", "--limit", "40", "--device", "cpu",
         "--data-dir", str(synthetic_data), "--runs-dir", str(tmp_path), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["n_train"] + out["n_val"] == 40 and Path(out["run_dir"]).is_dir()
    assert "Device: cpu" in result.stderr


def test_frozen_backbone_trains_head_on_cached_features(
    synthetic_data: Path, tmp_path: Path
) -> None:
    import timm

    weights = tmp_path / "w.pth"
    torch.save(timm.create_model("test_resnet", num_classes=1000).state_dict(), weights)
    result = runner.invoke(
        app,
        ["train", "--model", "test_timm", "--weights", str(weights), "--epochs", "2",
         "--device", "cpu", "--data-dir", str(synthetic_data), "--runs-dir", str(tmp_path / "r")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "computed once" in result.stderr
    run = next((tmp_path / "r").iterdir())
    state = load_checkpoint(run / "weights" / "last.pt").state["model_state"]
    source = timm.create_model("test_resnet", num_classes=0)
    source.load_state_dict(torch.load(weights, weights_only=True), strict=False)
    for key, value in source.state_dict().items():
        assert torch.equal(state[f"features.{key}"], value), key  # frozen: unchanged
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["freeze"] and not config["settings"]["augment"]
