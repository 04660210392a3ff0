"""evaluate and predict: the Kaggle metric, submissions, TTA and ensembles."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from galaxyzoo_cli.cli import app
from galaxyzoo_cli.core.metrics import ErrorSum, kaggle_rmse, question_scores
from galaxyzoo_cli.core.schema import CSV_HEADER
from galaxyzoo_cli.core.settings import EvaluateSettings, PredictSettings, TrainConfig
from galaxyzoo_cli.data.catalogue import TRAIN_IMAGES, read_labels
from galaxyzoo_cli.data.transforms import tta_views
from galaxyzoo_cli.inference import evaluate, predict
from galaxyzoo_cli.training.loop import train

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    result = train(
        TrainConfig(model="test_tiny", epochs=2, batch_size=16, device="cpu"),
        data_dir=synthetic_data,
        runs_dir=runs,
    )
    return result.run_dir


# --- the metric -----------------------------------------------------------------------------


def test_rmse_by_hand_with_missing_cells() -> None:
    pred = np.array([[0.5, 0.5], [0.0, 1.0], [0.2, 0.2]])
    target = np.array([[1.0, np.nan], [0.0, 0.0], [np.nan, np.nan]])
    # labelled cells: (0,0) err .5, (1,0) err 0, (1,1) err 1  ->  sqrt((.25 + 0 + 1) / 3)
    assert kaggle_rmse(pred, target) == pytest.approx(np.sqrt(1.25 / 3))
    assert np.isnan(kaggle_rmse(pred[2:], target[2:]))


def test_rmse_is_global_not_a_mean_of_batch_rmses() -> None:
    rng = np.random.default_rng(0)
    pred, target = rng.random((10, 37)), rng.random((10, 37))
    target[:7, 20:] = np.nan  # batches with different numbers of labelled cells
    acc = ErrorSum()
    batch_rmses = []
    for s in (slice(0, 3), slice(3, 4), slice(4, 10)):
        acc.add(pred[s], target[s])
        batch_rmses.append(kaggle_rmse(pred[s], target[s]))
    assert acc.rmse == pytest.approx(kaggle_rmse(pred, target), rel=1e-12)
    assert abs(np.mean(batch_rmses) - acc.rmse) > 1e-3  # the notebook's number is different


def test_per_question_accuracy_on_constructed_cases() -> None:
    target = np.full((4, 37), np.nan)
    pred = np.zeros((4, 37))
    target[:, 0:3] = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [1.0, 0.0, 0.0]]
    pred[:, 0:3] = [[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]]
    # Q2 reached by most volunteers only in galaxy 1 (A1.2 = 0.8 >= 0.5); in galaxy 0 by a fifth
    # of them (A1.2 = 0.2: not counted), galaxy 2 is unlabelled for Q2 and galaxy 3 never reached
    # it (A1.2 = 0)
    target[:, 3:5] = [[0.1, 0.1], [0.5, 0.3], [np.nan, np.nan], [0.0, 0.0]]
    pred[:, 3:5] = [[0.9, 0.1], [0.9, 0.1], [0.5, 0.5], [0.5, 0.5]]
    scores = {s.number: s for s in question_scores(pred, target)}
    assert scores[1].accuracy == pytest.approx(2 / 4) and scores[1].n_accuracy == 4
    assert scores[2].n_accuracy == 1 and scores[2].accuracy == pytest.approx(1.0)
    target[1, 3:5] = [0.4, 0.4]  # a tie: the first answer is the volunteers' top one
    pred[1, 3:5] = [0.1, 0.9]
    assert question_scores(pred, target)[1].accuracy == 0.0
    assert np.isnan(scores[3].accuracy) and scores[3].n_accuracy == 0


# --- TTA ------------------------------------------------------------------------------------


def test_tta_views_are_true_rotations_and_flips() -> None:
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5)
    views = tta_views(x, 8)
    arr = x.numpy()
    expected = [np.rot90(arr, k, axes=(2, 3)) for k in range(4)]
    expected += [np.flip(np.rot90(arr, k, axes=(2, 3)), axis=3) for k in range(4)]
    for v, e in zip(views, expected, strict=True):
        np.testing.assert_array_equal(v.numpy(), e)
    assert len({v.numpy().tobytes() for v in views}) == 8  # eight distinct symmetries
    more = tta_views(torch.rand(1, 1, 16, 16), 12)
    assert len(more) == 12 and all(v.shape == (1, 1, 16, 16) for v in more)


class _Corner(torch.nn.Module):
    """Outputs depend on the top-left pixel only: not rotation invariant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1, 0, 0].repeat(1, 37)


def test_tta_averages_over_the_symmetry_group() -> None:
    from galaxyzoo_cli.inference.loading import predict_images

    img = np.zeros((1, 1, 6, 6), np.uint8)
    img[0, 0, 0, 0] = 255  # one bright corner of four
    device = torch.device("cpu")
    one, _ = predict_images(_Corner(), iter([img]), 1, device, tta=1)
    eight, _ = predict_images(_Corner(), iter([img]), 1, device, tta=8)
    assert one[0, 0] == pytest.approx(1.0)
    assert eight[0, 0] == pytest.approx(2 / 8)  # the corner is top-left in 2 of the 8 views
    rotated = np.rot90(img, 1, axes=(2, 3)).copy()
    eight_rot, _ = predict_images(_Corner(), iter([rotated]), 1, device, tta=8)
    assert eight_rot[0, 0] == pytest.approx(eight[0, 0])  # invariant after averaging


# --- evaluate and predict -------------------------------------------------------------------


def _read_submission(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    with path.open() as f:
        rows = list(csv.reader(f))
    body = np.array(rows[1:], dtype=float)
    return rows[0], body[:, 0].astype(int), body[:, 1:]


def test_submission_format(run_dir: Path, synthetic_data: Path) -> None:
    result = runner.invoke(
        app, ["predict", str(run_dir), "--data-dir", str(synthetic_data), "--json"]
    )
    assert result.exit_code == 0, result.output
    out = Path(json.loads(result.stdout)["out"])
    assert out == run_dir / "submission.csv"
    header, ids, values = _read_submission(out)
    assert header == list(CSV_HEADER)
    assert len(ids) == 24 and (np.diff(ids) > 0).all()
    assert values.shape == (24, 37) and values.min() >= 0 and values.max() <= 1
    test_ids = sorted(int(p.stem) for p in (synthetic_data / "images_test_rev1").glob("*.jpg"))
    assert ids.tolist() == test_ids


def test_evaluate_equals_rmse_of_predict_csv(
    run_dir: Path, synthetic_data: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["evaluate", str(run_dir), "--split", "all", "--json"])
    assert result.exit_code == 0, result.output
    ev = json.loads(result.stdout)
    assert {"rmse", "n_images", "questions", "baselines"} <= set(ev)
    assert ev["n_images"] == 120 and set(ev["baselines"]) == {"zeros", "training_mean"}
    assert set(ev["questions"]) == {f"Q{i}" for i in range(1, 12)}
    assert json.loads((run_dir / "eval.json").read_text())["rmse"] == ev["rmse"]
    out = tmp_path / "train_pred.csv"
    predict([run_dir], PredictSettings(images=synthetic_data / TRAIN_IMAGES, out=out))
    _, ids, values = _read_submission(out)
    labels = read_labels(synthetic_data / "training_solutions_rev1.csv")
    order = np.argsort(labels.ids)
    assert ids.tolist() == labels.ids[order].tolist()
    assert kaggle_rmse(values, labels.values[order]) == pytest.approx(ev["rmse"], abs=1e-6)
    assert ev["baselines"]["zeros"]["rmse"] > ev["baselines"]["training_mean"]["rmse"]


def test_evaluate_val_split_and_tta(run_dir: Path) -> None:
    plain = evaluate(run_dir, EvaluateSettings(split="val", write=False))
    config = json.loads((run_dir / "config.json").read_text())
    assert plain.scores["n_images"] == len(config["data"]["val_ids"]) == 12
    tta = evaluate(run_dir, EvaluateSettings(split="val", tta=8, write=False))
    assert tta.scores["rmse"] != plain.scores["rmse"]
    assert "Kaggle RMSE" in plain.summary() and "Q11" in plain.summary()


def test_ensemble_of_a_run_with_itself_equals_the_run(
    run_dir: Path, synthetic_data: Path, tmp_path: Path
) -> None:
    predict([run_dir], PredictSettings(data_dir=synthetic_data, out=tmp_path / "one.csv"))
    predict(
        [run_dir, run_dir / "weights" / "best.pt"],
        PredictSettings(data_dir=synthetic_data, out=tmp_path / "two.csv"),
    )
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "two.csv").read_bytes()


def test_ensemble_averages_two_runs(run_dir: Path, synthetic_data: Path, tmp_path: Path) -> None:
    other = train(
        TrainConfig(model="test_tiny", epochs=1, batch_size=16, device="cpu", seed=9),
        data_dir=synthetic_data,
        runs_dir=tmp_path,
    ).run_dir
    for name, runs in (("a", [run_dir]), ("b", [other]), ("ab", [run_dir, other])):
        predict(runs, PredictSettings(data_dir=synthetic_data, out=tmp_path / f"{name}.csv"))
    a, b, ab = (_read_submission(tmp_path / f"{n}.csv")[2] for n in ("a", "b", "ab"))
    np.testing.assert_allclose(ab, (a + b) / 2, atol=2e-7)


def test_decoding_as_predicted_gives_the_cached_answers(
    run_dir: Path, synthetic_data: Path, tmp_path: Path
) -> None:
    """--no-cache decodes chunk by chunk (cache.LazyPixels, as training's lazy images do): the
    same values, and the same unreadable image named, as the cache."""
    import shutil

    folder = tmp_path / "cutouts"
    shutil.copytree(synthetic_data / TRAIN_IMAGES, folder)
    broken = sorted(folder.glob("*.jpg"))[3]
    broken.write_bytes(b"not a jpeg")
    results = {}
    for cache in (True, False):
        out = tmp_path / f"{cache}.csv"
        settings = PredictSettings(images=folder, out=out, cache=cache, tta=2)
        results[cache] = predict([run_dir], settings)
        assert results[cache].skipped.as_dict() == {"unreadable image": [broken.stem]}
    cached, lazy = (_read_submission(tmp_path / f"{c}.csv") for c in (True, False))
    np.testing.assert_array_equal(cached[1], lazy[1])
    assert len(lazy[1]) == 119 and int(broken.stem) not in lazy[1]
    np.testing.assert_array_equal(cached[2], lazy[2])


def test_interrupted_predict_leaves_no_file(
    run_dir: Path, synthetic_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import galaxyzoo_cli.data.catalogue as data

    out = tmp_path / "sub.csv"

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "format_rows", boom)
    with pytest.raises(KeyboardInterrupt):
        predict([run_dir], PredictSettings(data_dir=synthetic_data, out=out))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["evaluate", "predict", "plot"])
def test_bad_run_paths_exit_2(command: str, tmp_path: Path) -> None:
    result = runner.invoke(app, [command, str(tmp_path / "no-such-run")])
    assert result.exit_code == 2 and "no such run folder" in result.output
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, [command, str(tmp_path / "empty")])
    assert result.exit_code == 2 and "not a run folder" in result.output
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    result = runner.invoke(app, [command, str(junk)])
    assert result.exit_code == 2 and "not a readable galaxyzoo-cli checkpoint" in result.output
    assert "Traceback" not in result.output


def test_predict_uses_the_runs_preprocessing(
    run_dir: Path, synthetic_data: Path, tmp_path: Path
) -> None:
    # Nothing about preprocessing is passed: the 24-px grayscale input comes from the checkpoint.
    result = runner.invoke(
        app, ["predict", str(run_dir), "--images", str(synthetic_data / TRAIN_IMAGES),
              "--out", str(tmp_path / "p.csv"), "--tta", "4"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "tta 4" in result.output
