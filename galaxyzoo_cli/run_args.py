"""The RUN arguments of the commands that read runs (evaluate, predict, plot, report): at least
one, each a run folder or a checkpoint inside one."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

from galaxyzoo_cli.errors import BadInputError
from galaxyzoo_cli.runs import RunRef, resolve_run

RunArg = TypeVar("RunArg", bound="str | os.PathLike[str]")


def require_runs(runs: RunArg | Sequence[RunArg]) -> list[RunArg]:
    """``runs`` as a list (one run given alone: a list of one, not of its path's characters);
    none at all is a :class:`BadInputError`."""
    if isinstance(runs, (str, os.PathLike)):
        return [runs]
    if not runs:
        raise BadInputError("give at least one RUN (a run folder or checkpoint).")
    return list(runs)


def resolve_runs(
    runs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
) -> list[RunRef]:
    """Each RUN's folder and the checkpoint to use (its ``weights/best.pt``, or the file given);
    none at all, or one that is neither, is a :class:`BadInputError` (before any work starts)."""
    return [resolve_run(run) for run in require_runs(runs)]
