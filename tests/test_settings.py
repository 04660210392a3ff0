"""Settings from one source: the train options are TrainConfig's fields, the evaluate and predict
options are their settings' fields, and the CLI and the Python API refuse the same values with
the same message (naming the flag)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import torch
import typer.main
from typer.testing import CliRunner

from galaxyzoo_cli.cli import app
from galaxyzoo_cli.cli.train import NOT_TRAIN_OPTIONS, TRAIN_OPTIONS
from galaxyzoo_cli.core.errors import BadInputError, require_runs
from galaxyzoo_cli.core.settings import (
    EvalSplit,
    EvaluateSettings,
    FitsOptions,
    Loss,
    PredictSettings,
    TrainConfig,
)
from galaxyzoo_cli.data.images import InputSpec, parse_transform
from galaxyzoo_cli.inference import evaluation, prediction
from galaxyzoo_cli.training import loop as training

runner = CliRunner()


def _options(command: str) -> dict[str, Any]:
    """The options of a command as the parser sees them: name -> click parameter."""
    click_app = typer.main.get_command(app)
    return {p.name: p for p in click_app.commands[command].params}  # type: ignore[attr-defined]


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)


@pytest.mark.parametrize("command", ["train", "select-init"])
def test_every_train_setting_has_one_option_with_its_default(command: str) -> None:
    options = _options(command)
    for field in fields(TrainConfig):
        if field.name in NOT_TRAIN_OPTIONS:
            assert field.name not in options
            continue
        assert field.name in options, f"{command}: no option for TrainConfig.{field.name}"
        # None means "the model's default" on both sides.
        assert _plain(options[field.name].default) == _plain(field.default), field.name
    flags = [f for p in options.values() for f in p.opts]
    assert len(flags) == len(set(flags))  # one option each, no flag twice
    own = {"train": {"ctx", "resume"}, "select-init": {"trials", "trial_epochs"}}[command]
    shared = {"data_dir", "runs_dir", "as_json"}
    assert set(options) - own - shared == set(TRAIN_OPTIONS)


def test_the_cli_builds_train_settings_from_its_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}

    def fake_train(config: TrainConfig, **kw: Any) -> Any:
        seen["config"], seen["kw"] = config, kw
        raise BadInputError("stop here")

    monkeypatch.setattr(training, "train", fake_train)
    result = runner.invoke(app, ["train", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2 and seen["config"] == TrainConfig()
    args = ["train", "--epochs", "3", "--loss", "RMSE", "--weights", "w.pt", "--crop", "200",
            "--no-amp", "--device", "cpu", "--data-dir", str(tmp_path)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert seen["config"] == TrainConfig(
        epochs=3, loss=Loss.RMSE, weights="w.pt", crop=200, amp=False, device="cpu"
    )
    assert seen["kw"]["data_dir"] == tmp_path


def test_select_init_takes_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_select_init(config: TrainConfig, **kw: Any) -> Any:
        seen["config"], seen["kw"] = config, kw
        raise BadInputError("stop here")

    monkeypatch.setattr(training, "select_init", fake_select_init)
    result = runner.invoke(app, ["select-init", "--trials", "3", "--epochs", "4", "--seed", "5"])
    assert result.exit_code == 2, result.output
    assert seen["config"] == TrainConfig(epochs=4, seed=5)
    assert seen["kw"]["trials"] == 3 and seen["kw"]["trial_epochs"] == 1


def test_evaluate_and_predict_options_are_their_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each settings field is an option (but ``write``, always on in the CLI, and ``fits``,
    given as the --fits-* options), and the CLI passes the device it chose, once."""
    evaluate = _options("evaluate")
    assert {f.name for f in fields(EvaluateSettings)} - {"write"} <= set(evaluate)
    predict = _options("predict")
    assert {f.name for f in fields(PredictSettings)} - {"fits"} <= set(predict)
    assert {f"fits_{f.name}" for f in fields(FitsOptions)} <= set(predict)
    seen: dict[str, Any] = {}

    def fake(runs: Any, settings: Any, *, device: torch.device, reporter: Any) -> Any:
        seen.update(runs=runs, settings=settings, device=device)
        raise BadInputError("stop here")

    monkeypatch.setattr(evaluation, "evaluate", fake)
    args = ["evaluate", "r1", "r2", "--split", "all", "--tta", "2", "--no-cache", "--device", "cpu"]
    assert runner.invoke(app, args).exit_code == 2
    assert seen["device"] == torch.device("cpu") and seen["runs"] == [Path("r1"), Path("r2")]
    assert seen["settings"] == EvaluateSettings(split=EvalSplit.ALL, tta=2, cache=False)
    monkeypatch.setattr(prediction, "predict", fake)
    args = ["predict", "r", "--images", "cutouts", "--fits-bands", "0,1,2", "--fits-scale", "SDSS",
            "--batch-size", "8", "--device", "cpu"]  # fmt: skip
    assert runner.invoke(app, args).exit_code == 2
    assert seen["settings"] == PredictSettings(
        images=Path("cutouts"), batch_size=8, fits=FitsOptions(bands=(0, 1, 2), scale="sdss")
    )


@pytest.mark.parametrize(
    ("command", "settings", "args", "message"),
    [
        ("predict", PredictSettings(tta=0), ["--tta", "0"], "--tta 0: give 1"),
        ("evaluate", EvaluateSettings(tta=-2), ["--tta", "-2"], "--tta -2: give 1"),
        ("predict", PredictSettings(batch_size=0), ["-b", "0"], "--batch-size 0: give at least"),
        ("evaluate", EvaluateSettings(workers=0), ["--workers", "0"], "--workers 0: give at"),
        ("predict", PredictSettings(images=Path("a"), catalogue=Path("b")),
         ["--images", "a", "--catalogue", "b"], "--images and --catalogue: give one"),
    ],
)  # fmt: skip
def test_the_cli_and_the_api_refuse_the_same_settings_alike(
    command: str, settings: Any, args: list[str], message: str, tmp_path: Path
) -> None:
    """Refused before any run is read (the run here does not exist), with one message."""
    library = {"evaluate": evaluation.evaluate, "predict": prediction.predict}[command]
    with pytest.raises(BadInputError, match=message) as refused:
        library(tmp_path / "no-run", settings)
    result = runner.invoke(app, [command, str(tmp_path / "no-run"), *args, "--device", "cpu"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == f"Error: {refused.value}"


@pytest.mark.parametrize(
    ("options", "args", "message"),
    [
        ({"bands": "0,1,-1"}, ["--fits-bands", "0,1,-1"], "--fits-bands '0,1,-1': give three"),
        ({"bands": "2,1"}, ["--fits-bands", "2,1"], "--fits-bands '2,1': give three"),
        ({"scale": "log"}, ["--fits-scale", "log"], "--fits-scale 'log'"),
        ({"percentile": 20.0}, ["--fits-percentile", "20"], "--fits-percentile 20"),
        ({"q": 0.0}, ["--fits-q", "0"], "--fits-q 0"),
        ({"stretch": -1.0}, ["--fits-stretch", "-1"], "--fits-stretch -1"),
        ({"minimum": float("nan")}, ["--fits-minimum", "nan"], "--fits-minimum nan"),
    ],
)
def test_the_python_api_refuses_invalid_fits_options_as_the_cli_does(
    options: dict[str, Any], args: list[str], message: str, tmp_path: Path
) -> None:
    with pytest.raises(BadInputError, match=message) as refused:
        prediction.predict(tmp_path, PredictSettings(fits=FitsOptions(**options)))
    for command in ("predict", "preview"):
        result = runner.invoke(app, [command, str(tmp_path), *args] if command == "predict"
                               else [command, "--data-dir", str(tmp_path), *args])  # fmt: skip
        assert result.exit_code == 2, result.output
        assert f"Error: {refused.value}" in result.stderr


def test_settings_take_paths_as_text() -> None:
    settings = PredictSettings(images="cutouts", out="p.csv")  # type: ignore[arg-type]
    assert settings == PredictSettings(images=Path("cutouts"), out=Path("p.csv"))
    assert EvaluateSettings(data_dir="data", split="all").data_dir == Path("data")  # type: ignore[arg-type]


def test_fits_bands_are_given_as_a_tuple_or_as_text() -> None:
    assert FitsOptions(bands="0, 1,2").bands == (0, 1, 2) == FitsOptions(bands=(0, 1, 2)).bands
    assert FitsOptions(scale=" SDSS").scale == "sdss"
    for bands in ((0, 1, -1), (0, 1), (0, 1.5, 2), "r,g,b", 3):
        with pytest.raises(BadInputError, match="--fits-bands .*: give three plane numbers"):
            FitsOptions(bands=bands)  # type: ignore[arg-type]


def test_crop_and_size_are_checked_by_one_rule_wherever_they_come_from() -> None:
    rule = "give a side between 8 and 424 pixels"
    for make, flag in (
        (lambda: TrainConfig(crop=500).check(), "--crop 500"),
        (lambda: InputSpec(crop=500), "crop 500"),
        (lambda: parse_transform("gray,crop=500"), "--transform 'gray,crop=500': crop 500"),
    ):
        with pytest.raises(BadInputError, match=f"^{flag}: {rule}"):
            make()
    for make, flag in (
        (lambda: TrainConfig(image_size=4).check(), "--image-size 4"),
        (lambda: InputSpec(size=2000), "size 2000"),
        (lambda: parse_transform("resize=7"), "--transform 'resize=7': resize 7"),
    ):
        with pytest.raises(BadInputError, match=f"^{flag}: give a side between 8 and 1024"):
            make()
    assert parse_transform("crop=8,size=1024") == InputSpec(3, 8, 1024)


def test_require_runs_takes_one_run_or_several() -> None:
    assert require_runs("runs/a") == ["runs/a"] and require_runs(Path("a")) == [Path("a")]
    assert require_runs([Path("a"), "b"]) == [Path("a"), "b"]
    with pytest.raises(BadInputError, match="give at least one RUN"):
        require_runs([])
