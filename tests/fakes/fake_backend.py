"""A fake backend plugin for orchestrator tests, loaded through HARNESS_PLUGINS.

Its trainer needs no framework and misbehaves on request (``-o behaviour=...``):
ok, raise, oom, exit (os._exit without a word), hang (sleeps forever), signal (SIGKILL
to itself), abort_at_close (SIGABRT in close, after its figures: a torn-down group).
``-o step_s=0.01`` sets the time one step takes; ``-o fail_at=N`` picks the timed step
where it misbehaves. ``-o oom_above=N`` raises MemoryError at the first step of a batch
(per device) larger than N, as a device too small for it would.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

from harness import hookimpl
from harness.backend import BackendInfo, Option, Trainer, WorkerContext

OPTIONS = (
    Option(
        "behaviour",
        "str",
        "ok",
        "how the fake trainer misbehaves",
        ("ok", "raise", "oom", "exit", "hang", "signal", "raise_in_setup", "nan", "abort_at_close"),
    ),
    Option("step_s", "float", 0.01, "seconds one step takes"),
    Option("fail_at", "int", 3, "the timed step where it misbehaves"),
    Option("oom_above", "int", 0, "MemoryError for a batch per device above this (0: never)"),
)

FAKE = BackendInfo(
    name="fake",
    framework="Fake",
    requires=(),
    install_hint="nothing to install",
    trainer="fake_backend:FakeTrainer",
    precisions=("fp32", "bf16"),
    options=OPTIONS,
)
FAKE_DDP = BackendInfo(
    name="fake-ddp",
    framework="Fake",
    requires=(),
    install_hint="nothing to install",
    trainer="fake_backend:FakeTrainer",
    multi_process_launcher="torchrun",
    options=OPTIONS,
)
MISSING = BackendInfo(
    name="fake-missing",
    framework="Nonexistium",
    requires=("nonexistium_framework_xyz",),
    install_hint="pip install nonexistium",
    trainer="fake_backend:FakeTrainer",
)


class FakeTrainer(Trainer):
    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self.behaviour = ctx.spec.options.get("behaviour", "ok")
        self.step_s = float(ctx.spec.options.get("step_s", "0.01"))
        self.fail_at = int(ctx.spec.options.get("fail_at", "3"))
        self.oom_above = int(ctx.spec.options.get("oom_above", "0"))
        self.steps = 0
        if self.behaviour == "raise_in_setup":
            raise RuntimeError("the fake framework refuses to start")

    def framework_info(self) -> dict[str, Any]:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        devices = [f"fake-gpu:{i}" for i in visible.split(",") if i] or ["cpu"]
        return {
            "framework": "fake",
            "version": "0.0",
            "devices": devices,
            "visible_devices": visible,
        }

    def device_batch(self, images: Any, labels: Any) -> Any:
        return images.shape[0]

    def train_step(self, batch: Any) -> Any:
        self.steps += 1
        if self.oom_above and (self.ctx.spec.batch_size or 0) > self.oom_above:
            raise MemoryError(f"fake device: batch {self.ctx.spec.batch_size} does not fit")
        if self.steps == (self.ctx.spec.warmup_steps or 0) + self.fail_at:
            self._misbehave()
        time.sleep(self.step_s)
        if self.behaviour == "nan":  # a diverged loss
            return float("nan")
        return 1.0 / self.steps

    def _misbehave(self) -> None:
        if self.behaviour == "raise":
            raise RuntimeError("the fake framework failed")
        if self.behaviour == "oom":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if self.behaviour == "exit":
            os._exit(7)
        if self.behaviour == "signal":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.behaviour == "hang":
            time.sleep(3600)

    def synchronize(self, token: Any) -> None:
        """Each fake step sleeps in train_step: nothing is queued."""

    def loss_value(self, token: Any) -> float:
        return float(token)

    def evaluate(self, batch: Any) -> tuple[float, int]:
        return 0.5 * batch, batch // 2

    def close(self) -> None:
        if self.behaviour == "abort_at_close":  # as a process group aborting at teardown
            os.abort()


@hookimpl
def harness_register_backends(register: Callable[[BackendInfo], None]) -> None:
    register(FAKE)
    register(FAKE_DDP)
    register(MISSING)
