"""Running a sweep: plan every cell, list what cannot run, run the rest, resume after a stop.

A sweep is identified by its id (``<name>-<time>-<hex>``) and by a fingerprint of its
cells (the file's content after filters and ``--set``). Starting the same file again
resumes the newest unfinished sweep with that fingerprint; ``--resume ID`` names one;
``--new`` starts afresh. Cells that finished (whatever their status) are never run
again; the cell that was running when the sweep stopped runs again from scratch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.errors import InvalidValue, UsageError
from harness.plugins import PluginManager, get_plugin_manager
from harness.results.recover import adopt
from harness.results.store import ResultStore
from harness.run import signals
from harness.run.lifeline import end_stale_workers
from harness.run.orchestrator import Plan, execute, plan_run
from harness.run.spec import check_values
from harness.sweep.config import Cell, fingerprint, load, select
from harness.sweep.progress import Eta, SweepProgress, duration
from harness.sweep.state import DONE, FAILED, PENDING, SKIPPED, CellState, SweepState

EXIT_FAILED_RUN = 1
EXIT_INTERRUPTED = 130


@dataclass
class SweepRequest:
    """What the user asked for on the command line."""

    source: str | None = None  # a sweep file or a built-in sweep's name
    resume: str | None = None  # a sweep id
    new: bool = False
    retry_failed: bool = False
    dry_run: bool = False
    output_dir: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    filters: dict[str, list[str] | None] = field(default_factory=dict)


@dataclass
class Expanded:
    """A sweep file after filters and overrides."""

    name: str
    source: str
    cells: list[Cell]
    fingerprint: str
    data: dict[str, Any]  # the file as parsed, stored with the sweep


def expand(request: SweepRequest) -> Expanded:
    """The cells of the request's sweep file."""
    assert request.source is not None
    config = load(request.source)
    overrides = dict(request.overrides)
    if request.output_dir:
        overrides["output_dir"] = request.output_dir
    cells = select(config.cells(overrides), **request.filters)
    if not cells:
        raise UsageError(f"{config.source}: no runs left after the filters")
    if len({c.spec.output_dir for c in cells}) > 1:
        raise UsageError(
            "output_dir must be the same for every run of a sweep: set it in [defaults]"
        )
    fp = fingerprint(config.name, cells)
    return Expanded(config.name, config.source, cells, fp, config.data)


def _store_path(output_dir: str) -> Path:
    return Path(output_dir) / "results.sqlite"


def run_sweep(request: SweepRequest, console: Console) -> int:
    """The ``sweep`` command; returns the exit code."""
    if request.source is None and request.resume is None:
        raise UsageError("give a sweep file (or a built-in sweep's name), or --resume SWEEP_ID")
    expanded = expand(request) if request.source else None
    for cell in expanded.cells if expanded else []:  # mistakes stop the sweep before any work
        try:
            check_values(cell.spec)
        except InvalidValue as exc:
            raise InvalidValue(f"{cell.key}: {exc}") from None
    output_dir = expanded.cells[0].spec.output_dir if expanded else (request.output_dir or "logs")
    path = _store_path(output_dir)
    if request.dry_run:
        return _dry_run(request, expanded, path, console)

    if request.resume and not path.exists():
        raise UsageError(f"no results store at {path}: give the sweep's --output-dir")
    store = ResultStore(path)
    state, resumed = _open_state(request, expanded, store)
    state.claim()
    for note in end_stale_workers(output_dir):  # left by a sweep that was killed with -9
        console.print(f"[yellow]warning:[/yellow] {escape(note)}", highlight=False)
    for note in adopt(store, output_dir):  # runs a full disk or kill -9 kept out of the store
        console.print(f"[yellow]taken into the store:[/yellow] {escape(note)}", highlight=False)
    try:
        notes = state.reconcile(retry_failed=request.retry_failed)
        pm = get_plugin_manager()  # one for the sweep: every plan and run uses it
        plans = _plan(state, pm)
        return _run(state, plans, notes, resumed, console, pm)
    except KeyboardInterrupt as exc:  # SIGINT, SIGTERM or SIGHUP (harness.run.signals)
        with signals.hold():
            state.release("interrupted")
        console.print(f"[yellow]{signals.cause(exc)}[/yellow]: finished runs are stored")
        return signals.exit_code(exc)


def _open_state(
    request: SweepRequest, expanded: Expanded | None, store: ResultStore
) -> tuple[SweepState, bool]:
    """The sweep to run: the one named, the unfinished one with this plan, or a new one."""
    if request.resume:
        state = SweepState(store, request.resume)
        info = state.info()
        if expanded and info["fingerprint"] != expanded.fingerprint:
            raise UsageError(
                f"sweep {request.resume} was planned from a different file or options "
                f"({info['source']}); run it without a file: --resume {request.resume}"
            )
        return state, True
    assert expanded is not None
    found = None if request.new else SweepState.find_unfinished(store, expanded.fingerprint)
    if found:
        return SweepState(store, found), True
    state = SweepState.create(
        store,
        name=expanded.name,
        source=expanded.source,
        fingerprint=expanded.fingerprint,
        config=expanded.data,
        cells=expanded.cells,
    )
    return state, False


def _try_plan(cell: CellState | Cell, pm: PluginManager) -> Plan | str:
    """The plan, or why this cell cannot run."""
    try:
        return plan_run(cell.spec, pm)
    except InvalidValue as exc:  # a mistake in the sweep file, not this machine's limit
        raise InvalidValue(f"{cell.key}: {exc}") from None
    except UsageError as exc:
        return str(exc)
    except Exception as exc:  # a broken plugin or machine: skip the cell, say why
        return f"{type(exc).__name__}: {exc}"


def _plan(state: SweepState, pm: PluginManager) -> dict[str, Plan]:
    """Plans every cell not done; refused ones become skipped (and earlier skips re-checked)."""
    plans: dict[str, Plan] = {}
    for cell in state.cells():
        if cell.status == DONE:
            continue
        # runs go to the store this sweep lives in, wherever it is opened from
        cell.spec.output_dir = str(state.store.path.parent)
        planned = _try_plan(cell, pm)
        if isinstance(planned, str):
            if cell.status != SKIPPED or cell.reason != planned:
                state.mark_skipped(cell, planned)
        else:
            plans[cell.key] = planned
            if cell.status == SKIPPED:
                state.mark_pending(cell, supersede=False)
    return plans


def _label(cell: CellState | Cell) -> str:
    return f"{cell.tool} · {cell.model} · {cell.dataset} · {cell.hardware}"


def _print_header(state: SweepState, notes: list[str], resumed: bool, console: Console) -> None:
    info = state.info()
    cells = state.cells()
    count = {s: sum(c.status == s for c in cells) for s in (PENDING, DONE, SKIPPED)}
    verb = "resuming" if resumed else "starting"
    console.print(
        f"[bold]{verb} sweep {state.sweep_id}[/bold] ({escape(info['source'] or '')}): "
        f"{len(cells)} runs: {count[PENDING]} to run, {count[DONE]} done, "
        f"{count[SKIPPED]} skipped · store {state.store.path}",
        highlight=False,
    )
    for note in notes:
        console.print(f"  {escape(note)}", highlight=False)
    skipped = [c for c in cells if c.status == SKIPPED]
    if skipped:
        console.print(f"[yellow]skipped[/yellow]: {len(skipped)} runs that cannot run here:")
        for reason, group in _by_reason(skipped).items():
            console.print(f"  {escape(reason)}:", highlight=False, soft_wrap=True)
            for cell in group:
                console.print(f"    {escape(_label(cell))}", highlight=False)


def _by_reason(cells: list[CellState]) -> dict[str, list[CellState]]:
    groups: dict[str, list[CellState]] = {}
    for cell in cells:
        groups.setdefault(cell.reason or "skipped", []).append(cell)
    return groups


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


def _kind(cell: CellState) -> tuple[str, str, str]:
    return (cell.model, cell.dataset, cell.hardware)


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
        self.started = self._tick = time.monotonic()

    def on_event(self, event: dict[str, Any]) -> None:
        self.progress.event(event)
        now = time.monotonic()
        if now - self._tick >= 1.0:
            self._tick = now
            self.progress.tick(self.eta.left(self.kinds, now - self.started))

    def on_repeat(self, repeat: int, record: dict[str, Any]) -> None:
        if repeat < self.cell.spec.repeats:
            self.progress.start_repeat(repeat + 1)

    def run_started(self, run_id: str) -> None:
        self.state.set_run_id(self.cell, run_id)


def _run(
    state: SweepState,
    plans: dict[str, Plan],
    notes: list[str],
    resumed: bool,
    console: Console,
    pm: PluginManager,
) -> int:
    from harness.monitor.resources import monitor_factory

    _print_header(state, notes, resumed, console)
    todo = [c for c in state.cells() if c.status == PENDING and c.key in plans]
    eta = Eta()
    with SweepProgress(console, len(todo), state.sweep_id) as progress:
        for index, cell in enumerate(todo):
            plan = plans[cell.key]
            kinds = [_kind(c) for c in todo[index:]]
            progress.start_run(_label(cell), plan.spec.repeats, eta.left(kinds))
            state.mark_running(cell)
            hooks = _CellRun(state, cell, progress, eta, kinds)
            try:
                outcome = execute(
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
            seconds = time.monotonic() - hooks.started
            eta.add(_kind(cell), seconds)
            left = eta.left(kinds[1:])
            line = _run_line(
                progress.done + 1, len(todo), cell, status, speed, cause, seconds, left
            )
            progress.end_run(line, left)
    cells = state.cells()
    finished = all(c.status in (DONE, SKIPPED) for c in cells)
    state.release("done" if finished else "incomplete")
    _print_footer(state, cells, console)
    return EXIT_FAILED_RUN if any(c.status == DONE and c.run_status != "ok" for c in cells) else 0


def _run_line(
    n: int,
    total: int,
    cell: CellState,
    status: str,
    speed: float | None,
    cause: str | None,
    seconds: float,
    left: float | None,
) -> str:
    what = f"{speed:,.1f} images/sec" if speed is not None else "-"
    line = f"[{n}/{total}] {_label(cell)}: {status} · {what} · {duration(seconds)}"
    if status != "ok" and cause:
        first = cause.strip().splitlines()[0] if cause.strip() else ""
        line += f" · {first[:160]}"
    if n < total:
        line += f" · ETA {duration(left)}"
    return line


def _print_footer(state: SweepState, cells: list[CellState], console: Console) -> None:
    counts: dict[str, int] = {}
    for cell in cells:
        key = cell.run_status if cell.status == DONE else cell.status
        counts[key or "?"] = counts.get(key or "?", 0) + 1
    text = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    console.print(f"[bold]sweep {state.sweep_id}[/bold]: {text}", highlight=False)
    console.print(
        f"report: python -m harness report --sweep {state.sweep_id} --store {state.store.path}",
        highlight=False,
        soft_wrap=True,
    )


def _dry_run(request: SweepRequest, expanded: Expanded | None, path: Path, console: Console) -> int:
    """Lists the plan (and, when resuming, what is done); writes nothing."""
    existing: dict[str, CellState] = {}
    sweep_id = None
    if path.exists():
        store = ResultStore(path, readonly=True)
        if request.resume:
            sweep_id = request.resume
        elif expanded and not request.new:
            sweep_id = SweepState.find_unfinished(store, expanded.fingerprint)
        if sweep_id:
            existing = {c.key: c for c in SweepState(store, sweep_id).cells()}
    elif request.resume:
        raise UsageError(f"no results store at {path}")
    cells: list[Any] = expanded.cells if expanded else list(existing.values())
    title = f"sweep plan: {len(cells)} runs" + (f" (resuming {sweep_id})" if sweep_id else "")
    table = Table(title=title, title_justify="left")
    for column in ("#", "tool", "model", "dataset", "hardware", "batch", "lr", "steps", "repeats"):
        table.add_column(column, justify="right" if column in ("#", "batch", "lr") else "left")
    table.add_column("plan", overflow="fold")
    runnable = 0
    reasons: dict[str, int] = {}
    pm = get_plugin_manager()
    for i, cell in enumerate(cells, 1):
        before = existing.get(cell.key)
        planned: Plan | str | None = None
        if before is not None and before.status == DONE:
            what = f"done: {before.run_status} ({before.run_id})"
        else:
            planned = _try_plan(cell, pm)
            if isinstance(planned, str):
                number = reasons.setdefault(planned, len(reasons) + 1)
                what = f"[yellow]skip[/yellow] ({number})"
            else:
                runnable += 1
                what = "run"
        spec = planned.spec if isinstance(planned, Plan) else cell.spec
        steps = f"{spec.epochs} epochs" if spec.epochs else str(spec.steps or "auto")
        warmup = "auto" if spec.warmup_steps is None else str(spec.warmup_steps)
        lr = f"{spec.learning_rate:g}" if spec.learning_rate else "-"
        table.add_row(
            str(i),
            cell.tool,
            cell.model,
            cell.dataset,
            escape(cell.hardware),
            str(spec.batch_size or "-"),
            lr,
            f"{warmup}+{steps}",
            str(spec.repeats),
            what,
        )
    console.print(table)
    for reason, number in reasons.items():
        console.print(f"({number}) {escape(reason)}", highlight=False, soft_wrap=True)
    console.print(f"{runnable} to run, {len(cells) - runnable} not; store {path} (dry run)")
    return 0
