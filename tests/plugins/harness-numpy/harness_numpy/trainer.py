"""The numpy tool's trainer: plain NumPy on the CPU, imported only in the worker."""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.backend import SGD_MOMENTUM, Trainer, WorkerContext

from .layers import Model, softmax_cross_entropy


class NumpyTrainer(Trainer):
    """Softmax cross-entropy and SGD with momentum on a :class:`Model`, one CPU device.

    Raises ValueError in ``__init__`` for networks with layers it cannot train, and
    RuntimeError for GPU or multi-device runs.
    """

    layout = "NCHW"

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        spec = ctx.spec
        if spec.num_gpus > 0:
            raise RuntimeError("the numpy backend runs on the CPU only: use --num-gpus -1")
        if ctx.world_size > 1 or ctx.local_devices > 1:
            raise RuntimeError("the numpy backend drives a single device: use --cpu-devices 1")
        self.model = Model(ctx.network, ctx.initial_weights(), seed=spec.seed + ctx.rank)
        self.lr = np.float32(spec.learning_rate)
        self.momentum = np.float32(SGD_MOMENTUM)
        self.buffers = {key: np.zeros_like(value) for key, value, _ in self.model.parameters()}

    def framework_info(self) -> dict[str, Any]:
        return {"framework": "numpy", "version": np.__version__, "devices": ["cpu (numpy)"]}

    def device_batch(self, images: np.ndarray, labels: np.ndarray) -> Any:
        return np.ascontiguousarray(images, dtype=np.float32), np.asarray(labels, dtype=np.int64)

    def train_step(self, batch: Any) -> Any:
        images, labels = batch
        losses, grad = softmax_cross_entropy(self.model.forward(images, train=True), labels)
        self.model.backward(grad / len(labels))  # the loss is the batch mean
        # PyTorch's SGD: buf = momentum * buf + grad; weight -= lr * buf (buf starts at 0).
        for key, value, g in self.model.parameters():
            buf = self.buffers[key]
            buf *= self.momentum
            buf += g
            value -= self.lr * buf
        return float(losses.mean())

    def synchronize(self, token: Any) -> None:
        """NumPy computes eagerly on the host: nothing is queued."""

    def loss_value(self, token: Any) -> float:
        return float(token)

    def evaluate(self, batch: Any) -> tuple[float, int]:
        images, labels = batch
        logits = self.model.forward(images, train=False)
        losses, _ = softmax_cross_entropy(logits, labels)
        return float(losses.sum()), int((logits.argmax(axis=1) == labels).sum())

    def state_dict(self) -> dict[str, np.ndarray]:
        return self.model.state_dict()

    def reset_state(self) -> None:
        """Initial weights and statistics, zero momentum, the dropout seed of a new trainer."""
        ctx = self.ctx
        self.model = Model(ctx.network, ctx.initial_weights(), seed=ctx.spec.seed + ctx.rank)
        self.buffers = {key: np.zeros_like(value) for key, value, _ in self.model.parameters()}
