"""Turning a worker's events into a repeat record, and repeats into a run result.

A *run* is one benchmark configuration; it has ``repeats`` *repeats*, each one fresh
worker process. Statuses: ``ok``, ``oom`` (out of memory), ``error`` (the worker
reported an exception), ``crashed`` (the worker died without reporting), ``timeout``
and ``interrupted`` (Ctrl-C).
"""

from __future__ import annotations

from typing import Any

from harness.results import stats

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

    windows: dict[str, list[tuple[int, float]]] = {"warmup": [], "timed": []}
    device: dict[str, list[float]] = {"warmup": [], "timed": []}
    for e in rank0:
        if e["event"] == "steps" and e.get("phase") in windows:
            windows[e["phase"]].extend((int(n), float(s)) for n, s in e["windows"])
            device[e["phase"]].extend(e.get("device_seconds") or [])
    timing = next((e for e in rank0 if e["event"] == "timing"), None)
    timing = {k: v for k, v in (timing or {}).items() if k not in ("event", "t", "wall", "rank")}
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
    speed_stats = stats.describe(speeds)
    warm = windows["warmup"]
    record: dict[str, Any] = {
        "status": status,
        "cause": cause,
        "global_batch": global_batch,
        "timed": {
            "steps": timed_steps,
            "images": images,
            "seconds": timed_seconds,
            "images_per_sec": images / timed_seconds if timed_seconds > 0 else None,
            # per step: window time / steps per window ("window"), each step timed on
            # its own ("step"), or the device's own per-step timers ("device")
            "step_time_s": stats.describe(step_times),
            "step_time_basis": basis,
            "windows": len(timed),
            "window_steps": timing.get("window_steps"),
            "window_images_per_sec": speed_stats,
            "ci95_rel": (
                speed_stats["ci95"] / speed_stats["mean"]
                if speed_stats["ci95"] is not None and speed_stats["mean"]
                else None
            ),
        },
        "warmup": {
            "steps": sum(n for n, _ in warm),
            "seconds": sum(s for _, s in warm),
            "first_step_s": warm[0][1] if warm and warm[0][0] == 1 else None,
            "windows": len(warm),
            "end": timing.get("warmup_end"),
        },
        "timing": timing,
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
        elif kind == "eval_compile":
            record["eval_compile_s"] = e["seconds"]
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
        "eval_compile_s": stats.describe(collect(("eval_compile_s",))),
        "timing": _timing_summary(ok),
        "causes": sorted({r["cause"] for r in repeats if r.get("cause")}),
    }


def _timing_summary(ok: list[dict[str, Any]]) -> dict[str, Any]:
    """How the repeats were timed and how long they ran, each as it happened."""

    def each(key: str) -> list[Any]:
        return list(dict.fromkeys((r.get("timing") or {}).get(key) for r in ok))

    modes = each("mode")
    return {
        "mode": modes[0] if len(modes) == 1 else (modes or None),
        "window_steps": [(r.get("timing") or {}).get("window_steps") for r in ok],
        "warmup_end": [(r.get("timing") or {}).get("warmup_end") for r in ok],
        "length": [(r.get("timing") or {}).get("length") for r in ok],
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
