"""A machine with three scripted GPUs, as an NVML module (HARNESS_NVML_MODULE=fake_gpu_machine).

GPUs 0 and 2 are "A100"s drawing 200 W and 250 W with energy counters; GPU 1 is a "T4"
at 70 W without one. Every descendant of the process that imported this module (the
orchestrator's workers) shows 512 MiB on every GPU.
"""

from __future__ import annotations

import os

import fake_pynvml
import psutil
from fake_pynvml import *  # noqa: F403 - this module is the pynvml API

_ROOT = psutil.Process(os.getpid())


def _workers(_t: float) -> list[tuple[int, float]]:
    try:
        return [(child.pid, 512.0) for child in _ROOT.children(recursive=True)]
    except psutil.Error:
        return []


fake_pynvml.configure(
    [
        fake_pynvml.FakeDevice(
            name="NVIDIA A100-SXM4-40GB",
            uuid="GPU-a100-0",
            power_w=200.0,
            mem_used_mib=4096.0,
            processes=_workers,
        ),
        fake_pynvml.FakeDevice(
            name="Tesla T4",
            uuid="GPU-t4-1",
            power_w=70.0,
            mem_used_mib=1000.0,
            energy_counter=False,
            processes=_workers,
        ),
        fake_pynvml.FakeDevice(
            name="NVIDIA A100-SXM4-40GB",
            uuid="GPU-a100-2",
            power_w=250.0,
            mem_used_mib=8192.0,
            processes=_workers,
        ),
    ]
)
