"""Smoke matrix: every (tool, model, dataset) cell of the study's table trains a few steps.

The study's table has nine (dataset, network) rows: LeNet on MNIST; AlexNet, ResNet-50,
GoogLeNet and VGG-16 on CIFAR-10 and on ImageNet. Each tool runs them all on the CPU
with a small batch, through the CLI, in its own tox env.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CELLS = [
    ("lenet", "mnist"),
    *[
        (m, d)
        for d in ("cifar10", "imagenet")
        for m in ("alexnet", "resnet50", "googlenet", "vgg16")
    ],
]
TOOLS = ("pytorch", "tensorflow", "jax", "mxnet")


@pytest.mark.parametrize(
    ("tool", "model", "dataset"),
    [
        pytest.param(
            tool, model, dataset, marks=getattr(pytest.mark, tool), id=f"{tool}-{model}-{dataset}"
        )
        for tool in TOOLS
        for model, dataset in CELLS
    ],
)
def test_cell_trains_and_returns_a_result(
    tool: str, model: str, dataset: str, tmp_path: Path
) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "--tool",
            tool,
            "--model",
            model,
            "--dataset",
            dataset,
            "--synthetic",
            "--batch-size",
            "2",
            "--warmup-steps",
            "1",
            "--steps",
            "2",
            "--repeats",
            "1",
            "--idle-baseline",
            "0",
            "--output-dir",
            str(tmp_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    record = result["repeats"][0]
    assert record["status"] == "ok"
    assert record["timed"]["steps"] == 2 and record["timed"]["images"] == 4
    assert record["timed"]["images_per_sec"] > 0
    assert record["loss"]["last"] == record["loss"]["last"]  # not NaN
    assert result["synthetic"] is True
