"""Measure the CPU cost of the resource monitor's sampler thread.

Runs the real host sampler (psutil, RAPL where readable) on a small process tree
(a parent with children that mostly sleep) plus NVML: the fake from
tests/fakes/fake_pynvml.py with 2 GPUs by default, or the real pynvml with --real-nvml.
Prints the sampler thread's CPU time as a percentage of one core (target: under 1%).

    python scripts/bench_monitor.py --seconds 20 --interval 0.1
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import psutil

from harness.monitor import Monitor, MonitorConfig, PhaseWindow, summarize

ROOT = Path(__file__).resolve().parents[1]

# A parent that starts `n` children, each touching a little CPU now and then.
TREE = """
import subprocess, sys, time
n = int(sys.argv[1])
child = "import time\\nwhile True:\\n    sum(range(20000)); time.sleep(0.05)"
kids = [subprocess.Popen([sys.executable, "-c", child]) for _ in range(n)]
try:
    time.sleep(3600)
finally:
    for k in kids:
        k.kill()
"""


def load_fake(n_gpus: int) -> ModuleType:
    path = ROOT / "tests" / "fakes" / "fake_pynvml.py"
    spec = importlib.util.spec_from_file_location("fake_pynvml", path)
    assert spec is not None and spec.loader is not None
    fake = importlib.util.module_from_spec(spec)
    sys.modules["fake_pynvml"] = fake
    spec.loader.exec_module(fake)
    pids = [(1000 + i, 500.0) for i in range(4)]
    fake.configure([fake.FakeDevice(uuid=f"GPU-fake-{i}", processes=pids) for i in range(n_gpus)])
    return fake


def kill_tree(proc: subprocess.Popen) -> None:
    """Kill the parent and its children (killing the parent alone would orphan them)."""
    try:
        kids = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        kids = []
    for p in [*kids, psutil.Process(proc.pid)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    proc.wait()
    psutil.wait_procs(kids, timeout=5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("--gpus", type=int, default=2, help="fake GPUs (ignored with --real-nvml)")
    ap.add_argument("--children", type=int, default=4, help="child processes in the tree")
    ap.add_argument("--real-nvml", action="store_true", help="use the installed pynvml")
    args = ap.parse_args()

    nvml = None if args.real_nvml else load_fake(args.gpus)
    indices = None if args.real_nvml else list(range(args.gpus))
    tree = subprocess.Popen([sys.executable, "-c", TREE, str(args.children)])
    try:
        time.sleep(0.5)  # let the children start
        mon = Monitor(
            MonitorConfig(interval_s=args.interval, gpu_indices=indices, nvml_module=nvml)
        )
        proc_cpu0 = time.process_time()
        t0 = time.monotonic()
        mon.start(root_pid=tree.pid)
        time.sleep(args.seconds)
        rec = mon.stop()
        t1 = time.monotonic()
        proc_cpu = time.process_time() - proc_cpu0
    finally:
        kill_tree(tree)

    s = summarize(rec, [PhaseWindow("run", t0, t1)])
    st = rec.sampler
    host = s["host"]["phases"]["run"]
    print(
        f"interval {args.interval} s, {st['samples']} samples in {st['wall_s']:.1f} s, "
        f"missed ticks {st['missed_ticks']}"
    )
    print(
        f"GPUs: {rec.gpu_indices if rec.gpu_available else rec.gpu_reason} "
        f"({'fake' if nvml else 'real'} NVML); tree processes max {host['processes_max']}"
    )
    print(
        f"sampler thread CPU: {st['thread_cpu_s']:.3f} s = "
        f"{st['cpu_pct_of_one_core']:.3f} % of one core "
        f"({1e6 * st['thread_cpu_s'] / max(1, st['samples']):.0f} us per sample)"
    )
    print(
        f"whole benchmark process CPU (main thread sleeping): "
        f"{100 * proc_cpu / (t1 - t0):.3f} % of one core"
    )
    verdict = "OK" if st["cpu_pct_of_one_core"] < 1.0 else "OVER"
    print(f"target < 1 % of one core: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
