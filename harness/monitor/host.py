"""Host sampling: the run's process tree (psutil), system CPU, CPU package energy (RAPL)."""

from __future__ import annotations

import os
from pathlib import Path

import psutil

from .samples import ErrorLog

MIB = 1024 * 1024


class ProcessTree:
    """CPU% and RSS of tracked roots and all their descendants.

    CPU% comes from cpu_times() deltas between samples (100 = one core busy), so there
    is no first-call 0.0. Process objects are reused, and the list of descendants is
    refreshed every `refresh_s` seconds (or at once when a process is gone), not on
    every sample. CPU used by a process before it is first seen, or after its last
    sample, is not counted; RSS is summed, so pages shared after fork count in each process.
    """

    def __init__(self, errors: ErrorLog, refresh_s: float = 1.0) -> None:
        self._errors = errors
        self._refresh_s = refresh_s
        self._roots: list[psutil.Process] = []
        self._procs: dict[int, psutil.Process] = {}
        self._cpu: dict[int, float] = {}
        self._last_t: float | None = None
        self._next_refresh = float("-inf")
        self.pids: frozenset[int] = frozenset()

    def add_root(self, pid: int, t: float) -> None:
        try:
            self._roots.append(psutil.Process(pid))
        except psutil.Error as exc:
            self._errors.record("host", f"track pid {pid}", exc, t)
        self._next_refresh = float("-inf")

    @property
    def tracking(self) -> bool:
        return bool(self._roots)

    def _refresh(self, t: float) -> None:
        found: dict[int, psutil.Process] = {}
        for root in self._roots:
            try:
                members = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            except psutil.Error as exc:
                self._errors.record("host", "list children", exc, t)
                members = [root]
            for p in members:
                # keep the object we already have, so its cached state is reused
                found[p.pid] = self._procs.get(p.pid, p)
        self._procs = found
        self.pids = frozenset(found)
        self._next_refresh = t + self._refresh_s

    def sample(self, t: float) -> tuple[float | None, float | None, int | None]:
        """(cpu_pct, rss_mib, process count) for the tree now; Nones before anything is tracked."""
        if not self._roots:
            return None, None, None
        if t >= self._next_refresh:
            self._refresh(t)
        dt = None if self._last_t is None else t - self._last_t
        busy = 0.0
        rss = 0
        known = 0
        gone: list[int] = []
        for pid, p in self._procs.items():
            try:
                ct = p.cpu_times()
                rss += p.memory_info().rss
            except psutil.NoSuchProcess:
                gone.append(pid)
                continue
            except psutil.Error as exc:
                self._errors.record("host", f"pid {pid}", exc, t)
                continue
            total = ct.user + ct.system
            prev = self._cpu.get(pid)
            if prev is not None:
                busy += total - prev
                known += 1
            self._cpu[pid] = total
        if gone:
            for pid in gone:
                del self._procs[pid]
                self._cpu.pop(pid, None)
            self._next_refresh = float("-inf")  # something changed: look again next time
        self._last_t = t
        n = len(self._procs)
        if n == 0:
            return None, None, 0
        cpu = busy / dt * 100.0 if dt and known else None
        return cpu, rss / MIB, n


class Rapl:
    """Cumulative CPU package energy from /sys/class/powercap (Intel RAPL, also on AMD)."""

    def __init__(self, root: str | os.PathLike[str] = "/sys/class/powercap") -> None:
        self.reason: str | None = None
        self._fds: list[int] = []
        self._max: list[float] = []
        self._last: list[float] = []
        self._total = 0.0
        self._open(Path(root))

    @property
    def available(self) -> bool:
        return bool(self._fds)

    def _open(self, root: Path) -> None:
        if not root.is_dir():
            self.reason = f"RAPL not present ({root} missing)"
            return
        domains = sorted(d for d in root.glob("intel-rapl:*") if d.name.count(":") == 1)
        domains = [d for d in domains if _package_domain(d)]
        if not domains:
            self.reason = f"RAPL not present (no package domain under {root})"
            return
        for d in domains:
            try:
                fd = os.open(d / "energy_uj", os.O_RDONLY)
                value = _read_number(fd)
                top = float((d / "max_energy_range_uj").read_text().strip())
            except PermissionError:
                self.reason = (f"permission denied reading {d}/energy_uj "
                               "(root-only on Linux >= 5.10)")
                self.close()
                return
            except (OSError, ValueError) as exc:
                self.reason = f"RAPL unreadable: {exc}"
                self.close()
                return
            self._fds.append(fd)
            self._max.append(top)
            self._last.append(value)

    def read(self) -> float | None:
        """Microjoules used by all packages since this reader opened; wrap-around handled."""
        if not self._fds:
            return None
        for i, fd in enumerate(self._fds):
            try:
                value = _read_number(fd)
            except (OSError, ValueError):
                return None
            delta = value - self._last[i]
            if delta < 0:  # the counter wrapped at max_energy_range_uj
                delta += self._max[i]
            self._total += delta
            self._last[i] = value
        return self._total

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []


def _package_domain(d: Path) -> bool:
    try:
        return (d / "name").read_text().strip().startswith("package")
    except OSError:
        return True


def _read_number(fd: int) -> float:
    return float(os.pread(fd, 64, 0).strip())


def system_cpu_percent() -> float:
    """System-wide CPU% since the previous call (100 = every core busy)."""
    return psutil.cpu_percent(interval=None)
