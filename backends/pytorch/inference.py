"""PyTorch inferencer: imported only inside the worker process.

The model file is a ``torch.export`` ExportedProgram (``torch.export.save``, ``.pt2``):
the harness network with the canonical weights, exported in inference mode (batch norm
with its running statistics) with a dynamic batch dimension. It loads with
``torch.export.load`` alone, without the harness's module code, as a deployed model
would, into a module on the run's device (``load``). ``prepare`` has nothing to do in
eager mode; with ``-o compile=true`` it wraps the module in ``torch.compile`` and runs it
once on a batch of the run's size, so compilation is timed as the session time. Every
forward pass runs under ``torch.inference_mode()``; fp16 and bf16 runs use autocast as
the trainer does, and ``-o channels_last=true`` the NHWC memory format on GPUs.
(TorchScript, ``torch.jit``, is deprecated in the PyTorch this harness runs.)
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.backend import Inferencer, WorkerContext
from harness.cpu import thread_policy

from .network import build_module, load_canonical_state
from .trainer import (
    _AMP_DTYPES,
    TorchTrainer,
    _flag,
    apply_threads,
    cuda_memory_peak,
    framework_basics,
    select_device,
)


class TorchInferencer(Inferencer):
    """A TorchScript file of a harness.models network, run in inference mode."""

    suffix = ".pt2"
    format = "torch.export ExportedProgram (torch.export.save)"
    oom_markers = TorchTrainer.oom_markers

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        spec = ctx.spec
        self.threads = apply_threads(thread_policy(spec))
        self.cuda = spec.num_gpus > 0
        self.device = select_device(self.cuda)
        self.memory_format = torch.contiguous_format
        if self.cuda and _flag(spec.options, "channels_last"):
            self.memory_format = torch.channels_last
        self.amp_dtype = _AMP_DTYPES.get(spec.precision)
        self.model: Any = None
        self.compile = _flag(spec.options, "compile")
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def framework_info(self) -> dict[str, Any]:
        return {
            **framework_basics(self.device),
            "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "threads": self.threads,
            "settings": {
                "format": self.format,
                "inference_mode": True,
                "autocast": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else None,
                "memory_format": "channels_last"
                if self.memory_format is torch.channels_last
                else "contiguous",
                "compile": self.compile,
            },
        }

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def export(self, weights: dict[str, np.ndarray], path: Path) -> None:
        module = build_module(self.ctx.network)
        load_canonical_state(module, weights)
        module.eval()
        c, h, w = self.ctx.network.input_shape
        example = torch.zeros((2, c, h, w))
        batch = torch.export.Dim("batch", min=1, max=1 << 20)
        with torch.no_grad():
            program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(path))

    def load(self, path: Path) -> None:
        model = torch.export.load(str(path)).module().to(self.device)
        if self.memory_format is not torch.contiguous_format:
            model = model.to(memory_format=self.memory_format)
        self.model = model

    def prepare(self, batch_size: int) -> None:
        """``-o compile=true``: torch.compile, compiled now for ``batch_size`` images."""
        if not self.compile:
            return
        self.model = torch.compile(self.model)
        c, h, w = self.ctx.network.input_shape
        x = torch.zeros((batch_size, c, h, w), device=self.device)
        self.infer(x.contiguous(memory_format=self.memory_format))
        self.synchronize()

    def device_batch(self, images: np.ndarray) -> Any:
        x = torch.from_numpy(np.ascontiguousarray(images, np.float32))
        if self.cuda:
            x = x.pin_memory().to(self.device, non_blocking=True)
        if self.memory_format is not torch.contiguous_format:
            x = x.contiguous(memory_format=self.memory_format)
        return x

    def infer(self, batch: Any) -> Any:
        with torch.inference_mode(), self._autocast():
            return self.model(batch)

    def synchronize(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def to_numpy(self, output: Any) -> np.ndarray:
        return output.float().cpu().numpy()

    def memory_peak(self) -> dict[str, Any] | None:
        return cuda_memory_peak(self.device)
