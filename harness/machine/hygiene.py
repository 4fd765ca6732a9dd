"""Benchmark hygiene: the machine settings that move figures, read without changing them.

GPUs (through NVML): the power limit in force (and its default and range), application
clocks (and their defaults), the SM clock now and at most, the clocks-event reasons,
persistence mode, whether the energy counter and the power reading work, and the
processes on each GPU. The CPU (sysfs): the frequency governor of every core, the
scaling driver, turbo/boost, and whether RAPL's energy counters are readable.

Every reader returns what it could read and None (or a reason) for the rest: a missing
file, a permission or an NVML call the driver does not support never raises.
``environment.collect()`` records :func:`record` with every run; ``python -m harness
doctor`` (harness.cli.doctor) judges the same readings.

NVIDIA's NVML has no reader for clocks locked with ``nvidia-smi -lgc``: a lock shows
only as the clocks-event reason ``applications_clocks_setting`` while it holds the
clock below what the GPU would pick, so ``clocks_held`` is True when application
clocks differ from their defaults or that reason is set, and None otherwise.
"""

from __future__ import annotations

import contextlib
import importlib
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.monitor.host import Rapl
from harness.monitor.nvml import decode_throttle, nvml_module_name, process_name

CPU_ROOT = Path("/sys/devices/system/cpu")
POWERCAP_ROOT = Path("/sys/class/powercap")
MIB = 1024 * 1024
_APP_CLOCKS_SETTING = 0x2  # nvmlClocksEventReasonApplicationsClocksSetting


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


# -- the CPU -----------------------------------------------------------------------------


def cpu_governors(root: Path = CPU_ROOT) -> dict[str, int]:
    """Scaling governor -> number of cores using it; empty when cpufreq is not exposed."""
    found: Counter[str] = Counter()
    for path in root.glob("cpu[0-9]*/cpufreq/scaling_governor"):
        value = _read(path)
        if value:
            found[value] += 1
    return dict(sorted(found.items()))


def turbo(root: Path = CPU_ROOT) -> dict[str, Any] | None:
    """{"enabled": bool, "source": the sysfs file} for Intel turbo or cpufreq boost; None."""
    no_turbo = _read(root / "intel_pstate" / "no_turbo")
    if no_turbo in ("0", "1"):
        return {"enabled": no_turbo == "0", "source": str(root / "intel_pstate" / "no_turbo")}
    boost = _read(root / "cpufreq" / "boost")
    if boost in ("0", "1"):
        return {"enabled": boost == "1", "source": str(root / "cpufreq" / "boost")}
    for path in sorted(root.glob("cpu[0-9]*/cpufreq/boost"))[:1]:  # amd-pstate, per core
        value = _read(path)
        if value in ("0", "1"):
            return {"enabled": value == "1", "source": str(path)}
    return None


def cpu_settings(root: Path = CPU_ROOT) -> dict[str, Any]:
    """The CPU's frequency settings: governor(s), scaling driver, turbo (None: not exposed)."""
    governors = cpu_governors(root)
    boost = turbo(root)
    return {
        "governor": (next(iter(governors)) if len(governors) == 1 else "mixed")
        if governors
        else None,
        "governors": governors,
        "scaling_driver": _read(root / "cpu0" / "cpufreq" / "scaling_driver"),
        "turbo": None if boost is None else boost["enabled"],
        "turbo_source": None if boost is None else boost["source"],
    }


def rapl_status(root: Path = POWERCAP_ROOT) -> dict[str, Any]:
    """Whether RAPL's package energy counters can be read: {"readable", "reason"}."""
    reader = Rapl(root)
    readable = reader.available
    reader.close()
    return {"readable": readable, "reason": reader.reason}


# -- the GPUs ------------------------------------------------------------------------------


def load_nvml(module: ModuleType | None = None) -> tuple[ModuleType | None, str | None]:
    """The NVML binding (HARNESS_NVML_MODULE in tests, else pynvml), or None and why."""
    if module is not None:
        return module, None
    try:
        return importlib.import_module(nvml_module_name()), None
    except ImportError as exc:
        return None, f"nvidia-ml-py (pynvml) is not installed: {exc}"


def nvidia_device_present() -> bool:
    """True when the NVIDIA driver has created device nodes (a GPU is there)."""
    return Path("/proc/driver/nvidia/version").exists() or any(Path("/dev").glob("nvidia[0-9]*"))


def _call(fn: Callable[[], Any]) -> tuple[Any, str | None]:
    """(value, None) or (None, the error's text)."""
    try:
        return fn(), None
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"


# kind -> NVML's process-list functions, newest first (an older driver has only _v2)
PROCESS_LISTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "compute",
        ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetComputeRunningProcesses_v2"),
    ),
    (
        "graphics",
        ("nvmlDeviceGetGraphicsRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses_v2"),
    ),
)


def gpu_processes(nvml: ModuleType, handle: Any) -> list[dict[str, Any]]:
    """Compute and graphics processes on one GPU: pid, kind, memory_mib (None: unknown)."""
    out: dict[int, dict[str, Any]] = {}
    for kind, names in PROCESS_LISTS:
        for name in names:
            fn = getattr(nvml, name, None)
            if fn is None:
                continue
            procs, error = _call(lambda fn=fn: fn(handle))
            if error is None:
                for p in procs or ():
                    used = getattr(p, "usedGpuMemory", None)
                    entry = out.setdefault(int(p.pid), {"pid": int(p.pid), "kind": kind})
                    if used is not None and used < 2**63:  # NVML_VALUE_NOT_AVAILABLE
                        entry["memory_mib"] = round(used / MIB, 1)
                break
    return [{"memory_mib": None, **e} for e in out.values()]


def _reasons(mask: int | None) -> list[str] | None:
    if mask is None:
        return None

    return decode_throttle(mask)


def gpu_settings(nvml: ModuleType, index: int) -> dict[str, Any]:
    """One GPU's settings; a value NVML would not give stays None."""
    h = nvml.nvmlDeviceGetHandleByIndex(index)
    graphics = getattr(nvml, "NVML_CLOCK_GRAPHICS", 0)
    sm = getattr(nvml, "NVML_CLOCK_SM", 1)
    mem = getattr(nvml, "NVML_CLOCK_MEM", 2)

    def get(name: str, *args: Any) -> Any:
        fn = getattr(nvml, name, None)
        return None if fn is None else _call(lambda: fn(h, *args))[0]

    def watts(mw: Any) -> float | None:
        return None if mw is None else round(mw / 1000.0, 1)

    limits = get("nvmlDeviceGetPowerManagementLimitConstraints")
    app = {"graphics": get("nvmlDeviceGetApplicationsClock", graphics)}
    app["memory"] = get("nvmlDeviceGetApplicationsClock", mem)
    default_app = {"graphics": get("nvmlDeviceGetDefaultApplicationsClock", graphics)}
    default_app["memory"] = get("nvmlDeviceGetDefaultApplicationsClock", mem)
    reasons_mask = get("nvmlDeviceGetCurrentClocksEventReasons")
    if reasons_mask is None:
        reasons_mask = get("nvmlDeviceGetCurrentClocksThrottleReasons")
    persistence = get("nvmlDeviceGetPersistenceMode")
    auto_boost = get("nvmlDeviceGetAutoBoostedClocksEnabled")
    energy, energy_error = _call(lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(h))
    power, power_error = _call(lambda: nvml.nvmlDeviceGetPowerUsage(h))
    app_known = None not in app.values() and None not in default_app.values()
    held: bool | None = None
    if (app_known and app != default_app) or (reasons_mask or 0) & _APP_CLOCKS_SETTING:
        held = True
    return {
        "index": index,
        "name": (lambda n: None if n is None else _text(n))(get("nvmlDeviceGetName")),
        "uuid": (lambda u: None if u is None else _text(u))(get("nvmlDeviceGetUUID")),
        "power_limit_w": watts(get("nvmlDeviceGetEnforcedPowerLimit")),
        "default_power_limit_w": watts(get("nvmlDeviceGetPowerManagementDefaultLimit")),
        "power_limit_range_w": None
        if not isinstance(limits, tuple | list) or len(limits) != 2
        else [watts(limits[0]), watts(limits[1])],
        "persistence_mode": None if persistence is None else bool(persistence),
        "application_clocks_mhz": app if None not in app.values() else None,
        "default_application_clocks_mhz": default_app if None not in default_app.values() else None,
        "sm_clock_mhz": get("nvmlDeviceGetClockInfo", sm),
        "max_sm_clock_mhz": get("nvmlDeviceGetMaxClockInfo", sm),
        "clocks_event_reasons": _reasons(reasons_mask),
        "clocks_held": held,
        "auto_boost": None if not isinstance(auto_boost, tuple | list) else bool(auto_boost[0]),
        "power_w": watts(power),
        "power_error": power_error,
        "energy_counter": energy is not None,
        "energy_error": energy_error,
    }


def gpus_report(
    indices: Iterable[int] | None = None,
    module: ModuleType | None = None,
    *,
    processes: bool = False,
) -> dict[str, Any]:
    """Settings of the GPUs ``indices`` (None: every GPU NVML sees).

    {"driver": str|None, "gpus": [gpu_settings(...) (+ "processes" when asked)],
    "reason": why there are none, or None}."""
    nvml, reason = load_nvml(module)
    if nvml is None:
        return {"driver": None, "gpus": [], "reason": reason}
    try:
        nvml.nvmlInit()
    except Exception as exc:
        return {"driver": None, "gpus": [], "reason": f"NVML is not available: {exc}"}
    try:
        driver, _ = _call(lambda: _text(nvml.nvmlSystemGetDriverVersion()))
        wanted = list(indices) if indices is not None else None
        if wanted is None:
            count, error = _call(nvml.nvmlDeviceGetCount)
            if error is not None:
                return {"driver": driver, "gpus": [], "reason": f"nvmlDeviceGetCount: {error}"}
            wanted = list(range(count))
        out = []
        for index in wanted:
            entry, error = _call(lambda index=index: gpu_settings(nvml, index))
            if error is not None:
                out.append({"index": index, "error": error})
                continue
            if processes:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                procs = gpu_processes(nvml, handle)
                for p in procs:
                    p["name"] = process_name(nvml, p["pid"])
                entry["processes"] = procs
            out.append(entry)
        return {"driver": driver, "gpus": out, "reason": None if out else "NVML reports no GPU"}
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


# What a run records (environment["hygiene"]): settings, not momentary readings.
_RECORDED_GPU = (
    "index",
    "name",
    "power_limit_w",
    "default_power_limit_w",
    "persistence_mode",
    "application_clocks_mhz",
    "default_application_clocks_mhz",
    "max_sm_clock_mhz",
    "clocks_event_reasons",
    "clocks_held",
    "auto_boost",
    "energy_counter",
)


def record(gpu_indices: Iterable[int] = (), module: ModuleType | None = None) -> dict[str, Any]:
    """The settings a run records with its environment: the CPU's, and its GPUs' (if any)."""
    out: dict[str, Any] = {"cpu": cpu_settings()}
    indices = list(gpu_indices)
    if indices:
        report = gpus_report(indices, module)
        out["gpus"] = [
            {k: g.get(k) for k in _RECORDED_GPU} if "error" not in g else g for g in report["gpus"]
        ]
        if report["reason"]:
            out["gpu_reason"] = report["reason"]
    return out
