"""Nothing silently ignored, overwritten or dropped: resume, freezing, result files, missing and
corrupt images, small messages, file modes, help text, the install."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from galaxyzoo_cli.cli import app
from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.core.provenance import sidecar
from galaxyzoo_cli.core.settings import PredictSettings, TrainConfig
from galaxyzoo_cli.data.catalogue import (
    LABELS_CSV,
    TEST_IMAGES,
    TRAIN_IMAGES,
    list_images,
    read_labels,
)
from galaxyzoo_cli.inference import evaluate, predict
from galaxyzoo_cli.training.loop import train
from galaxyzoo_cli.training.run_folder import load_checkpoint

runner = CliRunner()
TINY = ["--model", "test_tiny", "--batch-size", "16", "--device", "cpu"]


def _train(data: Path, runs: Path, *extra: str) -> dict:
    result = runner.invoke(
        app, ["train", *TINY, "--data-dir", str(data), "--runs-dir", str(runs), "--json", *extra]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def data_copy(synthetic_data: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(synthetic_data, tmp_path / "data"))


@pytest.fixture(scope="module")
def tiny_run(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("trust-runs")
    return Path(_train(synthetic_data, runs, "--epochs", "2", "--patience", "0")["run_dir"])


# 1. Resume --------------------------------------------------------------------------------------


def test_resume_to_the_default_epoch_count_and_refuses_other_settings(
    synthetic_data: Path, tmp_path: Path
) -> None:
    first = _train(synthetic_data, tmp_path, "--epochs", "3", "--limit", "40", "--patience", "0")
    run = first["run_dir"]
    refused = runner.invoke(
        app,
        ["train", "--resume", run, "--model", "convnet", "--lr", "1e-5", "--batch-size", "16",
         "--no-augment", "--epochs", "5"],
    )  # fmt: skip
    assert refused.exit_code == 2
    for flag in ("--model", "--lr", "--batch-size", "--augment"):
        assert flag in refused.stderr
    assert load_checkpoint(Path(run) / "weights" / "last.pt").progress.epoch == 3  # untouched
    # 20 is the default: typed, it is still what the user asked for.
    again = runner.invoke(app, ["train", "--resume", run, "--epochs", "20", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["epochs_run"] == 20
    config = json.loads((Path(run) / "config.json").read_text())
    assert config["settings"]["epochs"] == 3  # config.json: as the run was created
    record = json.loads((Path(run) / "resumes.jsonl").read_text())  # one resume, one line
    assert record["changed"] == {"epochs": {"old": 3, "new": 20}}  # the resume says what changed
    assert json.loads((Path(run) / "summary.json").read_text())["epochs_asked"] == 20


# 2. Freezing follows the weights ----------------------------------------------------------------


def test_no_pretrained_backbone_is_trained_whole(synthetic_data: Path, tmp_path: Path) -> None:
    run = Path(_train(synthetic_data, tmp_path, "--model", "test_timm", "--no-pretrained",
                      "--epochs", "1", "--limit", "40")["run_dir"])  # fmt: skip
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["freeze"] is False and config["settings"]["augment"] is True
    refused = runner.invoke(
        app, ["train", *TINY, "--model", "test_timm", "--no-pretrained", "--freeze",
              "--data-dir", str(synthetic_data), "--runs-dir", str(tmp_path / "r")],
    )  # fmt: skip
    assert refused.exit_code == 2 and "--freeze without pretrained weights" in refused.stderr


# 3. Results are never silently replaced --------------------------------------------------------


def test_predict_keeps_a_submission_of_other_inputs(
    tiny_run: Path, synthetic_data: Path, tmp_path: Path
) -> None:
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    first = predict([run], PredictSettings(tta=8))
    assert first.out == run / "submission.csv"
    before = first.out.read_bytes()
    again = predict([run], PredictSettings(tta=8))  # the same inputs: the same file, remade
    assert again.out == first.out and first.out.read_bytes() == before
    ensemble = predict([run, run / "weights" / "last.pt"])
    assert ensemble.out == run / "submission-2.csv" and first.out.read_bytes() == before
    prov = json.loads(sidecar(ensemble.out).read_text())
    assert prov["tta"] == 1 and len(prov["runs"]) == 2 and prov["n_images"] == 24
    assert {r["checkpoint"].rsplit("/", 1)[-1] for r in prov["runs"]} == {"best.pt", "last.pt"}
    assert all(len(r["sha256"]) == 64 for r in prov["runs"]) and prov["version"]
    explicit = runner.invoke(app, ["predict", str(run), "--out", str(first.out)])
    assert explicit.exit_code == 0 and "Replacing" in explicit.stderr


def test_evaluate_of_another_checkpoint_gets_its_own_file(tiny_run: Path, tmp_path: Path) -> None:
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    best = evaluate(run)
    last = evaluate(run / "weights" / "last.pt")
    assert best.out == run / "eval.json" and last.out == run / "eval-2.json"
    recorded = json.loads(best.out.read_text())["provenance"]
    assert recorded["runs"][0]["checkpoint"].endswith("best.pt") and recorded["split"] == "val"
    assert evaluate(run).out == run / "eval.json"  # same inputs: replaced


# 4. predict reads the run's own data folder ----------------------------------------------------


def test_predict_uses_the_runs_data_folder(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./data here
    monkeypatch.delenv("GALAXYZOO_DATA_DIR", raising=False)
    result = runner.invoke(app, ["predict", str(tiny_run), "--out", "p.csv", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_images"] == 24


# 5. Missing and corrupt images -----------------------------------------------------------------


def _break(data: Path) -> tuple[int, int]:
    """Delete one labelled image and truncate another; return their GalaxyIDs."""
    ids, paths = list_images(data / TRAIN_IMAGES)
    paths[3].unlink()
    paths[5].write_bytes(paths[5].read_bytes()[:300])
    return int(ids[3]), int(ids[5])


def test_check_decodes_every_image_and_names_the_bad_ones(data_copy: Path) -> None:
    missing, corrupt = _break(data_copy)
    result = runner.invoke(app, ["check", "--data-dir", str(data_copy), "--json"])
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["labels_without_image"] == [missing] and report["decoded"] is True
    assert [Path(p).stem for p in report["unreadable"]] == [str(corrupt)]
    human = runner.invoke(app, ["check", "--data-dir", str(data_copy)])
    assert human.exit_code == 2 and str(missing) in human.stdout and str(corrupt) in human.stdout


def test_train_skips_and_names_bad_images_or_stops_with_strict(
    data_copy: Path, tmp_path: Path
) -> None:
    missing, corrupt = _break(data_copy)
    result = runner.invoke(
        app, ["train", *TINY, "--epochs", "1", "--data-dir", str(data_copy),
              "--runs-dir", str(tmp_path / "runs"), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["skipped"] == {"missing image": [missing], "unreadable image": [corrupt]}
    assert out["n_train"] + out["n_val"] == 118
    assert "2 galaxies skipped" in result.stderr and str(corrupt) in result.stderr
    strict = runner.invoke(
        app, ["train", *TINY, "--strict", "--data-dir", str(data_copy),
              "--runs-dir", str(tmp_path / "strict")],
    )  # fmt: skip
    assert strict.exit_code == 2 and str(missing) in strict.stderr
    assert not (tmp_path / "strict").exists()


def test_predict_skips_an_unreadable_test_image(tiny_run: Path, data_copy: Path) -> None:
    ids, paths = list_images(data_copy / TEST_IMAGES)
    paths[0].write_bytes(b"not a jpeg")
    result = predict([tiny_run], PredictSettings(data_dir=data_copy, out=data_copy / "s.csv"))
    assert result.skipped.as_dict() == {"unreadable image": [int(ids[0])]}
    assert read_labels(data_copy / "s.csv").ids.tolist() == ids[1:].tolist()
    with pytest.raises(BadInputError, match=str(ids[0])):
        predict(
            [tiny_run], PredictSettings(data_dir=data_copy, out=data_copy / "t.csv", strict=True)
        )
    assert not (data_copy / "t.csv").exists()


# 7. Small messages -----------------------------------------------------------------------------


def test_small_messages_name_the_right_thing(
    synthetic_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = ["--data-dir", str(synthetic_data), "--runs-dir", str(tmp_path)]
    result = runner.invoke(app, ["train", *TINY, "--image-size", "0", *base])
    assert result.exit_code == 2 and "--image-size 0" in result.stderr
    result = runner.invoke(app, ["preview", "--data-dir", str(synthetic_data), "-t", "size=0"])
    assert result.exit_code == 2 and "--transform 'size=0'" in result.stderr
    assert "--image-size" not in result.stderr
    readme = tmp_path / "README.md"
    readme.write_text("# not a checkpoint\n")
    result = runner.invoke(app, ["evaluate", str(readme)])
    assert result.exit_code == 2 and "Weights only load failed" not in result.stderr
    result = runner.invoke(app, ["evaluate", str(tmp_path / "elsewhere" / "nope")])
    assert result.exit_code == 2 and str(tmp_path / "elsewhere") in result.stderr
    assert "./runs" not in result.stderr
    result = runner.invoke(app, ["train", "--model", "resnet81", *base])
    for name in ("resnet18", "resnet50", "galaxynet", "convnet", "densenet121"):
        assert name in result.stderr


# 8. Files follow the umask ----------------------------------------------------------------------


def test_written_files_follow_the_umask(synthetic_data: Path, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        run = train(
            TrainConfig(model="test_tiny", epochs=1, device="cpu", limit=30),
            data_dir=synthetic_data,
            runs_dir=tmp_path / "runs",
        ).run_dir
        sub = predict([run], PredictSettings(data_dir=synthetic_data)).out
        ev = evaluate(run).out
    finally:
        os.umask(old)
    cache = Path(os.environ["GALAXYZOO_CACHE_DIR"])
    files = [run / "weights" / "best.pt", run / "config.json", run / "metrics.csv", sub, ev]
    files += sorted(cache.glob("*.npy"))[:1]
    for path in files:
        assert path is not None and stat.S_IMODE(path.stat().st_mode) == 0o644, path


# 10. Help and summaries ------------------------------------------------------------------------


def test_help_reads_right() -> None:
    for command in ("train", "predict", "evaluate", "plot", "fetch"):
        text = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
        assert "<bool>" not in text and "<list[Path]>" not in text and "RUN...}" not in text


def test_training_names_its_folder_first_and_counts_real_images(
    synthetic_data: Path, tmp_path: Path
) -> None:
    result = runner.invoke(
        app, ["train", *TINY, "--epochs", "1", "--data-dir", str(synthetic_data),
              "--runs-dir", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    err = result.stderr
    assert err.index("Run folder:") < err.index("epoch   1/1")
    assert "1 epoch in" in result.stdout and "1 epochs" not in result.stdout
    assert train(TrainConfig(model="test_tiny", epochs=2, device="cpu"), data_dir=synthetic_data,
                 runs_dir=tmp_path).images == 2 * 108  # fmt: skip

    weights = tmp_path / "w.pth"
    import timm

    torch.save(timm.create_model("test_resnet", num_classes=0).state_dict(), weights)
    frozen = train(
        TrainConfig(model="test_timm", weights=str(weights), epochs=20, device="cpu"),
        data_dir=synthetic_data,
        runs_dir=tmp_path,
    )
    # Images through the backbone: once each, not once per head epoch.
    assert frozen.images == 120 and frozen.epochs_run > 1


# 11. Install -----------------------------------------------------------------------------------


def test_install_and_package_contents(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    main_job = next(line for line in readme.splitlines() if "fetch --synthetic" in line)
    assert "pip install -e ." in main_job and "[test]" not in main_job
    assert "/demo/" in (root / ".gitignore").read_text().splitlines()
    assert (root / "galaxyzoo_cli" / "py.typed").is_file()
    import tarfile

    import setuptools.build_meta as backend

    cwd = os.getcwd()
    try:
        os.chdir(root)
        name = backend.build_sdist(str(tmp_path))
    finally:
        os.chdir(cwd)
    with tarfile.open(tmp_path / name) as tar:
        members = {Path(m).relative_to(Path(m).parts[0]).as_posix() for m in tar.getnames()[1:]}
    assert {"CHANGELOG.md", "LICENSE", "docs/user-guide.md", "galaxyzoo_cli/py.typed"} <= members


def test_labels_file_is_not_touched_by_reads(synthetic_data: Path) -> None:
    before = (synthetic_data / LABELS_CSV).stat().st_mtime_ns
    read_labels(synthetic_data / LABELS_CSV)
    assert (synthetic_data / LABELS_CSV).stat().st_mtime_ns == before
    assert np.isfinite(read_labels(synthetic_data / LABELS_CSV).values).all()


def test_python_api_does_not_print(synthetic_data: Path, tmp_path: Path) -> None:
    code = (
        "from pathlib import Path; from galaxyzoo_cli.core.settings import TrainConfig;"
        "from galaxyzoo_cli.training.loop import train;"
        f"train(TrainConfig(model='test_tiny', epochs=1, device='cpu', limit=20), "
        f"data_dir=Path({str(synthetic_data)!r}), runs_dir=Path({str(tmp_path)!r}))"
    )
    env = {**os.environ, "GALAXYZOO_CACHE_DIR": str(tmp_path / "c")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "" and out.stderr == ""
