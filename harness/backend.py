"""What a backend plugin provides: a description for the orchestrator, a trainer for the worker.

The orchestrator only ever sees :class:`BackendInfo` (plain data). The worker imports
``BackendInfo.trainer`` (a ``"module:Class"`` reference) inside the framework's
interpreter, and drives it through the methods of :class:`Trainer`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for type checkers: the core does not import numpy here
    import numpy as np

    from harness.datasets import Source
    from harness.models import Network
    from harness.run.spec import RunSpec

PRECISIONS = ("fp32", "fp16", "bf16")

# The training recipe every backend implements identically: plain SGD with momentum,
# no weight decay, softmax cross-entropy on integer labels, learning rate from the spec.
SGD_MOMENTUM = 0.9


@dataclass(frozen=True)
class BackendInfo:
    """One tool (``--tool NAME``) as registered by a plugin."""

    name: str  # the --tool value
    framework: str  # human name, e.g. "PyTorch"
    requires: tuple[str, ...]  # import names the interpreter must have, e.g. ("torch",)
    install_hint: str  # one command that installs the framework for this backend
    trainer: str  # "module:Class" implementing Trainer, imported only in the worker
    # Launcher used when a run drives more than one process (see harness.launchers).
    multi_process_launcher: str | None = None
    precisions: tuple[str, ...] = ("fp32",)
    description: str = ""
    # Extra environment variables for the worker, e.g. to switch off GPU preallocation.
    worker_env: dict[str, str] = field(default_factory=dict)
    # Variables that depend on the run (e.g. XLA_FLAGS for N host devices), computed in
    # the orchestrator before the worker starts. Must not import the framework.
    run_env: Callable[[RunSpec], dict[str, str]] | None = None

    def load_trainer(self) -> type[Trainer]:
        module_name, _, attr = self.trainer.partition(":")
        return getattr(importlib.import_module(module_name), attr)


@dataclass
class WorkerContext:
    """Everything a trainer needs, prepared by the worker."""

    spec: RunSpec
    network: Network
    train: Source
    test: Source | None
    initial_weights: Callable[[], dict[str, np.ndarray]]  # canonical state dict, drawn lazily
    rank: int = 0  # this process among the run's processes
    world_size: int = 1  # processes in the run
    local_devices: int = 1  # data-parallel devices this process drives
    total_devices: int = 1  # data-parallel devices in the whole run

    @property
    def process_batch(self) -> int:
        """Images one step of this process consumes."""
        return self.spec.batch_size * self.local_devices

    @property
    def global_batch(self) -> int:
        """Images one training step consumes across all devices."""
        return self.spec.batch_size * self.total_devices


class Trainer:
    """Base class of every backend's trainer. Subclasses import their framework.

    The worker's loop calls, in order: ``framework_info``; ``prepare_evaluation`` in
    setup when the run validates; for every step ``device_batch`` and ``train_step``,
    ``synchronize`` before reading a clock; ``reset_state`` after warmup in epochs mode;
    ``evaluate`` during validation, its sums reduced over the processes with
    ``all_reduce_sum``; and ``memory_peak`` at the end.

    Data semantics with several devices: every process reads its shard of the same
    per-epoch permutation (``Source.batches(..., shard=(rank, world_size))``), of
    ``process_batch`` images per step; a trainer driving several devices splits each
    batch (training and evaluation) into contiguous parts of ``batch_size`` images, one
    per device, in device order, and reduces the evaluation sums over its devices.

    Optional methods, with their defaults here:

    - ``prepare_evaluation()``: compile or trace the evaluation step now, for batches
      of ``process_batch`` images, so no validation pays for it (no-op).
    - ``reset_state()``: weights, batch-norm statistics and optimiser state (momentum,
      loss scale, step counters) back to ``ctx.initial_weights()`` and a fresh
      optimiser (raises NotImplementedError: every built-in backend implements it).
    - ``all_reduce_sum(values)``: element-wise sums over the run's processes (identity
      for a single process).
    - ``device_step_times()``: per-step device times measured without draining the
      queue (e.g. CUDA events), or None.
    """

    #: Substrings of an exception's text that mean "out of memory" in this framework.
    oom_markers: Sequence[str] = ("out of memory", "OOM", "RESOURCE_EXHAUSTED", "MemoryError")

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx

    def framework_info(self) -> dict[str, Any]:
        """Framework name, version and the devices used, recorded in the result."""
        raise NotImplementedError

    def device_batch(self, images: np.ndarray, labels: np.ndarray) -> Any:
        """Move one host batch (NCHW or NHWC as ``layout``) to the device(s)."""
        raise NotImplementedError

    def train_step(self, batch: Any) -> Any:
        """Run one optimiser step; return a token (e.g. the loss) to synchronise on."""
        raise NotImplementedError

    def synchronize(self, token: Any) -> None:
        """Block until the work behind ``token`` has finished on the device."""

    def loss_value(self, token: Any) -> float:
        """The loss behind ``token`` as a Python float (synchronises)."""
        raise NotImplementedError

    def evaluate(self, batch: Any) -> tuple[float, int]:
        """Summed loss and number of correct predictions over one batch, in inference mode.

        The batch is split across this process's devices as in training and the sums
        are over all of them. Multi-process backends may synchronise here (PyTorch
        broadcasts rank 0's batch-norm statistics once after training), so every rank
        evaluates the same number of batches: the loop reads whole global batches."""
        raise NotImplementedError

    def prepare_evaluation(self) -> None:
        """Compile or trace the evaluation step for ``process_batch`` images, now.

        Called by the loop in setup, before warmup, when the run will validate, and
        timed on its own (the ``eval_compile`` event), so validation time excludes it.
        """

    def reset_state(self) -> None:
        """Weights, batch-norm statistics and optimiser state back to their initial values.

        Called after warmup in epochs mode, so "accuracy after E epochs" means E epochs.
        After it, the trainer behaves exactly as a freshly built one (same next step).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot reset its state")

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """Element-wise sums of ``values`` over the run's processes (every rank calls it)."""
        return list(values)

    def device_step_times(self) -> list[float] | None:
        """Per-step device times in seconds, recorded by device-side timers that do not
        drain the queue (CUDA events), or None where the backend has none.

        The loop calls it after each synchronised window and reads the list as the
        device times of the steps run since the previous call."""
        return None

    def memory_peak(self) -> dict[str, Any] | None:
        """The framework allocator's peak, e.g. {"allocator": "...", "peak_bytes": n}."""
        return None

    def state_dict(self) -> dict[str, np.ndarray]:
        """Current weights in the canonical layout of harness.models.init."""
        raise NotImplementedError

    def replica_states(self) -> list[dict[str, np.ndarray]]:
        """The weights held by each data-parallel replica this process drives.

        Single-device trainers have one; a trainer driving several devices in one
        process (MirroredStrategy, sharded JAX, MXNet contexts) returns one per device,
        so tests can check that the replicas stayed in sync.
        """
        return [self.state_dict()]

    @classmethod
    def is_out_of_memory(cls, exc: BaseException) -> bool:
        """Whether ``exc`` means the device (or host) ran out of memory."""
        text = f"{type(exc).__name__}: {exc}"
        return isinstance(exc, MemoryError) or any(m in text for m in cls.oom_markers)

    #: Memory layout of the images the trainer wants from the data source.
    layout: str = "NCHW"

    def close(self) -> None:
        """Release framework resources (process groups, sessions)."""
