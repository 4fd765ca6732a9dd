"""SIGINT, SIGTERM and SIGHUP end a run or a sweep the same way.

The CLI installs the handlers itself (:func:`installed`), whatever dispositions it
inherited: a harness started with SIGINT ignored (a background job of a
non-interactive shell) still stops on Ctrl-C, and ``timeout``, SLURM, ``docker stop``
and systemd (SIGTERM) or a closed terminal (SIGHUP) are handled like Ctrl-C: the
worker's process group is ended, the finished repeats and the run are stored with
status ``interrupted``, and the exit code is 128 + the signal (130, 143, 129).

The first signal raises :class:`Interrupted` (a KeyboardInterrupt, so every ``except
KeyboardInterrupt`` handles it); later ones are recorded and ignored, so the clean-up
that stores the results is not itself interrupted. :func:`hold` defers the first one
across a few statements that must not be cut in half (starting a worker).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_received: int | None = None  # the first signal received since install
_raised = False  # whether Interrupted was raised for it
_held = 0  # depth of hold(): while > 0 the first signal is recorded, not raised


class Interrupted(KeyboardInterrupt):
    """A run or sweep was stopped by ``signum``; exit with ``exit_code``."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum

    @property
    def cause(self) -> str:
        if self.signum == signal.SIGINT:
            return "interrupted by the user (Ctrl-C, SIGINT)"
        return f"interrupted by {signal.Signals(self.signum).name}"


def exit_code(exc: BaseException) -> int:
    """128 + the signal of ``exc`` (130 for a plain KeyboardInterrupt)."""
    return getattr(exc, "exit_code", 128 + signal.SIGINT)


def cause(exc: BaseException) -> str:
    return exc.cause if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT).cause


def received() -> int | None:
    """The first signal received since the handlers were installed, if any."""
    return _received


def _handler(signum: int, frame: FrameType | None) -> None:
    global _received, _raised
    if _received is None:
        _received = signum
    if _raised or _held:
        return  # already stopping (or holding): the clean-up must finish
    _raised = True
    raise Interrupted(_received)


def check() -> None:
    """Raises :class:`Interrupted` now if a signal arrived while held."""
    global _raised
    if _received is not None and not _raised:
        _raised = True
        raise Interrupted(_received)


@contextlib.contextmanager
def hold() -> Iterator[None]:
    """Defers the first signal until :func:`check` (statements that must not be cut)."""
    global _held
    _held += 1
    try:
        yield
    finally:
        _held -= 1


def install() -> dict[int, object]:
    """Installs the handlers; returns the previous ones (for :func:`restore`)."""
    global _received, _raised, _held
    _received, _raised, _held = None, False, 0
    previous: dict[int, object] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for sig in HANDLED:
        previous[sig] = signal.signal(sig, _handler)
    # A process started with SIGINT blocked (not just ignored) would never see it.
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
    return previous


def restore(previous: dict[int, object]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)  # type: ignore[arg-type]


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """The handlers for the duration of a command (the previous ones come back after)."""
    previous = install()
    try:
        yield
    finally:
        restore(previous)
