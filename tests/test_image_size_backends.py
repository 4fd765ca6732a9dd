"""An upscaled run in every framework: MNIST-format files fed at 3x224x224 to the
ImageNet AlexNet (--image-size 224), a few steps on the CPU, through ``python -m harness``.

Each test carries its framework's marker and runs in that framework's tox env.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from backend_checks import result_of, run_harness
from dataformats import write_learnable_mnist


def check_upscaled_run(tool: str, tmp_path: Path) -> None:
    data = write_learnable_mnist(tmp_path / "data")
    result = result_of(
        run_harness(
            tool, "--model", "alexnet", "--dataset", "mnist", "--image-size", "224", "--real",
            "--data-dir", str(data), "--batch-size", "2", "--warmup-steps", "1", "--steps", "2",
            "--repeats", "1", "--output-dir", str(tmp_path / "logs"),
        )
    )  # fmt: skip
    record = result["repeats"][0]
    assert result["summary"]["status"] == "ok" and record["status"] == "ok"
    assert result["spec"]["image_size"] == 224 and result["config"]["image_size"] == 224
    assert record["data"]["synthetic"] is False
    assert "upscaled to 3x224x224" in record["data"]["description"]
    assert record["timed"]["images"] == 2 * 2 and record["data_wait_s"] is not None
    assert math.isfinite(record["loss"]["last"])
    # the ImageNet-shaped AlexNet (about 0.7 GMAC per image), not the 28x28 one
    assert result["summary"]["flops"]["forward_per_image"] > 1e9


@pytest.mark.pytorch
def test_pytorch_trains_alexnet_on_upscaled_mnist(tmp_path: Path) -> None:
    check_upscaled_run("pytorch", tmp_path)


@pytest.mark.tensorflow
def test_tensorflow_trains_alexnet_on_upscaled_mnist(tmp_path: Path) -> None:
    check_upscaled_run("tensorflow", tmp_path)


@pytest.mark.jax
def test_jax_trains_alexnet_on_upscaled_mnist(tmp_path: Path) -> None:
    check_upscaled_run("jax", tmp_path)


@pytest.mark.mxnet
def test_mxnet_trains_alexnet_on_upscaled_mnist(tmp_path: Path) -> None:
    check_upscaled_run("mxnet", tmp_path)
