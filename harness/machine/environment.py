"""The environment a result was measured in: host, OS, Python, harness version and commit,
and the settings that move figures (harness.machine.hygiene)."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import psutil

from harness import __version__
from harness.cpu import available_cores
from harness.machine import hygiene

REPO_ROOT = Path(__file__).resolve().parents[2]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@cache
def git_commit() -> str | None:
    """The harness's git commit, with "+dirty" when the work tree has changes."""
    if not (REPO_ROOT / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def collect(gpu_indices: Iterable[int] = ()) -> dict[str, Any]:
    """Host facts recorded with every run (frameworks report their own versions).

    ``hygiene``: the CPU's frequency governor and turbo state, and for ``gpu_indices``
    (NVML indices of the run's GPUs) their power limit, clocks and persistence mode;
    see :func:`harness.machine.hygiene.record`."""
    return {
        "hostname": socket.gethostname(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_logical_cores": os.cpu_count(),
        "cpu_physical_cores": psutil.cpu_count(logical=False),
        "cpu_cores_available": available_cores(),  # affinity and cgroup quota
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "harness_version": __version__,
        "harness_commit": git_commit(),
        "hygiene": hygiene.record(gpu_indices),
    }
