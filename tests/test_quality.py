"""What makes a model worth keeping: the default recipe learns, an untrained model predicts the
training mean, weight averaging, cross-validation folds, the notebook's loss, ensembles scored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from galaxyzoo_cli.cli import app
from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.core.metrics import column_means, kaggle_rmse
from galaxyzoo_cli.core.progress import SILENT
from galaxyzoo_cli.core.settings import EvaluateSettings, TrainConfig, ValSplit
from galaxyzoo_cli.data.catalogue import load_catalogue, read_labels, split_ids
from galaxyzoo_cli.data.synthetic import generate
from galaxyzoo_cli.inference import evaluate
from galaxyzoo_cli.inference.loading import predict_images
from galaxyzoo_cli.training.loop import TrainResult, resume, train
from galaxyzoo_cli.training.losses import masked_loss
from galaxyzoo_cli.training.run_folder import load_checkpoint
from galaxyzoo_cli.training.setup import Fit, prepare

runner = CliRunner()
TINY = {"model": "test_tiny", "batch_size": 16, "device": "cpu", "lr": 3e-3}


@pytest.fixture(scope="module")
def data300(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("q300") / "data"
    generate(data_dir=data_dir, n_train=300, n_test=0, seed=3)
    return data_dir


def test_the_default_recipe_clearly_beats_the_mean(data300: Path, tmp_path: Path) -> None:
    result = train(TrainConfig(epochs=10, device="cpu"), data_dir=data300, runs_dir=tmp_path)
    assert result.model == TrainConfig().model and result.n_val == 30
    # 10% below the mean on 30 galaxies (an untrained model scores 1.0×, the notebook's recipe
    # about 0.99×; this recipe 0.86× with the exact-view augmentation, under 0.85× with 0.2's
    # resampled rotations: 270 synthetic galaxies favour its zooms and shifts).
    assert result.best_val_rmse < 0.9 * result.baseline_val_rmse, result.summary()
    assert result.beats_baseline and "Warning" not in result.summary()


@pytest.mark.parametrize("head", ["tree", "sigmoid"])
def test_an_untrained_model_predicts_the_training_mean(synthetic_data: Path, head: str) -> None:
    setup, _ = prepare(TrainConfig(**TINY, head=head), synthetic_data, SILENT)  # type: ignore[arg-type]
    fit = Fit(setup, seed=0)
    pred, _ = predict_images(
        fit.model,
        iter([setup.x_val[np.arange(len(setup.x_val))]]),
        len(setup.y_val),
        fit.setup.runtime.device,
    )
    means = column_means(setup.y_train)
    np.testing.assert_allclose(pred, np.broadcast_to(means, pred.shape), atol=2e-3)
    baseline = kaggle_rmse(np.broadcast_to(means, setup.y_val.shape), setup.y_val)
    assert kaggle_rmse(pred, setup.y_val) == pytest.approx(baseline, abs=1e-3)


def test_a_run_worse_than_the_mean_says_so() -> None:
    result = TrainResult(Path("r"), "m", 1, 1, 0.05, 0.2, 0.15, 90, 10, 1.0, 90, 90.0, False, "cpu")
    assert result.beats_baseline is False and result.as_dict()["beats_baseline"] is False
    assert "Warning: this model is no better than predicting the training means" in (
        result.summary()
    )


def test_folds_cover_every_galaxy_once() -> None:
    ids = np.random.default_rng(0).permutation(np.arange(100000, 100103))
    folds = [split_ids(ids, 0.2, ValSplit.FOLD, seed=0, fold=k) for k in range(1, 6)]
    assert sorted(np.concatenate(folds).tolist()) == sorted(ids.tolist())
    assert [len(f) for f in folds] == [20, 21, 20, 21, 21]
    assert folds[0].max() < folds[1].min()  # blocks of ascending GalaxyIDs
    assert folds[4].tolist() == split_ids(ids, 0.2, ValSplit.LAST, seed=0).tolist()
    with pytest.raises(BadInputError, match="--fold 6: give 1 to 5"):
        TrainConfig(val_split=ValSplit.FOLD, val_fraction=0.2, fold=6).check()


def test_question_bce_weighs_each_question_equally() -> None:
    pred = torch.full((1, 37), 0.5)
    target = torch.full((1, 37), float("nan"))
    target[0, 0:3] = torch.tensor([1.0, 0.0, 0.0])  # Q1: 3 answers
    target[0, 3:5] = torch.tensor([0.0, 0.0])  # Q2: 2 answers
    per_cell = -np.log(0.5)
    assert masked_loss("question-bce", pred, target).item() == pytest.approx(2 * per_cell, rel=1e-5)  # type: ignore[arg-type]
    # bce weighs cells: 5 cells of the same cross-entropy, averaged
    assert masked_loss("bce", pred, target).item() == pytest.approx(per_cell, rel=1e-5)  # type: ignore[arg-type]
    target[:] = float("nan")
    assert masked_loss("question-bce", pred, target).item() == 0.0  # type: ignore[arg-type]


def test_weight_averaging_is_saved_and_resumes_exactly(
    synthetic_data: Path, tmp_path: Path
) -> None:
    # One epoch of warm-up in both: by default it is 30% of the epochs the run was created with.
    cfg = TrainConfig(**TINY, epochs=3, patience=0, ema=0.9, schedule="constant", warmup_epochs=1.0)  # type: ignore[arg-type]
    whole = train(cfg, data_dir=synthetic_data, runs_dir=tmp_path / "a")
    last = load_checkpoint(whole.run_dir / "weights" / "last.pt")
    avg, raw = last.state["model_state"], last.state["train_state"]
    assert any(not torch.equal(avg[k], raw[k]) for k in avg)  # the average is not the last step
    part = train(cfg.replace(epochs=1), data_dir=synthetic_data, runs_dir=tmp_path / "b")
    resume(part.run_dir, epochs=3)
    again = load_checkpoint(part.run_dir / "weights" / "last.pt").state
    for key in avg:
        torch.testing.assert_close(again["model_state"][key], avg[key])


def test_evaluate_scores_an_ensemble_and_writes_its_predictions(
    synthetic_data: Path, tmp_path: Path
) -> None:
    runs = [
        train(TrainConfig(**TINY, epochs=1, seed=s), data_dir=synthetic_data, runs_dir=tmp_path)
        for s in (1, 2)
    ]
    out = tmp_path / "val.csv"
    args = ["evaluate", *(str(r.run_dir) for r in runs), "--tta", "2", "--predictions", str(out)]
    result = runner.invoke(app, [*args, "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["tta"] == 2 and len(report["runs"]) == 2 and report["n_images"] == 12
    table = read_labels(out)
    cat = load_catalogue(synthetic_data)
    labels = cat.labels[np.searchsorted(cat.ids, table.ids)]
    assert kaggle_rmse(table.values, labels) == pytest.approx(report["rmse"], abs=1e-6)
    single = [
        evaluate(r.run_dir, EvaluateSettings(tta=2, write=False)).scores["rmse"] for r in runs
    ]
    assert report["rmse"] != single[0] and report["rmse"] != single[1]
    other = train(
        TrainConfig(**TINY, epochs=1, val_split="random"),  # type: ignore[arg-type]
        data_dir=synthetic_data,
        runs_dir=tmp_path,
    )
    with pytest.raises(BadInputError, match="validated on other galaxies"):
        evaluate([runs[0].run_dir, other.run_dir], EvaluateSettings(write=False))


def _documented_recipes() -> list[list[str]]:
    """The `galaxyzoo train` lines of results.md's recommended full-data recipes."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "results.md").read_text()
    section = text.split("## Recommended full-data recipes", 1)[1].split("\n## ", 1)[0]
    lines = [ln.strip() for ln in section.splitlines() if ln.strip().startswith("galaxyzoo train")]
    return [ln.split("#", 1)[0].split()[2:] for ln in lines]


def test_the_documented_full_data_recipes_run(
    synthetic_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each recommended command runs as written, at tiny scale: the same flags, then ours for a
    few galaxies, one epoch, the CPU, and (offline) local weights of the same architecture."""
    recipes = _documented_recipes()
    assert len(recipes) >= 2 and any("--model" in r for r in recipes), recipes  # CPU and GPU
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for args in recipes:
        tiny = ["--data-dir", str(synthetic_data), "--runs-dir", str(tmp_path), "--limit", "24",
                "--epochs", "1", "--device", "cpu", "--batch-size", "8"]  # fmt: skip
        model = args[args.index("--model") + 1] if "--model" in args else None
        if model is not None:
            import timm

            weights = tmp_path / f"{model}.pth"
            torch.save(timm.create_model(model, num_classes=0).state_dict(), weights)
            tiny += ["--weights", str(weights)]
        result = runner.invoke(app, ["train", *args, *tiny, "--json"])
        assert result.exit_code == 0, (args, result.output)
        summary = json.loads(result.stdout)
        checkpoint = load_checkpoint(Path(summary["run_dir"]) / "weights" / "best.pt")
        assert checkpoint.model.name == (model or TrainConfig().model)
        if "--image-size" in args:
            assert checkpoint.model.input.size == int(args[args.index("--image-size") + 1])
