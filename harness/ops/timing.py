"""Timing one kernel: the training loop's rules, applied to calls instead of steps.

- the first call runs alone (compilation, allocation) and is not timed;
- warmup windows follow until two successive windows' time per call differ by at most
  5% (harness.run.loop.Limits), or its time bound;
- a window is enough calls to last ``window_s`` (harness.run.loop.auto_window); the
  device is synchronised once at the end of each window and the clock read there;
- the timed phase runs windows until it has ``min_time`` seconds and 5 windows and the
  95% confidence interval of the calls per second is within ±2% of their mean
  (harness.run.loop.throughput_ci), or until ``max_time`` seconds.

Runs in the ops worker; no NumPy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.run.loop import Limits, auto_window, throughput_ci
from harness.store import stats


@dataclass
class Timing:
    calls: int = 0
    seconds: float = 0.0
    per_call_us: list[float] = field(default_factory=list)  # one per timed window
    window_calls: int = 0
    warmup_end: str = ""
    length: str = ""
    first_call_s: float = 0.0

    @property
    def stat(self) -> dict[str, Any]:
        return stats.describe(self.per_call_us)

    @property
    def mean_s(self) -> float:
        return self.seconds / self.calls if self.calls else 0.0


def limits_for(min_time: float, max_time: float) -> Limits:
    """The loop's limits, with windows short enough for ``max_time`` to hold 10 of them
    (twice the 5 windows the confidence interval needs at least)."""
    base = Limits()
    window = min(base.window_s, max(1e-3, max_time / (2 * base.min_windows)))
    warmup = min(base.warmup_max_s, max(0.2, max_time))
    return Limits(window_s=window, warmup_max_s=warmup)


def time_kernel(
    call: Callable[[], Any],
    sync: Callable[[Any], None],
    *,
    min_time: float,
    max_time: float,
    begin: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Timing:
    """Times ``call`` by windows; ``sync(token)`` waits for the device at a window's end;
    ``begin(n)`` (optional) is told the calls of a window before its clock starts."""
    limits = limits_for(min_time, max_time)
    result = Timing()

    def window(n: int) -> float:
        if begin is not None:
            begin(n)
        start = clock()
        token = None
        for _ in range(n):
            token = call()
        sync(token)
        return clock() - start

    result.first_call_s = window(1)
    per = previous = max(result.first_call_s, 1e-9)
    warm_s = 0.0
    while True:
        n = auto_window(per, limits)
        seconds = window(n)
        warm_s += seconds
        per = max(seconds / n, 1e-9)
        if abs(per - previous) <= limits.steady_tolerance * previous:
            result.warmup_end = "steady"
            break
        if warm_s >= limits.warmup_max_s:
            result.warmup_end = "bound: time"
            break
        previous = per
    n = auto_window(per, limits)
    result.window_calls = n
    windows: list[tuple[int, float]] = []
    while True:
        seconds = window(n)
        windows.append((n, seconds))
        elapsed = sum(t for _, t in windows)
        if elapsed >= max_time:
            result.length = "max time"
            break
        if elapsed >= min_time and len(windows) >= limits.min_windows:
            found = throughput_ci(windows, 1)
            if found is not None and found[1] <= limits.ci_target * found[0]:
                result.length = f"ci within {limits.ci_target:.0%}"
                break
    result.calls = sum(c for c, _ in windows)
    result.seconds = sum(t for _, t in windows)
    result.per_call_us = [t / c * 1e6 for c, t in windows]
    return result
