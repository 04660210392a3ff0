"""File helpers: atomic writes and installs, so an interrupted job never leaves a half-written
file or folder."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from galaxyzoo_cli.core.errors import GalaxyZooError, os_error, os_error_in


@contextlib.contextmanager
def atomic_path(
    target: str | os.PathLike[str], suffix: str = "", size: int | None = None
) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it is renamed onto ``target``.

    On any exception (including KeyboardInterrupt) the temporary file is removed and ``target`` is
    left as it was. An operating-system error while writing (a full disk, a read-only folder…)
    becomes the one-line :func:`~galaxyzoo_cli.core.errors.os_error` naming ``target``; ``size``
    (bytes, when known) lets a full disk say how much was needed.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent
        )
    except OSError as e:
        raise os_error(e, target, size) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        tmp_path.chmod(0o666 & ~_umask())  # mkstemp makes it owner-only; a result follows the umask
        yield tmp_path
        os.replace(tmp_path, target)
    except GalaxyZooError:
        raise
    except Exception as e:  # an interrupt (BaseException) passes through as it is
        cause = os_error_in(e)
        if cause is None:
            raise
        own = cause.filename in (None, str(tmp_path), str(target))  # else a file being read
        written = tmp_path.stat().st_size if tmp_path.exists() else 0
        tmp_path.unlink(missing_ok=True)  # first, so that the message counts the space it held
        raise os_error(cause, target if own else cause.filename, max(size or 0, written)) from e
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    """The process's file-creation mask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    data = text.encode("utf-8")
    with atomic_path(target, size=len(data)) as tmp:
        tmp.write_bytes(data)


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, ±Infinity, numpy's too) replaced by None, numpy
    scalars and arrays made plain values, tuples made lists and paths made strings: what strict
    JSON can hold."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (bool, int, str)) or obj is None:
        return obj
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return json_safe(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


def to_json(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON text of ``obj`` (see :func:`json_safe`): ``null`` where a figure is missing,
    never NaN or Infinity, which JSON does not have and many parsers reject."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False)


def write_json_atomic(target: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as strict JSON (:func:`to_json`) atomically."""
    write_text_atomic(target, to_json(obj) + "\n")


def install_entries(src: Path, dest: Path, names: Sequence[str]) -> None:
    """Move the entries ``names`` of folder ``src`` into ``dest``, in order, replacing what
    ``dest`` holds under those names (an entry missing from ``src`` is removed from ``dest``).

    Each step is a rename, so a reader sees an old or a new entry, never half of one; the old
    trees are deleted at the end. Put a completion marker last in ``names``.
    """
    try:
        dest.mkdir(parents=True, exist_ok=True)
        trash = Path(tempfile.mkdtemp(prefix=".old-", dir=dest))
    except OSError as e:
        raise os_error(e) from None
    try:
        for name in names:
            old, new = dest / name, src / name
            if old.exists() or old.is_symlink():
                os.replace(old, trash / name)
            if new.exists():
                os.replace(new, old)
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; ``{}`` when it is missing, unreadable or not an object (what
    reads a run folder's records shows what it can)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
