"""Deployment a researcher can trust: the ONNX export is the files it lists and runs wherever they
are copied; one decode for every container, the library's and docs/deploy.md's recipe alike."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import galaxyzoo_cli
from galaxyzoo_cli.cli import app
from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.core.schema import COLUMNS
from galaxyzoo_cli.core.settings import TrainConfig
from galaxyzoo_cli.data.cache import load_images
from galaxyzoo_cli.data.catalogue import TEST_IMAGES, list_images
from galaxyzoo_cli.data.images import InputSpec, load_image, load_input
from galaxyzoo_cli.inference import export as export_module
from galaxyzoo_cli.training.loop import train

runner = CliRunner()
GUIDE = Path(__file__).resolve().parent.parent / "docs" / "deploy.md"


@pytest.fixture(scope="module")
def run(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small finished run of the fast recipe (RGB, crop 256 → 64 px)."""
    config = TrainConfig(model="galaxynet-s", epochs=1, device="cpu", patience=0)
    return train(config, data_dir=synthetic_data, runs_dir=tmp_path_factory.mktemp("d")).run_dir


@pytest.fixture(scope="module")
def jpegs(synthetic_data: Path) -> list[Path]:
    return list(list_images(synthetic_data / TEST_IMAGES)[1][:3])


def _ort() -> object:
    pytest.importorskip("onnxscript")
    return pytest.importorskip("onnxruntime")


def _predict(run: Path, folder: Path, out: Path) -> dict[str, list[float]]:
    result = runner.invoke(
        app, ["predict", str(run), "--images", str(folder), "--out", str(out), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    with out.open() as f:
        return {
            r.get("id") or r["GalaxyID"]: [float(r[c]) for c in COLUMNS] for r in csv.DictReader(f)
        }


def _copy(files: list[str], to: Path) -> list[Path]:
    to.mkdir()
    return [Path(shutil.copy(f, to)) for f in files]


# --- the export ---------------------------------------------------------------------------------


def test_the_onnx_export_is_the_files_it_lists_and_runs_where_they_are_copied(
    run: Path, jpegs: list[Path], tmp_path: Path
) -> None:
    ort = _ort()
    before = set(run.iterdir())
    result = runner.invoke(app, ["export", str(run), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    files = report["files"]
    assert [Path(f).name for f in files] == ["model.onnx", "model.onnx.json"]  # weights inside
    assert set(run.iterdir()) - before == {Path(f) for f in files}  # nothing else, none hidden
    spec = json.loads((run / "model.onnx.json").read_text())
    assert spec["files"] == ["model.onnx", "model.onnx.json"]
    # Only the listed files, in another folder, give predict's answers.
    model, spec_file = _copy(files, tmp_path / "elsewhere")
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])  # type: ignore[attr-defined]
    folder = tmp_path / "images"
    _copy([str(p) for p in jpegs], folder)
    expected = _predict(run, folder, tmp_path / "p.csv")
    for path in jpegs:
        got = session.run(None, {"images": load_input(path, spec_file)})[0][0]
        assert np.abs(got - expected[path.stem]).max() <= 1e-4


@pytest.mark.slow  # four ONNX exports
def test_exporting_again_replaces_its_own_result_never_another(run: Path, tmp_path: Path) -> None:
    _ort()
    folder = tmp_path / "run"
    shutil.copytree(run, folder, ignore=shutil.ignore_patterns("model*.onnx*"))
    leftover = folder / ".model.onnx.k2j4.onnx.tmp.data"  # what earlier exports left behind
    leftover.write_bytes(b"weights")
    first = runner.invoke(app, ["export", str(folder)])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["export", str(folder), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["out"] == str(folder / "model.onnx")
    assert not (folder / "model-2.onnx").exists() and not leftover.exists()
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]
    # A result of other inputs keeps its name: the new one gets the next.
    spec = json.loads((folder / "model.onnx.json").read_text())
    spec["provenance"]["runs"][0]["sha256"] = "0" * 64
    (folder / "model.onnx.json").write_text(json.dumps(spec))
    other = runner.invoke(app, ["export", str(folder), "--json"])
    assert other.exit_code == 0, other.output
    assert json.loads(other.stdout)["out"] == str(folder / "model-2.onnx")
    kept = json.loads((folder / "model.onnx.json").read_text())
    assert kept["provenance"]["runs"][0]["sha256"] == "0" * 64
    assert "holds a result of other inputs" in other.stderr


@pytest.mark.slow  # two exports, a rare path (models over 2 GB)
def test_weights_over_the_limit_go_to_a_listed_data_file(
    run: Path, jpegs: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ort = _ort()
    monkeypatch.setattr(export_module, "INLINE_LIMIT", 0)  # as if the model were over 2 GB
    result = export_module.export(run, out=tmp_path / "out" / "galaxies.onnx")
    names = [f.name for f in result.files]
    assert names == ["galaxies.onnx", "galaxies.onnx.data", "galaxies.onnx.json"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(names)
    assert "galaxies.onnx.data" in result.summary()
    model = _copy([str(f) for f in result.files], tmp_path / "elsewhere")[0]
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])  # type: ignore[attr-defined]
    x = load_input(jpegs[0], model.with_name("galaxies.onnx.json"))
    expected = _predict(run, _copy([str(jpegs[0])], tmp_path / "one")[0].parent, tmp_path / "p.csv")
    assert np.abs(session.run(None, {"images": x})[0][0] - expected[jpegs[0].stem]).max() <= 1e-4
    # Back under the limit: one file again, and the data file it no longer needs is gone.
    monkeypatch.setattr(export_module, "INLINE_LIMIT", 1 << 40)
    export_module.export(run, out=tmp_path / "out" / "galaxies.onnx")
    assert not (tmp_path / "out" / "galaxies.onnx.data").exists()


# --- one decode ---------------------------------------------------------------------------------


def test_the_same_pixels_give_the_same_answer_whatever_the_container(
    run: Path, jpegs: list[Path], tmp_path: Path
) -> None:
    folder = tmp_path / "both"
    folder.mkdir()
    for path in jpegs:
        shutil.copy(path, folder / path.name)
        with Image.open(path) as im:  # its fully decoded pixels, losslessly
            im.save(folder / f"{path.stem}-png.png")
    for spec in (InputSpec(3, crop=256, size=64), InputSpec(1, crop=200, size=48), InputSpec(3)):
        for path in jpegs:
            assert np.array_equal(
                load_image(path, spec), load_image(folder / f"{path.stem}-png.png", spec)
            )
    rows = _predict(run, folder, tmp_path / "p.csv")
    for path in jpegs:
        assert np.abs(np.subtract(rows[path.stem], rows[f"{path.stem}-png"])).max() <= 1e-6


def test_the_cache_holds_what_load_input_gives(jpegs: list[Path]) -> None:
    spec = InputSpec(3, crop=256, size=64)
    cached = load_images(jpegs, spec, use_cache=True).pixels
    for i, path in enumerate(jpegs):
        assert np.array_equal(np.asarray(cached[i]), load_image(path, spec))
        np.testing.assert_array_equal(load_input(path, spec)[0] * 255, cached[i])


def test_load_input_takes_a_spec_an_export_spec_file_or_its_content(
    jpegs: list[Path], tmp_path: Path
) -> None:
    spec = InputSpec(1, crop=256, size=32)
    x = galaxyzoo_cli.load_input(jpegs[0], spec)
    assert x.shape == (1, 1, 32, 32) and x.dtype == np.float32 and 0 <= x.min() <= x.max() <= 1
    about = {"input": {"channels": 1, "crop": 256, "size": 32, "mean": [0.1], "std": [0.2]}}
    (tmp_path / "model.onnx.json").write_text(json.dumps(about))
    for form in (
        about,
        about["input"],
        tmp_path / "model.onnx.json",
        str(tmp_path / "model.onnx.json"),
    ):
        assert np.array_equal(load_input(jpegs[0], form), x)
    with pytest.raises(BadInputError, match="galaxyzoo export"):
        load_input(jpegs[0], tmp_path / "missing.json")
    with pytest.raises(BadInputError, match="input spec"):
        load_input(jpegs[0], {"format": "onnx"})
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(BadInputError, match="input spec"):
        load_input(jpegs[0], tmp_path / "list.json")


# --- the guide's script -------------------------------------------------------------------------


def _guide_scripts() -> list[str]:
    return re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)


def test_the_deploy_guide_scripts_match_predict(
    run: Path,
    jpegs: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every Python block of docs/deploy.md, run as written in a folder holding only the files
    the export lists (copied) and a JPEG, prints what predict writes for that JPEG."""
    _ort()
    scripts = _guide_scripts()
    assert len(scripts) >= 2 and any("galaxyzoo_cli" not in s for s in scripts)
    result = export_module.export(run, out=tmp_path / "export" / "model.onnx")
    folder = tmp_path / "deployed"
    _copy([str(f) for f in result.files], folder)
    expected = _predict(
        run, _copy([str(p) for p in jpegs], tmp_path / "images")[0].parent, tmp_path / "p.csv"
    )
    monkeypatch.chdir(folder)
    for path in jpegs:
        shutil.copy(path, folder / "galaxy.jpg")
        for script in scripts:
            capsys.readouterr()
            exec(compile(script, str(GUIDE), "exec"), {"__name__": "__main__"})
            printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
            got = [printed[c] for c in COLUMNS]
            assert np.abs(np.subtract(got, expected[path.stem])).max() <= 1e-4, script
