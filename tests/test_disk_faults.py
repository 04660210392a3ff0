"""Faults of real machines, made for real: a full disk (a small tmpfs), a read-only folder (a
read-only bind mount), a file where a folder should be, too many open files, and hostile images
(decompression bombs, absurd shapes, enormous FITS headers, link loops, vanished files).

Mounting needs root (CAP_SYS_ADMIN). Where it is not permitted (a user's laptop) the full disk is
simulated with a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored), which fails the same writes
through the same code path, and the read-only tests are skipped with the reason. CI runs as root
and sets GALAXYZOO_TEST_MOUNTS=required, so there a refused mount fails instead of skipping;
GALAXYZOO_TEST_MOUNTS=never tries the simulation instead.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import os
import resource
import shutil
import signal
import struct
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from galaxyzoo_cli.cli import app
from galaxyzoo_cli.core.errors import BadInputError, GalaxyZooError, JobFailedError, os_error
from galaxyzoo_cli.core.files import write_text_atomic
from galaxyzoo_cli.data.cache import load_images
from galaxyzoo_cli.data.catalogue import TRAIN_IMAGES, list_images
from galaxyzoo_cli.data.images import InputSpec, load_image
from galaxyzoo_cli.training.run_folder import load_checkpoint

runner = CliRunner()
TINY = ["--model", "test_tiny", "--batch-size", "16", "--device", "cpu", "--patience", "0"]
LEAVE = 16_000
"""Bytes left free on the full disk: config.json and status.json fit, a checkpoint does not."""


# ---------------------------------------------------------------------------------------------
# The faults
# ---------------------------------------------------------------------------------------------


def _mount(*args: str) -> str | None:
    """Run mount (or umount); None when it worked, else why not."""
    if os.environ.get("GALAXYZOO_TEST_MOUNTS") == "never":
        return "GALAXYZOO_TEST_MOUNTS=never"
    if os.geteuid() != 0:
        return "mounting needs root"
    try:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    return None if done.returncode == 0 else (done.stderr.strip() or f"exit {done.returncode}")


def _unmount(folder: Path) -> None:
    """Unmount; lazily if a memory map that a failed test still holds keeps the disk busy."""
    gc.collect()
    if _mount("umount", str(folder)) is not None:
        _mount("umount", "-l", str(folder))


def _cannot_mount(why: str) -> None:
    """Skip (a laptop) or, where CI requires the real fault, fail."""
    message = f"cannot mount here ({why}); run as root (CI does) to make this fault for real"
    if os.environ.get("GALAXYZOO_TEST_MOUNTS") == "required":
        pytest.fail(message)
    pytest.skip(message)


class Disk:
    """A folder on a small disk that :meth:`fill` makes (almost) full."""

    def __init__(self, folder: Path, mounted: bool) -> None:
        self.folder, self.mounted = folder, mounted
        self.message = "no space left on the disk" if mounted else "file-size limit"
        self.fix = "(`galaxyzoo cache clear`" if mounted else "(`ulimit -f unlimited`)"

    @contextlib.contextmanager
    def full(self) -> Iterator[None]:
        """Leave :data:`LEAVE` bytes free: a filler file on the tmpfs; without a mount, a
        file-size limit of that many bytes on this process (restored afterwards)."""
        if self.mounted:
            filler = self.folder / "filler"
            free = shutil.disk_usage(self.folder).free
            filler.write_bytes(b"\0" * max(0, free - LEAVE))
            try:
                yield
            finally:
                filler.unlink()
            return
        old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
        old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (LEAVE, old_limit[1]))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
            signal.signal(signal.SIGXFSZ, old_handler)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    folder = tmp_path / "disk"
    folder.mkdir()
    why = _mount("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder))
    if why is not None and os.environ.get("GALAXYZOO_TEST_MOUNTS") == "required":
        pytest.fail(f"cannot mount a tmpfs ({why}); CI must make the full disk for real")
    yield Disk(folder, mounted=why is None)
    if why is None:
        _unmount(folder)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A folder (holding a file, ``kept.txt``) that cannot be written: a read-only bind mount."""
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "kept.txt").write_text("kept\n")
    why = _mount("mount", "--bind", str(folder), str(folder))
    if why is not None:
        _cannot_mount(why)
    why = _mount("mount", "-o", "remount,bind,ro", str(folder))
    if why is not None:
        _mount("umount", str(folder))
        _cannot_mount(why)
    yield folder
    _unmount(folder)


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if p.name.endswith(".tmp")]


def _fails(args: list[str], code: int) -> str:
    """Run the CLI, expect exit ``code`` and one error line without a traceback; its message."""
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not a traceback
    reported = json.loads(result.stdout.strip().splitlines()[-1])
    assert reported["exit_code"] == code
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    return str(reported["error"])


def _train(data: Path, runs: Path, *extra: str) -> dict:
    result = runner.invoke(
        app, ["train", *TINY, "--data-dir", str(data), "--runs-dir", str(runs), "--json", *extra]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ---------------------------------------------------------------------------------------------
# A full disk
# ---------------------------------------------------------------------------------------------


def test_full_disk_while_training_keeps_the_last_checkpoint(
    synthetic_data: Path, disk: Disk
) -> None:
    run = Path(_train(synthetic_data, disk.folder, "--epochs", "1", "--name", "r")["run_dir"])
    before = (run / "weights" / "last.pt").read_bytes()
    metrics = (run / "metrics.csv").read_text()
    with disk.full():
        message = _fails(["train", "--resume", str(run), "--epochs", "3"], 1)
    assert disk.message in message and disk.fix in message and str(run / "weights") in message
    assert f"holds epoch 1. Continue with: galaxyzoo train --resume {run} --epochs 3" in message
    assert (run / "weights" / "last.pt").read_bytes() == before  # the last good one, whole
    assert load_checkpoint(run / "weights" / "last.pt").progress.epoch == 1
    assert (run / "metrics.csv").read_text() == metrics
    assert not _temporaries(disk.folder)
    again = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "2", "--json"])
    assert again.exit_code == 0, again.output  # once there is room, the run continues
    assert json.loads(again.stdout)["epochs_run"] == 2


def test_full_disk_at_the_first_checkpoint_says_there_is_nothing_to_resume(
    synthetic_data: Path, disk: Disk
) -> None:
    with disk.full():
        message = _fails(["train", *TINY, "--epochs", "2", "--name", "r", "--no-cache",
                          "--data-dir", str(synthetic_data), "--runs-dir", str(disk.folder)],
                         1)  # fmt: skip
    assert disk.message in message and "nothing to resume" in message
    assert not list((disk.folder / "r" / "weights").iterdir())
    assert json.loads((disk.folder / "r" / "config.json").read_text())["settings"]["epochs"] == 2
    assert not _temporaries(disk.folder)


def test_full_disk_while_predicting_keeps_the_earlier_predictions(
    synthetic_data: Path, tmp_path: Path, disk: Disk
) -> None:
    run = _train(synthetic_data, tmp_path / "runs", "--epochs", "1")["run_dir"]
    out = disk.folder / "predictions.csv"
    args = ["predict", run, "--images", str(synthetic_data / TRAIN_IMAGES), "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    earlier = out.read_bytes()
    assert len(earlier) > LEAVE  # too large for what the full disk leaves
    with disk.full():
        message = _fails(args, 1)
    assert message.startswith(f"{out}: ") and disk.message in message and disk.fix in message
    if disk.mounted:
        assert "needs at least" in message and "free)" in message and "--out" in message
    assert out.read_bytes() == earlier
    assert not _temporaries(disk.folder)


def test_full_disk_in_library_writes_is_an_error_naming_the_file(disk: Disk) -> None:
    target = disk.folder / "big.json"
    with disk.full(), pytest.raises(JobFailedError, match=disk.message) as caught:
        write_text_atomic(target, "x" * 100_000)
    assert str(caught.value).startswith(f"{target}:") and caught.value.exit_code == 1
    assert not target.exists() and not _temporaries(disk.folder)


def test_a_disk_filling_before_the_cache_is_written_is_an_error(
    synthetic_data: Path, disk: Disk, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not disk.mounted:
        _cannot_mount("a file-size limit stops a memory map with SIGBUS, not an error")
    _, paths = list_images(synthetic_data / TRAIN_IMAGES)
    spec = InputSpec(channels=3, size=48)  # 830 KB: more than the whole disk
    # Another job fills the disk between the room check and the write: the check sees room.
    monkeypatch.setattr("galaxyzoo_cli.data.cache.DISK_MARGIN", -(1 << 30))
    with pytest.raises(JobFailedError, match="no space left on the disk") as caught:
        load_images(paths, spec, use_cache=True, cache_dir=disk.folder)
    message = str(caught.value)
    assert message.startswith(str(disk.folder)) and "needs at least 829." in message
    assert not list(disk.folder.iterdir())


# ---------------------------------------------------------------------------------------------
# Read-only folders, files in the way, too many open files
# ---------------------------------------------------------------------------------------------


def test_read_only_runs_folder_and_out(
    synthetic_data: Path, tmp_path: Path, read_only: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "fresh-cache"
    monkeypatch.setenv("GALAXYZOO_CACHE_DIR", str(cache))
    message = _fails(["train", *TINY, "--epochs", "1", "--data-dir", str(synthetic_data),
                      "--runs-dir", str(read_only / "runs")], 2)  # fmt: skip
    assert message.startswith(f"{read_only}: is on a read-only file system")
    assert "--runs-dir" in message
    assert not cache.exists() or not list(cache.iterdir())  # refused before decoding any image
    run = _train(synthetic_data, tmp_path / "runs", "--epochs", "1")["run_dir"]
    message = _fails(["predict", run, "--images", str(synthetic_data / TRAIN_IMAGES), "--out",
                      str(read_only / "kept.txt")], 2)  # fmt: skip
    assert message.startswith(f"{read_only}: is on a read-only file system")
    assert f"writing {read_only / 'kept.txt'})" in message and "--out" in message
    assert (read_only / "kept.txt").read_text() == "kept\n"
    assert sorted(p.name for p in read_only.iterdir()) == ["kept.txt"]


def test_a_file_where_a_folder_should_be(synthetic_data: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "runs"
    blocker.write_text("not a folder\n")
    message = _fails(["train", *TINY, "--epochs", "1", "--data-dir", str(synthetic_data),
                      "--runs-dir", str(blocker / "deeper")], 2)  # fmt: skip
    assert message.startswith(f"{blocker}: is a file where a folder is needed")
    run = _train(synthetic_data, tmp_path / "good", "--epochs", "1")["run_dir"]
    images = str(synthetic_data / TRAIN_IMAGES)
    message = _fails(["predict", run, "--images", images, "--out", str(blocker / "p.csv")], 2)
    assert message.startswith(f"{blocker}: is a file where a folder is needed")
    message = _fails(["predict", run, "--images", images, "--out", str(tmp_path)], 2)
    assert message.startswith(f"{tmp_path}: is a folder; give a file name")
    assert blocker.read_text() == "not a folder\n"


def test_too_many_open_files_is_a_one_line_error(synthetic_data: Path, tmp_path: Path) -> None:
    image = list_images(synthetic_data / TRAIN_IMAGES)[1][0]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    opened: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, soft), hard))
    try:
        with contextlib.suppress(OSError):
            while True:
                opened.append(os.open(os.devnull, os.O_RDONLY))
        with pytest.raises(JobFailedError, match=r"too many open files \(limit 256\)") as caught:
            write_text_atomic(tmp_path / "x.json", "{}")
        with pytest.raises(JobFailedError, match="too many open files"):  # not "unreadable"
            load_image(image, InputSpec(channels=1, size=16))
    finally:
        for fd in opened:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert "ulimit -n" in str(caught.value) and str(caught.value).startswith(str(tmp_path))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("code", "kind", "words"),
    [
        (errno.ENOSPC, JobFailedError, "no space left on the disk ("),
        (errno.EDQUOT, JobFailedError, "(disk quota exceeded)"),
        (errno.EFBIG, JobFailedError, "`ulimit -f`"),
        (errno.EROFS, BadInputError, "is on a read-only file system"),
        (errno.EACCES, BadInputError, "is not writable by you"),
        (errno.EPERM, BadInputError, "is not writable by you"),
        (errno.EMFILE, JobFailedError, "too many open files"),
        (errno.ENFILE, JobFailedError, "too many open files"),
        (errno.ELOOP, BadInputError, "a loop of symbolic links"),
        (errno.ENOENT, BadInputError, "no such file or folder"),
        (errno.EIO, JobFailedError, "(EIO)"),
    ],
)
def test_each_os_error_names_the_path_and_the_exit_code(
    tmp_path: Path, code: int, kind: type[GalaxyZooError], words: str
) -> None:
    error = os_error(OSError(code, os.strerror(code)), tmp_path / "f.csv")
    assert type(error) is kind and words in str(error)
    assert str(tmp_path) in str(error) and "\n" not in str(error)


# ---------------------------------------------------------------------------------------------
# Hostile and huge images
# ---------------------------------------------------------------------------------------------


def _png_header(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes that claims ``width`` × ``height`` grey pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))  # fmt: skip


def _fits_claiming(path: Path, side: int) -> None:
    """A FITS file of one 2880-byte header block whose axes claim ``side`` × ``side`` floats."""
    cards = ["SIMPLE  =                    T", "BITPIX  =                  -32",
             "NAXIS   =                    2", f"NAXIS1  = {side:>20}", f"NAXIS2  = {side:>20}",
             "END"]  # fmt: skip
    path.write_bytes("".join(c.ljust(80) for c in cards).ljust(2880).encode("ascii"))


@pytest.fixture
def hostile(synthetic_data: Path, tmp_path: Path) -> Path:
    """Three good cutouts and every kind of hostile file, with a link loop among the folders."""
    folder = tmp_path / "cutouts"
    (folder / "deeper").mkdir(parents=True)
    _, paths = list_images(synthetic_data / TRAIN_IMAGES)
    for name, src in zip(("good1", "good2", "deeper/good3"), paths, strict=False):
        shutil.copy(src, folder / f"{name}.jpg")
    (folder / "bomb.png").write_bytes(_png_header(30000, 30000))
    (folder / "huge.png").write_bytes(_png_header(10000, 10000))  # under 2x Pillow's limit
    (folder / "sliver.png").write_bytes(_png_header(4000, 20))
    _fits_claiming(folder / "claims.fits", 100_000)
    (folder / "deeper" / "loop").symlink_to("..")  # a folder loop: walked once
    (folder / "itself.jpg").symlink_to("itself.jpg")  # a link loop among the files
    (folder / "nowhere.jpg").symlink_to("missing.jpg")  # a broken link (a vanished file)
    return folder


# The library silences these two warnings (it names the files itself); pytest resets the filters.
quiet = pytest.mark.filterwarnings("ignore:Image size", "ignore:File may have been truncated")
HOSTILE = ["bomb", "claims", "huge", "itself", "nowhere", "sliver"]


@quiet
def test_hostile_images_are_skipped_and_named(
    synthetic_data: Path, tmp_path: Path, hostile: Path
) -> None:
    run = _train(synthetic_data, tmp_path / "runs", "--epochs", "1")["run_dir"]
    out = tmp_path / "p.csv"
    result = runner.invoke(
        app, ["predict", run, "--images", str(hostile), "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    skipped = json.loads(result.stdout)["skipped"]
    assert sorted(skipped["unreadable image"]) == HOSTILE
    rows = out.read_text().splitlines()[1:]
    assert sorted(line.split(",")[0] for line in rows) == ["good1", "good2", "good3"]
    strict = _fails(["predict", run, "--images", str(hostile), "--out", str(tmp_path / "s.csv"),
                     "--strict"], 2)  # fmt: skip
    assert f"{len(HOSTILE)} with an unreadable image ({', '.join(HOSTILE[:5])}, …)" in strict
    assert not (tmp_path / "s.csv").exists()


@quiet
def test_why_each_hostile_image_was_refused(hostile: Path) -> None:
    spec = InputSpec(channels=3, size=32)
    reasons = {
        "bomb.png": r"exceeds limit of 178956970 pixels, could be decompression bomb",
        "huge.png": r"10000 x 10000 pixels, more than the 89,478,485 .*decompression bomb",
        "sliver.png": r"4000 x 20 pixels: more than 10:1",
        "claims.fits": r"header claims 100000 x 100000 values",
        "itself.jpg": r"Too many levels of symbolic links",
        "nowhere.jpg": r"No such file or directory",
    }
    for name, reason in reasons.items():
        with pytest.raises(BadInputError, match=reason):
            load_image(hostile / name, spec)


def test_a_file_that_vanishes_after_listing_is_skipped(
    synthetic_data: Path, tmp_path: Path
) -> None:
    folder = Path(shutil.copytree(synthetic_data / TRAIN_IMAGES, tmp_path / "images"))
    _, paths = list_images(folder)
    paths[3].unlink()
    spec = InputSpec(channels=1, size=16)
    for use_cache in (True, False):
        decoded = load_images(paths, spec, use_cache=use_cache, cache_dir=tmp_path / "cache")
        assert list(decoded.unreadable) == [3] and "No such file" in decoded.unreadable[3]
        assert not np.asarray(decoded.pixels[3]).any() and np.asarray(decoded.pixels[4]).any()
