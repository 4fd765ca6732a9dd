"""TensorFlow trainer: imported only inside the worker process.

The training step is one ``tf.function`` (``-o xla=true`` compiles it with XLA). The
recipe is the harness's, written out by hand so it matches PyTorch's exactly: softmax
cross-entropy summed and divided by the GLOBAL batch, SGD with momentum in PyTorch's
form (``buf = 0.9 * buf + grad; w -= lr * buf``, one fused ``ResourceApplyMomentum``
kernel per variable; Keras' SGD keeps ``-lr * buf`` instead, the same while lr is
constant), no weight decay, batch-norm running
statistics blended with PyTorch's momentum from the unbiased batch variance.

Several devices (GPUs, or logical CPU devices) run under tf.distribute.MirroredStrategy
in this one process: each replica computes gradients on its ``batch_size`` images, the
gradients are summed across replicas, every replica applies the same update. Batch-norm
statistics are per replica in the forward pass (as PyTorch's DDP without SyncBatchNorm);
the running statistics are blended from the MEAN of the replicas' batch statistics so all
replicas keep identical buffers (PyTorch's DDP instead broadcasts rank 0's buffers).
With XLA and several devices only the per-replica gradient function is compiled; the
all-reduce and the update run outside XLA.

Several nodes (``--nodes N``; the worker's ``ctx.world_size`` > 1): one process per
worker under tf.distribute.MultiWorkerMirroredStrategy, with ``TF_CONFIG`` built from
the node process's layout (``ctx.peers``: one HOST:PORT per worker, ``ctx.rank`` its
index). The strategy drives a worker's GPUs, or one CPU device, so a CPU run has one
worker per CPU device (backends/tensorflow ``node_processes``). The step is the same
code: the replica context's all-reduces span the workers. Evaluation sums a worker's
own replicas; ``all_reduce_sum`` adds the workers' sums with one collective.

Precision: fp32; bf16 and fp16 compute with float32 master weights (batch-norm scale,
shift and statistics stay float32, logits are cast to float32 before the loss); fp16
uses dynamic loss scaling as torch's GradScaler does (2**16, halved on overflow and the
step skipped, doubled after 2000 good steps).

Memory: GPU memory growth is on (no preallocation); ``memory_peak`` reports
``tf.config.experimental.get_memory_info(...)["peak"]``, the largest over the devices.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import tensorflow as tf

from harness.backend import SGD_MOMENTUM, Trainer, WorkerContext
from harness.backends.loss_scale import GROWTH_INTERVAL as _GROWTH_INTERVAL
from harness.backends.loss_scale import INITIAL_SCALE as _INITIAL_SCALE

from . import devices as dev
from .network import TFNetwork, to_canonical

_DTYPES = {"fp32": tf.float32, "fp16": tf.float16, "bf16": tf.bfloat16}


def _flag(options: dict[str, str], name: str) -> bool:
    return options.get(name, "").lower() in ("1", "true", "yes", "on")


class TFTrainer(Trainer):
    """Trains a harness.models network on tf.Variables; MirroredStrategy for N devices.

    Backend option (``-o KEY=VALUE``): ``xla=true`` compiles the step with XLA
    (``tf.function(jit_compile=True)``).
    """

    layout = "NHWC"
    oom_markers = (
        "OOM when allocating",
        "ResourceExhaustedError",
        "RESOURCE_EXHAUSTED",
        "out of memory",
        "MemoryError",
    )

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        spec = ctx.spec
        self.multi_worker = ctx.world_size > 1
        # before any TensorFlow op; a multi-node worker drives its ctx.local_devices
        self.devices = dev.configure(spec, ctx.local_devices if self.multi_worker else None)
        self.gpu = spec.num_gpus > 0
        self.xla = _flag(spec.options, "xla")
        self.dtype = _DTYPES[spec.precision]
        self.scaling = spec.precision == "fp16"
        self.lr = float(spec.learning_rate or 0.0)
        # every device of every worker
        self.global_batch = (
            ctx.global_batch if self.multi_worker else spec.batch_size * len(self.devices)
        )
        self.strategy: Any = None
        self.placement = list(self.devices)  # where each local replica's data goes
        if self.multi_worker:
            self.strategy = _multi_worker_strategy(ctx)
            self.placement = list(self.strategy.extended.worker_devices)
        elif len(self.devices) > 1:
            self.strategy = tf.distribute.MirroredStrategy(self.devices)
        self.net = TFNetwork(ctx.network, explicit_padding=self.gpu)
        with self._scope():
            self.net.create_variables(ctx.initial_weights())
            self.params = self.net.trainable()
            self.buffers = [
                tf.Variable(tf.zeros(p.shape), trainable=False, name="momentum")
                for p in self.params
            ]
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.scale = tf.Variable(_INITIAL_SCALE, trainable=False, name="loss_scale")
            self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="good")
        self.bn_momentum = {
            path: float(self.net.shapes[path].layer.momentum) for path in self.net.bn_paths
        }
        self.seed = tf.constant(spec.seed, tf.int64)
        whole = self.xla and self.strategy is None
        inner = self.xla and self.strategy is not None
        self._grads_fn = tf.function(self._grads, jit_compile=True) if inner else self._grads
        self._train = tf.function(self._train_step, jit_compile=whole)
        self._eval_inner = (
            tf.function(self._eval_replica, jit_compile=True) if inner else self._eval_replica
        )
        self._eval = tf.function(self._evaluate, jit_compile=whole)
        self._sum_over_workers = tf.function(self._worker_sums)
        if self.gpu:
            for index in range(len(self.devices)):
                tf.config.experimental.reset_memory_stats(f"GPU:{index}")

    def _scope(self) -> AbstractContextManager[Any]:
        if self.strategy is not None:
            return self.strategy.scope()
        return tf.device(self.devices[0])

    # The compiled pieces -------------------------------------------------------------

    def _grads(self, x: tf.Tensor, y: tf.Tensor, seed: tf.Tensor) -> tuple[Any, ...]:
        """One replica: loss share, gradients (unscaled) and batch-norm batch statistics."""
        with tf.GradientTape() as tape:
            logits, stats = self.net.forward(x, training=True, seed=seed, dtype=self.dtype)
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            loss = tf.reduce_sum(losses) / self.global_batch
            target = loss * self.scale if self.scaling else loss
        grads = tape.gradient(target, self.params)
        grads = [tf.cast(g, p.dtype) for g, p in zip(grads, self.params, strict=True)]
        if self.scaling:
            grads = [g / self.scale for g in grads]
        flat_stats = [s for path in self.net.bn_paths for s in stats[path]]
        return loss, grads, flat_stats

    def _replica(self, x: tf.Tensor, y: tf.Tensor, seed: tf.Tensor) -> tuple[Any, ...]:
        """Inside strategy.run: gradients, then sums (means for statistics) over replicas."""
        context = tf.distribute.get_replica_context()
        replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
        loss, grads, stats = self._grads_fn(
            x, y, tf.random.experimental.stateless_fold_in(seed, replica)
        )
        loss, grads = context.all_reduce(tf.distribute.ReduceOp.SUM, (loss, grads))
        if stats:
            stats = context.all_reduce(tf.distribute.ReduceOp.MEAN, stats)
        return loss, grads, stats, self._finite(grads)

    def _finite(self, grads: list[tf.Tensor]) -> tf.Tensor:
        if not self.scaling:
            return tf.constant(True)
        return tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])

    def _train_step(self, x: Any, y: Any) -> tf.Tensor:
        seed = tf.stack([self.seed, self.step.read_value()])
        if self.strategy is None:
            loss, grads, stats = self._grads(x, y, seed)
            finite = self._finite(grads)
        else:
            loss, grads, stats, finite = self.strategy.run(self._replica, args=(x, y, seed))
            loss = self.strategy.experimental_local_results(loss)[0]
        self._apply(grads, stats, finite)
        return loss

    def _update(self, var: tf.Variable, fn: Any, *args: Any) -> None:
        if self.strategy is None:
            fn(var, *args)
        else:
            self.strategy.extended.update(var, fn, args=args, group=False)

    def _apply(self, grads: list[Any], stats: list[Any], finite: Any) -> None:
        lr, momentum = self.lr, SGD_MOMENTUM

        def sgd(param: tf.Variable, buf: tf.Variable, grad: tf.Tensor, ok: tf.Tensor) -> None:
            # One fused kernel, PyTorch's form: buf = momentum * buf + grad; w -= lr * buf.
            # A skipped (overflowed) fp16 step becomes buf = 1 * buf + 0; w -= 0 * buf.
            rate, mom = lr, momentum
            if self.scaling:
                grad = tf.where(ok, grad, tf.zeros_like(grad))
                rate, mom = tf.where(ok, lr, 0.0), tf.where(ok, momentum, 1.0)
            tf.raw_ops.ResourceApplyMomentum(
                var=param.handle,
                accum=buf.handle,
                lr=tf.cast(rate, param.dtype),
                grad=grad,
                momentum=tf.cast(mom, param.dtype),
                use_locking=False,
                use_nesterov=False,
            )

        for param, buf, grad in zip(self.params, self.buffers, grads, strict=True):
            self._update(param, sgd, buf, grad, finite)
        for index, path in enumerate(self.net.bn_paths):
            m = self.bn_momentum[path]

            def blend(var: tf.Variable, batch: tf.Tensor, m: float = m) -> None:
                var.assign((1.0 - m) * var + m * batch)

            self._update(self.net.variables[f"{path}.running_mean"], blend, stats[2 * index])
            self._update(self.net.variables[f"{path}.running_var"], blend, stats[2 * index + 1])
        if self.scaling:
            self._update(self.scale, _rescale, finite, self.good_steps)
        self._update(self.step, lambda var: var.assign_add(1))

    def _eval_replica(self, x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        logits, _ = self.net.forward(x, training=False, dtype=self.dtype)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        hits = tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), y)
        return tf.reduce_sum(losses), tf.reduce_sum(tf.cast(hits, tf.int32))

    def _evaluate(self, x: Any, y: Any) -> tuple[tf.Tensor, tf.Tensor]:
        if self.strategy is None:
            return self._eval_replica(x, y)
        # A plain function around the (maybe compiled) one, so each replica traces it
        # under its own device scope.
        loss, correct = self.strategy.run(lambda a, b: self._eval_inner(a, b), args=(x, y))
        if self.multi_worker:  # this worker's replicas; all_reduce_sum adds the workers'
            local = self.strategy.experimental_local_results
            return tf.add_n(list(local(loss))), tf.add_n(list(local(correct)))
        total = tf.distribute.ReduceOp.SUM
        return (
            self.strategy.reduce(total, loss, axis=None),
            self.strategy.reduce(total, correct, axis=None),
        )

    # The Trainer interface -----------------------------------------------------------

    def framework_info(self) -> dict[str, Any]:
        return {
            **dev.framework_basics(self.gpu, self.devices),
            "distributed": (
                ("MultiWorkerMirroredStrategy" if self.multi_worker else "MirroredStrategy")
                if self.strategy is not None
                else None
            ),
            "nodes": self.ctx.nodes,
            "cross_device_ops": (
                type(self.strategy.extended._cross_device_ops).__name__
                if self.strategy is not None
                else None
            ),
            "xla": self.xla,
            "threads": dev.threads(len(self.devices)),
            "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }

    def device_batch(self, images: np.ndarray, labels: np.ndarray) -> Any:
        labels = labels.astype(np.int32, copy=False)
        if self.strategy is None:
            with tf.device(self.devices[0]):
                return tf.identity(images), tf.identity(labels)
        size = self.ctx.spec.batch_size

        def part(array: np.ndarray) -> Any:
            def slice_for(context: tf.distribute.experimental.ValueContext) -> tf.Tensor:
                # replicas are numbered worker by worker: this worker's local index
                index = context.replica_id_in_sync_group % len(self.placement)
                with tf.device(self.placement[index]):
                    return tf.identity(array[index * size : (index + 1) * size])

            return self.strategy.experimental_distribute_values_from_function(slice_for)

        return part(images), part(labels)

    def train_step(self, batch: Any) -> Any:
        return self._train(*batch)

    def prepare_training(self, batch: Any) -> bool:
        """Traces the training tf.function for this batch's signature now, without running
        it (its concrete function is cached for the steps). Single-device runs without
        XLA only: a strategy's per-replica batch is traced, and XLA (``-o xla=true``)
        compiles, at the first step, which the loop's estimate then covers whole."""
        if self.strategy is not None or self.xla:
            return False
        self._train.get_concrete_function(*batch)
        return True

    def synchronize(self, token: Any) -> None:
        if self.gpu:
            tf.test.experimental.sync_devices()
        token.numpy()

    def loss_value(self, token: Any) -> float:
        return float(token.numpy())

    def evaluate(self, batch: Any) -> tuple[float, int]:
        loss, correct = self._eval(*batch)
        return float(loss.numpy()), int(correct.numpy())

    def prepare_evaluation(self) -> None:
        """Traces (and with XLA compiles) the evaluation function now, by running it once
        on a batch of zeros of ``process_batch`` images split as real batches are."""
        c, h, w = self.ctx.network.input_shape
        size = self.ctx.process_batch
        batch = self.device_batch(np.zeros((size, h, w, c), np.float32), np.zeros(size, np.int32))
        self.evaluate(batch)

    def _worker_sums(self, data: tf.Tensor) -> tf.Tensor:
        """Inside a tf.function: ``data`` of this worker summed over the workers (each
        worker's first replica contributes it, the others zeros)."""
        local = len(self.placement)

        def replica(values: tf.Tensor) -> tf.Tensor:
            context = tf.distribute.get_replica_context()
            first = tf.equal(context.replica_id_in_sync_group % local, 0)
            share = tf.where(first, values, tf.zeros_like(values))
            return context.all_reduce(tf.distribute.ReduceOp.SUM, share)

        summed = self.strategy.run(replica, args=(data,))
        return self.strategy.experimental_local_results(summed)[0]

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        if not self.multi_worker:
            return list(values)
        total = self._sum_over_workers(tf.constant(values, tf.float64))
        return [float(v) for v in total.numpy()]

    def reset_state(self) -> None:
        """Initial weights and batch-norm statistics on every replica, zero momentum,
        step 0 (so the same dropout seeds) and the initial fp16 loss scale."""
        with self._scope():
            self.net.assign(self.ctx.initial_weights())
            for buf in self.buffers:
                buf.assign(tf.zeros(buf.shape))
            self.step.assign(0)
            self.scale.assign(_INITIAL_SCALE)
            self.good_steps.assign(0)

    def memory_peak(self) -> dict[str, Any] | None:
        if not self.gpu:
            return None
        peaks = [
            int(tf.config.experimental.get_memory_info(f"GPU:{i}")["peak"])
            for i in range(len(self.devices))
        ]
        return {
            "allocator": "tf.config.experimental.get_memory_info",
            "peak_bytes": max(peaks),
            "per_device_peak_bytes": peaks,
        }

    def _variable_values(self, var: tf.Variable) -> list[np.ndarray]:
        if self.strategy is None:
            return [var.numpy()]
        return [v.numpy() for v in self.strategy.experimental_local_results(var)]

    def replica_states(self) -> list[dict[str, np.ndarray]]:
        states: list[dict[str, np.ndarray]] = [{} for _ in self.devices]
        for key, var in self.net.variables.items():
            for state, value in zip(states, self._variable_values(var), strict=True):
                state[key] = to_canonical(value, self.net.kinds[key])
        return states

    def state_dict(self) -> dict[str, np.ndarray]:
        return self.replica_states()[0]

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Replaces the weights with a canonical state dict (all replicas)."""
        self.net.assign(state)


def _multi_worker_strategy(ctx: WorkerContext) -> Any:
    """MultiWorkerMirroredStrategy over the run's workers: TF_CONFIG from the node
    process's layout (one HOST:PORT per worker in rank order; this worker's index is its
    rank), set before the strategy starts this worker's server."""
    import json

    if len(ctx.peers) != ctx.world_size:
        raise RuntimeError(
            f"a {ctx.world_size}-process TensorFlow run needs one address per worker "
            f"(HARNESS_PEERS, set by harness.run.node), got {len(ctx.peers)}"
        )
    cluster = {"worker": list(ctx.peers)}
    os.environ["TF_CONFIG"] = json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": ctx.rank}}
    )
    return tf.distribute.MultiWorkerMirroredStrategy()


def _rescale(scale: tf.Variable, finite: tf.Tensor, good: tf.Variable) -> None:
    """Dynamic loss scaling: back off on overflow, grow after a run of good steps."""
    grown = tf.logical_and(finite, good + 1 >= _GROWTH_INTERVAL)
    scale.assign(tf.where(finite, tf.where(grown, scale * 2.0, scale), scale * 0.5))
    good.assign(tf.where(finite, tf.where(grown, tf.zeros_like(good), good + 1), 0))
