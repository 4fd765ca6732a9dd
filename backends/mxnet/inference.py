"""MXNet (Gluon) inference: imported only inside the worker process.

Model file: MXNet's own export format, the pair a hybridized block's ``export`` writes,
kept together in one folder (``<name>.mxnet/``) so the model is one path whose size is
the sum of its two files:

- ``network-symbol.json``: the graph (symbol JSON), input ``data`` NCHW float32, output
  the logits; batch norm in inference mode (``use_global_stats`` at run time), dropout
  the identity outside training;
- ``network-0000.params``: the weights (``arg:``/``aux:`` NDArrays; the canonical layout,
  which is Gluon's own).

The graph is the trainer's own block (network.py: Pool, Residual, HybridConcurrent),
hybridized, run once so Gluon records its graph, then exported. ``load`` is
``gluon.SymbolBlock.imports`` on the run's context, which needs no harness code (any
MXNet user can load the pair). ``prepare`` hybridizes it as the trainer does
(``static_alloc``, ``static_shape``; ``-o hybridize=false``: not) and runs one forward
at the batch size on zeros, since Gluon builds and allocates the cached graph for a
shape at its first call. ``synchronize`` is ``mx.nd.waitall()``.

Precision: fp32 only. MXNet's fp16/bf16 are AMP modes of training; an AMP-converted
inference graph (``amp.convert_hybrid_block``) needs a GPU (fp16) or AVX-512 (bf16),
neither of which the harness's tests have, so other precisions are refused with one
line rather than run untested. Inference runs on the run's first context.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mxnet as mx
import numpy as np
from mxnet import gluon, nd

from harness.backend import Inferencer, WorkerContext

from .network import build_block, load_canonical_state
from .trainer import MXNetTrainer, _contexts, _flag, mxnet_threads

SYMBOL_FILE = "network-symbol.json"
PARAMS_FILE = "network-0000.params"
INPUT_NAME = "data"


class MXNetInferencer(Inferencer):
    """Exported symbol + params, ``SymbolBlock.imports``, a hybridized cached graph."""

    suffix = ".mxnet"
    format = "MXNet HybridBlock.export (symbol JSON + params, in a folder)"
    oom_markers = MXNetTrainer.oom_markers

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        spec = ctx.spec
        if spec.precision != "fp32":
            raise RuntimeError(
                f"MXNet inference runs fp32 only ({spec.precision} is an AMP training mode "
                "in this harness): use --precision fp32"
            )
        self.gpu = spec.num_gpus > 0
        self.context = _contexts(ctx)[0]
        self.hybridized = _flag(spec.options, "hybridize", True)
        self.block: Any = None

    def framework_info(self) -> dict[str, Any]:
        features = mx.runtime.Features()
        return {
            "framework": "mxnet",
            "version": mx.__version__,
            "devices": [str(self.context)],
            "format": f"HybridBlock.export: {SYMBOL_FILE} + {PARAMS_FILE}",
            "hybridized": self.hybridized,
            "cuda": features.is_enabled("CUDA"),
            "mkldnn": features.is_enabled("MKLDNN"),
            "threads": mxnet_threads(1),
            "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }

    def export(self, weights: dict[str, np.ndarray], path: Path) -> None:
        network = self.ctx.network
        block, params = build_block(network)
        block.initialize(mx.init.Zero(), ctx=mx.cpu())
        load_canonical_state(params, weights)
        block.hybridize()
        block(nd.zeros((1, *network.input_shape), ctx=mx.cpu()))  # records the graph
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as scratch:
            prefix = os.path.join(scratch, "network")
            block.export(prefix, epoch=0)
            os.replace(f"{prefix}-symbol.json", folder / SYMBOL_FILE)
            os.replace(f"{prefix}-0000.params", folder / PARAMS_FILE)

    def load(self, path: Path) -> None:
        folder = Path(path)
        with warnings.catch_warnings():  # "Cannot decide type for ... data": it is float32
            warnings.filterwarnings("ignore", "Cannot decide type", UserWarning)
            self.block = gluon.SymbolBlock.imports(
                str(folder / SYMBOL_FILE), [INPUT_NAME], str(folder / PARAMS_FILE), ctx=self.context
            )
        for param in self.block.collect_params().values():
            param.data(self.context).wait_to_read()

    def prepare(self, batch_size: int) -> None:
        if self.hybridized:
            self.block.hybridize(static_alloc=True, static_shape=True)
        zeros = self.device_batch(np.zeros((batch_size, *self.ctx.network.input_shape), np.float32))
        self.infer(zeros)
        mx.nd.waitall()

    def device_batch(self, images: np.ndarray) -> Any:
        batch = nd.array(np.ascontiguousarray(images, np.float32), ctx=self.context)
        batch.wait_to_read()
        return batch

    def infer(self, batch: Any) -> Any:
        return self.block(batch)

    def synchronize(self) -> None:
        mx.nd.waitall()

    def to_numpy(self, output: Any) -> np.ndarray:
        return output.asnumpy().astype(np.float32)

    def memory_peak(self) -> dict[str, Any] | None:
        if not self.gpu:
            return None
        mx.nd.waitall()
        free, total = mx.context.gpu_memory_info(self.context.device_id)
        return {
            "allocator": "mx.context.gpu_memory_info: device-wide memory in use at the end "
            "(MXNet has no peak counter)",
            "used_bytes_at_end": int(total - free),
        }
