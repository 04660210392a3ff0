"""predict on your own cutouts: PNG, JPEG and FITS, odd names and sizes, catalogues passed
through, derived flags and embeddings."""

from __future__ import annotations

import csv
import json
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from galaxyzoo_cli.cli import app
from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.core.schema import COLUMNS
from galaxyzoo_cli.core.settings import FitsOptions, TrainConfig
from galaxyzoo_cli.data.catalogue import TEST_IMAGES, list_images
from galaxyzoo_cli.data.cutouts import FitsSupportMissing, derived_flags, find_cutouts
from galaxyzoo_cli.data.images import InputSpec, load_image
from galaxyzoo_cli.outputs.preview import _model_input
from galaxyzoo_cli.training.loop import train
from galaxyzoo_cli.training.run_folder import load_checkpoint, resolve_run

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = TrainConfig(model="test_tiny", epochs=1, device="cpu", head="sigmoid")  # type: ignore[arg-type]
    return train(config, data_dir=synthetic_data, runs_dir=tmp_path_factory.mktemp("r")).run_dir


def _fits(path: Path, data: np.ndarray) -> None:
    fits = pytest.importorskip("astropy.io.fits")
    fits.PrimaryHDU(data.astype(np.float32)).writeto(path)


@pytest.fixture
def cutouts(synthetic_data: Path, tmp_path: Path) -> Path:
    """JPEGs, PNGs of odd sizes and names, and FITS files, some in a subfolder."""
    folder = tmp_path / "cutouts"
    (folder / "deep" / "er").mkdir(parents=True)
    _, paths = list_images(synthetic_data / TEST_IMAGES)
    shutil.copy(paths[0], folder / "NGC 1300.jpg")
    with Image.open(paths[1]) as im:
        im.resize((300, 200)).save(folder / "deep" / "m51,a.png")
        im.convert("L").resize((101, 101)).save(folder / "deep" / "er" / "UGC_12158.PNG")
    y, x = np.mgrid[-50:50, -50:50]
    blob = 100 * np.exp(-(x**2 + y**2) / 200.0)
    _fits(folder / "single.fits", blob + np.random.default_rng(0).normal(0, 1, blob.shape))
    _fits(folder / "deep" / "cube.fits", np.stack([blob * 0.5, blob, blob * 2]))
    return folder


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_any_folder_of_cutouts(run_dir: Path, cutouts: Path, tmp_path: Path) -> None:
    out, vectors = tmp_path / "p.csv", tmp_path / "e.npy"
    result = runner.invoke(
        app, ["predict", str(run_dir), "--images", str(cutouts), "--out", str(out), "--derived",
              "--embeddings", str(vectors), "--device", "cpu", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = _read(out)
    assert list(rows[0])[:2] == ["id", COLUMNS[0]] and "GalaxyID" not in rows[0]
    assert [r["id"] for r in rows] == [
        "NGC 1300",
        "cube",
        "UGC_12158",
        "m51,a",
        "single",
    ]  # by path
    assert list(rows[0])[-5:] == [
        "derived_smooth", "derived_featured", "derived_edge_on", "derived_barred", "derived_spiral"
    ]  # fmt: skip
    values = np.array([[float(r[c]) for c in COLUMNS] for r in rows])
    assert values.shape == (5, 37) and values.min() >= 0 and values.max() <= 1
    emb = np.load(vectors)
    assert emb.shape[0] == 5 and emb.shape[1] > 1 and np.isfinite(emb).all()
    assert json.loads(result.stdout)["embeddings"] == str(vectors)
    # the same images predicted one at a time give the same rows, in the same order
    single = tmp_path / "one"
    single.mkdir()
    shutil.copy(cutouts / "deep" / "m51,a.png", single / "m51,a.png")
    alone = runner.invoke(app, ["predict", str(run_dir), "--images", str(single),
                                "--out", str(tmp_path / "one.csv"), "--device", "cpu"])  # fmt: skip
    assert alone.exit_code == 0, alone.output
    np.testing.assert_allclose(
        [float(_read(tmp_path / "one.csv")[0][c]) for c in COLUMNS], values[3], atol=1e-6
    )


def test_a_catalogue_passes_its_columns_through(run_dir: Path, cutouts: Path) -> None:
    catalogue = cutouts / "catalogue.csv"
    catalogue.write_text(
        "id,path,ra,dec\ngal-b,deep/m51,a.png,10.5,-3.25\ngal-a,NGC 1300.jpg,200.1,45.0\n"
        .replace("deep/m51,a.png", '"deep/m51,a.png"')
    )  # fmt: skip
    result = runner.invoke(
        app, ["predict", str(run_dir), "--catalogue", str(catalogue), "--device", "cpu", "--json"]
    )
    assert result.exit_code == 0, result.output
    out = Path(json.loads(result.stdout)["out"])
    assert out.name == "predictions.csv"
    rows = _read(out)
    assert [(r["id"], r["ra"], r["dec"]) for r in rows] == [
        ("gal-b", "10.5", "-3.25"), ("gal-a", "200.1", "45.0")
    ]  # fmt: skip
    bad = cutouts / "bad.csv"
    bad.write_text("name,file\nx,y\n")
    result = runner.invoke(app, ["predict", str(run_dir), "--catalogue", str(bad)])
    assert result.exit_code == 2 and "columns id and path" in result.stderr


def test_unreadable_cutouts_are_named(run_dir: Path, cutouts: Path, tmp_path: Path) -> None:
    (cutouts / "broken.png").write_bytes(b"not a png")
    args = ["predict", str(run_dir), "--images", str(cutouts), "--device", "cpu"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "a.csv"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["skipped"] == {"unreadable image": ["broken"]}
    strict = runner.invoke(app, [*args, "--out", str(tmp_path / "b.csv"), "--strict"])
    assert strict.exit_code == 2 and "broken" in strict.stderr
    assert not (tmp_path / "b.csv").exists()


def test_kaggle_named_cutouts_make_a_submission(run_dir: Path, synthetic_data: Path) -> None:
    found = find_cutouts(synthetic_data / TEST_IMAGES)
    assert found.kaggle and found.ids == sorted(found.ids, key=int)


def test_fits_cube_becomes_an_sdss_like_colour_image(cutouts: Path) -> None:
    img = load_image(cutouts / "deep" / "cube.fits", InputSpec(channels=3, size=32))
    centre = img[:, 16, 16].astype(int)
    assert centre[0] > centre[1] > centre[2]  # planes 2, 1, 0 as red, green, blue
    assert img[:, 1, 1].max() < 40  # dark sky at the edge
    swapped = load_image(
        cutouts / "deep" / "cube.fits", InputSpec(channels=3, size=32), fits=FitsOptions((0, 1, 2))
    )
    assert swapped[2, 16, 16] > swapped[0, 16, 16]
    grey = load_image(cutouts / "single.fits", InputSpec(channels=3, size=32))
    assert abs(int(grey[0, 16, 16]) - int(grey[2, 16, 16])) <= 1 and grey[0, 16, 16] > 100


def _without_astropy(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if astropy were not installed (also for its already imported submodules)."""
    for name in [m for m in sys.modules if m == "astropy" or m.startswith("astropy.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "astropy", None)


def test_fits_without_astropy_says_how_to_install(
    cutouts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_astropy(monkeypatch)
    with pytest.raises(FitsSupportMissing, match=r"pip install 'galaxyzoo-cli\[fits\]'"):
        load_image(cutouts / "single.fits", InputSpec(channels=3, size=32))
    monkeypatch.setattr(sys, "prefix", "/home/me/.local/share/pipx/venvs/galaxyzoo-cli")
    with pytest.raises(BadInputError, match=r"^.*single.fits.*: pipx inject galaxyzoo-cli astropy"):
        load_image(cutouts / "single.fits", InputSpec(channels=3, size=32))


def test_fits_without_astropy_stops_predict_and_preview(
    run_dir: Path, cutouts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not 'unreadable files skipped' and an empty CSV with exit 0: the job stops and says why."""
    _without_astropy(monkeypatch)
    out = tmp_path / "p.csv"
    result = runner.invoke(app, ["predict", str(run_dir), "--images", str(cutouts), "--out",
                                 str(out), "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "galaxyzoo-cli[fits]" in result.stderr and "pipx inject galaxyzoo-cli astropy" in (
        result.stderr
    )
    assert not out.exists()
    shown = runner.invoke(app, ["preview", "--images", str(cutouts), "-n", "5",
                                "--out", str(tmp_path / "x.png")])  # fmt: skip
    assert shown.exit_code == 2 and "galaxyzoo-cli[fits]" in shown.stderr


def _galaxy(scale: float, offset: float, seed: int = 0) -> np.ndarray:
    """A g, r, i cube of an exponential disc with sky noise, in units ``scale`` above ``offset``."""
    y, x = np.mgrid[-60:60, -60:60]
    disc = np.exp(-np.hypot(x, 1.8 * y) / 8.0)
    noise = np.random.default_rng(seed).normal(0, 0.01, (3, *disc.shape))
    return offset + scale * (np.stack([0.6 * disc, disc, 1.3 * disc]) + noise)


def test_the_default_fits_scale_works_on_fluxes_of_any_scale(tmp_path: Path) -> None:
    spec = InputSpec(channels=3, size=48)
    rendered = {}
    for name, scale, offset in (("nmgy", 1.0, 0.0), ("bytes", 200.0, 30.0), ("counts", 5e4, 1e3)):
        _fits(tmp_path / f"{name}.fits", _galaxy(scale, offset))
        rendered[name] = load_image(tmp_path / f"{name}.fits", spec).astype(int)
        sdss = load_image(tmp_path / f"{name}.fits", spec, fits=FitsOptions(scale="sdss"))
        if name != "nmgy":  # the fixed SDSS scaling, on data of a larger scale: grey sky
            assert np.median(sdss[:, :6, :6]) > 20
    for img in rendered.values():
        assert (img.max(axis=0) == 255).mean() < 0.02  # only the core is white
        assert np.median(img[:, :6, :6]) < 6 and img[:, 24, 24].min() > 100  # dark sky, bright core
        assert img[0, 24, 20] > img[1, 24, 20] > img[2, 24, 20]  # i, r, g as red, green, blue
    # Units and zero point do not matter: the same picture (float rounding aside).
    assert np.abs(rendered["bytes"] - rendered["nmgy"]).max() <= 1
    assert np.abs(rendered["counts"] - rendered["nmgy"]).max() <= 1
    lighter = load_image(tmp_path / "nmgy.fits", spec, fits=FitsOptions(percentile=99.9))
    assert lighter.astype(int).sum() < rendered["nmgy"].sum()  # a higher white point: darker


@pytest.mark.parametrize("scale", ["percentile", "sdss"])
def test_fits_rendering_leaks_no_warnings(tmp_path: Path, scale: str) -> None:
    data = _galaxy(1.0, 0.0)
    data[:, :30] = 0.0  # a blank border: zero intensity, which make_lupton_rgb divides by
    data[:, :, :5] = np.nan
    _fits(tmp_path / "edge.fits", data)
    flat = tmp_path / "flat.fits"
    _fits(flat, np.zeros((40, 40)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        img = load_image(
            tmp_path / "edge.fits", InputSpec(3, size=32), fits=FitsOptions(scale=scale)
        )
        assert img[:, -1, 16].max() <= 1 and img[:, 16, 16].max() > 0  # blank (bottom) is black
        assert load_image(flat, InputSpec(3, size=16), fits=FitsOptions(scale=scale)).max() == 0


def test_fits_options_are_checked(run_dir: Path, cutouts: Path) -> None:
    for args, flag in ((["--fits-scale", "zscale"], "--fits-scale"),
                       (["--fits-percentile", "30"], "--fits-percentile"),
                       (["--fits-q", "0"], "--fits-q"),
                       (["--fits-bands", "2,1"], "--fits-bands")):  # fmt: skip
        result = runner.invoke(app, ["predict", str(run_dir), "--images", str(cutouts), *args])
        assert result.exit_code == 2 and flag in result.stderr, result.output


def test_preview_shows_cutouts_as_the_model_gets_them(
    run_dir: Path, cutouts: Path, tmp_path: Path
) -> None:
    out = tmp_path / "preview.png"
    result = runner.invoke(
        app, ["preview", "--images", str(cutouts), "--run", str(run_dir), "-n", "5",
              "--fits-scale", "sdss", "--out", str(out), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["transforms"] == ["original", "model"]
    assert sorted(report["galaxy_ids"]) == ["NGC 1300", "UGC_12158", "cube", "m51,a", "single"]
    with Image.open(out) as im:
        assert im.width > im.height  # 5 cutouts side by side, 2 rows
    # The model row is the run's own input, decoded by the function predict uses.
    name, spec = _model_input(run_dir)
    assert spec == load_checkpoint(resolve_run(run_dir).checkpoint).model.input
    assert name == run_dir.name
    assert _model_input(None)[1].size == 96  # no run: the default model's input


def test_derived_flags_follow_the_thresholds() -> None:
    v = np.zeros((4, 37))
    v[0, 0:3] = [0.8, 0.2, 0.0]  # smooth
    v[1, 0:3] = [0.1, 0.9, 0.0]  # featured, edge-on
    v[1, 3:5] = [0.7, 0.2]
    v[2, 0:3] = [0.0, 1.0, 0.0]  # featured, face-on, barred, spiral
    v[2, 3:5] = [0.0, 1.0]
    v[2, 5:7] = [0.6, 0.4]
    v[2, 7:9] = [0.8, 0.2]
    v[3, 0:3] = [0.5, 0.45, 0.05]  # both smooth and featured, nothing else
    v[3, 3:5] = [0.2, 0.25]
    flags = derived_flags(v).columns
    assert flags["derived_smooth"].tolist() == [1, 0, 0, 1]
    assert flags["derived_featured"].tolist() == [0, 1, 1, 1]
    assert flags["derived_edge_on"].tolist() == [0, 1, 0, 0]
    assert flags["derived_barred"].tolist() == [0, 0, 1, 0]
    assert flags["derived_spiral"].tolist() == [0, 0, 1, 0]


def test_ids_stay_unique_when_stems_repeat(synthetic_data: Path, tmp_path: Path) -> None:
    """The same galaxy as a JPEG and a PNG beside it, and again in a subfolder: every id is
    unique (the stem, then the path below the folder, then the file name with its suffix)."""
    _, paths = list_images(synthetic_data / TEST_IMAGES)
    folder = tmp_path / "cutouts"
    (folder / "deeper").mkdir(parents=True)
    shutil.copy(paths[0], folder / "a.jpg")
    Image.open(paths[0]).save(folder / "a.png")
    shutil.copy(paths[1], folder / "deeper" / "a.jpg")
    shutil.copy(paths[2], folder / "b.jpg")
    found = find_cutouts(folder)
    assert sorted(found.ids) == ["a.jpg", "a.png", "b.jpg", "deeper/a.jpg"]
    assert len(set(found.ids)) == len(found.paths) == 4 and not found.kaggle
    only_subfolders = tmp_path / "split"
    for part in ("x", "y"):
        (only_subfolders / part).mkdir(parents=True)
        shutil.copy(paths[0], only_subfolders / part / "a.jpg")
    assert find_cutouts(only_subfolders).ids == ["x/a", "y/a"]
