"""GPU sampling through NVML (the nvidia-ml-py package, imported as `pynvml`).

Indices are NVML indices, which follow the PCI bus order. CUDA numbers devices
fastest-first unless CUDA_DEVICE_ORDER=PCI_BUS_ID, and renumbers them from 0 inside
CUDA_VISIBLE_DEVICES; so a run that sets CUDA_DEVICE_ORDER=PCI_BUS_ID and
CUDA_VISIBLE_DEVICES=2,3 uses NVML devices [2, 3], which is what the monitor must get.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import psutil

from .samples import ErrorLog, GpuSample

MIB = 1024 * 1024

# NVML error codes (nvml.h); read from the module when it has them.
_ERR_DEFAULTS = {
    "NVML_ERROR_NO_PERMISSION": 4,
    "NVML_ERROR_NOT_SUPPORTED": 3,
    "NVML_ERROR_DRIVER_NOT_LOADED": 9,
    "NVML_ERROR_LIBRARY_NOT_FOUND": 12,
    "NVML_ERROR_FUNCTION_NOT_FOUND": 13,
    "NVML_ERROR_GPU_IS_LOST": 15,
}

# Clocks-event (formerly "throttle") reason bits, stable across NVML versions.
THROTTLE_BITS: tuple[tuple[int, str], ...] = (
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
    (0x200, "board_limit"),
    (0x400, "reliability"),
)
# Reasons that mean the clocks were held down by a power or thermal limit.
THROTTLING_REASONS = frozenset(
    {
        "sw_power_cap",
        "hw_slowdown",
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
        "hw_power_brake_slowdown",
    }
)

# metric -> candidate NVML functions, newest first
_CANDIDATES: dict[str, tuple[str, ...]] = {
    "power": ("nvmlDeviceGetPowerUsage",),
    "energy": ("nvmlDeviceGetTotalEnergyConsumption",),
    "memory": ("nvmlDeviceGetMemoryInfo",),
    "processes": (
        "nvmlDeviceGetComputeRunningProcesses",
        "nvmlDeviceGetComputeRunningProcesses_v2",
    ),
    "graphics_processes": (
        "nvmlDeviceGetGraphicsRunningProcesses",
        "nvmlDeviceGetGraphicsRunningProcesses_v2",
    ),
    "utilization": ("nvmlDeviceGetUtilizationRates",),
    "sm_clock": ("nvmlDeviceGetClockInfo",),
    "temperature": ("nvmlDeviceGetTemperature",),
    "throttle": (
        "nvmlDeviceGetCurrentClocksEventReasons",
        "nvmlDeviceGetCurrentClocksThrottleReasons",
    ),
}


def decode_throttle(mask: int | None) -> list[str]:
    """Names of the reason bits set in an NVML clocks-event bitmask."""
    if not mask:
        return []
    names = [name for bit, name in THROTTLE_BITS if mask & bit]
    known = 0
    for bit, _ in THROTTLE_BITS:
        known |= bit
    if mask & ~known:
        names.append(f"unknown_0x{mask & ~known:x}")
    return names


def is_throttled(names: Sequence[str]) -> bool:
    """True when a power or thermal cap is among the reasons ("gpu_idle" is not one)."""
    return any(n in THROTTLING_REASONS for n in names)


# The initial PID namespace's inode number (PROC_PID_INIT_INO in the Linux kernel).
_INIT_PID_NS = 0xEFFFFFFC


def in_nested_pid_namespace() -> bool:
    """True inside a container's PID namespace, where NVML lists host pids that this
    process cannot map to its own (so other processes cannot be told from the run's)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino != _INIT_PID_NS
    except OSError:
        return False


def load_nvml(module: ModuleType | None) -> tuple[ModuleType | None, str | None]:
    """The NVML module to use, or None and the reason it cannot be had."""
    if module is not None:
        return module, None
    try:
        return importlib.import_module("pynvml"), None
    except ImportError as exc:
        return None, f"pynvml (package nvidia-ml-py) is not installed: {exc}"


# The NVML binding to import; tests point it at a fake with scripted GPUs.
NVML_MODULE_ENV = "HARNESS_NVML_MODULE"


def nvml_module_name() -> str:
    return os.environ.get(NVML_MODULE_ENV) or "pynvml"


def process_name(nvml: ModuleType, pid: int) -> str | None:
    """A process's name: NVML's (works for host pids), else psutil's, else None."""
    with contextlib.suppress(Exception):
        name = nvml.nvmlSystemGetProcessName(pid)
        name = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
        if name:
            return os.path.basename(name)
    with contextlib.suppress(Exception):
        return psutil.Process(pid).name()
    return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _Device:
    """One opened GPU: its handle and the bound reader for each metric."""

    def __init__(self, index: int, handle: Any) -> None:
        self.index = index
        self.handle = handle
        self.lost = False
        self.calls: dict[str, list[Callable[..., Any]]] = {}


class NvmlSampler:
    """Reads the chosen GPUs; a failing metric never blanks the others."""

    def __init__(
        self, indices: Sequence[int] | None, module: ModuleType | None, errors: ErrorLog
    ) -> None:
        self._want = None if indices is None else [int(i) for i in indices]
        self._module_in = module
        self._errors = errors
        self.nvml: ModuleType | None = None
        self.available = False
        self.reason: str | None = "NVML not opened"
        self.driver_version: str | None = None
        self.devices: list[dict[str, Any]] = []
        self.unsupported: list[dict[str, Any]] = []
        # NVML listed compute processes but none of the tracked pids (a PID namespace?)
        self.foreign_processes_seen = False
        # other processes on these GPUs: (gpu index, pid) -> what was seen of it
        self._others: dict[tuple[int, int], dict[str, Any]] = {}
        self._verdicts: dict[int, bool] = {}  # pid -> another process's (True) or ours
        self._self_pid = os.getpid()
        self._nested_ns = in_nested_pid_namespace()
        self.contention_reason: str | None = None
        self._devs: list[_Device] = []
        self._initialised = False
        self._codes: dict[str, int] = dict(_ERR_DEFAULTS)

    # -- lifecycle ---------------------------------------------------------
    def open(self, t: float) -> None:
        """Initialise NVML and read each device's identity once."""
        if self._initialised:
            return
        if self._want is not None and not self._want:
            self.reason = "no GPUs requested"
            return
        nvml, reason = load_nvml(self._module_in)
        if nvml is None:
            self.reason = reason
            return
        self.nvml = nvml
        for name in self._codes:
            self._codes[name] = getattr(nvml, name, self._codes[name])
        try:
            nvml.nvmlInit()
        except Exception as exc:
            self.reason = self._init_reason(exc)
            return
        self._initialised = True
        self.driver_version = self._try(lambda: _text(nvml.nvmlSystemGetDriverVersion()))
        indices = self._want
        if indices is None:
            try:
                indices = list(range(nvml.nvmlDeviceGetCount()))
            except Exception as exc:
                self.reason = f"nvmlDeviceGetCount failed: {exc}"
                return
        for index in indices:
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
            except Exception as exc:
                self._errors.record("nvml", f"gpu{index} handle", exc, t)
                continue
            dev = _Device(index, handle)
            self._bind(dev)
            self._devs.append(dev)
            self.devices.append(self._identity(dev))
        if not self._devs:
            self.reason = f"no NVML device could be opened among indices {indices}"
            return
        self.available = True
        self.reason = None

    def close(self) -> None:
        if self._initialised and self.nvml is not None:
            with contextlib.suppress(Exception):  # shutting down is best effort
                self.nvml.nvmlShutdown()
        self._initialised = False

    @property
    def indices(self) -> list[int]:
        return [d.index for d in self._devs]

    # -- reading -----------------------------------------------------------
    def read(
        self, pids: frozenset[int], t: float, roots: Sequence[int] = ()
    ) -> tuple[GpuSample, ...]:
        """One GpuSample per opened device; unreadable values stay None.

        ``pids``: the run's process tree now; ``roots``: its roots (a process NVML lists
        that descends from one is the run's too, even before the tree has found it)."""
        return tuple(self._read_device(dev, pids, roots, t) for dev in self._devs)

    def _read_device(
        self, dev: _Device, pids: frozenset[int], roots: Sequence[int], t: float
    ) -> GpuSample:
        s = GpuSample()
        if dev.lost:
            return s
        v = self._get(dev, "power", t)
        if v is not None:
            s.power_w = v / 1000.0
        s.energy_mj = self._get(dev, "energy", t)
        v = self._get(dev, "memory", t)
        if v is not None:
            s.mem_used_mib = v.used / MIB
        compute = self._get(dev, "processes", t)
        if pids and compute:
            s.proc_mem_mib = _tree_memory(compute, pids)
            if s.proc_mem_mib is None:
                self.foreign_processes_seen = True
        graphics = self._get(dev, "graphics_processes", t)
        if compute or graphics:
            self._note_others(dev.index, compute or (), graphics or (), pids, roots, t)
        v = self._get(dev, "utilization", t)
        if v is not None:
            s.util_pct = v.gpu
        s.sm_mhz = self._get(dev, "sm_clock", t)
        s.temp_c = self._get(dev, "temperature", t)
        s.throttle = self._get(dev, "throttle", t)
        return s

    def _get(self, dev: _Device, metric: str, t: float) -> Any:
        calls = dev.calls.get(metric)
        while calls and not dev.lost:
            try:
                return calls[0]()
            except Exception as exc:
                code = getattr(exc, "value", None)
                if code == self._codes["NVML_ERROR_GPU_IS_LOST"]:
                    dev.lost = True
                    self._errors.record("nvml", f"gpu{dev.index}", exc, t)
                    return None
                if self._unsupported(exc):
                    calls.pop(0)
                    if not calls:
                        self.unsupported.append(
                            {"device": dev.index, "metric": metric, "error": str(exc)}
                        )
                    continue
                self._errors.record("nvml", f"gpu{dev.index} {metric}", exc, t)
                return None
        return None

    # -- other processes on the GPUs ---------------------------------------
    def _note_others(
        self,
        index: int,
        compute: Sequence[Any],
        graphics: Sequence[Any],
        pids: frozenset[int],
        roots: Sequence[int],
        t: float,
    ) -> None:
        """Records the processes on GPU ``index`` that are neither the run's nor the monitor's."""
        seen: set[int] = set()
        for kind, procs in (("compute", compute), ("graphics", graphics)):
            for p in procs:
                pid = int(p.pid)
                if pid in seen or pid in pids or pid == self._self_pid:
                    continue
                seen.add(pid)
                entry = self._others.get((index, pid))
                if entry is None:
                    if not self._is_other(pid, roots):
                        continue
                    entry = {
                        "gpu": index,
                        "pid": pid,
                        "name": self._process_name(pid),
                        "kind": kind,
                        "memory_mib": None,
                        "samples": 0,
                        "first_t": t,
                        "last_t": t,
                    }
                    self._others[(index, pid)] = entry
                entry["samples"] += 1
                entry["last_t"] = t
                used = getattr(p, "usedGpuMemory", None)
                if used is not None and used < 2**63:  # NVML_VALUE_NOT_AVAILABLE is huge
                    mib = round(used / MIB, 1)
                    entry["memory_mib"] = max(mib, entry["memory_mib"] or 0.0)

    def _is_other(self, pid: int, roots: Sequence[int]) -> bool:
        """True when ``pid`` is another process: not the run's tree (judged once per pid)."""
        verdict = self._verdicts.get(pid)
        if verdict is not None:
            return verdict
        if not roots:  # before the worker starts (idle baseline): every process is another's
            verdict = True
        elif self._nested_ns:  # host pids: the run's own cannot be told apart
            self.contention_reason = (
                "the monitor runs in a container's PID namespace: NVML lists host pids, which "
                "cannot be told from the run's own (processes seen before the run still count)"
            )
            return False
        elif pid in roots:
            verdict = False
        else:
            try:
                lineage = {pid, *(q.pid for q in psutil.Process(pid).parents())}
            except Exception:  # not visible to us (another user's, hidepid): not our child
                lineage = {pid}
            verdict = not (lineage & set(roots))
        self._verdicts[pid] = verdict
        return verdict

    def _process_name(self, pid: int) -> str | None:
        assert self.nvml is not None
        return process_name(self.nvml, pid)

    def contention(self) -> list[dict[str, Any]]:
        """Other processes seen on these GPUs, by GPU and first sighting."""
        return sorted(
            (dict(e) for e in self._others.values()), key=lambda e: (e["gpu"], e["first_t"])
        )

    # -- helpers -----------------------------------------------------------
    def _bind(self, dev: _Device) -> None:
        nvml, h = self.nvml, dev.handle
        extra: dict[str, tuple[Any, ...]] = {
            "sm_clock": (getattr(nvml, "NVML_CLOCK_SM", 1),),
            "temperature": (getattr(nvml, "NVML_TEMPERATURE_GPU", 0),),
        }
        for metric, names in _CANDIDATES.items():
            args = (h, *extra.get(metric, ()))
            found = [_bound(getattr(nvml, n), args) for n in names if hasattr(nvml, n)]
            dev.calls[metric] = found
            if not found:
                self.unsupported.append(
                    {"device": dev.index, "metric": metric, "error": "function missing from pynvml"}
                )

    def _identity(self, dev: _Device) -> dict[str, Any]:
        nvml, h = self.nvml, dev.handle
        assert nvml is not None
        limit = self._try(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(h))
        if limit is None:
            limit = self._try(lambda: nvml.nvmlDeviceGetPowerManagementLimit(h))
        total = self._try(lambda: nvml.nvmlDeviceGetMemoryInfo(h).total)
        return {
            "index": dev.index,
            "name": self._try(lambda: _text(nvml.nvmlDeviceGetName(h))),
            "uuid": self._try(lambda: _text(nvml.nvmlDeviceGetUUID(h))),
            "driver_version": self.driver_version,
            "power_limit_w": None if limit is None else limit / 1000.0,
            "memory_total_mib": None if total is None else total / MIB,
        }

    def _unsupported(self, exc: Exception) -> bool:
        code = getattr(exc, "value", None)
        if code in (
            self._codes["NVML_ERROR_NOT_SUPPORTED"],
            self._codes["NVML_ERROR_FUNCTION_NOT_FOUND"],
        ):
            return True
        # pynvml raises this for an unversioned call the installed driver lacks
        return type(exc).__name__ == "NVMLLibraryMismatchError"

    def _init_reason(self, exc: Exception) -> str:
        code = getattr(exc, "value", None)
        if code == self._codes["NVML_ERROR_LIBRARY_NOT_FOUND"]:
            return "NVML library (libnvidia-ml.so.1) not found: no NVIDIA driver on this machine"
        if code == self._codes["NVML_ERROR_DRIVER_NOT_LOADED"]:
            return "NVIDIA driver not loaded"
        if code == self._codes["NVML_ERROR_NO_PERMISSION"]:
            return "no permission to use NVML"
        return f"nvmlInit failed: {type(exc).__name__}: {exc}"

    @staticmethod
    def _try(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception:
            return None


def _bound(fn: Callable[..., Any], args: tuple[Any, ...]) -> Callable[[], Any]:
    return lambda: fn(*args)


def _tree_memory(procs: Sequence[Any], pids: frozenset[int]) -> float | None:
    """MiB used on one device by the tracked pids; None when none is listed with a value."""
    total = 0
    seen = False
    for p in procs:
        if p.pid in pids:
            used = getattr(p, "usedGpuMemory", None)
            if used is not None:
                total += used
                seen = True
    return total / MIB if seen else None
