"""The numpy tool's parity probe (``python -m harness verify --tools numpy``): the
forward pass of its :class:`~harness_numpy.layers.Model` and a float64 test mode for its
trainer. Named by the harness_parity_probe hook and imported only in the parity process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from harness.backend import ParityProbe

from .layers import Model


class NumpyProbe(ParityProbe):
    def forward(self, network, weights, images, training, gpu):
        if gpu:
            raise RuntimeError("the numpy backend runs on the CPU only")
        # dropout: the parity networks have none (models.parity.without_dropout)
        model = Model(network, weights)
        return model.forward(np.asarray(images, np.float32), train=training)

    def float64_steps(self, network, steps: int) -> int:
        return steps

    def float64(self, trainer: Any) -> Callable[[], dict]:
        """The model rebuilt in float64 from the same weights, its momentum buffers and
        its batches too (its step computes in its inputs' dtype)."""
        trainer.model = Model(trainer.ctx.network, trainer.ctx.initial_weights(), dtype=np.float64)
        trainer.lr, trainer.momentum = np.float64(trainer.lr), np.float64(trainer.momentum)
        trainer.buffers = {key: np.zeros_like(v) for key, v, _ in trainer.model.parameters()}
        trainer.device_batch = lambda images, labels: (
            np.asarray(images, np.float64),
            np.asarray(labels, np.int64),
        )
        return lambda: {key: v.copy() for key, v, _ in trainer.model.parameters()}
