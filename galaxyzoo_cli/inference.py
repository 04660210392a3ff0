"""Inference: ``evaluate()`` (the Kaggle metric on labelled galaxies) and ``predict()`` (a
submission).

Preprocessing always comes from the run's checkpoint. Images are read through the image cache (or
decoded chunk by chunk with ``use_cache=False``) and predicted in batches, so memory stays bounded
for folders of any size. ``tta`` averages rotated and flipped views
(:func:`galaxyzoo_cli.transforms.tta_views`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from galaxyzoo_cli.data import (
    TEST_IMAGES,
    Catalogue,
    Preprocess,
    format_rows,
    list_images,
    load_catalogue,
)
from galaxyzoo_cli.errors import BadInputError
from galaxyzoo_cli.files import atomic_path, write_json_atomic
from galaxyzoo_cli.progress import SILENT, Reporter
from galaxyzoo_cli.schema import CSV_HEADER

if TYPE_CHECKING:
    import torch

    from galaxyzoo_cli.models import GalaxyModel

SPLITS = ("val", "train", "all")
_CHUNK = 4096


@dataclass
class LoadedRun:
    """A run's model (eval mode, on its device), preprocessing, config and folder."""

    run_dir: Path
    checkpoint: Path
    model: GalaxyModel
    prep: Preprocess
    config: dict[str, Any]


def load_run(run: str | os.PathLike[str], device: torch.device) -> LoadedRun:
    """Open a run folder or checkpoint and rebuild its model on ``device``."""
    from galaxyzoo_cli.runs import load_checkpoint, model_from_checkpoint, read_config, resolve_run

    ref = resolve_run(run)
    ckpt = load_checkpoint(ref.checkpoint)
    model, prep = model_from_checkpoint(ckpt)
    return LoadedRun(ref.run_dir, ref.checkpoint, model.to(device), prep, read_config(ref.run_dir))


def _image_chunks(
    paths: Sequence[Path],
    prep: Preprocess,
    use_cache: bool,
    workers: int | None,
    reporter: Reporter,
) -> Iterator[np.ndarray]:
    """uint8 chunks (n, C, S, S) of the images, in order, bounded in size."""
    from galaxyzoo_cli.cache import load_images

    if use_cache:
        images = load_images(paths, prep, workers=workers, reporter=reporter)
        for s in range(0, len(paths), _CHUNK):
            yield np.array(images[s : s + _CHUNK])  # a writable copy, bounded in size
    else:
        for s in range(0, len(paths), _CHUNK):
            yield load_images(paths[s : s + _CHUNK], prep, workers=workers, use_cache=False)


def predict_images(
    model: GalaxyModel,
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
    import contextlib

    import torch

    from galaxyzoo_cli.transforms import tta_views

    if tta < 1:
        raise BadInputError(f"--tta {tta}: give 1 (no test-time augmentation) or more views.")
    model.eval()
    out = np.empty((n_images, 37), dtype=np.float32)
    autocast: Any = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda" and amp
        else contextlib.nullcontext()
    )
    pos = 0
    with reporter.task("Predicting", n_images) as task, torch.no_grad(), autocast:
        for chunk in images:
            for s in range(0, len(chunk), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(chunk[s : s + batch_size]))
                x = x.to(device, non_blocking=True).float().div_(255.0)
                views = tta_views(x, tta)
                pred = torch.stack([model(v).float() for v in views]).mean(dim=0)
                out[pos : pos + len(x)] = pred.clamp_(0.0, 1.0).cpu().numpy()
                pos += len(x)
                task.advance(len(x))
    return out


# ---------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------


@dataclass
class EvalResult:
    run_dir: Path
    split: str
    tta: int
    scores: dict[str, Any]
    baselines: dict[str, dict[str, Any]]
    seconds: float
    out: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.scores,
            "split": self.split,
            "tta": self.tta,
            "baselines": self.baselines,
            "run_dir": str(self.run_dir),
            "seconds": self.seconds,
        }

    def summary(self) -> str:
        s = self.scores
        lines = [
            f"{self.run_dir} on {s['n_images']} galaxies ({self.split} split, tta {self.tta}): "
            f"Kaggle RMSE {s['rmse']:.5f}  (zeros {self.baselines['zeros']['rmse']:.5f}, "
            f"training mean {self.baselines['training_mean']['rmse']:.5f})",
        ]
        if s["n_missing_cells"]:
            lines.append(f"{s['n_missing_cells']} empty label cells skipped.")
        lines.append(f"{'question':<28}{'rmse':>8}{'accuracy':>10}{'galaxies':>10}")
        from galaxyzoo_cli.schema import QUESTIONS

        for q in QUESTIONS:
            r = s["questions"][f"Q{q.number}"]
            acc = "-" if math.isnan(r["accuracy"]) else f"{r['accuracy']:.3f}"
            rmse = "-" if math.isnan(r["rmse"]) else f"{r['rmse']:.4f}"
            lines.append(f"Q{q.number:<3}{q.text[:24]:<25}{rmse:>8}{acc:>10}{r['n_accuracy']:>10}")
        return "\n".join(lines)


def split_catalogue(cat: Catalogue, config: dict[str, Any], split: str) -> Catalogue:
    """The labelled galaxies of a run's ``val`` or ``train`` split, or ``all`` of them."""
    if split not in SPLITS:
        raise BadInputError(f"--split {split!r}: use one of {', '.join(SPLITS)}.")
    if split == "all":
        return cat
    is_val = np.isin(cat.ids, np.asarray(config["data"]["val_ids"], dtype=np.int64))
    limit = config.get("settings", {}).get("limit")
    if split == "train" and limit:
        is_val[min(int(limit), len(cat)) :] = True  # outside the first N it never trained on
    pick = np.flatnonzero(is_val if split == "val" else ~is_val)
    if not len(pick):
        raise BadInputError(
            f"--split {split}: the run has no {split} galaxies in this data folder. "
            "Use --split all, or the run's data folder."
        )
    return cat.subset(pick)


def predict_catalogue(
    loaded: LoadedRun,
    cat: Catalogue,
    device: torch.device,
    *,
    tta: int = 1,
    use_cache: bool = True,
    workers: int | None = None,
    reporter: Reporter = SILENT,
) -> np.ndarray:
    chunks = _image_chunks(cat.paths, loaded.prep, use_cache, workers, reporter)
    return predict_images(loaded.model, chunks, len(cat), device, tta=tta, reporter=reporter)


def training_means(loaded: LoadedRun, cat: Catalogue) -> np.ndarray:
    """Column means of the run's training labels that are in ``cat`` (the mean baseline)."""
    from galaxyzoo_cli.metrics import column_means

    train = split_catalogue(cat, loaded.config, "train")
    return column_means(train.labels)


def evaluate(
    run: str | os.PathLike[str],
    *,
    data_dir: Path | None = None,
    split: str = "val",
    tta: int = 1,
    device: str = "auto",
    use_cache: bool = True,
    workers: int | None = None,
    write: bool = True,
    reporter: Reporter = SILENT,
) -> EvalResult:
    """Kaggle RMSE, per-question RMSE and accuracy of a run, with the zeros and training-mean
    baselines, on its validation split (or all labelled galaxies). Writes RUN/eval.json."""
    from galaxyzoo_cli.device import resolve_device
    from galaxyzoo_cli.metrics import score

    start = time.perf_counter()
    dev = resolve_device(device)
    reporter.log(f"Device: {dev}")
    loaded = load_run(run, dev)
    data_dir = data_dir or Path(loaded.config["data"]["data_dir"])
    cat = load_catalogue(data_dir)
    means = training_means(loaded, cat)
    subset = split_catalogue(cat, loaded.config, split)
    pred = predict_catalogue(
        loaded, subset, dev, tta=tta, use_cache=use_cache, workers=workers, reporter=reporter
    )
    target = subset.labels
    baselines = {
        "zeros": score(np.zeros_like(target), target).as_dict(),
        "training_mean": score(np.broadcast_to(means, target.shape), target).as_dict(),
    }
    result = EvalResult(
        run_dir=loaded.run_dir,
        split=split,
        tta=tta,
        scores=score(pred, target).as_dict(),
        baselines=baselines,
        seconds=time.perf_counter() - start,
    )
    if write:
        result.out = loaded.run_dir / "eval.json"
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
    extra: dict[str, Any] = field(default_factory=dict)

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
        what = (
            "ensemble of " + str(len(self.runs)) + " runs" if len(self.runs) > 1 else self.runs[0]
        )
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
    ensemble), each with its own preprocessing. The CSV is written to a temporary file and renamed,
    so an interrupted run never leaves a half-written submission at ``out``.
    """
    from galaxyzoo_cli.device import resolve_device

    if not runs:
        raise BadInputError("give at least one RUN (a run folder or checkpoint).")
    start = time.perf_counter()
    dev = resolve_device(device)
    reporter.log(f"Device: {dev}")
    loaded_runs = [load_run(r, dev) for r in runs]  # fail fast on a bad RUN
    folder = images or (data_dir or Path("data")) / TEST_IMAGES
    ids, paths = list_images(folder)
    if not len(ids):
        raise BadInputError(f"{folder}: no images (<GalaxyID>.jpg) to predict.")
    out = out or loaded_runs[0].run_dir / "submission.csv"
    total = np.zeros((len(ids), 37), dtype=np.float64)
    for loaded in loaded_runs:
        chunks = _image_chunks(paths, loaded.prep, use_cache, workers, reporter)
        total += predict_images(
            loaded.model, chunks, len(ids), dev, tta=tta, batch_size=batch_size, reporter=reporter
        )
        del loaded.model
    mean = np.clip(total / len(loaded_runs), 0.0, 1.0)
    with atomic_path(out, suffix=".csv") as tmp, tmp.open("w", encoding="utf-8") as f:
        f.write(",".join(CSV_HEADER) + "\n")
        for s in range(0, len(ids), _CHUNK):
            f.write("\n".join(format_rows(ids[s : s + _CHUNK], mean[s : s + _CHUNK])) + "\n")
    seconds = time.perf_counter() - start
    return PredictResult(
        out=out,
        runs=[str(r.run_dir) for r in loaded_runs],
        n_images=len(ids),
        tta=tta,
        seconds=seconds,
        images_per_second=len(ids) / max(seconds, 1e-9),
    )
