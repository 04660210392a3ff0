"""Evaluation: :func:`evaluate` (the Kaggle metric on labelled galaxies, with baselines) and
:func:`evaluate_labels` (a run finetuned on a user's labels, scored on them)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from galaxyzoo_cli.core import provenance
from galaxyzoo_cli.core.errors import BadInputError, require_runs
from galaxyzoo_cli.core.files import write_json_atomic
from galaxyzoo_cli.core.metrics import ACCURACY_NOTE, column_means, score
from galaxyzoo_cli.core.progress import SILENT, Reporter
from galaxyzoo_cli.core.schema import COLUMNS, N_OUTPUTS, QUESTIONS, Learned
from galaxyzoo_cli.core.settings import EvalSplit, EvaluateSettings
from galaxyzoo_cli.core.tasks import Task, TaskKind, headline, task_scores
from galaxyzoo_cli.data.catalogue import Skipped, load_catalogue, write_labels
from galaxyzoo_cli.data.labels import encode, match_images, read_label_file
from galaxyzoo_cli.inference.loading import (
    LoadedRun,
    images_within,
    learned_by_all,
    load_run,
    predict_paths,
    run_data_dir,
    runs_provenance,
)

# ---------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------


def scored_fields(result: Scored) -> dict[str, Any]:
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


def scored_heading(result: Scored, n_images: int) -> str:
    """The start of an evaluation's summary: what was scored, on how many galaxies, how."""
    runs = result.runs
    what = str(runs[0]) if len(runs) == 1 else f"ensemble of {len(runs)} runs"
    return f"{what} on {n_images} galaxies ({result.split} split, tta {result.tta})"


@dataclass(kw_only=True)
class Scored:
    """What every evaluation reports besides its figures: the runs, the split and views, the time,
    what was skipped, the provenance and the files written."""

    runs: list[Path]
    split: str
    tta: int
    seconds: float
    provenance: dict[str, Any]
    skipped: Skipped
    out: Path | None = None
    predictions: Path | None = None


@dataclass(kw_only=True)
class EvalResult(Scored):
    scores: dict[str, Any]
    baselines: dict[str, dict[str, Any]]
    answers: dict[str, dict[str, Any]]
    """Per answer column: the model's RMSE, the training mean's, and whether the model loses."""
    learned: Learned

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
    scored on them instead (:func:`evaluate_labels`; ``data_dir``: its
    images folder).

    ``settings`` (:class:`~galaxyzoo_cli.core.settings.EvaluateSettings`, checked first): with
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
        return evaluate_labels(loaded, dev, settings, reporter=reporter)
    if split != EvalSplit.ALL:
        for other in loaded[1:]:
            if not np.array_equal(other.checkpoint.val_ids, first.val_ids):
                raise BadInputError(
                    f"{other.checkpoint.path}: validated on other galaxies than {first.path}; "
                    "an ensemble is scored on a split they share. Use --split all with a "
                    "labelled folder none of them trained on (--data-dir)."
                )
    folder = run_data_dir(first, data_dir)
    cat = load_catalogue(folder)
    skipped = Skipped()
    skipped.add("missing image", np.intersect1d(cat.ids_without_image, first.val_ids)
                if split == EvalSplit.VAL else cat.ids_without_image)  # fmt: skip
    means = column_means(cat.select(EvalSplit.TRAIN, first.val_ids, first.settings.limit).labels)
    subset = cat.select(split, first.val_ids, first.settings.limit)
    pred = np.zeros((len(subset), N_OUTPUTS), dtype=np.float64)
    universe, rows = images_within(cat, subset, first.settings.limit, loaded[0].input)
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
        "evaluate", runs_provenance(loaded), split=split.value, tta=tta,
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
    return _written(result, loaded, settings, prov, reporter)


# ---------------------------------------------------------------------------------------------
# evaluate: a finetuned run on its labels
# ---------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class LabelEvalResult(Scored):
    """A finetuned run's figures on its labels: per target (ROC AUC, accuracy and confusion for
    classes; RMSE for fractions) and the task's metric."""

    task: Task
    scores: dict[str, dict[str, Any]]
    n_images: int

    @property
    def metric(self) -> float:
        return headline(self.task, self.scores) if self.task.metric != "loss" else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task.as_dict(),
            "metric": self.task.metric,
            "value": None if math.isnan(self.metric) else self.metric,
            "targets": self.scores,
            "n_images": self.n_images,
            "split": self.split,
            "tta": self.tta,
            **scored_fields(self),
        }

    def summary(self) -> str:
        lines = [f"{scored_heading(self, self.n_images)}:"]
        for target in self.task.targets:
            s = self.scores[target.name]
            if target.kind == TaskKind.FRACTIONS:
                lines.append(f"  {target.name}: RMSE {_num(s['rmse'], 4)} on {s['n_galaxies']} "
                             "galaxies")  # fmt: skip
                continue
            auc = f"ROC AUC {_num(s['roc_auc'], 4)}, " if target.kind == TaskKind.BINARY else ""
            lines.append(f"  {target.name}: {auc}accuracy {_num(s['accuracy'], 4)} on "
                         f"{s['n_galaxies']} galaxies")  # fmt: skip
            width = max(len(c) for c in target.classes) + 2
            lines.append("    confusion (rows: true, columns: predicted)")
            lines.append("    " + " " * width + "".join(f"{c:>{width}}" for c in target.classes))
            for c, row in zip(target.classes, s["confusion"], strict=True):
                lines.append("    " + f"{c:>{width}}" + "".join(f"{v:>{width}}" for v in row))
        if self.skipped:
            lines.append(self.skipped.describe() + ".")
        for path in (self.out, self.predictions):
            if path is not None:
                lines.append(f"Wrote {path}")
        return "\n".join(lines)


Result = TypeVar("Result", EvalResult, LabelEvalResult)


def _written(
    result: Result,
    loaded: Sequence[LoadedRun],
    settings: EvaluateSettings,
    prov: dict[str, Any],
    reporter: Reporter,
) -> Result:
    """``result``, written to eval.json (eval-ensemble.json for several runs) in the first run's
    folder or to ``settings.out`` when asked."""
    if settings.write:
        default = loaded[0].run_dir / ("eval.json" if len(loaded) == 1 else "eval-ensemble.json")
        result.out = provenance.output_path(default, settings.out, prov, reporter)
        write_json_atomic(result.out, result.as_dict())
    return result


def evaluate_labels(
    loaded: Sequence[LoadedRun],
    device: torch.device,
    settings: EvaluateSettings,
    *,
    reporter: Reporter = SILENT,
) -> LabelEvalResult:
    """The task's figures of finetuned run(s) (several: averaged) on the labels they learned:
    their validation split (or training rows, or all), the images from ``settings.data_dir`` or
    the folder they were trained on. Written to ``settings.out`` or RUN/eval.json with
    ``settings.write``; ``settings.predictions``: also the predictions as a CSV (the run's output
    columns). Called by :func:`galaxyzoo_cli.inference.evaluate` for runs of a user's task."""
    start = time.perf_counter()
    split, tta = settings.split, settings.tta
    first = loaded[0].checkpoint
    task = first.model.task
    for other in loaded[1:]:
        if other.checkpoint.model.task.targets != task.targets or other.checkpoint.labels != (
            first.labels
        ):
            raise BadInputError(
                f"{other.checkpoint.path}: learned other labels than {first.path}; an ensemble "
                "averages runs of one task on one labels file."
            )
    if first.labels is None:
        raise BadInputError(f"{first.path}: names no labels file; it is not a finetuned run.")
    table = read_label_file(first.labels, task.label_columns)
    y_all = encode(table, task)
    folder = settings.data_dir or first.data_dir
    paths, source = match_images(table, folder)
    is_val = np.isin(np.array(table.ids), first.val_ids)
    chosen = {EvalSplit.VAL: is_val, EvalSplit.TRAIN: ~is_val}.get(split, np.ones_like(is_val))
    skipped = Skipped()
    skipped.add("missing image", [table.ids[i] for i in np.flatnonzero(chosen) if paths[i] is None])
    rows = np.array([i for i in np.flatnonzero(chosen) if paths[i] is not None], dtype=np.int64)
    files = [p for p in (paths[i] for i in rows) if p is not None]
    pred = np.zeros((len(rows), task.n_outputs))
    for run in loaded:
        pred += predict_paths(
            run, files, device, tta=tta, use_cache=settings.cache, workers=settings.workers,
            reporter=reporter,
        ).values  # fmt: skip
    pred /= len(loaded)
    readable = ~np.isnan(pred).any(axis=1)
    skipped.add("unreadable image", [table.ids[i] for i in rows[~readable]])
    skipped.enforce(settings.strict, f"--labels {first.labels}", reporter)
    rows, pred = rows[readable], pred[readable]
    prov = provenance.record(
        "evaluate", [provenance.run_entry(r.run_dir, r.checkpoint.path) for r in loaded],
        split=split.value, tta=tta, labels=str(first.labels), images=source, n_images=len(rows),
    )  # fmt: skip
    result = LabelEvalResult(
        runs=[r.run_dir for r in loaded], split=split.value, tta=tta, task=task,
        scores=task_scores(task, pred, y_all[rows]), n_images=len(rows),
        seconds=time.perf_counter() - start, provenance=prov, skipped=skipped,
    )  # fmt: skip
    if settings.predictions is not None:
        ids = [table.ids[i] for i in rows]
        result.predictions = write_labels(settings.predictions, ids, pred, id_column="id",
                                          columns=task.output_columns)  # fmt: skip
        provenance.write_sidecar(result.predictions, prov)
    return _written(result, loaded, settings, prov, reporter)
