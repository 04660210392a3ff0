"""Prediction: :func:`predict`, a Kaggle submission or a CSV for any folder of cutouts (and
their feature vectors)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from galaxyzoo_cli.core import provenance
from galaxyzoo_cli.core.errors import BadInputError, require_runs
from galaxyzoo_cli.core.files import atomic_path
from galaxyzoo_cli.core.progress import SILENT, Reporter
from galaxyzoo_cli.core.schema import ID_COLUMN, N_OUTPUTS, Learned
from galaxyzoo_cli.core.settings import FitsOptions, PredictSettings
from galaxyzoo_cli.core.signals import stop_on_signals
from galaxyzoo_cli.core.tasks import Task
from galaxyzoo_cli.data.catalogue import TEST_IMAGES, Skipped, list_images, write_labels
from galaxyzoo_cli.data.cutouts import (
    Cutouts,
    DerivedFlags,
    derived_flags,
    find_cutouts,
    is_fits,
    read_catalogue,
)
from galaxyzoo_cli.inference.loading import (
    LoadedRun,
    learned_by_all,
    load_run,
    predict_paths,
    run_data_dir,
    runs_provenance,
)

# ---------------------------------------------------------------------------------------------
# predict
# ---------------------------------------------------------------------------------------------


@dataclass
class PredictResult:
    out: Path
    runs: list[str]
    columns: list[str]
    """The predicted columns: the 37 answers, or a finetuned run's (``spiral``, ``kind=bar``…)."""
    n_images: int
    tta: int
    seconds: float
    images_per_second: float
    skipped: Skipped
    provenance: dict[str, Any]
    learned: Learned
    kaggle: bool
    """A Kaggle submission (37 numbers a row, the prior where never learned), not a science
    output (``id``, the learned answers, the untrained ones empty)."""
    flags: list[str]
    """The derived flag columns written."""
    notes: list[str]
    """What the reader must know about the file (also logged as it is written)."""
    embeddings: Path | None = None

    @property
    def n_columns(self) -> int:
        """Value columns written (answers + flags; catalogue columns not counted)."""
        return len(self.columns) + len(self.flags)

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "runs": self.runs,
            "columns": self.columns,
            "n_images": self.n_images,
            "kaggle_submission": self.kaggle,
            "answer_columns": len(self.columns),
            "empty_columns": [] if self.kaggle else list(self.learned.untrained_columns),
            "flags": self.flags,
            **self.learned.as_dict(),
            "notes": self.notes,
            "tta": self.tta,
            "skipped": self.skipped.as_dict(),
            "embeddings": None if self.embeddings is None else str(self.embeddings),
            "seconds": self.seconds,
            "images_per_second": self.images_per_second,
            "provenance": self.provenance,
        }

    def _columns(self) -> str:
        if len(self.columns) == N_OUTPUTS:
            return f"{N_OUTPUTS} answers"
        return ", ".join(self.columns[:4]) + (", …" if len(self.columns) > 4 else "")

    def summary(self) -> str:
        what = f"ensemble of {len(self.runs)} runs" if len(self.runs) > 1 else self.runs[0]
        answers = self._columns()
        if not self.kaggle and not self.learned.complete:
            answers += f", {len(self.learned.untrained_columns)} of them left empty"
        if self.flags:
            answers = f"{self.n_columns} columns ({answers}, + {len(self.flags)} derived flags)"
        lines = [
            f"Wrote {self.out}: {self.n_images} galaxies × {answers} ({what}, tta {self.tta}) "
            f"in {self.seconds:.1f} s ({self.images_per_second:.0f} images/s)"
        ]
        if self.embeddings is not None:
            lines.append(f"Wrote {self.embeddings}: one feature vector per row of the CSV.")
        if self.skipped:
            lines.append(self.skipped.describe() + "; they are not in the file.")
        return "\n".join(lines)


def _inputs(loaded: LoadedRun, settings: PredictSettings) -> tuple[Cutouts, str]:
    """The images to predict and where they come from (for the provenance)."""
    if settings.catalogue is not None:
        return read_catalogue(settings.catalogue), str(settings.catalogue.resolve())
    if settings.images is not None:
        return find_cutouts(settings.images), str(settings.images.resolve())
    folder = run_data_dir(loaded.checkpoint, settings.data_dir) / TEST_IMAGES
    ids, paths = list_images(folder)
    if not len(ids):
        raise BadInputError(f"{folder}: no images (<GalaxyID>.jpg) to predict.")
    return Cutouts([str(i) for i in ids], paths, kaggle=True), str(folder.resolve())


def _one_task(loaded: Sequence[LoadedRun], given: Path | None, derived: bool) -> Task:
    """The task the runs share; a user's task needs images given, and has no derived flags."""
    task = loaded[0].checkpoint.model.task
    for other in loaded[1:]:
        if other.checkpoint.model.task.targets != task.targets:
            raise BadInputError(
                f"{other.checkpoint.path}: predicts other columns than {loaded[0].checkpoint.path}"
                "; an ensemble averages runs of one task."
            )
    if task.is_tree:
        return task
    run = loaded[0].run_dir
    if given is None:
        raise BadInputError(
            f"{run} predicts its own labels ({task.describe()}): give --images DIR or "
            "--catalogue FILE. A Kaggle submission (the 37 answers) does not apply to it."
        )
    if derived:
        raise BadInputError(
            f"--derived: the flags are read from the 37 Kaggle answers, which {run} does not "
            f"predict (it predicts {', '.join(task.output_columns)}). Drop --derived."
        )
    return task


def _untrained_note(learned: Learned, kaggle: bool) -> str | None:
    if learned.complete:
        return None
    if kaggle:
        return (
            f"The run never had labels for {learned.describe_untrained()}: those columns hold "
            "its prior (the tree's even split), not a measurement; a Kaggle submission needs "
            "37 numbers."
        )
    return (
        f"Left empty: {learned.describe_untrained()}; the run never had labels for them "
        "(its answers there would be a prior, not a measurement)."
    )


@stop_on_signals()
def predict(
    runs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    settings: PredictSettings | None = None,
    *,
    device: torch.device | None = None,
    reporter: Reporter = SILENT,
) -> PredictResult:
    """Predict the 37 answers for a folder of images on ``device`` (default: the CPU) and write
    them as a CSV. ``settings``: :class:`~galaxyzoo_cli.core.settings.PredictSettings` (checked
    first).

    Images: ``images`` (any folder of JPEG, PNG or FITS cutouts, searched recursively, any size),
    else the files of a ``catalogue`` CSV (``id,path`` and columns to pass through), else
    ``images_test_rev1`` of ``data_dir`` or of the folder the first run was trained on.

    That last case, without ``derived``, is a Kaggle submission (``GalaxyID`` + 37 columns,
    sorted by GalaxyID, ``submission.csv``): every column holds a number, the model's prior for
    the questions the run never had labels for (said in a note). Everything else is a science
    output (``predictions.csv``): the first column is ``id`` (the file stem or the catalogue's
    id), the answers of questions never learned are left empty (and named), a catalogue's other
    columns follow the answers unchanged, and ``derived`` adds 0/1 columns ``derived_<flag>``
    (:func:`derived_flags`) for the flags whose questions the runs learned.
    ``embeddings`` writes the feature vectors, one row per CSV row, as ``.npy``.

    Several runs are averaged (an ensemble), each with its own input spec (their embeddings are
    concatenated); a question counts as learned when every run learned it. The CSV goes to
    ``out`` or, by default, the first run's ``submission.csv`` / ``predictions.csv``, a new name
    when that holds a result of other inputs, with its provenance beside it; it is written to a
    temporary file and renamed. Images that cannot be read are skipped and named (``strict``: an
    error).
    """
    start = time.perf_counter()
    settings = settings or PredictSettings()
    settings.check()
    images, catalogue, derived = settings.images, settings.catalogue, settings.derived
    dev = device or torch.device("cpu")
    loaded_runs = [load_run(r, dev) for r in require_runs(runs)]  # fail fast on a bad RUN
    task = _one_task(loaded_runs, images or catalogue, derived)
    cutouts, source = _inputs(loaded_runs[0], settings)
    kaggle = images is None and catalogue is None and not derived
    learned = learned_by_all(loaded_runs)
    fits = (settings.fits or FitsOptions()) if any(is_fits(p) for p in cutouts.paths) else None
    total = np.zeros((len(cutouts.ids), task.n_outputs), dtype=np.float64)
    features = []
    for loaded in loaded_runs:
        pred = predict_paths(
            loaded, cutouts.paths, dev, tta=settings.tta, batch_size=settings.batch_size,
            use_cache=settings.cache, workers=settings.workers,
            embeddings=settings.embeddings is not None, fits=fits, reporter=reporter,
        )  # fmt: skip
        total += pred.values
        if pred.embeddings is not None:
            features.append(pred.embeddings)
    readable = ~np.isnan(total[:, 0])
    keep = np.flatnonzero(readable)
    all_ids: list[int | str] = [int(i) if kaggle else i for i in cutouts.ids]
    skipped = Skipped()
    skipped.add("unreadable image", [all_ids[i] for i in np.flatnonzero(~readable)])
    skipped.enforce(settings.strict, images or catalogue or source, reporter)
    mean = np.clip(total[keep] / len(loaded_runs), 0.0, 1.0)
    extra: dict[str, Sequence[object]] = {
        c: [v[i] for i in keep] for c, v in cutouts.columns.items()
    }
    flags = derived_flags(mean, learned) if derived else DerivedFlags({}, {})
    extra.update({k: list(v) for k, v in flags.columns.items()})
    notes = [n for n in (_untrained_note(learned, kaggle), flags.note()) if n]
    for note in notes:
        reporter.log(note)
    if not kaggle and task.is_tree:
        mean[:, ~learned.mask] = np.nan  # written as empty cells
    ids = [all_ids[i] for i in keep]
    prov = provenance.record(
        "predict", runs_provenance(loaded_runs), tta=settings.tta, images=source,
        n_images=len(keep), derived=derived, fits=None if fits is None else fits.as_dict(),
        kaggle_submission=kaggle, untrained_questions=list(learned.untrained),
        untrained_columns="prior" if kaggle else "empty", flags=list(flags.columns),
    )  # fmt: skip
    default = loaded_runs[0].run_dir / ("submission.csv" if kaggle else "predictions.csv")
    target = provenance.output_path(default, settings.out, prov, reporter)
    write_labels(target, ids, mean, id_column=ID_COLUMN if kaggle else "id", extra=extra,
                 columns=task.output_columns)  # fmt: skip
    provenance.write_sidecar(target, prov)
    vectors = settings.embeddings
    if vectors is not None:
        with atomic_path(vectors, suffix=".npy") as tmp, tmp.open("wb") as f:
            np.save(f, np.concatenate(features, axis=1)[keep])  # a file object: no suffix added
        provenance.write_sidecar(vectors, {**prov, "rows_of": str(target)})
    seconds = time.perf_counter() - start
    return PredictResult(
        out=target,
        runs=[str(r.run_dir) for r in loaded_runs],
        columns=list(task.output_columns),
        n_images=len(keep),
        tta=settings.tta,
        seconds=seconds,
        images_per_second=len(cutouts.ids) / max(seconds, 1e-9),
        skipped=skipped,
        provenance=prov,
        learned=learned,
        kaggle=kaggle,
        flags=list(flags.columns),
        notes=notes,
        embeddings=vectors,
    )
