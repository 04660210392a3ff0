"""``galaxyzoo plot``: the figures of one or several runs, written as PNGs with their provenance;
and what the figures of a run are drawn from (:func:`collect_runs`, shared with ``report``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from galaxyzoo_cli.core import provenance
from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.core.metrics import question_scores
from galaxyzoo_cli.core.progress import SILENT, Reporter
from galaxyzoo_cli.core.settings import EvalSplit
from galaxyzoo_cli.data.catalogue import Catalogue, load_catalogue
from galaxyzoo_cli.outputs.drawing import (
    Predicted,
    RunData,
    accuracy_figure,
    compare_figure,
    gallery_figure,
    loss_figure,
    save_figure,
    scatter_figure,
)
from galaxyzoo_cli.training.run_folder import RunRef, resolve_runs

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

_TRAIN_SAMPLE = 2000
"""At most this many training galaxies are predicted for the training accuracy (seeded sample)."""


@dataclass(frozen=True)
class PlotResult:
    """What :func:`plot_runs` wrote (every PNG, in order) and which figures it skipped, and why."""

    paths: list[Path]
    runs: list[Path]
    skipped: list[str]

    def as_dict(self) -> dict[str, object]:
        return {
            "paths": [str(p) for p in self.paths],
            "runs": [str(r) for r in self.runs],
            "skipped": self.skipped,
        }

    def summary(self) -> str:
        return "\n".join(str(p) for p in self.paths)


def plot_runs(
    runs: Sequence[str | os.PathLike[str]],
    *,
    out_dir: Path | None = None,
    data_dir: Path | None = None,
    device: torch.device | None = None,
    use_cache: bool | None = None,
    workers: int | None = None,
    reporter: Reporter = SILENT,
) -> PlotResult:
    """Write the PNG figures of each run, and a comparison when several runs are given.

    Per run: ``loss.png`` (loss and validation RMSE per epoch from metrics.csv, the best epoch of
    the run's summary marked), ``accuracy.png`` (per-question top-answer accuracy, validation vs a
    seeded sample of at most 2,000 training galaxies), ``scatter.png`` (predicted vs true on the
    validation split) and ``gallery.png`` (validation galaxies captioned with true and predicted
    answers). Several runs add ``compare.png`` (validation RMSE curves and per-question RMSE side
    by side). Predictions are computed on ``device`` (default: the CPU).

    Files go into each run's folder, or into ``out_dir`` (created); where several runs share a
    folder, their files are prefixed with the run folder's name. ``compare-<runs>.png`` goes into
    the folder holding the runs, or ``out_dir``. Each PNG records its provenance; in a default
    folder a figure of other inputs is never replaced (the new one gets a new name). Galaxies come
    from ``data_dir``, else the folder the run was trained on. A figure that cannot be drawn (no
    metrics.csv rows; the data folder is missing) is skipped and listed in
    ``PlotResult.skipped``; a run with nothing to plot, a bad RUN or a bad ``data_dir`` raises
    :class:`BadInputError`.
    """
    refs = resolve_runs(runs)  # fail fast on a bad RUN
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise BadInputError(f"--out {out_dir}: is a file. Give a folder for the PNGs.")
    collected = collect_runs(
        refs, data_dir=data_dir, device=device, use_cache=use_cache, workers=workers,
        reporter=reporter,
    )  # fmt: skip
    paths: list[Path] = []
    skipped: list[str] = []
    folders = [out_dir or run.run_dir for run in collected]
    resolved = [f.resolve() for f in folders]

    def save(draw: Callable[[Any], Figure], arg: Any, path: Path, prov: dict[str, Any]) -> None:
        target = provenance.output_path(path, path if out_dir else None, prov, reporter)
        paths.append(save_figure(draw(arg), target, {**prov, "figure": path.stem}))

    for run, folder in zip(collected, folders, strict=True):
        folder.mkdir(parents=True, exist_ok=True)
        # Runs that share a folder (--out, or a run given twice) get their name as a prefix.
        prefix = f"{run.name}-" if resolved.count(folder.resolve()) > 1 else ""
        if run.metrics:
            save(loss_figure, run, folder / f"{prefix}loss.png", run.provenance)
        else:
            skipped.append(f"{run.name}: loss.png (metrics.csv has no rows)")
        if run.val is None:
            skipped.append(
                f"{run.name}: accuracy.png, scatter.png, gallery.png ({run.val_problem})"
            )
        else:
            for figure, draw in (
                ("accuracy", accuracy_figure),
                ("scatter", scatter_figure),
                ("gallery", gallery_figure),
            ):
                save(draw, run, folder / f"{prefix}{figure}.png", run.provenance)
    if len(collected) > 1:
        names = [run.name for run in collected]
        shown = names[:3] + ([f"and-{len(names) - 3}-more"] if len(names) > 3 else [])
        common = Path(os.path.commonpath([r.run_dir.resolve() for r in collected]))
        where = out_dir or (common if common not in resolved else common.parent)
        compare = where / f"compare-{'-'.join(shown)}.png"
        save(compare_figure, collected, compare, runs_provenance("plot", collected))
    for note in skipped:
        reporter.log(f"Skipped {note}.")
    return PlotResult(paths=paths, runs=[r.run_dir for r in collected], skipped=skipped)


# ---------------------------------------------------------------------------------------------
# What the figures are drawn from (plot and report)
# ---------------------------------------------------------------------------------------------


def collect_runs(
    refs: Sequence[RunRef],
    *,
    data_dir: Path | None = None,
    device: torch.device | None = None,
    use_cache: bool | None = None,
    workers: int | None = None,
    reporter: Reporter = SILENT,
) -> list[RunData]:
    """What the figures of each run are drawn from: its record (:func:`read_run`) and its
    predictions (:func:`predict_for_figures`), the runs named uniquely (:func:`_unique_names`).

    A ``data_dir`` that is not a data folder raises :class:`BadInputError`; so does a run with
    nothing to draw (no metrics.csv rows and no galaxies to predict)."""
    import torch

    dev = device or torch.device("cpu")
    catalogues: dict[Path, Catalogue] = {}
    if data_dir is not None:
        catalogues[data_dir] = load_catalogue(data_dir)  # a bad --data-dir is an error, not a skip
    collected = []
    for ref, name in zip(refs, _unique_names([ref.run_dir for ref in refs]), strict=True):
        run = read_run(ref, name, data_dir)
        collected.append(predict_for_figures(run, dev, catalogues, use_cache=use_cache,
                                             workers=workers, reporter=reporter))  # fmt: skip
    return collected


def _unique_names(run_dirs: Sequence[Path]) -> list[str]:
    """Run folder names, with ``-2``, ``-3``… added to repeats so that file names never collide."""
    names: list[str] = []
    for run_dir in run_dirs:
        base = run_dir.resolve().name
        name, repeat = base, 1
        while name in names:
            repeat += 1
            name = f"{base}-{repeat}"
        names.append(name)
    return names


def runs_provenance(command: str, runs: Sequence[RunData]) -> dict[str, Any]:
    """The provenance of a result drawn from several runs: each run's checkpoint and data."""
    return provenance.record(
        command, [entry for run in runs for entry in run.provenance["runs"]],
        data_dirs=[run.provenance["data_dir"] for run in runs],
    )  # fmt: skip


def read_run(ref: RunRef, name: str, data_dir: Path | None = None) -> RunData:
    """A run's record, without predictions: its checkpoint's settings (no model is built), its
    metrics.csv rows and its summary (the best epoch,
    :func:`galaxyzoo_cli.core.summary.read_summary`).
    ``data_dir``: the folder its galaxies are to be read from (None: the one it was trained on)."""
    from galaxyzoo_cli.core.summary import read_summary
    from galaxyzoo_cli.training.run_folder import load_checkpoint, read_metrics

    ckpt = load_checkpoint(ref.checkpoint)
    folder = data_dir or ckpt.data_dir
    prov = provenance.record(
        "plot", [provenance.run_entry(ckpt.run_dir, ckpt.path)],
        data_dir=None if folder is None else str(folder.resolve()), split=EvalSplit.VAL.value,
    )  # fmt: skip
    return RunData(
        name,
        ckpt.run_dir,
        ckpt.settings.loss.value,
        read_metrics(ckpt.run_dir),
        None,
        None,
        prov,
        val_problem="not predicted",
        input=ckpt.model.input,
        model=ckpt.model.name,
        summary=read_summary(ckpt.run_dir),
        checkpoint=ckpt,
        data_dir=folder,
    )


def predict_for_figures(
    run: RunData,
    dev: torch.device,
    catalogues: dict[Path, Catalogue],
    *,
    use_cache: bool | None = None,
    workers: int | None = None,
    reporter: Reporter = SILENT,
) -> RunData:
    """``run`` (from :func:`read_run`) with its validation galaxies and a seeded sample of its
    training galaxies predicted on ``dev``, and its training labels' means (the mean baseline).

    Where that cannot be done (a run of a user's task; no data folder, or one without the run's
    validation galaxies), ``run`` is returned with the reason in ``val_problem``, or, when it has
    no metrics.csv rows either (nothing to draw at all), :class:`BadInputError` is raised.
    ``catalogues`` keeps the data folders read, for the next run."""
    from galaxyzoo_cli.core.metrics import column_means
    from galaxyzoo_cli.inference.loading import load_run, split_predictions

    ckpt = run.checkpoint
    assert ckpt is not None, "predict_for_figures needs a run from read_run"
    if not ckpt.model.task.is_tree:
        if not run.metrics:
            raise BadInputError(f"{run.run_dir}: nothing to plot: metrics.csv has no rows.")
        return replace(run, val_problem=(
            f"they show the 37 Kaggle answers; this run learned its own labels "
            f"({ckpt.model.task.describe()}): see `galaxyzoo evaluate {run.run_dir}`"
        ))  # fmt: skip
    try:
        folder = run.data_dir
        if folder is None:
            raise BadInputError("the checkpoint names no data folder. Pass --data-dir.")
        if folder not in catalogues:
            catalogues[folder] = load_catalogue(folder)
        cat = catalogues[folder]
        if not np.isin(ckpt.val_ids, cat.ids).any():
            raise BadInputError(
                f"{folder}: holds none of the run's validation galaxies. "
                "Pass --data-dir with the folder the run was trained on."
            )
    except BadInputError as e:
        if not run.metrics:
            raise BadInputError(
                f"{run.run_dir}: nothing to plot: metrics.csv has no rows and {e}"
            ) from None
        return replace(run, val_problem=str(e))
    loaded = load_run(ckpt.path, dev)

    def predicted(split: EvalSplit, sample: int | None = None) -> Predicted | None:
        try:
            subset, pred = split_predictions(
                loaded, cat, split, dev, sample=sample, use_cache=use_cache, workers=workers,
                reporter=reporter,
            )  # fmt: skip
        except BadInputError:
            return None  # every galaxy of this folder was validation: show validation only
        return Predicted(subset, pred, question_scores(pred, subset.labels))

    try:
        train = cat.select(EvalSplit.TRAIN, ckpt.val_ids, ckpt.settings.limit)
        means: np.ndarray | None = column_means(train.labels)
    except BadInputError:
        means = None  # every galaxy of this folder was validation
    return replace(
        run,
        val=predicted(EvalSplit.VAL),
        train=predicted(EvalSplit.TRAIN, _TRAIN_SAMPLE),
        val_problem="",
        training_means=means,
    )
