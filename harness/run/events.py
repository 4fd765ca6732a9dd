"""Structured events between a worker and the orchestrator: one JSON object per line.

The worker appends events to a file (``events.jsonl`` in the repeat's folder) rather
than to stdout, so framework chatter on stdout/stderr can never corrupt them. Every
event carries ``event`` (its kind), ``t`` (time.monotonic(), comparable across
processes on one machine, the monitor uses the same clock), ``wall`` (Unix time)
and ``rank`` (the worker process).

Kinds: ``start`` (framework, versions, devices, effective threads), ``data``, ``plan``,
``phase`` (name, state start|end), ``steps`` (a chunk of measurement windows
``[[steps, seconds], ...]``, plus ``device_seconds`` with device timers), ``eta`` (time
left in the repeat), ``timing`` (mode, window size, how warmup ended and how the length
was decided), ``eval_compile`` (seconds spent compiling the evaluation in setup), ``compile``
(seconds spent compiling the training step ahead, where the backend can),
``loss``, ``data_wait``, ``validation``, ``memory``, ``info``, ``error`` (kind
oom|error, message, traceback) and ``end`` (status).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from harness.store.strictjson import dumps as strict_dumps


class Emitter:
    """Writes events from a worker process. Safe to share one file between ranks."""

    def __init__(self, path: str | os.PathLike[str] | None, rank: int = 0) -> None:
        self.rank = rank
        self._file: IO[str] | None = None
        if path is not None:
            # O_APPEND: lines from several ranks never overwrite each other.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._file = os.fdopen(fd, "w", buffering=1)

    def emit(self, event: str, **fields: Any) -> None:
        if self._file is None:
            return
        record = {"event": event, "t": time.monotonic(), "wall": time.time(), "rank": self.rank}
        record.update(fields)
        # strict JSON: a NaN or infinite value (a diverged loss) is written as null
        self._file.write(strict_dumps(record) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_events(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All complete events in ``path``; a torn last line (a killed worker) is skipped."""
    return list(iter_events(Path(path).read_text(errors="replace").splitlines()))


def iter_events(lines: list[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "event" in record:
            yield record


class EventTail:
    """Follows a growing events file from the orchestrator: the one reading of the events.

    Poll while the worker lives (live progress), then once with ``final=True`` after it
    has ended: together the polls return every event :func:`read_events` would."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = ""

    def poll(self, *, final: bool = False) -> list[dict[str, Any]]:
        """The events completed since the last poll. ``final``: the writer has ended, so a
        last line without a newline is complete (parsed; skipped if torn)."""
        try:
            with self.path.open("r", errors="replace") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
                self._offset = handle.tell()
        except FileNotFoundError:
            chunk = ""
        text = self._partial + chunk
        lines = text.split("\n")
        self._partial = "" if final else lines.pop()  # an incomplete line waits
        return list(iter_events(lines))
