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
from typing import Any, cast

import numpy as np
import torch

from galaxyzoo_cli import provenance
from galaxyzoo_cli.cache import image_size_of, load_images, take_rows, will_cache
from galaxyzoo_cli.cutouts import (
    Cutouts,
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
from galaxyzoo_cli.device import autocast, choose_device, to_float
from galaxyzoo_cli.errors import BadInputError
from galaxyzoo_cli.files import atomic_path, write_json_atomic
from galaxyzoo_cli.images import InputSpec, batch_for, decode_into
from galaxyzoo_cli.metrics import column_means, score
from galaxyzoo_cli.models.network import GalaxyModel, fuse_for_inference
from galaxyzoo_cli.progress import SILENT, Reporter
from galaxyzoo_cli.runs import Checkpoint, load_checkpoint, resolve_run
from galaxyzoo_cli.schema import ID_COLUMN, N_OUTPUTS, QUESTIONS
from galaxyzoo_cli.settings import EvalSplit, choice
from galaxyzoo_cli.signals import stop_on_signals
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
    return LoadedRun(ckpt, fuse_for_inference(ckpt.build_model()).to(device))


def _image_chunks(
    paths: Sequence[Path],
    spec: InputSpec,
    use_cache: bool | None,
    workers: int | None,
    reporter: Reporter,
    unreadable: dict[int, str],
    fits: FitsOptions | None = None,
) -> Iterator[np.ndarray]:
    """uint8 chunks (n, C, S, S) of the images, in order, bounded in size (4,096 images at 64 px,
    fewer when larger), from the cache or decoded chunk by chunk (see
    :func:`galaxyzoo_cli.cache.load_images` for when); the images that cannot be read are added
    to ``unreadable``."""
    chunk = batch_for(spec.size, _CHUNK)
    if will_cache(paths, spec, use_cache):
        decoded = load_images(
            paths, spec, workers=workers, reporter=reporter, use_cache=True, fits=fits
        )
        unreadable.update(decoded.unreadable)
        for s in range(0, len(paths), chunk):  # writable copies, bounded in size
            yield take_rows(decoded.pixels, np.arange(s, min(s + chunk, len(paths))))
        return
    if use_cache is None:
        reporter.log("Decoding the images as they are predicted (a cache would be too large).")
    side = spec.size or image_size_of(paths, spec, fits)
    for s in range(0, len(paths), chunk):
        part = np.empty((len(paths[s : s + chunk]), spec.channels, side, side), np.uint8)
        found = decode_into(part, paths[s : s + chunk], spec, workers, SILENT, fits)
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
    reporter: Reporter = SILENT,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions (N, 37) float32 in [0, 1] for uint8 image chunks, averaging ``tta`` views;
    with ``embeddings``, also the model's feature vectors (N, F), averaged over the views."""
    if tta < 1:
        raise BadInputError(f"--tta {tta}: give 1 (no test-time augmentation) or more views.")
    model.eval()
    out = np.empty((n_images, N_OUTPUTS), dtype=np.float32)
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
) -> Predictions:
    """A run's predictions for image files, with its own input spec (``batch_size``: 256
    images at 64 px by default, fewer for larger inputs)."""
    unreadable: dict[int, str] = {}
    chunks = _image_chunks(paths, loaded.input, use_cache, workers, reporter, unreadable, fits)
    values, feats = predict_images(
        loaded.model, chunks, len(paths), device, tta=tta,
        batch_size=batch_size or batch_for(loaded.input.size, 256), embeddings=embeddings,
        reporter=reporter,
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
    pred = predict_paths(
        loaded, subset.paths, device, tta=tta, use_cache=use_cache, workers=workers,
        reporter=reporter,
    )  # fmt: skip
    keep = np.setdiff1d(np.arange(len(subset)), list(pred.unreadable))
    return subset.subset(keep), pred.values[keep]


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
    use_cache: bool | None = None,
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
        pred += predict_paths(
            run, subset.paths, dev, tta=tta, use_cache=use_cache, workers=workers,
            reporter=reporter,
        ).values  # fmt: skip
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
    embeddings: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "runs": self.runs,
            "n_images": self.n_images,
            "tta": self.tta,
            "skipped": self.skipped.as_dict(),
            "embeddings": None if self.embeddings is None else str(self.embeddings),
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
        if self.embeddings is not None:
            lines.append(f"Wrote {self.embeddings}: one feature vector per row of the CSV.")
        if self.skipped:
            lines.append(self.skipped.describe() + "; they are not in the file.")
        return "\n".join(lines)


def _inputs(
    loaded: LoadedRun, data_dir: Path | None, images: Path | None, catalogue: Path | None
) -> tuple[Cutouts, str]:
    """The images to predict and where they come from (for the provenance)."""
    if images is not None and catalogue is not None:
        raise BadInputError("--images and --catalogue: give one of them.")
    if catalogue is not None:
        return read_catalogue(catalogue), str(catalogue.resolve())
    if images is not None:
        return find_cutouts(images), str(images.resolve())
    folder = _run_data_dir(loaded.checkpoint, data_dir) / TEST_IMAGES
    ids, paths = list_images(folder)
    if not len(ids):
        raise BadInputError(f"{folder}: no images (<GalaxyID>.jpg) to predict.")
    return Cutouts([str(i) for i in ids], paths, kaggle=True), str(folder.resolve())


@stop_on_signals()
def predict(
    runs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    data_dir: Path | None = None,
    images: Path | None = None,
    catalogue: Path | None = None,
    out: Path | None = None,
    tta: int = 1,
    device: str = "auto",
    batch_size: int | None = None,
    use_cache: bool | None = None,
    workers: int | None = None,
    strict: bool = False,
    derived: bool = False,
    embeddings: Path | None = None,
    fits: FitsOptions | None = None,
    reporter: Reporter = SILENT,
) -> PredictResult:
    """Predict the 37 answers for a folder of images and write them as a CSV.

    Images: ``images`` (any folder of JPEG, PNG or FITS cutouts, searched recursively, any size),
    else the files of a ``catalogue`` CSV (``id,path`` and columns to pass through), else
    ``images_test_rev1`` of ``data_dir`` or of the folder the first run was trained on. When
    every file is named ``<GalaxyID>``, the CSV is a Kaggle submission (``GalaxyID`` + 37 columns,
    sorted by GalaxyID); otherwise its first column is ``id`` (the file stem). ``derived`` adds
    0/1 columns (smooth, featured, edge_on, barred, spiral; :func:`derived_flags`);
    ``embeddings`` writes the feature vectors, one row per CSV row, as ``.npy``.

    Several runs are averaged (an ensemble), each with its own input spec (their embeddings are
    concatenated). The CSV goes to ``out`` or, by default, the first run's ``submission.csv``
    (``predictions.csv`` for other cutouts), a new name when that holds a result of other
    inputs, with its provenance beside it; it is written to a temporary file and renamed. Images
    that cannot be read are skipped and named (``strict``: an error).
    """
    start = time.perf_counter()
    dev = choose_device(device, reporter)
    loaded_runs = [load_run(r, dev) for r in _as_list(runs)]  # fail fast on a bad RUN
    cutouts, source = _inputs(loaded_runs[0], data_dir, images, catalogue)
    fits = fits if any(is_fits(p) for p in cutouts.paths) else None
    total = np.zeros((len(cutouts.ids), N_OUTPUTS), dtype=np.float64)
    features = []
    for loaded in loaded_runs:
        pred = predict_paths(
            loaded, cutouts.paths, dev, tta=tta, batch_size=batch_size, use_cache=use_cache,
            workers=workers, embeddings=embeddings is not None, fits=fits, reporter=reporter,
        )  # fmt: skip
        total += pred.values
        if pred.embeddings is not None:
            features.append(pred.embeddings)
    readable = ~np.isnan(total[:, 0])
    keep = np.flatnonzero(readable)
    all_ids: list[int | str] = [int(i) if cutouts.kaggle else i for i in cutouts.ids]
    skipped = Skipped()
    skipped.add("unreadable image", [all_ids[i] for i in np.flatnonzero(~readable)])
    skipped.enforce(strict, images or catalogue or source, reporter)
    mean = np.clip(total[keep] / len(loaded_runs), 0.0, 1.0)
    extra: dict[str, Sequence[object]] = {
        c: [v[i] for i in keep] for c, v in cutouts.columns.items()
    }
    if derived:
        extra.update({k: list(v) for k, v in derived_flags(mean).items()})
    ids = [all_ids[i] for i in keep]
    prov = provenance.record(
        "predict", _runs_provenance(loaded_runs), tta=tta, images=source, n_images=len(keep),
        derived=derived, fits=None if fits is None else fits.as_dict(),
    )  # fmt: skip
    plain = cutouts.kaggle and not extra
    default = loaded_runs[0].run_dir / ("submission.csv" if plain else "predictions.csv")
    target = provenance.output_path(default, out, prov, reporter)
    write_labels(target, ids, mean, id_column=ID_COLUMN if cutouts.kaggle else "id", extra=extra)
    provenance.write_sidecar(target, prov)
    vectors = None
    if embeddings is not None:
        vectors = embeddings
        with atomic_path(vectors, suffix=".npy") as tmp, tmp.open("wb") as f:
            np.save(f, np.concatenate(features, axis=1)[keep])  # a file object: no suffix added
        provenance.write_sidecar(vectors, {**prov, "rows_of": str(target)})
    seconds = time.perf_counter() - start
    return PredictResult(
        out=target,
        runs=[str(r.run_dir) for r in loaded_runs],
        n_images=len(keep),
        tta=tta,
        seconds=seconds,
        images_per_second=len(cutouts.ids) / max(seconds, 1e-9),
        skipped=skipped,
        provenance=prov,
        embeddings=vectors,
    )
