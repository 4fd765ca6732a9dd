"""A live view of a sweep, read from its results store: ``python -m harness watch``.

Works from any process and any machine that sees the store (the sweep may run in
another terminal, or as SLURM jobs): it only reads the store (read-only) and the run
folders beside it. Each refresh counts the cells (done, failed, skipped, running,
left), shows every running cell with its elapsed time and, when its run folder is
readable, its current repeat and phase, and estimates the time left from the runs
finished so far (harness.sweep.progress.Eta).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from harness.errors import UsageError
from harness.run.events import read_events
from harness.store.store import ResultStore
from harness.sweep.oom import is_oom_skip
from harness.sweep.progress import Eta, duration
from harness.sweep.state import DONE, PENDING, RUNNING, SKIPPED, CellState, SweepState


@dataclass
class Running:
    """One running cell: what it is, for how long, and where its run stands."""

    key: str
    elapsed_s: float | None
    where: str  # "repeat 2/3 · timed", "job 123 RUNNING", or ""


@dataclass
class Snapshot:
    """A sweep's state at one moment."""

    sweep_id: str
    status: str  # the sweep's: running, finished, interrupted, ...
    total: int
    counts: Counter[str] = field(default_factory=Counter)  # ok, failed, skipped, running, left
    running: list[Running] = field(default_factory=list)
    eta_s: float | None = None

    @property
    def finished(self) -> bool:
        return self.status != RUNNING and not self.running


def _seconds_since(stamp: str | None, now: datetime) -> float | None:
    if not stamp:
        return None
    try:
        then = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    return max(0.0, (now - then).total_seconds())


def _run_position(run_dir: Path) -> str:
    """The latest repeat folder of a run and the phase its worker is in ("" if unknown)."""
    numbered = [p for p in run_dir.glob("repeat-*") if p.name.removeprefix("repeat-").isdigit()]
    if not numbered:
        return ""
    last = max(numbered, key=lambda p: int(p.name.removeprefix("repeat-")))
    events = last / "events.jsonl"
    phase = ""
    for event in read_events(events) if events.is_file() else []:
        if event.get("event") == "phase" and event.get("state") == "start":
            phase = str(event.get("name"))
    return last.name + (f" · {phase}" if phase else "")


def snapshot(store: ResultStore, sweep_id: str, now: datetime | None = None) -> Snapshot:
    """The sweep's cells counted, its running cells described, its time left estimated."""
    now = now or datetime.now(timezone.utc)
    state = SweepState(store, sweep_id)
    info = state.info()
    cells = state.cells()
    shot = Snapshot(sweep_id, info["status"], len(cells))
    eta = Eta()
    finished = {r.run_id: r for r in store.runs(sweep_id=sweep_id)}
    left: list[CellState] = []
    for cell in cells:
        if cell.status == DONE:
            shot.counts["ok" if cell.run_status == "ok" else "failed"] += 1
            result = finished.get(cell.run_id or "")
            if result is not None:
                start = _seconds_since(result.started_at, now)
                end = _seconds_since(result.finished_at, now)
                if start is not None and end is not None:
                    eta.add((cell.model, cell.dataset, cell.hardware), start - end)
        elif cell.status == SKIPPED:
            shot.counts["skipped"] += 1
            shot.counts["skipped_oom"] += is_oom_skip(cell)
        elif cell.status == RUNNING:
            shot.counts["running"] += 1
            where = ""
            if cell.run_id:
                where = _run_position(store.path.parent / cell.run_id)
            elif cell.job_id:
                where = f"job {cell.job_id} {cell.job_state or 'submitted'}"
            shot.running.append(Running(cell.key, _seconds_since(cell.updated_at, now), where))
            left.insert(0, cell)
        elif cell.status == PENDING:
            shot.counts["left"] += 1
            left.append(cell)
    if left:
        kinds = [(c.model, c.dataset, c.hardware) for c in left]
        elapsed = shot.running[0].elapsed_s if shot.running else None
        shot.eta_s = eta.left(kinds, elapsed or 0.0)
    return shot


def render(shot: Snapshot, store: Path) -> Group:
    """The snapshot as a rich renderable: one summary line and a table of running cells."""
    parts = [f"{shot.counts[k]} {k}" for k in ("ok", "failed", "skipped", "running", "left")]
    if shot.counts["skipped_oom"]:  # certain to run out of memory (harness.sweep.oom)
        parts[2] += f" ({shot.counts['skipped_oom']} after out of memory)"
    done = shot.counts["ok"] + shot.counts["failed"] + shot.counts["skipped"]
    eta = "" if shot.finished else f" · ETA {duration(shot.eta_s)}"
    head = Text(
        f"sweep {shot.sweep_id} ({shot.status}) · {done}/{shot.total} done{eta}\n"
        f"{', '.join(parts)}\nstore {store}"
    )
    table = Table(title="running", title_justify="left", header_style="bold")
    for column in ("cell", "elapsed", "where"):
        table.add_column(column, overflow="fold")
    for run in shot.running:
        table.add_row(escape(run.key), duration(run.elapsed_s), escape(run.where))
    return Group(head, table) if shot.running else Group(head)


def watch(
    store_path: Path, sweep_id: str | None, interval_s: float, once: bool, console: Console
) -> int:
    """Shows the sweep (the latest in the store when ``sweep_id`` is None) until it ends,
    refreshing every ``interval_s``: a live table at a terminal, a line per refresh
    elsewhere; ``once``: one snapshot. Returns the exit code."""
    store = ResultStore(store_path, readonly=True)
    sweep_id = sweep_id or SweepState.latest_id(store)
    if sweep_id is None:
        raise UsageError(f"no sweep in {store_path}")
    shot = snapshot(store, sweep_id)
    if once or shot.finished:
        console.print(render(shot, store_path))
        return 0
    if not console.is_terminal:  # a log: one snapshot per refresh
        while True:
            console.print(render(shot, store_path))
            if shot.finished:
                return 0
            time.sleep(interval_s)
            shot = snapshot(ResultStore(store_path, readonly=True), sweep_id)
    with Live(render(shot, store_path), console=console, refresh_per_second=4) as live:
        while not shot.finished:
            time.sleep(interval_s)
            shot = snapshot(ResultStore(store_path, readonly=True), sweep_id)
            live.update(render(shot, store_path))
    return 0
