"""Safe extraction of the Kaggle competition archive: zips nested at any depth, into the layout.

Archive members that would land outside the target folder (absolute paths, ``..``, symlinks,
device files) are refused before anything of that archive is written.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from galaxyzoo_cli.core.errors import BadInputError, JobFailedError
from galaxyzoo_cli.core.progress import SILENT, Reporter
from galaxyzoo_cli.data.catalogue import LABELS_CSV, TEST_IMAGES, TRAIN_IMAGES

BENCHMARKS_DIR = "benchmarks"
_IMAGE_NAME = re.compile(r"^[0-9]+\.(jpg|jpeg)$", re.IGNORECASE)
_CHUNK = 256  # members per extraction work item: big enough to amortise, small for smooth progress


@dataclass
class ExtractStats:
    """What :func:`extract_competition` wrote (unique file counts)."""

    n_train: int = 0
    n_test: int = 0
    labels: bool = False
    benchmarks: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def n_files(self) -> int:
        return self.n_train + self.n_test + int(self.labels) + len(self.benchmarks)


class CorruptArchiveError(JobFailedError):
    """An archive (or a zip nested in it) cannot be read; ``str`` names it and the cause."""


def _parts(name: str) -> list[str]:
    return [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]


def check_member(info: zipfile.ZipInfo, where: str) -> None:
    """Refuse a zip member that could land outside the folder it is extracted into.

    Absolute paths, drive letters, ``..`` components and entries whose Unix mode (zip external
    attributes) is a symlink, device, FIFO or socket raise :class:`BadInputError` naming the member.
    """
    name = info.filename
    norm = name.replace("\\", "/")
    problem = None
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        problem = "has an absolute path"
    elif ".." in norm.split("/"):
        problem = "has a '..' component"
    elif "\x00" in name:
        problem = "has a NUL byte in its name"
    else:
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            problem = "is a symlink or special file, not a regular file"
    if problem:
        raise BadInputError(
            f"archive member {name!r} in {where} {problem}; refusing to extract it (it would land "
            "outside the target folder). This is not the Kaggle archive: delete it."
        )


def _write_file(path: Path, data: bytes) -> None:
    # Plain os calls: one open/write/close per image, no Python buffering layers (141k files).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


class _Extractor:
    """Walks nested zips and writes their files into the layout under ``dest``."""

    def __init__(self, dest: Path, scratch: Path, reporter: Reporter, workers: int) -> None:
        self.dest = dest
        self.scratch = scratch
        self.reporter = reporter
        self.workers = workers
        self.images: dict[str, set[str]] = {TRAIN_IMAGES: set(), TEST_IMAGES: set()}
        self.stats = ExtractStats()

    def run_file(self, source: Path | IO[bytes], chain: tuple[str, ...]) -> None:
        where = " in ".join(reversed(chain))
        try:
            zf = zipfile.ZipFile(source)
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise CorruptArchiveError(f"{where} is not a readable zip ({e})") from None
        with zf:
            self._zip(zf, chain)

    def _zip(self, zf: zipfile.ZipFile, chain: tuple[str, ...]) -> None:
        where = " in ".join(reversed(chain))
        infos = zf.infolist()
        for info in infos:  # all of them first: nothing from a hostile archive gets written
            check_member(info, where)
        images: dict[str, list[zipfile.ZipInfo]] = {TRAIN_IMAGES: [], TEST_IMAGES: []}
        nested: list[zipfile.ZipInfo] = []
        for info in infos:
            parts = _parts(info.filename)
            if info.is_dir() or not parts:
                continue
            base = parts[-1]
            suffix = os.path.splitext(base)[1].lower()
            if "__MACOSX" in parts:  # macOS resource forks, named like the real files
                continue
            if suffix == ".zip":
                nested.append(info)
            elif suffix == ".csv":
                self._csv(zf, info, base, where)
            elif _IMAGE_NAME.match(base) and (folder := _image_folder(parts[:-1], chain)):
                images[folder].append(info)
        for folder, members in images.items():
            if members:
                self._images(zf, members, folder, chain)
        for info in nested:
            self._nested(zf, info, chain)

    def _read(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> bytes:
        try:
            return zf.read(info)  # checks the CRC
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as e:
            raise CorruptArchiveError(f"{info.filename} in {where} cannot be read ({e})") from None

    def _csv(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, base: str, where: str) -> None:
        data = self._read(zf, info, where)
        if base.lower() == LABELS_CSV:
            _write_file(self.dest / LABELS_CSV, data)
            self.stats.labels = True
        else:
            (self.dest / BENCHMARKS_DIR).mkdir(exist_ok=True)
            _write_file(self.dest / BENCHMARKS_DIR / base, data)
            if base not in self.stats.benchmarks:
                self.stats.benchmarks.append(base)

    def _images(
        self,
        zf: zipfile.ZipFile,
        members: list[zipfile.ZipInfo],
        folder: str,
        chain: tuple[str, ...],
    ) -> None:
        where = " in ".join(reversed(chain))
        out = self.dest / folder
        out.mkdir(exist_ok=True)
        self.images[folder].update(_parts(i.filename)[-1] for i in members)

        def work(chunk: list[zipfile.ZipInfo]) -> int:
            # ZipFile reads are thread-safe (a lock around the shared file); decompression, CRC
            # and the file writes release the GIL, so threads overlap them.
            for info in chunk:
                _write_file(out / _parts(info.filename)[-1], self._read(zf, info, where))
            return len(chunk)

        chunks = [members[i : i + _CHUNK] for i in range(0, len(members), _CHUNK)]
        with self.reporter.task(f"Extracting {chain[-1]} → {folder}/", total=len(members)) as task:
            pool = ThreadPoolExecutor(self.workers, thread_name_prefix="galaxyzoo-extract")
            try:
                for n in pool.map(work, chunks):
                    task.advance(n)
            finally:
                # On an error or Ctrl-C, do not start the chunks still queued.
                pool.shutdown(wait=True, cancel_futures=True)

    def _nested(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, chain: tuple[str, ...]) -> None:
        where = " in ".join(reversed(chain))
        name = _parts(info.filename)[-1]
        # A ZipFile over a member stream would re-decompress from the start on every backward
        # seek (Python < 3.12), so the inner zip is read out first: into memory when it fits
        # comfortably, since extraction is bound by disk writes (this saves ~1.8 GB of them),
        # else into a scratch file.
        if info.file_size <= _memory_budget():
            self.run_file(io.BytesIO(self._read(zf, info, where)), (*chain, name))
            return
        fd, tmp = tempfile.mkstemp(suffix=".zip", dir=self.scratch)
        tmp_path = Path(tmp)
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    with zf.open(info) as src:
                        shutil.copyfileobj(src, out, 1 << 22)
                except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
                    raise CorruptArchiveError(f"{name} in {where} cannot be read ({e})") from None
            self.run_file(tmp_path, (*chain, name))
        finally:
            tmp_path.unlink(missing_ok=True)


def _memory_budget() -> int:
    """Bytes of one inner zip we are willing to hold in memory: a quarter of the free RAM."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
    except (ValueError, OSError, AttributeError):  # not on every platform
        return 0


def _image_folder(dirs: list[str], chain: tuple[str, ...]) -> str | None:
    """The layout folder of an image: the nearest enclosing folder or zip named like one."""
    for name in reversed([os.path.splitext(z)[0] for z in chain] + dirs):
        for folder in (TRAIN_IMAGES, TEST_IMAGES):
            if name.lower() == folder:
                return folder
    return None


def extract_competition(
    archive: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    reporter: Reporter = SILENT,
    workers: int | None = None,
) -> ExtractStats:
    """Extract the competition zip (zips nested at any depth) into the layout under ``dest``.

    Writes ``images_training_rev1/<id>.jpg``, ``images_test_rev1/<id>.jpg``,
    ``training_solutions_rev1.csv`` and other CSVs into ``benchmarks/``, wherever they sit in the
    archive (an image's folder is the nearest enclosing folder or zip named like one). Other files
    are left out. ``dest`` must be empty or absent. Unsafe members raise
    :class:`BadInputError` (see :func:`check_member`); unreadable zips raise
    :class:`CorruptArchiveError`. ``workers``: threads writing images (default: CPUs + 2, at most 4:
    more threads contend for the one directory).
    """
    start = time.perf_counter()
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise BadInputError(f"{dest}: not empty. Extract into an empty or new folder.")
    workers = workers or min(4, (os.cpu_count() or 1) + 2)
    with tempfile.TemporaryDirectory(prefix=".nested-", dir=dest) as scratch:
        ex = _Extractor(dest, Path(scratch), reporter, workers)
        ex.run_file(archive, (archive.name,))
    stats = ex.stats
    stats.n_train = len(ex.images[TRAIN_IMAGES])
    stats.n_test = len(ex.images[TEST_IMAGES])
    stats.seconds = time.perf_counter() - start
    return stats
