"""Host sampling: the run's process tree (psutil), system CPU, CPU package energy (RAPL)."""

from __future__ import annotations

import os
from pathlib import Path

import psutil

from .samples import ErrorLog

MIB = 1024 * 1024


_PROC = Path("/proc")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def procfs_usable() -> bool:
    """True on Linux with /proc/<pid>/stat and /proc/<pid>/task/<tid>/children readable."""
    me = os.getpid()
    return (_PROC / str(me) / "stat").is_file() and (
        _PROC / str(me) / "task" / str(me) / "children"
    ).is_file()


class _ProcfsReader:
    """CPU seconds and RSS of one process from a kept-open /proc/<pid>/stat (one read)."""

    def __init__(self, pid: int) -> None:
        self.fd = os.open(_PROC / str(pid) / "stat", os.O_RDONLY)

    def read(self) -> tuple[float, int]:
        # the fd stays bound to this process: a reused pid gives ESRCH, not a stranger
        raw = os.pread(self.fd, 1024, 0)
        if not raw:
            raise ProcessLookupError
        f = raw[raw.rindex(b")") + 2 :].split()
        return (int(f[11]) + int(f[12])) / _TICK, int(f[21]) * _PAGE

    def close(self) -> None:
        os.close(self.fd)


class _PsutilReader:
    """The portable fallback of _ProcfsReader."""

    def __init__(self, pid: int) -> None:
        self.p = psutil.Process(pid)

    def read(self) -> tuple[float, int]:
        ct = self.p.cpu_times()
        return ct.user + ct.system, self.p.memory_info().rss

    def close(self) -> None:
        pass


def _procfs_children(pid: int) -> list[int]:
    """Direct children, from /proc/<pid>/task/<tid>/children of every thread."""
    out: list[int] = []
    task = _PROC / str(pid) / "task"
    for tid in os.listdir(task):
        try:
            with open(task / tid / "children", "rb") as f:
                out.extend(int(x) for x in f.read().split())
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return out


def _descendants(root: int, procfs: bool) -> list[int]:
    if not procfs:
        return [p.pid for p in psutil.Process(root).children(recursive=True)]
    found: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            kids = _procfs_children(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
        found.extend(kids)
        todo.extend(kids)
    return found


class ProcessTree:
    """CPU% and RSS of tracked roots and all their descendants.

    CPU% comes from CPU-time deltas between samples (100 = one core busy), so there
    is no first-call 0.0. On Linux each process costs one read of a kept-open
    /proc/<pid>/stat per sample, and descendants are found through
    /proc/<pid>/task/<tid>/children (not a scan of every process); elsewhere psutil
    does both. The descendant list is refreshed every `refresh_s` seconds (at once when
    a process is gone). CPU used by a process before it is first seen, or after its last
    sample, is not counted; RSS is summed, so pages shared after fork count in each process.
    """

    def __init__(
        self, errors: ErrorLog, refresh_s: float = 1.0, procfs: bool | None = None
    ) -> None:
        self._errors = errors
        self._refresh_s = refresh_s
        self._procfs = procfs_usable() if procfs is None else procfs
        self._roots: list[int] = []
        self._procs: dict[int, _ProcfsReader | _PsutilReader] = {}
        self._cpu: dict[int, float] = {}
        self._last_t: float | None = None
        self._next_refresh = float("-inf")
        self.pids: frozenset[int] = frozenset()
        self.seen: set[int] = set()  # every pid ever tracked
        # CPU seconds of the tree so far: all of a process's time when first seen (it was
        # started for the run), then its growth (host contention subtracts it)
        self.cpu_s = 0.0

    @property
    def roots(self) -> tuple[int, ...]:
        """The tracked roots (worker or launcher processes)."""
        return tuple(self._roots)

    def add_root(self, pid: int, t: float) -> None:
        if not psutil.pid_exists(pid):
            self._errors.record("host", f"track pid {pid}", "no such process", t)
            return
        self._roots.append(pid)
        self._next_refresh = float("-inf")

    def _open(self, pid: int) -> _ProcfsReader | _PsutilReader:
        return _ProcfsReader(pid) if self._procfs else _PsutilReader(pid)

    def _refresh(self, t: float) -> None:
        members: set[int] = set()
        for root in self._roots:
            members.add(root)
            try:
                members.update(_descendants(root, self._procfs))
            except (psutil.NoSuchProcess, ProcessLookupError, FileNotFoundError):
                continue
            except (psutil.Error, OSError) as exc:
                self._errors.record("host", "list children", exc, t)
        for pid in [p for p in self._procs if p not in members]:
            self._drop(pid)
        for pid in members - self._procs.keys():
            try:
                self._procs[pid] = self._open(pid)
            except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
                continue
            except (psutil.Error, OSError) as exc:
                self._errors.record("host", f"pid {pid}", exc, t)
        self.pids = frozenset(self._procs)
        self.seen.update(self.pids)
        self._next_refresh = t + self._refresh_s

    def _drop(self, pid: int) -> None:
        self._procs.pop(pid).close()
        self._cpu.pop(pid, None)

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
        for pid, reader in self._procs.items():
            try:
                cpu_s, rss_b = reader.read()
            except (psutil.NoSuchProcess, ProcessLookupError, FileNotFoundError):
                gone.append(pid)
                continue
            except (psutil.Error, OSError, ValueError, IndexError) as exc:
                self._errors.record("host", f"pid {pid}", exc, t)
                continue
            rss += rss_b
            prev = self._cpu.get(pid)
            self.cpu_s += cpu_s - (prev or 0.0)
            if prev is not None:
                busy += cpu_s - prev
                known += 1
            self._cpu[pid] = cpu_s
        if gone:
            for pid in gone:
                self._drop(pid)
            self.pids = frozenset(self._procs)
            self._next_refresh = float("-inf")  # something changed: look again next time
        self._last_t = t
        n = len(self._procs)
        if n == 0:
            return None, None, 0
        cpu = busy / dt * 100.0 if dt and known else None
        return cpu, rss / MIB, n

    def close(self) -> None:
        for pid in list(self._procs):
            self._drop(pid)


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
                self.reason = (
                    f"permission denied reading {d}/energy_uj (root-only on Linux >= 5.10)"
                )
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


class SystemCpu:
    """System-wide CPU% between calls (100 = every core busy); /proc/stat on Linux, else psutil."""

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open(_PROC / "stat", os.O_RDONLY)
            self._last = self._times()
        except (OSError, ValueError):
            self._fd = None
            psutil.cpu_percent(interval=None)  # prime: the first call has no reference

    def _times(self) -> tuple[int, int]:
        assert self._fd is not None
        line = os.pread(self._fd, 256, 0).split(b"\n", 1)[0].split()
        # cpu user nice system idle iowait irq softirq steal (guest is inside user)
        ticks = [int(x) for x in line[1:9]]
        return sum(ticks), ticks[3] + ticks[4]

    def read(self) -> float | None:
        if self._fd is None:
            return psutil.cpu_percent(interval=None)
        try:
            total, idle = self._times()
        except (OSError, ValueError):
            return None
        d_total = total - self._last[0]
        d_idle = idle - self._last[1]
        self._last = (total, idle)
        return 100.0 * (d_total - d_idle) / d_total if d_total > 0 else None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
