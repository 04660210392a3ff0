"""The preprocessed-image cache: each image decoded once per preprocessing, kept as uint8 on disk.

A cache file is a ``.npy`` array (N, C, S, S) of uint8, memory-mapped when read. Its name is a hash
of the preprocessing and of the image list (path, size, mtime), so changed images or settings
give a new cache, and training, evaluation and prediction of the same images share one. It is
built under a temporary name and renamed when complete: a half-built cache is never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from galaxyzoo_cli.data import Catalogue
from galaxyzoo_cli.files import atomic_path, write_json_atomic
from galaxyzoo_cli.images import InputSpec, image_size, load_image
from galaxyzoo_cli.progress import SILENT, Reporter

CACHE_VERSION = 1
_CHUNK = 256


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


def cache_key(paths: Sequence[Path], spec: InputSpec) -> str:
    """A hash of the preprocessing and of each image's path, size and modification time."""
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, "prep": _pixels(spec)}, sort_keys=True).encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def default_workers() -> int:
    """Decoding threads: the CPUs this process may use (all of them where that is unknown), ≤ 8."""
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return max(1, min(8, len(usable) if usable else (os.cpu_count() or 1)))


def load_images(
    paths: Sequence[Path],
    spec: InputSpec,
    *,
    workers: int | None = None,
    reporter: Reporter = SILENT,
    cache_dir: Path | None = None,
    use_cache: bool = True,
) -> np.ndarray:
    """All images preprocessed, as a uint8 array (N, C, S, S).

    With ``use_cache`` the array comes from (or is first written to) the cache folder and is
    memory-mapped; otherwise it is decoded into memory.
    """
    side = spec.size or (spec.output_side(*image_size(paths[0])) if paths else 1)
    shape = (len(paths), spec.channels, side, side)
    if not use_cache:
        out = np.empty(shape, dtype=np.uint8)
        _decode_into(out, paths, spec, workers, reporter)
        return out
    root = cache_dir or cache_root()
    key = cache_key(paths, spec)
    final = root / f"{key}.npy"
    if final.is_file():
        cached = np.load(final, mmap_mode="r")
        if cached.shape == shape:
            return cached
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with atomic_path(final, suffix=".npy") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        _decode_into(out, paths, spec, workers, reporter)
        out.flush()
        del out
    write_json_atomic(
        root / f"{key}.json",
        {
            "preprocess": _pixels(spec),
            "n_images": len(paths),
            "shape": list(shape),
            "first_image": str(paths[0]) if paths else None,
            "seconds": round(time.perf_counter() - start, 3),
            "bytes": int(np.prod(shape)),
        },
    )
    return np.load(final, mmap_mode="r")


def _decode_into(
    out: np.ndarray,
    paths: Sequence[Path],
    spec: InputSpec,
    workers: int | None,
    reporter: Reporter,
) -> None:
    """Decode ``paths`` into ``out`` in chunks, with threads (PIL releases the GIL to decode)."""
    side = out.shape[-1]

    def work(start: int) -> int:
        stop = min(start + _CHUNK, len(paths))
        for i in range(start, stop):
            out[i] = load_image(paths[i], spec, side)  # one side, even for mixed image sizes
        return stop - start

    starts = range(0, len(paths), _CHUNK)
    n_workers = workers or default_workers()
    with reporter.task("Decoding images", len(paths)) as task:
        if n_workers <= 1:
            for s in starts:
                task.advance(work(s))
            return
        with ThreadPoolExecutor(n_workers) as pool:
            for n in pool.map(work, starts):
                task.advance(n)


def load_split(
    cat: Catalogue,
    val_ids: np.ndarray,
    spec: InputSpec,
    *,
    workers: int | None = None,
    use_cache: bool = True,
    reporter: Reporter = SILENT,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training and validation images (uint8) and labels of a catalogue: (x_train, y_train,
    x_val, y_val), the images decoded once through the cache."""
    images = load_images(cat.paths, spec, workers=workers, reporter=reporter, use_cache=use_cache)
    is_val = np.isin(cat.ids, val_ids)
    tr, va = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    return images[tr], cat.labels[tr], images[va], cat.labels[va]
