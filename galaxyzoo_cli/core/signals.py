"""Stopping on a batch scheduler's signal as on Ctrl-C.

SLURM, PBS, Kubernetes and torchrun stop a job with SIGTERM (then SIGKILL after a grace period),
and SLURM's ``--signal=USR1@SECONDS`` warns with SIGUSR1 that the time limit is near. Inside
:func:`stop_on_signals` either signal raises :class:`Stop`, a ``KeyboardInterrupt``, so a job
stops the way it does on Ctrl-C: temporary files removed, the last good checkpoint kept, the
resume command said. The exit status is 128 + the signal's number, as a shell reports a process
killed by it: 143 for SIGTERM, 138 for SIGUSR1 (so a job script can tell a time-limit warning,
worth a requeue, from a cancel).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name)
)
"""The signals that stop a job cleanly (SIGUSR1 does not exist on Windows)."""


class Stop(KeyboardInterrupt):
    """A scheduler asked the job to stop (SIGTERM or SIGUSR1)."""

    def __init__(self, signum: int) -> None:
        self.signal_name = signal.Signals(signum).name
        super().__init__(self.signal_name)
        self.exit_code = 128 + signum


def how_stopped(e: KeyboardInterrupt) -> tuple[str, int]:
    """What stopped the job, in words, and the exit status: ("interrupted", 130) for Ctrl-C,
    ("stopped by SIGTERM", 143) for a scheduler's signal."""
    if isinstance(e, Stop):
        return f"stopped by {e.signal_name}", e.exit_code
    return "interrupted", 130


_installed = threading.Event()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within this block (or a function decorated with it), SIGTERM and SIGUSR1 raise
    :class:`Stop`; the former handlers come back after it. The first signal counts: later ones
    are ignored while the job cleans up. Nested blocks and other threads than the main one (where
    Python cannot handle signals) change nothing."""
    if _installed.is_set() or threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise Stop(signum)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    _installed.set()
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
        _installed.clear()
