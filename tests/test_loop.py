"""The shared benchmark loop, driven with a recording trainer (no framework, no process)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from harness import datasets, models
from harness.backend import Trainer, WorkerContext
from harness.events import Emitter, read_events
from harness.loop import run_benchmark
from harness.results import repeat_record
from harness.spec import RunSpec


class Recorder(Trainer):
    """Logs every call; a step 'runs' on the device until synchronize() is called."""

    def __init__(self, ctx: WorkerContext, step_s: float = 0.002) -> None:
        super().__init__(ctx)
        self.calls: list[str] = []
        self.step_s = step_s
        self.pending = 0

    def framework_info(self) -> dict[str, Any]:
        return {"framework": "recorder"}

    def device_batch(self, images: np.ndarray, labels: np.ndarray) -> Any:
        self.calls.append("batch")
        assert images.shape[0] == self.ctx.process_batch
        return images, labels

    def train_step(self, batch: Any) -> Any:
        self.calls.append("step")
        self.pending += 1  # asynchronous work queued on the "device"
        return len(self.calls)

    def synchronize(self, token: Any) -> None:
        self.calls.append("sync")
        time.sleep(self.step_s * self.pending)  # the queued work finishes now
        self.pending = 0

    def loss_value(self, token: Any) -> float:
        self.calls.append("loss")
        return 1.0

    def evaluate(self, batch: Any) -> tuple[float, int]:
        self.calls.append("eval")
        return 0.5 * len(batch[1]), len(batch[1])


def make(tmp_path, step_s: float = 0.002, **fields: Any) -> tuple[Recorder, WorkerContext, Emitter]:
    spec = RunSpec(tool="x", model="lenet", dataset="mnist", batch_size=4, **fields)
    network = models.build("lenet", (1, 28, 28), 10)
    train = datasets.open_source("mnist", "train", synthetic=True)
    test = datasets.open_source("mnist", "test", synthetic=True)
    ctx = WorkerContext(spec, network, train, test, lambda: {}, local_devices=2, total_devices=2)
    return Recorder(ctx, step_s), ctx, Emitter(tmp_path / "events.jsonl")


def test_warmup_is_untimed_and_every_window_is_synchronised(tmp_path) -> None:
    trainer, ctx, emitter = make(tmp_path, warmup_steps=3, steps=7, sync_every=3)
    run_benchmark(trainer, ctx, emitter)
    emitter.close()
    calls = [c for c in trainer.calls if c in ("step", "sync")]
    warmup, timed = calls[:6], calls[6:]
    assert warmup == ["step", "sync"] * 3  # warmup syncs every step
    # timed: windows of 3, 3 and 1 steps, each closed by a sync before the clock is read
    assert timed == ["step"] * 3 + ["sync"] + ["step"] * 3 + ["sync"] + ["step", "sync"]
    events = read_events(tmp_path / "events.jsonl")
    record = repeat_record(events, status="ok", cause=None, global_batch=ctx.global_batch)
    assert record["warmup"]["steps"] == 3
    assert record["timed"]["steps"] == 7
    assert record["timed"]["images"] == 7 * 8  # global batch: 4 per device x 2 devices
    # a window's time is spread over its steps; all queued work was waited for
    assert record["timed"]["seconds"] >= 7 * trainer.step_s
    assert record["timed"]["images_per_sec"] == pytest.approx(56 / record["timed"]["seconds"])
    assert [e["name"] for e in events if e["event"] == "phase"] == [
        "warmup",
        "warmup",
        "timed",
        "timed",
    ]
    assert "validation" not in record


def test_synthetic_batches_are_moved_to_the_device_once(tmp_path) -> None:
    trainer, ctx, emitter = make(tmp_path, warmup_steps=2, steps=20)
    run_benchmark(trainer, ctx, emitter)
    assert trainer.calls.count("batch") == 4  # a pool of device batches, cycled
    assert trainer.calls.count("step") == 22


def test_epochs_validate_after_each_epoch(tmp_path) -> None:
    trainer, ctx, emitter = make(tmp_path, step_s=0.0, warmup_steps=1, epochs=2, validate=True)
    run_benchmark(trainer, ctx, emitter)
    emitter.close()
    events = read_events(tmp_path / "events.jsonl")
    record = repeat_record(events, status="ok", cause=None, global_batch=ctx.global_batch)
    per_epoch = 60_000 // 8  # synthetic MNIST keeps the real epoch length
    assert record["plan"]["steps_per_epoch"] == per_epoch
    assert record["timed"]["steps"] == 2 * per_epoch
    assert [v["epoch"] for v in record["validation"]] == [1, 2]
    assert record["validation"][0]["images"] == 10_000  # whole batches of the test split
    assert record["validation"][0]["accuracy"] == 1.0
    assert len(record["windows"]["timed"]) == 2
    # validation happens between the timed windows, never inside them
    first_timed, second_timed = record["windows"]["timed"]
    first_validation = record["windows"]["validation"][0]
    assert first_timed[1] <= first_validation[0] < first_validation[1] <= second_timed[0]


class RealData:
    """A stand-in for a real-data source whose pipeline fails after some batches."""

    synthetic = False
    num_images = 1000
    description = "real: test"

    def __init__(self, good: int, error: BaseException | None) -> None:
        self.good, self.error = good, error

    def batches(self, batch_size: int, **_: Any):
        for _ in range(self.good):
            yield np.zeros((batch_size, 1, 28, 28), np.float32), np.zeros(batch_size, np.int32)
        if self.error is not None:
            raise self.error


@pytest.mark.parametrize(
    ("error", "expected", "message"),
    [
        (OSError("disk gone"), OSError, "disk gone"),
        (None, RuntimeError, "the training data ran out after 3 batches"),
    ],
)
def test_input_pipeline_failures_surface_with_their_cause(
    tmp_path, error: BaseException | None, expected: type, message: str
) -> None:
    trainer, ctx, emitter = make(tmp_path, warmup_steps=1, steps=5)
    ctx.train = RealData(3, error)
    with pytest.raises(expected, match=message):
        run_benchmark(trainer, ctx, emitter)
    assert trainer.calls.count("step") == 3
