"""Turning a worker's events into a repeat record, and repeats into a run result.

A *run* is one benchmark configuration; it has ``repeats`` *repeats*, each one fresh
worker process. Statuses: ``ok``, ``oom`` (out of memory), ``error`` (the worker
reported an exception), ``crashed`` (the worker died without reporting), ``timeout``
and ``interrupted`` (Ctrl-C).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from harness.store import bottleneck
from harness.store.schema import (
    DataSource,
    Loss,
    RepeatRecord,
    RunSummary,
    Stat,
    Timed,
    Timing,
    TimingSummary,
    Validation,
    Warmup,
)

# diverged: the training loss became non-finite (harness.run.loop.Diverged)
STATUSES = ("ok", "oom", "diverged", "error", "crashed", "timeout", "interrupted")


def _phase_windows(events: list[dict[str, Any]], name: str) -> list[tuple[float, float]]:
    """(start, end) monotonic times of every completed occurrence of phase ``name``."""
    windows, start = [], None
    for e in events:
        if e["event"] == "phase" and e.get("name") == name:
            if e.get("state") == "start":
                start = e["t"]
            elif e.get("state") == "end" and start is not None:
                windows.append((start, e["t"]))
                start = None
    return windows


def repeat_record(
    events: list[dict[str, Any]],
    *,
    status: str,
    cause: str | None,
    global_batch: int,
    started: float | None = None,
) -> RepeatRecord:
    """Everything measured in one repeat, from rank 0's events.

    ``status``/``cause`` come from how the process ended; an ``error`` event from the
    worker refines them (oom vs error, the exception's message). ``started``: when the
    worker was launched (time.monotonic()), the origin of its time to first step (else
    the start of its setup phase).
    """
    rank0 = [e for e in events if e.get("rank", 0) == 0]
    errors = [e for e in events if e["event"] == "error"]
    if errors and status != "timeout" and status != "interrupted":
        first = errors[0]
        status = first.get("kind") if first.get("kind") in ("oom", "diverged") else "error"
        cause = f"{first.get('type', 'Error')}: {first.get('message', '')}".strip()

    windows: dict[str, list[tuple[int, float]]] = {"warmup": [], "timed": []}
    device: dict[str, list[float]] = {"warmup": [], "timed": []}
    for e in rank0:
        if e["event"] == "steps" and e.get("phase") in windows:
            windows[e["phase"]].extend((int(n), float(s)) for n, s in e["windows"])
            device[e["phase"]].extend(e.get("device_seconds") or [])
    found = next((e for e in rank0 if e["event"] == "timing"), None)
    timing = Timing(**_fields(found)) if found else Timing()
    timed = windows["timed"]
    timed_steps = sum(n for n, _ in timed)
    timed_seconds = sum(s for _, s in timed)
    images = timed_steps * global_batch
    per_window = [s / n for n, s in timed if n > 0]
    speeds = [n * global_batch / s for n, s in timed if s > 0]
    if device["timed"]:
        step_times, basis = device["timed"], "device"
    else:
        one_by_one = bool(timed) and all(n == 1 for n, _ in timed)
        step_times, basis = per_window, "step" if one_by_one else "window"
    speed_stats = Stat.of(speeds)
    warm = windows["warmup"]
    record = RepeatRecord(
        status=status,
        cause=cause,
        global_batch=global_batch,
        timed=Timed(
            steps=timed_steps,
            images=images,
            seconds=timed_seconds,
            images_per_sec=images / timed_seconds if timed_seconds > 0 else None,
            step_time_s=Stat.of(step_times),
            step_time_basis=basis,
            windows=len(timed),
            window_steps=timing.window_steps,
            window_images_per_sec=speed_stats,
            ci95_rel=(
                speed_stats.ci95 / speed_stats.mean
                if speed_stats.ci95 is not None and speed_stats.mean
                else None
            ),
        ),
        warmup=Warmup(
            steps=sum(n for n, _ in warm),
            seconds=sum(s for _, s in warm),
            first_step_s=warm[0][1] if warm and warm[0][0] == 1 else None,
            windows=len(warm),
            end=timing.warmup_end,
        ),
        timing=timing,
        windows={
            name: _phase_windows(rank0, name) for name in ("setup", "warmup", "timed", "validation")
        },
    )
    for e in rank0:
        kind = e["event"]
        if kind == "start":
            record.framework = {k: v for k, v in e.items() if k not in ("event", "t", "wall")}
        elif kind == "data":
            record.data = DataSource(e.get("synthetic"), e.get("description"))
        elif kind == "plan":
            record.plan = _fields(e)
        elif kind == "memory":
            record.framework_memory = _fields(e)
        elif kind == "eval_compile":
            record.eval_compile_s = e["seconds"]
        elif kind == "compile":
            record.compile_s, record.compile_basis = e["seconds"], "ahead"
        elif kind == "data_wait":
            record.data_wait_s = (record.data_wait_s or 0.0) + e["seconds"]
        elif kind == "validation":
            record.validation.append(
                Validation(
                    **{k: e.get(k) for k in ("epoch", "images", "seconds", "loss", "accuracy")},
                    synthetic=e.get("synthetic"),
                )
            )
        elif kind == "loss":
            if record.loss is None:
                record.loss = Loss(first=e["value"])
            record.loss.last = e["value"]
    spans = record.windows
    first = spans["warmup"][0][0] if spans["warmup"] else None
    ends = [w[1] for name in ("warmup", "timed", "validation") for w in spans[name]]
    # The study's "total execution time": training plus validation, setup excluded.
    record.execution_time_s = (max(ends) - first) if first is not None and ends else None
    # The same without warmup (compilation): comparable across frameworks and caches.
    timed_start = spans["timed"][0][0] if spans["timed"] else None
    record.train_validate_s = (max(ends) - timed_start) if timed_start is not None else None
    record.validation_time_s = sum(v.seconds or 0.0 for v in record.validation) or None
    if timed_seconds and record.data_wait_s is not None:
        record.data_wait_fraction = record.data_wait_s / timed_seconds
    _first_step(record, started, warm, step_times)
    return record


def _first_step(
    record: RepeatRecord,
    started: float | None,
    warm: list[tuple[int, float]],
    step_times: list[float],
) -> None:
    """Time to first step, and the compilation estimated from the first step where the
    backend did not compile ahead: the first step less a steady step (the timed median,
    else warmup's last window per step)."""
    spans = record.windows
    first_end = spans["warmup"][0][0] + warm[0][1] if spans["warmup"] and warm else None
    origin = started if started is not None else (spans["setup"] or [(None, None)])[0][0]
    if first_end is not None and origin is not None:
        record.time_to_first_step_s = first_end - origin
    first = record.warmup.first_step_s
    if record.compile_basis is not None or first is None:
        return
    steady = Stat.of(step_times).p50 if step_times else None
    if steady is None and len(warm) > 1 and warm[-1][0] > 0:
        steady = warm[-1][1] / warm[-1][0]
    if steady is not None:
        record.compile_s, record.compile_basis = max(0.0, first - steady), "first step"


def _fields(event: dict[str, Any]) -> dict[str, Any]:
    """An event's own fields, without the envelope (kind, times, rank)."""
    return {k: v for k, v in event.items() if k not in ("event", "t", "wall", "rank")}


def aggregate(repeats: list[RepeatRecord]) -> RunSummary:
    """Statistics over the repeats that finished ``ok``."""
    ok = [r for r in repeats if r.ok]
    status = "ok" if repeats and len(ok) == len(repeats) else _worst(repeats)

    def over(values: Iterable[float | None]) -> Stat:
        return Stat.of([float(v) for v in values if v is not None])

    return RunSummary(
        status=status,
        repeats=len(repeats),
        repeats_ok=len(ok),
        images_per_sec=over(r.timed.images_per_sec or None for r in ok),
        execution_time_s=over(r.execution_time_s for r in ok),
        step_time_p50_s=over(r.timed.step_time_s.p50 for r in ok),
        accuracy=over(r.accuracy for r in ok),
        eval_compile_s=over(r.eval_compile_s for r in ok),
        compile_s=over(r.compile_s for r in ok),
        first_step_s=over(r.warmup.first_step_s for r in ok),
        time_to_first_step_s=over(r.time_to_first_step_s for r in ok),
        data_wait_fraction=over(r.data_wait_fraction for r in ok),
        bottleneck=bottleneck.of_run([r.bottleneck for r in ok if r.bottleneck is not None]),
        timing=_timing_summary(ok),
        causes=sorted({r.cause for r in repeats if r.cause}),
    )


def _timing_summary(ok: list[RepeatRecord]) -> TimingSummary:
    """How the repeats were timed and how long they ran, each as it happened."""
    modes = [m for m in dict.fromkeys(r.timing.mode for r in ok)]
    return TimingSummary(
        mode=modes[0] if len(modes) == 1 else ([m for m in modes if m] or None),
        window_steps=[r.timing.window_steps for r in ok],
        warmup_end=[r.timing.warmup_end for r in ok],
        length=[r.timing.length for r in ok],
    )


def _worst(repeats: list[RepeatRecord]) -> str:
    """The status of a run whose repeats did not all succeed."""
    if not repeats:
        return "error"
    statuses = {r.status for r in repeats}
    if "ok" in statuses:
        return "partial"
    for status in ("interrupted", "oom", "diverged", "timeout", "crashed", "error"):
        if status in statuses:
            return status
    return "error"
