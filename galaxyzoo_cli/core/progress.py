"""How library functions report progress without knowing about terminals.

Long-running library functions take a ``reporter`` argument. The CLI passes one that draws rich
progress bars on stderr (only when stderr is a terminal) and prints messages; the default
:data:`SILENT` does nothing, so the library stays quiet when used from Python.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol


class Task(Protocol):
    def advance(self, n: float = 1) -> None: ...


class Reporter(Protocol):
    def task(
        self, description: str, total: float | None
    ) -> contextlib.AbstractContextManager[Task]:
        """A progress bar for ``total`` units (None: unknown)."""
        ...

    def log(self, message: str) -> None:
        """One line for a human reader (stderr)."""
        ...


class _NullTask:
    def advance(self, n: float = 1) -> None:
        pass


class SilentReporter:
    """Reports nothing."""

    @contextlib.contextmanager
    def task(self, description: str, total: float | None) -> Iterator[Task]:
        yield _NullTask()

    def log(self, message: str) -> None:
        pass


SILENT: Reporter = SilentReporter()
