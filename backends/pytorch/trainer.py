"""PyTorch trainer: imported only inside the worker process."""

from __future__ import annotations

import contextlib
import gc
import os
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from harness.backend import SGD_MOMENTUM, Trainer, WorkerContext
from harness.cpu import ThreadPolicy, report, thread_policy

from .network import build_module, canonical_state, load_canonical_state

_AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def _flag(options: dict[str, str], name: str) -> bool:
    return options.get(name, "").lower() in ("1", "true", "yes", "on")


def apply_threads(policy: ThreadPolicy) -> dict[str, Any]:
    """Sets this rank's intra-op and inter-op threads and reads them back.

    One process drives one device, so a rank gets the per-device share; torchrun passes
    the orchestrator's OMP_NUM_THREADS (the same share) through instead of its default 1.
    The inter-op pool can be sized once per process, before any parallel work: in a
    process that already has one (tests), the pool stays and the read-back says so.
    """
    torch.set_num_threads(policy.intra_op_per_device)
    if torch.get_num_interop_threads() != policy.inter_op:
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(policy.inter_op)
    # the processes of this node (a multi-node run's other nodes have their own cores)
    world = int(os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("WORLD_SIZE", "1"))
    per_process = torch.get_num_threads()
    omp = os.environ.get("OMP_NUM_THREADS")  # torchrun's 1 unless the orchestrator's share
    return report(
        intra_op_total=per_process * world,
        intra_op_per_device=per_process,
        inter_op=torch.get_num_interop_threads(),
        devices=world,
        how=f"torch.set_num_threads / set_num_interop_threads in each of {world} "
        "process(es) (one device each), read back with get_num_threads / "
        f"get_num_interop_threads; the process saw OMP_NUM_THREADS={omp}",
    )


def select_device(cuda: bool) -> torch.device:
    """The run's device: this process's GPU (``LOCAL_RANK``, cuDNN autotuning on) or the CPU."""
    if not cuda:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("a GPU run, but torch.cuda.is_available() is False")
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    torch.cuda.set_device(device)
    torch.backends.cudnn.benchmark = True
    return device


def framework_basics(device: torch.device) -> dict[str, Any]:
    """What the trainer's and the inferencer's ``framework_info`` both say."""
    cuda = device.type == "cuda"
    return {
        "framework": "torch",
        "version": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "devices": [torch.cuda.get_device_name(device)] if cuda else ["cpu"],
    }


def cuda_memory_peak(device: torch.device) -> dict[str, Any] | None:
    """The CUDA caching allocator's peaks on ``device`` (None on the CPU)."""
    if device.type != "cuda":
        return None
    return {
        "allocator": "torch.cuda.max_memory_allocated",
        "peak_bytes": int(torch.cuda.max_memory_allocated(device)),
        "reserved_peak_bytes": int(torch.cuda.max_memory_reserved(device)),
    }


class TorchTrainer(Trainer):
    """Trains a harness.models network with torch.nn; DDP when the run has several processes.

    Backend options (``-o KEY=VALUE``): ``compile=true`` wraps the model in
    torch.compile; ``channels_last=true`` uses the NHWC memory format on GPUs;
    ``cuda_events=true`` records every step between two CUDA events on GPUs, so each
    step's device time is known without draining the queue (timing mode "device-events").
    """

    layout = "NCHW"
    oom_markers = ("CUDA out of memory", "OutOfMemoryError", "out of memory", "MemoryError")

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        spec = ctx.spec
        self.threads = apply_threads(thread_policy(spec))
        torch.manual_seed(spec.seed)
        self.cuda = spec.num_gpus > 0
        self.device = select_device(self.cuda)
        self.distributed = ctx.world_size > 1
        if self.distributed:
            dist.init_process_group(
                backend="nccl" if self.cuda else "gloo", timeout=timedelta(minutes=10)
            )

        module = build_module(ctx.network)
        load_canonical_state(module, ctx.initial_weights())
        module.to(self.device)
        self.memory_format = torch.contiguous_format
        # (start, end) CUDA events of the steps since the last device_step_times() call.
        self._step_events: list[tuple[Any, Any]] | None = (
            [] if self.cuda and _flag(spec.options, "cuda_events") else None
        )
        if self.cuda and _flag(spec.options, "channels_last"):
            self.memory_format = torch.channels_last
            module.to(memory_format=self.memory_format)
        self.module = module
        model: nn.Module = module
        if self.distributed:
            ids = [self.device.index] if self.cuda else None
            model = nn.parallel.DistributedDataParallel(module, device_ids=ids)
        # Evaluation runs the plain module, compiled too when asked: each rank its shard,
        # no collective per batch (rank 0's batch-norm statistics are broadcast once,
        # before the first evaluation after training; see _sync_buffers).
        self.eval_model: nn.Module = module
        if _flag(spec.options, "compile"):
            model = torch.compile(model)  # type: ignore[assignment]
            self.eval_model = torch.compile(module)  # type: ignore[assignment]
        self.model = model
        self.model.train()
        self.loss_fn = nn.CrossEntropyLoss()
        self.amp_dtype = _AMP_DTYPES.get(spec.precision)
        self._fresh_optimiser()
        self._buffers_stale = False  # batch-norm statistics may differ across ranks
        # The random state a fresh trainer starts training with (dropout), for reset_state.
        self._rng_state = torch.random.get_rng_state()
        self._cuda_rng_state = torch.cuda.get_rng_state(self.device) if self.cuda else None
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def _fresh_optimiser(self) -> None:
        spec = self.ctx.spec
        self.optimizer = torch.optim.SGD(
            self.module.parameters(), lr=spec.learning_rate, momentum=SGD_MOMENTUM
        )
        self.scaler = (
            torch.amp.GradScaler("cuda") if spec.precision == "fp16" and self.cuda else None
        )

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def framework_info(self) -> dict[str, Any]:
        return {
            **framework_basics(self.device),
            "distributed": dist.get_backend() if self.distributed else None,
            "nodes": self.ctx.nodes,
            "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "threads": self.threads,
            "compiled": _flag(self.ctx.spec.options, "compile"),
        }

    def device_batch(self, images: np.ndarray, labels: np.ndarray) -> Any:
        x = torch.from_numpy(images)
        y = torch.from_numpy(labels).long()
        if self.cuda:
            x = x.pin_memory().to(self.device, non_blocking=True)
            y = y.pin_memory().to(self.device, non_blocking=True)
        if self.memory_format is not torch.contiguous_format:
            x = x.contiguous(memory_format=self.memory_format)
        return x, y

    def train_step(self, batch: Any) -> Any:
        if self._step_events is None:
            return self._train_step(batch)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        loss = self._train_step(batch)
        end.record()
        self._step_events.append((start, end))
        return loss

    def device_step_times(self) -> list[float] | None:
        """Device seconds of each step since the last call (the loop calls it after a
        window's synchronize, so every event has completed); None without cuda_events."""
        if self._step_events is None:
            return None
        times = [start.elapsed_time(end) / 1000.0 for start, end in self._step_events]
        self._step_events.clear()
        return times

    def _train_step(self, batch: Any) -> Any:
        x, y = batch
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss = self.loss_fn(self.model(x), y)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self._buffers_stale = self.distributed
        return loss.detach()

    def synchronize(self, token: Any) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def loss_value(self, token: Any) -> float:
        return float(token.item())

    def _sync_buffers(self) -> None:
        """Rank 0's batch-norm statistics to every rank (DDP broadcasts them before each
        training forward, so after a step each rank holds its own update of them)."""
        if self._buffers_stale:
            for buffer in self.module.buffers():
                dist.broadcast(buffer, 0)
            self._buffers_stale = False

    def _eval_forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self.module.eval()
        try:
            with torch.no_grad(), self._autocast():
                logits = self.eval_model(x)
                loss = nn.functional.cross_entropy(logits.float(), y, reduction="sum")
                correct = (logits.argmax(dim=1) == y).sum()
        finally:
            self.module.train()
        return loss, correct

    def prepare_evaluation(self) -> None:
        """Eager PyTorch has nothing to prepare; with ``compile=true`` this compiles the
        evaluation forward for batches of ``batch_size`` images."""
        if self.eval_model is self.module:
            return
        c, h, w = self.ctx.network.input_shape
        size = self.ctx.process_batch
        x = torch.zeros((size, c, h, w), device=self.device)
        x = x.contiguous(memory_format=self.memory_format)
        y = torch.zeros(size, dtype=torch.long, device=self.device)
        loss, _ = self._eval_forward(x, y)
        loss.item()

    def evaluate(self, batch: Any) -> tuple[float, int]:
        self._sync_buffers()
        loss, correct = self._eval_forward(*batch)
        return float(loss.item()), int(correct.item())

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        if not self.distributed:
            return list(values)
        total = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return [float(v) for v in total.tolist()]

    def reset_state(self) -> None:
        """Initial weights and batch-norm statistics, a new optimiser (no momentum) and
        loss scaler, and the random state of a fresh trainer."""
        load_canonical_state(self.module, self.ctx.initial_weights())
        with torch.no_grad():
            for name, buffer in self.module.named_buffers():
                if name.endswith("num_batches_tracked"):
                    buffer.zero_()
        self._buffers_stale = False
        self._fresh_optimiser()
        torch.random.set_rng_state(self._rng_state)
        if self._cuda_rng_state is not None:
            torch.cuda.set_rng_state(self._cuda_rng_state, self.device)

    def memory_peak(self) -> dict[str, Any] | None:
        return cuda_memory_peak(self.device)

    def state_dict(self) -> dict[str, np.ndarray]:
        if self.distributed:
            self._sync_buffers()
        return canonical_state(self.module)

    def close(self) -> None:
        """Tears the process group down in order: the device's queue drained, every rank
        at the barrier (none leaves while a peer still talks to it), DDP's reducer
        released, then the group destroyed. A rank that left early made the others
        abort at exit ("terminate called without an active exception")."""
        if not (self.distributed and dist.is_initialized()):
            return
        try:
            if self.cuda:
                torch.cuda.synchronize(self.device)
            dist.barrier()
        finally:
            self.model = self.module  # DDP's reducer holds the group: drop it first
            gc.collect()
            dist.destroy_process_group()
