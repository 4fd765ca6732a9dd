"""What every backend's tests check the same way: the catalogue's (model, input) pairs,
runs through ``python -m harness``, real-format training and replicas in sync.

Imported by the framework envs' tests; it imports no framework itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from dataformats import write_learnable_mnist

from harness import models

# Every (model, input shape, classes) the catalogue builds.
PAIRS = [
    ("lenet", (1, 28, 28), 10),
    *[
        (model, shape, classes)
        for model in ("alexnet", "resnet50", "googlenet", "vgg16")
        for shape, classes in (((1, 28, 28), 10), ((3, 32, 32), 10), ((3, 224, 224), 1000))
    ],
]


def nhwc(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1))


def run_harness(tool: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``python -m harness --tool TOOL --idle-baseline 0 --json ARGS``."""
    command = [sys.executable, "-m", "harness", "--tool", tool, "--idle-baseline", "0", "--json"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout)


def result_of(out: subprocess.CompletedProcess[str]) -> dict:
    """The run's result JSON (the last stdout line); the run must have exited 0."""
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def lenet_run(tool: str, output: Path, *args: str) -> dict:
    """A LeNet/MNIST run of one repeat unless ``args`` say otherwise."""
    common = ("--model", "lenet", "--dataset", "mnist", "--repeats", "1")
    return result_of(run_harness(tool, *common, "--output-dir", str(output), *args))


def check_synthetic_run(tool: str, tmp_path: Path, *extra: str) -> dict:
    """Two repeats on synthetic data: ok, labelled synthetic, each in its own process."""
    result = lenet_run(
        tool, tmp_path, "--synthetic", "--warmup-steps", "2", "--steps", "5", "--repeats", "2",
        *extra,
    )  # fmt: skip
    assert result["summary"]["status"] == "ok"
    assert result["synthetic"] is True
    assert [r["timed"]["images"] for r in result["repeats"]] == [5 * 64, 5 * 64]
    assert all(r["timed"]["images_per_sec"] > 0 for r in result["repeats"])
    assert result["repeats"][0]["framework"]["pid"] != result["repeats"][1]["framework"]["pid"]
    return result


def check_real_data_training(
    tool: str, tmp_path: Path, epochs: int, batch: int, min_accuracy: float, dataset: str = "mnist"
) -> dict:
    """Trains whole epochs on learnable real-format files (256 train, 64 test images) and
    checks the epochs, the validation after each and an accuracy far above chance (0.1)."""
    data = write_learnable_mnist(tmp_path / "data", dataset)
    args = ("--model", "lenet", "--dataset", dataset, "--real", "--data-dir", str(data))
    result = result_of(
        run_harness(
            tool, *args, "--epochs", str(epochs), "--batch-size", str(batch),
            "--warmup-steps", "1", "--repeats", "1", "--output-dir", str(tmp_path / "logs"),
        )
    )  # fmt: skip
    record = result["repeats"][0]
    assert result["synthetic"] is False and record["data"]["synthetic"] is False
    assert record["plan"]["steps_per_epoch"] == 256 // batch
    assert record["timed"]["steps"] == epochs * (256 // batch)
    assert [v["epoch"] for v in record["validation"]] == list(range(1, epochs + 1))
    last = record["validation"][-1]
    assert last["images"] == 64 and last["synthetic"] is False
    assert last["accuracy"] > min_accuracy
    assert record["execution_time_s"] > record["timed"]["seconds"]
    return result


def two_device_run(tool: str, tmp_path: Path, devices: int = 2, batch: int = 8) -> dict:
    """LeNet on ``devices`` CPU devices, 4 timed steps, every replica's weights dumped."""
    return lenet_run(
        tool, tmp_path / f"logs{devices}", "--synthetic", "--cpu-devices", str(devices),
        "--batch-size", str(batch), "--warmup-steps", "2", "--steps", "4",
        "--dump-weights", str(tmp_path / f"weights{devices}"),
    )  # fmt: skip


def check_replicas_in_sync(result: dict, folder: Path, files: list[str]) -> list[dict]:
    """The global batch and image counts of a 2 x 8 run are right, the dumped replicas
    (named ``files``) are identical, and training moved every weight."""
    record = result["repeats"][0]
    assert result["global_batch"] == record["global_batch"] == 16
    assert record["timed"]["images"] == 4 * 16
    assert sorted(f.name for f in folder.glob("*.npz")) == files
    replicas = [dict(np.load(folder / name)) for name in files]
    initial = models.init_weights(models.build("lenet", (1, 28, 28), 10), 0)
    first = replicas[0]
    for key, value in initial.items():
        for other in replicas[1:]:
            np.testing.assert_allclose(other[key], first[key], rtol=1e-6, atol=1e-7, err_msg=key)
        assert not np.allclose(first[key], value), f"{key} did not train"
    return replicas
