"""The Kaggle layout on disk: label CSVs, image folders, preprocessing and image loading.

A data folder holds ``images_training_rev1/<GalaxyID>.jpg``, ``training_solutions_rev1.csv`` and
``images_test_rev1/<GalaxyID>.jpg``. Every problem found here is a :class:`BadInputError` that names
the file (and row or column) and the fix.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from galaxyzoo_cli.errors import BadInputError
from galaxyzoo_cli.files import atomic_path
from galaxyzoo_cli.schema import COLUMNS, CSV_HEADER, ID_COLUMN, N_OUTPUTS, check_consistency

TRAIN_IMAGES = "images_training_rev1"
TEST_IMAGES = "images_test_rev1"
LABELS_CSV = "training_solutions_rev1.csv"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
REFERENCE_SIDE = 424
"""Side of the Kaggle images; crop sizes are given in this frame and scaled for other sizes."""

FETCH_HINT = "run `galaxyzoo fetch` (or `galaxyzoo fetch --synthetic 500` for offline data)"


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelTable:
    """GalaxyIDs (int64, as in the file) and their 37 values (float32, NaN = missing)."""

    path: Path
    ids: np.ndarray
    values: np.ndarray

    @property
    def n_missing(self) -> int:
        return int(np.isnan(self.values).sum())


def _bad(path: Path, where: str, problem: str, fix: str) -> BadInputError:
    return BadInputError(f"{path}{where}: {problem}. {fix}")


def read_labels(path: str | os.PathLike[str]) -> LabelTable:
    """Read and validate a Kaggle labels CSV (``GalaxyID`` + the 37 columns in Kaggle order).

    Empty cells are missing labels (NaN). Raises :class:`BadInputError` naming the file, line and
    column for a wrong header, a short or long row, a non-number, a value outside [0, 1], or a
    repeated GalaxyID.
    """
    path = Path(path)
    fix_header = f"The header must be {ID_COLUMN},{COLUMNS[0]},…,{COLUMNS[-1]} (37 classes)."
    if not path.is_file():
        raise BadInputError(f"{path}: labels file not found. {FETCH_HINT}, or check --data-dir.")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise _bad(path, "", f"not a readable CSV ({e})", "Give a UTF-8 CSV file.") from None
    if not any(cell.strip() for row in rows for cell in row):
        raise _bad(path, "", "the file is empty", fix_header)
    header = [h.strip() for h in rows[0]]
    if header != list(CSV_HEADER):
        if not header or header[0] != ID_COLUMN:
            problem = (
                f"the first column is {header[0] if header else '(none)'!r}, not {ID_COLUMN!r}"
            )
        elif len(header) != len(CSV_HEADER):
            problem = f"{len(header) - 1} label columns, expected {N_OUTPUTS}"
        else:
            i = next(i for i, (a, b) in enumerate(zip(header, CSV_HEADER, strict=True)) if a != b)
            problem = f"column {i + 1} is {header[i]!r}, expected {CSV_HEADER[i]!r}"
        raise _bad(path, " line 1", problem, fix_header)
    body = rows[1:]
    while body and not any(cell.strip() for cell in body[-1]):
        body.pop()  # trailing blank lines
    if not body:
        raise _bad(
            path, "", "the header has no rows under it", "Give at least one labelled galaxy."
        )
    for lineno, row in enumerate(body, start=2):
        if len(row) != len(CSV_HEADER):
            raise _bad(
                path,
                f" line {lineno}",
                f"{len(row)} fields, expected {len(CSV_HEADER)}",
                "Every row needs a GalaxyID and 37 values (empty = missing).",
            )
    cells = np.char.strip(np.array(body, dtype=str))
    ids = _parse_ids(path, cells[:, 0])
    values = _parse_values(path, cells[:, 1:])
    return LabelTable(path=path, ids=ids, values=values)


def _parse_ids(path: Path, raw: np.ndarray) -> np.ndarray:
    ok = np.char.isdigit(raw)
    if not ok.all():
        i = int(np.argmin(ok))
        raise _bad(
            path,
            f" line {i + 2}",
            f"GalaxyID {str(raw[i])!r} is not a whole number",
            "GalaxyIDs are positive integers such as 100008.",
        )
    ids = raw.astype(np.int64)
    order = np.argsort(ids, kind="stable")
    dup = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if dup.size:
        first, second = sorted((int(order[dup[0]]), int(order[dup[0] + 1])))
        raise _bad(
            path,
            f" lines {first + 2} and {second + 2}",
            f"GalaxyID {ids[first]} appears twice",
            "Keep one row per galaxy.",
        )
    return ids


def _parse_values(path: Path, raw: np.ndarray) -> np.ndarray:
    empty = raw == ""
    try:
        values = np.where(empty, "nan", raw).astype(np.float64)
    except ValueError:
        for (r, c), cell in np.ndenumerate(raw):
            try:
                float(cell or "nan")
            except ValueError:
                raise _bad(
                    path,
                    f" line {r + 2}, column {COLUMNS[c]}",
                    f"{str(cell)!r} is not a number",
                    "Values are numbers in [0, 1]; leave the cell empty for a missing label.",
                ) from None
        raise  # unreachable: some cell failed above
    bad = ~np.isnan(values) & ~((values >= 0.0) & (values <= 1.0))
    if bad.any():
        r, c = (int(x) for x in np.argwhere(bad)[0])
        raise _bad(
            path,
            f" line {r + 2}, column {COLUMNS[c]}",
            f"value {raw[r, c]} is outside [0, 1]",
            "Labels are vote fractions in [0, 1]; leave the cell empty for a missing label.",
        )
    return values.astype(np.float32)


def format_rows(ids: np.ndarray, values: np.ndarray) -> list[str]:
    """CSV lines (no newline) for ``ids`` and their 37 ``values``; NaN becomes an empty cell."""
    lines = []
    for gid, row in zip(ids, values, strict=True):
        cells = ("" if math.isnan(v) else f"{v:.9g}" for v in row.tolist())
        lines.append(f"{int(gid)}," + ",".join(cells))
    return lines


def write_labels(path: str | os.PathLike[str], ids: np.ndarray, values: np.ndarray) -> Path:
    """Write a Kaggle-format CSV atomically (header + one row per galaxy, in the given order)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != N_OUTPUTS or len(ids) != len(values):
        raise ValueError(f"need (N, {N_OUTPUTS}) values for N ids, got {values.shape}")
    path = Path(path)
    with atomic_path(path, suffix=".csv") as tmp:
        with tmp.open("w", encoding="utf-8", newline="") as f:
            f.write(",".join(CSV_HEADER) + "\n")
            for line in format_rows(ids, values):
                f.write(line + "\n")
    return path


# --------------------------------------------------------------------------------------------
# Images and the catalogue
# --------------------------------------------------------------------------------------------

_ID_NAME = re.compile(r"^(\d+)$")


def list_images(folder: str | os.PathLike[str]) -> tuple[np.ndarray, list[Path]]:
    """GalaxyIDs and paths of the images ``<GalaxyID>.jpg`` in ``folder``, sorted by GalaxyID.

    Files with other suffixes are ignored; an image whose name is not a GalaxyID is an error.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInputError(f"{folder}: image folder not found. {FETCH_HINT}, or check the path.")
    found: dict[int, Path] = {}
    with os.scandir(folder) as it:
        for entry in it:
            stem, suffix = os.path.splitext(entry.name)
            if suffix.lower() not in IMAGE_SUFFIXES or not entry.is_file():
                continue
            if not _ID_NAME.match(stem):
                raise BadInputError(
                    f"{folder / entry.name}: image name is not a GalaxyID. "
                    "Name images <GalaxyID>.jpg (digits only), or move this file out of the folder."
                )
            gid = int(stem)
            if gid in found:
                raise BadInputError(
                    f"{folder}: GalaxyID {gid} has two images ({found[gid].name}, {entry.name}). "
                    "Keep one."
                )
            found[gid] = Path(entry.path)
    ids = np.array(sorted(found), dtype=np.int64)
    return ids, [found[int(i)] for i in ids]


@dataclass(frozen=True)
class Catalogue:
    """Labelled galaxies that have an image: ids, label values (NaN = missing) and image paths."""

    data_dir: Path
    ids: np.ndarray
    labels: np.ndarray
    paths: list[Path]
    n_labels_without_image: int = 0
    n_images_without_label: int = 0

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: np.ndarray | Sequence[int]) -> Catalogue:
        index = np.asarray(index, dtype=np.int64)
        return Catalogue(
            self.data_dir,
            self.ids[index],
            self.labels[index],
            [self.paths[int(i)] for i in index],
        )


def _require_folder(data_dir: Path) -> None:
    if not data_dir.is_dir():
        raise BadInputError(f"{data_dir}: data folder not found. {FETCH_HINT}, or set --data-dir.")


def load_catalogue(data_dir: str | os.PathLike[str], table: LabelTable | None = None) -> Catalogue:
    """The labelled training galaxies of a data folder, sorted by GalaxyID.

    Rows without an image and images without a row are counted and left out; none matching is an
    error. ``table``: the folder's labels if already read.
    """
    data_dir = Path(data_dir)
    _require_folder(data_dir)
    table = table or read_labels(data_dir / LABELS_CSV)
    image_ids, paths = list_images(data_dir / TRAIN_IMAGES)
    in_images = np.isin(table.ids, image_ids)
    if not in_images.any():
        raise BadInputError(
            f"{data_dir / TRAIN_IMAGES}: none of the {len(table.ids)} GalaxyIDs in {LABELS_CSV} "
            f"has an image. {FETCH_HINT}."
        )
    ids = table.ids[in_images]
    values = table.values[in_images]
    order = np.argsort(ids, kind="stable")
    ids, values = ids[order], values[order]
    pos = np.searchsorted(image_ids, ids)
    return Catalogue(
        data_dir=data_dir,
        ids=ids,
        labels=values,
        paths=[paths[int(p)] for p in pos],
        n_labels_without_image=int((~in_images).sum()),
        n_images_without_label=int(len(image_ids) - len(ids)),
    )


@dataclass(frozen=True)
class LayoutReport:
    """What a data folder holds (see :func:`check_layout`)."""

    data_dir: Path
    n_labels: int
    n_train_images: int
    n_labelled_images: int
    n_test_images: int
    n_missing_cells: int
    consistency: str
    """How well the labels obey the decision tree (the worst violation)."""
    consistent: bool

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["data_dir"] = str(self.data_dir)
        return d

    def summary(self) -> str:
        lines = [
            f"{self.data_dir}: {self.n_labels} label rows, {self.n_train_images} training images "
            f"({self.n_labelled_images} labelled), {self.n_test_images} test images.",
            f"Labels: {self.n_missing_cells} empty cells; tree sums {self.consistency}.",
        ]
        return "\n".join(lines)


def check_layout(data_dir: str | os.PathLike[str], require_test: bool = False) -> LayoutReport:
    """Validate a Kaggle-layout folder: the labels CSV (and its tree sums), the training images and
    the test images."""
    data_dir = Path(data_dir)
    _require_folder(data_dir)
    table = read_labels(data_dir / LABELS_CSV)
    cat = load_catalogue(data_dir, table)
    test_dir = data_dir / TEST_IMAGES
    if test_dir.is_dir():
        n_test = len(list_images(test_dir)[0])
    elif require_test:
        raise BadInputError(f"{test_dir}: test image folder not found. {FETCH_HINT}.")
    else:
        n_test = 0
    report = check_consistency(table.values)
    return LayoutReport(
        data_dir=data_dir,
        n_labels=len(table.ids),
        n_train_images=len(cat.ids) + cat.n_images_without_label,
        n_labelled_images=len(cat.ids),
        n_test_images=n_test,
        n_missing_cells=table.n_missing,
        consistency=report.describe(table.ids),
        consistent=report.ok,
    )


# --------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preprocess:
    """How an image file becomes an array: colour, centre crop and output size.

    ``crop`` is the side of the centred square in pixels of the 424-px Kaggle frame; on images of
    another size it is scaled in proportion (a relative crop). ``None`` keeps the largest centred
    square. ``image_size`` is the output side (``None``: the crop's own size).
    """

    channels: int = 3
    crop: int | None = None
    image_size: int | None = None

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise BadInputError(f"--channels {self.channels}: use 1 (grayscale) or 3 (RGB).")
        if self.crop is not None and not 8 <= self.crop <= REFERENCE_SIDE:
            raise BadInputError(
                f"--crop {self.crop}: give a side between 8 and {REFERENCE_SIDE} pixels "
                "(of the 424-px frame)."
            )
        if self.image_size is not None and not 8 <= self.image_size <= 1024:
            raise BadInputError(f"--image-size {self.image_size}: give a side between 8 and 1024.")

    @property
    def output_side(self) -> int:
        """Output side for a 424-px Kaggle image."""
        return self.image_size or self.crop or REFERENCE_SIDE

    def as_dict(self) -> dict[str, int | None]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, int | None]) -> Preprocess:
        return cls(**{k: d.get(k) for k in ("channels", "crop", "image_size")})  # type: ignore[arg-type]

    @classmethod
    def from_spec(cls, spec: str) -> Preprocess:
        """Parse a transform spec such as ``"gray,crop=256,size=64"`` (see :meth:`describe`).

        Tokens: ``original``/``rgb``, ``gray``/``grayscale``, ``crop=N`` and ``size=N`` (or
        ``resize=N``), separated by commas or ``+``.
        """
        channels, crop, size = 3, None, None
        for token in filter(None, (t.strip().lower() for t in re.split(r"[,+]", spec))):
            name, _, value = token.partition("=")
            if name in ("original", "rgb", "color", "colour") and not value:
                channels = 3
            elif name in ("gray", "grey", "grayscale", "greyscale") and not value:
                channels = 1
            elif name in ("crop", "size", "resize") and value.isdigit():
                if name == "crop":
                    crop = int(value)
                else:
                    size = int(value)
            else:
                raise BadInputError(
                    f"--transform {spec!r}: cannot read {token!r}. Use comma-separated "
                    "original, gray, crop=N, size=N (e.g. 'gray,crop=256,size=64')."
                )
        return cls(channels=channels, crop=crop, image_size=size)

    def describe(self) -> str:
        parts = ["grayscale" if self.channels == 1 else "RGB"]
        if self.crop is not None:
            parts.append(f"crop {self.crop}")
        if self.image_size is not None:
            parts.append(f"resize {self.image_size}")
        return " + ".join(parts)


def load_image(path: str | os.PathLike[str], prep: Preprocess) -> np.ndarray:
    """Decode one image into a uint8 array of shape (channels, side, side).

    JPEGs are decoded at a reduced scale (PIL ``draft``) when the output needs no more than that,
    which is several times faster than a full decode and close to exact (DCT-domain downscaling).
    Raises :class:`BadInputError` for unreadable files.
    """
    from PIL import Image, UnidentifiedImageError

    mode = "L" if prep.channels == 1 else "RGB"
    try:
        with Image.open(path) as im:
            width, height = im.size
            side = min(width, height)
            crop = side if prep.crop is None else min(side, prep.crop * side / REFERENCE_SIDE)
            out = prep.image_size or max(1, round(crop))
            if im.format == "JPEG":
                need = out / crop  # fraction of full resolution the output needs
                im.draft(mode, (math.ceil(width * need), math.ceil(height * need)))
            scale = im.size[0] / width
            img = im.convert(mode)
    except (OSError, UnidentifiedImageError, SyntaxError) as e:
        raise BadInputError(
            f"{path}: cannot read this image ({e}). Replace or delete the file (re-fetch the data)."
        ) from None
    c = crop * scale
    left, top = (img.size[0] - c) / 2, (img.size[1] - c) / 2
    box = (left, top, left + c, top + c)
    if out == round(c) and all(float(v).is_integer() for v in box):
        img = img.crop(tuple(int(v) for v in box))
    else:
        img = img.resize((out, out), Image.Resampling.BILINEAR, box=box)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
