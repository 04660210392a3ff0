"""A user's own labels: the CSV ``finetune`` learns from, the task it implies, and its split.

The file has an ``id`` column (the image file stem, as ``predict --images`` names the rows; a
Kaggle ``GalaxyID`` column counts as one) or a ``path`` column (relative to the CSV's folder, or
absolute), and label columns. Each column's values decide its kind (:func:`infer_task`); empty
cells are missing labels. Every problem is one :class:`BadInputError` line naming the file, the
column and the fix.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.core.tasks import Target, Task, TaskKind
from galaxyzoo_cli.data.cutouts import check_unique_ids, file_stem, find_cutouts

ID_COLUMNS = ("id", "GalaxyID")
MAX_CLASSES = 50
"""More distinct values than this in a text or integer column is not a set of classes."""


@dataclass
class LabelFile:
    """The rows of a labels CSV: each row's id, its image path when the file names one, and the
    raw cells of the label columns."""

    path: Path
    ids: list[str]
    paths: list[Path] | None
    cells: dict[str, list[str]]
    """Label column → its cells, stripped ('' = missing)."""


def read_label_file(path: Path, columns: Sequence[str] = ()) -> LabelFile:
    """Read a labels CSV; ``columns`` picks the label columns (default: every column but the id
    and path columns)."""
    flag = f"--labels {path}"
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise BadInputError(f"{flag}: file not found.") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise BadInputError(f"{flag}: not a readable CSV ({e}).") from None
    if len(rows) < 2:
        raise BadInputError(f"{flag}: needs a header and one row per labelled galaxy.")
    header = [h.strip() for h in rows[0]]
    id_col = next((c for c in ID_COLUMNS if c in header), None)
    if id_col is None and "path" not in header:
        raise BadInputError(
            f"{flag}: needs an id column (the image file stem) or a path column, plus label "
            f"columns; its header is {', '.join(header)}."
        )
    keys = {c for c in (id_col, "path") if c is not None}
    chosen = list(columns) or [h for h in header if h not in keys and h]
    unknown = [c for c in chosen if c not in header]
    if unknown:
        raise BadInputError(
            f"--column {unknown[0]}: {path} has no such column (it has {', '.join(header)})."
        )
    if not chosen:
        raise BadInputError(f"{flag}: no label column besides {', '.join(sorted(keys))}.")
    width = len(header)
    body = [r + [""] * (width - len(r)) for r in rows[1:] if any(c.strip() for c in r)]
    col = {h: i for i, h in enumerate(header)}
    paths = None
    if "path" in header:
        paths = [Path(r[col["path"]].strip()) for r in body]
        paths = [p if p.is_absolute() else path.parent / p for p in paths]
    ids = [r[col[id_col]].strip() for r in body] if id_col else _path_ids(paths or [])
    check_unique_ids(ids, flag, "Give each galaxy one row.")
    return LabelFile(path, ids, paths, {c: [r[col[c]].strip() for r in body] for c in chosen})


def _path_ids(paths: list[Path]) -> list[str]:
    """Ids for a ``path`` column: the file names without their image suffix, as ``predict
    --images`` names its rows (any other suffix dropped too)."""
    return [stem if (stem := file_stem(Path(p.name))) != p.name else p.stem for p in paths]


# ---------------------------------------------------------------------------------------------
# The task a file implies, and its values
# ---------------------------------------------------------------------------------------------


def _number(cell: str) -> float | None:
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _column_target(labels: LabelFile, name: str) -> Target:
    """The kind of one column: 0/1 or two values → binary; a few integers or texts →
    multi-class; floats in [0, 1] → a fraction."""
    where = f"--labels {labels.path}, column {name}"
    cells = [c for c in labels.cells[name] if c]
    if not cells:
        raise BadInputError(f"{where}: no labels (every cell is empty). Drop it with --column.")
    numbers = [_number(c) for c in cells]
    texts = [c for c, n in zip(cells, numbers, strict=True) if n is None]
    if texts and len(texts) < len(cells):
        number = next(c for c, n in zip(cells, numbers, strict=True) if n is not None)
        raise BadInputError(
            f"{where}: mixed types: numbers (e.g. {number!r}) and text (e.g. {texts[0]!r}). "
            "Use one kind of value per column."
        )
    if texts:
        classes = sorted(set(cells))
    else:
        values = sorted({float(n) for n in numbers if n is not None})
        if not all(v.is_integer() for v in values) and len(values) > 1:
            if values[0] < 0 or values[-1] > 1:
                raise BadInputError(
                    f"{where}: real values outside [0, 1] ({values[0]:g} to {values[-1]:g}); "
                    "regression is on fractions: scale the column to [0, 1], or give classes."
                )
            return Target(name, TaskKind.FRACTIONS, (name,))
        classes = [f"{v:g}" for v in values]
    if len(classes) < 2:
        raise BadInputError(
            f"{where}: one class only ({classes[0]!r} in all {len(cells)} labelled rows): "
            "nothing to learn. Add galaxies of the other class(es), or drop it with --column."
        )
    if len(classes) > MAX_CLASSES:
        raise BadInputError(
            f"{where}: {len(classes)} distinct values, too many for classes (at most "
            f"{MAX_CLASSES}); for a regression give fractions in [0, 1]."
        )
    kind = TaskKind.BINARY if len(classes) == 2 else TaskKind.MULTICLASS
    return Target(name, kind, (name,), tuple(classes))


def infer_task(labels: LabelFile) -> Task:
    """The task of a label file: one target per classification column, and one regression
    target for all its fraction columns together (in file order, the regression last)."""
    targets = [_column_target(labels, c) for c in labels.cells]
    classes = [t for t in targets if t.kind != TaskKind.FRACTIONS]
    fractions = tuple(c for t in targets if t.kind == TaskKind.FRACTIONS for c in t.columns)
    if len(fractions) > 1:
        classes.append(Target("fractions", TaskKind.FRACTIONS, fractions))
    elif fractions:
        classes.append(Target(fractions[0], TaskKind.FRACTIONS, fractions))
    return Task(tuple(classes))


def encode(labels: LabelFile, task: Task) -> np.ndarray:
    """The label matrix (N, labels) of a file for ``task`` (its classes fixed: a value the task
    does not know is an error), float32 with NaN for missing cells."""
    out = np.full((len(labels.ids), len(task.label_columns)), np.nan, dtype=np.float32)
    for t, _, k in task.slices():
        for j, name in enumerate(t.columns):
            if name not in labels.cells:
                raise BadInputError(
                    f"--labels {labels.path}: no column {name!r}, which this run learned."
                )
            cells = labels.cells[name]
            for i, cell in enumerate(cells):
                if not cell:
                    continue
                if t.kind == TaskKind.FRACTIONS:
                    value = _number(cell)
                    if value is None or not 0 <= value <= 1:
                        raise BadInputError(
                            f"--labels {labels.path} line {i + 2}, column {name}: {cell!r} is "
                            "not a fraction in [0, 1]."
                        )
                    out[i, k.start + j] = value
                    continue
                key = cell if _number(cell) is None else f"{_number(cell):g}"
                if key not in t.classes:
                    raise BadInputError(
                        f"--labels {labels.path} line {i + 2}, column {name}: {cell!r} is not "
                        f"one of the classes {', '.join(t.classes)}."
                    )
                out[i, k.start] = t.classes.index(key)
    return out


# ---------------------------------------------------------------------------------------------
# Images of the labelled galaxies, and the validation split
# ---------------------------------------------------------------------------------------------


def match_images(labels: LabelFile, images: Path | None) -> tuple[list[Path | None], str]:
    """Each row's image file (None: no image found) and where they come from: the ``path``
    column, else the file in ``images`` whose stem is the row's id."""
    if labels.paths is not None:
        return [p if p.is_file() else None for p in labels.paths], str(labels.path.resolve())
    if images is None:
        raise BadInputError(
            f"--labels {labels.path} names images by id: give the folder with --images DIR "
            "(or give the files in a path column)."
        )
    found = find_cutouts(images)
    by_id = dict(zip(found.ids, found.paths, strict=True))
    return [by_id.get(i) for i in labels.ids], str(images.resolve())


def stratified_split(
    task: Task, y: np.ndarray, val_fraction: float, seed: int, where: str
) -> np.ndarray:
    """Row positions of the validation split: ``val_fraction`` of each class of the first
    classification target (every class at least once), a seeded random share for fractions.
    Too few labels of a class to split is an error naming it."""
    rng = np.random.default_rng(seed)
    n = len(y)
    if val_fraction <= 0:
        return np.empty(0, dtype=np.int64)
    first = next(((t, k) for t, _, k in task.slices() if t.kind != TaskKind.FRACTIONS), None)
    if first is None:
        n_val = min(n - 1, max(1, round(n * val_fraction)))
        return np.sort(rng.permutation(n)[:n_val])
    target, k = first
    strata = y[:, k.start]
    val = []
    for c, name in enumerate(target.classes):
        rows = np.flatnonzero(strata == c)
        if len(rows) < 2:
            raise BadInputError(
                f"{where}, column {target.name}: class {name!r} has {len(rows)} label"
                f"{'s' if len(rows) != 1 else ''}; splitting needs at least 2 per class (one to "
                "train on, one to validate). Label more of them, or give --val-fraction 0."
            )
        n_val = min(len(rows) - 1, max(1, round(len(rows) * val_fraction)))
        val.append(rng.permutation(rows)[:n_val])
    unlabelled = np.flatnonzero(np.isnan(strata))
    if len(unlabelled):
        val.append(rng.permutation(unlabelled)[: round(len(unlabelled) * val_fraction)])
    return np.sort(np.concatenate(val))
