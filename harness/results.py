"""Turning a worker's events into a repeat record, and repeats into a run result.

A *run* is one benchmark configuration; it has ``repeats`` *repeats*, each one fresh
worker process. Statuses: ``ok``, ``oom`` (out of memory), ``error`` (the worker
reported an exception), ``crashed`` (the worker died without reporting), ``timeout``
and ``interrupted`` (Ctrl-C).
"""

from __future__ import annotations

from typing import Any

from harness import stats

STATUSES = ("ok", "oom", "error", "crashed", "timeout", "interrupted")


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
) -> dict[str, Any]:
    """Everything measured in one repeat, from rank 0's events.

    ``status``/``cause`` come from how the process ended; an ``error`` event from the
    worker refines them (oom vs error, the exception's message).
    """
    rank0 = [e for e in events if e.get("rank", 0) == 0]
    errors = [e for e in events if e["event"] == "error"]
    if errors and status != "timeout" and status != "interrupted":
        first = errors[0]
        status = "oom" if first.get("kind") == "oom" else "error"
        cause = f"{first.get('type', 'Error')}: {first.get('message', '')}".strip()

    steps = {"warmup": [], "timed": []}
    for e in rank0:
        if e["event"] == "steps" and e.get("phase") in steps:
            steps[e["phase"]].extend(e["seconds"])
    timed = steps["timed"]
    timed_seconds = sum(timed)
    images = len(timed) * global_batch
    record: dict[str, Any] = {
        "status": status,
        "cause": cause,
        "global_batch": global_batch,
        "timed": {
            "steps": len(timed),
            "images": images,
            "seconds": timed_seconds,
            "images_per_sec": images / timed_seconds if timed_seconds > 0 else None,
            "step_time_s": stats.describe(timed),
        },
        "warmup": {
            "steps": len(steps["warmup"]),
            "seconds": sum(steps["warmup"]),
            "first_step_s": steps["warmup"][0] if steps["warmup"] else None,
        },
        "windows": {
            name: _phase_windows(rank0, name) for name in ("setup", "warmup", "timed", "validation")
        },
    }
    for e in rank0:
        kind = e["event"]
        if kind == "start":
            record["framework"] = {k: v for k, v in e.items() if k not in ("event", "t", "wall")}
        elif kind == "data":
            record["data"] = {"synthetic": e.get("synthetic"), "description": e.get("description")}
        elif kind == "plan":
            record["plan"] = {k: v for k, v in e.items() if k not in ("event", "t", "wall", "rank")}
        elif kind == "memory":
            record["framework_memory"] = {
                k: v for k, v in e.items() if k not in ("event", "t", "wall", "rank")
            }
        elif kind == "data_wait":
            record["data_wait_s"] = record.get("data_wait_s", 0.0) + e["seconds"]
        elif kind == "validation":
            record.setdefault("validation", []).append(
                {
                    k: e.get(k)
                    for k in ("epoch", "images", "seconds", "loss", "accuracy", "synthetic")
                }
            )
        elif kind == "loss":
            losses = record.setdefault("loss", {})
            losses.setdefault("first", e["value"])
            losses["last"] = e["value"]
    windows = record["windows"]
    first = windows["warmup"][0][0] if windows["warmup"] else None
    ends = [w[1] for name in ("warmup", "timed", "validation") for w in windows[name]]
    # The study's "total execution time": training plus validation, setup excluded.
    record["execution_time_s"] = (max(ends) - first) if first is not None and ends else None
    # The same without warmup (compilation): comparable across frameworks and caches.
    timed_start = windows["timed"][0][0] if windows["timed"] else None
    record["train_validate_s"] = (max(ends) - timed_start) if timed_start is not None else None
    record["validation_time_s"] = sum(v["seconds"] for v in record.get("validation", [])) or None
    if timed_seconds and record.get("data_wait_s") is not None:
        record["data_wait_fraction"] = record["data_wait_s"] / timed_seconds
    return record


def aggregate(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """Statistics over the repeats that finished ``ok``."""
    ok = [r for r in repeats if r["status"] == "ok"]
    speeds = [r["timed"]["images_per_sec"] for r in ok if r["timed"]["images_per_sec"]]
    status = "ok" if repeats and len(ok) == len(repeats) else _worst(repeats)

    def collect(path: tuple[str, ...]) -> list[float]:
        values = []
        for r in ok:
            node: Any = r
            for key in path:
                node = node.get(key) if isinstance(node, dict) else None
            if isinstance(node, (int, float)):
                values.append(float(node))
        return values

    accuracies = [r["validation"][-1]["accuracy"] for r in ok if r.get("validation")]
    return {
        "status": status,
        "repeats": len(repeats),
        "repeats_ok": len(ok),
        "images_per_sec": stats.describe(speeds),
        "execution_time_s": stats.describe(collect(("execution_time_s",))),
        "step_time_p50_s": stats.describe(collect(("timed", "step_time_s", "p50"))),
        "accuracy": stats.describe([a for a in accuracies if a is not None]),
        "causes": sorted({r["cause"] for r in repeats if r.get("cause")}),
    }


def _worst(repeats: list[dict[str, Any]]) -> str:
    """The status of a run whose repeats did not all succeed."""
    if not repeats:
        return "error"
    statuses = {r["status"] for r in repeats}
    if "ok" in statuses:
        return "partial"
    for status in ("interrupted", "oom", "timeout", "crashed", "error"):
        if status in statuses:
            return status
    return "error"
