"""The domain exceptions. The CLI catches :class:`GalaxyZooError` once, at the edge of the app, and
maps it to a one-line message and an exit code."""

from __future__ import annotations


class GalaxyZooError(Exception):
    """Base class: a message for the user (one or two lines naming the problem and the fix)."""

    exit_code = 1


class BadInputError(GalaxyZooError):
    """Bad usage or input: a missing/corrupt file, wrong CSV columns, an unknown model (exit 2)."""

    exit_code = 2


class JobFailedError(GalaxyZooError):
    """The job itself failed: network, diverged training, an interrupted download (exit 1)."""

    exit_code = 1


class Interrupted(GalaxyZooError):
    """The user interrupted the job (Ctrl-C); the message says what was kept (exit 130)."""

    exit_code = 130
