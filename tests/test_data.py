"""Label CSV validation, the catalogue, preprocessing and image loading."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from galaxyzoo_cli.cli import app
from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.core.schema import COLUMNS, CSV_HEADER
from galaxyzoo_cli.data.catalogue import (
    LABELS_CSV,
    TRAIN_IMAGES,
    check_layout,
    list_images,
    load_catalogue,
    read_labels,
    write_labels,
)
from galaxyzoo_cli.data.images import InputSpec, load_image, parse_transform

runner = CliRunner()


@pytest.fixture
def data_copy(synthetic_data: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(synthetic_data, dst)
    return dst


def _rewrite_csv(data_dir: Path, edit) -> None:
    path = data_dir / LABELS_CSV
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


def _check(data_dir: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["check", "--data-dir", str(data_dir)])
    return result.exit_code, result.output


def test_round_trip_with_missing_cells(tmp_path: Path) -> None:
    values = np.random.default_rng(0).random((3, 37)).astype(np.float32)
    values[1, 5:13] = np.nan
    write_labels(tmp_path / "x.csv", np.array([100023, 100008, 100053]), values)
    table = read_labels(tmp_path / "x.csv")
    assert table.ids.tolist() == [100023, 100008, 100053]
    assert table.n_missing == 8
    np.testing.assert_allclose(table.values, values, rtol=1e-6)
    assert (tmp_path / "x.csv").read_text().splitlines()[0] == ",".join(CSV_HEADER)


def test_check_command_on_good_data(synthetic_data: Path) -> None:
    code, out = _check(synthetic_data)
    assert code == 0, out
    assert "120 label rows" in out and "24 test images" in out and "consistent" in out
    report = check_layout(synthetic_data)
    assert report.consistent and report.n_labelled_images == 120


CASES = {
    "missing id column": (
        lambda ls: [ls[0].replace("GalaxyID", "ID")] + ls[1:],
        "line 1: the first column is 'ID'",
    ),
    "too few columns": (
        lambda ls: [",".join(ls[0].split(",")[:-1])] + ls[1:],
        "36 label columns, expected 37",
    ),
    "columns out of order": (
        lambda ls: [ls[0].replace("Class1.1,Class1.2", "Class1.2,Class1.1")] + ls[1:],
        "column 2 is 'Class1.2', expected 'Class1.1'",
    ),
    "short row": (lambda ls: ls[:3] + [ls[3].rsplit(",", 1)[0]] + ls[4:], "line 4: 37 fields"),
    "not a number": (
        lambda ls: ls[:2] + [ls[2].split(",", 1)[0] + ",abc," + ls[2].split(",", 2)[2]] + ls[3:],
        "line 3, column Class1.1: 'abc' is not a number",
    ),
    "out of range": (
        lambda ls: ls[:5] + [ls[5].split(",", 1)[0] + ",1.5," + ls[5].split(",", 2)[2]] + ls[6:],
        "line 6, column Class1.1: value 1.5 is outside [0, 1]",
    ),
    "duplicate id": (lambda ls: ls + [ls[7]], "appears twice"),
    "bad id": (lambda ls: ls[:2] + ["x" + ls[2]] + ls[3:], "line 3: GalaxyID 'x"),
    "empty file": (lambda ls: [], "the file is empty"),
    "header only": (lambda ls: ls[:1], "no rows under it"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_csv_errors_exit_2_naming_the_file(data_copy: Path, case: str) -> None:
    edit, message = CASES[case]
    _rewrite_csv(data_copy, edit)
    code, out = _check(data_copy)
    assert code == 2, out
    assert message in out
    assert str(data_copy / LABELS_CSV) in out
    assert "Traceback" not in out and len(out.strip().splitlines()) <= 2


def test_missing_folder_and_file(tmp_path: Path, data_copy: Path) -> None:
    code, out = _check(tmp_path / "nowhere")
    assert code == 2 and "data folder not found" in out and "galaxyzoo fetch" in out
    (data_copy / LABELS_CSV).unlink()
    code, out = _check(data_copy)
    assert code == 2 and "labels file not found" in out


def test_catalogue_matches_rows_to_images(data_copy: Path) -> None:
    ids, paths = list_images(data_copy / TRAIN_IMAGES)
    paths[0].unlink()  # a labelled galaxy without its image
    shutil.copy(paths[1], data_copy / TRAIN_IMAGES / "999999.jpg")  # an image without a label
    cat = load_catalogue(data_copy)
    assert len(cat) == 119 and cat.n_labels_without_image == 1 and cat.n_images_without_label == 1
    assert ids[0] not in cat.ids and 999999 not in cat.ids
    assert all(p.stem == str(i) for p, i in zip(cat.paths, cat.ids, strict=True))
    assert (np.diff(cat.ids) > 0).all()


def test_image_name_must_be_a_galaxy_id(data_copy: Path) -> None:
    (data_copy / TRAIN_IMAGES / "notes.txt").write_text("ignored")
    list_images(data_copy / TRAIN_IMAGES)  # other suffixes are ignored
    shutil.copy(next((data_copy / TRAIN_IMAGES).glob("*.jpg")), data_copy / TRAIN_IMAGES / "a.jpg")
    with pytest.raises(BadInputError, match="a.jpg: image name is not a GalaxyID"):
        list_images(data_copy / TRAIN_IMAGES)


def test_corrupt_image_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "100008.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(BadInputError, match="100008.jpg: cannot read this image"):
        load_image(bad, InputSpec(channels=1, size=32))


def _gradient_jpeg(path: Path, size: tuple[int, int], mode: str) -> None:
    w, h = size
    x = np.linspace(0, 255, w)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h)[:, None].repeat(w, 1)
    if mode == "L":
        arr = ((x + y) / 2).astype(np.uint8)
    else:
        arr = np.stack([x, y, np.full_like(x, 128)], axis=2).astype(np.uint8)
    Image.fromarray(arr, mode).save(path, quality=95)


@pytest.mark.parametrize(
    ("size", "mode"),
    [((424, 424), "RGB"), ((212, 212), "RGB"), ((300, 200), "RGB"), ((424, 424), "L")],
)
@pytest.mark.parametrize(
    "prep",
    [
        InputSpec(channels=1, crop=256, size=64),
        InputSpec(channels=3, crop=208, size=69),
        InputSpec(channels=3),
        InputSpec(channels=1, crop=256),
    ],
)
def test_load_image_odd_sizes_and_grayscale(
    tmp_path: Path, size: tuple[int, int], mode: str, prep: InputSpec
) -> None:
    path = tmp_path / "100008.jpg"
    _gradient_jpeg(path, size, mode)
    img = load_image(path, prep)
    side = min(size)
    expect = prep.size or round((prep.crop or 424) * side / 424)
    assert img.dtype == np.uint8 and img.shape == (prep.channels, expect, expect)
    # The crop is centred: the centre pixel keeps the source's centre value.
    full = np.asarray(Image.open(path).convert("L" if prep.channels == 1 else "RGB"), np.float64)
    centre = full[size[1] // 2, size[0] // 2]
    got = img[:, expect // 2, expect // 2].astype(np.float64)
    assert np.allclose(got, centre, atol=6)


def test_crop_is_relative_to_image_size(tmp_path: Path) -> None:
    # A 212-px image is the 424-px frame at half scale: crop 256 must keep the same field of view.
    big = np.zeros((424, 424), np.uint8)
    big[84:340, 84:340] = 200  # a square exactly the crop-256 field of view
    Image.fromarray(big).save(tmp_path / "1.png")
    Image.fromarray(big).resize((212, 212), Image.Resampling.BOX).save(tmp_path / "2.png")
    prep = InputSpec(channels=1, crop=256, size=32)
    a, b = load_image(tmp_path / "1.png", prep), load_image(tmp_path / "2.png", prep)
    assert a.min() > 150 and b.min() > 150  # only the bright square is inside the crop
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 3


def test_reduced_jpeg_decode_is_close_to_full_decode(tmp_path: Path) -> None:
    path = tmp_path / "100008.jpg"
    _gradient_jpeg(path, (424, 424), "RGB")
    fast = load_image(path, InputSpec(channels=3, crop=256, size=64)).astype(float)
    full = np.asarray(Image.open(path).convert("RGB"))[84:340, 84:340]
    ref = np.asarray(Image.fromarray(full).resize((64, 64), Image.Resampling.BILINEAR)).astype(
        float
    )
    assert np.abs(fast - ref.transpose(2, 0, 1)).mean() < 2.0


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("original", InputSpec(3, None, None)),
        ("gray,crop=256,size=64", InputSpec(1, 256, 64)),
        ("grayscale + crop=256 + resize=128", InputSpec(1, 256, 128)),
    ],
)
def test_transform_specs(spec: str, expected: InputSpec) -> None:
    assert parse_transform(spec) == expected


@pytest.mark.parametrize("spec", ["blur", "crop=abc", "size=4", "crop=999"])
def test_bad_transform_specs(spec: str) -> None:
    with pytest.raises(BadInputError, match="--transform"):
        parse_transform(spec)


def test_columns_constant_matches_file_header(synthetic_data: Path) -> None:
    header = (synthetic_data / LABELS_CSV).read_text().splitlines()[0].split(",")
    assert header[1:] == list(COLUMNS)
