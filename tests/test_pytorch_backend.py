"""The PyTorch backend: parity with the catalogue, training, data parallelism, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dataformats import write_learnable_mnist

from harness import models

pytestmark = pytest.mark.pytorch

PAIRS = [
    ("lenet", (1, 28, 28), 10),
    *[
        (model, shape, classes)
        for model in ("alexnet", "resnet50", "googlenet", "vgg16")
        for shape, classes in (((1, 28, 28), 10), ((3, 32, 32), 10), ((3, 224, 224), 1000))
    ],
]


@pytest.mark.parametrize(("model", "shape", "classes"), PAIRS)
def test_parameter_count_equals_the_catalogue(model: str, shape: tuple, classes: int) -> None:
    from harness.backends.pytorch.network import build_module

    network = models.build(model, shape, classes)
    module = build_module(network)
    assert sum(p.numel() for p in module.parameters()) == models.param_count(network)


def test_canonical_state_round_trips_exactly() -> None:
    from harness.backends.pytorch.network import (
        build_module,
        canonical_state,
        load_canonical_state,
    )

    network = models.build("googlenet", (3, 32, 32), 10)
    weights = models.init_weights(network, seed=3)
    module = build_module(network)
    load_canonical_state(module, weights)
    exported = canonical_state(module)
    assert exported.keys() == weights.keys()
    for key, value in weights.items():
        np.testing.assert_array_equal(exported[key], value)
    with pytest.raises(ValueError, match="missing"):
        load_canonical_state(module, {k: v for k, v in weights.items() if "fc" not in k})


def _trainer(model: str, shape: tuple, classes: int, **spec_fields):
    from harness import datasets
    from harness.backend import WorkerContext
    from harness.backends.pytorch.trainer import TorchTrainer
    from harness.spec import RunSpec

    spec = RunSpec(
        tool="pytorch",
        model=model,
        dataset="mnist",
        batch_size=8,
        learning_rate=0.01,
        **spec_fields,
    )
    network = models.build(model, shape, classes)
    source = datasets.open_source("mnist", "train", synthetic=True)
    ctx = WorkerContext(spec, network, source, None, lambda: models.init_weights(network, 0))
    return TorchTrainer(ctx), network


def test_training_steps_lower_the_loss_on_a_fixed_batch() -> None:
    trainer, _ = _trainer("lenet", (1, 28, 28), 10)
    rng = np.random.default_rng(0)
    batch = trainer.device_batch(
        rng.standard_normal((8, 1, 28, 28)).astype(np.float32),
        rng.integers(0, 10, 8).astype(np.int32),
    )
    first = trainer.loss_value(trainer.train_step(batch))
    for _ in range(20):
        token = trainer.train_step(batch)
    assert trainer.loss_value(token) < 0.5 * first
    loss_sum, correct = trainer.evaluate(batch)
    assert correct == 8 and loss_sum < 8 * first


def test_bf16_autocast_trains() -> None:
    trainer, _ = _trainer("lenet", (1, 28, 28), 10, precision="bf16")
    batch = trainer.device_batch(np.ones((8, 1, 28, 28), np.float32), np.arange(8, dtype=np.int32))
    assert np.isfinite(trainer.loss_value(trainer.train_step(batch)))


def test_out_of_memory_is_recognised() -> None:
    import torch

    from harness.backends.pytorch.trainer import TorchTrainer

    assert TorchTrainer.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried"))
    assert TorchTrainer.is_out_of_memory(MemoryError())
    assert not TorchTrainer.is_out_of_memory(RuntimeError("shape mismatch"))


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "--tool",
            "pytorch",
            "--idle-baseline",
            "0",
            "--json",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def result_of(out: subprocess.CompletedProcess[str]) -> dict:
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cli_run_on_synthetic_data(tmp_path: Path) -> None:
    result = result_of(
        cli(
            "--model",
            "lenet",
            "--dataset",
            "mnist",
            "--synthetic",
            "--warmup-steps",
            "2",
            "--steps",
            "5",
            "--repeats",
            "2",
            "--output-dir",
            str(tmp_path),
        )
    )
    assert result["summary"]["status"] == "ok"
    assert result["framework"]["framework"] == "torch"
    assert result["synthetic"] is True
    assert all(r["timed"]["images_per_sec"] > 0 for r in result["repeats"])
    assert result["repeats"][0]["framework"]["pid"] != result["repeats"][1]["framework"]["pid"]


def test_cli_trains_real_format_data_to_high_accuracy(tmp_path: Path) -> None:
    data = write_learnable_mnist(tmp_path / "data", "fashion-mnist")
    result = result_of(
        cli(
            "--model",
            "lenet",
            "--dataset",
            "fashion-mnist",
            "--real",
            "--data-dir",
            str(data),
            "--epochs",
            "3",
            "--batch-size",
            "16",
            "--warmup-steps",
            "1",
            "--repeats",
            "1",
            "--output-dir",
            str(tmp_path / "logs"),
        )
    )
    record = result["repeats"][0]
    assert result["synthetic"] is False
    assert record["plan"]["steps_per_epoch"] == 256 // 16
    assert record["timed"]["steps"] == 3 * 16
    assert [v["epoch"] for v in record["validation"]] == [1, 2, 3]
    assert record["validation"][-1]["images"] == 64
    assert record["validation"][-1]["accuracy"] > 0.8  # chance is 0.1
    assert record["execution_time_s"] > record["timed"]["seconds"]


def test_two_cpu_devices_train_with_ddp_in_sync(tmp_path: Path) -> None:
    weights = tmp_path / "weights"
    result = result_of(
        cli(
            "--model",
            "lenet",
            "--dataset",
            "mnist",
            "--synthetic",
            "--cpu-devices",
            "2",
            "--batch-size",
            "8",
            "--warmup-steps",
            "2",
            "--steps",
            "4",
            "--repeats",
            "1",
            "--dump-weights",
            str(weights),
            "--output-dir",
            str(tmp_path / "logs"),
        )
    )
    record = result["repeats"][0]
    assert result["launcher"] == "torchrun" and result["processes"] == 2
    assert result["global_batch"] == 16
    assert record["timed"]["images"] == 4 * 16
    assert record["framework"]["distributed"] == "gloo"
    files = sorted(weights.glob("*.npz"))
    assert [f.name for f in files] == ["repeat1-rank0-replica0.npz", "repeat1-rank1-replica0.npz"]
    rank0, rank1 = (np.load(f) for f in files)
    initial = models.init_weights(models.build("lenet", (1, 28, 28), 10), 0)
    for key in initial:
        np.testing.assert_allclose(rank0[key], rank1[key], rtol=1e-6, atol=1e-7)
    assert not np.allclose(rank0["conv1.weight"], initial["conv1.weight"])


def test_dry_run_for_two_gpus_uses_torchrun() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "--tool",
            "pytorch",
            "--model",
            "resnet50",
            "--dataset",
            "cifar10",
            "--num-gpus",
            "2",
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stderr.split())
    assert "-m torch.distributed.run --standalone --nproc-per-node=2 -m harness.worker" in text
    assert "CUDA_VISIBLE_DEVICES=0,1" in text
    real = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "--tool",
            "pytorch",
            "--model",
            "resnet50",
            "--dataset",
            "cifar10",
            "--num-gpus",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert real.returncode == 2
    assert "asks for 2 GPU(s) but this machine has 0" in " ".join(real.stderr.split())
