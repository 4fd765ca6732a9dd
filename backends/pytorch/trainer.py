"""PyTorch trainer: imported only inside the worker process."""

from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from harness.backend import SGD_MOMENTUM, Trainer, WorkerContext

from .network import build_module, canonical_state, load_canonical_state

_AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def _flag(options: dict[str, str], name: str) -> bool:
    return options.get(name, "").lower() in ("1", "true", "yes", "on")


class TorchTrainer(Trainer):
    """Trains a harness.models network with torch.nn; DDP when the run has several processes.

    Backend options (``-o KEY=VALUE``): ``compile=true`` wraps the model in
    torch.compile; ``channels_last=true`` uses the NHWC memory format on GPUs.
    """

    layout = "NCHW"
    oom_markers = ("CUDA out of memory", "OutOfMemoryError", "out of memory", "MemoryError")

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        spec = ctx.spec
        if spec.threads:
            torch.set_num_threads(spec.threads)
        torch.manual_seed(spec.seed)
        self.cuda = spec.num_gpus > 0
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if self.cuda:
            if not torch.cuda.is_available():
                raise RuntimeError("a GPU run, but torch.cuda.is_available() is False")
            self.device = torch.device("cuda", local_rank)
            torch.cuda.set_device(self.device)
            torch.backends.cudnn.benchmark = True
        else:
            self.device = torch.device("cpu")
        self.distributed = ctx.world_size > 1
        if self.distributed:
            dist.init_process_group(
                backend="nccl" if self.cuda else "gloo", timeout=timedelta(minutes=10)
            )

        module = build_module(ctx.network)
        load_canonical_state(module, ctx.initial_weights())
        module.to(self.device)
        self.memory_format = torch.contiguous_format
        if self.cuda and _flag(spec.options, "channels_last"):
            self.memory_format = torch.channels_last
            module.to(memory_format=self.memory_format)
        self.module = module
        model: nn.Module = module
        if self.distributed:
            ids = [self.device.index] if self.cuda else None
            model = nn.parallel.DistributedDataParallel(module, device_ids=ids)
        if _flag(spec.options, "compile"):
            model = torch.compile(model)  # type: ignore[assignment]
        self.model = model
        self.model.train()
        self.optimizer = torch.optim.SGD(
            module.parameters(), lr=spec.learning_rate, momentum=SGD_MOMENTUM
        )
        self.loss_fn = nn.CrossEntropyLoss()
        self.amp_dtype = _AMP_DTYPES.get(spec.precision)
        self.scaler = (
            torch.amp.GradScaler("cuda") if spec.precision == "fp16" and self.cuda else None
        )
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def framework_info(self) -> dict[str, Any]:
        if self.cuda:
            devices = [torch.cuda.get_device_name(self.device)]
        else:
            devices = [f"cpu ({torch.get_num_threads()} threads)"]
        return {
            "framework": "torch",
            "version": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if self.cuda else None,
            "devices": devices,
            "distributed": dist.get_backend() if self.distributed else None,
            "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
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
        return loss.detach()

    def synchronize(self, token: Any) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def loss_value(self, token: Any) -> float:
        return float(token.item())

    def evaluate(self, batch: Any) -> tuple[float, int]:
        x, y = batch
        self.model.eval()
        try:
            with torch.no_grad(), self._autocast():
                logits = self.model(x)
                loss = nn.functional.cross_entropy(logits.float(), y, reduction="sum")
                correct = (logits.argmax(dim=1) == y).sum()
        finally:
            self.model.train()
        return float(loss.item()), int(correct.item())

    def memory_peak(self) -> dict[str, Any] | None:
        if not self.cuda:
            return None
        return {
            "allocator": "torch.cuda.max_memory_allocated",
            "peak_bytes": int(torch.cuda.max_memory_allocated(self.device)),
            "reserved_peak_bytes": int(torch.cuda.max_memory_reserved(self.device)),
        }

    def state_dict(self) -> dict[str, np.ndarray]:
        return canonical_state(self.module)

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()
