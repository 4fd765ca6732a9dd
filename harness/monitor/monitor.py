"""The Monitor: a background thread that samples GPUs and the host at a fixed rate."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from . import contention
from .csvlog import write_csv
from .host import ProcessTree, Rapl, SystemCpu
from .nvml import NvmlSampler
from .samples import ErrorLog, Recording, Sample
from .summary import PhaseWindow, baseline_from, summarize


@dataclass
class MonitorConfig:
    """How and what to sample.

    gpu_indices: NVML indices of the GPUs the run uses; None means every GPU NVML
    sees, an empty list means none (a CPU run). nvml_module: a stand-in for pynvml
    (tests); None imports pynvml lazily. clock: must be time.monotonic outside tests,
    so samples line up with the worker's phase timestamps. cpu_cores: the cores the run
    may use (None: this process's affinity); cores_used: how many of them it uses (the
    CPU thread policy; None: all), for host contention (harness.monitor.contention).
    """

    interval_s: float = 0.1
    gpu_indices: Sequence[int] | None = None
    nvml_module: ModuleType | None = None
    children_refresh_s: float = 1.0
    rapl_root: str | os.PathLike[str] = "/sys/class/powercap"
    clock: Callable[[], float] = time.monotonic
    cpu_cores: Sequence[int] | None = None
    cores_used: float | None = None

    def __post_init__(self) -> None:
        if not self.interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {self.interval_s}")


class Monitor:
    """Samples the chosen GPUs and the run's process tree; see the package docstring."""

    def __init__(self, config: MonitorConfig | None = None) -> None:
        self.config = config or MonitorConfig()
        self._clock = self.config.clock
        self._lock = threading.Lock()
        self.baseline: dict[str, Any] | None = None
        self._reset()

    def _reset(self) -> None:
        """Fresh state for a new recording (the baseline is kept)."""
        self._errors = ErrorLog()
        self._nvml = NvmlSampler(self.config.gpu_indices, self.config.nvml_module, self._errors)
        self._tree = ProcessTree(self._errors, self.config.children_refresh_s)
        self._rapl: Rapl | None = None
        self._cpu: SystemCpu | None = None
        self._cores: contention.CoreClock | None = None
        self._load: list[contention.Reading] = []
        self._others_before: contention.Snapshot | None = None
        self._others_top: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = "new"  # -> "open" -> "running" -> "stopped"
        self._samples: list[Sample] = []
        self._start_t: float | None = None
        self._stop_t: float | None = None
        self._missed = 0
        self._thread_cpu_s = 0.0

    # -- lifecycle ---------------------------------------------------------
    def open(self) -> None:
        """Initialise NVML and RAPL; done by the first idle_baseline(), start() or sample_once().

        After stop(), this begins a new recording, so one Monitor can serve several repeats.
        """
        if self._state == "stopped":
            self._reset()
        if self._state != "new":
            return
        self._state = "open"
        self._nvml.open(self._clock())
        self._rapl = Rapl(self.config.rapl_root)
        self._cpu = SystemCpu()
        self._cores = contention.CoreClock(self.config.cpu_cores)

    def idle_baseline(self, seconds: float = 2.0) -> dict[str, Any]:
        """Sample for `seconds` in the calling thread, before the run; return the averages."""
        if self._state == "running":
            raise RuntimeError("idle_baseline() must be called before start()")
        self.open()
        interval = self.config.interval_s
        n = max(2, math.ceil(seconds / interval) + 1)
        rows: list[Sample] = []
        first, before = self._reading(), self._snapshot()
        t0 = self._clock()
        for k in range(n):
            rows.append(self.sample_once(record=False))
            if k + 1 < n:
                delay = t0 + (k + 1) * interval - self._clock()
                if delay > 0:
                    time.sleep(delay)
        self.baseline = baseline_from(self._recording(rows))
        last, after = self._reading(), self._snapshot()
        load = None
        if first is not None and last is not None and self._cores is not None:
            cores = len(self._cores.cores)
            load = contention.load_of([(first, last)], cores, self._cores_used())
        if load is not None and before is not None and after is not None:
            load.top = contention.top_others(before, after, [os.getpid()], last.t - first.t)
        # what other processes took of the run's cores before it started
        self.baseline["others"] = None if load is None else load.to_dict()
        return self.baseline

    def start(self, root_pid: int | None = None) -> None:
        """Start the sampler thread; `root_pid` is the same as track_process(root_pid)."""
        if self._state == "running":
            raise RuntimeError("the monitor is already running")
        self.open()
        self._state = "running"
        if root_pid is not None:
            self.track_process(root_pid)
        self._others_before = self._snapshot()
        self._start_t = self._clock()
        self._thread = threading.Thread(target=self._run, name="harness-monitor", daemon=True)
        self._thread.start()

    def track_process(self, pid: int) -> None:
        """Add a process tree root (worker or launcher); its descendants are found each refresh."""
        with self._lock:
            self._tree.add_root(pid, self._clock())

    def stop(self) -> Recording:
        """Stop the thread (if any), release NVML and /proc handles, return the samples."""
        if self._state == "running" and self._thread is not None:
            self._stop.set()
            self._thread.join()
            try:  # one last sample, so a phase that ended just now is covered
                self.sample_once()
            except Exception as exc:
                self._errors.record("monitor", "sample", exc, self._clock())
            self._stop_t = self._clock()
            self._name_others()
        rec = self.samples
        self.close()
        return rec

    def close(self) -> None:
        """Release NVML, RAPL and /proc handles (stop() calls this)."""
        if self._state in ("new", "stopped"):
            return
        self._state = "stopped"
        self._nvml.close()
        with self._lock:
            self._tree.close()
        if self._rapl is not None:
            self._rapl.close()
        if self._cpu is not None:
            self._cpu.close()
        if self._cores is not None:
            self._cores.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- sampling ----------------------------------------------------------
    def sample_once(self, record: bool = True) -> Sample:
        """Take one sample now (the thread calls this); record=False keeps it out of the log."""
        self.open()
        with self._lock:
            t = self._clock()
            cpu, rss, nprocs = self._tree.sample(t)
            s = Sample(
                t=t,
                gpus=self._nvml.read(self._tree.pids, t, roots=self._tree.roots)
                if self._nvml.available
                else (),
                host_cpu_pct=self._cpu.read() if self._cpu is not None else None,
                tree_cpu_pct=cpu,
                tree_rss_mib=rss,
                tree_procs=nprocs,
                cpu_energy_uj=self._rapl.read() if self._rapl is not None else None,
            )
            if record:
                self._samples.append(s)
                reading = self._reading(t)
                if reading is not None:
                    self._load.append(reading)
        return s

    # -- host contention (harness.monitor.contention) -------------------------
    def _reading(self, t: float | None = None) -> contention.Reading | None:
        """The cores' CPU times and the run's own (its tree and this process) now."""
        times = self._cores.read() if self._cores is not None else None
        if times is None:
            return None
        own = self._tree.cpu_s + contention.own_cpu_s()
        return contention.Reading(self._clock() if t is None else t, *times, own)

    def _snapshot(self) -> contention.Snapshot | None:
        try:
            return contention.processes_cpu()
        except Exception as exc:  # naming others is a nicety: never fail the run
            self._errors.record("host", "list processes", exc, self._clock())
            return None

    def _cores_used(self) -> float:
        n = len(self._cores.cores) if self._cores is not None else 0
        used = self.config.cores_used
        return float(n) if used is None else min(float(used), float(n))

    def _name_others(self) -> None:
        """The busiest other processes between start() and stop()."""
        after = self._snapshot()
        if self._others_before is None or after is None or self._start_t is None:
            return
        own = {os.getpid(), *self._tree.seen}
        wall = (self._stop_t or self._clock()) - self._start_t
        self._others_top = contention.top_others(self._others_before, after, own, wall)

    def _run(self) -> None:
        interval = self.config.interval_s
        start = self._clock()
        k = 0
        while True:
            try:
                self.sample_once()
            except Exception as exc:  # never let the thread die; keep sampling
                self._errors.record("monitor", "sample", exc, self._clock())
            k += 1
            now = self._clock()
            due = start + k * interval
            if due <= now:  # fell behind: skip the ticks already past, keep the grid
                skipped = int((now - start) / interval) + 1 - k
                self._missed += skipped
                k += skipped
                due = start + k * interval
            if self._stop.wait(due - now):
                break
        self._thread_cpu_s = time.thread_time()

    # -- results -----------------------------------------------------------
    @property
    def samples(self) -> Recording:
        """The samples so far, with the metadata summarize() uses."""
        with self._lock:
            rows = list(self._samples)
        return self._recording(rows)

    def _recording(self, rows: list[Sample]) -> Recording:
        rec = Recording(rows, interval_s=self.config.interval_s)
        rec.start_t = self._start_t
        rec.gpu_indices = self._nvml.indices
        rec.gpu_available = self._nvml.available
        rec.gpu_reason = self._nvml.reason
        rec.driver_version = self._nvml.driver_version
        rec.devices = [dict(d) for d in self._nvml.devices]
        rec.foreign_gpu_processes = self._nvml.foreign_processes_seen
        rec.contended = self._nvml.contention()
        rec.contention_reason = self._nvml.contention_reason
        rec.host_load = list(self._load)
        rec.cpu_cores = list(self._cores.cores) if self._cores is not None else []
        rec.cores_used = self._cores_used()
        rec.others_top = list(self._others_top)
        rec.cpu_energy_reason = "monitor not opened" if self._rapl is None else self._rapl.reason
        rec.baseline = self.baseline
        rec.errors = self._errors.as_list()
        rec.unsupported = list(self._nvml.unsupported)
        rec.sampler = self._sampler_stats(len(rows))
        return rec

    def _sampler_stats(self, n: int) -> dict[str, Any]:
        wall = None
        if self._start_t is not None:
            wall = (self._stop_t or self._clock()) - self._start_t
        cpu = self._thread_cpu_s if self._stop_t is not None else None
        return {
            "samples": n,
            "missed_ticks": self._missed,
            "wall_s": wall,
            "thread_cpu_s": cpu,
            "cpu_pct_of_one_core": 100.0 * cpu / wall if cpu is not None and wall else None,
        }

    def write_csv(
        self, path: str | os.PathLike[str], windows: Sequence[PhaseWindow] | None = None
    ) -> None:
        """Write the power-log (one row per sample) to `path`."""
        write_csv(self.samples, path, windows)

    def summarize(
        self, windows: Sequence[PhaseWindow], images: dict[str, int] | None = None
    ) -> dict[str, Any]:
        """summarize() over this monitor's samples and baseline."""
        return summarize(self.samples, windows=windows, images=images, baseline=self.baseline)
