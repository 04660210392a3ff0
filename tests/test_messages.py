"""Messages a researcher acts on: each says what is wrong, by name, and what to do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from galaxyzoo_cli.cli import app
from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.core.schema import COLUMNS, ID_COLUMN
from galaxyzoo_cli.core.settings import TrainConfig
from galaxyzoo_cli.data.catalogue import read_labels
from galaxyzoo_cli.training.loop import resume, train
from galaxyzoo_cli.training.run_folder import read_metrics

runner = CliRunner()


def test_runs_names_its_argument_when_the_folder_is_missing(tmp_path: Path) -> None:
    result = runner.invoke(app, ["runs", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "galaxyzoo runs RUNS_DIR" in result.stderr and "train --runs-dir" in result.stderr
    assert "Give the folder --runs-dir used" not in result.stderr


def _labels(tmp_path: Path, columns: list[str]) -> Path:
    path = tmp_path / "labels.csv"
    path.write_text(",".join([ID_COLUMN, *columns]) + "\n1," + ",".join(["0.5"] * len(columns))
                    + "\n")  # fmt: skip
    return path


@pytest.mark.parametrize(
    ("columns", "said"),
    [
        (
            [c for c in COLUMNS if c != "Class6.2"],
            "36 label columns, expected 37; missing 'Class6.2'",
        ),
        ([*COLUMNS, "Notes"], "38 label columns, expected 37; unexpected 'Notes'"),
        ([*COLUMNS, "Class1.1"], "38 label columns, expected 37; repeated 'Class1.1'"),
        (COLUMNS[:17], "17 label columns, expected 37; missing 'Class7.3', 'Class8.1'"),
    ],
)
def test_a_wrong_set_of_label_columns_is_named(
    tmp_path: Path, columns: list[str], said: str
) -> None:
    with pytest.raises(BadInputError, match="line 1") as raised:
        read_labels(_labels(tmp_path, list(columns)))
    assert said in str(raised.value)
    if len(columns) == 17:
        assert "and 14 more" in str(raised.value)


def test_models_that_match_nothing_is_an_error() -> None:
    result = runner.invoke(app, ["models", "zzz*"])
    assert result.exit_code == 2
    assert "no model matches 'zzz*'" in result.stderr and "`galaxyzoo models`" in result.stderr
    assert runner.invoke(app, ["models", "zzz*", "--json"]).exit_code == 2
    found = runner.invoke(app, ["models", "resnet*", "--json"])
    assert found.exit_code == 0 and json.loads(found.stdout)["models"]


def test_a_resumed_run_reports_the_whole_runs_time(synthetic_data: Path, tmp_path: Path) -> None:
    config = TrainConfig(model="test_tiny", epochs=2, patience=0, device="cpu", image_size=32)
    first = train(config, data_dir=synthetic_data, runs_dir=tmp_path)
    assert first.resumed_from_epoch == 0 and f"2 epochs in {first.seconds:.1f} s" in first.summary()
    more = resume(first.run_dir, epochs=3)
    whole = sum(m["seconds"] for m in read_metrics(first.run_dir))
    assert more.epochs_run == 3 and more.resumed_from_epoch == 2
    assert (
        more.run_seconds == pytest.approx(whole, abs=1e-3) and more.run_seconds > more.seconds / 100
    )
    text = more.summary()
    assert f"3 epochs in {whole:.1f} s of training over the whole run" in text
    this = read_metrics(first.run_dir)[-1]["seconds"]
    assert more.session_epoch_seconds == pytest.approx(this, abs=1e-3)
    assert f"this session: epoch 3 in {this:.1f} s ({more.seconds:.1f} s with the setup)" in text
    out = runner.invoke(app, ["train", "--resume", str(first.run_dir), "--epochs", "5", "--json"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.stdout)
    assert d["resumed_from_epoch"] == 3 and d["run_seconds"] == pytest.approx(
        sum(m["seconds"] for m in read_metrics(first.run_dir)), abs=1e-3
    )
