"""MXNet's parity probe (harness.backend.ParityProbe), imported only by ``verify``'s
parity process and the parity tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from harness.backend import ParityProbe

from .network import numpy_forward


class MXNetProbe(ParityProbe):
    # Its batch norm blends the biased batch variance into the running variance.
    biased_running_var = True
    # Its float64 kernels fall a little short of 1e-6: batch norm keeps float32
    # precision somewhere (running statistics off by 2**-22 after a step, losses by
    # 1.5e-6 on ResNet-50).
    float64_tolerance = 1e-5

    def forward(self, network, weights, images, training, gpu):
        import mxnet as mx

        device = {"context": mx.gpu(0)} if gpu else {}
        return numpy_forward(network, weights, images, training=training, **device)

    def float64_steps(self, network, steps: int) -> int:
        # On ResNet-50 the looser tolerance is enough for its third step to cross ReLU
        # kinks the reference does not (2e-2 on some layer4 weights): two steps there.
        return min(steps, 2) if network.name == "resnet50" else steps

    def float64(self, trainer: Any) -> Callable[[], dict]:
        """The block cast (the optimiser's states are created at the first update, in
        the parameters' dtype), its batches too, and its losses read without the
        float32 cast of its ``loss_value``."""
        trainer.block.cast("float64")
        device_batch = trainer.device_batch

        def batch(images, labels):
            xs, ys = device_batch(images, labels)
            return [x.astype("float64") for x in xs], ys

        trainer.device_batch = batch
        # the trainer's loss_value sums in float32; read the float64 per-image losses here
        trainer.loss_value = lambda token: (
            sum(float(loss.asnumpy().astype("float64").sum()) for loss in token)
            / trainer.ctx.global_batch
        )
        return lambda: {
            k: p.list_data()[0].asnumpy().astype("float64") for k, p in trainer.params.items()
        }

    def tf32(self) -> bool | None:
        return os.environ.get("MXNET_CUDA_ALLOW_TENSOR_CORE", "1") != "0"
