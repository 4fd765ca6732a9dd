"""The run's progress: a finished repeat's clock stops; the time left covers the run."""

from __future__ import annotations

import io

from rich.console import Console

from harness.cli.progress import RunProgress
from harness.store.schema import RepeatRecord


def test_a_finished_repeat_stops_its_clock_and_later_repeats_are_estimated_from_it() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with RunProgress(console, repeats=3, label="t") as progress:
        progress.start_repeat(1)
        progress._started = 100.0
        assert progress.run_left(30.0, now=110.0) == 30.0 + 2 * 40.0  # this one, twice more
        task = progress._task
        progress.end_repeat(RepeatRecord(status="ok"), now=150.0)  # the first took 50 s
        assert progress._progress.tasks[task].stop_time is not None  # its clock stopped
        progress.start_repeat(2)
        progress._started = 160.0
        assert progress.run_left(20.0, now=170.0) == 20.0 + 1 * 50.0  # as the finished one
        assert progress.run_left(None) is None
