"""TensorFlow's parity probe (harness.backend.ParityProbe), imported only by ``verify``'s
parity process and the parity tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.backend import ParityProbe
from harness.models import parity as P

from .network import numpy_forward, to_canonical


class TFProbe(ParityProbe):
    def forward(self, network, weights, images, training, gpu):
        device = {"device": "/GPU:0"} if gpu else {}
        return numpy_forward(network, weights, images, training=training, **device)

    def float64_steps(self, network, steps: int) -> int:
        # The trainer normalises with FusedBatchNormV3, which has no float64 kernel
        # (half, bfloat16 and float only): networks without batch norm only.
        return 0 if P.batch_norm_paths(network) else steps

    def float64(self, trainer: Any) -> Callable[[], dict]:
        """Its variables made again in float64 (weights, running statistics, momentum),
        its computation dtype float64 and its step traced afresh; the trainer casts
        gradients and SGD constants to each variable's dtype."""
        import numpy as np
        import tensorflow as tf

        if trainer.strategy is not None:
            raise ValueError("the float64 test mode runs on one device")
        net = trainer.net
        with trainer._scope():
            net.create_variables(trainer.ctx.initial_weights(), dtype=np.float64)
            trainer.params = net.trainable()
            trainer.buffers = [
                tf.Variable(tf.zeros(p.shape, tf.float64), trainable=False) for p in trainer.params
            ]
        trainer.dtype = tf.float64
        trainer._grads_fn = trainer._grads
        trainer._train = tf.function(trainer._train_step)
        return lambda: {
            key: to_canonical(var.numpy(), net.kinds[key], np.float64)
            for key, var in net.variables.items()
        }

    def tf32(self) -> bool | None:
        import tensorflow as tf

        return bool(tf.config.experimental.tensor_float_32_execution_enabled())
