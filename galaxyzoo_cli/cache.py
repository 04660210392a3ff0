"""The preprocessed-image cache: each image decoded once per preprocessing, kept as uint8 on disk.

A cache file is a ``.npy`` array (N, C, S, S) of uint8, memory-mapped when read, with a ``.json``
beside it that says what it holds (and which images could not be decoded). Its name is a hash of
the preprocessing and of the image list (path, size, mtime), so changed images or settings give a
new cache, and training, evaluation and prediction of the same images share one. It is built under
a temporary name and renamed when complete: a half-built cache is never used.

Unreadable images do not stop a job: their rows are zeros, and :class:`Decoded` names them so that
callers skip them (or, with ``--strict``, refuse; see :func:`galaxyzoo_cli.data.Skipped`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from galaxyzoo_cli.cutouts import FitsOptions
from galaxyzoo_cli.data import Catalogue, Skipped
from galaxyzoo_cli.errors import BadInputError
from galaxyzoo_cli.files import atomic_path, write_json_atomic
from galaxyzoo_cli.images import InputSpec, decode_into, image_size
from galaxyzoo_cli.progress import SILENT, Reporter

CACHE_VERSION = 1


def cache_root() -> Path:
    """``$GALAXYZOO_CACHE_DIR``, else ``$XDG_CACHE_HOME/galaxyzoo-cli``, else ``~/.cache/…``."""
    env = os.environ.get("GALAXYZOO_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "galaxyzoo-cli"


def _pixels(spec: InputSpec) -> dict[str, int | None]:
    """What the decoded pixels depend on (not the model's normalisation)."""
    return {"channels": spec.channels, "crop": spec.crop, "image_size": spec.size}


def cache_key(paths: Sequence[Path], spec: InputSpec, fits: FitsOptions | None = None) -> str:
    """A hash of the preprocessing (and FITS rendering) and of each image's path, size and
    modification time."""
    h = hashlib.sha256()
    about: dict[str, object] = {"v": CACHE_VERSION, "prep": _pixels(spec)}
    if fits is not None:
        about["fits"] = fits.as_dict()
    h.update(json.dumps(about, sort_keys=True).encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


@dataclass
class Decoded:
    """Preprocessed images (N, C, S, S) uint8, and the positions of those that could not be read
    (their rows are zeros) with the reason."""

    pixels: np.ndarray
    unreadable: dict[int, str] = field(default_factory=dict)

    @property
    def readable(self) -> np.ndarray:
        """Boolean (N,): the rows that hold an image."""
        ok = np.ones(len(self.pixels), dtype=bool)
        ok[list(self.unreadable)] = False
        return ok


def load_images(
    paths: Sequence[Path],
    spec: InputSpec,
    *,
    workers: int | None = None,
    reporter: Reporter = SILENT,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    fits: FitsOptions | None = None,
) -> Decoded:
    """All images preprocessed, as a uint8 array (N, C, S, S).

    With ``use_cache`` the array comes from (or is first written to) the cache folder and is
    memory-mapped; otherwise it is decoded into memory. Unreadable images are listed, not raised.
    """
    side = _side(paths, spec, fits)
    shape = (len(paths), spec.channels, side, side)
    if not use_cache:
        out = np.empty(shape, dtype=np.uint8)
        return Decoded(out, decode_into(out, paths, spec, workers, reporter, fits))
    root = cache_dir or cache_root()
    key = cache_key(paths, spec, fits)
    final, about = root / f"{key}.npy", root / f"{key}.json"
    if final.is_file():
        try:
            cached = np.load(final, mmap_mode="r")
            unreadable = json.loads(about.read_text(encoding="utf-8")).get("unreadable", {})
            if cached.shape == shape:
                return Decoded(cached, {int(i): str(why) for i, why in unreadable.items()})
        except (OSError, ValueError):
            pass  # a damaged cache is built again
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with atomic_path(final, suffix=".npy") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        unreadable = decode_into(out, paths, spec, workers, reporter, fits)
        out.flush()
        del out
        # The description goes first, then the array is renamed into place: whoever finds the
        # array finds its description.
        write_json_atomic(
            about,
            {
                "preprocess": _pixels(spec),
                "n_images": len(paths),
                "shape": list(shape),
                "first_image": str(paths[0]) if paths else None,
                "unreadable": {str(i): why for i, why in unreadable.items()},
                "seconds": round(time.perf_counter() - start, 3),
                "bytes": int(np.prod(shape)),
            },
        )
    return Decoded(np.load(final, mmap_mode="r"), unreadable)


def _side(paths: Sequence[Path], spec: InputSpec, fits: FitsOptions | None) -> int:
    """The output side: the spec's, else that of the first readable image."""
    if spec.size is not None:
        return spec.size
    for path in paths:
        try:
            return spec.output_side(*image_size(path, fits))
        except BadInputError:
            continue
    return 1


def load_split(
    cat: Catalogue,
    val_ids: np.ndarray,
    spec: InputSpec,
    skipped: Skipped,
    *,
    workers: int | None = None,
    use_cache: bool = True,
    reporter: Reporter = SILENT,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training and validation images (uint8) and labels of a catalogue: (x_train, y_train,
    x_val, y_val), the images decoded once through the cache. Galaxies whose image cannot be
    read are left out and added to ``skipped``."""
    decoded = load_images(cat.paths, spec, workers=workers, reporter=reporter, use_cache=use_cache)
    skipped.add("unreadable image", [int(cat.ids[i]) for i in decoded.unreadable])
    is_val = np.isin(cat.ids, val_ids)
    tr = np.flatnonzero(~is_val & decoded.readable)
    va = np.flatnonzero(is_val & decoded.readable)
    images = decoded.pixels
    return images[tr], cat.labels[tr], images[va], cat.labels[va]
