"""PyTorch's parity probe (harness.backend.ParityProbe), imported only by ``verify``'s
parity process and the parity tests; torch is imported by its methods."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.backend import ParityProbe

from .network import numpy_forward


class TorchProbe(ParityProbe):
    def forward(self, network, weights, images, training, gpu):
        device = {"device": "cuda"} if gpu else {}
        return numpy_forward(network, weights, images, training=training, **device)

    def float64_steps(self, network, steps: int) -> int:
        return steps

    def float64(self, trainer: Any) -> Callable[[], dict]:
        """The module doubled in place (the optimiser holds the same Parameters) and its
        batches too; the state read back without the float32 cast."""
        import torch

        trainer.module.double()
        device_batch = trainer.device_batch

        def batch(images, labels):
            x, y = device_batch(images, labels)
            return x.to(torch.float64), y

        trainer.device_batch = batch
        return lambda: {
            k: v.detach().cpu().numpy().copy()
            for k, v in trainer.module.state_dict().items()
            if not k.endswith("num_batches_tracked")
        }

    def tf32(self) -> bool | None:
        import torch

        return bool(torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32)
