"""Runs on disk that never reached the store, taken in at the next start.

A run writes each repeat's ``record.json`` before its store row and ``result.json``
before the run's row, and the worker's ``events.jsonl`` as it goes. When the harness
stops between the two (a full disk, ``kill -9``, a lost node), the next run or sweep in
the same output directory calls :func:`adopt`: repeats missing from the store are added
from ``record.json`` (or rebuilt from ``events.jsonl`` when the record itself could not
be written), and a run missing from the store is added from ``result.json``, or, when
there is none, summarised from its repeats with status ``interrupted``. A run whose
orchestrator is still alive (another process writing the same directory) is left alone.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from harness.run import lifeline
from harness.run.events import read_events
from harness.store.records import aggregate, repeat_record
from harness.store.schema import RepeatRecord, RunResult, SchemaError
from harness.store.store import ResultStore

OWNER_KEY = "orchestrator"  # in RunResult.environment: "host:pid:start ticks:group"
STOPPED = "the harness stopped before storing this run; taken from its folder"


def owner() -> str:
    """This process as a run's owner: host and the lifeline's pid/start-time token."""
    token = lifeline.orchestrator_env(".")[lifeline.ORCHESTRATOR_ENV]
    return f"{socket.gethostname()}:{token}"


def _in_progress(result: RunResult) -> bool:
    """Whether the run's orchestrator is alive on this host (its run is not orphaned)."""
    host, _, token = str(result.environment.get(OWNER_KEY) or "").partition(":")
    if host != socket.gethostname():
        return False  # another host's run: its folder on a shared disk, long finished
    return lifeline.is_alive(token)


def adopt(store: ResultStore, output_dir: str | os.PathLike[str]) -> list[str]:
    """Takes the orphaned runs of ``output_dir`` into ``store``; one note per run taken."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    with store.transaction() as db:
        stored_runs = {row[0] for row in db.execute("SELECT run_id FROM runs")}
        stored_repeats = {(r[0], r[1]) for r in db.execute("SELECT run_id, repeat FROM repeats")}
    notes = []
    for run_dir in sorted(p for p in folder.iterdir() if (p / "run.json").is_file()):
        if run_dir.name in stored_runs:
            continue
        try:
            note = _adopt_run(store, run_dir, stored_repeats)
        except (OSError, SchemaError, ValueError) as exc:
            note = f"run {run_dir.name}: left out, its files cannot be read ({exc})"
        if note:
            notes.append(note)
    return notes


def _adopt_run(store: ResultStore, run_dir: Path, stored: set[tuple[str, int]]) -> str | None:
    started = RunResult.from_json((run_dir / "run.json").read_text())
    if _in_progress(started):
        return None
    run_id = started.run_id or run_dir.name
    repeats, rebuilt = _repeats(run_dir, started)
    for record in repeats:
        if (run_id, record.repeat) not in stored:
            store.add_repeat(run_id, record.repeat or 0, record)
    finished = run_dir / "result.json"
    if finished.is_file():
        result = RunResult.from_json(finished.read_text())
        store.add_run(result)
        return f"run {run_id}: its result.json was not in the store; taken in ({result.status})"
    result = started
    result.repeats = repeats
    result.summary = aggregate(repeats)
    result.summary.status = "interrupted"
    result.summary.causes.append(STOPPED)
    first_ok = next((r for r in repeats if r.ok), None)
    if first_ok is not None:
        result.framework, result.data = first_ok.framework, first_ok.data
        result.synthetic = first_ok.data.synthetic if first_ok.data else None
    finished.write_text(result.to_json())
    store.add_run(result)
    extra = f", {rebuilt} rebuilt from events.jsonl" if rebuilt else ""
    return (
        f"run {run_id}: stopped before it was stored; taken in as interrupted with "
        f"{sum(r.ok for r in repeats)} ok repeat(s){extra}"
    )


def _repeats(run_dir: Path, started: RunResult) -> tuple[list[RepeatRecord], int]:
    """The run's repeats from their folders, in order; and how many were rebuilt."""
    numbered = sorted((int(p.name.split("-")[-1]), p) for p in run_dir.glob("repeat-*"))
    records = [r for n, folder in numbered if (r := _record(folder, started, n)) is not None]
    rebuilt = sum((r.cause or "").endswith(_REBUILT) for r in records)
    return records, rebuilt


_REBUILT = "rebuilt from events.jsonl"


def _record(folder: Path, started: RunResult, number: int) -> RepeatRecord | None:
    path = folder / "record.json"
    if path.is_file():
        try:
            return RepeatRecord.from_json(path.read_text())
        except SchemaError:
            pass  # torn by a full disk: rebuilt from the events below
    events_path = folder / "events.jsonl"
    if not events_path.is_file():
        return None
    try:
        events = read_events(events_path)
    except (OSError, ValueError, json.JSONDecodeError):
        return None
    if not events:
        return None
    finished = any(e.get("event") == "end" for e in events)
    record = repeat_record(
        events,
        status="ok" if finished else "crashed",
        cause=None if finished else "the worker's end was not recorded",
        global_batch=started.global_batch or started.spec.global_batch,
    )
    record.cause = f"{record.cause}; {_REBUILT}" if record.cause else _REBUILT
    record.run_id, record.repeat = started.run_id, number
    return record
