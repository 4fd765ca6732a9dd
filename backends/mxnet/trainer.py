"""MXNet (Gluon) trainer: imported only inside the worker process.

One process drives every device of the run: a list of contexts (``mx.cpu(i)`` for
``--cpu-devices N``, ``mx.gpu(i)`` for each of the ``--num-gpus`` visible GPUs), each
batch split across them with ``gluon.utils.split_and_load``, gradients summed through a
kvstore ('local' on the CPU, 'device' on GPUs) and applied by ``gluon.Trainer``.

The recipe equals PyTorch's: per-sample softmax cross-entropy, backward of their sum on
every device, then ``Trainer.step(global_batch)``, which sets rescale_grad to
1 / global_batch, so the gradient is that of the mean loss over the global batch.
MXNet's momentum SGD keeps ``mom = 0.9 * mom - lr * grad; w += mom``, PyTorch's
``buf = 0.9 * buf + grad; w -= lr * buf``: with a constant learning rate and zero
initial state, mom = -lr * buf, so the updates are identical.

Batch-norm running statistics are not reduced by the kvstore: every device updates its
own from its shard. As PyTorch DDP (which broadcasts rank 0's buffers every step) the
run's statistics are those of device 0: they are copied to the other devices before
validation and before weights are exported, so all replicas hold identical state.

Memory: MXNet has no allocator peak counter. On the CPU ``memory_peak`` is None; on GPUs
it reports the device-wide memory in use at the end of the run
(``mx.context.gpu_memory_info``), labelled as such, without a ``peak_bytes`` figure.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from harness.backend import SGD_MOMENTUM, Trainer, WorkerContext
from harness.cpu import report
from harness.models.init import is_buffer

from .network import build_block, canonical_state, load_canonical_state

# precision -> (AMP target dtype, the only device kind where MXNet 1.9 supports it)
_AMP = {"bf16": ("bfloat16", "cpu"), "fp16": ("float16", "gpu")}


def _flag(options: dict[str, str], name: str, default: bool) -> bool:
    value = options.get(name)
    if value is None:
        return default
    return value.lower() in ("1", "true", "yes", "on")


def _openmp_max_threads() -> int | None:
    """omp_get_max_threads() of the OpenMP runtime loaded with MXNet: the team size its
    operators use (MXNet takes it as is when OMP_NUM_THREADS is set)."""
    with open("/proc/self/maps") as handle:
        paths = {line.split()[-1] for line in handle if "/lib" in line}
    for marker in ("libgomp", "libiomp", "libomp"):
        for path in sorted(paths):
            if marker in os.path.basename(path):
                return int(ctypes.CDLL(path).omp_get_max_threads())
    return None


def mxnet_threads(devices: int) -> dict[str, Any]:
    """framework_info["threads"]: the OpenMP team size read back from the runtime and the
    engine's workers per CPU context from the environment MXNet started with (MXNet has
    no getter for it; it reads the variable once, when the engine starts)."""
    try:
        per_device = _openmp_max_threads()
    except (OSError, AttributeError):
        per_device = None
    workers = int(os.environ.get("MXNET_CPU_WORKER_NTHREADS", "1"))
    return report(
        intra_op_total=per_device * devices if per_device is not None else None,
        intra_op_per_device=per_device,
        inter_op=workers,
        devices=devices,
        how="OMP_NUM_THREADS read back with the OpenMP runtime's omp_get_max_threads "
        f"(one team per operator, {devices} context(s) running concurrently); "
        "MXNET_CPU_WORKER_NTHREADS (engine workers per context) from the environment",
    )


def _contexts(ctx: WorkerContext) -> list[mx.Context]:
    spec = ctx.spec
    if spec.num_gpus <= 0:
        return [mx.cpu(i) for i in range(ctx.local_devices)]
    visible = mx.context.num_gpus()
    if visible < spec.num_gpus:
        raise RuntimeError(
            f"the run asks for {spec.num_gpus} GPU(s) but MXNet sees {visible} "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); "
            "a GPU run needs a CUDA build of MXNet, e.g. pip install mxnet-cu112==1.9.1"
        )
    return [mx.gpu(i) for i in range(spec.num_gpus)]


class MXNetTrainer(Trainer):
    """Trains a harness.models network with Gluon on one or several contexts.

    Backend options (``-o KEY=VALUE``): ``hybridize=false`` runs the blocks imperatively
    (default: hybridize with static_alloc and static_shape); ``kvstore=NAME`` overrides
    the kvstore type ('local' on the CPU, 'device' on GPUs).
    """

    layout = "NCHW"
    oom_markers = ("out of memory", "Failed to allocate", "std::bad_alloc", "MemoryError")

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        spec = ctx.spec
        self.contexts = _contexts(ctx)
        self.gpu = spec.num_gpus > 0
        self.amp = spec.precision in _AMP
        if self.amp:
            target, kind = _AMP[spec.precision]
            if kind != ("gpu" if self.gpu else "cpu"):
                raise RuntimeError(f"MXNet supports {spec.precision} on the {kind} only")
            from mxnet.contrib import amp

            amp.init(target_dtype=target)  # patches the operators: before building
        mx.random.seed(spec.seed)
        self.block, self.params = build_block(ctx.network)
        self.block.initialize(mx.init.Zero(), ctx=self.contexts)
        load_canonical_state(self.params, ctx.initial_weights())
        self.loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
        self.hybridized = _flag(spec.options, "hybridize", True)
        if self.hybridized:
            self.block.hybridize(static_alloc=True, static_shape=True)
            self.loss_fn.hybridize(static_alloc=True, static_shape=True)
        self.kvstore = spec.options.get("kvstore", "device" if self.gpu else "local")
        self._fresh_trainer()
        self.buffers = [p for k, p in self.params.items() if is_buffer(k)]
        self._stale_replicas = False

    def _fresh_trainer(self) -> None:
        """A new gluon.Trainer: zero momentum, new kvstore, new AMP loss scaler."""
        spec = self.ctx.spec
        self.trainer = gluon.Trainer(
            self.block.collect_params(),
            "sgd",
            {"learning_rate": spec.learning_rate, "momentum": SGD_MOMENTUM, "wd": 0.0},
            kvstore=self.kvstore,
        )
        if self.amp:
            from mxnet.contrib import amp

            amp.init_trainer(self.trainer)

    def framework_info(self) -> dict[str, Any]:
        features = mx.runtime.Features()
        multi = len(self.contexts) > 1
        return {
            "framework": "mxnet",
            "version": mx.__version__,
            "devices": [str(c) for c in self.contexts],
            "strategy": f"gluon.Trainer, kvstore {self.kvstore!r}" if multi else None,
            "hybridized": self.hybridized,
            "cuda": features.is_enabled("CUDA"),
            "mkldnn": features.is_enabled("MKLDNN"),
            "threads": mxnet_threads(len(self.contexts)),
            "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }

    def device_batch(self, images: np.ndarray, labels: np.ndarray) -> Any:
        xs = gluon.utils.split_and_load(images, self.contexts, even_split=True)
        ys = gluon.utils.split_and_load(labels.astype(np.int32), self.contexts, even_split=True)
        return xs, ys

    def train_step(self, batch: Any) -> Any:
        xs, ys = batch
        with autograd.record():
            losses = [self.loss_fn(self.block(x), y) for x, y in zip(xs, ys, strict=True)]
            if self.amp:
                from mxnet.contrib import amp

                with amp.scale_loss(losses, self.trainer) as scaled:
                    autograd.backward(scaled)
        if not self.amp:
            autograd.backward(losses)
        self.trainer.step(self.ctx.global_batch)
        self._stale_replicas = len(self.contexts) > 1
        return losses

    def synchronize(self, token: Any) -> None:
        mx.nd.waitall()  # the whole step, the weight update included

    def loss_value(self, token: Any) -> float:
        total = sum(float(loss.astype("float32").sum().asscalar()) for loss in token)
        return total / self.ctx.global_batch

    def _sync_replicas(self) -> None:
        """Copies device 0's batch-norm running statistics to the other devices."""
        if not self._stale_replicas:
            return
        for param in self.buffers:
            first, *others = param.list_data()
            for target in others:
                first.copyto(target)
        self._stale_replicas = False

    def evaluate(self, batch: Any) -> tuple[float, int]:
        self._sync_replicas()
        xs, ys = batch
        loss_sum, correct = 0.0, 0
        for x, y in zip(xs, ys, strict=True):
            logits = self.block(x)
            if logits.dtype != np.float32:  # bf16 / fp16 under AMP
                logits = logits.astype("float32")
            loss_sum += float(self.loss_fn(logits, y).sum().asscalar())
            hits = logits.argmax(axis=1) == y.astype("float32")
            correct += int(hits.sum().asscalar())
        return loss_sum, correct

    def prepare_evaluation(self) -> None:
        """Builds the inference graphs of the hybridised blocks now, one per context, by
        evaluating a batch of zeros of ``process_batch`` images (split as real ones)."""
        if not self.hybridized:
            return
        c, h, w = self.ctx.network.input_shape
        size = self.ctx.process_batch
        self.evaluate(
            self.device_batch(np.zeros((size, c, h, w), np.float32), np.zeros(size, np.int32))
        )

    def reset_state(self) -> None:
        """Initial weights and batch-norm statistics on every context, a new gluon.Trainer
        (no momentum, fresh loss scaler) and the random seed of a fresh trainer."""
        load_canonical_state(self.params, self.ctx.initial_weights())
        self._stale_replicas = False
        self._fresh_trainer()
        mx.random.seed(self.ctx.spec.seed)

    def memory_peak(self) -> dict[str, Any] | None:
        if not self.gpu:
            return None
        mx.nd.waitall()
        used = []
        for context in self.contexts:
            free, total = mx.context.gpu_memory_info(context.device_id)
            used.append(int(total - free))
        return {
            "allocator": "mx.context.gpu_memory_info: device-wide memory in use at the end "
            "(MXNet has no peak counter)",
            "used_bytes_at_end": max(used),
            "used_bytes_at_end_per_device": used,
        }

    def state_dict(self) -> dict[str, np.ndarray]:
        self._sync_replicas()
        return canonical_state(self.params, 0)

    def replica_states(self) -> list[dict[str, np.ndarray]]:
        self._sync_replicas()
        return [canonical_state(self.params, i) for i in range(len(self.contexts))]
