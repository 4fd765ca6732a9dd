"""Benchmark hygiene: the settings a run records, other processes on its GPUs, `doctor`.

GPU readings come from tests/fakes/fake_pynvml.py (nvidia-ml-py's API); CPU readings
from sysfs trees written under tmp_path, and from this machine's real files.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fake_cli import harness_env, run_cli
from test_monitor_nvml import make, nv, run_until

from harness.cli import doctor
from harness.machine import environment, hygiene
from harness.monitor import PhaseWindow, summarize
from harness.monitor import nvml as nvml_sampler
from harness.monitor.nvml import NvmlSampler
from harness.monitor.resources import contention_note
from harness.monitor.samples import ErrorLog

FOREIGN = 4_000_001  # no process here has this pid


def _sysfs(root: Path, governors: list[str], files: dict[str, str]) -> Path:
    for i, governor in enumerate(governors):
        folder = root / f"cpu{i}" / "cpufreq"
        folder.mkdir(parents=True)
        (folder / "scaling_governor").write_text(governor + "\n")
        (folder / "scaling_driver").write_text("intel_pstate\n")
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


# -- the CPU ---------------------------------------------------------------------------------


def test_cpu_settings_read_governors_driver_and_turbo(tmp_path: Path) -> None:
    root = _sysfs(tmp_path, ["performance"] * 3 + ["powersave"], {"intel_pstate/no_turbo": "0\n"})
    got = hygiene.cpu_settings(root)
    assert got["governor"] == "mixed"
    assert got["governors"] == {"performance": 3, "powersave": 1}
    assert got["scaling_driver"] == "intel_pstate"
    assert got["turbo"] is True and got["turbo_source"].endswith("intel_pstate/no_turbo")
    boost = _sysfs(tmp_path / "amd", ["performance"] * 2, {"cpufreq/boost": "0\n"})
    got = hygiene.cpu_settings(boost)
    assert got["governor"] == "performance" and got["turbo"] is False


def test_cpu_settings_of_this_machine_and_of_none(tmp_path: Path) -> None:
    assert hygiene.cpu_settings(tmp_path) == {
        "governor": None,
        "governors": {},
        "scaling_driver": None,
        "turbo": None,
        "turbo_source": None,
    }
    real = hygiene.cpu_settings()  # whatever this machine exposes, it must read cleanly
    assert set(real) == {"governor", "governors", "scaling_driver", "turbo", "turbo_source"}


def _powercap(root: Path) -> Path:
    domain = root / "intel-rapl:0"
    domain.mkdir(parents=True)
    (domain / "name").write_text("package-0\n")
    (domain / "energy_uj").write_text("123456\n")
    (domain / "max_energy_range_uj").write_text("262143328850\n")
    return root


def test_rapl_status_readable_missing_and_denied(tmp_path: Path, monkeypatch) -> None:
    assert hygiene.rapl_status(_powercap(tmp_path / "ok"))["readable"] is True
    missing = hygiene.rapl_status(tmp_path / "none")
    assert missing["readable"] is False and "not present" in missing["reason"]

    def denied(path, *args):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("harness.monitor.host.os.open", denied)
    root = _powercap(tmp_path / "denied")
    status = hygiene.rapl_status(root)
    assert status["readable"] is False and "permission denied" in status["reason"]
    check = next(c for c in doctor.cpu_checks(tmp_path, root) if c.name.startswith("RAPL"))
    assert check.status == "warn" and "run as root" in check.advice


# -- the GPUs ---------------------------------------------------------------------------------


def test_gpu_settings_and_processes_through_nvml() -> None:
    nv.configure(
        [
            nv.FakeDevice(power_limit_w=250.0, default_power_limit_w=400.0, persistence_mode=0),
            nv.FakeDevice(
                app_clocks_mhz=(1095, 1215),  # set with nvidia-smi -ac: clocks held
                processes=[(FOREIGN, 2048.0)],
                graphics_processes=[(FOREIGN + 1, None)],
                energy_counter=False,
            ),
        ],
        process_names={FOREIGN: "/opt/conda/bin/python"},
    )
    report = hygiene.gpus_report(module=nv, processes=True)
    assert report["reason"] is None and report["driver"] == "550.54.15"
    first, second = report["gpus"]
    assert first["power_limit_w"] == 250.0 and first["default_power_limit_w"] == 400.0
    assert first["power_limit_range_w"] == [100.0, 400.0]
    assert first["persistence_mode"] is False and first["clocks_held"] is None
    assert first["energy_counter"] is True and first["power_w"] == 100.0
    assert first["auto_boost"] is None  # NotSupported, as on recent GPUs
    assert first["processes"] == []
    assert second["clocks_held"] is True
    assert second["application_clocks_mhz"] == {"graphics": 1095, "memory": 1215}
    assert second["energy_counter"] is False and "Not Supported" in second["energy_error"]
    assert second["processes"] == [
        {"memory_mib": 2048.0, "pid": FOREIGN, "kind": "compute", "name": "python"},
        {"memory_mib": None, "pid": FOREIGN + 1, "kind": "graphics", "name": None},
    ]
    # what a run records: settings of its own GPUs only
    recorded = hygiene.record([1], module=nv)
    assert [g["index"] for g in recorded["gpus"]] == [1]
    assert "processes" not in recorded["gpus"][0] and "power_w" not in recorded["gpus"][0]


def test_every_nvml_call_hygiene_makes_exists_in_pynvml_and_the_fake() -> None:
    real = pytest.importorskip("pynvml")
    # process_name lives with the NVML binding (harness.monitor.nvml); hygiene calls it
    source = Path(hygiene.__file__).read_text() + inspect.getsource(hygiene.process_name)
    used = set(re.findall(r'"(nvml[A-Za-z_0-9]+)"', source))
    used |= set(re.findall(r"nvml\.(nvml[A-Za-z_0-9]+)", source))
    used |= {n for _, names in hygiene.PROCESS_LISTS for n in names}
    assert "nvmlDeviceGetPersistenceMode" in used and "nvmlSystemGetProcessName" in used
    for name in sorted(used):
        assert callable(getattr(real, name)), name
        assert callable(getattr(nv, name)), name


def test_environment_records_hygiene_for_the_runs_gpus(monkeypatch) -> None:
    nv.configure([nv.FakeDevice(), nv.FakeDevice(power_limit_w=200.0)])
    monkeypatch.setenv("HARNESS_NVML_MODULE", "fake_pynvml")  # nvml_helpers loaded it
    env = environment.collect(gpu_indices=[1])
    assert [g["power_limit_w"] for g in env["hygiene"]["gpus"]] == [200.0]
    assert "governor" in env["hygiene"]["cpu"]
    cpu_run = environment.collect()
    assert "gpus" not in cpu_run["hygiene"]  # a CPU run opens no NVML


def test_no_nvml_is_a_reason_not_an_error() -> None:
    nv.configure([], init_error=nv.NVMLError(nv.NVML_ERROR_LIBRARY_NOT_FOUND))
    report = hygiene.gpus_report(module=nv)
    assert report["gpus"] == [] and "NVML is not available" in report["reason"]
    assert hygiene.record([0], module=nv)["gpu_reason"] == report["reason"]


# -- other processes on the run's GPUs ----------------------------------------------------------


def test_the_monitor_marks_other_processes_on_the_runs_gpus_contended() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        late = {"t": 103.0}

        def compute(t: float) -> list:
            procs = [(os.getpid(), 100.0), (child.pid, 300.0)]
            return procs + ([(FOREIGN, 5000.0)] if t >= late["t"] else [])

        mon, clock = make(
            [
                nv.FakeDevice(processes=compute),
                nv.FakeDevice(graphics_processes=[(FOREIGN + 1, None)]),
            ],
            process_names={FOREIGN: "/usr/bin/python3", FOREIGN + 1: "/usr/lib/xorg/Xorg"},
        )
        mon.track_process(child.pid)  # the run's tree: the child (and the monitor's own pid)
        run_until(mon, clock, 106.0)
        rec = mon.stop()
    finally:
        child.kill()
        child.wait()
    s = summarize(rec, [PhaseWindow("setup", 100.0, 102.0), PhaseWindow("timed", 102.0, 106.0)])
    contended = s["gpu"]["contended"]
    assert [(c["gpu"], c["pid"], c["name"], c["kind"]) for c in contended] == [
        (0, FOREIGN, "python3", "compute"),
        (1, FOREIGN + 1, "Xorg", "graphics"),
    ]
    foreign, display = contended
    assert foreign["memory_mib"] == 5000.0 and foreign["samples"] == 4
    assert (foreign["first_t"], foreign["last_t"]) == (103.0, 106.0)
    assert foreign["phases"] == ["timed"]  # it came after setup
    assert display["phases"] == ["setup", "timed"] and display["memory_mib"] is None
    assert contention_note(foreign) == f"GPU contended by pid {FOREIGN} (python3) on GPU 0"


def test_a_process_the_tree_has_not_found_yet_is_still_the_runs() -> None:
    """A worker's child that NVML lists before the tree's refresh finds it is not another's."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time; "
         "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
         "print(p.pid, flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    grandchild = int(child.stdout.readline())
    try:
        nv.configure([nv.FakeDevice(processes=[(grandchild, 400.0), (FOREIGN, 1.0)])])
        sampler = NvmlSampler([0], nv, ErrorLog())
        sampler.open(0.0)
        # the tree knows only its root so far; the grandchild descends from it
        sampler.read(frozenset({child.pid}), 1.0, roots=(child.pid,))
        sampler.close()
    finally:
        os.kill(grandchild, signal.SIGKILL)
        child.kill()
        child.wait()
    assert [c["pid"] for c in sampler.contention()] == [FOREIGN]


def test_in_a_container_pid_namespace_only_processes_seen_before_the_run_count(
    monkeypatch,
) -> None:
    monkeypatch.setattr(nvml_sampler, "in_nested_pid_namespace", lambda: True)
    mon, clock = make([nv.FakeDevice(processes=[(FOREIGN, 100.0), (FOREIGN + 7, 900.0)])])
    mon.sample_once(record=False)  # before the worker: both are others (the idle baseline)
    nv._State.devices[0].processes = [(FOREIGN, 100.0), (FOREIGN + 7, 900.0), (FOREIGN + 8, 1.0)]
    mon.track_process(os.getpid())
    clock.t += 1
    mon.sample_once()
    s = summarize(mon.stop(), [PhaseWindow("run", 100.0, 101.0)])
    # FOREIGN + 8 appeared during the run: host pids cannot be told from the run's own
    assert [c["pid"] for c in s["gpu"]["contended"]] == [FOREIGN, FOREIGN + 7]
    assert "PID namespace" in s["gpu"]["contention_reason"]


def test_a_contended_gpu_run_records_who_and_notes_it(tmp_path: Path) -> None:
    out = run_cli(
        "--tool", "fake", "--model", "lenet", "--dataset", "mnist", "--synthetic",
        "--num-gpus", "1", "--warmup-steps", "1", "--steps", "5", "--batch-size", "4",
        "-o", "step_s=0.03", "--repeats", "1", "--idle-baseline", "0.2",
        "--output-dir", str(tmp_path), "--json",
        HARNESS_NVML_MODULE="fake_busy_gpu_machine",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    gpu = result["repeats"][0]["resources"]["gpu"]
    assert [(c["pid"], c["name"], c["gpu"]) for c in gpu["contended"]] == [
        (4_000_001, "python", 0),
        (4_000_002, "Xorg", 0),
    ]  # and not the run's own worker, which NVML lists too
    assert "timed" in gpu["contended"][0]["phases"]
    notes = result["summary"]["resource_notes"]
    assert "GPU contended by pid 4000001 (python) on GPU 0" in notes
    settings = result["environment"]["hygiene"]["gpus"][0]
    assert settings["power_limit_w"] == 250.0 and settings["default_power_limit_w"] == 400.0
    assert settings["persistence_mode"] is False
    assert "governor" in result["environment"]["hygiene"]["cpu"]


# -- doctor ----------------------------------------------------------------------------------------


def _prober(found: dict[str, dict[str, str]]):
    def probe(python: str, modules: list[str], timeout: float) -> dict:
        if python.startswith("/nope"):
            return {"error": "does not run (FileNotFoundError)"}
        return {"python": "3.11.7", "found": found.get(python, {})}

    return probe


def test_doctor_judges_every_setting(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HARNESS_PYTHON_JAX", "/nope/python")  # a run of jax would stop there
    nv.configure(
        [
            nv.FakeDevice(power_limit_w=250.0, default_power_limit_w=400.0, persistence_mode=0),
            nv.FakeDevice(app_clocks_mhz=(1095, 1215), processes=[(FOREIGN, 2048.0)]),
        ],
        process_names={FOREIGN: "/usr/bin/python"},
    )
    cpu = _sysfs(tmp_path / "cpu", ["powersave"] * 2, {"intel_pstate/no_turbo": "1\n"})
    here = {sys.executable: {"harness": "0.1.0", "torch": "2.13.0", "jax": "0.10.2"}}
    checks = doctor.run_checks(
        nvml_module=nv,
        cpu_root=cpu,
        powercap_root=_powercap(tmp_path / "powercap"),
        prober=_prober(here),
        host_load=lambda: None,
    )
    by_name = {c.name: c for c in checks}
    assert (
        by_name["tool pytorch"].status == "ok" and "torch 2.13.0" in by_name["tool pytorch"].found
    )
    assert by_name["tool mxnet"].status == "warn"
    assert by_name["tool jax"].status == "warn"
    assert "HARNESS_PYTHON_JAX=/nope/python does not run" in by_name["tool jax"].found
    assert "pip install -e '" in by_name["tool mxnet"].advice  # a checkout: the editable form
    assert "[mxnet]'" in by_name["tool mxnet"].advice
    assert by_name["NVML"].status == "ok" and "2 GPU(s)" in by_name["NVML"].found
    assert by_name["GPU power limit"].status == "warn"
    assert by_name["GPU power limit"].found == "GPU 0: 250 W, default 400 W"
    assert by_name["GPU persistence mode"].status == "warn"
    assert "nvidia-smi -pm 1" in by_name["GPU persistence mode"].advice
    assert by_name["GPU clocks"].status == "warn"
    assert by_name["GPU clocks"].found.startswith("GPU 0: not locked")
    assert "nvidia-smi -lgc" in by_name["GPU clocks"].advice
    assert by_name["GPU processes"].found == f"GPU 1: pid {FOREIGN} (python, 2048 MiB)"
    assert by_name["GPU energy counter"].status == "ok"
    assert by_name["CPU governor"].status == "warn" and "cpupower" in by_name["CPU governor"].advice
    assert by_name["CPU turbo/boost"].status == "ok"
    assert by_name["RAPL (CPU energy)"].status == "ok"
    assert doctor.exit_code(checks) == 0


def test_doctor_fails_without_any_framework_and_on_a_broken_driver(
    tmp_path: Path, monkeypatch
) -> None:
    nv.configure([], init_error=nv.NVMLError(nv.NVML_ERROR_LIBRARY_NOT_FOUND))
    checks = doctor.run_checks(
        nvml_module=nv, cpu_root=tmp_path, prober=_prober({}), host_load=lambda: None
    )
    by_name = {c.name: c for c in checks}
    assert by_name["frameworks"].status == "fail"
    assert by_name["NVML"].status == "warn" and "no NVIDIA GPU" in by_name["NVML"].found
    assert by_name["CPU governor"].status == "warn"  # nothing exposed under tmp_path
    assert doctor.exit_code(checks) == 1
    monkeypatch.setattr(hygiene, "nvidia_device_present", lambda: True)
    broken = doctor.gpu_checks(nv)
    assert [(c.name, c.status) for c in broken] == [("NVML", "fail")]


def test_doctor_command_prints_one_table_fast() -> None:
    env = harness_env(HARNESS_NVML_MODULE="fake_busy_gpu_machine")
    out = subprocess.run(
        [sys.executable, "-m", "harness", "doctor", "--json", "--timeout", "30"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    checks = json.loads(out.stdout)
    statuses = {c["name"]: c["status"] for c in checks}
    assert out.returncode == (1 if "fail" in statuses.values() else 0), out.stderr
    assert statuses["GPU processes"] == "warn" and statuses["GPU power limit"] == "warn"
    assert {"CPU governor", "CPU turbo/boost", "RAPL (CPU energy)"} <= set(statuses)
    table = subprocess.run(
        [sys.executable, "-m", "harness", "doctor"], capture_output=True, text=True, env=env
    )
    assert "what to do" in table.stdout and "GPU persistence mode" in table.stdout
