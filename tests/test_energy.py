"""Energy with an uncertainty: idle power, total and dynamic energy, J/image, the GPU energy
counter against the integral of sampled power, energy per GPU, and their 95% intervals
over the repeats (harness.monitor.summary, harness.monitor.resources, harness.cli.summary).

The GPUs are tests/fakes/fake_pynvml.py on a manual clock, the CPU package a powercap
tree in tmp_path, so every expected figure is exact.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
from nvml_helpers import Clock, load_fake_nvml

from harness.cli.summary import metric_lines
from harness.monitor import Monitor, MonitorConfig, PhaseWindow, summarize
from harness.monitor.resources import RunMonitor
from harness.monitor.summary import ENERGY_DISAGREEMENT_THRESHOLD, disagreement
from harness.store import metrics, stats
from harness.store.schema import RepeatRecord, Resources, ResourceTimed, RunResult, RunSummary

nv = load_fake_nvml()


def _monitor(clock: Clock, monkeypatch: pytest.MonkeyPatch, **config) -> Monitor:
    def sleep(seconds: float) -> None:
        clock.t += seconds

    monkeypatch.setattr("harness.monitor.monitor.time.sleep", sleep)
    return Monitor(MonitorConfig(interval_s=1.0, clock=clock, **config))


def _sample_until(mon: Monitor, clock: Clock, end: float) -> None:
    while clock.t <= end + 1e-9:
        mon.sample_once()
        clock.t += 1.0


def _merge(summary: dict, images: int) -> ResourceTimed:
    return RunMonitor._merge_timed(summary, ["timed"], images)


def test_two_gpus_idle_total_dynamic_per_device_and_the_disagreement_flag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    # idle 40 W and 60 W until t=103; then 140 W, and 100 W with a 0.4 s burst to 400 W
    # between two samples: GPU 1's counter has the burst's 120 J, its power samples miss it
    nv.configure(
        [
            nv.FakeDevice(power_w=nv.PowerSteps([(0.0, 40.0), (103.0, 140.0)])),
            nv.FakeDevice(
                power_w=nv.PowerSteps([(0.0, 60.0), (103.0, 100.0), (106.2, 400.0), (106.6, 100.0)])
            ),
        ],
        clock=clock,
    )
    mon = _monitor(clock, monkeypatch, gpu_indices=[0, 1], nvml_module=nv)
    base = mon.idle_baseline(seconds=2.0)  # samples at 100, 101, 102
    assert base["duration_s"] == 2.0 and base["gpu_power_w"] == {"0": 40.0, "1": 60.0}
    clock.t = 103.0
    _sample_until(mon, clock, 113.0)
    s = summarize(mon.stop(), [PhaseWindow("timed", 103.0, 113.0)], images={"timed": 100})
    timed = s["gpu"]["phases"]["timed"]
    d0, d1 = timed["per_device"]
    assert (d0["energy_counter_j"], d0["energy_integral_j"]) == (1400.0, 1400.0)
    assert d0["energy_disagreement"] == 0.0 and not d0["energy_disagreement_flagged"]
    assert (d0["idle_power_w"], d0["energy_dynamic_j"]) == (40.0, pytest.approx(1000.0))
    assert d1["energy_counter_j"] == pytest.approx(1120.0)
    assert d1["energy_integral_j"] == pytest.approx(1000.0)
    assert d1["energy_j"] == d1["energy_counter_j"]  # the counter is the figure used
    assert d1["energy_disagreement"] == pytest.approx(120.0 / 1120.0, rel=1e-4)
    assert d1["energy_disagreement_flagged"] is True
    assert d1["energy_dynamic_j"] == pytest.approx(1120.0 - 60.0 * 10)
    assert timed["energy_j"] == pytest.approx(2520.0)
    assert timed["energy_dynamic_j"] == pytest.approx(1520.0) == timed["energy_above_baseline_j"]
    assert timed["energy_disagreement"] == d1["energy_disagreement"]  # the worst GPU's
    assert timed["energy_disagreement_flagged"] is True
    top = s["phases"]["timed"]
    assert top["idle_power_w"] == 100.0
    assert top["joules_per_image_dynamic"] == pytest.approx(15.2)

    merged = _merge(s, 100)
    assert merged.idle_power_w == 100.0 and merged.idle_baseline_s == 2.0
    assert merged.energy_j == pytest.approx(2520.0)
    assert merged.energy_dynamic_j == pytest.approx(1520.0)
    assert merged.joules_per_image == pytest.approx(25.2)
    assert merged.joules_per_image_dynamic == pytest.approx(15.2)
    assert merged.energy_counter_j == pytest.approx(2520.0)
    assert merged.energy_integral_j == pytest.approx(2400.0)
    assert merged.energy_disagreement_flagged and merged.energy_reason is None
    assert merged.energy_per_device_j == pytest.approx({"0": 1400.0, "1": 1120.0})
    assert merged.energy_dynamic_per_device_j == pytest.approx({"0": 1000.0, "1": 520.0})


def test_a_gpu_without_counter_has_no_disagreement_and_no_baseline_no_dynamic() -> None:
    clock = Clock()
    nv.configure([nv.FakeDevice(power_w=80.0, energy_counter=False)], clock=clock)
    mon = Monitor(MonitorConfig(interval_s=1.0, gpu_indices=[0], nvml_module=nv, clock=clock))
    _sample_until(mon, clock, 104.0)
    s = summarize(mon.stop(), [PhaseWindow("timed", 100.0, 104.0)], images={"timed": 8})
    merged = _merge(s, 8)
    assert merged.energy_j == pytest.approx(320.0) and merged.energy_counter_j is None
    assert merged.energy_disagreement is None and not merged.energy_disagreement_flagged
    assert merged.energy_dynamic_j is None and merged.idle_power_w is None
    assert merged.energy_per_device_j is None  # one GPU: its energy is the total
    assert disagreement(100.0, 94.0) == pytest.approx(0.06)
    assert ENERGY_DISAGREEMENT_THRESHOLD == 0.05
    assert disagreement(None, 94.0) is None and disagreement(0.0, 1.0) is None


def _powercap(root: Path, top: int) -> Path:
    d = root / "intel-rapl:0"
    d.mkdir(parents=True)
    (d / "name").write_text("package-0\n")
    (d / "max_energy_range_uj").write_text(f"{top}\n")
    return d / "energy_uj"


def test_rapl_idle_and_dynamic_energy_across_a_counter_wrap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    top = 50_000_000  # the counter wraps at 50 J, as /sys/class/powercap says
    counter = _powercap(tmp_path, top)
    clock = Clock(0.0)

    def joules(t: float) -> float:  # 10 W idle until t=3, then 30 W; from 45 J
        return 45.0 + 10.0 * min(t, 3.0) + 30.0 * max(0.0, t - 3.0)

    def write() -> None:
        counter.write_text(f"{round(joules(clock.t) * 1e6) % top}\n")

    write()
    mon = _monitor(clock, monkeypatch, gpu_indices=[], rapl_root=tmp_path)
    monkeypatch.setattr(
        "harness.monitor.monitor.time.sleep", lambda s: (setattr(clock, "t", clock.t + s), write())
    )
    base = mon.idle_baseline(seconds=2.0)  # 0, 1, 2 s; the counter wraps between 0 and 1
    assert base["cpu_power_w"] == pytest.approx(10.0)
    clock.t = 3.0
    while clock.t <= 7.0:
        write()
        mon.sample_once()
        clock.t += 1.0
    s = summarize(mon.stop(), [PhaseWindow("timed", 3.0, 7.0)], images={"timed": 40})
    host = s["host"]["phases"]["timed"]
    assert host["cpu_energy_j"] == pytest.approx(120.0)
    assert host["cpu_energy_dynamic_j"] == pytest.approx(80.0)
    merged = _merge(s, 40)
    assert merged.energy_from == "cpu" and merged.idle_power_w == pytest.approx(10.0)
    assert merged.joules_per_image == pytest.approx(3.0)
    assert merged.joules_per_image_dynamic == pytest.approx(2.0)
    assert merged.energy_counter_j is None and merged.energy_per_device_j is None


def test_no_power_source_says_why() -> None:
    summary = {
        "gpu": {"available": False, "reason": "NVIDIA driver not loaded", "phases": {}},
        "host": {"cpu_energy_reason": "RAPL not present (/sys/class/powercap missing)"},
        "baseline": None,
    }
    merged = RunMonitor._merge_timed(summary, ["timed"], 10)
    assert merged.energy_j is None and merged.energy_dynamic_j is None
    assert merged.energy_reason == (
        "GPU: NVIDIA driver not loaded; CPU: RAPL not present (/sys/class/powercap missing)"
    )


def _repeat(k: int, dynamic_jpi: float) -> RepeatRecord:
    timed = ResourceTimed(
        energy_j=1000.0 + k,
        energy_from="gpu",
        joules_per_image=2.0 + dynamic_jpi,
        idle_power_w=100.0,
        idle_baseline_s=2.0,
        energy_dynamic_j=dynamic_jpi * 500,
        joules_per_image_dynamic=dynamic_jpi,
        energy_counter_j=1000.0 + k,
        energy_integral_j=(1000.0 + k) * (0.9 if k == 2 else 0.99),
        energy_disagreement=0.1 if k == 2 else 0.01,
        energy_disagreement_flagged=k == 2,
        energy_per_device_j={"0": 400.0, "1": 600.0 + k},
    )
    return RepeatRecord(status="ok", repeat=k, resources=Resources(timed=timed))


def test_repeats_give_intervals_a_single_idle_figure_notes_and_summary_lines() -> None:
    plan = SimpleNamespace(
        spec=SimpleNamespace(idle_baseline_s=2.0, monitor_interval_s=0.1, threads=None, devices=1),
        gpus=[],
    )
    values = [0.5, 0.6, 0.7]
    repeats = [_repeat(k, v) for k, v in enumerate(values, 1)]
    out = RunMonitor(plan).aggregate(repeats)
    assert out["joules_per_image_dynamic"].ci95 == pytest.approx(stats.ci95_halfwidth(values))
    assert out["energy_dynamic_j"].n == 3
    assert out["idle_power_w"].n == 1 and out["idle_power_w"].mean == 100.0  # one baseline
    assert out["energy_disagreement"].max == pytest.approx(0.1)
    flagged = [n for n in out["resource_notes"] if "differ by" in n]
    assert flagged == ["repeat 2: GPU energy counter 1,002.0 J and power integral 901.8 J "
                       "differ by 10.0% (> 5%)"]  # fmt: skip

    summary = dataclasses.replace(RunSummary(status="ok", repeats=3, repeats_ok=3), **out)
    result = RunResult(repeats=repeats, summary=summary)
    lines = metric_lines(result)
    ci = stats.ci95_halfwidth(values)
    assert f"dynamic energy per image: 0.6000 J ± {ci:.4f} (95% CI, 3 repeats)" in lines
    assert "idle power (GPUs): 100.0 W, sampled 2.0 s before the first repeat" in lines
    assert "energy per GPU (timed): GPU 0 400.0 J, GPU 1 602.0 J" in lines
    assert any("counter vs power integral: 4.0 %" in line for line in lines)
    # stored and read back: the new fields survive, and a record without them still reads
    again = RunResult.from_json(result.to_json())
    assert again.repeats[0].resources.timed == repeats[0].resources.timed
    assert again.summary.joules_per_image_dynamic == summary.joules_per_image_dynamic
    old = RepeatRecord.from_json({"status": "ok", "resources": {"timed": {"energy_j": 5.0}}})
    assert old.resources.timed.energy_dynamic_j is None
    assert metrics.get("joules_per_image_dynamic").stat(result).n == 3


def test_compare_has_energy_per_image_only_where_measured_and_the_report_flags_the_gap() -> None:
    from sweep_helpers import figure, make_result

    from harness.report.data import build
    from harness.results.compare import compare

    a = make_result("pytorch", "lenet", "mnist", jpi=(0.50, 0.01))
    b = make_result("pytorch", "lenet", "mnist", jpi=(0.40, 0.01))
    for r, dynamic in ((a, 0.30), (b, 0.20)):
        r.summary.joules_per_image_dynamic = figure(dynamic, 0.01)
    (row,) = compare([a], [b])
    figures = {f.name: f for f in row.figures}
    assert list(figures) == ["J/image", "dyn J/image"]
    assert figures["dyn J/image"].ratio == pytest.approx(2 / 3)
    assert figures["dyn J/image"].verdict == "faster"  # lower energy is better
    plain = [make_result("pytorch", "lenet", "mnist") for _ in range(2)]
    assert compare(plain[:1], plain[1:])[0].figures == []  # no energy: no column

    assert not any("differ by more than" in n for n in build([a]).notes)
    a.summary.energy_disagreement = figure(0.08)
    (note,) = [n for n in build([a]).notes if "differ by more than" in n]
    assert a.run_id in note and "5%" in note
    assert "dynamic energy per image (J)" in [m.title for m in build([a]).metrics]
