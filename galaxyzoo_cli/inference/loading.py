"""A run loaded for inference and its predictions for image files, in bounded chunks: what
evaluation, prediction and the figures share.

The input spec always comes from the run's checkpoint. Images are read through the image cache (or
decoded chunk by chunk with ``use_cache=False``) and predicted in batches, so memory stays bounded
for folders of any size. ``tta`` averages rotated and flipped views
(:func:`galaxyzoo_cli.data.transforms.tta_views`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch

from galaxyzoo_cli.core import provenance
from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.core.progress import SILENT, Reporter
from galaxyzoo_cli.core.schema import N_OUTPUTS, Learned
from galaxyzoo_cli.core.settings import EvalSplit, FitsOptions
from galaxyzoo_cli.data.cache import (
    LazyPixels,
    cached,
    copy_rows,
    image_size_of,
    load_images,
    rows_of,
    will_cache,
)
from galaxyzoo_cli.data.catalogue import Catalogue
from galaxyzoo_cli.data.images import InputSpec, batch_for
from galaxyzoo_cli.data.transforms import tta_views
from galaxyzoo_cli.models.galaxy_model import GalaxyModel, fuse_for_inference
from galaxyzoo_cli.training.device import autocast, to_float
from galaxyzoo_cli.training.run_folder import Checkpoint, load_checkpoint, resolve_run

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
    ``paths`` or decoded chunk by chunk (see :func:`galaxyzoo_cli.data.cache.load_images` for when);
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
    universe, rows = images_within(cat, subset, ckpt.settings.limit, loaded.input)
    pred = predict_paths(
        loaded, universe.paths, device, tta=tta, use_cache=use_cache, workers=workers,
        reporter=reporter, rows=rows,
    )  # fmt: skip
    keep = np.setdiff1d(np.arange(len(subset)), list(pred.unreadable))
    return subset.subset(keep), pred.values[keep]


def images_within(
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


def runs_provenance(loaded: Sequence[LoadedRun]) -> list[dict[str, str]]:
    return [provenance.run_entry(r.run_dir, r.checkpoint.path) for r in loaded]


def run_data_dir(ckpt: Checkpoint, data_dir: Path | None) -> Path:
    """``data_dir``, else the folder the run was trained on."""
    folder = data_dir or ckpt.data_dir
    if folder is None:
        raise BadInputError(f"{ckpt.path}: names no data folder. Pass --data-dir.")
    return folder
