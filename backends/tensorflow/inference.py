"""TensorFlow inference: imported only inside the worker process.

Model file: a **SavedModel** (``tf.saved_model.save``), TensorFlow's own format, a
folder (``saved_model.pb``, ``variables/``, ``fingerprint.pb``); its size is the sum of
its files. It holds the variables of the network (canonical weights translated by
network.py: HWIO convolutions, (in, out) dense kernels, batch-norm running statistics)
and one ``tf.function``, ``serve``, with the input signature ``images`` float32
``(batch, H, W, C)`` (NHWC, a symbolic batch) returning the float32 logits ``(batch,
classes)`` in inference mode: batch norm with the running statistics, dropout off. The
graph is the trainer's own (``TFNetwork.forward(training=False)``), with the run's
precision baked in (fp16/bf16: computation cast as in training, float32 variables and
logits). ``tf.saved_model.load`` restores it without any harness code, e.g.
``tf.saved_model.load(path).serve(images_nhwc)`` or the ``serving_default`` signature.

Timed phases: ``load`` is ``tf.saved_model.load`` on the run's device (variables
restored, functions rebuilt); ``prepare`` traces a wrapper ``tf.function`` for the exact
batch shape (with ``-o xla=true``: ``jit_compile=True``, as the trainer's option) and
runs it once on zeros, because TensorFlow optimises a function's graph (Grappler) and
XLA compiles it at its first execution, not when it is traced. Images arrive NCHW and
are transposed to NHWC on the host in ``device_batch`` (untimed, as the training
pipeline delivers NHWC batches).

Threads and devices: ``devices.configure`` as in training (the CPU policy on
TensorFlow's two pools; GPUs with memory growth). Inference runs on the run's first
device.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from harness.backend import Inferencer, WorkerContext

from . import devices as dev
from .network import TFNetwork
from .trainer import _DTYPES, TFTrainer, _flag

SIGNATURE = "serving_default"


class _Servable(tf.Module):
    """What the SavedModel holds: the variables and the ``serve`` function."""

    def __init__(self, net: TFNetwork, dtype: tf.DType) -> None:
        super().__init__(name="harness_network")
        self.net_variables = dict(net.variables)  # tracked, saved with the model
        c, h, w = net.network.input_shape
        spec = tf.TensorSpec([None, h, w, c], tf.float32, name="images")

        def serve(images: tf.Tensor) -> tf.Tensor:
            logits, _ = net.forward(images, training=False, dtype=dtype)
            return logits

        self.serve = tf.function(serve, input_signature=[spec])


class TFInferencer(Inferencer):
    """SavedModel export, ``tf.saved_model.load``, a per-batch-size traced function."""

    suffix = ".savedmodel"
    format = "TensorFlow SavedModel (folder)"
    oom_markers = TFTrainer.oom_markers

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        spec = ctx.spec
        self.devices = dev.configure(spec)  # before any TensorFlow op
        self.device = self.devices[0]
        self.gpu = spec.num_gpus > 0
        self.xla = _flag(spec.options, "xla")
        self.dtype = _DTYPES[spec.precision]
        self.model: Any = None
        self.run: Any = None
        self._last: Any = None
        if self.gpu:
            tf.config.experimental.reset_memory_stats("GPU:0")

    def framework_info(self) -> dict[str, Any]:
        return {
            **dev.framework_basics(self.gpu, [self.device]),
            "format": "SavedModel (tf.saved_model.save), signature 'serving_default'",
            "xla": self.xla,
            "precision": self.ctx.spec.precision,
            "threads": dev.threads(len(self.devices)),
            "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }

    def export(self, weights: dict[str, np.ndarray], path: Path) -> None:
        with tf.device("/cpu:0"):
            net = TFNetwork(self.ctx.network, explicit_padding=self.gpu)
            net.create_variables(weights)
            servable = _Servable(net, self.dtype)
            signature = servable.serve.get_concrete_function()
            tf.saved_model.save(servable, str(path), signatures={SIGNATURE: signature})

    def load(self, path: Path) -> None:
        with tf.device(self.device):
            self.model = tf.saved_model.load(str(path))
        if not hasattr(self.model, "serve"):
            raise ValueError(f"{path}: a SavedModel without the harness's 'serve' function")

    def prepare(self, batch_size: int) -> None:
        c, h, w = self.ctx.network.input_shape
        spec = tf.TensorSpec([batch_size, h, w, c], tf.float32)
        serve = self.model.serve
        self.run = tf.function(lambda x: serve(x), jit_compile=self.xla)
        self.run.get_concrete_function(spec)
        zeros = self.device_batch(np.zeros((batch_size, c, h, w), np.float32))
        self.to_numpy(self.infer(zeros))  # Grappler / XLA run at the first execution
        self._last = None

    def device_batch(self, images: np.ndarray) -> Any:
        nhwc = np.ascontiguousarray(np.transpose(images, (0, 2, 3, 1)), np.float32)
        with tf.device(self.device):
            return tf.identity(nhwc)

    def infer(self, batch: Any) -> Any:
        with tf.device(self.device):
            self._last = self.run(batch)
        return self._last

    def synchronize(self) -> None:
        if self.gpu:
            tf.test.experimental.sync_devices()
        elif self._last is not None:
            self._last.numpy()  # a CPU tensor: a view once the op has run

    def to_numpy(self, output: Any) -> np.ndarray:
        return np.asarray(output.numpy(), dtype=np.float32)

    def memory_peak(self) -> dict[str, Any] | None:
        if not self.gpu:
            return None
        peak = int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
        return {"allocator": "tf.config.experimental.get_memory_info", "peak_bytes": peak}
