"""The monitor's NVML path against tests/fakes/fake_pynvml.py, plus the power-log CSV.

Most tests drive the monitor by hand (sample_once) on a fake clock shared with the fake
GPUs, so every expected number is exact and nothing depends on timing.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nvml_helpers import Clock, load_fake_nvml

from harness.monitor import Monitor, MonitorConfig, PhaseWindow, csv_columns, summarize

nv = load_fake_nvml()


def make(
    devices: list, indices: list[int] | None = None, clock: Clock | None = None, **kw
) -> tuple[Monitor, Clock]:
    clock = clock or Clock()
    nv.configure(devices, clock=clock, **kw)
    idx = list(range(len(devices))) if indices is None else indices
    mon = Monitor(MonitorConfig(interval_s=1.0, gpu_indices=idx, nvml_module=nv, clock=clock))
    return mon, clock


def run_until(mon: Monitor, clock: Clock, end: float, step: float = 1.0) -> None:
    """Sample at clock.t, clock.t + step, ... up to and including end."""
    while clock.t <= end + 1e-9:
        mon.sample_once()
        clock.t += step


def steps_device(**kw) -> nv.FakeDevice:
    return nv.FakeDevice(power_w=nv.PowerSteps([(0.0, 100.0), (105.0, 200.0)]), **kw)


def test_energy_from_counter_versus_integrated_power() -> None:
    mon, clock = make([steps_device(), steps_device(energy_counter=False)])
    run_until(mon, clock, 110.0)
    rec = mon.stop()
    s = summarize(rec, [PhaseWindow("timed", 101.0, 109.0)])
    devs = s["gpu"]["phases"]["timed"]["per_device"]
    # counter: 100 W for 4 s + 200 W for 4 s, exactly
    assert devs[0]["energy_source"] == "nvml_counter"
    assert devs[0]["energy_j"] == pytest.approx(1200.0)
    # trapezoid over 1 s samples: the step at 105 is smeared over [104, 105]
    assert devs[1]["energy_source"] == "integrated_power"
    assert devs[1]["energy_j"] == pytest.approx(300.0 + 150.0 + 800.0)
    timed = s["gpu"]["phases"]["timed"]
    assert timed["energy_j"] == pytest.approx(2450.0)
    assert timed["energy_source"] == "mixed"
    # NotSupported is learnt once, then the counter is never asked again
    assert nv._State.devices[1].calls["nvmlDeviceGetTotalEnergyConsumption"] == 1
    assert {"device": 1, "metric": "energy", "error": "Not Supported"} in rec.unsupported
    assert s["errors"] == []


def test_summed_power_and_memory_of_two_gpus() -> None:
    mon, clock = make(
        [
            nv.FakeDevice(power_w=100.0, mem_used_mib=1000.0),
            nv.FakeDevice(power_w=50.0, mem_used_mib=3000.0),
        ]
    )
    run_until(mon, clock, 104.0)
    s = summarize(mon.stop(), [PhaseWindow("run", 100.0, 104.0)])
    run = s["gpu"]["phases"]["run"]
    assert run["power_w"] == {"mean": 150.0, "max": 150.0}
    assert run["memory_used_mib"] == {"mean": 4000.0, "max": 4000.0}
    assert [d["power_w"]["mean"] for d in run["per_device"]] == [100.0, 50.0]
    assert [d["memory_used_mib"]["max"] for d in run["per_device"]] == [1000.0, 3000.0]
    assert run["energy_j"] == pytest.approx(4 * 150.0)
    assert run["energy_source"] == "nvml_counter"
    assert run["samples"] == 5


def test_device_identity_is_read_once() -> None:
    mon, clock = make(
        [
            nv.FakeDevice(name="NVIDIA H100", uuid="GPU-aaa", power_limit_w=700.0),
            nv.FakeDevice(name="NVIDIA H100", uuid="GPU-bbb"),
        ],
        driver_version="555.42.06",
    )
    run_until(mon, clock, 102.0)
    s = summarize(mon.stop(), [PhaseWindow("run", 100.0, 102.0)])
    assert s["gpu"]["available"] is True
    assert s["gpu"]["driver_version"] == "555.42.06"
    assert [d["uuid"] for d in s["gpu"]["devices"]] == ["GPU-aaa", "GPU-bbb"]
    assert s["gpu"]["devices"][0]["power_limit_w"] == 700.0
    assert s["gpu"]["devices"][0]["memory_total_mib"] == 16384.0
    assert nv._State.devices[0].calls["nvmlDeviceGetName"] == 1


def test_process_memory_counts_only_the_tracked_tree() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        me, other = os.getpid(), 999_999_999
        mon, clock = make(
            [
                nv.FakeDevice(processes=[(me, 300.0), (other, 5000.0), (child.pid, 200.0)]),
                nv.FakeDevice(processes=[(me, None), (other, 700.0)]),
            ]
        )
        mon.track_process(me)
        run_until(mon, clock, 103.0)
        rec = mon.stop()
    finally:
        child.kill()
        child.wait()
    s = summarize(rec, [PhaseWindow("run", 100.0, 103.0)])
    run = s["gpu"]["phases"]["run"]
    assert run["per_device"][0]["process_memory_mib"] == {"mean": 500.0, "max": 500.0}
    # usedGpuMemory None (not available) is not a zero
    assert run["per_device"][1]["process_memory_mib"] is None
    assert run["process_memory_mib"] == {"mean": 500.0, "max": 500.0}


def test_process_list_falls_back_to_v2_on_an_older_driver() -> None:
    mon, clock = make([nv.FakeDevice(processes=[(os.getpid(), 64.0)], processes_v3_api=False)])
    mon.track_process(os.getpid())
    run_until(mon, clock, 102.0)
    rec = mon.stop()
    assert [r.gpus[0].proc_mem_mib for r in rec] == [64.0] * 3
    assert nv._State.devices[0].calls["nvmlDeviceGetComputeRunningProcesses"] == 1
    assert rec.errors == [] and rec.unsupported == []


def test_process_memory_reason_when_no_tracked_pid_is_listed() -> None:
    mon, clock = make([nv.FakeDevice(processes=[(999_999_999, 100.0)])])
    mon.track_process(os.getpid())
    run_until(mon, clock, 102.0)
    run = summarize(mon.stop(), [PhaseWindow("run", 100.0, 102.0)])["gpu"]["phases"]["run"]
    assert run["process_memory_mib"] is None
    assert "PID namespace" in run["process_memory_reason"]


def test_timed_and_run_windows_are_sliced_apart() -> None:
    mon, clock = make([steps_device()])
    run_until(mon, clock, 110.0)
    rec = mon.stop()
    s = summarize(
        rec,
        [PhaseWindow("run", 100.0, 110.0), PhaseWindow("timed", 105.0, 110.0)],
        images={"timed": 500, "run": 800},
    )
    timed, run = s["gpu"]["phases"]["timed"], s["gpu"]["phases"]["run"]
    assert timed["samples"] == 6 and run["samples"] == 11
    assert timed["power_w"] == {"mean": 200.0, "max": 200.0}
    assert run["power_w"]["mean"] == pytest.approx((5 * 100 + 6 * 200) / 11, rel=1e-5)
    assert timed["energy_j"] == pytest.approx(1000.0)
    assert run["energy_j"] == pytest.approx(1500.0)
    # joules per image use each window's own images
    assert timed["joules_per_image"] == pytest.approx(2.0)
    assert run["joules_per_image"] == pytest.approx(1500.0 / 800)
    assert s["phases"]["timed"]["joules_per_image"] == pytest.approx(2.0)
    assert s["phases"]["timed"]["energy_from"] == "gpu"


def test_throttle_reasons_are_decoded_and_idle_is_not_throttling() -> None:
    def throttle(t: float) -> int:
        if t < 105:
            return nv.nvmlClocksEventReasonGpuIdle
        return nv.nvmlClocksEventReasonSwPowerCap | nv.nvmlClocksEventReasonHwThermalSlowdown

    mon, clock = make(
        [
            nv.FakeDevice(throttle=throttle),
            nv.FakeDevice(throttle=throttle, event_reasons_api=False),
        ]
    )
    run_until(mon, clock, 108.0)
    rec = mon.stop()
    s = summarize(rec, [PhaseWindow("warmup", 100.0, 104.0), PhaseWindow("timed", 105.0, 108.0)])
    warm, timed = s["gpu"]["phases"]["warmup"], s["gpu"]["phases"]["timed"]
    assert warm["throttle_reasons"] == ["gpu_idle"] and warm["throttled"] is False
    assert timed["throttle_reasons"] == ["hw_thermal_slowdown", "sw_power_cap"]
    assert timed["throttled"] is True
    assert s["gpu"]["throttled"] is True
    # the older ThrottleReasons call serves a driver without the EventReasons one
    assert timed["per_device"][1]["throttle_reasons"] == ["sw_power_cap", "hw_thermal_slowdown"]
    assert nv._State.devices[1].calls["nvmlDeviceGetCurrentClocksEventReasons"] == 1


def test_init_failure_gives_a_reason_and_host_sampling_goes_on() -> None:
    err = nv.NVMLError(nv.NVML_ERROR_DRIVER_NOT_LOADED)
    assert isinstance(err, nv.NVMLError_DriverNotLoaded)
    mon, clock = make([nv.FakeDevice()], init_error=err)
    mon.track_process(os.getpid())
    run_until(mon, clock, 103.0)
    rec = mon.stop()
    assert len(rec) == 4
    s = summarize(rec, [PhaseWindow("run", 100.0, 103.0)])
    assert s["gpu"]["available"] is False
    assert s["gpu"]["reason"] == "NVIDIA driver not loaded"
    assert s["gpu"]["phases"] == {}
    assert s["host"]["phases"]["run"]["rss_mib"]["max"] > 0
    assert all(r.gpus == () for r in rec)


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (nv.NVML_ERROR_LIBRARY_NOT_FOUND, "not found"),
        (nv.NVML_ERROR_NO_PERMISSION, "permission"),
        (nv.NVML_ERROR_UNKNOWN, "nvmlInit failed"),
    ],
)
def test_init_failure_reasons(code: int, words: str) -> None:
    mon, _ = make([nv.FakeDevice()], init_error=nv.NVMLError(code))
    mon.sample_once()
    assert words in mon.stop().gpu_reason


def test_error_mid_run_is_counted_and_other_metrics_survive() -> None:
    unknown = nv.NVMLError(nv.NVML_ERROR_UNKNOWN)
    dev = nv.FakeDevice(
        power_w=80.0,
        failures={
            "nvmlDeviceGetPowerUsage": [None, unknown, nv.NVMLError(nv.NVML_ERROR_UNKNOWN), None]
        },
    )
    mon, clock = make([dev, nv.FakeDevice(power_w=20.0)])
    run_until(mon, clock, 103.0)
    nv._State.devices[1].lost = True  # the second GPU falls off the bus
    run_until(mon, clock, 106.0)
    rec = mon.stop()
    assert len(rec) == 7  # sampling never stopped
    powers = [r.gpus[0].power_w for r in rec]
    assert powers == [80.0, None, None, 80.0, 80.0, 80.0, 80.0]
    assert all(r.gpus[0].mem_used_mib == 1024.0 for r in rec)  # not blanked
    assert [r.gpus[1].power_w for r in rec] == [20.0] * 4 + [None] * 3
    errors = {(e["what"], e["count"]) for e in rec.errors}
    assert ("gpu0 power", 2) in errors
    assert ("gpu1", 1) in errors  # GPU lost: recorded once, then the device is skipped
    assert nv._State.devices[1].calls["nvmlDeviceGetPowerUsage"] == 5
    s = summarize(rec, [PhaseWindow("run", 100.0, 106.0)])
    assert s["gpu"]["phases"]["run"]["per_device"][0]["power_w"]["mean"] == 80.0
    assert len(s["errors"]) == 2


def test_missing_pynvml_module_gives_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    mon = Monitor(MonitorConfig(gpu_indices=[0]))
    mon.sample_once()
    rec = mon.stop()
    assert rec.gpu_available is False
    assert "nvidia-ml-py" in rec.gpu_reason


def test_real_pynvml_without_a_gpu_does_not_break_the_monitor() -> None:
    pytest.importorskip("pynvml")
    mon = Monitor(MonitorConfig(gpu_indices=[0]))
    mon.sample_once()
    rec = mon.stop()
    assert rec.gpu_available or rec.gpu_reason


def test_gpu_selection() -> None:
    mon, _ = make([nv.FakeDevice(), nv.FakeDevice(), nv.FakeDevice()], indices=[2])
    mon.sample_once()
    rec = mon.stop()
    assert rec.gpu_indices == [2] and len(rec[0].gpus) == 1

    nv.configure([nv.FakeDevice(), nv.FakeDevice()])
    mon = Monitor(MonitorConfig(gpu_indices=None, nvml_module=nv, clock=Clock()))
    mon.sample_once()
    assert mon.stop().gpu_indices == [0, 1]

    mon, _ = make([nv.FakeDevice()], indices=[])
    mon.sample_once()
    assert mon.stop().gpu_reason == "no GPUs requested"

    mon, _ = make([nv.FakeDevice()], indices=[5])
    mon.sample_once()
    rec = mon.stop()
    assert rec.gpu_available is False and "[5]" in rec.gpu_reason
    assert rec.errors[0]["what"] == "gpu5 handle"


def test_idle_baseline_and_energy_above_it(monkeypatch: pytest.MonkeyPatch) -> None:
    mon, clock = make(
        [
            nv.FakeDevice(power_w=nv.PowerSteps([(0.0, 40.0), (103.0, 140.0)])),
            nv.FakeDevice(power_w=60.0),
        ]
    )

    def sleep(seconds: float) -> None:
        clock.t += seconds

    monkeypatch.setattr("harness.monitor.monitor.time.sleep", sleep)
    base = mon.idle_baseline(seconds=2.0)  # samples at 100, 101, 102
    assert base["samples"] == 3
    assert base["gpu_power_w_total"] == 100.0
    assert base["gpu_power_w"] == {"0": 40.0, "1": 60.0}
    clock.t = 103.0
    run_until(mon, clock, 113.0)
    s = summarize(mon.stop(), [PhaseWindow("run", 103.0, 113.0)])
    run = s["gpu"]["phases"]["run"]
    assert run["power_w"]["mean"] == 200.0
    assert run["energy_j"] == pytest.approx(2000.0)
    assert run["energy_above_baseline_j"] == pytest.approx(1000.0)
    assert s["baseline"] == base


def test_background_thread_samples_until_stopped() -> None:
    nv.configure([nv.FakeDevice(), nv.FakeDevice()])
    mon = Monitor(MonitorConfig(interval_s=0.02, gpu_indices=[0, 1], nvml_module=nv))
    mon.start(root_pid=os.getpid())
    deadline = time.monotonic() + 30
    while len(mon.samples) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    rec = mon.stop()
    assert len(rec) >= 5
    ts = [r.t for r in rec]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)
    assert all(r.gpus[1].power_w == 100.0 for r in rec)
    assert rec.sampler["thread_cpu_s"] is not None and rec.sampler["wall_s"] > 0
    assert nv._State.initialised == 0  # nvmlShutdown was called
    # one monitor serves the next repeat: a new recording, the old one left as it was
    n_first = len(rec)
    mon.start()
    with pytest.raises(RuntimeError):
        mon.start()
    second = mon.stop()
    assert len(rec) == n_first and len(second) >= 1
    assert second[0].t > rec[-1].t
    assert nv._State.initialised == 0


def test_csv_power_log(tmp_path: Path) -> None:
    mon, clock = make([steps_device(), steps_device(energy_counter=False)])
    mon.track_process(os.getpid())
    run_until(mon, clock, 106.0)
    mon.stop()
    path = tmp_path / "power.csv"
    windows = [PhaseWindow("run", 100.0, 106.0), PhaseWindow("timed", 103.0, 106.0)]
    mon.write_csv(path, windows)
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    with path.open() as f:
        header = f.readline().strip().split(",")
    assert header == csv_columns([0, 1])
    for col in (
        "t",
        "t_rel",
        "gpu0_power_w",
        "gpu1_energy_mj",
        "gpu0_proc_mem_mib",
        "gpu1_throttle",
        "host_cpu_pct",
        "tree_cpu_pct",
        "tree_rss_mib",
        "cpu_energy_uj",
    ):
        assert col in header
    assert len(rows) == 7
    assert [float(r["t"]) for r in rows] == [100.0 + k for k in range(7)]
    assert [float(r["gpu0_power_w"]) for r in rows] == [100.0] * 5 + [200.0] * 2
    # energy since the log began, from the counter; empty where there is no counter
    assert [float(r["gpu0_energy_mj"]) for r in rows][:3] == [0.0, 100_000.0, 200_000.0]
    assert all(r["gpu1_energy_mj"] == "" for r in rows)
    assert rows[0]["gpu0_throttle"] == "none"
    assert float(rows[-1]["tree_rss_mib"]) > 0
    assert rows[0]["tree_cpu_pct"] == ""  # no CPU delta yet at the first sample
    assert [r["phase"] for r in rows] == ["run"] * 3 + ["timed"] * 4
    json.dumps(summarize(mon.samples, windows), allow_nan=False)


def test_fake_matches_the_real_pynvml_api() -> None:
    real = pytest.importorskip("pynvml")
    from harness.monitor import nvml as mon_nvml

    used = [n for names in mon_nvml._CANDIDATES.values() for n in names]
    used += [
        "nvmlInit",
        "nvmlShutdown",
        "nvmlSystemGetDriverVersion",
        "nvmlDeviceGetCount",
        "nvmlDeviceGetHandleByIndex",
        "nvmlDeviceGetName",
        "nvmlDeviceGetUUID",
        "nvmlDeviceGetEnforcedPowerLimit",
        "nvmlDeviceGetPowerManagementLimit",
    ]
    for name in used:
        assert callable(getattr(real, name)), name
        assert callable(getattr(nv, name)), name
    for name in (
        "NVMLError_NotSupported",
        "NVMLError_NoPermission",
        "NVMLError_GpuIsLost",
        "NVMLError_LibraryNotFound",
        "NVMLError_DriverNotLoaded",
        "NVMLError_FunctionNotFound",
        "NVMLLibraryMismatchError",
    ):
        assert hasattr(real, name) and hasattr(nv, name), name
    for name in (
        "NVML_CLOCK_SM",
        "NVML_TEMPERATURE_GPU",
        "NVML_ERROR_NOT_SUPPORTED",
        "NVML_ERROR_NO_PERMISSION",
        "NVML_ERROR_GPU_IS_LOST",
        "NVML_ERROR_LIBRARY_NOT_FOUND",
        "NVML_ERROR_DRIVER_NOT_LOADED",
        "NVML_ERROR_FUNCTION_NOT_FOUND",
        "nvmlClocksEventReasonSwPowerCap",
        "nvmlClocksEventReasonHwThermalSlowdown",
        "nvmlClocksEventReasonGpuIdle",
    ):
        assert getattr(real, name) == getattr(nv, name), name
    # NVMLError(code) maps to the subclass in both
    assert type(real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)) is real.NVMLError_NotSupported
    assert type(nv.NVMLError(nv.NVML_ERROR_NOT_SUPPORTED)) is nv.NVMLError_NotSupported
    # the monitor's bit table agrees with pynvml's constants
    bits = dict(mon_nvml.THROTTLE_BITS)
    assert bits[real.nvmlClocksEventReasonSwThermalSlowdown] == "sw_thermal_slowdown"
    assert bits[real.nvmlClocksEventReasonHwPowerBrakeSlowdown] == "hw_power_brake_slowdown"
    assert bits[real.nvmlClocksThrottleReasonBoardLimit] == "board_limit"
