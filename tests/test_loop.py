"""The shared benchmark loop, driven by a scripted trainer on a fake clock.

The trainer queues each step's scripted duration on a fake "device" and the fake clock
advances only when the loop synchronises, so every window, warmup decision and
adaptive stop below is exact and independent of the machine's speed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from harness import datasets, models
from harness.backend import Trainer, WorkerContext
from harness.run.events import Emitter, read_events
from harness.run.loop import Limits, auto_window, run_benchmark
from harness.spec import RunSpec
from harness.store import stats
from harness.store.records import aggregate, repeat_record
from harness.store.schema import Warmup


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Scripted(Trainer):
    """Step ``i`` (counted from 0 over the whole run) takes ``durations(i)`` seconds of
    device time; the work is queued and the clock advances when ``synchronize`` waits."""

    def __init__(
        self,
        ctx: WorkerContext,
        clock: FakeClock,
        durations: Callable[[int], float],
        *,
        device_timers: bool = False,
        processes: int = 1,
    ) -> None:
        super().__init__(ctx)
        self.clock = clock
        self.durations = durations
        self.device_timers = device_timers
        self.processes = processes
        self.calls: list[str] = []
        self.index = 0
        self.pending: list[float] = []
        self.finished: list[float] = []
        self.seen: list[int] = []  # the first pixel of every batch moved to the device

    def framework_info(self) -> dict[str, Any]:
        return {"framework": "scripted"}

    def device_batch(self, images: np.ndarray, labels: np.ndarray) -> Any:
        self.calls.append("batch")
        self.seen.append(int(images.flat[0]))
        assert images.shape[0] == self.ctx.process_batch
        return images, labels

    def train_step(self, batch: Any) -> Any:
        self.calls.append("step")
        self.pending.append(self.durations(self.index))
        self.index += 1
        return self.index

    def synchronize(self, token: Any) -> None:
        self.calls.append("sync")
        self.clock.now += sum(self.pending)
        self.finished.extend(self.pending)
        self.pending = []

    def device_step_times(self) -> list[float] | None:
        if not self.device_timers:
            return None
        done, self.finished = self.finished, []
        return done

    def loss_value(self, token: Any) -> float:
        self.calls.append("loss")
        return 1.0

    def evaluate(self, batch: Any) -> tuple[float, int]:
        self.calls.append("eval")
        return 0.5 * len(batch[1]), len(batch[1])

    def prepare_evaluation(self) -> None:
        self.calls.append("prepare_evaluation")
        self.clock.now += 1.5

    def reset_state(self) -> None:
        self.calls.append("reset_state")

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        self.calls.append("all_reduce_sum")
        return [v * self.processes for v in values]  # every process saw the same figures


def constant(seconds: float) -> Callable[[int], float]:
    return lambda i: seconds


def make(
    tmp_path,
    durations: Callable[[int], float] | None = None,
    *,
    device_timers: bool = False,
    **fields: Any,
) -> tuple[Scripted, WorkerContext, Emitter, FakeClock]:
    spec = RunSpec(tool="x", model="lenet", dataset="mnist", batch_size=4, **fields)
    network = models.build("lenet", (1, 28, 28), 10)
    train = datasets.open_source("mnist", "train", synthetic=True)
    test = datasets.open_source("mnist", "test", synthetic=True)
    ctx = WorkerContext(spec, network, train, test, lambda: {}, local_devices=2, total_devices=2)
    clock = FakeClock()
    durations = durations or constant(1 / 64)
    trainer = Scripted(ctx, clock, durations, device_timers=device_timers)
    return trainer, ctx, Emitter(tmp_path / "events.jsonl"), clock


def run(tmp_path, trainer, ctx, emitter, clock, limits: Limits | None = None):
    run_benchmark(trainer, ctx, emitter, clock=clock, limits=limits)
    emitter.close()
    events = read_events(tmp_path / "events.jsonl")
    record = repeat_record(events, status="ok", cause=None, global_batch=ctx.global_batch)
    return events, record


def windows_of(events: list[dict], phase: str) -> list[list[float]]:
    return [
        w for e in events if e["event"] == "steps" and e["phase"] == phase for w in e["windows"]
    ]


# Windows ------------------------------------------------------------------------------


def test_fixed_windows_are_timed_as_windows_and_nothing_is_spread(tmp_path) -> None:
    durations = [0.5, 0.25, 0.25, 0.25, 0.125, 0.125, 0.125, 0.25, 0.5, 0.75, 0.25]
    trainer, ctx, emitter, clock = make(
        tmp_path, lambda i: durations[i], warmup_steps=3, steps=7, sync_every=3
    )
    events, record = run(tmp_path, trainer, ctx, emitter, clock)
    calls = [c for c in trainer.calls if c in ("step", "sync")]
    # warmup: the first step alone, then a window of the 2 steps left
    assert calls[:5] == ["step", "sync", "step", "step", "sync"]
    # timed: windows of 3, 3 and 1 steps, each closed by one sync before the clock is read
    assert calls[5:] == ["step"] * 3 + ["sync"] + ["step"] * 3 + ["sync"] + ["step", "sync"]
    assert windows_of(events, "warmup") == [[1, 0.5], [2, 0.5]]
    assert windows_of(events, "timed") == [[3, 0.5], [3, 0.875], [1, 0.75]]
    timed = record.timed
    assert (timed.steps, timed.images, timed.seconds) == (7, 56, 2.125)
    assert timed.images_per_sec == 56 / 2.125  # images / wall time of the timed phase
    # step statistics are per-window figures: three windows, nothing per step invented
    assert timed.step_time_basis == "window"
    assert timed.step_time_s.n == 3
    assert (timed.step_time_s.min, timed.step_time_s.max) == (0.5 / 3, 0.75)
    assert timed.step_time_s.p50 == 0.875 / 3
    assert timed.windows == 3 and timed.window_steps == 3
    assert record.timing.mode == "window"
    assert record.timing.length == "fixed steps"
    assert record.timing.warmup_end == "fixed"
    assert record.warmup == Warmup(steps=3, seconds=1.0, first_step_s=0.5, windows=2, end="fixed")
    assert [e["name"] for e in events if e["event"] == "phase"] == ["warmup"] * 2 + ["timed"] * 2
    assert record.validation == []


def test_sync_every_one_times_every_step_on_its_own(tmp_path) -> None:
    durations = [1.0, 0.25, 0.5, 0.25, 0.75, 0.25]
    trainer, ctx, emitter, clock = make(
        tmp_path, lambda i: durations[i], warmup_steps=1, steps=5, sync_every=1
    )
    _, record = run(tmp_path, trainer, ctx, emitter, clock)
    assert record.timing.mode == "per-step"
    assert record.timed.step_time_basis == "step"
    step = record.timed.step_time_s
    assert step.n == 5 and step.p50 == 0.25 and step.max == 0.75
    assert step.mean == pytest.approx(2.0 / 5)


def test_device_timers_give_per_step_times_without_extra_syncs(tmp_path) -> None:
    durations = [1.0] + [0.125, 0.25] * 41
    trainer, ctx, emitter, clock = make(
        tmp_path, lambda i: durations[i], device_timers=True, warmup_steps=3, steps=80
    )
    _, record = run(tmp_path, trainer, ctx, emitter, clock)
    # warmup ends on a 0.25 s step: windows of 2 steps (0.375 s), and every step's device
    # time is recorded beside them
    assert record.timing.mode == "device-events"
    assert record.timed.step_time_basis == "device"
    step = record.timed.step_time_s
    assert step.n == 80 and step.min == 0.125 and step.max == 0.25
    assert record.timed.windows < 80  # fewer synchronisations than steps
    assert record.timed.seconds == 40 * 0.375


def test_automatic_window_lasts_about_a_third_of_a_second() -> None:
    limits = Limits()
    assert auto_window(1 / 64, limits) == 20  # ceil(0.3 / 0.015625)
    assert auto_window(0.3, limits) == 1
    assert auto_window(20.0, limits) == 1
    assert auto_window(1e-9, limits) == limits.max_window_steps
    assert auto_window(0.0, limits) == limits.max_window_steps


# Warmup -------------------------------------------------------------------------------


def test_warmup_runs_until_two_successive_windows_are_within_five_percent(tmp_path) -> None:
    def durations(i: int) -> float:  # compile, then a slow phase, then steady
        return 2.0 if i == 0 else 0.125 if i < 4 else 0.0625

    trainer, ctx, emitter, clock = make(tmp_path, durations, steps=10)
    events, record = run(tmp_path, trainer, ctx, emitter, clock)
    # first step 2 s; window of ceil(0.3/2)=1 step (0.125: not steady); window of
    # ceil(0.3/0.125)=3 steps (0.125+0.125+0.0625: 17% faster per step); window of
    # ceil(0.3/0.1042)=3 steps (0.0625 each: 40% faster); window of ceil(0.3/0.0625)=5
    # steps at 0.0625: equal to the previous one, steady
    assert windows_of(events, "warmup") == [
        [1, 2.0],
        [1, 0.125],
        [3, 0.3125],
        [3, 0.1875],
        [5, 0.3125],
    ]
    assert record.warmup.end == "steady" and record.warmup.steps == 13
    assert record.timing.window_steps == 5  # chosen from the last warmup window
    assert windows_of(events, "timed") == [[5, 0.3125], [5, 0.3125]]


def test_steady_from_the_first_window(tmp_path) -> None:
    trainer, ctx, emitter, clock = make(tmp_path, constant(0.25), steps=4)
    events, record = run(tmp_path, trainer, ctx, emitter, clock)
    assert windows_of(events, "warmup") == [[1, 0.25], [2, 0.5]]  # at least one window
    assert record.warmup.end == "steady"


def test_warmup_that_never_settles_ends_at_its_bounds(tmp_path) -> None:
    def alternating(i: int) -> float:  # window after window: 1 step, 2x slower, 2x faster...
        return 0.5 if i % 2 else 0.25

    by_steps, by_time = tmp_path / "steps", tmp_path / "time"
    by_steps.mkdir()
    by_time.mkdir()
    limits = Limits(window_s=0.1, warmup_max_steps=6, warmup_max_s=100.0)
    trainer, ctx, emitter, clock = make(by_steps, alternating, steps=2)
    events, record = run(by_steps, trainer, ctx, emitter, clock, limits)
    assert windows_of(events, "warmup") == [
        [1, 0.25],
        [1, 0.5],
        [1, 0.25],
        [1, 0.5],
        [1, 0.25],
        [1, 0.5],
    ]
    assert record.warmup.end == "bound: steps"

    limits = Limits(window_s=0.1, warmup_max_steps=1000, warmup_max_s=1.0)
    trainer, ctx, emitter, clock = make(by_time, alternating, steps=2)
    events, record = run(by_time, trainer, ctx, emitter, clock, limits)
    # the time bound counts the windows after the first step: 0.5+0.25+0.5 >= 1.0
    assert windows_of(events, "warmup") == [[1, 0.25], [1, 0.5], [1, 0.25], [1, 0.5]]
    assert record.warmup.end == "bound: time"


def test_no_warmup_times_one_step_then_chooses_the_window(tmp_path) -> None:
    trainer, ctx, emitter, clock = make(tmp_path, constant(1 / 64), warmup_steps=0, steps=45)
    events, record = run(tmp_path, trainer, ctx, emitter, clock)
    assert windows_of(events, "warmup") == []
    assert [w[0] for w in windows_of(events, "timed")] == [1, 20, 20, 4]
    assert record.timing.window_steps == 20


# Adaptive length ----------------------------------------------------------------------


def test_steady_run_stops_at_min_time_once_the_interval_is_narrow(tmp_path) -> None:
    trainer, ctx, emitter, clock = make(tmp_path, constant(1 / 64))
    events, record = run(tmp_path, trainer, ctx, emitter, clock)
    # windows of 20 steps = 0.3125 s; the CI is zero, so min_time (10 s) decides: 32 windows
    assert windows_of(events, "timed") == [[20, 0.3125]] * 32
    assert record.timing.length == "ci within 2%"
    assert record.timed.seconds == 10.0
    assert record.timed.ci95_rel == 0.0


def test_min_windows_hold_when_windows_are_long(tmp_path) -> None:
    trainer, ctx, emitter, clock = make(tmp_path, constant(4.0), min_time_s=1.0)
    events, record = run(tmp_path, trainer, ctx, emitter, clock)
    assert windows_of(events, "timed") == [[1, 4.0]] * 5  # Limits.min_windows
    assert record.timing.length == "ci within 2%"


def test_noisy_run_stops_at_the_first_window_with_a_two_percent_interval(tmp_path) -> None:
    # step time varies with a period of 7 steps, windows of 5 steps: window means wander
    pattern = [0.0625, 0.0625, 0.09375, 0.0625, 0.03125, 0.0625, 0.078125]

    def noisy(i: int) -> float:
        return 0.25 if i == 0 else pattern[i % 7]

    trainer, ctx, emitter, clock = make(tmp_path, noisy, min_time_s=2.0, max_time_s=60.0)
    events, record = run(tmp_path, trainer, ctx, emitter, clock)
    assert record.timing.length == "ci within 2%"
    timed = [(int(n), s) for n, s in windows_of(events, "timed")]
    batch = ctx.global_batch

    def rel(ws) -> float:
        speeds = [n * batch / s for n, s in ws]
        return stats.ci95_halfwidth(speeds) / stats.mean(speeds)

    elapsed = [sum(s for _, s in timed[: k + 1]) for k in range(len(timed))]
    eligible = [k + 1 for k in range(len(timed)) if elapsed[k] >= 2.0 and k + 1 >= 5]
    stop = next(k for k in eligible if rel(timed[:k]) <= 0.02)
    assert stop == len(timed)  # it stopped at the first window that met every condition
    assert len(timed) > eligible[0]  # ... which was not the first eligible one
    assert record.timed.ci95_rel == pytest.approx(rel(timed))


def test_noisy_run_stops_at_max_time(tmp_path) -> None:
    def wild(i: int) -> float:  # windows alternate between 1 and 3 time units per step
        return 0.25 if (i // 2) % 2 else 0.75

    limits = Limits(window_s=0.5, warmup_max_s=1.0)
    trainer, ctx, emitter, clock = make(tmp_path, wild, min_time_s=1.0, max_time_s=8.0)
    events, record = run(tmp_path, trainer, ctx, emitter, clock, limits)
    assert record.timing.length == "max time"
    timed = windows_of(events, "timed")
    seconds = [s for _, s in timed]
    assert sum(seconds[:-1]) < 8.0 <= sum(seconds)  # the window that crossed max_time ended it


def test_time_left_is_announced_after_the_first_warmup_window(tmp_path) -> None:
    trainer, ctx, emitter, clock = make(tmp_path, lambda i: 2.0 if i == 0 else 1 / 64)
    events, _ = run(tmp_path, trainer, ctx, emitter, clock)
    kinds = [e["event"] if e["event"] != "steps" else f"steps:{e['phase']}" for e in events]
    first_eta = kinds.index("eta")
    assert "steps:timed" not in kinds[:first_eta]
    # warmup: 2 s first step, then a window of 1 step at 1/64 s (not steady): the
    # estimate is one more warmup window of 20 steps (0.3125 s) + min_time (10 s); at
    # most the rest of the warmup bound (10 s of windows) and max_time, each + a window
    warm_eta, timed_eta = [e for e in events if e["event"] == "eta"][:2]
    assert warm_eta is events[first_eta] and warm_eta["phase"] == "warmup"
    assert warm_eta["seconds"] == 0.3125 + 10.0
    assert warm_eta["at_most"] == (10.0 - 1 / 64 + 0.3125) + (30.0 + 0.3125)
    # the window of 20 steps is steady: the timed phase's estimate follows
    assert timed_eta["phase"] == "timed"
    assert timed_eta["seconds"] == 10.0 and timed_eta["at_most"] == 30.0 + 0.3125
    later = [e for e in events if e["event"] == "eta"][2:]
    assert later and all(0 <= e["seconds"] <= e["at_most"] for e in later)


def test_time_left_during_a_long_warmup(tmp_path) -> None:
    def slow_start(i: int) -> float:
        return 8.0 if i == 0 else 1.0 if i < 3 else 0.5

    trainer, ctx, emitter, clock = make(tmp_path, slow_start, warmup_steps=5, steps=3)
    events, _ = run(tmp_path, trainer, ctx, emitter, clock)
    eta = next(e for e in events if e["event"] == "eta")
    # after the first step (8 s) and a window of 1 step (1 s): 3 warmup + 3 timed steps
    assert eta["phase"] == "warmup"
    assert eta["seconds"] == 6 * 1.0 and eta["at_most"] is None


# Epochs, validation, data -------------------------------------------------------------


def test_epochs_validate_after_each_epoch_after_a_reset(tmp_path) -> None:
    trainer, ctx, emitter, clock = make(
        tmp_path, constant(0.0078125), warmup_steps=1, epochs=2, validate=True
    )
    trainer.processes = 2  # all_reduce_sum as if a second process had the same figures
    _, record = run(tmp_path, trainer, ctx, emitter, clock)
    per_epoch = 60_000 // 8  # synthetic MNIST keeps the real epoch length
    assert record.plan["steps_per_epoch"] == per_epoch
    assert record.timed.steps == 2 * per_epoch
    assert record.timing.length == "epochs"
    assert [v.epoch for v in record.validation] == [1, 2]
    # this process's whole batches of the test split, summed over the two "processes"
    assert record.validation[0].images == 2 * 10_000
    assert record.validation[0].accuracy == 1.0
    assert record.eval_compile_s == 1.5
    calls = trainer.calls
    assert calls.index("prepare_evaluation") < calls.index("step")
    first_timed_step = calls.index("step", calls.index("sync"))  # after the 1 warmup step
    assert calls.index("reset_state") < first_timed_step
    assert calls.count("reset_state") == 1
    assert calls.count("all_reduce_sum") == 2
    assert len(record.windows["timed"]) == 2
    # validation happens between the timed phases, never inside them
    first_timed, second_timed = record.windows["timed"]
    first_validation = record.windows["validation"][0]
    assert first_timed[1] <= first_validation[0] < first_validation[1] <= second_timed[0]


def test_no_evaluation_compile_and_no_reset_without_validation_or_epochs(tmp_path) -> None:
    trainer, ctx, emitter, clock = make(tmp_path, warmup_steps=2, steps=4)
    events, record = run(tmp_path, trainer, ctx, emitter, clock)
    assert "prepare_evaluation" not in trainer.calls and "reset_state" not in trainer.calls
    assert not any(e["event"] == "eval_compile" for e in events)
    assert record.eval_compile_s is None


class ShardedData:
    """A source recording how it was asked for batches."""

    synthetic = True
    num_images = 1000
    description = "synthetic: test"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def batches(self, batch_size: int, **kwargs: Any):
        self.calls.append(kwargs)
        for _ in range(3):
            yield np.zeros((batch_size, 1, 28, 28), np.float32), np.zeros(batch_size, np.int32)


def test_training_and_validation_read_this_process_shard(tmp_path) -> None:
    trainer, ctx, emitter, clock = make(tmp_path, warmup_steps=1, steps=2, validate=True)
    ctx.rank, ctx.world_size = 1, 2
    ctx.train, ctx.test = ShardedData(), ShardedData()
    run(tmp_path, trainer, ctx, emitter, clock)
    assert [c["shard"] for c in ctx.train.calls] == [(1, 2)]
    assert [c["shard"] for c in ctx.test.calls] == [(1, 2)]
    assert ctx.test.calls[0]["shuffle"] is False


class NumberedData:
    """Real-data stand-in: 10 batches per epoch, batch i filled with the value i."""

    synthetic = False
    num_images = 80  # 10 global batches of 8

    def __init__(self) -> None:
        self.calls = 0

    def batches(self, batch_size: int, **kwargs: Any):
        self.calls += 1
        assert kwargs["epochs"] is None and kwargs["shard"] == (0, 1)
        while True:
            for i in range(10):
                images = np.full((batch_size, 1, 28, 28), i, np.float32)
                yield images, np.zeros(batch_size, np.int32)


def test_timed_epochs_start_at_the_first_batch_of_an_epoch(tmp_path) -> None:
    trainer, ctx, emitter, clock = make(tmp_path, warmup_steps=3, epochs=2, validate=False)
    ctx.train = NumberedData()
    run(tmp_path, trainer, ctx, emitter, clock)
    assert ctx.train.calls == 2  # a fresh stream after warmup
    assert trainer.seen == [0, 1, 2] + list(range(10)) * 2
    fourth_batch = [i for i, c in enumerate(trainer.calls) if c == "batch"][3]
    assert trainer.calls.index("reset_state") < fourth_batch


def test_synthetic_batches_are_moved_to_the_device_once(tmp_path) -> None:
    trainer, ctx, emitter, clock = make(tmp_path, warmup_steps=2, steps=20)
    run(tmp_path, trainer, ctx, emitter, clock)
    assert trainer.calls.count("batch") == 4  # a pool of device batches, cycled
    assert trainer.calls.count("step") == 22


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
    trainer, ctx, emitter, clock = make(tmp_path, warmup_steps=1, steps=5)
    ctx.train = RealData(3, error)
    with pytest.raises(expected, match=message):
        run_benchmark(trainer, ctx, emitter, clock=clock)
    assert trainer.calls.count("step") == 3


# Repeats ------------------------------------------------------------------------------


def test_repeats_aggregate_with_median_jitter_and_timing(tmp_path) -> None:
    records = []
    for k, step in enumerate([1 / 64, 1 / 32, 1 / 64, 1 / 128, 1 / 64]):
        folder = tmp_path / str(k)
        folder.mkdir()
        trainer, ctx, emitter, clock = make(folder, constant(step), warmup_steps=1, steps=40)
        records.append(run(folder, trainer, ctx, emitter, clock)[1])
    speeds = sorted(r.timed.images_per_sec for r in records)
    assert speeds == [256.0, 512.0, 512.0, 512.0, 1024.0]  # 8 images per step
    summary = aggregate(records)
    ips = summary.images_per_sec
    assert ips.median == 512.0
    assert ips.jitter == 0.0  # three of five agree exactly: the MAD ignores the others
    assert ips.olympic_mean == 512.0
    assert ips.mean == pytest.approx(563.2)
    assert summary.timing.mode == "window"
    assert summary.timing.length == ["fixed steps"] * 5
    assert not math.isnan(ips.ci95)


def test_a_loss_that_becomes_nan_stops_the_repeat_as_diverged(tmp_path) -> None:
    from harness.run.loop import Diverged
    from harness.run.worker import report_failure

    trainer, ctx, emitter, clock = make(tmp_path, warmup_steps=2, steps=400, sync_every=10)
    trainer.loss_value = lambda token: float("nan") if token > 150 else 1.0  # from step 151
    with pytest.raises(Diverged) as caught:
        run_benchmark(trainer, ctx, emitter, clock=clock)
    assert caught.value.phase == "timed" and 150 < caught.value.step < 400
    report_failure(emitter, caught.value, lambda exc: False)
    emitter.close()
    events = read_events(tmp_path / "events.jsonl")
    record = repeat_record(events, status="error", cause=None, global_batch=ctx.global_batch)
    assert record.status == "diverged" and not record.ok
    assert f"the loss became nan by step {caught.value.step} of the timed phase" in record.cause


def test_a_runner_without_a_loss_is_not_checked_for_divergence(tmp_path) -> None:
    trainer, ctx, emitter, clock = make(tmp_path, warmup_steps=2, steps=200, sync_every=10)
    trainer.loss_value = lambda token: float("nan")  # as the inference loop's adapter
    trainer.has_loss = False
    _, record = run(tmp_path, trainer, ctx, emitter, clock)
    assert record.status == "ok" and record.timed.steps == 200
