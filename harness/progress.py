"""Live progress of a run on the terminal, fed by the worker's events."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


class RunProgress:
    """One bar per repeat: setup, warmup and timed steps, then validation."""

    def __init__(self, console: Console, repeats: int, label: str) -> None:
        self.console = console
        self.repeats = repeats
        self.label = label
        self.live = console.is_terminal
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} steps"),
            TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            disable=not self.live,
        )
        self._task: TaskID | None = None
        self._repeat = 0
        self._warmup = 0
        self._batch = 0

    def __enter__(self) -> RunProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def start_repeat(self, repeat: int) -> None:
        self._repeat = repeat
        text = f"{self.label} · repeat {repeat}/{self.repeats}"
        self._task = self._progress.add_task(f"{text} · starting", total=None, speed="")
        if not self.live:
            self.console.print(f"{text}: starting worker")

    def _describe(self, phase: str) -> str:
        return f"{self.label} · repeat {self._repeat}/{self.repeats} · {phase}"

    def event(self, event: dict[str, Any]) -> None:
        if event.get("rank", 0) != 0 or self._task is None:
            return
        kind = event["event"]
        if kind == "plan":
            self._warmup = event["warmup_steps"]
            self._batch = event["global_batch"]
            self._progress.update(self._task, total=self._warmup + event["timed_steps"])
        elif kind == "phase" and event.get("state") == "start":
            self._progress.update(self._task, description=self._describe(event["name"]))
            if not self.live:
                self.console.print(self._describe(event["name"]))
        elif kind == "steps":
            done = len(event["seconds"])
            fields: dict[str, Any] = {}
            if event["phase"] == "timed" and event["seconds"]:
                mean = sum(event["seconds"]) / len(event["seconds"])
                fields["speed"] = f"{self._batch / mean:,.1f} img/s" if mean > 0 else ""
            self._progress.advance(self._task, done)
            self._progress.update(self._task, **fields)
        elif kind == "error" and not self.live:
            message = escape(str(event.get("message", ""))[:200])
            self.console.print(f"worker error: {message}", highlight=False)

    def end_repeat(self, record: dict[str, Any]) -> None:
        if self._task is not None:
            speed = record["timed"]["images_per_sec"]
            text = f"{record['status']}" + (f" · {speed:,.1f} img/s" if speed else "")
            self._progress.update(self._task, description=self._describe(text))
            self._task = None
        if not self.live:
            speed = record["timed"]["images_per_sec"]
            shown = f"{speed:,.1f} images/sec" if speed else record.get("cause") or ""
            self.console.print(f"{self._describe(record['status'])}: {escape(shown)}")
