"""summarize() and the CSV writer on hand-made samples (no NVML, no threads)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from harness.monitor import (
    GpuSample,
    PhaseWindow,
    Sample,
    baseline_from,
    csv_columns,
    decode_throttle,
    is_throttled,
    summarize,
    write_csv,
)
from harness.monitor.summary import _counter_delta, _integrate


def gpu_rows(
    powers: list[float], energy_mj: list[float] | None = None, t0: float = 0.0
) -> list[Sample]:
    rows = []
    for k, p in enumerate(powers):
        e = None if energy_mj is None else energy_mj[k]
        rows.append(
            Sample(
                t=t0 + k,
                gpus=(GpuSample(power_w=p, energy_mj=e, mem_used_mib=100.0),),
                host_cpu_pct=10.0,
                tree_cpu_pct=50.0,
                tree_rss_mib=300.0,
            )
        )
    return rows


def test_integrate_and_counter_delta_interpolate_at_the_edges() -> None:
    series = ([0.0, 1.0, 2.0], [0.0, 10.0, 10.0])
    assert _integrate(series, 0.0, 2.0) == pytest.approx(5.0 + 10.0)
    assert _integrate(series, 0.5, 1.5) == pytest.approx(0.5 * (5 + 10) / 2 + 0.5 * 10)
    assert _integrate(series, -5.0, 0.5) == pytest.approx(0.5 * 5 / 2)  # clipped to data
    assert _integrate(series, 3.0, 4.0) is None
    assert _integrate(([1.0], [5.0]), 0.0, 2.0) is None
    counter = ([0.0, 1.0, 2.0], [100.0, 200.0, 400.0])
    assert _counter_delta(counter, 0.5, 1.5) == pytest.approx(300.0 - 150.0)
    assert _counter_delta(([0.0, 1.0], [500.0, 100.0]), 0.0, 1.0) is None  # went back


def test_window_without_samples_is_empty_not_a_crash() -> None:
    rows = gpu_rows([100.0] * 5, [0.0, 1e5, 2e5, 3e5, 4e5])
    s = summarize(
        rows,
        [PhaseWindow("later", 50.0, 60.0), PhaseWindow("between", 1.2, 1.8)],
        images={"later": 10, "between": 10},
    )
    later = s["gpu"]["phases"]["later"]
    assert later["samples"] == 0 and later["note"] == "no samples in this window"
    assert later["power_w"] is None and later["energy_j"] is None
    assert later["joules_per_image"] is None and later["covered_s"] == 0
    assert s["host"]["phases"]["later"]["cpu_percent"] is None
    # a window shorter than the interval still gets energy from the bracketing readings
    between = s["gpu"]["phases"]["between"]
    assert between["samples"] == 0 and between["energy_j"] == pytest.approx(60.0)
    json.dumps(s, allow_nan=False)


def test_no_samples_at_all() -> None:
    s = summarize([], [PhaseWindow("run", 0.0, 1.0)], images={"run": 5})
    assert s["gpu"]["available"] is False and s["gpu"]["reason"]
    assert s["host"]["phases"]["run"]["samples"] == 0
    assert s["phases"]["run"]["joules_per_image"] is None
    json.dumps(s, allow_nan=False)


def test_counter_reset_falls_back_to_integrated_power() -> None:
    rows = gpu_rows([100.0] * 3, [5e5, 6e5, 1.0])
    dev = summarize(rows, [PhaseWindow("run", 0.0, 2.0)])["gpu"]["phases"]["run"]["per_device"][0]
    assert dev["energy_source"] == "integrated_power"
    assert dev["energy_j"] == pytest.approx(200.0)


def test_host_stats_and_json() -> None:
    rows = gpu_rows([100.0, 300.0])
    rows[1].tree_rss_mib = 900.0
    rows[1].tree_cpu_pct = 150.0
    s = summarize(rows, [PhaseWindow("run", 0.0, 1.0)])
    host = s["host"]["phases"]["run"]
    assert host["rss_mib"] == {"mean": 600.0, "max": 900.0}
    assert host["cpu_percent"] == {"mean": 100.0, "max": 150.0}
    assert s["gpu"]["phases"]["run"]["power_w"] == {"mean": 200.0, "max": 300.0}
    json.dumps(s, allow_nan=False)


def test_baseline_from_samples() -> None:
    base = baseline_from(gpu_rows([30.0, 50.0, 40.0]))
    assert base["samples"] == 3 and base["duration_s"] == 2.0
    assert base["gpu_power_w_total"] == pytest.approx(40.0)
    assert base["gpu_power_w"] == {"0": pytest.approx(40.0)}
    assert base["host_cpu_percent"] == 10.0
    assert base["cpu_power_w"] is None and base["cpu_power_reason"]
    assert baseline_from([]) == {"duration_s": 0.0, "samples": 0}


def test_decode_throttle() -> None:
    assert decode_throttle(0) == [] and decode_throttle(None) == []
    assert decode_throttle(0x1 | 0x20) == ["gpu_idle", "sw_thermal_slowdown"]
    assert decode_throttle(0x8000) == ["unknown_0x8000"]
    assert not is_throttled(["gpu_idle", "sync_boost"])
    assert is_throttled(["hw_power_brake_slowdown"])


def test_csv_of_plain_samples(tmp_path: Path) -> None:
    rows = gpu_rows([100.0, 200.0], [1e9, 1e9 + 150_000], t0=50.0)
    rows[1].gpus[0].throttle = 0x4
    rows[1].gpus[0].power_w = None
    path = tmp_path / "p.csv"
    write_csv(rows, path)
    with path.open(newline="") as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == csv_columns([0])
    assert got[0]["t_rel"] == "0.0000" and got[1]["t_rel"] == "1.0000"
    assert got[1]["gpu0_energy_mj"] == "150000.0"
    assert got[1]["gpu0_power_w"] == ""  # unavailable -> empty cell
    assert got[1]["gpu0_throttle"] == "sw_power_cap"
    assert got[0]["gpu0_util_pct"] == "" and got[0]["cpu_energy_uj"] == ""
    assert got[0]["phase"] == ""
