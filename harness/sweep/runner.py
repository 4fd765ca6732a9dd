"""Running a sweep: plan every cell, list what cannot run, run the rest, resume after a stop.

A sweep is identified by its id (``<name>-<time>-<hex>``) and by a fingerprint of its
cells (the file's content after filters and ``--set``). Starting the same file again
resumes the newest unfinished sweep with that fingerprint; ``--resume ID`` names one;
``--new`` starts afresh. Cells that finished (whatever their status) are never run
again; the cell that was running when the sweep stopped runs again from scratch, unless
its executor keeps jobs (SLURM), which then re-attaches to the cell's job.
The runs themselves are started by an executor (harness.sweep.executors).
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.errors import InvalidValue, UsageError
from harness.plugins import PluginManager, get_plugin_manager
from harness.run import signals
from harness.run.lifeline import end_stale_workers

# execute: the local executor calls it through this module (tests replace it here)
from harness.run.orchestrator import Plan, execute, plan_run  # noqa: F401
from harness.run.recover import adopt
from harness.run.spec import check_values
from harness.store.store import ResultStore
from harness.sweep import oom
from harness.sweep.config import (
    Cell,
    SweepConfig,
    check_option_keys,
    fingerprint,
    load,
    parse,
    select,
)
from harness.sweep.executors import Executor, SweepContext
from harness.sweep.progress import duration
from harness.sweep.state import DONE, PENDING, RUNNING, SKIPPED, CellState, SweepState

EXIT_FAILED_RUN = 1
EXIT_INTERRUPTED = 130
# A sweep of more runs than this is said at once with a warning; one of more than
# CONFIRM_SWEEP needs --yes (or a yes at the terminal). A dry run of a large sweep plans
# and lists its first DRY_RUN_ROWS runs and sums up the rest.
LARGE_SWEEP = 1_000
CONFIRM_SWEEP = 10_000
DRY_RUN_ROWS = 50


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
    executor: str = "local"  # a registered executor: local, slurm, ...
    status: bool = False  # print each cell's state (and job) and stop
    yes: bool = False  # run a sweep of more than CONFIRM_SWEEP runs without asking
    skip_oom: bool = True  # skip the cells certain to run out of memory (harness.sweep.oom)


@dataclass
class Expanded:
    """A sweep file after filters and overrides."""

    name: str
    source: str
    cells: list[Cell]
    fingerprint: str
    data: dict[str, Any]  # the file as parsed, stored with the sweep
    config: SweepConfig


def expand(request: SweepRequest, console: Console | None = None) -> Expanded:
    """The cells of the request's sweep file; a large sweep is counted first, said at
    once, and refused without ``--yes`` (or a yes at the terminal) when it is very large."""
    assert request.source is not None
    config = load(request.source)
    overrides = dict(request.overrides)
    if request.output_dir:
        overrides["output_dir"] = request.output_dir
    if console is not None:
        check_size(config.count(overrides, request.filters), request, console)
    cells = select(config.cells(overrides), **request.filters)
    if not cells:
        raise UsageError(f"{config.source}: no runs left after the filters")
    if len({c.spec.output_dir for c in cells}) > 1:
        raise UsageError(
            "output_dir must be the same for every run of a sweep: set it in [defaults]"
        )
    fp = fingerprint(config.name, cells)
    return Expanded(config.name, config.source, cells, fp, config.data, config)


def check_size(runs: int, request: SweepRequest, console: Console) -> None:
    """Says the size of a sweep above LARGE_SWEEP runs; above CONFIRM_SWEEP asks (at a
    terminal) or refuses without ``--yes``. A dry run only shows it."""
    if runs <= LARGE_SWEEP:
        return
    console.print(
        f"[yellow]warning:[/yellow] this sweep has {runs:,} runs (more than "
        f"{LARGE_SWEEP:,}); --tools, --models, --datasets and --hardware narrow it",
        highlight=False,
    )
    if runs <= CONFIRM_SWEEP or request.dry_run or request.yes or request.status:
        return
    refusal = (
        f"{runs:,} runs is more than {CONFIRM_SWEEP:,}: give --yes to run them all "
        "(--dry-run shows a summary of the plan)"
    )
    if not (sys.stdin.isatty() and console.is_terminal):
        raise UsageError(refusal)
    answer = console.input(f"run all {runs:,}? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise UsageError(refusal)


def _store_path(output_dir: str) -> Path:
    return Path(output_dir) / "results.sqlite"


def run_sweep(request: SweepRequest, console: Console) -> int:
    """The ``sweep`` command; returns the exit code."""
    if request.source is None and request.resume is None:
        raise UsageError("give a sweep file (or a built-in sweep's name), or --resume SWEEP_ID")
    expanded = expand(request, console) if request.source else None
    for cell in expanded.cells if expanded else []:  # mistakes stop the sweep before any work
        try:
            check_values(cell.spec)
        except InvalidValue as exc:
            raise InvalidValue(f"{cell.key}: {exc}") from None
    output_dir = expanded.cells[0].spec.output_dir if expanded else (request.output_dir or "logs")
    path = _store_path(output_dir)
    pm = get_plugin_manager()  # one for the sweep: every plan and run uses it
    if expanded is not None:  # a typo in --set options={...}: before any run, dry or not
        check_option_keys(expanded.cells, pm.backends)
    executor = pm.executor(request.executor)
    if request.dry_run:
        return _dry_run(request, expanded, path, console, executor)
    if request.status:
        return _status(request, expanded, path, executor, pm, console)

    if request.resume and not path.exists():
        raise UsageError(f"no results store at {path}: give the sweep's --output-dir")
    if executor.check is not None and expanded is not None:  # e.g. no SLURM here: exit 2
        executor.check(_context(None, {}, expanded, console, pm, cells=expanded.cells))
    store = ResultStore(path)
    state, resumed = _open_state(request, expanded, store)
    if executor.check is not None and expanded is None:  # --resume ID: the stored cells
        executor.check(_context(state, {}, None, console, pm, cells=state.cells()))
    in_flight = [c.job_id for c in state.cells() if c.status == RUNNING and c.job_id is not None]
    if in_flight and not executor.keeps_jobs:  # they would run twice
        raise UsageError(
            f"sweep {state.sweep_id} has jobs in flight (job "
            f"{', '.join(j or 'being submitted' for j in in_flight)}): resume it with the "
            "executor that submitted them (--executor slurm), or cancel them first"
        )
    state.claim()
    for note in end_stale_workers(output_dir):  # left by a sweep that was killed with -9
        console.print(f"[yellow]warning:[/yellow] {escape(note)}", highlight=False)
    for note in adopt(store, output_dir):  # runs a full disk or kill -9 kept out of the store
        console.print(f"[yellow]taken into the store:[/yellow] {escape(note)}", highlight=False)
    try:
        notes = state.reconcile(retry_failed=request.retry_failed, keep_jobs=executor.keeps_jobs)
        plans = _plan(state, pm, executor, skip_oom=request.skip_oom)
        context = _context(state, plans, expanded, console, pm, notes, resumed)
        context.skip_oom = request.skip_oom
        return executor.run(context)
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
    if found is None and request.retry_failed and not request.new:  # the last one's failures
        found = SweepState.find_latest(store, expanded.fingerprint)
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


def _context(
    state: SweepState | None,
    plans: dict[str, Plan],
    expanded: Expanded | None,
    console: Console,
    pm: PluginManager,
    notes: list[str] | None = None,
    resumed: bool = False,
    cells: list[Any] | None = None,
) -> SweepContext:
    """The executor's view; the sweep file is the one given, else the one stored."""
    if expanded is not None:
        config = expanded.config
    else:
        assert state is not None
        info = state.info()
        try:
            config = parse(info["config"], info["source"] or state.sweep_id)
        except UsageError:  # a file this harness no longer reads: its cells are stored
            config = SweepConfig(info["name"], info["source"] or state.sweep_id)
    if cells is None:
        cells = state.cells() if state is not None else []
    return SweepContext(state, plans, config, console, pm, notes or [], resumed, cells)


def _try_plan(
    cell: CellState | Cell, pm: PluginManager, executor: Executor | None = None
) -> Plan | str:
    """The plan, or why this cell cannot run (as ``executor`` runs it)."""
    try:
        if executor is None or (executor.local_gpus and executor.planned_as is None):
            return plan_run(cell.spec, pm)
        spec = executor.planned_as(cell.spec) if executor.planned_as else cell.spec
        return plan_run(spec, pm, check_gpus=executor.local_gpus)  # runs elsewhere
    except InvalidValue as exc:  # a mistake in the sweep file, not this machine's limit
        raise InvalidValue(f"{cell.key}: {exc}") from None
    except UsageError as exc:
        return str(exc)
    except Exception as exc:  # a broken plugin or machine: skip the cell, say why
        return f"{type(exc).__name__}: {exc}"


def _plan(
    state: SweepState,
    pm: PluginManager,
    executor: Executor | None = None,
    *,
    skip_oom: bool = True,
) -> dict[str, Plan]:
    """Plans every cell not done; refused ones become skipped (and earlier skips re-checked).

    With ``skip_oom``, a cell with a larger batch than one of its group that ran out of
    memory is skipped (harness.sweep.oom); without, such a skip is planned again."""
    cells = state.cells()
    found = oom.boundaries(cells) if skip_oom else {}
    plans: dict[str, Plan] = {}
    for cell in cells:
        if cell.status == DONE:
            continue
        # runs go to the store this sweep lives in, wherever it is opened from
        cell.spec.output_dir = str(state.store.path.parent)
        why = oom.certain_to_fail(cell, found)
        if why:
            if cell.status != SKIPPED or cell.reason != why:
                state.mark_skipped(cell, why)
            continue
        planned = _try_plan(cell, pm, executor)
        if isinstance(planned, str):
            if cell.status != SKIPPED or cell.reason != planned:
                state.mark_skipped(cell, planned)
        else:
            plans[cell.key] = planned
            if cell.status == SKIPPED:
                state.mark_pending(cell, supersede=False)
    return plans


def label(cell: CellState | Cell) -> str:
    return f"{cell.tool} · {cell.model} · {cell.dataset} · {cell.hardware}"


def kind(cell: CellState) -> tuple[str, str, str]:
    """What the ETA groups durations by."""
    return (cell.model, cell.dataset, cell.hardware)


def print_header(state: SweepState, notes: list[str], resumed: bool, console: Console) -> None:
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
                console.print(f"    {escape(label(cell))}", highlight=False)


def _by_reason(cells: list[CellState]) -> dict[str, list[CellState]]:
    groups: dict[str, list[CellState]] = {}
    for cell in cells:
        groups.setdefault(cell.reason or "skipped", []).append(cell)
    return groups


def run_line(
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
    line = f"[{n}/{total}] {label(cell)}: {status} · {what} · {duration(seconds)}"
    if status != "ok" and cause:
        first = cause.strip().splitlines()[0] if cause.strip() else ""
        line += f" · {first[:160]}"
    if n < total:
        line += f" · ETA {duration(left)}"
    return line


def print_footer(state: SweepState, cells: list[CellState], console: Console) -> None:
    counts: dict[str, int] = {}
    for cell in cells:
        key = cell.run_status if cell.status == DONE else cell.status
        counts[key or "?"] = counts.get(key or "?", 0) + 1
    text = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    console.print(f"[bold]sweep {state.sweep_id}[/bold]: {text}", highlight=False)
    for line in oom.limits(cells):
        console.print(f"out of memory: {escape(line)}", highlight=False, soft_wrap=True)
    console.print(
        f"report: python -m harness report --sweep {state.sweep_id} --store {state.store.path}",
        highlight=False,
        soft_wrap=True,
    )


def _status(
    request: SweepRequest,
    expanded: Expanded | None,
    path: Path,
    executor: Executor,
    pm: PluginManager,
    console: Console,
) -> int:
    """``sweep --status``: each cell's state, run and job (live from the executor); starts
    and writes nothing."""
    if not path.exists():
        raise UsageError(f"no results store at {path}: give the sweep's --output-dir")
    store = ResultStore(path, readonly=True)
    sweep_id = request.resume
    if sweep_id is None and expanded is not None:
        sweep_id = SweepState.find_latest(store, expanded.fingerprint)
    if sweep_id is None:
        raise UsageError(f"no sweep of this plan in {path}; sweeps there: sweep --list")
    state = SweepState(store, sweep_id)
    cells = state.cells()
    live: dict[str, str] = {}
    if executor.job_states is not None and any(c.job_id for c in cells):
        live = executor.job_states(_context(state, {}, expanded, console, pm, cells=cells))
    info = state.info()
    table = Table(title=f"sweep {sweep_id} ({info['status']}) · store {path}", title_justify="left")
    for column in ("#", "cell", "state", "job", "run", "cause"):
        table.add_column(column, overflow="fold")
    counts: dict[str, int] = {}
    for cell in cells:
        what = cell.status
        if cell.status == DONE:
            what = cell.run_status or DONE
        elif cell.status == RUNNING and cell.job_id is not None:
            what = live.get(cell.key) or (cell.job_state or "submitting").lower()
        counts[what.split()[0]] = counts.get(what.split()[0], 0) + 1
        table.add_row(
            str(cell.position + 1),
            escape(cell.key),
            escape(what),
            cell.job_id or "",
            cell.run_id or "",
            escape((cell.reason or "").splitlines()[0] if cell.reason else ""),
        )
    out = Console(width=console.width if console.is_terminal else 200)
    out.print(table)
    out.print(", ".join(f"{n} {k}" for k, n in sorted(counts.items())), highlight=False)
    return 0


def _dry_run(
    request: SweepRequest,
    expanded: Expanded | None,
    path: Path,
    console: Console,
    executor: Executor | None = None,
) -> int:
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
    for column in (
        "#", "tool", "model", "dataset", "hardware", "task", "batch", "lr", "steps", "repeats"
    ):  # fmt: skip
        table.add_column(column, justify="right" if column in ("#", "batch", "lr") else "left")
    table.add_column("plan", overflow="fold")
    runnable = 0
    reasons: dict[str, int] = {}
    pm = get_plugin_manager()
    listed = cells if len(cells) <= LARGE_SWEEP else cells[:DRY_RUN_ROWS]
    if len(listed) < len(cells):
        table.title = f"{title}; the first {len(listed)}"
    for i, cell in enumerate(listed, 1):
        before = existing.get(cell.key)
        planned: Plan | str | None = None
        if before is not None and before.status == DONE:
            what = f"done: {before.run_status} ({before.run_id})"
        else:
            planned = _try_plan(cell, pm, executor)
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
            spec.task,
            str(spec.batch_search or spec.batch_size or "-"),
            lr,
            f"{warmup}+{steps}",
            str(spec.repeats),
            what,
        )
    console.print(table)
    for reason, number in reasons.items():
        console.print(f"({number}) {escape(reason)}", highlight=False, soft_wrap=True)
    if len(listed) < len(cells):
        _sum_up(cells, console)
        console.print(
            f"of the first {len(listed)}: {runnable} to run, {len(listed) - runnable} not; "
            f"the other {len(cells) - len(listed):,} are planned when the sweep runs; "
            f"store {path} (dry run)",
            highlight=False,
        )
        return 0
    console.print(f"{runnable} to run, {len(cells) - runnable} not; store {path} (dry run)")
    return 0


def _sum_up(cells: list[Any], console: Console) -> None:
    """The runs of a large plan counted by tool, model, dataset, hardware and batch size."""
    console.print(f"all {len(cells):,} runs:", highlight=False)
    for name, values in (
        ("tool", [c.tool for c in cells]),
        ("model", [c.model for c in cells]),
        ("dataset", [c.dataset for c in cells]),
        ("hardware", [c.hardware for c in cells]),
    ):
        counts = ", ".join(f"{escape(str(k))} {n:,}" for k, n in Counter(values).items())
        console.print(f"  by {name}: {counts}", highlight=False)
    batches = sorted({c.spec.batch_size for c in cells if c.spec.batch_size})
    if batches:
        console.print(
            f"  batch sizes: {len(batches):,} from {batches[0]} to {batches[-1]}",
            highlight=False,
        )
