"""`python -m harness peak`: the measured CPU GEMM peak, its per-machine cache, its use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_cli import run_cli

from harness.machine import peak
from harness.store import flops


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        if name in os.environ:  # measure() may set them: restored after the test
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)
    return tmp_path / "cache" / "peak.json"


def test_measure_save_and_look_up(cache: Path) -> None:
    seen = []
    entry = peak.measure((32, 64), ("fp32", "fp64"), 0.01, on_result=lambda *a: seen.append(a))
    assert [(p, n) for p, n, _ in seen] == [("fp32", 32), ("fp32", 64), ("fp64", 32), ("fp64", 64)]
    assert entry["peaks"]["fp32"] == max(entry["rates"]["fp32"].values()) > 0
    assert entry["key"] == peak.machine_key(peak.machine())
    assert peak.lookup("fp32") == (None, peak.NO_PEAK)  # nothing cached yet
    assert peak.save(entry) == (cache, [])
    value, source = peak.lookup("fp32")
    assert value == entry["peaks"]["fp32"] and "python -m harness peak" in source
    value, source = peak.lookup("bf16")
    assert value is None and source == "no CPU peak for bf16 (measured: fp32, fp64)"
    # the cache holds one entry per machine; another machine's entry is not this one's
    other = dict(entry, key="otherhost | Other CPU | 64 cores | numpy", peaks={"fp32": 1.0})
    peak.save(other)
    assert set(json.loads(cache.read_text())["machines"]) == {entry["key"], other["key"]}
    assert peak.lookup("fp32")[0] == entry["peaks"]["fp32"]


def test_the_key_names_host_cpu_cores_and_blas(cache: Path, monkeypatch) -> None:
    info = peak.machine()
    assert set(info) == {"hostname", "cpu", "cores", "blas"}
    assert info["blas"].startswith("numpy ")
    peak.save({"key": peak.machine_key(info), "peaks": {"fp32": 5e10}, "measured_at": "now"})
    assert peak.lookup("fp32")[0] == 5e10
    monkeypatch.setattr(peak, "cores_available", lambda: info["cores"] + 1)  # another quota
    assert peak.lookup("fp32") == (None, peak.NO_PEAK)


def test_a_broken_cache_counts_as_empty(cache: Path) -> None:
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    assert peak.cached() is None
    peak.save({"key": peak.machine_key(peak.machine()), "peaks": {"fp32": 1e9}})
    assert peak.cached()["peaks"] == {"fp32": 1e9}


def test_cpu_runs_use_the_cached_peak(cache: Path) -> None:
    from sweep_helpers import make_result, with_spec

    result = make_result("pytorch", "lenet", "mnist", ips=(1000.0, 10.0))
    result = with_spec(result, cpu_devices=2)
    assert flops.for_result(result, peak.cpu_peak("pytorch", "fp32")).note == peak.NO_PEAK
    peak.save({"key": peak.machine_key(peak.machine()), "peaks": {"fp32": 1e11},
               "measured_at": "then"})  # fmt: skip
    out = flops.for_result(result, peak.cpu_peak("pytorch", "fp32"))
    assert out.peak_per_device == 5e10  # the CPU split in two devices
    assert out.mfu == pytest.approx(out.achieved_per_device / 5e10)
    assert "divided by 2 CPU devices" in out.peak_source
    # the peak measured through the run's own framework wins over NumPy's, and says so
    from harness.ops import peak as framework_peak

    peak.save({"key": framework_peak.framework_key("pytorch"), "peaks": {"fp32": 4e10},
               "measured_at": "now"})  # fmt: skip
    out = flops.for_result(result, peak.cpu_peak("pytorch", "fp32"))
    assert out.peak_per_device == 2e10
    assert out.peak_source.startswith("pytorch GEMM peak measured by")
    jax_run = make_result("jax", "lenet", "mnist", ips=(1000.0, 10.0))
    other = flops.for_result(jax_run, peak.cpu_peak("jax", "fp32"))
    assert other.peak_per_device == 1e11 and "`python -m harness peak` on" in other.peak_source


def test_peak_command_measures_caches_and_shows(tmp_path: Path) -> None:
    env = {"HARNESS_CACHE_DIR": str(tmp_path)}
    empty = run_cli("peak", "--show", **env)
    assert empty.returncode == 1 and "no peak measured" in empty.stderr
    out = run_cli("peak", "--sizes", "32,64", "--min-time", "0.01", **env)
    assert out.returncode == 0, out.stderr
    assert "fp32 n=64:" in out.stderr and out.stdout.startswith("peak fp32: ")
    entry = next(iter(json.loads((tmp_path / "peak.json").read_text())["machines"].values()))
    assert sorted(entry["rates"]["fp32"]) == ["32", "64"]
    shown = run_cli("peak", "--show", **env)
    assert shown.returncode == 0 and shown.stdout == out.stdout
    bad = run_cli("peak", "--sizes", "big", **env)
    assert bad.returncode == 2 and "--sizes takes integers" in bad.stderr


def test_help_does_not_import_numpy() -> None:
    code = (
        "import sys\n"
        "from harness.cli.main import main\n"
        "for argv in (['--help'], ['peak', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('numpy' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_a_lower_measurement_never_replaces_a_cached_peak_without_force(cache: Path) -> None:
    key = peak.machine_key(peak.machine())
    high = {"key": key, "peaks": {"fp32": 1.61e11}, "rates": {"fp32": {"4096": 1.61e11}},
            "measured_at": "monday", "provenance": {"fp32": {"measured_at": "monday",
            "sizes": [4096], "min_time_s": 1.0, "library": "numpy 2 (openblas)"}}}  # fmt: skip
    peak.save(high)
    low = {"key": key, "peaks": {"fp32": 8.4e10, "fp64": 4e10}, "measured_at": "tuesday",
           "rates": {"fp32": {"64": 8.4e10}, "fp64": {"64": 4e10}}}  # fmt: skip
    path, notes = peak.save(low)
    kept = peak.cached(path)
    assert kept["peaks"] == {"fp32": 1.61e11, "fp64": 4e10}  # the higher of each
    assert kept["provenance"]["fp32"]["sizes"] == [4096]  # with how it was measured
    assert kept["rates"]["fp32"] == {"4096": 1.61e11}
    assert len(notes) == 1 and "kept the cached 161.0 GFLOP/s (measured monday)" in notes[0]
    assert "--force" in notes[0]
    _, notes = peak.save(low, force=True)
    assert peak.cached()["peaks"]["fp32"] == 8.4e10 and notes == []
    entry = peak.measure((32,), ("fp32",), 0.01)
    assert entry["provenance"]["fp32"]["sizes"] == [32]
    assert entry["provenance"]["fp32"]["min_time_s"] == 0.01
    assert entry["provenance"]["fp32"]["library"].startswith("numpy ")


def test_the_theoretical_peak_is_cores_clock_lanes_fma_units() -> None:
    avx512 = ["sse2", "avx", "avx2", "fma", "avx512f"]
    value, how = peak.theoretical_peak(
        "fp32", cores=2, flags=avx512, mhz=[2000.0], max_hz=3.0e9, fma_units=1
    )
    assert value == 2 * 3.0e9 * 16 * 2 * 1  # 16 fp32 lanes, an FMA is 2 FLOPs, 1 unit
    assert "maximum clock" in how and "AVX-512" in how and "assumed" not in how
    value, how = peak.theoretical_peak(
        "fp64", cores=4, flags=["sse2", "avx", "avx2", "fma"], mhz=[2500.0, 2450.0]
    )
    assert value == 4 * 2.5e9 * 4 * 2 * 2  # AVX: 4 fp64 lanes; the current clock; 2 units
    assert "the maximum is not exposed" in how and "2 assumed" in how
    assert peak.theoretical_peak("fp32", flags=[], mhz=[1000.0])[0] is None
    assert peak.theoretical_peak("bf16")[0] is None


def test_a_measured_peak_above_the_theoretical_one_gets_a_note() -> None:
    assert peak.above_theory_note(5e10, 1e11) is None
    assert peak.above_theory_note(5e10, None) is None
    assert "the estimate is low" in (peak.above_theory_note(2e11, 1e11) or "")
