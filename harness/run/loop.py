"""The benchmark loop every backend shares: warmup, timed steps, validation.

Runs inside the worker. Rules of measurement:

- the device is synchronised only at the end of a *window* of steps, and the clock is
  read once there; windows follow each other without gaps, so the windows of a phase
  add up to its wall time. A window is ``sync_every`` steps, or by default enough steps
  to last about 0.3 s, chosen after warmup from the measured step time;
- step statistics are per-window figures (window time / steps in it), never per-step
  times spread out of a window; with ``sync_every=1`` every step is its own window
  (mode "per-step"); a trainer with device-side timers (``device_step_times``) adds
  the device time of every step without draining the queue (mode "device-events");
- warmup is never timed: the first step alone (compilation), then windows until two
  successive windows' time per step differ by at most 5% (bounded in steps and
  seconds), or exactly ``warmup_steps`` steps;
- the timed phase runs ``steps`` steps, whole ``epochs``, or by default windows until
  it has ``min_time_s`` seconds and ``min_windows`` windows and the 95% confidence
  interval of the window throughput is within ±2% of its mean, or until ``max_time_s``;
- images/sec = images in the timed phase / its wall time, global batch (per-device
  batch x devices) per step;
- synthetic data is moved to the device once and reused, so the input pipeline is not
  measured; real data is fetched, normalised and moved every step, inside the timing,
  and the time spent waiting for the host pipeline is reported as ``data_wait_s``;
  host batches are prepared ahead by a background thread, or in the loop itself with
  ``--data-workers 0`` (then all the pipeline's time is data wait);
- the training step is compiled before warmup where the backend can
  (``prepare_training``, the ``compile`` event), on the first batch, which warmup then
  trains on; evaluation is compiled before warmup (``eval_compile``) when the run
  validates, and
  in epochs mode the trainer's state is reset after warmup, so "accuracy after E
  epochs" means E epochs.
"""

from __future__ import annotations

import itertools
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from harness.run.events import Emitter
from harness.store import stats

if TYPE_CHECKING:
    from harness.backend import Trainer, WorkerContext

Clock = Callable[[], float]

_STEP_FLUSH_S = 1.0  # how often windows (and the time left) are sent to the orchestrator
SYNTHETIC_POOL = 4  # distinct device batches cycled for synthetic data
_PREFETCH = 4  # host batches prepared ahead of the training loop


@dataclass(frozen=True)
class Limits:
    """How windows, warmup and the adaptive length are decided (the spec adds the times)."""

    window_s: float = 0.3  # automatic window: steps lasting at least this long
    max_window_steps: int = 100_000  # ... and at most this many steps
    steady_tolerance: float = 0.05  # warmup: successive windows within 5% per step
    warmup_max_steps: int = 10_000  # warmup bound in steps (first step included)
    warmup_max_s: float = 10.0  # warmup bound in seconds of windows after the first step
    min_windows: int = 5  # adaptive length: windows measured at least
    ci_target: float = 0.02  # adaptive length: stop at a 95% CI within ±2% of the mean


def auto_window(per_step_s: float, limits: Limits) -> int:
    """Steps in a window lasting ``limits.window_s`` at ``per_step_s`` seconds per step."""
    if per_step_s <= 0:
        return limits.max_window_steps
    return max(1, min(limits.max_window_steps, math.ceil(limits.window_s / per_step_s)))


class _Prefetcher:
    """Pulls host batches from an iterator in a background thread."""

    _DONE = object()

    def __init__(self, batches: Iterator[Any], depth: int = _PREFETCH) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(batches,), daemon=True)
        self._thread.start()

    def _fill(self, batches: Iterator[Any]) -> None:
        try:
            for item in batches:
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as exc:
            self._error = exc
        self._queue.put(self._DONE)

    def __iter__(self) -> _Prefetcher:
        return self

    def __next__(self) -> Any:
        item = self._queue.get()
        if item is self._DONE:
            if self._error is not None:
                raise self._error
            raise StopIteration
        return item

    def close(self) -> None:
        self._stop.set()


class _Feed:
    """Device batches for the loop, timing how long the loop waits for the host."""

    def __init__(self, trainer: Trainer, ctx: WorkerContext, clock: Clock) -> None:
        self.trainer = trainer
        self.clock = clock
        self.synthetic = ctx.train.synthetic
        host = ctx.train.batches(
            ctx.process_batch,
            layout=trainer.layout,
            shuffle=True,
            drop_last=True,
            epochs=None,  # the stream never ends; epochs count steps
            shard=(ctx.rank, ctx.world_size),
        )
        self._prefetch: Iterator[Any] | None = None
        self._pending: list[Any] = []  # device batches to hand out first (peeked)
        if self.synthetic:
            pool = [trainer.device_batch(*b) for b in itertools.islice(host, SYNTHETIC_POOL)]
            self._device: Iterator[Any] = itertools.cycle(pool)
        elif ctx.spec.data_workers == 0:  # no helper thread: the loop prepares each batch
            self._prefetch = host
        else:
            self._prefetch = _Prefetcher(host)
        self.data_wait = 0.0
        self.fetched = 0

    def peek(self) -> Any:
        """The next device batch, handed out again by the next call to :meth:`next`."""
        if not self._pending:
            self._pending.append(self.next())
        return self._pending[0]

    def next(self) -> Any:
        if self._pending:
            return self._pending.pop()
        if self._prefetch is None:
            return next(self._device)
        start = self.clock()
        try:
            images, labels = next(self._prefetch)
        except StopIteration:
            raise RuntimeError(f"the training data ran out after {self.fetched} batches") from None
        self.data_wait += self.clock() - start
        self.fetched += 1
        return self.trainer.device_batch(images, labels)

    def close(self) -> None:
        if isinstance(self._prefetch, _Prefetcher):
            self._prefetch.close()


class Diverged(RuntimeError):
    """The training loss became non-finite (NaN or infinite): the repeat is *diverged*,
    never ok. Checked once a second (when windows are sent) and at each phase's end."""

    def __init__(self, phase: str, step: int, value: float) -> None:
        super().__init__(f"the loss became {value} by step {step} of the {phase} phase")
        self.phase, self.step, self.value = phase, step, value


class _Windows:
    """Runs windows of steps back to back and sends them to the orchestrator in chunks.

    A window ends with one synchronisation and one clock read, which also starts the
    next window: the windows of a phase tile its wall time (whatever the loop does
    between two windows, e.g. sending events, is counted in the next one).
    """

    def __init__(
        self, trainer: Trainer, feed: _Feed, emitter: Emitter, phase: str, clock: Clock
    ) -> None:
        self.trainer = trainer
        self.feed = feed
        self.emitter = emitter
        self.phase = phase
        self.clock = clock
        self.windows: list[tuple[int, float]] = []  # (steps, seconds)
        self.device: list[float] = []  # per-step device seconds, when the trainer has them
        self.token: Any = None
        self._mark = 0.0
        self._sent = 0
        self._sent_device = 0
        self._last_flush = 0.0

    def start(self) -> None:
        """Starts (or resumes, after validation) the phase's clock."""
        self._mark = self.clock()
        self._last_flush = self._mark

    def run(self, steps: int) -> float:
        """One window of ``steps`` steps; returns its seconds."""
        trainer, feed = self.trainer, self.feed
        for _ in range(steps):
            self.token = trainer.train_step(feed.next())
        trainer.synchronize(self.token)
        now = self.clock()
        seconds = now - self._mark
        self._mark = now
        self.windows.append((steps, seconds))
        device = trainer.device_step_times()
        if device is not None:
            self.device.extend(device)
        return seconds

    def due(self) -> bool:
        """Whether a chunk should be sent now (about once a second)."""
        return self._mark - self._last_flush >= _STEP_FLUSH_S

    def flush(self) -> None:
        self._last_flush = self._mark
        self.check_loss()
        if self._sent < len(self.windows):
            fields: dict[str, Any] = {
                "windows": [list(w) for w in self.windows[self._sent :]],
            }
            if self.device:
                fields["device_seconds"] = self.device[self._sent_device :]
            self.emitter.emit("steps", phase=self.phase, first=self._sent, **fields)
            self._sent = len(self.windows)
            self._sent_device = len(self.device)

    def check_loss(self) -> None:
        """Raises :class:`Diverged` when the last step's loss is not finite (a scalar
        read once a second, between windows: outside their timing)."""
        if self.token is None or not getattr(self.trainer, "has_loss", True):
            return
        value = self.trainer.loss_value(self.token)
        if not math.isfinite(value):
            raise Diverged(self.phase, self.steps, value)

    @property
    def steps(self) -> int:
        return sum(s for s, _ in self.windows)

    @property
    def seconds(self) -> float:
        return sum(t for _, t in self.windows)


def throughput_ci(windows: list[tuple[int, float]], batch: int) -> tuple[float, float] | None:
    """(mean, 95% CI half-width) of the windows' images/sec; None below 2 windows."""
    speeds = [steps * batch / seconds for steps, seconds in windows if seconds > 0]
    half = stats.ci95_halfwidth(speeds)
    if half is None:
        return None
    return stats.mean(speeds) or 0.0, half


@dataclass
class _Plan:
    """What the loop was asked to do, and what it decided along the way."""

    spec: Any
    limits: Limits
    global_batch: int
    steps_per_epoch: int
    window: int | None = None  # timed window in steps, once known
    per_step: float | None = None  # latest time per step
    warmup_end: str | None = None  # "steady" | "fixed" | "bound: steps" | "bound: time"
    length: str | None = None  # "fixed steps" | "epochs" | "ci within 2%" | "max time"

    def window_for(self, per_step: float | None) -> int:
        if self.spec.sync_every:
            return self.spec.sync_every
        return 1 if per_step is None else auto_window(per_step, self.limits)

    def timed_left(self, timed: _Windows | None) -> tuple[float, float | None]:
        """(estimate, upper bound or None) of the timed phase's seconds still to run."""
        per = self.per_step or 0.0
        spec, limits = self.spec, self.limits
        done_steps = timed.steps if timed else 0
        if spec.epochs:
            left = (spec.epochs * self.steps_per_epoch - done_steps) * per
            return max(0.0, left), None
        if spec.steps is not None:
            return max(0.0, (spec.steps - done_steps) * per), None
        window_s = (self.window or self.window_for(per)) * per
        elapsed = timed.seconds if timed else 0.0
        count = len(timed.windows) if timed else 0
        bound = max(0.0, spec.max_time_s - elapsed) + window_s
        need = max(spec.min_time_s - elapsed, (limits.min_windows - count) * window_s, 0.0)
        found = throughput_ci(timed.windows, self.global_batch) if timed else None
        if found is not None and found[0] > 0:
            # windows the CI needs at its current width: n ~ (half / target)^2 * count
            ratio = found[1] / (limits.ci_target * found[0])
            need = max(need, (ratio * ratio * count - count) * window_s)
        return min(need, bound), bound


def _emit_eta(
    emitter: Emitter, phase: str, seconds: float, bound: float | None, per_step: float
) -> None:
    """Time left in the repeat (validation excluded): an estimate, and a bound if any."""
    emitter.emit("eta", phase=phase, seconds=seconds, at_most=bound, step_s=per_step)


def _warmup(plan: _Plan, warm: _Windows, emitter: Emitter) -> None:
    """Untimed steps: the first alone, then windows until steady, a bound, or the count
    asked for. Sets ``plan.warmup_end`` and ``plan.per_step``."""
    spec, limits = plan.spec, plan.limits
    fixed = spec.warmup_steps
    warm.start()
    if fixed == 0:
        plan.warmup_end = "fixed"
        return
    first = warm.run(1)
    plan.per_step = previous = first
    while True:
        if fixed is not None:
            left = fixed - warm.steps
            if left <= 0:
                plan.warmup_end = "fixed"
                break
            size = min(plan.window_for(plan.per_step), left)
        else:
            size = min(plan.window_for(plan.per_step), max(1, limits.warmup_max_steps - warm.steps))
        seconds = warm.run(size)
        per = seconds / size
        plan.per_step = per
        if fixed is None:
            if abs(per - previous) <= limits.steady_tolerance * previous:
                plan.warmup_end = "steady"
            elif warm.steps >= limits.warmup_max_steps:
                plan.warmup_end = "bound: steps"
            elif warm.seconds - first >= limits.warmup_max_s:
                plan.warmup_end = "bound: time"
        previous = per
        if plan.warmup_end is not None:
            break
        if len(warm.windows) == 2 or warm.due():  # the first window gives the first estimate
            if fixed is not None:
                warm_left, warm_bound = (fixed - warm.steps) * per, None
            else:
                warm_left = plan.window_for(per) * per  # one more window, if steady then
                warm_bound = max(0.0, limits.warmup_max_s - (warm.seconds - first)) + warm_left
            timed_left, timed_bound = plan.timed_left(None)
            bound = None  # at most: the bounded parts' bounds, the others' estimates
            if warm_bound is not None or timed_bound is not None:
                bound = (warm_bound if warm_bound is not None else warm_left) + (
                    timed_bound if timed_bound is not None else timed_left
                )
            _emit_eta(emitter, "warmup", warm_left + timed_left, bound, per)
            warm.flush()


def _timed(plan: _Plan, timed: _Windows, emitter: Emitter, steps: int | None) -> None:
    """One timed phase: ``steps`` steps, or the adaptive length when None."""
    spec, limits = plan.spec, plan.limits
    timed.start()
    done = 0
    first_window = len(timed.windows)
    while True:
        size = plan.window or 1  # no warmup to measure: the first window times one step
        if steps is not None:
            size = min(size, steps - done)
        seconds = timed.run(size)
        done += size
        plan.per_step = seconds / size
        if plan.window is None:
            plan.window = plan.window_for(plan.per_step)
        if steps is not None:
            if done >= steps:
                break
        else:
            windows = timed.windows[first_window:]
            elapsed = sum(t for _, t in windows)
            if elapsed >= spec.max_time_s:
                plan.length = "max time"
                break
            if elapsed >= spec.min_time_s and len(windows) >= limits.min_windows:
                found = throughput_ci(windows, plan.global_batch)
                if found is not None and found[1] <= limits.ci_target * found[0]:
                    plan.length = f"ci within {limits.ci_target:.0%}"
                    break
        if timed.due():
            seconds_left, bound = plan.timed_left(timed)
            _emit_eta(emitter, "timed", seconds_left, bound, plan.per_step)
            timed.flush()
    timed.flush()


def _validate(
    trainer: Trainer, ctx: WorkerContext, emitter: Emitter, epoch: int | None, clock: Clock
) -> None:
    assert ctx.test is not None
    emitter.emit("phase", name="validation", state="start", epoch=epoch)
    start = clock()
    loss_sum, correct, images = 0.0, 0, 0
    batches = ctx.test.batches(
        ctx.process_batch,
        layout=trainer.layout,
        shuffle=False,
        drop_last=True,
        epochs=1,
        shard=(ctx.rank, ctx.world_size),
    )
    for host_images, labels in batches:
        batch_loss, batch_correct = trainer.evaluate(trainer.device_batch(host_images, labels))
        loss_sum += batch_loss
        correct += batch_correct
        images += len(labels)
    # every process validated its shard: the run's figures are the sums over processes
    loss_sum, total_correct, total_images = trainer.all_reduce_sum(
        [float(loss_sum), float(correct), float(images)]
    )
    correct, images = round(total_correct), round(total_images)
    seconds = clock() - start
    emitter.emit("phase", name="validation", state="end", epoch=epoch)
    emitter.emit(
        "validation",
        epoch=epoch,
        images=images,
        seconds=seconds,
        loss=loss_sum / images if images else None,
        accuracy=correct / images if images else None,
        synthetic=ctx.test.synthetic,
    )


def _run_window(window: int | None, steps: int | None) -> int | None:
    """The window steps a run reports: never more than its steps (a short ``--steps`` is
    one window)."""
    return min(window, steps) if window and steps else window


def _mode(spec: Any, timed: _Windows) -> str:
    if timed.device:
        return "device-events"
    return "per-step" if spec.sync_every == 1 else "window"


def run_benchmark(
    trainer: Trainer,
    ctx: WorkerContext,
    emitter: Emitter,
    *,
    clock: Clock = time.perf_counter,
    limits: Limits | None = None,
) -> None:
    """Warmup, timed training and optional validation, reported as events.

    ``clock`` reads seconds (tests inject a scripted one); ``limits`` tunes the windows,
    the steady-state warmup and the adaptive length.
    """
    spec = ctx.spec
    limits = limits or Limits()
    validate = (
        spec.validate
        if spec.validate is not None
        else (spec.epochs is not None and not ctx.train.synthetic)
    )
    if validate and ctx.test is None:
        raise RuntimeError("validation was asked for but no test split was opened")
    epochs = spec.epochs
    steps_per_epoch = max(1, ctx.train.num_images // ctx.global_batch)
    plan = _Plan(spec, limits, ctx.global_batch, steps_per_epoch)
    if validate:  # compile the evaluation now, not inside the first validation
        start = clock()
        trainer.prepare_evaluation()
        emitter.emit("eval_compile", seconds=clock() - start)
    feed = _Feed(trainer, ctx, clock)
    try:
        prepare = getattr(trainer, "prepare_training", None)  # plugin API 1.2
        start = clock()
        if prepare is not None and prepare(feed.peek()):  # compiled ahead, timed alone
            emitter.emit("compile", seconds=clock() - start)
        emitter.emit(
            "plan",
            warmup_steps=spec.warmup_steps,
            timed_steps=steps_per_epoch * epochs if epochs else spec.steps,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            global_batch=ctx.global_batch,
            validate=bool(validate),
            sync_every=spec.sync_every,
            min_time_s=spec.min_time_s,
            max_time_s=spec.max_time_s,
            limits=asdict(limits),
        )
        emitter.emit("phase", name="warmup", state="start")
        warm = _Windows(trainer, feed, emitter, "warmup", clock)
        _warmup(plan, warm, emitter)
        warm.flush()
        emitter.emit("phase", name="warmup", state="end")
        if warm.token is not None:
            emitter.emit("loss", phase="warmup", value=trainer.loss_value(warm.token))
        if epochs:  # "accuracy after E epochs" means E epochs: warmup leaves no trace
            trainer.reset_state()
            # ... and the timed epochs start at the first epoch of the data's order, so
            # each is the source's epoch: every image once (a strict partition)
            feed.close()
            feed = _Feed(trainer, ctx, clock)
        if plan.per_step is not None:
            plan.window = plan.window_for(plan.per_step)
        elif spec.sync_every:
            plan.window = spec.sync_every
        if plan.per_step is not None:
            seconds_left, bound = plan.timed_left(None)
            _emit_eta(emitter, "timed", seconds_left, bound, plan.per_step)

        timed = _Windows(trainer, feed, emitter, "timed", clock)
        for epoch in range(1, (epochs or 1) + 1):
            wait_before = feed.data_wait
            emitter.emit("phase", name="timed", state="start", epoch=epoch if epochs else None)
            _timed(plan, timed, emitter, steps_per_epoch if epochs else spec.steps)
            emitter.emit("phase", name="timed", state="end", epoch=epoch if epochs else None)
            emitter.emit(
                "data_wait", seconds=feed.data_wait - wait_before, synthetic=feed.synthetic
            )
            emitter.emit("loss", phase="timed", epoch=epoch, value=trainer.loss_value(timed.token))
            if validate:
                _validate(trainer, ctx, emitter, epoch if epochs else None, clock)
        if epochs:
            plan.length = "epochs"
        elif spec.steps is not None:
            plan.length = "fixed steps"
        found = throughput_ci(timed.windows, ctx.global_batch)
        emitter.emit(
            "timing",
            mode=_mode(spec, timed),
            sync_every=spec.sync_every,
            # the run's window, never more than its steps (a short --steps is one window)
            window_steps=min(plan.window, spec.steps)
            if plan.window and spec.steps
            else plan.window,
            window_target_s=None if spec.sync_every else limits.window_s,
            warmup_end=plan.warmup_end,
            warmup_steps=warm.steps,
            warmup_windows=len(warm.windows),
            length=plan.length,
            timed_windows=len(timed.windows),
            ci95_rel=found[1] / found[0] if found and found[0] > 0 else None,
            min_time_s=spec.min_time_s,
            max_time_s=spec.max_time_s,
        )
    finally:
        feed.close()
    peak = trainer.memory_peak()
    if peak:
        emitter.emit("memory", **peak)
