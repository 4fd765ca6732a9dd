"""The local executor: the sweep's runs one after another in this process, each through
the orchestrator (``execute``), exactly like ``python -m harness --tool ...``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from harness.monitor.resources import monitor_factory
from harness.run import repeats as repeat_budget
from harness.sweep import oom, runner
from harness.sweep.executors import SweepContext
from harness.sweep.progress import Eta, SweepProgress
from harness.sweep.runner import (
    EXIT_FAILED_RUN,
    kind,
    label,
    print_footer,
    print_header,
    run_line,
)
from harness.sweep.state import DONE, FAILED, PENDING, SKIPPED, CellState, SweepState


class _Observer:
    """The plugin manager, plus a callback when a run starts (to learn its run id)."""

    def __init__(self, pm: Any, on_started: Any) -> None:
        self._pm = pm
        self._on_started = on_started

    def run_started(self, spec: Any, run_dir: Path) -> None:
        self._on_started(Path(run_dir).name)
        self._pm.run_started(spec, run_dir)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pm, name)


class _CellRun:
    """The callbacks of one cell's run: progress, ETA refresh, and its run id."""

    def __init__(
        self, state: SweepState, cell: CellState, progress: SweepProgress, eta: Eta, kinds: list
    ) -> None:
        self.state, self.cell, self.progress, self.eta, self.kinds = (
            state,
            cell,
            progress,
            eta,
            kinds,
        )
        self._records: list = []  # the finished repeats (harness.run.repeats decides on more)
        self.started = self._tick = time.monotonic()

    def on_event(self, event: dict[str, Any]) -> None:
        self.progress.event(event)
        now = time.monotonic()
        if now - self._tick >= 1.0:
            self._tick = now
            self.progress.tick(self.eta.left(self.kinds, now - self.started))

    def on_repeat(self, repeat: int, record: Any) -> None:
        self._records.append(record)
        if repeat_budget.next_repeat(self.cell.spec, self._records).more:
            self.progress.start_repeat(repeat + 1)

    def run_started(self, run_id: str) -> None:
        self.state.set_run_id(self.cell, run_id)


def run(ctx: SweepContext) -> int:
    """Runs the pending cells one after another in this process."""
    state, plans, console, pm = ctx.state, ctx.plans, ctx.console, ctx.pm
    notes, resumed = ctx.notes, ctx.resumed
    assert state is not None

    print_header(state, notes, resumed, console)
    todo = [c for c in state.cells() if c.status == PENDING and c.key in plans]
    eta = Eta()
    skipped: dict[str, str] = {}  # cell key -> reason: certain to run out of memory
    with SweepProgress(console, len(todo), state.sweep_id) as progress:
        for index, cell in enumerate(todo):
            plan = plans[cell.key]
            kinds = [kind(c) for c in todo[index:] if c.key not in skipped]
            if cell.key in skipped:
                line = f"[{progress.done + 1}/{len(todo)}] {label(cell)}: skipped · "
                progress.end_run(line + skipped[cell.key], eta.left(kinds))
                continue
            progress.start_run(label(cell), plan.spec.repeats, eta.left(kinds))
            state.mark_running(cell)
            hooks = _CellRun(state, cell, progress, eta, kinds)
            try:
                outcome = runner.execute(
                    plan,
                    pm=_Observer(pm, hooks.run_started),
                    on_event=hooks.on_event,
                    on_repeat=hooks.on_repeat,
                    monitor_factory=monitor_factory,
                    sweep_id=state.sweep_id,
                )
            except KeyboardInterrupt:
                state.mark_pending(cell)  # its interrupted run is superseded
                raise
            except Exception as exc:  # the harness itself failed: record it, go on
                cause = f"{type(exc).__name__}: {exc}"
                state.mark_done(cell, cell.run_id, FAILED, cause)
                status, speed = FAILED, None
            else:
                summary = outcome.result.summary
                status = summary.status
                cause = "; ".join(summary.causes) or None
                speed = summary.images_per_sec.mean
                state.mark_done(cell, outcome.run_id, status, cause)
                if ctx.skip_oom:
                    skipped.update((c.key, c.reason or "") for c in oom.skip_larger(state, cell))
            seconds = time.monotonic() - hooks.started
            eta.add(kind(cell), seconds)
            left = eta.left(kinds[1:])
            line = run_line(progress.done + 1, len(todo), cell, status, speed, cause, seconds, left)
            progress.end_run(line, left)
    cells = state.cells()
    finished = all(c.status in (DONE, SKIPPED) for c in cells)
    state.release("done" if finished else "incomplete")
    print_footer(state, cells, console)
    return EXIT_FAILED_RUN if any(c.status == DONE and c.run_status != "ok" for c in cells) else 0
