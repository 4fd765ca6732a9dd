"""JAX (Flax) inference: imported only inside the worker process.

Model file: the Flax variables serialised with ``flax.serialization.to_bytes`` (msgpack),
Flax's own checkpoint format: ``{"params": ..., "batch_stats": ...}`` in the module's
layout (network.py: HWIO kernels, (in, out) dense kernels with the rows after a Flatten
in (H, W, C) order, batch-norm scale/bias and mean/var). The file holds weights, not a
program: the Flax module is rebuilt from ``harness.models`` at load (what a Flax user
does with a checkpoint; its variable structure is traced when the inferencer is built,
untimed), and ``flax.serialization.from_bytes`` restores the file against that
structure, so a file of another network is refused.

Timed phases: ``load`` reads the file, restores it and puts the variables on the device
(waiting until they are there); ``prepare`` compiles the forward pass ahead of time for
the batch size (``jax.jit(...).lower(variables, images).compile()``), so the first
inference runs compiled code; ``infer`` calls that executable (``train=False``: batch
norm with the running statistics, dropout off; fp16/bf16 as in training, computation
in that dtype, logits cast to float32). A batch of another size (a last partial batch
of the test split) runs through the same ``jax.jit``, which compiles it once.

Images arrive NCHW and are transposed to NHWC on the host in ``device_batch``
(untimed, as the training pipeline delivers NHWC batches). Threads: ``PJRT_NPROC`` from
the backend's ``run_env``, as in training; inference runs on the run's first device.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from harness.backend import Inferencer, WorkerContext

from .network import build_module, to_variables, variable_shapes
from .precision import COMPUTE_DTYPES
from .trainer import JaxTrainer, compile_cache, select_devices, xla_threads


class JaxInferencer(Inferencer):
    """Flax msgpack variables, an ahead-of-time compiled forward per batch size."""

    suffix = ".msgpack"
    format = "Flax msgpack (flax.serialization.to_bytes of the variables)"
    oom_markers = JaxTrainer.oom_markers

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        spec = ctx.spec
        self.cache_dir = compile_cache(spec.options)
        self.device = select_devices(spec)[0]
        self.module = build_module(ctx.network, COMPUTE_DTYPES[spec.precision])
        module = self.module

        def forward(variables: Any, images: jax.Array) -> jax.Array:
            return module.apply(variables, images, train=False).astype(jnp.float32)

        self._jit = jax.jit(forward)
        # The module's variable structure (abstract: nothing allocated), traced once here
        # from harness.models, as a Flax user has their module before reading a checkpoint.
        self._target = variable_shapes(ctx.network)
        self.variables: Any = None
        self.compiled: Any = None
        self.batch_size = 0
        self._last: Any = None

    def framework_info(self) -> dict[str, Any]:
        return {
            "framework": "jax",
            "version": jax.__version__,
            "flax": flax.__version__,
            "platform": self.device.platform,
            "devices": [f"{self.device.platform}:{self.device.id} {self.device.device_kind}"],
            "format": "flax.serialization msgpack of the variables (params, batch_stats)",
            "compile": "jax.jit(...).lower(...).compile() per batch size (ahead of time)",
            "compile_cache": self.cache_dir,
            "precision": self.ctx.spec.precision,
            "threads": xla_threads(1),
            "xla_flags": os.environ.get("XLA_FLAGS"),
            "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }

    def export(self, weights: dict[str, np.ndarray], path: Path) -> None:
        variables = to_variables(self.ctx.network, weights)
        Path(path).write_bytes(serialization.to_bytes(variables))

    def load(self, path: Path) -> None:
        data = Path(path).read_bytes()
        restored = serialization.from_bytes(self._target, data)
        want = jax.tree_util.tree_map(lambda s: tuple(s.shape), self._target)
        got = jax.tree_util.tree_map(np.shape, restored)
        if want != got:
            raise ValueError(f"{path}: the variables' shapes are not the network's")
        self.variables = jax.block_until_ready(jax.device_put(restored, self.device))

    def prepare(self, batch_size: int) -> None:
        c, h, w = self.ctx.network.input_shape
        images = jax.ShapeDtypeStruct((batch_size, h, w, c), jnp.float32)
        self.compiled = self._jit.lower(self.variables, images).compile()
        self.batch_size = batch_size

    def device_batch(self, images: np.ndarray) -> Any:
        nhwc = np.ascontiguousarray(np.transpose(images, (0, 2, 3, 1)), np.float32)
        return jax.block_until_ready(jax.device_put(nhwc, self.device))

    def infer(self, batch: Any) -> Any:
        run = self.compiled if batch.shape[0] == self.batch_size else self._jit
        self._last = run(self.variables, batch)
        return self._last

    def synchronize(self) -> None:
        if self._last is not None:
            jax.block_until_ready(self._last)

    def to_numpy(self, output: Any) -> np.ndarray:
        return np.asarray(output, dtype=np.float32)

    def memory_peak(self) -> dict[str, Any] | None:
        """XLA's allocator peak on the GPU (``peak_bytes_in_use``); None on the CPU."""
        if self.device.platform == "cpu":
            return None
        stats = self.device.memory_stats() or {}
        return {
            "allocator": "jax device.memory_stats peak_bytes_in_use",
            "peak_bytes": int(stats.get("peak_bytes_in_use", 0)),
        }
