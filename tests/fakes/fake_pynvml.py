"""A stand-in for pynvml (nvidia-ml-py) with scripted GPUs, for tests and the benchmark.

Names, error classes and constants follow nvidia-ml-py 13's pynvml.py. Call
configure() with FakeDevice objects; each value may be a constant or a function of the
fake's clock (set `clock` to the monitor's clock for deterministic tests).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_ALREADY_INITIALIZED = 5
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_INSUFFICIENT_POWER = 8
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_IRQ_ISSUE = 11
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_CORRUPTED_INFOROM = 14
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_OPERATING_SYSTEM = 17
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_MEMORY = 20
NVML_ERROR_UNKNOWN = 999

NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_CLOCK_VIDEO = 3
NVML_TEMPERATURE_GPU = 0
NVML_FEATURE_DISABLED = 0
NVML_FEATURE_ENABLED = 1

nvmlClocksEventReasonGpuIdle = 0x1
nvmlClocksEventReasonApplicationsClocksSetting = 0x2
nvmlClocksEventReasonSwPowerCap = 0x4
nvmlClocksEventReasonHwSlowdown = 0x8
nvmlClocksEventReasonSyncBoost = 0x10
nvmlClocksEventReasonSwThermalSlowdown = 0x20
nvmlClocksEventReasonHwThermalSlowdown = 0x40
nvmlClocksEventReasonHwPowerBrakeSlowdown = 0x80
nvmlClocksEventReasonDisplayClockSetting = 0x100
nvmlClocksEventReasonNone = 0x0
nvmlClocksThrottleReasonGpuIdle = 0x1
nvmlClocksThrottleReasonSwPowerCap = 0x4
nvmlClocksThrottleReasonHwSlowdown = 0x8
nvmlClocksThrottleReasonSwThermalSlowdown = 0x20
nvmlClocksThrottleReasonHwThermalSlowdown = 0x40
nvmlClocksThrottleReasonNone = 0x0

_MIB = 1024 * 1024


class NVMLLibraryMismatchError(Exception):
    """Raised by pynvml's unversioned wrappers when the driver lacks the function."""


class NVMLError(Exception):
    """Base NVML error; NVMLError(code) returns the matching subclass, as in pynvml."""

    _by_code: dict[int, type[NVMLError]] = {}
    value: int

    def __new__(cls, value: int = NVML_ERROR_UNKNOWN) -> NVMLError:
        if cls is NVMLError:
            cls = NVMLError._by_code.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __init__(self, value: int = NVML_ERROR_UNKNOWN) -> None:
        super().__init__(value)

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML Error with code {self.value}")


_MESSAGES = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_TIMEOUT: "Timeout",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


def _make_error_classes() -> None:
    # NVML_ERROR_GPU_IS_LOST -> NVMLError_GpuIsLost, as pynvml names them
    for name, code in list(globals().items()):
        if not name.startswith("NVML_ERROR_"):
            continue
        words = name[len("NVML_ERROR_") :].split("_")
        cls_name = "NVMLError_" + "".join(w.capitalize() for w in words)

        def new(cls: type, *args: Any, _code: int = code) -> NVMLError:
            return NVMLError.__new__(cls, _code)

        cls = type(cls_name, (NVMLError,), {"__new__": new, "__module__": __name__})
        globals()[cls_name] = cls
        NVMLError._by_code[code] = cls


_make_error_classes()
NVMLError_NotSupported: type[NVMLError]
NVMLError_NoPermission: type[NVMLError]
NVMLError_GpuIsLost: type[NVMLError]
NVMLError_LibraryNotFound: type[NVMLError]
NVMLError_DriverNotLoaded: type[NVMLError]
NVMLError_Unknown: type[NVMLError]
NVMLError_Timeout: type[NVMLError]
NVMLError_FunctionNotFound: type[NVMLError]
NVMLError_Uninitialized: type[NVMLError]
NVMLError_InvalidArgument: type[NVMLError]


@dataclass
class Memory:
    total: int
    free: int
    used: int


@dataclass
class Utilization:
    gpu: int
    memory: int


@dataclass
class ProcessInfo:
    pid: int
    usedGpuMemory: int | None
    gpuInstanceId: int = 0xFFFFFFFF
    computeInstanceId: int = 0xFFFFFFFF


class PowerSteps:
    """Piecewise-constant power [(from_t, watts), ...] with its exact energy counter."""

    def __init__(self, steps: list[tuple[float, float]], start_mj: float = 1e9) -> None:
        self.steps = sorted(steps)
        self.start_mj = start_mj

    def __call__(self, t: float) -> float:
        watts = self.steps[0][1]
        for t0, w in self.steps:
            if t >= t0:
                watts = w
        return watts

    def energy_mj(self, t: float) -> float:
        total = 0.0
        for i, (t0, w) in enumerate(self.steps):
            t1 = self.steps[i + 1][0] if i + 1 < len(self.steps) else float("inf")
            if t > t0:
                total += w * (min(t, t1) - t0)
        return self.start_mj + total * 1000.0


Value = Any  # a constant or a function of the clock


@dataclass
class FakeDevice:
    """A scripted GPU. Set `energy_counter=False` for a pre-Volta device."""

    name: str = "NVIDIA Fake GPU"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    power_w: Value = 100.0
    energy_counter: bool = True
    mem_total_mib: float = 16384.0
    mem_used_mib: Value = 1024.0
    processes: Value = field(default_factory=list)  # [(pid, MiB or None), ...]
    graphics_processes: Value = field(default_factory=list)  # [(pid, MiB or None), ...]
    util_pct: Value = 50
    sm_mhz: Value = 1400
    temp_c: Value = 60
    throttle: Value = 0
    power_limit_w: float = 300.0
    default_power_limit_w: float | None = None  # None: power_limit_w
    power_limit_range_w: tuple[float, float] = (100.0, 400.0)
    persistence_mode: int = 1  # NVML_FEATURE_ENABLED
    app_clocks_mhz: tuple[int, int] = (1410, 1215)  # (graphics, memory)
    default_app_clocks_mhz: tuple[int, int] = (1410, 1215)
    max_sm_mhz: int = 1410
    auto_boost: tuple[int, int] | None = None  # None: NotSupported, as on recent GPUs
    event_reasons_api: bool = True  # False: only the older ThrottleReasons call exists
    processes_v3_api: bool = True  # False: an older driver, only the _v2 process call works
    unsupported: set[str] = field(default_factory=set)  # function names -> NotSupported
    failures: dict[str, list[BaseException | None]] = field(default_factory=dict)
    lost: bool = False
    calls: Counter = field(default_factory=Counter)


class _Handle:
    def __init__(self, index: int, device: FakeDevice) -> None:
        self.index = index
        self.device = device


class _State:
    devices: list[FakeDevice] = []
    process_names: dict[int, str] = {}
    driver_version = "550.54.15"
    init_error: BaseException | None = None
    initialised = 0
    clock: Callable[[], float] = staticmethod(time.monotonic)
    t0 = 0.0


def configure(
    devices: list[FakeDevice],
    *,
    driver_version: str = "550.54.15",
    init_error: BaseException | None = None,
    clock: Callable[[], float] | None = None,
    process_names: dict[int, str] | None = None,
) -> None:
    """Replace the fake's GPUs; values that are functions get (clock() - t0) as argument.

    ``process_names``: what nvmlSystemGetProcessName answers per pid (others: NotFound)."""
    _State.devices = list(devices)
    _State.process_names = dict(process_names or {})
    _State.driver_version = driver_version
    _State.init_error = init_error
    _State.initialised = 0
    _State.clock = clock or time.monotonic
    _State.t0 = 0.0 if clock is not None else time.monotonic()


def _now() -> float:
    return _State.clock() - _State.t0


def _value(v: Value) -> Any:
    return v(_now()) if callable(v) else v


def _enter(handle: _Handle, fn: str) -> FakeDevice:
    if not _State.initialised:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)
    dev = handle.device
    dev.calls[fn] += 1
    if dev.lost:
        raise NVMLError(NVML_ERROR_GPU_IS_LOST)
    if fn in dev.unsupported:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    queue = dev.failures.get(fn)
    if queue:
        err = queue.pop(0)
        if err is not None:
            raise err
    return dev


# -- the pynvml API ---------------------------------------------------------------
def nvmlInitWithFlags(flags: int) -> None:
    if _State.init_error is not None:
        raise _State.init_error
    _State.initialised += 1


def nvmlInit() -> None:
    nvmlInitWithFlags(0)


def nvmlShutdown() -> None:
    if not _State.initialised:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)
    _State.initialised -= 1


def nvmlSystemGetDriverVersion() -> str:
    if not _State.initialised:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)
    return _State.driver_version


def nvmlDeviceGetCount() -> int:
    if not _State.initialised:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)
    return len(_State.devices)


def nvmlDeviceGetHandleByIndex(index: int) -> _Handle:
    if not _State.initialised:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)
    if not 0 <= index < len(_State.devices):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return _Handle(index, _State.devices[index])


def nvmlDeviceGetIndex(handle: _Handle) -> int:
    _enter(handle, "nvmlDeviceGetIndex")
    return handle.index


def nvmlDeviceGetName(handle: _Handle) -> str:
    return _enter(handle, "nvmlDeviceGetName").name


def nvmlDeviceGetUUID(handle: _Handle) -> str:
    return _enter(handle, "nvmlDeviceGetUUID").uuid


def nvmlDeviceGetEnforcedPowerLimit(handle: _Handle) -> int:
    return int(_enter(handle, "nvmlDeviceGetEnforcedPowerLimit").power_limit_w * 1000)


def nvmlDeviceGetPowerManagementLimit(handle: _Handle) -> int:
    return int(_enter(handle, "nvmlDeviceGetPowerManagementLimit").power_limit_w * 1000)


def nvmlDeviceGetPowerUsage(handle: _Handle) -> int:
    """Milliwatts."""
    return round(_value(_enter(handle, "nvmlDeviceGetPowerUsage").power_w) * 1000)


def nvmlDeviceGetTotalEnergyConsumption(handle: _Handle) -> int:
    """Millijoules since the driver loaded; NotSupported without a counter."""
    dev = _enter(handle, "nvmlDeviceGetTotalEnergyConsumption")
    if not dev.energy_counter:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    if isinstance(dev.power_w, PowerSteps):
        return int(dev.power_w.energy_mj(_now()))
    if callable(dev.power_w):
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)  # only constant or stepped power is scripted
    return int(1e9 + dev.power_w * _now() * 1000)


def nvmlDeviceGetMemoryInfo(handle: _Handle, version: int | None = None) -> Memory:
    dev = _enter(handle, "nvmlDeviceGetMemoryInfo")
    total = int(dev.mem_total_mib * _MIB)
    used = int(_value(dev.mem_used_mib) * _MIB)
    return Memory(total=total, free=total - used, used=used)


def _processes(dev: FakeDevice) -> list[ProcessInfo]:
    return [
        ProcessInfo(pid, None if mib is None else int(mib * _MIB))
        for pid, mib in _value(dev.processes)
    ]


def nvmlDeviceGetComputeRunningProcesses(handle: _Handle) -> list[ProcessInfo]:
    dev = _enter(handle, "nvmlDeviceGetComputeRunningProcesses")
    if not dev.processes_v3_api:  # what pynvml's unversioned wrapper does then
        raise NVMLLibraryMismatchError(
            "Unversioned function called and the pyNVML version "
            "does not match the NVML lib version."
        )
    return _processes(dev)


def nvmlDeviceGetComputeRunningProcesses_v2(handle: _Handle) -> list[ProcessInfo]:
    return _processes(_enter(handle, "nvmlDeviceGetComputeRunningProcesses_v2"))


def nvmlDeviceGetGraphicsRunningProcesses(handle: _Handle) -> list[ProcessInfo]:
    dev = _enter(handle, "nvmlDeviceGetGraphicsRunningProcesses")
    return [
        ProcessInfo(pid, None if mib is None else int(mib * _MIB))
        for pid, mib in _value(dev.graphics_processes)
    ]


def nvmlDeviceGetGraphicsRunningProcesses_v2(handle: _Handle) -> list[ProcessInfo]:
    dev = _enter(handle, "nvmlDeviceGetGraphicsRunningProcesses_v2")
    return [
        ProcessInfo(pid, None if mib is None else int(mib * _MIB))
        for pid, mib in _value(dev.graphics_processes)
    ]


def nvmlSystemGetProcessName(pid: int) -> bytes:
    """The process's path, as bytes (pynvml returns the C buffer's value)."""
    if not _State.initialised:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)
    if pid not in _State.process_names:
        raise NVMLError(NVML_ERROR_NOT_FOUND)
    return _State.process_names[pid].encode()


def nvmlDeviceGetPowerManagementDefaultLimit(handle: _Handle) -> int:
    dev = _enter(handle, "nvmlDeviceGetPowerManagementDefaultLimit")
    default = dev.power_limit_w if dev.default_power_limit_w is None else dev.default_power_limit_w
    return int(default * 1000)


def nvmlDeviceGetPowerManagementLimitConstraints(handle: _Handle) -> list[int]:
    low, high = _enter(handle, "nvmlDeviceGetPowerManagementLimitConstraints").power_limit_range_w
    return [int(low * 1000), int(high * 1000)]


def nvmlDeviceGetPersistenceMode(handle: _Handle) -> int:
    return _enter(handle, "nvmlDeviceGetPersistenceMode").persistence_mode


def _clock_pair(values: tuple[int, int], type: int) -> int:
    if type in (NVML_CLOCK_GRAPHICS, NVML_CLOCK_SM):
        return values[0]
    if type == NVML_CLOCK_MEM:
        return values[1]
    raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)


def nvmlDeviceGetApplicationsClock(handle: _Handle, type: int) -> int:
    return _clock_pair(_enter(handle, "nvmlDeviceGetApplicationsClock").app_clocks_mhz, type)


def nvmlDeviceGetDefaultApplicationsClock(handle: _Handle, type: int) -> int:
    dev = _enter(handle, "nvmlDeviceGetDefaultApplicationsClock")
    return _clock_pair(dev.default_app_clocks_mhz, type)


def nvmlDeviceGetMaxClockInfo(handle: _Handle, type: int) -> int:
    dev = _enter(handle, "nvmlDeviceGetMaxClockInfo")
    return _clock_pair((dev.max_sm_mhz, dev.app_clocks_mhz[1]), type)


def nvmlDeviceGetAutoBoostedClocksEnabled(handle: _Handle) -> list[int]:
    dev = _enter(handle, "nvmlDeviceGetAutoBoostedClocksEnabled")
    if dev.auto_boost is None:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    return list(dev.auto_boost)


def nvmlDeviceGetUtilizationRates(handle: _Handle) -> Utilization:
    return Utilization(
        gpu=int(_value(_enter(handle, "nvmlDeviceGetUtilizationRates").util_pct)), memory=10
    )


def nvmlDeviceGetClockInfo(handle: _Handle, type: int) -> int:
    dev = _enter(handle, "nvmlDeviceGetClockInfo")
    if type != NVML_CLOCK_SM:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return int(_value(dev.sm_mhz))


def nvmlDeviceGetTemperature(handle: _Handle, sensor: int) -> int:
    dev = _enter(handle, "nvmlDeviceGetTemperature")
    if sensor != NVML_TEMPERATURE_GPU:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return int(_value(dev.temp_c))


def nvmlDeviceGetCurrentClocksEventReasons(handle: _Handle) -> int:
    dev = _enter(handle, "nvmlDeviceGetCurrentClocksEventReasons")
    if not dev.event_reasons_api:
        raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)
    return int(_value(dev.throttle))


def nvmlDeviceGetCurrentClocksThrottleReasons(handle: _Handle) -> int:
    return int(_value(_enter(handle, "nvmlDeviceGetCurrentClocksThrottleReasons").throttle))
