"""Host contention (harness.monitor.contention): other processes' CPU time and VM steal
on the run's cores, the mark in the record, summary, report and compare, and
``--require-quiet``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.monitor import Monitor, MonitorConfig, PhaseWindow, summarize
from harness.monitor import contention as hc
from harness.monitor.contention import Load, Reading, load_of, parse_stat, top_others
from harness.monitor.resources import RunMonitor, host_contention_line
from harness.store import configkey
from harness.store.schema import RepeatRecord, Resources, RunResult

TICK = os.sysconf("SC_CLK_TCK")

# user nice system idle iowait irq softirq steal guest guest_nice, in ticks
STAT = """cpu  {a} 0 0 0 0 0 0 0 0 0
cpu0 {b0} 0 {s0} {i0} 0 0 0 {st0} 0 0
cpu1 {b1} 0 0 {i1} 0 0 0 0 0 0
intr 1 2 3
"""


def _stat(b0: int, s0: int, i0: int, st0: int, b1: int, i1: int) -> str:
    return STAT.format(a=0, b0=b0, s0=s0, i0=i0, st0=st0, b1=b1, i1=i1)


def test_parse_stat_sums_the_chosen_cores_and_splits_steal() -> None:
    text = _stat(b0=100, s0=50, i0=30, st0=20, b1=7, i1=93)
    assert parse_stat(text, [0]) == (150 / TICK, 20 / TICK, 200 / TICK)
    busy, steal, total = parse_stat(text)  # every core; the "cpu " total line is skipped
    assert (busy, steal, total) == (157 / TICK, 20 / TICK, 300 / TICK)


def test_others_are_busy_time_minus_the_runs_own_beyond_the_spare_cores() -> None:
    a = Reading(t=10.0, busy_s=100.0, steal_s=1.0, total_s=400.0, own_s=50.0)
    # 1 s on 2 cores: 1.5 core-s busy, 0.5 of them the run's -> others took 1 core
    b = Reading(t=11.0, busy_s=101.5, steal_s=1.0, total_s=402.0, own_s=50.5)
    load = load_of([(a, b)], cores=2, cores_used=2)
    assert load is not None and load.others_cores == 1.0 and load.others_pct == 50.0
    assert load.contended
    # the run uses 1 of the 2 cores: the other one is spare, others may take it
    spare = load_of([(a, b)], cores=2, cores_used=1)
    assert spare is not None and spare.others_pct == 0.0 and not spare.contended
    # a quiet run: every busy second is the run's own
    quiet = Reading(t=11.0, busy_s=101.9, steal_s=1.0, total_s=402.0, own_s=51.9)
    q = load_of([(a, quiet)], cores=2, cores_used=2)
    assert q is not None and q.others_pct == 0.0 and not q.contended
    # steal: 0.1 of 2 core-s is 5% (not above the limit), 0.2 is 10%
    st5 = Reading(t=11.0, busy_s=101.9, steal_s=1.1, total_s=402.0, own_s=51.9)
    st10 = Reading(t=11.0, busy_s=101.9, steal_s=1.2, total_s=402.0, own_s=51.9)
    assert not load_of([(a, st5)], 2, 2).contended  # type: ignore[union-attr]
    assert load_of([(a, st10)], 2, 2).contended  # type: ignore[union-attr]
    assert load_of([(a, a)], 2, 2) is None  # no time passed


def test_top_others_skips_the_run_and_counts_new_processes_whole() -> None:
    before = {1: ("init", 0, 5.0), 2: ("harness", 0, 1.0), 3: ("db", 0, 10.0), 4: ("old", 0, 9)}
    after = {
        1: ("init", 0, 5.001),
        2: ("harness", 0, 9.0),
        3: ("db-renamed", 0, 10.5),  # a process may change its name: the same process
        4: ("new", 1, 0.3),
        5: ("x", 1, 2.0),
    }
    top = top_others(before, after, own=[2], wall_s=2.0)
    # pid 4 is another process now (a reused pid): all its time counts; init's is too small
    assert top == [
        {"pid": 5, "name": "x", "cpu_pct": 100.0},
        {"pid": 3, "name": "db-renamed", "cpu_pct": 25.0},
        {"pid": 4, "name": "new", "cpu_pct": 15.0},
    ]


def _recording_summary(readings: list[Reading], top: list[dict]) -> dict:
    mon = Monitor(MonitorConfig(gpu_indices=[], cpu_cores=[0, 1], cores_used=2))
    rec = mon.samples  # an empty recording with the monitor's metadata
    rec.host_load, rec.cpu_cores, rec.cores_used, rec.others_top = readings, [0, 1], 2.0, top
    windows = [PhaseWindow("setup", 0, 1), PhaseWindow("warmup", 1, 2), PhaseWindow("timed", 2, 4)]
    return summarize(rec, windows)["host"]["contention"]


def test_warmup_and_timed_are_judged_setup_is_not() -> None:
    r = [Reading(t, 10 * t, 0.0, 20 * t, 10 * t) for t in (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)]
    # a busy setup (others took both cores before warmup) does not mark the run
    r[0] = Reading(0.0, -2.0, 0.0, 0.0, 0.0)
    quiet = _recording_summary(r, [])
    assert quiet["contended"] is False and quiet["phases"] == ["warmup", "timed"]
    assert quiet["wall_s"] == 3.0  # 1.0-2.0 and 2.0-4.0
    busy = [Reading(x.t, x.busy_s + (x.t >= 2.5) * 1.0, 0.0, x.total_s, x.own_s) for x in r]
    top = [{"pid": 7, "name": "burner", "cpu_pct": 99.0}]
    marked = _recording_summary(busy, top)
    assert marked["contended"] and marked["top"] == top
    line = host_contention_line(marked)
    assert line.startswith("† CPU contended during warmup and timed: other processes took")
    assert "pid 7 burner 99%" in line


def _result(contention: dict | None) -> RunResult:
    host = {} if contention is None else {"contention": contention}
    rec = RepeatRecord(status="ok", resources=Resources(host=host))
    return RunResult(run_id="r", repeats=[rec])


def test_the_mark_survives_the_store_and_old_records_read(tmp_path: Path) -> None:
    from sweep_helpers import make_result, make_store

    load = Load(3.0, 2, 2.0, 1.0, 50.0, 0.0, top=[{"pid": 7, "name": "burner", "cpu_pct": 99.0}])
    busy = RunResult.from_json(_result(load.to_dict()).to_json())
    assert [c["top"][0]["pid"] for c in busy.host_contended] == [7]
    assert _result(None).host_contended == []  # a record stored before host contention
    quiet = Load(3.0, 2, 2.0, 0.0, 0.0, 0.0).to_dict()
    assert RunResult.from_json(_result(quiet).to_json()).host_contended == []
    stored = make_result("pytorch", "lenet", "mnist", ips=(80.0, 1.0))
    stored.repeats = [
        RepeatRecord(status="ok", resources=Resources(host={"contention": load.to_dict()}))
    ]
    (back,) = make_store(tmp_path / "results.sqlite", [stored]).runs()
    assert back.host_contended == [load.to_dict()]


def test_report_and_compare_mark_host_contention() -> None:
    from rich.console import Console
    from sweep_helpers import make_result

    from harness.cli.summary import print_summary
    from harness.report.data import METRICS, build
    from harness.report.text import value_text
    from harness.results.compare import compare, summary_line

    clean = make_result("pytorch", "lenet", "mnist", ips=(100.0, 1.0))
    busy = make_result("pytorch", "lenet", "mnist", ips=(80.0, 1.0))
    load = Load(3.0, 2, 2.0, 1.0, 50.0, 0.0, top=[{"pid": 7, "name": "burner", "cpu_pct": 99.0}])
    busy.repeats = [
        RepeatRecord(status="ok", resources=Resources(host={"contention": load.to_dict()}))
    ]
    data = build([busy])
    value = data.value("images_per_sec", data.rows[0], data.columns[0])
    assert value.contended and value_text(value, METRICS[0]) == "80.0 ± 1.0†"
    assert any(n.startswith("† CPU contended: 1 run(s)") and "7 (burner)" in n for n in data.notes)
    assert not any("contended" in n for n in build([clean]).notes)
    (row,) = compare([clean], [busy])
    assert row.b.contended and not row.a.contended
    assert "another process used its GPUs or CPU cores" in summary_line([row])
    console = Console(record=True, width=300)
    busy.repeats[0].resources.host["contention"]["phases"] = ["warmup", "timed.1", "timed.2"]
    print_summary(console, busy, "run-dir")
    lines = console.export_text().splitlines()
    (line,) = [x for x in lines if x.startswith("† CPU contended during warmup and timed: ")]
    assert "took 50% of the run's 2 core(s) (limit 10%) - pid 7 burner 99%" in line


_BURN = (
    "import os, time\nos.sched_setaffinity(0, {0})\nend = time.time() + 30\n"
    "while time.time() < end: pass\n"
)


def _burner() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", _BURN], start_new_session=True)


def _end(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(timeout=10)


@pytest.mark.slow
def test_a_core_burnt_by_another_process_marks_the_run_its_own_does_not(monkeypatch) -> None:
    """A real monitored "run" on core 0: the worker (tracked) idles while a separate
    process burns core 0 -> contended, naming it; then the worker itself starts a child
    that burns core 0 -> its CPU is the run's own, found in the tree."""
    monkeypatch.delenv(hc.PROC_STAT_ENV)  # the real /proc/stat (conftest gives a still one)
    config = MonitorConfig(interval_s=0.05, gpu_indices=[], cpu_cores=[0], cores_used=1)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    burner = _burner()
    try:
        mon = Monitor(config)
        mon.start(root_pid=worker.pid)
        t0 = time.monotonic()
        time.sleep(1.2)
        rec = mon.stop()
        c = summarize(rec, [PhaseWindow("timed", t0 + 0.2, time.monotonic())])["host"]["contention"]
        assert c["contended"] and c["others_pct"] > 50, c
        named = [o["pid"] for o in c["top"]]  # the busiest others (the burner, on a quiet
        assert named and worker.pid not in named and os.getpid() not in named  # machine)
    finally:
        _end(burner)
        _end(worker)
    script = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {_BURN!r}])"
    worker = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        mon = Monitor(config)
        mon.start(root_pid=worker.pid)
        time.sleep(1.2)
        rec = mon.stop()
        first, last = rec.host_load[0], rec.host_load[-1]
        own_cores = (last.own_s - first.own_s) / (last.t - first.t)
        assert own_cores > 0.3, own_cores  # the child's burn is the run's, not others'
    finally:
        os.killpg(worker.pid, 9)
        worker.wait(timeout=10)


def test_require_quiet_waits_then_refuses_in_one_line(monkeypatch) -> None:
    busy = Load(1.0, 2, 2.0, 1.0, 50.0, 0.0, top=[{"pid": 7, "name": "burner", "cpu_pct": 99.0}])
    quiet = Load(1.0, 2, 2.0, 0.0, 0.0, 0.0)
    answers = [busy, busy, quiet]
    monkeypatch.setattr(hc, "check", lambda *a, **k: answers.pop(0))
    said: list[str] = []
    assert hc.wait_quiet(60, say=said.append) is quiet
    assert len(said) == 2 and "pid 7 burner 99%" in said[0]
    monkeypatch.setattr(hc, "check", lambda *a, **k: busy)
    with pytest.raises(UsageError, match=r"still busy after 3 s \(--require-quiet\)"):
        hc.wait_quiet(3)


def test_require_quiet_is_a_run_option_outside_the_configuration_key() -> None:
    from harness.cli.main import build_parser
    from harness.cli.run import spec_from_args

    def spec(*extra: str):
        args = build_parser()[0].parse_args(
            ["run", "--tool", "pytorch", "--model", "lenet", "--dataset", "mnist", *extra]
        )
        return spec_from_args(args)

    assert spec().require_quiet_s == 0
    assert spec("--require-quiet").require_quiet_s == 60
    assert spec("--require-quiet", "5").require_quiet_s == 5
    assert "require_quiet_s" in configkey.EXCLUDED_SPEC_FIELDS  # a wait, not the workload


def test_the_idle_baseline_warns_when_the_machine_is_busy(monkeypatch, capsys) -> None:
    from harness.spec import RunSpec

    class Plan:
        spec = RunSpec("pytorch", "lenet", "mnist", idle_baseline_s=0.2)
        gpus: list = []

    run = RunMonitor(Plan())
    busy = Load(0.2, 2, 2.0, 1.0, 50.0, 0.0).to_dict()
    monkeypatch.setattr(run.monitor, "idle_baseline", lambda s: {"others": busy})
    run.prepare()
    assert "warning: machine busy before measuring: other processes took 50%" in (
        capsys.readouterr().err
    )
    notes = RunMonitor._notes(
        [RepeatRecord(status="ok", resources=Resources(baseline={"others": busy}))]
    )
    assert any(n.startswith("machine busy before measuring") for n in notes)


def test_doctor_reports_the_cpu_load() -> None:
    from harness.cli import doctor

    busy = Load(1.0, 2, 2.0, 1.0, 50.0, 0.0, top=[{"pid": 7, "name": "burner", "cpu_pct": 99.0}])
    (check,) = doctor.host_checks(busy)
    assert check.status == "warn" and "pid 7 burner" in check.found
    assert "--require-quiet" in check.advice
    (check,) = doctor.host_checks(Load(1.0, 2, 2.0, 0.0, 0.0, 0.0))
    assert check.status == "ok" and check.found.startswith("quiet")
    assert doctor.host_checks(None)[0].status == "warn"


def test_a_real_check_reads_this_machine(monkeypatch) -> None:
    monkeypatch.delenv(hc.PROC_STAT_ENV)
    load = hc.check(0.05)
    assert load is not None and load.cores == len(os.sched_getaffinity(0))
    monkeypatch.setenv(hc.PROC_STAT_ENV, "/nonexistent")  # psutil then
    load = hc.check(0.05)
    assert load is not None and load.cores == len(os.sched_getaffinity(0))
