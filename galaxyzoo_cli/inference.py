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
from typing import Any

import numpy as np
import torch

from galaxyzoo_cli import provenance
from galaxyzoo_cli.cache import load_images
from galaxyzoo_cli.data import (
    TEST_IMAGES,
    Catalogue,
    Skipped,
    list_images,
    load_catalogue,
    write_labels,
)
from galaxyzoo_cli.device import autocast, choose_device, to_float
from galaxyzoo_cli.errors import BadInputError
from galaxyzoo_cli.files import write_json_atomic
from galaxyzoo_cli.images import InputSpec
from galaxyzoo_cli.metrics import column_means, score
from galaxyzoo_cli.models.network import GalaxyModel
from galaxyzoo_cli.progress import SILENT, Reporter
from galaxyzoo_cli.runs import Checkpoint, load_checkpoint, resolve_run
from galaxyzoo_cli.schema import N_OUTPUTS, QUESTIONS
from galaxyzoo_cli.settings import EvalSplit, choice
from galaxyzoo_cli.transforms import tta_views

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


def load_run(run: str | os.PathLike[str], device: torch.device) -> LoadedRun:
    """Open a run folder or checkpoint and rebuild its model on ``device``."""
    ckpt = load_checkpoint(resolve_run(run).checkpoint)
    return LoadedRun(ckpt, ckpt.build_model().to(device))


def _image_chunks(
    paths: Sequence[Path],
    spec: InputSpec,
    use_cache: bool,
    workers: int | None,
    reporter: Reporter,
    unreadable: dict[int, str],
) -> Iterator[np.ndarray]:
    """uint8 chunks (n, C, S, S) of the images, in order, bounded in size; the images that
    cannot be read are added to ``unreadable`` (position: reason)."""
    if use_cache:
        decoded = load_images(paths, spec, workers=workers, reporter=reporter)
        unreadable.update(decoded.unreadable)
        for s in range(0, len(paths), _CHUNK):
            yield np.array(decoded.pixels[s : s + _CHUNK])  # a writable copy, bounded in size
    else:
        for s in range(0, len(paths), _CHUNK):
            part = load_images(paths[s : s + _CHUNK], spec, workers=workers, use_cache=False)
            unreadable.update({s + i: why for i, why in part.unreadable.items()})
            yield part.pixels


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
    reporter: Reporter = SILENT,
) -> np.ndarray:
    """Predictions (N, 37) float32 in [0, 1] for uint8 image chunks, averaging ``tta`` views."""
    if tta < 1:
        raise BadInputError(f"--tta {tta}: give 1 (no test-time augmentation) or more views.")
    model.eval()
    out = np.empty((n_images, N_OUTPUTS), dtype=np.float32)
    pos = 0
    with reporter.task("Predicting", n_images) as task, autocast(device, amp):
        for chunk in images:
            for s in range(0, len(chunk), batch_size):
                x = to_float(chunk[s : s + batch_size], device)
                pred = torch.stack([model(v).float() for v in tta_views(x, tta)]).mean(dim=0)
                out[pos : pos + len(x)] = pred.clamp_(0.0, 1.0).cpu().numpy()
                pos += len(x)
                task.advance(len(x))
    return out


def predict_paths(
    loaded: LoadedRun,
    paths: Sequence[Path],
    device: torch.device,
    *,
    tta: int = 1,
    batch_size: int = 256,
    use_cache: bool = True,
    workers: int | None = None,
    reporter: Reporter = SILENT,
) -> tuple[np.ndarray, dict[int, str]]:
    """A run's predictions (N, 37) for image files, with its own input spec, and the images
    that could not be read (position: reason): their rows are NaN."""
    unreadable: dict[int, str] = {}
    chunks = _image_chunks(paths, loaded.input, use_cache, workers, reporter, unreadable)
    pred = predict_images(
        loaded.model, chunks, len(paths), device, tta=tta, batch_size=batch_size, reporter=reporter
    )
    pred[list(unreadable)] = np.nan
    return pred, unreadable


def split_predictions(
    loaded: LoadedRun,
    cat: Catalogue,
    split: EvalSplit,
    device: torch.device,
    *,
    sample: int | None = None,
    tta: int = 1,
    use_cache: bool = True,
    workers: int | None = None,
    reporter: Reporter = SILENT,
) -> tuple[Catalogue, np.ndarray]:
    """The galaxies of a run's ``split`` of ``cat`` whose images can be read (at most ``sample``
    of them, a seeded choice) and the run's predictions for them."""
    ckpt = loaded.checkpoint
    subset = cat.select(split, ckpt.val_ids, ckpt.settings.limit)
    if sample is not None and len(subset) > sample:
        subset = subset.subset(np.sort(np.random.default_rng(0).choice(len(subset), sample, False)))
    pred, unreadable = predict_paths(
        loaded, subset.paths, device, tta=tta, use_cache=use_cache, workers=workers,
        reporter=reporter,
    )  # fmt: skip
    keep = np.setdiff1d(np.arange(len(subset)), list(unreadable))
    return subset.subset(keep), pred[keep]


def _runs_provenance(loaded: Sequence[LoadedRun]) -> list[dict[str, str]]:
    return [provenance.run_entry(r.run_dir, r.checkpoint.path) for r in loaded]


# ---------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------


@dataclass
class EvalResult:
    runs: list[Path]
    split: str
    tta: int
    scores: dict[str, Any]
    baselines: dict[str, dict[str, Any]]
    seconds: float
    provenance: dict[str, Any]
    skipped: Skipped
    out: Path | None = None
    predictions: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.scores,
            "split": self.split,
            "tta": self.tta,
            "baselines": self.baselines,
            "runs": [str(r) for r in self.runs],
            "run_dir": str(self.runs[0]),
            "skipped": self.skipped.as_dict(),
            "seconds": self.seconds,
            "out": None if self.out is None else str(self.out),
            "predictions": None if self.predictions is None else str(self.predictions),
            "provenance": self.provenance,
        }

    def summary(self) -> str:
        s = self.scores
        what = str(self.runs[0]) if len(self.runs) == 1 else f"ensemble of {len(self.runs)} runs"
        lines = [
            f"{what} on {s['n_images']} galaxies ({self.split} split, tta {self.tta}): "
            f"Kaggle RMSE {s['rmse']:.5f}  (zeros {self.baselines['zeros']['rmse']:.5f}, "
            f"training mean {self.baselines['training_mean']['rmse']:.5f})",
        ]
        if s["n_missing_cells"]:
            lines.append(f"{s['n_missing_cells']} empty label cells skipped.")
        if self.skipped:
            lines.append(self.skipped.describe() + ".")
        lines.append(f"{'question':<28}{'rmse':>8}{'accuracy':>10}{'galaxies':>10}")
        for q in QUESTIONS:
            r = s["questions"][f"Q{q.number}"]
            acc = "-" if math.isnan(r["accuracy"]) else f"{r['accuracy']:.3f}"
            rmse = "-" if math.isnan(r["rmse"]) else f"{r['rmse']:.4f}"
            lines.append(f"Q{q.number:<3}{q.text[:24]:<25}{rmse:>8}{acc:>10}{r['n_accuracy']:>10}")
        for path in (self.out, self.predictions):
            if path is not None:
                lines.append(f"Wrote {path}")
        return "\n".join(lines)


def _run_data_dir(ckpt: Checkpoint, data_dir: Path | None) -> Path:
    """``data_dir``, else the folder the run was trained on."""
    folder = data_dir or ckpt.data_dir
    if folder is None:
        raise BadInputError(f"{ckpt.path}: names no data folder. Pass --data-dir.")
    return folder


def _as_list(runs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Any]:
    if isinstance(runs, (str, os.PathLike)):
        return [runs]
    if not runs:
        raise BadInputError("give at least one RUN (a run folder or checkpoint).")
    return list(runs)


def evaluate(
    runs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    data_dir: Path | None = None,
    split: EvalSplit | str = EvalSplit.VAL,
    tta: int = 1,
    device: str = "auto",
    use_cache: bool = True,
    workers: int | None = None,
    write: bool = True,
    out: Path | None = None,
    predictions: Path | None = None,
    strict: bool = False,
    reporter: Reporter = SILENT,
) -> EvalResult:
    """Kaggle RMSE, per-question RMSE and accuracy of a run (or of several averaged, an
    ensemble, as :func:`predict` averages them), with the zeros and training-mean baselines, on
    its validation split (or its training galaxies, or all labelled galaxies), with ``tta``
    views.

    With ``write``, the figures go to ``out`` or, by default, the first run's eval.json (a new
    name when that holds an evaluation of other inputs). ``predictions``: also a Kaggle-format
    CSV of the evaluated galaxies' predictions (for stacking and figures). Galaxies without a
    readable image are skipped and named (``strict``: an error)."""
    start = time.perf_counter()
    split = choice(EvalSplit, split, "--split")
    dev = choose_device(device, reporter)
    loaded = [load_run(r, dev) for r in _as_list(runs)]
    first = loaded[0].checkpoint
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
    for run in loaded:
        values, _ = predict_paths(
            run, subset.paths, dev, tta=tta, use_cache=use_cache, workers=workers,
            reporter=reporter,
        )  # fmt: skip
        pred += values
    pred /= len(loaded)
    readable = ~np.isnan(pred[:, 0])
    skipped.add("unreadable image", subset.ids[~readable])
    skipped.enforce(strict, folder, reporter)
    subset, pred = subset.subset(np.flatnonzero(readable)), pred[readable]
    target = subset.labels
    prov = provenance.record(
        "evaluate", _runs_provenance(loaded), split=split.value, tta=tta,
        data_dir=str(folder.resolve()), n_images=len(subset),
    )  # fmt: skip
    result = EvalResult(
        runs=[r.run_dir for r in loaded],
        split=split.value,
        tta=tta,
        scores=score(pred, target).as_dict(),
        baselines={
            "zeros": score(np.zeros_like(target), target).as_dict(),
            "training_mean": score(np.broadcast_to(means, target.shape), target).as_dict(),
        },
        seconds=time.perf_counter() - start,
        provenance=prov,
        skipped=skipped,
    )
    if predictions is not None:
        result.predictions = write_labels(predictions, subset.ids, pred)
        provenance.write_sidecar(result.predictions, prov)
    if write:
        default = loaded[0].run_dir / ("eval.json" if len(loaded) == 1 else "eval-ensemble.json")
        result.out = provenance.output_path(default, out, prov, reporter)
        write_json_atomic(result.out, result.as_dict())
    return result


# ---------------------------------------------------------------------------------------------
# predict
# ---------------------------------------------------------------------------------------------


@dataclass
class PredictResult:
    out: Path
    runs: list[str]
    n_images: int
    tta: int
    seconds: float
    images_per_second: float
    skipped: Skipped
    provenance: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "runs": self.runs,
            "n_images": self.n_images,
            "tta": self.tta,
            "skipped": self.skipped.as_dict(),
            "seconds": self.seconds,
            "images_per_second": self.images_per_second,
            "provenance": self.provenance,
        }

    def summary(self) -> str:
        what = f"ensemble of {len(self.runs)} runs" if len(self.runs) > 1 else self.runs[0]
        lines = [
            f"Wrote {self.out}: {self.n_images} galaxies × 37 answers ({what}, tta {self.tta}) "
            f"in {self.seconds:.1f} s ({self.images_per_second:.0f} images/s)"
        ]
        if self.skipped:
            lines.append(self.skipped.describe() + "; they are not in the file.")
        return "\n".join(lines)


def predict(
    runs: Sequence[str | os.PathLike[str]],
    *,
    data_dir: Path | None = None,
    images: Path | None = None,
    out: Path | None = None,
    tta: int = 1,
    device: str = "auto",
    batch_size: int = 256,
    use_cache: bool = True,
    workers: int | None = None,
    strict: bool = False,
    reporter: Reporter = SILENT,
) -> PredictResult:
    """Write a Kaggle submission: GalaxyID + 37 columns, one row per image, sorted by GalaxyID.

    Images come from ``images``, else ``images_test_rev1`` of ``data_dir``, else of the folder
    the first run was trained on. Several runs are averaged (an ensemble), each with its own input
    spec. The CSV goes to ``out`` or, by default, the first run's submission.csv (a new name when
    that holds a submission of other inputs), with its provenance beside it; it is written to a
    temporary file and renamed, so an interrupted run never leaves a half-written file. Images
    that cannot be read are skipped and named (``strict``: an error).
    """
    start = time.perf_counter()
    dev = choose_device(device, reporter)
    loaded_runs = [load_run(r, dev) for r in _as_list(runs)]  # fail fast on a bad RUN
    folder = images or _run_data_dir(loaded_runs[0].checkpoint, data_dir) / TEST_IMAGES
    ids, paths = list_images(folder)
    if not len(ids):
        raise BadInputError(f"{folder}: no images (<GalaxyID>.jpg) to predict.")
    total = np.zeros((len(ids), N_OUTPUTS), dtype=np.float64)
    for loaded in loaded_runs:
        values, _ = predict_paths(
            loaded, paths, dev, tta=tta, batch_size=batch_size, use_cache=use_cache,
            workers=workers, reporter=reporter,
        )  # fmt: skip
        total += values
    readable = ~np.isnan(total[:, 0])
    skipped = Skipped()
    skipped.add("unreadable image", ids[~readable])
    skipped.enforce(strict, folder, reporter)
    prov = provenance.record(
        "predict", _runs_provenance(loaded_runs), tta=tta, images=str(folder.resolve()),
        n_images=int(readable.sum()),
    )  # fmt: skip
    target = provenance.output_path(loaded_runs[0].run_dir / "submission.csv", out, prov, reporter)
    mean = np.clip(total[readable] / len(loaded_runs), 0.0, 1.0)
    write_labels(target, ids[readable], mean)
    provenance.write_sidecar(target, prov)
    seconds = time.perf_counter() - start
    return PredictResult(
        out=target,
        runs=[str(r.run_dir) for r in loaded_runs],
        n_images=int(readable.sum()),
        tta=tta,
        seconds=seconds,
        images_per_second=len(ids) / max(seconds, 1e-9),
        skipped=skipped,
        provenance=prov,
    )
