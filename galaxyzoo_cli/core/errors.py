"""The domain exceptions. The CLI catches :class:`GalaxyZooError` once, at the edge of the app, and
maps it to a one-line message and an exit code.

:func:`os_error` is the one place where an operating-system error (a full disk, a read-only
folder, too many open files…) becomes such a message: it names the path and the fix.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar


class GalaxyZooError(Exception):
    """Base class: a message for the user (one or two lines naming the problem and the fix)."""

    exit_code = 1


class BadInputError(GalaxyZooError):
    """Bad usage or input: a missing/corrupt file, wrong CSV columns, an unknown model (exit 2)."""

    exit_code = 2


RunArg = TypeVar("RunArg", bound="str | os.PathLike[str]")


def require_runs(runs: RunArg | Sequence[RunArg]) -> list[RunArg]:
    """The RUN arguments of a command that reads runs as a list (one run given alone: a list of
    one, not of its path's characters); none at all is a :class:`BadInputError`."""
    if isinstance(runs, (str, os.PathLike)):
        return [runs]
    if not runs:
        raise BadInputError("give at least one RUN (a run folder or checkpoint).")
    return list(runs)


class JobFailedError(GalaxyZooError):
    """The job itself failed: network, diverged training, an interrupted download (exit 1)."""

    exit_code = 1


class Interrupted(GalaxyZooError):
    """The user interrupted the job (Ctrl-C, exit 130) or a batch scheduler stopped it (SIGTERM,
    exit 143; SIGUSR1, exit 138); the message says what was kept."""

    exit_code = 130

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code


_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}
_TOO_MANY_FILES = {errno.EMFILE, errno.ENFILE}
_NOT_A_FOLDER = {errno.ENOTDIR, errno.EEXIST}


def os_error(
    e: OSError, path: str | os.PathLike[str] | None = None, needed: int | None = None
) -> GalaxyZooError:
    """The one-line message for an operating-system error on ``path`` (default: the error's own
    file name), with the fix.

    A full disk or quota (``needed``: about the bytes the write needed, when known), too many open
    files and a file larger than ``ulimit -f`` are failed jobs (exit 1); a read-only or forbidden
    folder and a file standing where a folder should be are bad paths given by the user (exit 2).
    """
    where = Path(path if path is not None else e.filename or "?")
    code = e.errno
    if code in _NO_SPACE:
        quota = " (disk quota exceeded)" if code == errno.EDQUOT else ""
        wanted = f"needs at least {size(needed)}, " if needed else ""
        return JobFailedError(
            f"{where}: no space left on the disk{quota} ({wanted}{size(free_space(where))} free). "
            "Free some space (`galaxyzoo cache clear` removes the decoded-image caches) or write "
            "to another disk (--runs-dir, --out); nothing half-written was kept."
        )
    if code == errno.EFBIG:
        return JobFailedError(
            f"{where}: the file grew past this shell's file-size limit (`ulimit -f`). Raise the "
            "limit (`ulimit -f unlimited`); nothing half-written was kept."
        )
    if code in _READ_ONLY:
        folder = _existing(where)
        folder = folder if folder.is_dir() else folder.parent
        why = "is on a read-only file system" if code == errno.EROFS else "is not writable by you"
        return BadInputError(
            f"{folder}: {why} (writing {where}). Give a folder you can write to (--runs-dir, "
            "--out, --data-dir, or GALAXYZOO_CACHE_DIR for the image cache)."
        )
    if code in _TOO_MANY_FILES:
        return JobFailedError(
            f"{where}: too many open files (limit {_open_files_limit()}). Raise it with "
            "`ulimit -n 4096`, or decode with fewer --workers."
        )
    if code == errno.EISDIR:
        return BadInputError(f"{where}: is a folder; give a file name (e.g. --out FILE.csv).")
    if code in _NOT_A_FOLDER:
        blocker = _file_in_the_way(where)
        if blocker is not None:
            return BadInputError(
                f"{blocker}: is a file where a folder is needed (for {where}). Move it away or "
                "give another folder."
            )
    if code == errno.ELOOP:
        return BadInputError(f"{where}: a loop of symbolic links. Fix or remove the link.")
    if code == errno.ENOENT:
        return BadInputError(f"{where}: no such file or folder (was it moved or deleted?).")
    name = errno.errorcode.get(code or 0, "")
    return JobFailedError(f"{where}: {e.strerror or e}{f' ({name})' if name else ''}.")


def os_error_in(e: BaseException) -> OSError | None:
    """The operating-system error behind ``e``: ``e`` itself, or its cause or context (PyTorch
    turns a failed write into a RuntimeError whose context is the OSError)."""
    seen: set[int] = set()
    current: BaseException | None = e
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and current.errno is not None:
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def size(nbytes: float) -> str:
    """Bytes for people: 512 B, 1.5 MB, 20.3 GB."""
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1000 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    return f"{nbytes:.1f} TB"


def free_space(path: Path) -> int:
    """Free bytes on the disk holding ``path`` (or its nearest existing folder); 0 if unknown."""
    try:
        return shutil.disk_usage(_existing(path)).free
    except OSError:
        return 0


def _existing(path: Path) -> Path:
    """``path`` if it exists, else its nearest existing parent."""
    for candidate in (path, *path.absolute().parents):
        if candidate.exists():
            return candidate
    return Path("/")


def _file_in_the_way(path: Path) -> Path | None:
    """The first part of ``path`` (from the root down) that exists and is not a folder."""
    for candidate in reversed((path, *path.absolute().parents)):
        if candidate.exists() and not candidate.is_dir():
            return candidate
    return None


def _open_files_limit() -> str:
    try:
        import resource

        return str(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    except (ImportError, OSError, ValueError):
        return "unknown"
