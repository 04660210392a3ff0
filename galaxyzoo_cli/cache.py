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
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from galaxyzoo_cli.cutouts import FitsOptions
from galaxyzoo_cli.data import Catalogue, Skipped
from galaxyzoo_cli.errors import BadInputError, JobFailedError
from galaxyzoo_cli.files import atomic_path, write_json_atomic
from galaxyzoo_cli.images import InputSpec, decode_into, image_size
from galaxyzoo_cli.progress import SILENT, Reporter

CACHE_VERSION = 2
"""2: every image fully decoded (1 held JPEGs decoded at a reduced scale)."""


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
        try:
            st = os.stat(p)
            state = f"{st.st_size}\0{st.st_mtime_ns}"
        except OSError:  # gone (or a broken link): decoding names it unreadable
            state = "missing"
        h.update(f"{os.path.abspath(p)}\0{state}\n".encode())
    return h.hexdigest()[:32]


@dataclass
class Decoded:
    """Preprocessed images (N, C, S, S) uint8, and the positions of those that could not be read
    (their rows are zeros) with the reason."""

    pixels: np.ndarray | LazyPixels
    unreadable: dict[int, str] = field(default_factory=dict)

    @property
    def readable(self) -> np.ndarray:
        """Boolean (N,): the rows that hold an image."""
        ok = np.ones(len(self.pixels), dtype=bool)
        ok[list(self.unreadable)] = False
        return ok


CACHE_AUTO_LIMIT = 4_000_000_000
"""Above this size (bytes) a cache is built only when asked (``--cache``): larger inputs are
decoded as they are needed (measured in docs/performance.md: a 224-px backbone spends far more
time in its own compute than in decoding, and the full set at 224 px would take 21 GB)."""


def load_images(
    paths: Sequence[Path],
    spec: InputSpec,
    *,
    workers: int | None = None,
    reporter: Reporter = SILENT,
    cache_dir: Path | None = None,
    use_cache: bool | None = None,
    fits: FitsOptions | None = None,
) -> Decoded:
    """All images preprocessed, as a uint8 array (N, C, S, S).

    ``use_cache``: True: from (or first written to) the cache folder, memory-mapped; False:
    decoded when read (:class:`LazyPixels`, after a quick pass that finds unreadable files);
    None (default): the cache for up to :data:`CACHE_AUTO_LIMIT` bytes that fit on its disk,
    decoded when read above that. Unreadable images are listed, not raised.
    """
    side = image_size_of(paths, spec, fits)
    shape = (len(paths), spec.channels, side, side)
    root = cache_dir or cache_root()
    if not _wants_cache(int(np.prod(shape)), use_cache, root, reporter):
        quick = np.empty((len(paths), 3, 8, 8), np.uint8)  # decode small: just to find the bad
        bad = decode_into(quick, paths, InputSpec(3, size=8), workers, reporter, fits)
        return Decoded(LazyPixels(list(paths), spec, side, workers, fits), bad)
    key = cache_key(paths, spec, fits)
    final, about = root / f"{key}.npy", root / f"{key}.json"
    if final.is_file():
        try:
            cached = np.load(final, mmap_mode="r")
            unreadable = json.loads(about.read_text(encoding="utf-8")).get("unreadable", {})
            if cached.shape == shape:
                os.utime(about)  # "last used", for `galaxyzoo cache`
                return Decoded(cached, {int(i): str(why) for i, why in unreadable.items()})
        except (OSError, ValueError):
            pass  # a damaged cache is built again
    root.mkdir(parents=True, exist_ok=True)
    _check_room(root, int(np.prod(shape)), reporter)
    start = time.perf_counter()
    with atomic_path(final, suffix=".npy", size=int(np.prod(shape))) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        _reserve(tmp)
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


def _reserve(path: Path) -> None:
    """Allocate the whole file now: a disk that fills up later then fails here with an error
    (named, the temporary removed), not with a SIGBUS when a memory-mapped page is written."""
    if hasattr(os, "posix_fallocate"):
        with path.open("r+b") as f:
            os.posix_fallocate(f.fileno(), 0, path.stat().st_size)


def will_cache(paths: Sequence[Path], spec: InputSpec, use_cache: bool | None) -> bool:
    """Whether :func:`load_images` would use the cache for these images (no message)."""
    side = spec.size or 424
    return _wants_cache(len(paths) * spec.channels * side * side, use_cache, cache_root(), SILENT)


def _wants_cache(nbytes: int, use_cache: bool | None, root: Path, reporter: Reporter) -> bool:
    if use_cache is not None:
        return use_cache
    if nbytes > CACHE_AUTO_LIMIT:
        reporter.log(
            f"Decoding images as they are needed: a cache would take {_size(nbytes)} "
            f"(more than {_size(CACHE_AUTO_LIMIT)}; --cache builds it anyway)."
        )
        return False
    probe = root if root.exists() else root.parent if root.parent.exists() else Path.home()
    if nbytes + DISK_MARGIN > shutil.disk_usage(probe).free:
        reporter.log(f"Decoding images as they are needed: no room for a {_size(nbytes)} cache.")
        return False
    return True


class LazyPixels:
    """Images decoded when read, behind an array's indexing: ``pixels[rows]`` decodes those
    rows (with threads) into a new uint8 array. For inputs too large to cache."""

    def __init__(
        self,
        paths: list[Path],
        spec: InputSpec,
        side: int,
        workers: int | None,
        fits: FitsOptions | None,
    ) -> None:
        self.paths, self.spec, self.side, self.workers, self.fits = paths, spec, side, workers, fits
        self.shape = (len(paths), spec.channels, side, side)
        self.dtype = np.dtype(np.uint8)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: slice | np.ndarray | int) -> np.ndarray:
        picked = np.arange(len(self.paths))[index]
        rows = np.atleast_1d(picked)
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        decode_into(out, [self.paths[int(i)] for i in rows], self.spec, self.workers, SILENT,
                    self.fits)  # fmt: skip
        return out if np.ndim(picked) else out[0]


DISK_MARGIN = 1 << 30
"""Free space a cache build leaves on its disk (1 GiB)."""


def _check_room(root: Path, nbytes: int, reporter: Reporter) -> None:
    """Say what the cache will cost before it is built; refuse when it would not fit."""
    free = shutil.disk_usage(root).free
    reporter.log(
        f"Caching the decoded images: {_size(nbytes)} in {root} ({_size(free)} free); "
        "`galaxyzoo cache` lists caches, `galaxyzoo cache clear` removes them."
    )
    if nbytes + DISK_MARGIN > free:
        raise BadInputError(
            f"{root}: the image cache needs {_size(nbytes)} and only {_size(free)} is free "
            f"(with {_size(DISK_MARGIN)} to spare). Free some space (`galaxyzoo cache clear`), "
            "set GALAXYZOO_CACHE_DIR to a larger disk, or decode as you go with --no-cache."
        )


def _size(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1000 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    return f"{nbytes:.1f} TB"


def image_size_of(paths: Sequence[Path], spec: InputSpec, fits: FitsOptions | None) -> int:
    """The output side of a set of images: the spec's, else that of the first readable one."""
    if spec.size is not None:
        return spec.size
    for path in paths:
        try:
            return spec.output_side(*image_size(path, fits))
        except BadInputError:
            continue
    return 1


@dataclass(frozen=True)
class Rows:
    """Some rows of an image array (the memory-mapped cache) without a copy of them: a batch
    reads only its own rows, so no process holds the whole set twice."""

    array: np.ndarray | LazyPixels
    rows: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, index: np.ndarray) -> np.ndarray:
        """The images at positions ``index`` of these rows (a copy of those only)."""
        return take_rows(self.array, self.rows[index])


def take_rows(array: np.ndarray | LazyPixels, rows: np.ndarray) -> np.ndarray:
    """A new array of ``array[rows]``; from a memory-mapped cache, read with :func:`read_rows`."""
    if isinstance(array, np.memmap) and hasattr(os, "preadv"):
        return read_rows(array, rows)
    return np.asarray(array[rows])


def read_rows(array: np.memmap, rows: np.ndarray) -> np.ndarray:
    """Rows of a memory-mapped cache read from its file (``preadv``) instead of through the
    mapping: the same bytes, but the file's pages stay in the OS's page cache instead of being
    charged to this process's resident memory (at 128 px the 5,000-image cache is 245 MB, which
    reading through the mapping added to the peak RSS of a training run)."""
    out = np.empty((len(rows), *array.shape[1:]), dtype=array.dtype)
    row_bytes = out[0].nbytes if len(out) else 0
    fd = os.open(str(array.filename), os.O_RDONLY)
    try:
        for i, row in enumerate(rows):
            view = memoryview(out[i]).cast("B")
            if os.preadv(fd, [view], array.offset + int(row) * row_bytes) != row_bytes:
                raise JobFailedError(
                    f"{array.filename}: the cache file is shorter than its header says (changed "
                    "while in use?). Remove it with `galaxyzoo cache clear` and run again."
                )
    finally:
        os.close(fd)
    return out


def load_split(
    cat: Catalogue,
    val_ids: np.ndarray,
    spec: InputSpec,
    skipped: Skipped,
    *,
    workers: int | None = None,
    use_cache: bool | None = None,
    reporter: Reporter = SILENT,
) -> tuple[Rows, np.ndarray, Rows, np.ndarray]:
    """Training and validation images (uint8) and labels of a catalogue: (x_train, y_train,
    x_val, y_val), the images decoded once through the cache. Galaxies whose image cannot be
    read are left out and added to ``skipped``."""
    decoded = load_images(cat.paths, spec, workers=workers, reporter=reporter, use_cache=use_cache)
    skipped.add("unreadable image", [int(cat.ids[i]) for i in decoded.unreadable])
    is_val = np.isin(cat.ids, val_ids)
    tr = np.flatnonzero(~is_val & decoded.readable)
    va = np.flatnonzero(is_val & decoded.readable)
    images = decoded.pixels
    return Rows(images, tr), cat.labels[tr], Rows(images, va), cat.labels[va]


# ---------------------------------------------------------------------------------------------
# `galaxyzoo cache`: what the caches hold, and clearing them
# ---------------------------------------------------------------------------------------------


@dataclass
class CacheEntry:
    key: str
    preprocess: dict[str, object]
    n_images: int
    folder: str
    """The folder of the first image (where the cached images came from)."""
    bytes: int
    last_used: float
    complete: bool = True
    """False: a build that was interrupted (never used; safe to remove)."""


@dataclass
class CacheReport:
    root: Path
    entries: list[CacheEntry]
    removed: int = 0
    freed: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "root": str(self.root),
            "caches": [vars(e) for e in self.entries],
            "bytes": sum(e.bytes for e in self.entries),
            "removed": self.removed,
            "freed_bytes": self.freed,
        }

    def summary(self) -> str:
        lines = []
        if self.removed:
            lines.append(f"Removed {self.removed} caches from {self.root}: {_size(self.freed)}.")
        if not self.entries:
            lines.append(f"No caches in {self.root}." if not self.removed else "")
            return "\n".join(line for line in lines if line)
        lines.append(f"{self.root}: {len(self.entries)} caches, "
                     f"{_size(sum(e.bytes for e in self.entries))}")  # fmt: skip
        for e in self.entries:
            p = e.preprocess
            what = (f"{'gray' if p.get('channels') == 1 else 'RGB'} crop {p.get('crop')} → "
                    f"{p.get('image_size')} px")  # fmt: skip
            used = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used))
            state = "" if e.complete else "  (interrupted build)"
            lines.append(f"  {e.key[:12]}  {e.n_images:>7} images  {_size(e.bytes):>9}  {what:<24}"
                         f"  last used {used}  {e.folder}{state}")  # fmt: skip
        return "\n".join(lines)


def list_caches(data_dir: Path | None = None, cache_dir: Path | None = None) -> CacheReport:
    """The caches in the cache folder (of images under ``data_dir`` only, if given)."""
    root = cache_dir or cache_root()
    entries = []
    for about in sorted(root.glob("*.json")) if root.is_dir() else []:
        try:
            info = json.loads(about.read_text(encoding="utf-8"))
            array = about.with_suffix(".npy")
            entries.append(CacheEntry(
                key=about.stem, preprocess=dict(info.get("preprocess", {})),
                n_images=int(info.get("n_images", 0)),
                folder=str(Path(info["first_image"]).parent) if info.get("first_image") else "",
                bytes=array.stat().st_size if array.is_file() else 0,
                last_used=about.stat().st_mtime, complete=array.is_file(),
            ))  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError):
            continue
    for tmp in sorted(root.glob(".*.tmp")) if root.is_dir() else []:
        entries.append(CacheEntry(tmp.name, {}, 0, "", tmp.stat().st_size, tmp.stat().st_mtime,
                                  complete=False))  # fmt: skip
    if data_dir is not None:
        under = str(data_dir.resolve())
        entries = [e for e in entries if e.folder.startswith(under)]
    return CacheReport(root, entries)


def clear_caches(data_dir: Path | None = None, cache_dir: Path | None = None) -> CacheReport:
    """Remove the caches (of images under ``data_dir`` only, if given) and interrupted builds
    (those left for ten minutes: a younger one may be a build in progress)."""
    listed = list_caches(data_dir, cache_dir)
    removed = freed = 0
    for e in listed.entries:
        if not e.complete and time.time() - e.last_used < 600 and e.key.startswith("."):
            continue
        for path in (listed.root / f"{e.key}.npy", listed.root / f"{e.key}.json",
                     listed.root / e.key):  # fmt: skip
            if path.is_file() and path.parent == listed.root:
                path.unlink(missing_ok=True)
        removed += 1
        freed += e.bytes
    return CacheReport(listed.root, [], removed, freed)
