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

from galaxyzoo_cli.cache import load_images
from galaxyzoo_cli.data import TEST_IMAGES, Catalogue, list_images, load_catalogue, write_labels
from galaxyzoo_cli.device import autocast, choose_device, to_float
from galaxyzoo_cli.errors import BadInputError
from galaxyzoo_cli.files import write_json_atomic
from galaxyzoo_cli.images import InputSpec
from galaxyzoo_cli.metrics import column_means, score
from galaxyzoo_cli.models import GalaxyModel
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
) -> Iterator[np.ndarray]:
    """uint8 chunks (n, C, S, S) of the images, in order, bounded in size."""
    if use_cache:
        images = load_images(paths, spec, workers=workers, reporter=reporter)
        for s in range(0, len(paths), _CHUNK):
            yield np.array(images[s : s + _CHUNK])  # a writable copy, bounded in size
    else:
        for s in range(0, len(paths), _CHUNK):
            yield load_images(paths[s : s + _CHUNK], spec, workers=workers, use_cache=False)


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
) -> np.ndarray:
    """A run's predictions (N, 37) for image files, with its own input spec."""
    chunks = _image_chunks(paths, loaded.input, use_cache, workers, reporter)
    return predict_images(
        loaded.model, chunks, len(paths), device, tta=tta, batch_size=batch_size, reporter=reporter
    )


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
    """The galaxies of a run's ``split`` of ``cat`` (at most ``sample`` of them, a seeded
    choice) and the run's predictions for them."""
    ckpt = loaded.checkpoint
    subset = cat.select(split, ckpt.val_ids, ckpt.settings.limit)
    if sample is not None and len(subset) > sample:
        subset = subset.subset(np.sort(np.random.default_rng(0).choice(len(subset), sample, False)))
    pred = predict_paths(
        loaded, subset.paths, device, tta=tta, use_cache=use_cache, workers=workers,
        reporter=reporter,
    )  # fmt: skip
    return subset, pred


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
            "seconds": self.seconds,
            "predictions": None if self.predictions is None else str(self.predictions),
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
        lines.append(f"{'question':<28}{'rmse':>8}{'accuracy':>10}{'galaxies':>10}")
        for q in QUESTIONS:
            r = s["questions"][f"Q{q.number}"]
            acc = "-" if math.isnan(r["accuracy"]) else f"{r['accuracy']:.3f}"
            rmse = "-" if math.isnan(r["rmse"]) else f"{r['rmse']:.4f}"
            lines.append(f"Q{q.number:<3}{q.text[:24]:<25}{rmse:>8}{acc:>10}{r['n_accuracy']:>10}")
        if self.predictions is not None:
            lines.append(f"Predictions: {self.predictions}")
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
    predictions: Path | None = None,
    reporter: Reporter = SILENT,
) -> EvalResult:
    """Kaggle RMSE, per-question RMSE and accuracy of a run (or of several averaged, an
    ensemble, as :func:`predict` averages them), with the zeros and training-mean baselines, on
    its validation split (or its training galaxies, or all labelled galaxies), with ``tta``
    views. Writes RUN/eval.json (of the first run) and, if asked, the ``predictions`` as a
    Kaggle-format CSV (for stacking and figures)."""
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
    cat = load_catalogue(_run_data_dir(first, data_dir))
    means = column_means(cat.select(EvalSplit.TRAIN, first.val_ids, first.settings.limit).labels)
    subset = cat.select(split, first.val_ids, first.settings.limit)
    pred = np.zeros((len(subset), N_OUTPUTS), dtype=np.float64)
    for run in loaded:
        pred += predict_paths(
            run, subset.paths, dev, tta=tta, use_cache=use_cache, workers=workers,
            reporter=reporter,
        )  # fmt: skip
    pred /= len(loaded)
    target = subset.labels
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
    )
    if predictions is not None:
        result.predictions = write_labels(predictions, subset.ids, pred)
    if write:
        result.out = loaded[0].run_dir / ("eval.json" if len(loaded) == 1 else "eval-ensemble.json")
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

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "runs": self.runs,
            "n_images": self.n_images,
            "tta": self.tta,
            "seconds": self.seconds,
            "images_per_second": self.images_per_second,
        }

    def summary(self) -> str:
        what = f"ensemble of {len(self.runs)} runs" if len(self.runs) > 1 else self.runs[0]
        return (
            f"Wrote {self.out}: {self.n_images} galaxies × 37 answers ({what}, tta {self.tta}) "
            f"in {self.seconds:.1f} s ({self.images_per_second:.0f} images/s)"
        )


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
    reporter: Reporter = SILENT,
) -> PredictResult:
    """Write a Kaggle submission: GalaxyID + 37 columns, one row per image, sorted by GalaxyID.

    Images come from ``images`` or ``data_dir/images_test_rev1``. Several runs are averaged (an
    ensemble), each with its own input spec. The CSV is written to a temporary file and renamed,
    so an interrupted run never leaves a half-written submission at ``out``.
    """
    if not runs:
        raise BadInputError("give at least one RUN (a run folder or checkpoint).")
    start = time.perf_counter()
    dev = choose_device(device, reporter)
    loaded_runs = [load_run(r, dev) for r in runs]  # fail fast on a bad RUN
    folder = images or (data_dir or Path("data")) / TEST_IMAGES
    ids, paths = list_images(folder)
    if not len(ids):
        raise BadInputError(f"{folder}: no images (<GalaxyID>.jpg) to predict.")
    out = out or loaded_runs[0].run_dir / "submission.csv"
    total = np.zeros((len(ids), N_OUTPUTS), dtype=np.float64)
    for loaded in loaded_runs:
        total += predict_paths(
            loaded, paths, dev, tta=tta, batch_size=batch_size, use_cache=use_cache,
            workers=workers, reporter=reporter,
        )  # fmt: skip
        del loaded.model
    write_labels(out, ids, np.clip(total / len(loaded_runs), 0.0, 1.0))
    seconds = time.perf_counter() - start
    return PredictResult(
        out=out,
        runs=[str(r.run_dir) for r in loaded_runs],
        n_images=len(ids),
        tta=tta,
        seconds=seconds,
        images_per_second=len(ids) / max(seconds, 1e-9),
    )
