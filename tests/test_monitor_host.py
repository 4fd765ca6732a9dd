"""The monitor's host side for real: a process tree that burns CPU and holds memory, RAPL."""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.monitor import Monitor, MonitorConfig, PhaseWindow, summarize
from harness.monitor import host as host_mod
from harness.monitor.host import ProcessTree, Rapl, SystemCpu
from harness.monitor.samples import ErrorLog

MIB = 1024 * 1024

# root -> child -> grandchild; only the grandchild allocates 200 MB and burns CPU
GRAND = (
    "import sys\nb = b'x' * (200 * 1024 * 1024)\nprint('ready', flush=True)\n"
    "x = 0\nwhile True:\n    x += 1\n"
)
CHILD = (
    "import subprocess, sys, time\n"
    f"subprocess.Popen([sys.executable, '-c', {GRAND!r}])\ntime.sleep(600)\n"
)
ROOT = (
    "import subprocess, sys, time\n"
    f"subprocess.Popen([sys.executable, '-c', {CHILD!r}])\ntime.sleep(600)\n"
)


def kill_tree(proc: subprocess.Popen) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        kids = psutil.Process(proc.pid).children(recursive=True)
        for p in [psutil.Process(proc.pid), *kids]:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(kids, timeout=10)
    proc.wait()


@pytest.fixture
def burner():
    proc = subprocess.Popen([sys.executable, "-c", ROOT], stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        kill_tree(proc)


@pytest.mark.slow
@pytest.mark.parametrize("procfs", [True, False], ids=["procfs", "psutil"])
def test_tree_rss_and_cpu_include_grandchildren(
    burner, procfs: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if procfs and not host_mod.procfs_usable():
        pytest.skip("no /proc/<pid>/task/<tid>/children here")
    monkeypatch.setattr(host_mod, "procfs_usable", lambda: procfs)
    mon = Monitor(MonitorConfig(interval_s=0.05, gpu_indices=[]))
    mon.start()
    mon.track_process(burner.pid)
    deadline = time.monotonic() + 60
    while sum(s.tree_cpu_pct is not None for s in mon.samples) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    rec = mon.stop()
    s = summarize(rec, [PhaseWindow("run", rec[0].t, rec[-1].t)])
    run = s["host"]["phases"]["run"]
    assert run["processes_max"] == 3
    # 200 MB live in the grandchild only, so it must have been counted
    assert run["rss_mib"]["max"] >= 200
    # one process spins flat out; even on a shared, busy machine it gets far more than this
    assert run["cpu_percent"]["mean"] > 20
    assert run["cpu_percent"]["max"] <= 100.0 * (os.cpu_count() or 1) * 1.5
    assert 0 <= run["system_cpu_percent"]["mean"] <= 100
    assert s["gpu"]["available"] is False and s["gpu"]["reason"] == "no GPUs requested"
    assert s["errors"] == []


def test_tree_follows_processes_that_exit() -> None:
    code = (
        "import subprocess, sys, time\n"
        "k = subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdin.read()'],"
        " stdin=subprocess.PIPE)\n"
        "print(k.pid, flush=True)\nsys.stdin.readline()\nk.stdin.close()\nk.wait()\n"
        "print('gone', flush=True)\ntime.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        kid = int(proc.stdout.readline())
        errors = ErrorLog()
        tree = ProcessTree(errors, refresh_s=3600.0)  # only a vanished process forces a refresh
        tree.add_root(proc.pid, 0.0)
        assert tree.sample(0.0)[2] == 2 and kid in tree.pids
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "gone"
        assert tree.sample(1.0)[2] == 1  # the reaped child is dropped
        assert tree.pids == frozenset({proc.pid})
        cpu, rss, n = tree.sample(2.0)
        assert n == 1 and rss > 0 and cpu is not None
        assert len(errors) == 0
    finally:
        kill_tree(proc)


def test_tracking_a_missing_pid_is_recorded_not_raised() -> None:
    mon = Monitor(MonitorConfig(gpu_indices=[]))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    mon.track_process(dead.pid)
    sample = mon.sample_once()
    assert sample.tree_cpu_pct is None and sample.tree_rss_mib is None
    assert mon.stop().errors[0]["what"] == f"track pid {dead.pid}"


def test_system_cpu_percent_is_a_percentage() -> None:
    cpu = SystemCpu()
    sum(range(2_000_000))
    value = cpu.read()
    cpu.close()
    assert value is None or 0.0 <= value <= 100.0


# -- RAPL on a fake /sys/class/powercap -----------------------------------------------
def fake_powercap(root: Path, packages: dict[int, int], top: int = 1_000_000) -> None:
    for n, energy in packages.items():
        d = root / f"intel-rapl:{n}"
        d.mkdir(parents=True)
        (d / "name").write_text(f"package-{n}\n")
        (d / "energy_uj").write_text(f"{energy}\n")
        (d / "max_energy_range_uj").write_text(f"{top}\n")
        sub = root / f"intel-rapl:{n}:0"  # a subdomain (core): must not be added again
        sub.mkdir()
        (sub / "name").write_text("core\n")
        (sub / "energy_uj").write_text("5\n")
        (sub / "max_energy_range_uj").write_text(f"{top}\n")


def set_energy(root: Path, n: int, value: int) -> None:
    (root / f"intel-rapl:{n}" / "energy_uj").write_text(f"{value}\n")


def test_rapl_sums_packages_and_handles_wrap_around(tmp_path: Path) -> None:
    fake_powercap(tmp_path, {0: 100, 1: 999_000})
    rapl = Rapl(tmp_path)
    assert rapl.available and rapl.reason is None
    assert rapl.read() == 0.0
    set_energy(tmp_path, 0, 600)
    set_energy(tmp_path, 1, 999_500)
    assert rapl.read() == 500 + 500
    set_energy(tmp_path, 1, 300)  # wrapped at 1_000_000
    assert rapl.read() == 1000 + 500 + 300
    rapl.close()


def test_rapl_missing_and_permission_denied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = Rapl(tmp_path / "nope")
    assert not missing.available and "not present" in missing.reason
    assert missing.read() is None
    fake_powercap(tmp_path, {0: 1})
    real_open = os.open

    def denied(path, *args, **kwargs):
        if str(path).endswith("energy_uj"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(host_mod.os, "open", denied)
    rapl = Rapl(tmp_path)
    assert not rapl.available and "permission denied" in rapl.reason


def test_cpu_energy_per_image_without_gpus(tmp_path: Path) -> None:
    fake_powercap(tmp_path, {0: 0})
    t = [10.0]
    mon = Monitor(MonitorConfig(gpu_indices=[], rapl_root=tmp_path, clock=lambda: t[0]))
    for k in range(5):  # 0.3 J per second; the counter wraps at 1 J between k=3 and k=4
        set_energy(tmp_path, 0, k * 300_000 % 1_000_000)
        mon.sample_once()
        t[0] += 1.0
    s = summarize(mon.stop(), [PhaseWindow("run", 10.0, 14.0)], images={"run": 100})
    run = s["host"]["phases"]["run"]
    assert run["cpu_energy_j"] == pytest.approx(1.2)
    assert s["host"]["cpu_energy_available"] is True
    assert s["phases"]["run"]["energy_from"] == "cpu"
    assert s["phases"]["run"]["joules_per_image"] == pytest.approx(run["cpu_energy_j"] / 100)
    assert run["cpu_joules_per_image"] == s["phases"]["run"]["joules_per_image"]


def test_no_rapl_gives_a_reason() -> None:
    mon = Monitor(MonitorConfig(gpu_indices=[], rapl_root="/nonexistent/powercap"))
    mon.sample_once()
    mon.sample_once()
    rec = mon.stop()
    s = summarize(rec, [PhaseWindow("run", rec[0].t, rec[-1].t)], images={"run": 10})
    run = s["host"]["phases"]["run"]
    assert run["cpu_energy_j"] is None and "not present" in run["cpu_energy_reason"]
    assert s["phases"]["run"]["joules_per_image"] is None
