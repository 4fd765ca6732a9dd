"""Resource monitor: GPU power, memory and energy (NVML) and the run's host usage (psutil).

Usage by the orchestrator::

    mon = Monitor(MonitorConfig(interval_s=0.1, gpu_indices=[0, 1]))
    baseline = mon.idle_baseline(seconds=2.0)   # idle averages before the run
    mon.start()                                  # background thread, drift-free 10 Hz
    mon.track_process(worker.pid)                # the tree root; descendants are found
    ...
    samples = mon.stop()                         # a Recording: list of Sample + metadata
    mon.write_csv(run_dir / "power.csv", windows)
    summary = summarize(samples, windows=[PhaseWindow("timed", a, b)], images={"timed": n})

Every sample is stamped with time.monotonic(), the clock the worker uses for its
phase events. GPU indices are NVML indices (PCI bus order; see harness.monitor.nvml).
Missing NVML, a failed nvmlInit or no GPU leave the GPU part empty with a reason;
errors during the run are counted in summary["errors"] and sampling goes on.
Host contention (other processes' CPU time and VM steal on the run's cores over warmup
and timed) is in summary["host"]["contention"]; see harness.monitor.contention.
"""

from .csvlog import csv_columns, write_csv
from .monitor import Monitor, MonitorConfig
from .nvml import THROTTLING_REASONS, decode_throttle, is_throttled
from .samples import GpuSample, Recording, Sample
from .summary import PhaseWindow, baseline_from, summarize

__all__ = [
    "THROTTLING_REASONS",
    "GpuSample",
    "Monitor",
    "MonitorConfig",
    "PhaseWindow",
    "Recording",
    "Sample",
    "baseline_from",
    "csv_columns",
    "decode_throttle",
    "is_throttled",
    "summarize",
    "write_csv",
]
