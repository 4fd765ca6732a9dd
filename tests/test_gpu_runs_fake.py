"""GPU runs end to end on a machine of scripted fake GPUs (no real GPU exists here).

The orchestrator discovers the fake GPUs through NVML (HARNESS_NVML_MODULE), selects
them, hides the others from the worker (CUDA_VISIBLE_DEVICES) and monitors exactly the
selected ones: summed power and energy, memory per device.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from fake_cli import harness_env


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = harness_env(HARNESS_NVML_MODULE="fake_gpu_machine")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "--tool",
            "fake",
            "--model",
            "lenet",
            "--dataset",
            "mnist",
            "--synthetic",
            "--warmup-steps",
            "2",
            "--steps",
            "20",
            "--batch-size",
            "8",
            "-o",
            "step_s=0.03",
            "--idle-baseline",
            "0.3",
            "--output-dir",
            str(tmp_path),
            "--json",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_two_a100s_selected_by_name_are_the_ones_monitored(tmp_path: Path) -> None:
    out = run(tmp_path, "--num-gpus", "2", "--gpu", "A100", "--repeats", "1")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    record = result["repeats"][0]
    assert [g["index"] for g in result["environment"]["gpus"]] == [0, 2]
    assert result["gpu_name"] == "NVIDIA A100-SXM4-40GB"
    assert result["hardware"] == "2 GPUs"
    assert result["global_batch"] == 16
    assert record["framework"]["visible_devices"] == "0,2"
    assert record["framework"]["devices"] == ["fake-gpu:0", "fake-gpu:2"]
    gpu = record["resources"]["gpu"]
    assert gpu["available"] and gpu["indices"] == [0, 2]
    timed = gpu["phases"]["timed"]
    assert timed["power_w"]["mean"] == pytest.approx(450.0)  # 200 W + 250 W, not the T4
    assert [d["index"] for d in timed["per_device"]] == [0, 2]
    assert [d["memory_used_mib"]["mean"] for d in timed["per_device"]] == [4096.0, 8192.0]
    assert all(d["process_memory_mib"]["max"] == 512.0 for d in timed["per_device"])
    assert timed["energy_source"] == "nvml_counter"
    # energy over the timed phase is about 450 W x its duration (the counters are exact)
    assert timed["energy_j"] == pytest.approx(450.0 * timed["duration_s"], rel=0.05)
    merged = record["resources"]["timed"]
    assert merged["joules_per_image"] == pytest.approx(merged["energy_j"] / (20 * 16))
    assert result["summary"]["gpu_power_w"]["mean"] == pytest.approx(450.0)
    baseline = record["resources"]["baseline"]
    assert baseline["gpu_power_w_total"] == pytest.approx(450.0)
    with (Path(result["repeats"][0]["command"][-1]).parent / "power.csv").open() as handle:
        header = next(csv.reader(handle))
    assert "gpu0_power_w" in header and "gpu2_power_w" in header
    assert "gpu1_power_w" not in header


def test_a_gpu_without_energy_counter_integrates_power(tmp_path: Path) -> None:
    out = run(tmp_path, "--num-gpus", "1", "--gpu", "1", "--repeats", "1")
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout.strip().splitlines()[-1])["repeats"][0]
    timed = record["resources"]["gpu"]["phases"]["timed"]
    assert timed["energy_source"] == "integrated_power"
    assert timed["power_w"]["mean"] == pytest.approx(70.0)
    assert record["framework"]["visible_devices"] == "1"


def test_more_gpus_than_the_machine_has_is_refused(tmp_path: Path) -> None:
    out = run(tmp_path, "--num-gpus", "4")
    assert out.returncode == 2
    assert "asks for 4 GPU(s) but this machine has 3" in " ".join(out.stderr.split())
    out = run(tmp_path, "--num-gpus", "2", "--gpu", "T4")
    assert out.returncode == 2
    assert "matches 1 GPU(s)" in out.stderr
