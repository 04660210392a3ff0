"""Inference: :func:`evaluate` (the Kaggle metric on labelled galaxies), :func:`predict` (a
submission) and the predictions the figures are drawn from.

The input spec always comes from the run's checkpoint. Images are read through the image cache (or
decoded chunk by chunk with ``use_cache=False``) and predicted in batches, so memory stays bounded
for folders of any size. ``tta`` averages rotated and flipped views
(:func:`galaxyzoo_cli.transforms.tta_views`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from galaxyzoo_cli import provenance
from galaxyzoo_cli.cache import (
    LazyPixels,
    cached,
    copy_rows,
    image_size_of,
    load_images,
    rows_of,
    will_cache,
)
from galaxyzoo_cli.cutouts import (
    Cutouts,
    DerivedFlags,
    FitsOptions,
    derived_flags,
    find_cutouts,
    is_fits,
    read_catalogue,
)
from galaxyzoo_cli.data import (
    TEST_IMAGES,
    Catalogue,
    Skipped,
    list_images,
    load_catalogue,
    write_labels,
)
from galaxyzoo_cli.device import autocast, to_float
from galaxyzoo_cli.errors import BadInputError
from galaxyzoo_cli.files import atomic_path, write_json_atomic
from galaxyzoo_cli.images import InputSpec, batch_for
from galaxyzoo_cli.metrics import ACCURACY_NOTE, column_means, score
from galaxyzoo_cli.models.network import GalaxyModel, fuse_for_inference
from galaxyzoo_cli.progress import SILENT, Reporter
from galaxyzoo_cli.run_args import require_runs
from galaxyzoo_cli.runs import Checkpoint, load_checkpoint, resolve_run
from galaxyzoo_cli.schema import COLUMNS, ID_COLUMN, N_OUTPUTS, QUESTIONS, Learned
from galaxyzoo_cli.settings import EvalSplit, EvaluateSettings, PredictSettings
from galaxyzoo_cli.signals import stop_on_signals
from galaxyzoo_cli.tasks import Task
from galaxyzoo_cli.transforms import tta_views

if TYPE_CHECKING:
    from galaxyzoo_cli.finetune import LabelEvalResult

_CHUNK = 4096


@dataclass
class LoadedRun:
    """A run's checkpoint and its model (eval mode, on the chosen device)."""

    checkpoint: Checkpoint
    model: GalaxyModel

    @property
    def run_dir(self) -> Path:
        return self.checkpoint.run_dir

    @property
    def input(self) -> InputSpec:
        return self.checkpoint.model.input

    @property
    def learned(self) -> Learned:
        """The questions the run had labels for (its other answers are the tree's prior)."""
        return self.checkpoint.model.learned


def learned_by_all(loaded: Sequence[LoadedRun]) -> Learned:
    """The questions every run learned: what an ensemble of them answers for."""
    learned = loaded[0].learned
    for run in loaded[1:]:
        learned = learned & run.learned
    return learned


def load_run(run: str | os.PathLike[str], device: torch.device) -> LoadedRun:
    """Open a run folder or checkpoint and rebuild its model on ``device``."""
    ckpt = load_checkpoint(resolve_run(run).checkpoint)
    return LoadedRun(ckpt, fuse_for_inference(ckpt.build_model()).to(device))


def _image_chunks(
    paths: Sequence[Path],
    spec: InputSpec,
    use_cache: bool | None,
    workers: int | None,
    reporter: Reporter,
    unreadable: dict[int, str],
    fits: FitsOptions | None = None,
    rows: np.ndarray | None = None,
) -> Iterator[np.ndarray]:
    """uint8 chunks (n, C, S, S) of images ``rows`` of ``paths`` (all when None), in order,
    bounded in size (4,096 images at 64 px, fewer when larger), from the cache of all of
    ``paths`` or decoded chunk by chunk (see :func:`galaxyzoo_cli.cache.load_images` for when);
    the images that cannot be read are added to ``unreadable`` (numbered among those asked)."""
    chunk = batch_for(spec.size, _CHUNK)
    if will_cache(paths, spec, use_cache):
        decoded = load_images(
            paths, spec, rows=rows, workers=workers, reporter=reporter, use_cache=True, fits=fits
        )
        unreadable.update(decoded.unreadable)
        positions = decoded.positions
        for s in range(0, len(positions), chunk):  # writable copies, bounded in size
            yield copy_rows(decoded.pixels, positions[s : s + chunk])
        return
    if use_cache is None:
        reporter.log("Decoding the images as they are predicted (a cache would be too large).")
    lazy = LazyPixels(list(paths), spec, image_size_of(paths, spec, fits), workers, fits)
    wanted = np.arange(len(paths)) if rows is None else rows
    for s in range(0, len(wanted), chunk):
        part, found = lazy.decode(wanted[s : s + chunk])
        unreadable.update({s + i: why for i, why in found.items()})
        yield part


@dataclass
class Predictions:
    """A run's (or an ensemble's) outputs for N images, in order."""

    values: np.ndarray
    """(N, 37) in [0, 1]; the rows of unreadable images are NaN."""
    unreadable: dict[int, str]
    """Positions of the images that could not be read, with the reason."""
    embeddings: np.ndarray | None = None
    """(N, F) feature vectors, if asked (averaged over the TTA views)."""


@torch.no_grad()
def predict_images(
    model: torch.nn.Module,
    images: Iterator[np.ndarray],
    n_images: int,
    device: torch.device,
    *,
    tta: int = 1,
    batch_size: int = 256,
    amp: bool = True,
    embeddings: bool = False,
    n_outputs: int = N_OUTPUTS,
    reporter: Reporter = SILENT,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions (N, ``n_outputs``: the tree's 37 or a task's columns) float32 in [0, 1] for
    uint8 image chunks, averaging ``tta`` views; with ``embeddings``, also the model's feature
    vectors (N, F), averaged over the views."""
    model.eval()
    out = np.empty((n_images, n_outputs), dtype=np.float32)
    feats: np.ndarray | None = None
    pos = 0
    with reporter.task("Predicting", n_images) as task, autocast(device, amp):
        for chunk in images:
            for s in range(0, len(chunk), batch_size):
                x = to_float(chunk[s : s + batch_size], device)
                views = tta_views(x, tta)
                if embeddings:
                    embed = cast(GalaxyModel, model).embed
                    f = torch.stack([embed(v).float() for v in views]).mean(dim=0)
                    if feats is None:
                        feats = np.empty((n_images, f.shape[1]), dtype=np.float32)
                    feats[pos : pos + len(x)] = f.cpu().numpy()
                pred = torch.stack([model(v).float() for v in views]).mean(dim=0)
                out[pos : pos + len(x)] = pred.clamp_(0.0, 1.0).cpu().numpy()
                pos += len(x)
                task.advance(len(x))
    return out, feats


def predict_paths(
    loaded: LoadedRun,
    paths: Sequence[Path],
    device: torch.device,
    *,
    tta: int = 1,
    batch_size: int | None = None,
    use_cache: bool | None = None,
    workers: int | None = None,
    embeddings: bool = False,
    fits: FitsOptions | None = None,
    reporter: Reporter = SILENT,
    rows: np.ndarray | None = None,
) -> Predictions:
    """A run's predictions for image files ``rows`` of ``paths`` (all when None; ``paths`` is
    the whole folder, whose cache they share), with its own input spec (``batch_size``: 256
    images at 64 px by default, fewer for larger inputs)."""
    unreadable: dict[int, str] = {}
    chunks = _image_chunks(
        paths, loaded.input, use_cache, workers, reporter, unreadable, fits, rows
    )
    n_images = len(paths) if rows is None else len(rows)
    values, feats = predict_images(
        loaded.model, chunks, n_images, device, tta=tta,
        batch_size=batch_size or batch_for(loaded.input.size, 256), embeddings=embeddings,
        n_outputs=loaded.checkpoint.model.task.n_outputs, reporter=reporter,
    )  # fmt: skip
    values[list(unreadable)] = np.nan
    return Predictions(values, unreadable, feats)


def split_predictions(
    loaded: LoadedRun,
    cat: Catalogue,
    split: EvalSplit,
    device: torch.device,
    *,
    sample: int | None = None,
    tta: int = 1,
    use_cache: bool | None = None,
    workers: int | None = None,
    reporter: Reporter = SILENT,
) -> tuple[Catalogue, np.ndarray]:
    """The galaxies of a run's ``split`` of ``cat`` whose images can be read (at most ``sample``
    of them, a seeded choice) and the run's predictions for them."""
    ckpt = loaded.checkpoint
    subset = cat.select(split, ckpt.val_ids, ckpt.settings.limit)
    if sample is not None and len(subset) > sample:
        subset = subset.subset(np.sort(np.random.default_rng(0).choice(len(subset), sample, False)))
    universe, rows = _within(cat, subset, ckpt.settings.limit, loaded.input)
    pred = predict_paths(
        loaded, universe.paths, device, tta=tta, use_cache=use_cache, workers=workers,
        reporter=reporter, rows=rows,
    )  # fmt: skip
    keep = np.setdiff1d(np.arange(len(subset)), list(pred.unreadable))
    return subset.subset(keep), pred.values[keep]


def _within(
    cat: Catalogue, subset: Catalogue, limit: int | None, spec: InputSpec
) -> tuple[Catalogue, np.ndarray | None]:
    """The images a subset is read among, so that every command shares one cache of them: the
    run's images (its first ``limit`` galaxies, unless the whole folder is cached already; or
    all of ``cat``), and the subset's rows."""
    if limit is not None and limit < len(cat) and not cached(cat.paths, spec):
        first = cat.subset(np.arange(limit))
        rows = rows_of(first.ids, subset.ids)
        if rows is not None:
            return first, rows
    rows = rows_of(cat.ids, subset.ids)
    return (cat, rows) if rows is not None else (subset, None)


def _runs_provenance(loaded: Sequence[LoadedRun]) -> list[dict[str, str]]:
    return [provenance.run_entry(r.run_dir, r.checkpoint.path) for r in loaded]


# ---------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------


def scored_fields(result: EvalResult | LabelEvalResult) -> dict[str, Any]:
    """What every evaluation reports besides its figures: the runs, what was skipped, the time,
    the files written and the provenance (JSON-ready)."""
    return {
        "runs": [str(r) for r in result.runs],
        "run_dir": str(result.runs[0]),
        "skipped": result.skipped.as_dict(),
        "seconds": result.seconds,
        "out": None if result.out is None else str(result.out),
        "predictions": None if result.predictions is None else str(result.predictions),
        "provenance": result.provenance,
    }


def scored_heading(result: EvalResult | LabelEvalResult, n_images: int) -> str:
    """The start of an evaluation's summary: what was scored, on how many galaxies, how."""
    runs = result.runs
    what = str(runs[0]) if len(runs) == 1 else f"ensemble of {len(runs)} runs"
    return f"{what} on {n_images} galaxies ({result.split} split, tta {result.tta})"


@dataclass
class EvalResult:
    runs: list[Path]
    split: str
    tta: int
    scores: dict[str, Any]
    baselines: dict[str, dict[str, Any]]
    answers: dict[str, dict[str, Any]]
    """Per answer column: the model's RMSE, the training mean's, and whether the model loses."""
    learned: Learned
    seconds: float
    provenance: dict[str, Any]
    skipped: Skipped
    out: Path | None = None
    predictions: Path | None = None

    @property
    def worse_than_mean(self) -> list[str]:
        """The answer columns where the model's RMSE is above the training mean's."""
        return [c for c, a in self.answers.items() if a["worse_than_mean"]]

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.scores,
            "split": self.split,
            "tta": self.tta,
            "baselines": self.baselines,
            "answers": self.answers,
            "worse_than_mean": self.worse_than_mean,
            **self.learned.as_dict(),
            "accuracy_counts": ACCURACY_NOTE,
            **scored_fields(self),
        }

    def summary(self) -> str:
        s = self.scores
        lines = [
            f"{scored_heading(self, s['n_images'])}: "
            f"Kaggle RMSE {_num(s['rmse'], 5)}  (zeros {_num(self.baselines['zeros']['rmse'], 5)}"
            f", training mean {_num(self.baselines['training_mean']['rmse'], 5)})",
        ]
        if not self.learned.complete:
            lines.append(
                f"Not scored, never learned (no labels in training): "
                f"{self.learned.describe_untrained()}."
            )
        if s["n_missing_cells"]:
            lines.append(f"{s['n_missing_cells']} empty or unscored label cells skipped.")
        if self.skipped:
            lines.append(self.skipped.describe() + ".")
        lines.append(f"{'question':<28}{'rmse':>8}{'accuracy':>10}{'galaxies':>10}")
        for q in QUESTIONS:
            r = s["questions"][f"Q{q.number}"]
            acc = _num(r["accuracy"], 3)
            rmse = _num(r["rmse"], 4) if q.number in self.learned.questions else "untrained"
            lines.append(f"Q{q.number:<3}{q.text[:24]:<25}{rmse:>8}{acc:>10}{r['n_accuracy']:>10}")
        lines.append(f"({ACCURACY_NOTE}.)")
        lines.append(f"{'answer':<12}{'rmse':>8}{'mean':>8}")
        for column, a in self.answers.items():
            if a["rmse"] is None or math.isnan(a["rmse"]):
                continue
            flag = "  worse than the training mean" if a["worse_than_mean"] else ""
            lines.append(
                f"{column:<12}{_num(a['rmse'], 4):>8}{_num(a['training_mean_rmse'], 4):>8}{flag}"
            )
        worse = self.worse_than_mean
        if worse:
            lines.append(
                f"{len(worse)} answer{'s' if len(worse) > 1 else ''} worse than predicting the "
                f"training mean: {', '.join(worse)}."
            )
        for path in (self.out, self.predictions):
            if path is not None:
                lines.append(f"Wrote {path}")
        return "\n".join(lines)


def _num(value: float | None, digits: int) -> str:
    """A figure for people: ``-`` where it is missing."""
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def answer_table(
    model: np.ndarray, mean: np.ndarray, target: np.ndarray
) -> dict[str, dict[str, Any]]:
    """Per answer column: the model's RMSE next to the training mean's (both over the same
    labelled cells; NaN where there are none) and whether the model does worse."""
    counts = (~np.isnan(target)).sum(axis=0)
    return {
        c: {
            "rmse": float(m),
            "training_mean_rmse": float(b),
            "worse_than_mean": bool(m > b),
            "n_cells": int(n),
        }
        for c, m, b, n in zip(COLUMNS, model, mean, counts, strict=True)
    }


def _run_data_dir(ckpt: Checkpoint, data_dir: Path | None) -> Path:
    """``data_dir``, else the folder the run was trained on."""
    folder = data_dir or ckpt.data_dir
    if folder is None:
        raise BadInputError(f"{ckpt.path}: names no data folder. Pass --data-dir.")
    return folder


def evaluate(
    runs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    settings: EvaluateSettings | None = None,
    *,
    device: torch.device | None = None,
    reporter: Reporter = SILENT,
) -> EvalResult | LabelEvalResult:
    """Kaggle RMSE, per-question RMSE and accuracy of a run (or of several averaged, an
    ensemble, as :func:`predict` averages them), with the zeros and training-mean baselines, on
    its validation split (or its training galaxies, or all labelled galaxies), with ``tta``
    views, computed on ``device`` (default: the CPU). A run finetuned on a user's labels is
    scored on them instead (:func:`galaxyzoo_cli.finetune.evaluate_labels`; ``data_dir``: its
    images folder).

    ``settings`` (:class:`~galaxyzoo_cli.settings.EvaluateSettings`, checked first): with
    ``write``, the figures go to ``out`` or, by default, the first run's eval.json (a new name
    when that holds an evaluation of other inputs). ``predictions``: also a Kaggle-format CSV of
    the evaluated galaxies' predictions (for stacking and figures). Galaxies without a readable
    image are skipped and named (``strict``: an error)."""
    start = time.perf_counter()
    settings = settings or EvaluateSettings()
    settings.check()
    split, tta, data_dir = settings.split, settings.tta, settings.data_dir
    dev = device or torch.device("cpu")
    loaded = [load_run(r, dev) for r in require_runs(runs)]
    first = loaded[0].checkpoint
    if not all(r.checkpoint.model.task.is_tree for r in loaded):
        from galaxyzoo_cli.finetune import evaluate_labels

        return evaluate_labels(loaded, dev, settings, reporter=reporter)
    if split != EvalSplit.ALL:
        for other in loaded[1:]:
            if not np.array_equal(other.checkpoint.val_ids, first.val_ids):
                raise BadInputError(
                    f"{other.checkpoint.path}: validated on other galaxies than {first.path}; "
                    "an ensemble is scored on a split they share. Use --split all with a "
                    "labelled folder none of them trained on (--data-dir)."
                )
    folder = _run_data_dir(first, data_dir)
    cat = load_catalogue(folder)
    skipped = Skipped()
    skipped.add("missing image", np.intersect1d(cat.ids_without_image, first.val_ids)
                if split == EvalSplit.VAL else cat.ids_without_image)  # fmt: skip
    means = column_means(cat.select(EvalSplit.TRAIN, first.val_ids, first.settings.limit).labels)
    subset = cat.select(split, first.val_ids, first.settings.limit)
    pred = np.zeros((len(subset), N_OUTPUTS), dtype=np.float64)
    universe, rows = _within(cat, subset, first.settings.limit, loaded[0].input)
    for run in loaded:
        pred += predict_paths(
            run, universe.paths, dev, tta=tta, use_cache=settings.cache, workers=settings.workers,
            reporter=reporter, rows=rows,
        ).values  # fmt: skip
    pred /= len(loaded)
    readable = ~np.isnan(pred[:, 0])
    skipped.add("unreadable image", subset.ids[~readable])
    skipped.enforce(settings.strict, folder, reporter)
    subset, pred = subset.subset(np.flatnonzero(readable)), pred[readable]
    learned = learned_by_all(loaded)
    target = subset.labels.copy()
    target[:, ~learned.mask] = np.nan  # a question never learned is not scored
    pred[:, ~learned.mask] = np.nan  # nor written
    prov = provenance.record(
        "evaluate", _runs_provenance(loaded), split=split.value, tta=tta,
        data_dir=str(folder.resolve()), n_images=len(subset),
        untrained_questions=list(learned.untrained),
    )  # fmt: skip
    model, baseline = score(pred, target), score(np.broadcast_to(means, target.shape), target)
    result = EvalResult(
        runs=[r.run_dir for r in loaded],
        split=split.value,
        tta=tta,
        scores=model.as_dict(),
        baselines={
            "zeros": score(np.zeros_like(target), target).as_dict(),
            "training_mean": baseline.as_dict(),
        },
        answers=answer_table(model.columns, baseline.columns, target),
        learned=learned,
        seconds=time.perf_counter() - start,
        provenance=prov,
        skipped=skipped,
    )
    if settings.predictions is not None:
        result.predictions = write_labels(settings.predictions, subset.ids, pred)
        provenance.write_sidecar(result.predictions, prov)
    if settings.write:
        default = loaded[0].run_dir / ("eval.json" if len(loaded) == 1 else "eval-ensemble.json")
        result.out = provenance.output_path(default, settings.out, prov, reporter)
        write_json_atomic(result.out, result.as_dict())
    return result


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
    folder = _run_data_dir(loaded.checkpoint, settings.data_dir) / TEST_IMAGES
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
    them as a CSV. ``settings``: :class:`~galaxyzoo_cli.settings.PredictSettings` (checked first).

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
        "predict", _runs_provenance(loaded_runs), tta=settings.tta, images=source,
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
