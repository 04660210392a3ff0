"""Where a result came from, and where it may be written.

Every result file (evaluation, submission, figure, report, export) records its provenance: the
runs and the SHA-256 of each checkpoint, the settings that shape the result (split, TTA, …), the
inputs (folder, number of images), the package version and the time. It is kept inside the file
when the format allows (JSON, PNG text) and beside it otherwise (``<file>.json``).

A default output path never replaces a result made from different inputs: such a file keeps its
name and the new result gets the next free one (``submission-2.csv``), as run folders do. The same
inputs again replace the same result. An explicit ``--out`` may replace anything, and says so.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from galaxyzoo_cli._version import __version__
from galaxyzoo_cli.core.files import write_json_atomic
from galaxyzoo_cli.core.progress import Reporter

PNG_KEY = "galaxyzoo-provenance"
_VOLATILE = ("created", "version", "seconds")
"""What may differ between two makings of the same result."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_entry(run_dir: Path, checkpoint: Path) -> dict[str, str]:
    """One run of a result: its folder, the checkpoint used and that file's SHA-256."""
    return {
        "run": str(run_dir.resolve()),
        "checkpoint": str(checkpoint.resolve()),
        "sha256": file_sha256(checkpoint),
    }


def record(command: str, runs: Sequence[dict[str, str]], **facts: Any) -> dict[str, Any]:
    """The provenance of a result made by ``command`` from ``runs`` (see :func:`run_entry`)."""
    return {
        "tool": "galaxyzoo-cli",
        "version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "runs": list(runs),
        **facts,
    }


def sidecar(path: Path) -> Path:
    """The provenance file beside a result that cannot hold it (CSV, ONNX, …)."""
    return path.with_name(path.name + ".json")


def read(path: Path) -> dict[str, Any] | None:
    """The provenance recorded in or beside a result file (None: none, or unreadable)."""
    try:
        if path.suffix == ".json":
            found = json.loads(path.read_text(encoding="utf-8")).get("provenance")
        elif path.suffix == ".png":
            from PIL import Image

            with Image.open(path) as im:
                found = json.loads(im.text[PNG_KEY])
        else:
            found = json.loads(sidecar(path).read_text(encoding="utf-8"))
            if isinstance(found, dict) and isinstance(found.get("provenance"), dict):
                found = found["provenance"]  # a spec file holding it (an export's)
    except (OSError, ValueError, KeyError, AttributeError):
        return None
    return found if isinstance(found, dict) else None


def _identity(prov: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if prov is None else {k: v for k, v in prov.items() if k not in _VOLATILE}


def output_path(
    default: Path, explicit: Path | None, prov: dict[str, Any], reporter: Reporter
) -> Path:
    """Where to write a result: ``explicit`` (replacing what is there, with a note), else
    ``default`` unless it holds a result of other inputs: then ``<stem>-2<suffix>``, …"""
    if explicit is not None:
        if explicit.exists():
            reporter.log(f"Replacing {explicit} (given with --out).")
        return explicit
    candidate, n = default, 1
    while candidate.exists() and _identity(read(candidate)) != _identity(prov):
        n += 1
        candidate = default.with_name(f"{default.stem}-{n}{default.suffix}")
    if candidate != default:
        reporter.log(f"{default} holds a result of other inputs; writing {candidate.name}.")
    return candidate


def write_sidecar(path: Path, prov: dict[str, Any]) -> None:
    write_json_atomic(sidecar(path), prov)
