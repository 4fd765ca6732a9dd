"""Live progress of a run on the terminal, fed by the worker's events.

The worker sends its timed windows in ``steps`` events and, from the first warmup
window on, its estimate of the time left in ``eta`` events (``seconds``, and
``at_most`` when the length is adaptive); the bar shows both, and the time left in the
whole run: the repeats still to come as long as the finished ones took on average (as
this one, before any has finished). A repeat's clock stops when it ends.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from harness.sweep.progress import duration

if TYPE_CHECKING:
    from harness.store.schema import RepeatRecord


def steps_in(event: dict[str, Any]) -> int:
    """Steps covered by a ``steps`` event."""
    return sum(int(n) for n, _ in event.get("windows") or ())


def speed_of(event: dict[str, Any], global_batch: int) -> float | None:
    """images/sec over the windows of a ``steps`` event."""
    windows = event.get("windows") or ()
    seconds = sum(s for _, s in windows)
    return steps_in(event) * global_batch / seconds if seconds > 0 else None


def time_left(event: dict[str, Any]) -> str:
    """ "~1m20s left (at most 2m05s)" from an ``eta`` event."""
    text = f"~{duration(event.get('seconds'))} left"
    if event.get("at_most") is not None:
        text += f" (at most {duration(event['at_most'])})"
    return text


class RunProgress:
    """One bar per repeat: setup, warmup and timed steps, then validation."""

    def __init__(
        self, console: Console, repeats: int, label: str, at_most: int | None = None
    ) -> None:
        self.console = console
        self.repeats = repeats
        self.at_most = at_most or repeats  # adaptive repeats: more while the interval is wide
        self.label = label
        self.live = console.is_terminal
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[steps]}"),
            TextColumn("{task.fields[speed]}"),
            TextColumn("{task.fields[left]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            disable=not self.live,
        )
        self._task: TaskID | None = None
        self._repeat = 0
        self._batch = 0
        self._done = 0
        self._total: int | None = None
        self._started = 0.0
        self._announced = False
        self._durations: list[float] = []  # seconds of each finished repeat

    def __enter__(self) -> RunProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def start_repeat(self, repeat: int) -> None:
        self._repeat = repeat
        self._done, self._total, self._announced = 0, None, False
        self._started = time.monotonic()
        text = f"{self.label} · repeat {self._of()}"
        self._task = self._progress.add_task(
            f"{text} · starting", total=None, steps="", speed="", left=""
        )
        if not self.live:
            self.console.print(f"{text}: starting worker")

    def _of(self) -> str:
        """``2/3``; beyond the repeats asked for, ``4/≤10`` (added while the interval is wide)."""
        if self._repeat > self.repeats:
            return f"{self._repeat}/≤{self.at_most}"
        return f"{self._repeat}/{self.repeats}"

    def _describe(self, phase: str) -> str:
        return f"{self.label} · repeat {self._of()} · {phase}"

    def _steps_text(self) -> str:
        total = f"/{self._total}" if self._total else ""
        return f"{self._done}{total} steps"

    def _left(self, event: dict[str, Any]) -> str:
        """Time left in this repeat, and in the run when more repeats follow."""
        text = time_left(event)
        left = self.run_left(event.get("seconds"))
        if left is not None and self._repeat < self.repeats:
            text += f" · run ~{duration(left)}"
        return text

    def run_left(self, repeat_left: float | None, now: float | None = None) -> float | None:
        """Seconds left in the whole run: this repeat's rest, and each repeat still to
        come as long as the finished ones took on average (this one's length, expected,
        before any has finished). None when this repeat's rest is unknown."""
        if repeat_left is None:
            return None
        now = time.monotonic() if now is None else now
        this_repeat = now - self._started + repeat_left
        per_repeat = sum(self._durations) / len(self._durations) if self._durations else None
        to_come = max(0, self.repeats - self._repeat)  # added repeats: one at a time
        return repeat_left + to_come * (per_repeat or this_repeat)

    def event(self, event: dict[str, Any]) -> None:
        if event.get("rank", 0) != 0 or self._task is None:
            return
        kind = event["event"]
        if kind == "plan":
            self._batch = event["global_batch"]
            warmup, timed = event.get("warmup_steps"), event.get("timed_steps")
            self._total = warmup + timed if warmup is not None and timed is not None else None
            self._progress.update(self._task, total=self._total, steps=self._steps_text())
        elif kind == "phase" and event.get("state") == "start":
            self._progress.update(self._task, description=self._describe(event["name"]))
            if not self.live:
                self.console.print(self._describe(event["name"]))
        elif kind == "steps":
            self._done += steps_in(event)
            fields: dict[str, Any] = {"steps": self._steps_text()}
            speed = speed_of(event, self._batch) if event["phase"] == "timed" else None
            if speed:
                fields["speed"] = f"{speed:,.1f} img/s"
            self._progress.update(self._task, completed=self._done, **fields)
        elif kind == "eta":
            left = self._left(event)
            self._progress.update(self._task, left=left)
            if not self.live and not self._announced:
                self.console.print(f"{self._describe(event['phase'])}: {left}")
                self._announced = True
        elif kind == "error" and not self.live:
            message = escape(str(event.get("message", ""))[:200])
            self.console.print(f"worker error: {message}", highlight=False)

    def end_repeat(self, record: RepeatRecord, now: float | None = None) -> None:
        speed = record.timed.images_per_sec
        self._durations.append((time.monotonic() if now is None else now) - self._started)
        if self._task is not None:
            text = record.status + (f" · {speed:,.1f} img/s" if speed else "")
            self._progress.update(self._task, description=self._describe(text), left="")
            self._progress.stop_task(self._task)  # its clock stops with the repeat
            self._task = None
        if not self.live:
            shown = f"{speed:,.1f} images/sec" if speed else record.cause or ""
            self.console.print(f"{self._describe(record.status)}: {escape(shown)}")
