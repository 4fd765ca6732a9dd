"""ONNX Runtime's parity probe (harness.backend.ParityProbe): the forward pass only (an
inference backend has no trainer), imported only by ``verify``'s parity process."""

from __future__ import annotations

from harness.backend import ParityProbe

from .network import numpy_forward


class OrtProbe(ParityProbe):
    def forward(self, network, weights, images, training, gpu):
        device = {"provider": "cuda"} if gpu else {}
        return numpy_forward(network, weights, images, training=training, **device)

    def tf32(self) -> bool | None:
        return True  # the CUDA execution provider's use_tf32 defaults to 1
