"""The preprocessed-image cache: each image decoded once per preprocessing, kept as uint8 on disk.

A cache file is a ``.npy`` array (N, C, S, S) of uint8, memory-mapped when read, with a ``.json``
beside it that says what it holds (and which images could not be decoded). Its name is a hash of
the preprocessing and of the image list (absolute path, size, mtime), so changed images or
settings give a new cache.

One cache per set of images: the caller gives *all* the images of its folder (a run's labelled
galaxies, the first ``--limit`` of them for a limited run; the test images; a folder of cutouts)
and the ``rows`` it needs. Training's two splits, evaluation's split and the figures' samples are
rows of that one cache, read without a copy of the rest (:class:`Rows`). It is built under a
temporary name (holding the builder's process id) and renamed when complete: a half-built cache is
never used, a failed or interrupted build removes its file, and one left by a killed process is
removed by the next build or by ``galaxyzoo cache clear``.

Unreadable images do not stop a job: their rows are zeros, and :class:`Decoded` names them so that
callers skip them (or, with ``--strict``, refuse; see :func:`galaxyzoo_cli.data.catalogue.Skipped`).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from galaxyzoo_cli.core.errors import (
    BadInputError,
    GalaxyZooError,
    JobFailedError,
    free_space,
    os_error,
    os_error_in,
    size,
)
from galaxyzoo_cli.core.files import write_json_atomic
from galaxyzoo_cli.core.progress import SILENT, Reporter
from galaxyzoo_cli.core.settings import FitsOptions
from galaxyzoo_cli.data.catalogue import Catalogue, Skipped
from galaxyzoo_cli.data.images import InputSpec, decode_into, image_size

CACHE_VERSION = 2
"""2: every image fully decoded (1 held JPEGs decoded at a reduced scale)."""


def cache_root() -> Path:
    """``$GALAXYZOO_CACHE_DIR``, else ``$XDG_CACHE_HOME/galaxyzoo-cli``, else ``~/.cache/…``;
    without a usable home folder (HOME unset or pointing nowhere, as in some containers and batch
    jobs), ``galaxyzoo-cli-cache-<user>`` in the temporary folder, said once."""
    env = os.environ.get("GALAXYZOO_CACHE_DIR")
    if env:
        return Path(env).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser().absolute() / "galaxyzoo-cli"
    home = _home()
    if home is not None:
        return home / ".cache" / "galaxyzoo-cli"
    fallback = Path(tempfile.gettempdir()) / f"galaxyzoo-cli-cache-{_user()}"
    global _SAID_FALLBACK
    if not _SAID_FALLBACK:
        _SAID_FALLBACK = True
        print(  # stderr: stdout stays clean for --json
            f"No home folder (HOME={os.environ.get('HOME', '(unset)')}): caching decoded images "
            f"in {fallback}. Set GALAXYZOO_CACHE_DIR to keep them elsewhere.",
            file=sys.stderr,
        )
    return fallback


_SAID_FALLBACK = False


def _home() -> Path | None:
    """The user's home folder if it exists (None when HOME is unset with no passwd entry, or
    names a folder that does not exist)."""
    try:
        home = Path.home()
    except (RuntimeError, KeyError, OSError):
        return None
    return home if home.is_dir() else None


def _user() -> str:
    try:
        return str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    except OSError:  # pragma: no cover - getuid does not fail on POSIX
        return "user"


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
    """Preprocessed images uint8 (C, S, S) of the images asked for, in order: rows ``rows`` of
    ``pixels`` (all of its rows when ``rows`` is None), and the positions (among those asked for)
    of the images that could not be read (their rows are zeros) with the reason."""

    pixels: np.ndarray | LazyPixels
    """The whole folder's images (N, C, S, S): the memory-mapped cache, or decoded when read."""
    unreadable: dict[int, str] = field(default_factory=dict)
    rows: np.ndarray | None = None
    """The rows of ``pixels`` that hold the images asked for, in order (None: all)."""

    def __len__(self) -> int:
        return len(self.pixels) if self.rows is None else len(self.rows)

    @property
    def positions(self) -> np.ndarray:
        """The row of ``pixels`` of each image asked for."""
        return np.arange(len(self.pixels)) if self.rows is None else self.rows

    @property
    def readable(self) -> np.ndarray:
        """Boolean, one per image asked for: those that hold an image."""
        ok = np.ones(len(self), dtype=bool)
        ok[list(self.unreadable)] = False
        return ok

    def select(self, index: np.ndarray) -> Rows:
        """The images at positions ``index`` (among those asked for), not copied."""
        return Rows(self.pixels, self.positions[index])


CACHE_AUTO_LIMIT = 4_000_000_000
"""Above this size (bytes) a cache is built only when asked (``--cache``): larger inputs are
decoded as they are needed (measured in docs/performance.md: a 224-px backbone spends far more
time in its own compute than in decoding, and the full set at 224 px would take 21 GB)."""


def load_images(
    paths: Sequence[Path],
    spec: InputSpec,
    *,
    rows: np.ndarray | Sequence[int] | None = None,
    workers: int | None = None,
    reporter: Reporter = SILENT,
    cache_dir: Path | None = None,
    use_cache: bool | None = None,
    fits: FitsOptions | None = None,
) -> Decoded:
    """Images ``rows`` of ``paths`` (all of them when None), preprocessed as uint8 (C, S, S).

    ``paths``: every image of the folder the caller works on (a run's labelled galaxies, the
    first ``--limit`` of them for a limited run, the test images…), so that every subset of
    them reads rows of one cache. ``use_cache``: True: from (or first written to) that cache,
    memory-mapped; False: decoded when read (:class:`LazyPixels`, after a quick pass over the
    rows asked for that finds unreadable files); None (default): the cache for up to
    :data:`CACHE_AUTO_LIMIT` bytes that fit on its disk, decoded when read above that.
    Unreadable images are listed, not raised.
    """
    picked = None if rows is None else np.asarray(rows, dtype=np.int64)
    side = image_size_of(paths, spec, fits)
    shape = (len(paths), spec.channels, side, side)
    root = (cache_dir or cache_root()).absolute()
    if not _wants_cache(int(np.prod(shape)), use_cache, root, reporter):
        wanted = list(paths) if picked is None else [paths[int(i)] for i in picked]
        quick = np.empty((len(wanted), 3, 8, 8), np.uint8)  # decode small: just to find the bad
        bad = decode_into(quick, wanted, InputSpec(3, size=8), workers, reporter, fits)
        return Decoded(LazyPixels(list(paths), spec, side, workers, fits), bad, picked)
    key = cache_key(paths, spec, fits)
    final, about = root / f"{key}.npy", root / f"{key}.json"
    pixels, unreadable = _open_cache(final, about, shape)
    if pixels is None:
        unreadable = _build(paths, spec, shape, final, about, workers, reporter, fits)
        pixels = np.load(final, mmap_mode="r")
    return Decoded(pixels, _among(unreadable, picked), picked)


def _among(unreadable: dict[int, str], rows: np.ndarray | None) -> dict[int, str]:
    """The unreadable images of a folder, numbered among ``rows`` (all: unchanged)."""
    if rows is None or not unreadable:
        return dict(unreadable)
    return {i: unreadable[int(r)] for i, r in enumerate(rows) if int(r) in unreadable}


def _open_cache(
    final: Path, about: Path, shape: tuple[int, ...]
) -> tuple[np.ndarray | None, dict[int, str]]:
    """A complete cache of this shape, memory-mapped, with its unreadable images; (None, {})
    if there is none (a damaged one is built again)."""
    if not final.is_file():
        return None, {}
    try:
        cached = np.load(final, mmap_mode="r")
        unreadable = json.loads(about.read_text(encoding="utf-8")).get("unreadable", {})
        if cached.shape == shape:
            os.utime(about)  # "last used", for `galaxyzoo cache`
            return cached, {int(i): str(why) for i, why in unreadable.items()}
    except (OSError, ValueError, AttributeError):
        pass
    return None, {}


def _build(
    paths: Sequence[Path],
    spec: InputSpec,
    shape: tuple[int, ...],
    final: Path,
    about: Path,
    workers: int | None,
    reporter: Reporter,
    fits: FitsOptions | None,
) -> dict[int, str]:
    """Decode every image into a new cache: under a temporary name that holds this process's id,
    renamed into place when complete, removed on any failure (KeyboardInterrupt included)."""
    root = final.parent
    root.mkdir(parents=True, exist_ok=True)
    _remove_orphans(root)
    _check_room(root, int(np.prod(shape)), reporter)
    start = time.perf_counter()
    tmp = root / f".{final.stem}.{os.getpid()}-{_host()}.npy.tmp"
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        _reserve(tmp)
        unreadable = decode_into(out, paths, spec, workers, reporter, fits)
        out.flush()
        del out
        # The description goes first, then the array is renamed into place: whoever finds the
        # array finds its description.
        absolute = [Path(os.path.abspath(p)) for p in paths[:1]]
        write_json_atomic(
            about,
            {
                "preprocess": _pixels(spec),
                "n_images": len(paths),
                "shape": list(shape),
                "folder": str(_common_folder(paths)) if paths else None,
                "first_image": str(absolute[0]) if absolute else None,
                "unreadable": {str(i): why for i, why in unreadable.items()},
                "seconds": round(time.perf_counter() - start, 3),
                "bytes": int(np.prod(shape)),
            },
        )
        os.replace(tmp, final)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        translated = isinstance(e, GalaxyZooError) or not isinstance(e, Exception)
        cause = None if translated else os_error_in(e)
        if cause is not None:  # a full disk, say: the cache file named, not its temporary
            own = cause.filename in (None, str(tmp))
            raise os_error(cause, final if own else cause.filename, int(np.prod(shape))) from e
        raise
    return unreadable


def _common_folder(paths: Sequence[Path]) -> Path:
    """The deepest folder holding every image (absolute)."""
    folders = {os.path.dirname(os.path.abspath(p)) for p in paths}
    return Path(os.path.commonpath(sorted(folders)))


def _host() -> str:
    """This machine's name, as it goes into a build's temporary name (no dots)."""
    return "".join(c if c.isalnum() or c == "-" else "_" for c in socket.gethostname())[:40]


def _builder(tmp: Path) -> tuple[int, str] | None:
    """The process id and machine in a build's temporary name
    (``.<key>.<pid>-<host>.npy.tmp``), if it has them."""
    parts = tmp.name.split(".")
    if len(parts) == 5 and parts[3:] == ["npy", "tmp"]:
        pid, _, host = parts[2].partition("-")
        if pid.isdigit() and host:
            return int(pid), host
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process, or cannot tell: assume it is building
    return True


def _orphan(tmp: Path) -> bool:
    """A build's temporary file whose process is gone: on this machine, a process id that no
    longer runs; from another machine sharing the folder, or a name without a process id, one
    untouched for a day (another machine's), or ten minutes (no id)."""
    builder = _builder(tmp)
    if builder is not None and builder[1] == _host():
        return builder[0] != os.getpid() and not _alive(builder[0])
    try:
        age = time.time() - tmp.stat().st_mtime
    except OSError:
        return False
    return age >= (86_400 if builder is not None else 600)


def _remove_orphans(root: Path) -> None:
    """Remove what builds killed before they could clean up (SIGKILL, power loss) left behind."""
    for tmp in root.glob(".*.tmp"):
        if _orphan(tmp):
            tmp.unlink(missing_ok=True)


def cached(
    paths: Sequence[Path],
    spec: InputSpec,
    fits: FitsOptions | None = None,
    cache_dir: Path | None = None,
) -> bool:
    """Whether a complete cache of these images at this preprocessing exists (so that a subset
    of them, such as a run's first ``--limit`` galaxies, can read its rows instead of building
    a cache of its own)."""
    if not paths:
        return False
    try:
        key = cache_key(paths, spec, fits)
    except OSError:
        return False
    return ((cache_dir or cache_root()) / f"{key}.npy").is_file()


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
            f"Decoding images as they are needed: a cache would take {size(nbytes)} "
            f"(more than {size(CACHE_AUTO_LIMIT)}; --cache builds it anyway)."
        )
        return False
    if nbytes + DISK_MARGIN > free_space(root):
        reporter.log(f"Decoding images as they are needed: no room for a {size(nbytes)} cache.")
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
        out, _ = self.decode(np.atleast_1d(picked))
        return out if np.ndim(picked) else out[0]

    def decode(self, rows: np.ndarray | Sequence[int]) -> tuple[np.ndarray, dict[int, str]]:
        """Images ``rows`` decoded into a new uint8 array, and those that could not be read
        (numbered among ``rows``; their images are zeros)."""
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        unreadable = decode_into(out, [self.paths[int(i)] for i in rows], self.spec,
                                 self.workers, SILENT, self.fits)  # fmt: skip
        return out, unreadable


DISK_MARGIN = 1 << 30
"""Free space a cache build leaves on its disk (1 GiB)."""


def _check_room(root: Path, nbytes: int, reporter: Reporter) -> None:
    """Say what the cache will cost before it is built; refuse when it would not fit."""
    free = free_space(root)
    reporter.log(
        f"Caching the decoded images: {size(nbytes)} in {root} ({size(free)} free); "
        "`galaxyzoo cache` lists caches, `galaxyzoo cache clear` removes them."
    )
    if nbytes + DISK_MARGIN > free:
        raise BadInputError(
            f"{root}: the image cache needs {size(nbytes)} and only {size(free)} is free "
            f"(with {size(DISK_MARGIN)} to spare). Free some space (`galaxyzoo cache clear`), "
            "set GALAXYZOO_CACHE_DIR to a larger disk, or decode as you go with --no-cache."
        )


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

    def __getitem__(self, index: np.ndarray) -> np.ndarray:
        """The images at positions ``index`` of these rows (a copy of those only)."""
        return copy_rows(self.array, self.rows[index])


def copy_rows(array: np.ndarray | LazyPixels, rows: np.ndarray) -> np.ndarray:
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
    whole: Catalogue | None = None,
) -> tuple[Rows, np.ndarray, Rows, np.ndarray]:
    """Training and validation images (uint8) and labels of a catalogue: (x_train, y_train,
    x_val, y_val), the images decoded once through the cache. Galaxies whose image cannot be
    read are left out and added to ``skipped``.

    ``whole``: the folder's catalogue when ``cat`` is its first galaxies (``--limit``): if the
    whole folder is cached already, ``cat``'s images are rows of that cache; otherwise ``cat``'s
    images get a cache of their own (a quick limited run never decodes the whole folder)."""
    paths, rows = cat.paths, None
    if whole is not None and use_cache is not False and cached(whole.paths, spec):
        paths, rows = whole.paths, np.arange(len(cat))
    decoded = load_images(
        paths, spec, rows=rows, workers=workers, reporter=reporter, use_cache=use_cache
    )
    skipped.add("unreadable image", [int(cat.ids[i]) for i in decoded.unreadable])
    is_val = np.isin(cat.ids, val_ids)
    tr = np.flatnonzero(~is_val & decoded.readable)
    va = np.flatnonzero(is_val & decoded.readable)
    return decoded.select(tr), cat.labels[tr], decoded.select(va), cat.labels[va]


def rows_of(universe: np.ndarray, ids: np.ndarray) -> np.ndarray | None:
    """The positions of ``ids`` in the sorted ``universe`` of GalaxyIDs, or None if one of them
    is not there."""
    pos = np.searchsorted(universe, ids)
    ok = (pos < len(universe)) & (universe[np.minimum(pos, len(universe) - 1)] == ids)
    return pos if len(universe) and bool(ok.all()) else None


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

    def describe(self) -> str:
        """How many caches, where, how large."""
        n = len(self.entries)
        total = size(sum(e.bytes for e in self.entries))
        return f"{n} cache{'s' if n != 1 else ''} in {self.root} ({total})"

    def summary(self) -> str:
        lines = []
        if self.removed:
            n = self.removed
            lines.append(f"Removed {n} cache{'s' if n != 1 else ''} from {self.root}: "
                         f"{size(self.freed)}.")  # fmt: skip
        if not self.entries:
            lines.append(f"No caches in {self.root}." if not self.removed else "")
            return "\n".join(line for line in lines if line)
        lines.append(self.describe())
        for e in self.entries:
            p = e.preprocess
            what = (f"{'gray' if p.get('channels') == 1 else 'RGB'} crop {p.get('crop')} → "
                    f"{p.get('image_size')} px")  # fmt: skip
            used = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used))
            state = "" if e.complete else "  (interrupted build)"
            lines.append(f"  {e.key[:12]}  {e.n_images:>7} images  {size(e.bytes):>9}  {what:<24}"
                         f"  last used {used}  {e.folder}{state}")  # fmt: skip
        return "\n".join(lines)


def list_caches(data_dir: Path | None = None, cache_dir: Path | None = None) -> CacheReport:
    """The caches in the cache folder (of images under ``data_dir`` only, if given), and the
    temporary files of builds in progress or interrupted."""
    root = (cache_dir or cache_root()).absolute()
    entries = []
    for about in sorted(root.glob("*.json")) if root.is_dir() else []:
        try:
            info = json.loads(about.read_text(encoding="utf-8"))
            array = about.with_suffix(".npy")
            folder = info.get("folder") or (
                str(Path(info["first_image"]).parent) if info.get("first_image") else ""
            )
            entries.append(CacheEntry(
                key=about.stem, preprocess=dict(info.get("preprocess", {})),
                n_images=int(info.get("n_images", 0)), folder=str(folder),
                bytes=array.stat().st_size if array.is_file() else 0,
                last_used=about.stat().st_mtime, complete=array.is_file(),
            ))  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    for tmp in sorted(root.glob(".*.tmp")) if root.is_dir() else []:
        try:
            st = tmp.stat()
        except OSError:
            continue
        entries.append(CacheEntry(tmp.name, {}, 0, "", st.st_size, st.st_mtime, complete=False))
    if data_dir is not None:
        entries = [e for e in entries if e.folder and _is_under(e.folder, data_dir)]
    return CacheReport(root, entries)


def _is_under(folder: str, data_dir: Path) -> bool:
    """Whether a cache's image folder is ``data_dir`` or inside it, comparing resolved paths.

    Caches made by 0.2.0 and earlier recorded the path as given: a relative one is taken
    relative to the current folder and to each folder above ``data_dir`` (``--data-dir data``
    from a project folder recorded ``data/images_training_rev1``)."""
    target = data_dir.expanduser().resolve()
    recorded = Path(folder).expanduser()
    if recorded.is_absolute():
        candidates = [recorded]
    else:
        candidates = [Path.cwd() / recorded, *(above / recorded for above in target.parents)]
    for candidate in candidates:
        found = Path(os.path.normpath(candidate.resolve()))
        if found == target or target in found.parents:
            return True
    return False


def clear_caches(data_dir: Path | None = None, cache_dir: Path | None = None) -> CacheReport:
    """Remove the caches (of images under ``data_dir`` only, if given) and the files of
    interrupted builds (a build whose process is still running is left alone)."""
    listed = list_caches(data_dir, cache_dir)
    removed = freed = 0
    for e in listed.entries:
        if not e.complete and e.key.startswith(".") and not _orphan(listed.root / e.key):
            continue  # a build in progress
        for path in (listed.root / f"{e.key}.npy", listed.root / f"{e.key}.json",
                     listed.root / e.key):  # fmt: skip
            if path.is_file() and path.parent == listed.root:
                path.unlink(missing_ok=True)
        removed += 1
        freed += e.bytes
    return CacheReport(listed.root, [], removed, freed)
