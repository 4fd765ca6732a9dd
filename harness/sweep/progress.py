"""A sweep's live progress: runs done and left, an ETA, and the current run's steps.

On a terminal: two rich bars (the sweep, the current run) and one line per finished
run above them. Elsewhere (logs, CI): just the line per finished run.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from harness.store import stats


def duration(seconds: float | None) -> str:
    """3 s, 4m05s, 2h07m."""
    if seconds is None:
        return "?"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Eta:
    """Time left, from the durations of the runs finished so far.

    A run left to do is expected to take as long as the finished runs of the same
    (model, dataset, hardware) did on average (the tool matters less than the network
    and the device), else as long as all finished runs did on average.
    """

    def __init__(self) -> None:
        self._by_kind: dict[tuple[str, str, str], list[float]] = {}
        self._all: list[float] = []

    def add(self, kind: tuple[str, str, str], seconds: float) -> None:
        self._by_kind.setdefault(kind, []).append(seconds)
        self._all.append(seconds)

    def left(self, kinds: list[tuple[str, str, str]], current_elapsed: float = 0.0) -> float | None:
        """Seconds for ``kinds`` (the current run first, ``current_elapsed`` into it)."""
        if not self._all:
            return None
        total = 0.0
        for i, kind in enumerate(kinds):
            expected = stats.mean(self._by_kind.get(kind) or self._all) or 0.0
            total += max(0.0, expected - current_elapsed) if i == 0 else expected
        return total


class SweepProgress:
    """Fed by the sweep runner: start_run, the worker's events, end_run."""

    def __init__(self, console: Console, total: int, name: str) -> None:
        self.console = console
        self.total = total
        self.done = 0
        self.live = console.is_terminal
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not self.live,
        )
        self._sweep = self._progress.add_task(f"sweep {name}", total=total, info="")
        self._run: TaskID | None = None
        self._label = ""
        self._repeat = (0, 0)
        self._batch = 0

    def __enter__(self) -> SweepProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def _sweep_info(self, eta: float | None) -> str:
        return (
            f"{self.done}/{self.total} runs · {self.total - self.done} left · ETA {duration(eta)}"
        )

    def start_run(self, label: str, repeats: int, eta: float | None) -> None:
        self._label = label
        self._repeat = (1, repeats)
        self._progress.update(self._sweep, info=self._sweep_info(eta))
        if self._run is not None:
            self._progress.remove_task(self._run)
        self._run = self._progress.add_task(self._describe("starting"), total=None, info="")

    def _describe(self, phase: str) -> str:
        return f"  {self._label} · repeat {self._repeat[0]}/{self._repeat[1]} · {phase}"

    def start_repeat(self, repeat: int) -> None:
        self._repeat = (repeat, self._repeat[1])
        if self._run is not None:
            self._progress.reset(self._run, total=None, description=self._describe("starting"))

    def event(self, event: dict[str, Any]) -> None:
        if event.get("rank", 0) != 0 or self._run is None:
            return
        kind = event["event"]
        if kind == "plan":
            self._batch = event.get("global_batch") or 0
            total = (event.get("warmup_steps") or 0) + (event.get("timed_steps") or 0)
            self._progress.update(self._run, total=total or None)
        elif kind == "phase" and event.get("state") == "start":
            self._progress.update(self._run, description=self._describe(event["name"]))
        elif kind == "steps":  # windows of steps: [[steps, seconds], ...]
            windows = event.get("windows") or []
            steps = sum(int(n) for n, _ in windows)
            seconds = sum(s for _, s in windows)
            self._progress.advance(self._run, steps)
            if event.get("phase") == "timed" and seconds > 0:
                speed = steps * self._batch / seconds
                self._progress.update(self._run, info=f"{speed:,.1f} img/s")

    def tick(self, eta: float | None) -> None:
        """Refreshes the ETA (called between events)."""
        self._progress.update(self._sweep, info=self._sweep_info(eta))

    def end_run(self, line: str, eta: float | None) -> None:
        """Counts a finished run and prints its one line."""
        self.done += 1
        self._progress.update(self._sweep, completed=self.done, info=self._sweep_info(eta))
        if self._run is not None:
            self._progress.remove_task(self._run)
            self._run = None
        self.console.print(escape(line), highlight=False, soft_wrap=True)
