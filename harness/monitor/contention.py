"""Host contention: the CPU time other processes take on the run's cores, and VM steal.

Over a window, on the cores the run may use (its affinity mask, ``cores``):

- ``others`` = the busy CPU seconds of those cores (/proc/stat: user, nice, system, irq,
  softirq) minus the CPU seconds of the run's own processes (the worker's process tree
  and the harness process itself), per second of wall time (in cores);
- ``spare`` = the cores of the mask the run leaves free (``cores - cores_used``; the CPU
  thread policy of harness.cpu decides ``cores_used``): others may use them freely;
- ``others_pct`` = ``100 * max(0, others - spare) / cores_used``: the share of the run's
  own cores that other processes took;
- ``steal_pct`` = the steal ticks of those cores over all their ticks (a VM's hypervisor
  gave the time to another guest).

A window is *contended* when ``others_pct > OTHERS_PCT`` or ``steal_pct > STEAL_PCT``.
The monitor judges the warmup and timed phases together; ``check`` judges a short window
before measuring (``doctor``, ``run --require-quiet``). The top other processes come from
two psutil snapshots of every process's CPU times (at the start and the end of a
window): cheap, but a process that starts and ends inside the window is not named.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

from harness.errors import UsageError

OTHERS_PCT = 10.0
"""Contended when other processes take more than this share (%) of the run's cores."""

STEAL_PCT = 5.0
"""Contended when the hypervisor steals more than this share (%) of the cores' time."""

CHECK_S = 1.0
"""Seconds one check samples the machine before measuring (doctor, --require-quiet)."""

TOP = 3
"""Other processes named: the busiest, each above MIN_NAMED_PCT of one core."""

MIN_NAMED_PCT = 1.0

PROC_STAT_ENV = "HARNESS_PROC_STAT"
"""The file read as /proc/stat (tests give a still one, so the load of the machine that
runs them marks none of their runs)."""

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Reading:
    """Cumulative counters at time ``t`` (seconds): busy, steal and all CPU time of the
    cores, and the CPU time of the run's own processes."""

    t: float
    busy_s: float
    steal_s: float
    total_s: float
    own_s: float


def parse_stat(text: str, cores: Iterable[int] | None = None) -> tuple[float, float, float]:
    """(busy, steal, total) CPU seconds summed over the ``cpuN`` lines of /proc/stat whose
    N is in ``cores`` (None: every core). Guest time is inside user time."""
    wanted = None if cores is None else {int(c) for c in cores}
    busy = steal = total = 0
    for line in text.splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *values = line.split()
        if wanted is not None and int(name[3:]) not in wanted:
            continue
        user, nice, system, idle, iowait, irq, softirq, st = (int(v) for v in values[:8])
        busy += user + nice + system + irq + softirq
        steal += st
        total += user + nice + system + idle + iowait + irq + softirq + st
    return busy / _TICK, steal / _TICK, total / _TICK


class CoreClock:
    """Cumulative CPU times of a set of cores: a kept-open /proc/stat, else psutil."""

    def __init__(self, cores: Sequence[int] | None = None) -> None:
        self.cores = list(run_cores() if cores is None else cores)
        try:
            path = os.environ.get(PROC_STAT_ENV) or "/proc/stat"
            self._fd: int | None = os.open(path, os.O_RDONLY)
        except OSError:
            self._fd = None

    def read(self) -> tuple[float, float, float] | None:
        """(busy, steal, total) seconds since boot; None where they cannot be read."""
        try:
            if self._fd is not None:
                chunks, offset = [], 0
                while chunk := os.pread(self._fd, 65536, offset):
                    chunks.append(chunk)
                    offset += len(chunk)
                return parse_stat(b"".join(chunks).decode(), self.cores)
            per_cpu = psutil.cpu_times(percpu=True)
            rows = [per_cpu[c] for c in self.cores if c < len(per_cpu)]
        except (OSError, ValueError, IndexError):
            return None
        busy = sum(r.user + r.nice + r.system + getattr(r, "irq", 0.0) for r in rows)
        busy += sum(getattr(r, "softirq", 0.0) for r in rows)
        steal = sum(getattr(r, "steal", 0.0) for r in rows)
        idle = sum(r.idle + getattr(r, "iowait", 0.0) for r in rows)
        return busy, steal, busy + idle + steal

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def run_cores() -> list[int]:
    """The cores this process (and the worker it starts) may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return list(range(os.cpu_count() or 1))


Snapshot = dict[int, tuple[str, float, float]]


def processes_cpu() -> Snapshot:
    """pid -> (name, start time, CPU seconds) of every process psutil can read."""
    out: Snapshot = {}
    for p in psutil.process_iter(["name", "create_time", "cpu_times"]):
        times = p.info.get("cpu_times")
        if times is not None:
            started = p.info.get("create_time") or 0.0
            out[p.pid] = (p.info.get("name") or "?", started, times.user + times.system)
    return out


def top_others(
    before: Snapshot,
    after: Snapshot,
    own: Iterable[int],
    wall_s: float,
) -> list[dict[str, Any]]:
    """The TOP busiest processes not in ``own`` between two snapshots: pid, name and
    cpu_pct (100 = one core busy over ``wall_s``). A process new in ``after`` (a pid not
    seen before, or reused: another start time) counts all its CPU time."""
    mine = set(own)
    if wall_s <= 0:
        return []
    found = []
    for pid, (name, started, cpu_s) in after.items():
        if pid in mine:
            continue
        then = before.get(pid)
        used = cpu_s - (then[2] if then is not None and then[1] == started else 0.0)
        pct = 100.0 * used / wall_s
        if pct >= MIN_NAMED_PCT:
            found.append({"pid": pid, "name": name, "cpu_pct": round(pct, 1)})
    found.sort(key=lambda o: -o["cpu_pct"])
    return found[:TOP]


@dataclass
class Load:
    """What other processes took over one window (see the module docstring)."""

    wall_s: float
    cores: int  # the cores of the run's mask
    cores_used: float  # those the run uses (the CPU thread policy)
    others_cores: float  # other processes' CPU time per second, in cores
    others_pct: float  # share of the run's cores they took, beyond the spare ones
    steal_pct: float
    top: list[dict[str, Any]] = field(default_factory=list)
    others_limit_pct: float = OTHERS_PCT
    steal_limit_pct: float = STEAL_PCT

    @property
    def contended(self) -> bool:
        return self.others_pct > self.others_limit_pct or self.steal_pct > self.steal_limit_pct

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "contended": self.contended}


def load_of(
    deltas: Sequence[tuple[Reading, Reading]], cores: int, cores_used: float
) -> Load | None:
    """The Load over windows given as (first, last) reading pairs; None with no time."""
    wall = sum(b.t - a.t for a, b in deltas)
    total = sum(b.total_s - a.total_s for a, b in deltas)
    if wall <= 0 or total <= 0:
        return None
    busy = sum(b.busy_s - a.busy_s for a, b in deltas)
    own = sum(b.own_s - a.own_s for a, b in deltas)
    others = max(0.0, busy - own) / wall
    used = max(min(cores_used, cores), 1e-9)
    spare = max(0.0, cores - used)
    return Load(
        wall_s=round(wall, 3),
        cores=cores,
        cores_used=used,
        others_cores=round(others, 3),
        others_pct=round(100.0 * max(0.0, others - spare) / used, 1),
        steal_pct=round(100.0 * sum(b.steal_s - a.steal_s for a, b in deltas) / total, 1),
    )


def describe(load: dict[str, Any]) -> str:
    """One line: ``other processes took 48% of the run's 2 cores (pid 123 python 97%)``."""
    used = load.get("cores_used") or 0
    text = (
        f"other processes took {load.get('others_pct', 0):g}% of the run's {used:g} core(s)"
        f" (limit {load.get('others_limit_pct', OTHERS_PCT):g}%)"
    )
    top = load.get("top") or []
    if top:
        text += " - " + ", ".join(f"pid {o['pid']} {o['name']} {o['cpu_pct']:g}%" for o in top)
    steal = load.get("steal_pct") or 0
    if steal:
        text += f"; VM steal {steal:g}% (limit {load.get('steal_limit_pct', STEAL_PCT):g}%)"
    return text


def own_cpu_s() -> float:
    """CPU seconds of this (the harness) process, all threads."""
    return time.process_time()


def _family() -> tuple[float, list[int]]:
    """CPU seconds of this process and all its descendants, ended or running (a check may
    run beside the harness's own subprocesses), and the running descendants' pids."""
    t = os.times()
    cpu = t.user + t.system + t.children_user + t.children_system
    pids = []
    for child in psutil.Process().children(recursive=True):
        try:
            ct = child.cpu_times()
        except psutil.Error:  # ended meanwhile: its parent reaps it into children_*
            continue
        cpu += ct.user + ct.system + ct.children_user + ct.children_system
        pids.append(child.pid)
    return cpu, pids


def check(
    seconds: float = CHECK_S,
    cores: Sequence[int] | None = None,
    cores_used: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Load | None:
    """Sample the machine for ``seconds`` (nothing of the run started yet): what other
    processes took of ``cores`` (None: this process's affinity); this process and its
    descendants are not others. None where the CPU times cannot be read."""
    clock = CoreClock(cores)
    try:
        first, _ = _reading(clock)
        before = processes_cpu()
        sleep(seconds)
        after = processes_cpu()
        last, mine = _reading(clock)
    finally:
        clock.close()
    if first is None or last is None:
        return None
    n = len(clock.cores)
    load = load_of([(first, last)], n, n if cores_used is None else cores_used)
    if load is not None:
        load.top = top_others(before, after, [os.getpid(), *mine], last.t - first.t)
    return load


def _reading(clock: CoreClock) -> tuple[Reading | None, list[int]]:
    times = clock.read()
    if times is None:
        return None, []
    cpu, pids = _family()
    return Reading(time.monotonic(), *times, cpu), pids


def wait_quiet(
    bound_s: float,
    cores: Sequence[int] | None = None,
    cores_used: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] | None = None,
) -> Load | None:
    """``--require-quiet``: check until a window is not contended, for at most
    ``bound_s`` seconds; UsageError (one line, exit 2) when the machine stays busy."""
    waited = 0.0
    while True:
        load = check(CHECK_S, cores, cores_used, sleep)
        waited += CHECK_S
        if load is None or not load.contended:
            return load
        if waited >= bound_s:
            raise UsageError(
                f"the machine is busy ({describe(load.to_dict())}); still busy after "
                f"{bound_s:g} s (--require-quiet)"
            )
        if say is not None:
            say(f"waiting for a quiet machine: {describe(load.to_dict())}")


def summarize_load(
    readings: Sequence[Reading],
    windows: Sequence[Any],
    cores: int,
    cores_used: float,
    top: list[dict[str, Any]],
) -> dict[str, Any] | None:
    """host["contention"]: the Load over the warmup and timed windows (the readings
    inside each window), or None when no reading covers them."""
    judged = [w for w in windows if w.name in ("warmup", "timed") or w.name.startswith("timed.")]
    pairs = []
    for w in judged:
        inside = [r for r in readings if w.start <= r.t <= w.end]
        if len(inside) >= 2:
            pairs.append((inside[0], inside[-1]))
    load = load_of(pairs, cores, cores_used) if pairs and cores else None
    if load is None:
        return None
    load.top = top
    return {**load.to_dict(), "phases": [w.name for w in judged]}
