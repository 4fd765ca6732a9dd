"""The benchmark loop every backend shares: warmup, timed steps, validation.

Runs inside the worker. Rules of measurement:

- warmup steps run first and are never timed (compilation, autotuning, allocator growth);
- the device is synchronised before every clock read (``sync_every`` steps, default 1);
- images/sec = images in timed steps / wall time of the timed steps, global batch
  (per-device batch x devices) per step;
- synthetic data is moved to the device once and reused, so the input pipeline is not
  measured; real data is fetched, normalised and moved every step, inside the timing,
  and the time spent waiting for the host pipeline is reported as ``data_wait_s``.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from harness.events import Emitter

if TYPE_CHECKING:
    from harness.backend import Trainer, WorkerContext

_STEP_FLUSH_S = 1.0  # how often step durations are sent to the orchestrator
_SYNTHETIC_POOL = 4  # distinct device batches cycled for synthetic data
_PREFETCH = 4  # host batches prepared ahead of the training loop


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

    def __init__(self, trainer: Trainer, ctx: WorkerContext, epochs: int | None) -> None:
        self.trainer = trainer
        self.synthetic = ctx.train.synthetic
        host = ctx.train.batches(
            ctx.process_batch, layout=trainer.layout, shuffle=True, drop_last=True, epochs=epochs
        )
        self._prefetch: _Prefetcher | None = None
        if self.synthetic:
            pool = [trainer.device_batch(*b) for b in itertools.islice(host, _SYNTHETIC_POOL)]
            self._device: Iterator[Any] = itertools.cycle(pool)
        else:
            self._prefetch = _Prefetcher(host)
        self.data_wait = 0.0
        self.fetched = 0

    def next(self) -> Any:
        if self._prefetch is None:
            return next(self._device)
        start = time.perf_counter()
        try:
            images, labels = next(self._prefetch)
        except StopIteration:
            raise RuntimeError(f"the training data ran out after {self.fetched} batches") from None
        self.data_wait += time.perf_counter() - start
        self.fetched += 1
        return self.trainer.device_batch(images, labels)

    def close(self) -> None:
        if self._prefetch is not None:
            self._prefetch.close()


class _StepLog:
    """Collects timed step durations and sends them to the orchestrator in chunks."""

    def __init__(self, emitter: Emitter, phase: str) -> None:
        self.emitter = emitter
        self.phase = phase
        self.durations: list[float] = []
        self._sent = 0
        self._last_flush = time.perf_counter()

    def add(self, seconds: float, steps: int) -> None:
        self.durations.extend([seconds / steps] * steps)
        now = time.perf_counter()
        if now - self._last_flush >= _STEP_FLUSH_S:
            self.flush()
            self._last_flush = now

    def flush(self) -> None:
        if self._sent < len(self.durations):
            chunk = self.durations[self._sent :]
            self.emitter.emit("steps", phase=self.phase, first=self._sent, seconds=chunk)
            self._sent = len(self.durations)


def _train_steps(trainer: Trainer, feed: _Feed, steps: int, sync_every: int, log: _StepLog) -> Any:
    """Runs ``steps`` optimiser steps, timing windows of ``sync_every`` steps."""
    token = None
    done = 0
    perf = time.perf_counter
    while done < steps:
        window = min(sync_every, steps - done)
        start = perf()
        for _ in range(window):
            token = trainer.train_step(feed.next())
        trainer.synchronize(token)
        log.add(perf() - start, window)
        done += window
    return token


def _validate(trainer: Trainer, ctx: WorkerContext, emitter: Emitter, epoch: int | None) -> None:
    assert ctx.test is not None
    emitter.emit("phase", name="validation", state="start", epoch=epoch)
    start = time.perf_counter()
    loss_sum, correct, images = 0.0, 0, 0
    batches = ctx.test.batches(
        ctx.process_batch, layout=trainer.layout, shuffle=False, drop_last=True, epochs=1
    )
    for host_images, labels in batches:
        batch_loss, batch_correct = trainer.evaluate(trainer.device_batch(host_images, labels))
        loss_sum += batch_loss
        correct += batch_correct
        images += len(labels)
    seconds = time.perf_counter() - start
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


def run_benchmark(trainer: Trainer, ctx: WorkerContext, emitter: Emitter) -> None:
    """Warmup, timed training and optional validation, reported as events."""
    spec = ctx.spec
    validate = (
        spec.validate
        if spec.validate is not None
        else (spec.epochs is not None and not ctx.train.synthetic)
    )
    if validate and ctx.test is None:
        raise RuntimeError("validation was asked for but no test split was opened")
    epochs = spec.epochs
    steps_per_epoch = max(1, ctx.train.num_images // ctx.global_batch)
    feed = _Feed(trainer, ctx, epochs=None)  # the stream never ends; epochs count steps
    try:
        emitter.emit(
            "plan",
            warmup_steps=spec.warmup_steps,
            timed_steps=steps_per_epoch * epochs if epochs else spec.steps,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            global_batch=ctx.global_batch,
            validate=bool(validate),
        )
        emitter.emit("phase", name="warmup", state="start")
        warm = _StepLog(emitter, "warmup")
        token = _train_steps(trainer, feed, spec.warmup_steps, 1, warm)
        warm.flush()
        emitter.emit("phase", name="warmup", state="end")
        if token is not None:
            emitter.emit("loss", phase="warmup", value=trainer.loss_value(token))

        log = _StepLog(emitter, "timed")
        for epoch in range(1, (epochs or 1) + 1):
            steps = steps_per_epoch if epochs else spec.steps
            wait_before = feed.data_wait
            emitter.emit("phase", name="timed", state="start", epoch=epoch if epochs else None)
            token = _train_steps(trainer, feed, steps, spec.sync_every, log)
            emitter.emit("phase", name="timed", state="end", epoch=epoch if epochs else None)
            log.flush()
            emitter.emit(
                "data_wait", seconds=feed.data_wait - wait_before, synthetic=feed.synthetic
            )
            emitter.emit("loss", phase="timed", epoch=epoch, value=trainer.loss_value(token))
            if validate:
                _validate(trainer, ctx, emitter, epoch if epochs else None)
    finally:
        feed.close()
    peak = trainer.memory_peak()
    if peak:
        emitter.emit("memory", **peak)
