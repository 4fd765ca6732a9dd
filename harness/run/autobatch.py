"""``--batch-size auto``: the largest batch per device that runs without running out of
memory, found before the benchmark.

Each try is a fresh worker process (the orchestrator's ``run_repeat``: the same launcher,
devices and interpreter as the run) that runs :data:`TRY_STEPS` training steps (or
inference requests) after one warmup step: no repeats, no monitor, no idle baseline. The
batch doubles from ``start`` until a try fails, ``max`` is reached or the time bound is
spent; with ``bisect``, the gap between the last batch that ran and the first that ran
out of memory is then halved until it closes (or the time is spent). Only an
out-of-memory failure is a memory bound: any other failure ends the search. The search
(every try's batch, status, seconds and cause) is recorded with the run, in its
environment's ``batch_search``; the run then uses the batch found (the first batch tried
when none ran, so that the run records why).
"""

from __future__ import annotations

import dataclasses
import math
import signal
import time
from pathlib import Path
from typing import Any

from harness.run import signals
from harness.run.task import task_for
from harness.spec import parse_batch_search

TRY_STEPS = 2  # timed steps (or requests) of one try, after one warmup step
FOLDER = "batch-search"  # the tries' folders in the run folder


def search(plan: Any, run_dir: Path, run_id: str, run_repeat: Any) -> tuple[Any, dict[str, Any]]:
    """(the plan with the batch found, the search's record). ``run_repeat`` is the
    orchestrator's (one worker process to its end)."""
    spec = plan.spec
    settings = parse_batch_search(spec.batch_search)
    started = time.monotonic()
    deadline = started + settings.time_s
    tries: list[dict[str, Any]] = []
    folder = run_dir / FOLDER
    model_file, failed = task_for(spec.task).prepare(
        _trial(plan, settings.start, settings.time_s), folder, run_id, run_repeat
    )

    def attempt(batch: int) -> str:
        left = max(1.0, deadline - time.monotonic())
        trial = _trial(plan, batch, left)
        name = f"{FOLDER}/try-{len(tries) + 1}-batch-{batch}"
        record = run_repeat(
            trial, run_dir, run_id, len(tries) + 1, folder=name, model_file=model_file
        )
        cause = (record.cause or "").strip().splitlines()
        tries.append(
            {
                "batch": batch,
                "status": record.status,
                "seconds": round(record.process_wall_s or 0.0, 2),
                "cause": cause[0][:300] if cause else None,
            }
        )
        if record.status == "interrupted":
            raise signals.Interrupted(signals.received() or signal.SIGINT)
        signals.check()
        return record.status

    good, bad, stopped = None, None, f"reached max={settings.max}"
    if failed is not None:  # inference: no model file, nothing to try
        stopped = f"the model file could not be written: {failed.cause or failed.status}"
    batch = settings.start
    while failed is None and batch <= settings.max:
        if tries and time.monotonic() >= deadline:
            stopped = f"the time bound ({settings.time_s:g} s) was spent"
            break
        status = attempt(batch)
        if status != "ok":
            bad, stopped = batch, f"batch {batch}: {status}"
            break
        good, batch = batch, batch * 2
    if settings.bisect and good is not None and bad is not None and tries[-1]["status"] == "oom":
        while bad - good > 1:
            if time.monotonic() >= deadline:
                stopped += f"; bisection stopped: the time bound ({settings.time_s:g} s) was spent"
                break
            middle = (good + bad) // 2
            status = attempt(middle)
            if status == "ok":
                good = middle
            elif status == "oom":
                bad = middle
            else:
                stopped += f"; bisection stopped at batch {middle}: {status}"
                break
    found = good if good is not None else settings.start
    record = {
        "how": spec.batch_search,
        "start": settings.start,
        "max": settings.max,
        "time_s": settings.time_s,
        "bisect": settings.bisect,
        "per_device": True,
        "devices": spec.total_devices,
        "try_steps": TRY_STEPS,
        "tries": tries,
        "found": found,
        "fits": good is not None,
        "stopped": stopped,
        "seconds": round(time.monotonic() - started, 2),
    }
    return dataclasses.replace(plan, spec=dataclasses.replace(spec, batch_size=found)), record


def _trial(plan: Any, batch: int, timeout_s: float) -> Any:
    """The plan of one try: ``batch`` per device, a few steps, no validation or dumps."""
    spec = plan.spec
    limit = min(spec.timeout_s or math.inf, timeout_s)
    trial = dataclasses.replace(
        spec,
        batch_size=batch,
        warmup_steps=1,
        steps=TRY_STEPS,
        epochs=None,
        validate=False,
        repeats=1,
        dump_weights=None,
        timeout_s=limit,
    )
    return dataclasses.replace(plan, spec=trial)


def describe(record: dict[str, Any]) -> str:
    """The search in one line, for the run's summary."""
    tries = ", ".join(f"{t['batch']} {t['status']}" for t in record.get("tries", []))
    verdict = (
        f"batch {record.get('found')} per device"
        if record.get("fits")
        else f"no batch ran; batch {record.get('found')} runs to record why"
    )
    return (
        f"--batch-size {record.get('how')}: {verdict} ({tries}; {record.get('stopped')}; "
        f"{record.get('seconds', 0):.1f} s)"
    )
