"""The PyTorch backend: parity with the catalogue, training, data parallelism, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from backend_checks import (
    PAIRS,
    check_real_data_training,
    check_replicas_in_sync,
    check_synthetic_run,
    run_harness,
    two_device_run,
)

from harness import models

pytestmark = pytest.mark.pytorch


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


def test_cuda_events_time_each_step_without_a_gpu_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    """``-o cuda_events=true``: one (start, end) event pair around every step, read back
    and cleared by device_step_times. The events are torch.cuda.Event's API, faked here
    (no GPU exists on the test machines); on a CPU run the option records nothing."""
    import torch

    trainer, _ = _trainer("lenet", (1, 28, 28), 10, options={"cuda_events": "true"})
    assert trainer.device_step_times() is None  # CPU run: no device timers

    clock = iter(range(100))

    class FakeEvent:
        def __init__(self, enable_timing: bool = False) -> None:
            assert enable_timing
            self.at: int | None = None

        def record(self) -> None:
            self.at = next(clock)

        def elapsed_time(self, end: FakeEvent) -> float:  # milliseconds, as CUDA's
            assert self.at is not None and end.at is not None
            return float(end.at - self.at) * 4.0

    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    trainer._step_events = []  # as a GPU run with cuda_events=true starts
    batch = trainer.device_batch(np.ones((8, 1, 28, 28), np.float32), np.arange(8, dtype=np.int32))
    for _ in range(3):
        trainer.train_step(batch)
    assert trainer.device_step_times() == [0.004, 0.004, 0.004]
    assert trainer.device_step_times() == []  # read once


def test_out_of_memory_is_recognised() -> None:
    import torch

    from harness.backends.pytorch.trainer import TorchTrainer

    assert TorchTrainer.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried"))
    assert TorchTrainer.is_out_of_memory(MemoryError())
    assert not TorchTrainer.is_out_of_memory(RuntimeError("shape mismatch"))


def test_cli_run_on_synthetic_data(tmp_path: Path) -> None:
    result = check_synthetic_run("pytorch", tmp_path)
    assert result["framework"]["framework"] == "torch"


def test_cli_trains_real_format_data_to_high_accuracy(tmp_path: Path) -> None:
    check_real_data_training("pytorch", tmp_path, 3, 16, 0.8, dataset="fashion-mnist")


def test_two_cpu_devices_train_with_ddp_in_sync(tmp_path: Path) -> None:
    result = two_device_run("pytorch", tmp_path)
    assert result["launcher"] == "torchrun" and result["processes"] == 2
    assert result["repeats"][0]["framework"]["distributed"] == "gloo"
    names = ["repeat1-rank0-replica0.npz", "repeat1-rank1-replica0.npz"]
    check_replicas_in_sync(result, tmp_path / "weights2", names)


def test_dry_run_for_two_gpus_uses_torchrun() -> None:
    args = ("--model", "resnet50", "--dataset", "cifar10", "--num-gpus", "2")
    out = run_harness("pytorch", *args, "--dry-run", timeout=120)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stderr.split())
    assert "-m torch.distributed.run --standalone --nproc-per-node=2 -m harness.run.worker" in text
    assert "CUDA_VISIBLE_DEVICES=0,1" in text
    real = run_harness("pytorch", *args, timeout=120)
    assert real.returncode == 2
    assert "asks for 2 GPU(s) but this machine has 0" in " ".join(real.stderr.split())
