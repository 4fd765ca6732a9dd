"""One scripted A100 shared with another job (HARNESS_NVML_MODULE=fake_busy_gpu_machine).

Besides the orchestrator's workers (every descendant of the process that imported this
module, 512 MiB each), NVML lists a foreign compute process, pid FOREIGN_PID ("python",
3000 MiB), and a graphics process, pid DISPLAY_PID ("Xorg"); neither belongs to the run.
The GPU runs under a 250 W power limit (default 400 W) with persistence mode off.
"""

from __future__ import annotations

import os

import fake_pynvml
import psutil
from fake_pynvml import *  # noqa: F403 - this module is the pynvml API

FOREIGN_PID = 4_000_001  # above any pid this machine hands out: nobody's child here
DISPLAY_PID = 4_000_002
_ROOT = psutil.Process(os.getpid())


def _compute(_t: float) -> list[tuple[int, float]]:
    try:
        workers = [(child.pid, 512.0) for child in _ROOT.children(recursive=True)]
    except psutil.Error:
        workers = []
    return [*workers, (FOREIGN_PID, 3000.0)]


fake_pynvml.configure(
    [
        fake_pynvml.FakeDevice(
            name="NVIDIA A100-SXM4-40GB",
            uuid="GPU-a100-busy",
            power_w=220.0,
            mem_used_mib=6000.0,
            processes=_compute,
            graphics_processes=[(DISPLAY_PID, None)],
            power_limit_w=250.0,
            default_power_limit_w=400.0,
            persistence_mode=0,
        )
    ],
    process_names={FOREIGN_PID: "/usr/bin/python", DISPLAY_PID: "/usr/lib/xorg/Xorg"},
)
