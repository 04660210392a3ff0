"""``galaxyzoo plot``: the figures of one or several runs, written as PNGs with their provenance."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from galaxyzoo_cli import provenance
from galaxyzoo_cli.data import Catalogue, load_catalogue
from galaxyzoo_cli.errors import BadInputError
from galaxyzoo_cli.figures import (
    Predicted,
    RunData,
    accuracy_figure,
    compare_figure,
    gallery_figure,
    loss_figure,
    save_figure,
    scatter_figure,
)
from galaxyzoo_cli.metrics import question_scores
from galaxyzoo_cli.progress import SILENT, Reporter
from galaxyzoo_cli.settings import EvalSplit

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
    device: str = "auto",
    use_cache: bool | None = None,
    workers: int | None = None,
    reporter: Reporter = SILENT,
) -> PlotResult:
    """Write the PNG figures of each run, and a comparison when several runs are given.

    Per run: ``loss.png`` (loss and validation RMSE per epoch from metrics.csv, best epoch marked),
    ``accuracy.png`` (per-question top-answer accuracy, validation vs a seeded sample of at most
    2,000 training galaxies), ``scatter.png`` (predicted vs true on the validation split) and
    ``gallery.png`` (validation galaxies captioned with true and predicted answers). Several runs
    add ``compare.png`` (validation RMSE curves and per-question RMSE side by side).

    Files go into each run's folder, or into ``out_dir`` (created); where several runs share a
    folder, their files are prefixed with the run folder's name. ``compare-<runs>.png`` goes into
    the folder holding the runs, or ``out_dir``. Each PNG records its provenance; in a default
    folder a figure of other inputs is never replaced (the new one gets a new name). Galaxies come
    from ``data_dir``, else the folder the run was trained on. A figure that cannot be drawn (no
    metrics.csv rows; the data folder is missing) is skipped and listed in
    ``PlotResult.skipped``; a run with nothing to plot, a bad RUN or a bad ``data_dir`` raises
    :class:`BadInputError`.
    """
    from galaxyzoo_cli.device import choose_device
    from galaxyzoo_cli.runs import resolve_run

    if not runs:
        raise BadInputError("give at least one RUN (a run folder or checkpoint).")
    refs = [resolve_run(r) for r in runs]  # fail fast on a bad RUN
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise BadInputError(f"--out {out_dir}: is a file. Give a folder for the PNGs.")
    dev = choose_device(device, reporter)
    catalogues: dict[Path, Catalogue] = {}
    if data_dir is not None:
        catalogues[data_dir] = load_catalogue(data_dir)  # a bad --data-dir is an error, not a skip
    names = _unique_names([ref.run_dir for ref in refs])
    paths: list[Path] = []
    skipped: list[str] = []
    collected: list[RunData] = []
    folders = [out_dir or ref.run_dir for ref in refs]
    resolved = [f.resolve() for f in folders]

    def save(draw: Callable[[Any], Figure], arg: Any, path: Path, prov: dict[str, Any]) -> None:
        target = provenance.output_path(path, path if out_dir else None, prov, reporter)
        paths.append(save_figure(draw(arg), target, {**prov, "figure": path.stem}))

    for ref, name, folder in zip(refs, names, folders, strict=True):
        run = collect_run(
            ref.checkpoint, name, dev, data_dir, catalogues, use_cache, workers, reporter
        )
        folder.mkdir(parents=True, exist_ok=True)
        # Runs that share a folder (--out, or a run given twice) get their name as a prefix.
        prefix = f"{name}-" if resolved.count(folder.resolve()) > 1 else ""
        if run.metrics:
            save(loss_figure, run, folder / f"{prefix}loss.png", run.provenance)
        else:
            skipped.append(f"{name}: loss.png (metrics.csv has no rows)")
        if run.val is None:
            skipped.append(f"{name}: accuracy.png, scatter.png, gallery.png ({run.val_problem})")
        else:
            for figure, draw in (
                ("accuracy", accuracy_figure),
                ("scatter", scatter_figure),
                ("gallery", gallery_figure),
            ):
                save(draw, run, folder / f"{prefix}{figure}.png", run.provenance)
        collected.append(run)
    if len(collected) > 1:
        shown = names[:3] + ([f"and-{len(names) - 3}-more"] if len(names) > 3 else [])
        common = Path(os.path.commonpath([r.run_dir.resolve() for r in collected]))
        where = out_dir or (common if common not in resolved else common.parent)
        runs_prov = provenance.record(
            "plot", [e for r in collected for e in r.provenance["runs"]],
            data_dirs=[r.provenance["data_dir"] for r in collected],
        )  # fmt: skip
        save(compare_figure, collected, where / f"compare-{'-'.join(shown)}.png", runs_prov)
    for note in skipped:
        reporter.log(f"Skipped {note}.")
    return PlotResult(paths=paths, runs=[r.run_dir for r in collected], skipped=skipped)


def _unique_names(run_dirs: Sequence[Path]) -> list[str]:
    """Run folder names, with ``-2``, ``-3``… added to repeats so that file names never collide."""
    names: list[str] = []
    for run_dir in run_dirs:
        base = run_dir.resolve().name
        name, i = base, 1
        while name in names:
            i += 1
            name = f"{base}-{i}"
        names.append(name)
    return names


def collect_run(
    checkpoint: Path,
    name: str,
    dev: torch.device,
    data_dir: Path | None,
    catalogues: dict[Path, Catalogue],
    use_cache: bool | None,
    workers: int | None,
    reporter: Reporter,
) -> RunData:
    """Load a run, read its metrics and have its validation and (sampled) training galaxies
    predicted."""
    from galaxyzoo_cli.inference import load_run
    from galaxyzoo_cli.runs import read_metrics

    loaded = load_run(checkpoint, dev)
    ckpt = loaded.checkpoint
    metrics = read_metrics(loaded.run_dir)
    loss_name = ckpt.settings.loss.value
    folder = data_dir or ckpt.data_dir
    prov = provenance.record(
        "plot", [provenance.run_entry(loaded.run_dir, ckpt.path)],
        data_dir=None if folder is None else str(folder.resolve()), split=EvalSplit.VAL.value,
    )  # fmt: skip
    try:
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
        if not metrics:
            raise BadInputError(
                f"{loaded.run_dir}: nothing to plot: metrics.csv has no rows and {e}"
            ) from None
        return RunData(name, loaded.run_dir, loss_name, metrics, None, None, prov, str(e),
                       input=ckpt.model.input, model=ckpt.model.name)  # fmt: skip

    def predicted(split: EvalSplit, sample: int | None = None) -> Predicted | None:
        from galaxyzoo_cli.inference import split_predictions

        try:
            subset, pred = split_predictions(
                loaded, cat, split, dev, sample=sample, use_cache=use_cache, workers=workers,
                reporter=reporter,
            )  # fmt: skip
        except BadInputError:
            return None  # every galaxy of this folder was validation: show validation only
        return Predicted(subset, pred, question_scores(pred, subset.labels))

    from galaxyzoo_cli.metrics import column_means

    try:
        train = cat.select(EvalSplit.TRAIN, ckpt.val_ids, ckpt.settings.limit)
        means: np.ndarray | None = column_means(train.labels)
    except BadInputError:
        means = None  # every galaxy of this folder was validation
    return RunData(
        name,
        loaded.run_dir,
        loss_name,
        metrics,
        predicted(EvalSplit.VAL),
        predicted(EvalSplit.TRAIN, _TRAIN_SAMPLE),
        prov,
        input=ckpt.model.input,
        training_means=means,
        model=ckpt.model.name,
    )
