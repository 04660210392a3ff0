"""The Kaggle layout on disk: label CSVs, image folders, the catalogue and its splits.

A data folder holds ``images_training_rev1/<GalaxyID>.jpg``, ``training_solutions_rev1.csv`` and
``images_test_rev1/<GalaxyID>.jpg``. Every problem found here is a :class:`BadInputError` that names
the file (and row or column) and the fix. How an image becomes pixels is in
:mod:`galaxyzoo_cli.data.images`.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.core.files import atomic_path
from galaxyzoo_cli.core.progress import SILENT, Reporter
from galaxyzoo_cli.core.schema import COLUMNS, CSV_HEADER, ID_COLUMN, N_OUTPUTS, check_consistency
from galaxyzoo_cli.core.settings import EvalSplit, ValSplit
from galaxyzoo_cli.data.images import InputSpec, decode_into

TRAIN_IMAGES = "images_training_rev1"
TEST_IMAGES = "images_test_rev1"
LABELS_CSV = "training_solutions_rev1.csv"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

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
            problem = _column_difference(header)
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


def _column_difference(header: list[str]) -> str:
    """What a header lacks and has too many of, by name (``Class1.3`` missing, ``Foo`` not a
    Kaggle column, ``Class2.1`` twice)."""
    found = header[1:]
    missing = [c for c in COLUMNS if c not in found]
    unknown = [c for c in found if c not in COLUMNS]
    twice = sorted({c for c in found if c in COLUMNS and found.count(c) > 1})
    parts = [f"{len(found)} label columns, expected {N_OUTPUTS}"]
    if missing:
        parts.append(f"missing {_names(missing)}")
    if unknown:
        parts.append(f"unexpected {_names(unknown)}")
    if twice:
        parts.append(f"repeated {_names(twice)}")
    return "; ".join(parts) if len(parts) > 1 else parts[0]


def _names(columns: list[str], most: int = 6) -> str:
    shown = ", ".join(repr(c) for c in columns[:most])
    return shown + (f" and {len(columns) - most} more" if len(columns) > most else "")


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
    except ValueError:  # cell by cell: the first one that is not a number is named
        values = np.empty(raw.shape, dtype=np.float64)
        for (r, c), cell in np.ndenumerate(raw):
            try:
                values[r, c] = float(cell or "nan")
            except ValueError:
                raise _bad(
                    path,
                    f" line {r + 2}, column {COLUMNS[c]}",
                    f"{str(cell)!r} is not a number",
                    "Values are numbers in [0, 1]; leave the cell empty for a missing label.",
                ) from None
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


def _cell(value: object) -> str:
    """A CSV cell: quoted only when it must be."""
    text = str(value)
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\r\n') else text


def format_rows(
    ids: Sequence[object] | np.ndarray,
    values: np.ndarray,
    extra: Sequence[Sequence[object]] = (),
) -> list[str]:
    """CSV lines (no newline): each id, its 37 ``values`` (NaN: an empty cell) and its cells of
    the ``extra`` columns."""
    lines = []
    for k, (gid, row) in enumerate(zip(ids, values, strict=True)):
        cells = [_cell(int(gid) if isinstance(gid, np.integer) else gid)]
        cells += ["" if math.isnan(v) else f"{v:.9g}" for v in row.tolist()]
        cells += [_cell(column[k]) for column in extra]
        lines.append(",".join(cells))
    return lines


def write_labels(
    path: str | os.PathLike[str],
    ids: Sequence[object] | np.ndarray,
    values: np.ndarray,
    *,
    id_column: str = ID_COLUMN,
    extra: dict[str, Sequence[object]] | None = None,
    columns: Sequence[str] = COLUMNS,
) -> Path:
    """Write a Kaggle-format CSV atomically (header + one row per galaxy, in the given order):
    label files and submissions alike, or with another ``id_column`` and ``extra`` columns after
    the 37 for other cutouts; ``columns`` names the values' columns (a finetuned run's). An
    interrupted write leaves ``path`` as it was."""
    values = np.asarray(values)
    if values.ndim != 2 or values.shape[1] != len(columns) or len(ids) != len(values):
        raise BadInputError(f"need (N, {len(columns)}) values for N ids, got {values.shape}")
    extra = extra or {}
    header = [id_column, *columns, *extra]
    extra_cells = list(extra.values())
    path = Path(path)
    chunks = (  # bounded memory for any number of rows
        "".join(line + "\n" for line in format_rows(
            ids[s : s + 4096],
            values[s : s + 4096].astype(np.float64),
            [column[s : s + 4096] for column in extra_cells],
        ))
        for s in range(0, len(ids), 4096)
    )  # fmt: skip
    head, first = ",".join(_cell(h) for h in header) + "\n", next(chunks, "")
    size = len(head) + len(first.encode()) * len(ids) // max(1, min(len(ids), 4096))  # about
    with atomic_path(path, suffix=".csv", size=size) as tmp:
        with tmp.open("w", encoding="utf-8", newline="") as f:
            f.write(head + first)
            for chunk in chunks:
                f.write(chunk)
    return path


# --------------------------------------------------------------------------------------------
# What a job leaves out
# --------------------------------------------------------------------------------------------


@dataclass
class Skipped:
    """Galaxies a job left out, by reason, with their IDs.

    The policy everywhere: a labelled galaxy without an image, or an image that cannot be read,
    is skipped, counted and named (the first IDs in the message, all of them in ``--json``);
    ``--strict`` makes any of them an error instead.
    """

    by_reason: dict[str, list[int | str]] = field(default_factory=dict)
    """GalaxyIDs (or, for other cutouts, their ids) by reason."""

    def add(self, reason: str, ids: Sequence[int | str] | np.ndarray) -> None:
        if len(ids):
            self.by_reason.setdefault(reason, []).extend(
                i if isinstance(i, str) else int(i) for i in ids
            )

    def __bool__(self) -> bool:
        return any(self.by_reason.values())

    @property
    def count(self) -> int:
        return sum(len(ids) for ids in self.by_reason.values())

    def describe(self) -> str:
        parts = []
        for reason, ids in self.by_reason.items():
            shown = ", ".join(str(i) for i in ids[:5]) + (", …" if len(ids) > 5 else "")
            parts.append(f"{len(ids)} with {'an' if reason[0] in 'aeiou' else 'a'} {reason} "
                         f"({shown})")  # fmt: skip
        return f"{self.count} galaxies skipped: " + "; ".join(parts)

    def as_dict(self) -> dict[str, list[int | str]]:
        return {reason: list(ids) for reason, ids in self.by_reason.items()}

    def enforce(self, strict: bool, where: object, reporter: Reporter) -> None:
        """Nothing if nothing was skipped; else an error with ``strict``, a warning without."""
        if not self:
            return
        if strict:
            raise BadInputError(
                f"{where}: {self.describe()}. Replace or remove those files (or their label "
                "rows), or drop --strict to leave them out."
            )
        reporter.log(f"Warning: {self.describe()}. (--strict stops instead.)")


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
    ids_without_image: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    """Labelled GalaxyIDs that have no image in the folder (left out)."""
    n_images_without_label: int = 0

    @property
    def n_labels_without_image(self) -> int:
        return len(self.ids_without_image)

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

    def split(self, val_ids: np.ndarray) -> tuple[Catalogue, Catalogue]:
        """(training, validation): the galaxies not in ``val_ids``, and those in it."""
        is_val = np.isin(self.ids, val_ids)
        return self.subset(np.flatnonzero(~is_val)), self.subset(np.flatnonzero(is_val))

    def select(self, split: EvalSplit, val_ids: np.ndarray, limit: int | None = None) -> Catalogue:
        """A run's ``val`` or ``train`` galaxies in this catalogue, or ``all`` of them.

        ``limit``: the run used only the first N galaxies; ``train`` leaves out the rest.
        """
        if split == EvalSplit.ALL:
            return self
        train, val = self.split(val_ids)
        if split == EvalSplit.VAL:
            picked = val
        else:
            cutoff = self.ids[min(limit, len(self)) - 1] if limit else None
            picked = train if cutoff is None else train.subset(np.flatnonzero(train.ids <= cutoff))
        if not len(picked):
            raise BadInputError(
                f"--split {split.value}: the run has no {split.value} galaxies in "
                f"{self.data_dir}. Use --split all, or the run's data folder."
            )
        return picked


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
        ids_without_image=np.sort(table.ids[~in_images]),
        n_images_without_label=int(len(image_ids) - len(ids)),
    )


@dataclass(frozen=True)
class LayoutReport:
    """What a data folder holds and what is wrong with it (see :func:`check_layout`)."""

    data_dir: Path
    n_labels: int
    n_train_images: int
    n_labelled_images: int
    n_test_images: int
    n_missing_cells: int
    consistency: str
    """How well the labels obey the decision tree (the worst violation)."""
    consistent: bool
    labels_without_image: list[int] = field(default_factory=list)
    """GalaxyIDs with a label row but no image."""
    unreadable: dict[str, str] = field(default_factory=dict)
    """Image files that cannot be decoded, with the reason (only when images were decoded)."""
    decoded: bool = False
    """Whether every image was decoded (not only listed)."""

    @property
    def ok(self) -> bool:
        return self.consistent and not self.labels_without_image and not self.unreadable

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["data_dir"] = str(self.data_dir)
        d["ok"] = self.ok
        return d

    def summary(self) -> str:
        lines = [
            f"{self.data_dir}: {self.n_labels} label rows, {self.n_train_images} training images "
            f"({self.n_labelled_images} labelled), {self.n_test_images} test images"
            + (", every image decoded." if self.decoded else "."),
            f"Labels: {self.n_missing_cells} empty cells; tree sums {self.consistency}.",
        ]
        if self.labels_without_image:
            ids = ", ".join(str(i) for i in self.labels_without_image[:10])
            more = ", …" if len(self.labels_without_image) > 10 else ""
            lines.append(
                f"Problem: {len(self.labels_without_image)} labelled galaxies have no image "
                f"({ids}{more}); training leaves them out. Restore the images, or delete the rows."
            )
        if self.unreadable:
            lines.append(
                f"Problem: {len(self.unreadable)} images cannot be decoded; training and "
                "prediction leave them out. Replace them (re-fetch the data) or delete them:"
            )
            lines += [f"  {path}" for path in list(self.unreadable)[:10]]
            if len(self.unreadable) > 10:
                lines.append(f"  … and {len(self.unreadable) - 10} more (all in --json)")
        return "\n".join(lines)


def check_layout(
    data_dir: str | os.PathLike[str],
    require_test: bool = False,
    decode: bool = False,
    workers: int | None = None,
    reporter: Reporter = SILENT,
) -> LayoutReport:
    """Validate a Kaggle-layout folder: the labels CSV (and its tree sums), the training images and
    the test images; with ``decode``, every image is decoded (at a small size, fast) so that a
    truncated or corrupt file is found now, not in the middle of a training run."""
    data_dir = Path(data_dir)
    _require_folder(data_dir)
    table = read_labels(data_dir / LABELS_CSV)
    cat = load_catalogue(data_dir, table)
    test_dir = data_dir / TEST_IMAGES
    if test_dir.is_dir():
        test_paths = list_images(test_dir)[1]
    elif require_test:
        raise BadInputError(f"{test_dir}: test image folder not found. {FETCH_HINT}.")
    else:
        test_paths = []
    unreadable: dict[str, str] = {}
    if decode:
        paths = list_images(data_dir / TRAIN_IMAGES)[1] + test_paths
        tiny = InputSpec(channels=3, size=8)
        bad = decode_into(np.empty((len(paths), 3, 8, 8), np.uint8), paths, tiny, workers, reporter)
        unreadable = {str(paths[i]): why for i, why in bad.items()}
    report = check_consistency(table.values)
    return LayoutReport(
        data_dir=data_dir,
        n_labels=len(table.ids),
        n_train_images=len(cat.ids) + cat.n_images_without_label,
        n_labelled_images=len(cat.ids),
        n_test_images=len(test_paths),
        n_missing_cells=table.n_missing,
        consistency=report.describe(table.ids),
        consistent=report.ok,
        labels_without_image=[int(i) for i in cat.ids_without_image],
        unreadable=unreadable,
        decoded=decode,
    )


def split_ids(
    ids: np.ndarray, val_fraction: float, method: ValSplit, seed: int, fold: int = 1
) -> np.ndarray:
    """The validation GalaxyIDs (sorted). ``last``: the highest GalaxyIDs (the winner's split);
    ``random``: a seeded random fraction; ``fold``: block ``fold`` (1-based) of the
    ``round(1 / val_fraction)`` blocks of GalaxyIDs in ascending order, for cross-validation.
    At least one galaxy is left for training."""
    if method == ValSplit.FOLD:
        n_folds = round(1 / val_fraction)
        order = np.argsort(ids, kind="stable")
        block = order[(fold - 1) * len(ids) // n_folds : fold * len(ids) // n_folds]
        return np.sort(ids[block[: len(ids) - 1]])
    n_val = int(math.ceil(len(ids) * val_fraction)) if val_fraction > 0 else 0
    n_val = min(n_val, len(ids) - 1)
    if not n_val:
        return np.empty(0, dtype=np.int64)
    if method == ValSplit.LAST:
        order = np.argsort(ids, kind="stable")
    else:
        order = np.random.default_rng(seed).permutation(len(ids))
    return np.sort(ids[order[len(ids) - n_val :]])
