"""Sample rows, the recording that holds them, and a counting error log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class GpuSample:
    """One reading of one GPU; None where the value was not available."""

    power_w: float | None = None
    energy_mj: float | None = None  # raw NVML counter (mJ since driver load)
    mem_used_mib: float | None = None  # device-wide
    proc_mem_mib: float | None = None  # the tracked process tree only
    util_pct: float | None = None
    sm_mhz: float | None = None
    temp_c: float | None = None
    throttle: int | None = None  # NVML clocks-event-reasons bitmask


@dataclass(slots=True)
class Sample:
    """One row of the power-log, stamped with time.monotonic()."""

    t: float
    gpus: tuple[GpuSample, ...] = ()
    host_cpu_pct: float | None = None  # system-wide, 100 = all cores busy
    tree_cpu_pct: float | None = None  # tracked tree, 100 = one core busy
    tree_rss_mib: float | None = None  # sum of RSS over the tracked tree
    tree_procs: int | None = None
    cpu_energy_uj: float | None = None  # RAPL, cumulative since the monitor opened


@dataclass
class ErrorEntry:
    """A distinct error and how often it was seen."""

    source: str
    what: str
    error: str
    count: int
    first_t: float
    last_t: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "what": self.what,
            "error": self.error,
            "count": self.count,
            "first_t": self.first_t,
            "last_t": self.last_t,
        }


class ErrorLog:
    """Collects errors by (source, what, message), counting repeats instead of storing them."""

    def __init__(self, max_distinct: int = 100) -> None:
        self._entries: dict[tuple[str, str, str], ErrorEntry] = {}
        self._max = max_distinct
        self.dropped = 0

    def record(self, source: str, what: str, err: BaseException | str, t: float) -> None:
        msg = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
        key = (source, what, msg)
        entry = self._entries.get(key)
        if entry is not None:
            entry.count += 1
            entry.last_t = t
        elif len(self._entries) < self._max:
            self._entries[key] = ErrorEntry(source, what, msg, 1, t, t)
        else:
            self.dropped += 1

    def __len__(self) -> int:
        return len(self._entries)

    def as_list(self) -> list[dict[str, Any]]:
        out = [e.as_dict() for e in self._entries.values()]
        if self.dropped:
            out.append(
                {
                    "source": "monitor",
                    "what": "errors",
                    "error": "more distinct errors than kept",
                    "count": self.dropped,
                    "first_t": None,
                    "last_t": None,
                }
            )
        return out


class Recording(list):
    """The samples of one monitored run (a list of Sample) plus what summarize() needs.

    It is a plain list for callers that only iterate; the attributes carry the GPU
    identity, the reasons for missing data, the error log and the sampler's own cost.
    """

    def __init__(self, samples: list[Sample] | None = None, *, interval_s: float = 0.1) -> None:
        super().__init__(samples or [])
        self.interval_s = interval_s
        self.start_t: float | None = None
        self.gpu_indices: list[int] = []
        self.gpu_available = False
        self.gpu_reason: str | None = "GPU monitoring not started"
        self.driver_version: str | None = None
        self.devices: list[dict[str, Any]] = []
        # NVML listed compute processes, none of them tracked (another user, a PID namespace)
        self.foreign_gpu_processes = False
        # other processes seen on the run's GPUs (NvmlSampler.contention()), and why
        # none could be judged when the monitor cannot tell them from the run's own
        self.contended: list[dict[str, Any]] = []
        self.contention_reason: str | None = None
        self.cpu_energy_reason: str | None = None
        # host contention (harness.monitor.contention): the cores' CPU times per sample,
        # the run's cores, how many it uses, and the busiest other processes
        self.host_load: list[Any] = []
        self.cpu_cores: list[int] = []
        self.cores_used: float = 0.0
        self.others_top: list[dict[str, Any]] = []
        self.baseline: dict[str, Any] | None = None
        self.errors: list[dict[str, Any]] = []
        self.unsupported: list[dict[str, Any]] = []
        self.sampler: dict[str, Any] = {}
