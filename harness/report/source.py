"""Reading what a report, an export or a comparison needs from a results store."""

from __future__ import annotations

from pathlib import Path

from harness.errors import UsageError
from harness.report.data import ReportData, build
from harness.store.schema import RunResult
from harness.store.store import ResultStore
from harness.sweep.state import DONE, SKIPPED, SweepState


def store_path(path: str | Path) -> Path:
    """A results.sqlite file, or a folder holding one (a --output-dir)."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.sqlite"
    if not path.is_file():
        raise UsageError(f"no results store at {path} (runs write <output-dir>/results.sqlite)")
    return path


def open_store(path: str | Path) -> ResultStore:
    """The store, read-only: reports, exports and comparisons never change it."""
    return ResultStore(store_path(path), readonly=True)


def resolve_sweep(store: ResultStore, sweep: str | None) -> str | None:
    """``latest`` means the newest sweep in the store; an unknown id is a UsageError."""
    if sweep is None:
        return None
    if sweep == "latest":
        latest = SweepState.latest_id(store)
        if latest is None:
            raise UsageError(f"no sweeps in {store.path}")
        return latest
    known = [s["sweep_id"] for s in SweepState.all_sweeps(store)]
    if sweep not in known and not store.runs(sweep_id=sweep):
        listed = ", ".join(known[-5:]) or "none"
        raise UsageError(f"no sweep {sweep!r} in {store.path}; recent sweeps: {listed}")
    return sweep


def load_runs(store: ResultStore, sweep: str | None) -> list[RunResult]:
    """Every stored run (of one sweep), oldest first."""
    return store.runs(sweep_id=sweep) if sweep else store.runs()


def report_data(path: str | Path, sweep: str | None = None) -> ReportData:
    """The report of a store, or of one sweep in it (with the runs it skipped)."""
    store = open_store(path)
    sweep = resolve_sweep(store, sweep)
    results = load_runs(store, sweep)
    info = [f"store: {store.path}"]
    not_run: list[tuple[str, str]] = []
    tool_order = None
    title = "Benchmark report"
    if sweep:
        title = f"Benchmark report: sweep {sweep}"
        state = SweepState(store, sweep)
        known = [s["sweep_id"] for s in SweepState.all_sweeps(store)]
        if sweep in known:
            meta = state.info()
            cells = state.cells()
            tool_order = ((meta["config"] or {}).get("sweep") or {}).get("tools")
            done = sum(c.status == DONE for c in cells)
            info.append(
                f"sweep {sweep} ({meta['source']}): {done} of {len(cells)} runs done, "
                f"status {meta['status']}, started {meta['created_at']}"
            )
            for cell in cells:
                what = f"{cell.tool} · {cell.model} · {cell.dataset} · {cell.hardware}"
                if cell.status == SKIPPED:
                    not_run.append((what, cell.reason or "skipped"))
                elif cell.status != DONE:
                    not_run.append((what, f"{cell.status}: the sweep has not finished it yet"))
    hosts = describe_hosts(results)
    if hosts:
        info.append("hosts: " + "; ".join(hosts))
    info.append(f"{len(results)} runs stored")
    info += [f"unreadable row left out: {note}" for note in store.skipped]
    data = build(results, title=title, info=info, not_run=not_run, tool_order=tool_order)
    data.sweep = sweep
    return data


def describe_hosts(results: list[RunResult]) -> list[str]:
    """One line per host: CPU, cores and the GPUs its runs used."""
    hosts: dict[str, tuple[str, set[str]]] = {}
    for result in results:
        env = result.environment
        name = str(env.get("hostname", "?"))
        cpu = f"{env.get('cpu', '?')}, {env.get('cpu_logical_cores', '?')} logical cores"
        _, gpus = hosts.setdefault(name, (cpu, set()))
        gpus.update(str(g.get("name", "?")) for g in env.get("gpus") or [])
    return [
        f"{name} ({cpu}" + (f"; GPUs: {', '.join(sorted(gpus))})" if gpus else ")")
        for name, (cpu, gpus) in sorted(hosts.items())
    ]
