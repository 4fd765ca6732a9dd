"""JAX (Flax) trainer: imported only inside the worker process.

One jitted train step does forward, backward, gradient averaging and the optax SGD
update; its state (parameters, batch statistics, momentum, step, loss scale) is donated,
so XLA updates the buffers in place. Data parallelism runs in this one process: a
``Mesh`` over the run's devices, the batch split across them (``P("data")``), the
state replicated (``P()``). The step is a ``shard_map``: each device runs forward and
backward on its own slice, then gradients are averaged with ``pmean``, exactly as
PyTorch's DistributedDataParallel does. Batch norm therefore normalises with each
device's own batch statistics (as DDP); the running statistics are averaged over the
devices after each step (DDP instead broadcasts rank 0's), so replicas stay identical.

``optax.sgd(lr, momentum=0.9)`` equals ``torch.optim.SGD(lr, momentum=0.9)``: optax keeps
``trace = grad + 0.9 * trace`` (started at zero, so the first trace is the gradient, as
torch's first buffer) and adds ``-lr * trace``; torch keeps ``buf = 0.9 * buf + grad`` and
subtracts ``lr * buf``.

Backend options (``-o KEY=VALUE``):

- ``compile_cache=on|off|PATH``: JAX's persistent compilation cache (default off), in
  ``$XDG_CACHE_HOME/harness/jax`` (``~/.cache/harness/jax``) for ``on``. Later processes
  then load compiled steps instead of compiling: warmup and thus ``execution_time_s``
  shrink after a run's first repeat, which is why it is off by default.

Several nodes (``--nodes N``; ``ctx.world_size`` > 1): one process per node, joined by
``jax.distributed.initialize`` (coordinator: ``ctx.coordinator``, process 0's host; CPU
collectives over gloo). The Mesh then spans every process's devices, process by
process; each process puts its batch on its own devices
(``jax.make_array_from_process_local_data``), the same step runs everywhere, and its
``pmean`` spans the nodes. Evaluation returns per-device sums, of which a process adds
its own devices'; ``all_reduce_sum`` adds the processes' (``process_allgather``).

CPU threads (harness.cpu): the orchestrator sets ``PJRT_NPROC`` (backends/jax run_env),
which sizes XLA's CPU intra-op pool, shared by all the client's devices;
framework_info["threads"] counts that pool's threads (named ``XLAEigen``) in
/proc/self/task. XLA:CPU has no inter-op pool or setting, so ``inter_op`` is None.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from harness.backend import SGD_MOMENTUM, Trainer, WorkerContext
from harness.cpu import report
from harness.spec import RunSpec

from .network import build_module, canonical_state, to_variables
from .precision import COMPUTE_DTYPES, LossScale, select

OPTIONS = ("compile_cache",)
_OFF = ("", "0", "false", "no", "off")
_ON = ("1", "true", "yes", "on")


class TrainState(NamedTuple):
    params: Any
    batch_stats: Any
    opt_state: Any
    step: jax.Array
    loss_scale: LossScale | None  # fp16 only


def compile_cache(options: dict[str, str]) -> str | None:
    """Switches on the persistent compilation cache if asked; returns its folder."""
    value = options.get("compile_cache", "off")
    if value.lower() in _OFF:
        return None
    if value.lower() in _ON:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        value = os.path.join(base, "harness", "jax")
    folder = Path(value).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return str(folder)


def xla_thread_count() -> int | None:
    """Threads of XLA's CPU intra-op pool ("XLAEigen", "tf_XLAEigen" once TSL prefixes
    it), counted in /proc/self/task; None where that cannot be read (not Linux)."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    count = 0
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/comm") as handle:
                name = handle.read()
        except OSError:  # the thread ended meanwhile
            continue
        count += "XLAEigen" in name
    return count


def xla_threads(devices: int) -> dict[str, Any]:
    """framework_info["threads"]: XLA's CPU pool as it runs, in the policy's terms."""
    pool = xla_thread_count()
    return report(
        intra_op_total=pool,
        intra_op_per_device=pool // devices if pool is not None else None,
        inter_op=None,
        devices=devices,
        how=f"PJRT_NPROC={os.environ.get('PJRT_NPROC')} sizes XLA's CPU intra-op pool, "
        f"shared by the {devices} device(s) (per device = pool / devices); read back by "
        "counting its XLAEigen threads in /proc/self/task; XLA:CPU has no inter-op setting",
    )


def initialize_distributed(ctx: WorkerContext) -> None:
    """Joins this process to the run's others (several nodes): before any computation."""
    if not ctx.coordinator:
        raise RuntimeError(
            f"a {ctx.world_size}-process JAX run needs the coordinator's HOST:PORT "
            "(HARNESS_COORDINATOR, set by harness.run.node)"
        )
    if ctx.spec.num_gpus < 0:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=ctx.coordinator,
        num_processes=ctx.world_size,
        process_id=ctx.rank,
    )


def mesh_devices(local: list[jax.Device]) -> list[jax.Device]:
    """The devices of the run's Mesh: each process's first ``len(local)`` devices of the
    platform, process by process (the harness's device order), this process's ``local``."""
    if jax.process_count() == 1:
        return local
    platform = local[0].platform
    out: list[jax.Device] = []
    for index in range(jax.process_count()):
        mine = sorted(
            (d for d in jax.devices(platform) if d.process_index == index), key=lambda d: d.id
        )
        out += local if index == jax.process_index() else mine[: len(local)]
    return out


def select_devices(spec: RunSpec) -> list[jax.Device]:
    """This process's devices: the first ``num_gpus`` visible GPUs, or ``cpu_devices``
    CPUs (each process's own when the run has several)."""
    if spec.num_gpus > 0:
        try:
            found = jax.local_devices(backend="gpu")
        except RuntimeError:
            found = []
        if len(found) < spec.num_gpus:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            raise RuntimeError(
                f"a {spec.num_gpus}-GPU run, but JAX sees {len(found)} GPU(s) "
                f"(CUDA_VISIBLE_DEVICES={visible}); a CUDA build of jax is needed: "
                "pip install 'jax[cuda12]'"
            )
        return found[: spec.num_gpus]
    found = jax.local_devices(backend="cpu")
    if len(found) < spec.cpu_devices:
        raise RuntimeError(
            f"{spec.cpu_devices} CPU devices asked for but JAX has {len(found)}: "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={spec.cpu_devices} must be "
            "set before jax is imported (the harness sets it for its workers)"
        )
    return found[: spec.cpu_devices]


def _xent(logits: jax.Array, labels: jax.Array) -> jax.Array:
    # float32 at least (fp16/bf16 logits are widened; the float64 parity test mode stays)
    wide = jnp.promote_types(logits.dtype, jnp.float32)
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(wide), labels)


class JaxTrainer(Trainer):
    """Trains a harness.models network with flax.linen and optax on one or more devices."""

    layout = "NHWC"
    oom_markers = ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory", "MemoryError")

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        spec = ctx.spec
        unknown = sorted(set(spec.options) - set(OPTIONS))
        if unknown:
            raise ValueError(f"unknown jax option(s) {unknown}; known: {', '.join(OPTIONS)}")
        self.cache_dir = compile_cache(spec.options)
        self.multi_process = ctx.world_size > 1
        if self.multi_process:
            initialize_distributed(ctx)
        self.devices = select_devices(spec)  # this process's
        if ctx.local_devices != len(self.devices):
            raise RuntimeError(
                f"the worker plans {ctx.local_devices} device(s) in this "
                f"process but the run has {len(self.devices)}"
            )
        self.mesh = Mesh(np.array(mesh_devices(self.devices)), ("data",))
        self.replicated = NamedSharding(self.mesh, P())
        self.sharded = NamedSharding(self.mesh, P("data"))
        self.network = ctx.network
        self.module = build_module(ctx.network, COMPUTE_DTYPES[spec.precision])
        self.tx = optax.sgd(spec.learning_rate, momentum=SGD_MOMENTUM)
        self.state = self._initial_state()
        self.dropout_key = jax.random.key(spec.seed)
        step = jax.shard_map(
            self._local_step,
            mesh=self.mesh,
            in_specs=(P(), P("data"), P("data")),
            out_specs=(P(), P()),
        )
        self._step = jax.jit(step, donate_argnums=0)
        # Evaluation: the batch sharded over the mesh as in training (each device its
        # contiguous slice), the loss sum and correct count reduced over the devices.
        self._eval: Any = jax.jit(self._evaluate, out_shardings=self.replicated)
        # the batch one evaluate() call sees: the process's, or all processes' as one array
        self._eval_rows = ctx.global_batch if self.multi_process else ctx.process_batch
        if self.multi_process:  # per-device sums, so each process can add its own
            self._eval = jax.jit(
                jax.shard_map(
                    self._device_sums,
                    mesh=self.mesh,
                    in_specs=(P(), P(), P("data"), P("data")),
                    out_specs=(P("data"), P("data")),
                )
            )
        self._eval_compiled: Any = None  # for batches of _eval_rows images
        self._step_compiled: Any = None  # the train step compiled ahead (prepare_training)

    def _initial_state(self) -> TrainState:
        """The state of a fresh trainer: initial weights, zero momentum, step 0."""
        variables = to_variables(self.ctx.network, self.ctx.initial_weights())
        params = variables["params"]
        state = TrainState(
            params=params,
            batch_stats=variables.get("batch_stats", {}),
            opt_state=self.tx.init(params),
            step=jnp.asarray(0, jnp.int32),
            loss_scale=LossScale.create() if self.ctx.spec.precision == "fp16" else None,
        )
        return self._replicate(state)

    def _replicate(self, tree: Any) -> Any:
        """Host values as arrays replicated on every device of the Mesh (of every process:
        each puts its own copy, the same in all)."""
        if not self.multi_process:
            return jax.device_put(tree, self.replicated)

        def put(value: Any) -> jax.Array:
            host = np.asarray(value)
            return jax.make_array_from_callback(host.shape, self.replicated, lambda i: host[i])

        return jax.tree_util.tree_map(put, tree)

    # The computations -------------------------------------------------------------------

    def _local_step(self, state: TrainState, x: jax.Array, y: jax.Array):
        """One device's part of a step (inside shard_map): its slice of the batch."""
        key = jax.random.fold_in(
            jax.random.fold_in(self.dropout_key, state.step), jax.lax.axis_index("data")
        )

        def objective(params: Any):
            logits, updates = self.module.apply(
                {"params": params, "batch_stats": state.batch_stats},
                x,
                train=True,
                mutable=["batch_stats"],
                rngs={"dropout": key},
            )
            loss = _xent(logits, y).mean()
            scaled = loss if state.loss_scale is None else loss * state.loss_scale.scale
            return scaled, (loss, updates.get("batch_stats", {}))

        # Differentiate each device's own copy (marked device-varying): the gradients
        # are then this device's, and one pmean averages them, as DDP's all-reduce does.
        # (Differentiating the replicated parameters directly would psum them instead.)
        local = jax.lax.pcast(state.params, "data", to="varying")
        grads, (loss, stats) = jax.grad(objective, has_aux=True)(local)
        grads = jax.lax.pmean(grads, "data")
        stats = jax.lax.pmean(stats, "data")
        loss_scale, finite = state.loss_scale, None
        if loss_scale is not None:
            grads, finite = loss_scale.unscale(grads)
            loss_scale = loss_scale.adjust(finite)
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if finite is not None:  # fp16: skip the update when a gradient overflowed
            params = select(finite, params, state.params)
            opt_state = select(finite, opt_state, state.opt_state)
        new = TrainState(params, stats, opt_state, state.step + 1, loss_scale)
        return new, jax.lax.pmean(loss, "data")

    def _evaluate(self, params: Any, stats: Any, x: jax.Array, y: jax.Array):
        logits = self.module.apply({"params": params, "batch_stats": stats}, x, train=False)
        correct = jnp.sum(jnp.argmax(logits, axis=-1) == y)
        return jnp.sum(_xent(logits, y)), correct

    def _device_sums(self, params: Any, stats: Any, x: jax.Array, y: jax.Array):
        """One device's slice (inside shard_map): its sums, as one-element arrays."""
        loss, correct = self._evaluate(params, stats, x, y)
        return loss[None], correct[None]

    # The Trainer interface --------------------------------------------------------------

    def framework_info(self) -> dict[str, Any]:
        return {
            "framework": "jax",
            "version": jax.__version__,
            "flax": flax.__version__,
            "optax": optax.__version__,
            "platform": self.devices[0].platform,
            "devices": [f"{d.platform}:{d.id} {d.device_kind}" for d in self.devices],
            "strategy": f"shard_map data parallel, Mesh(data={self.mesh.devices.size})",
            "processes": jax.process_count(),
            "nodes": self.ctx.nodes,
            "compile_cache": self.cache_dir,
            "threads": xla_threads(len(self.devices)),
            "xla_flags": os.environ.get("XLA_FLAGS"),
            "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }

    def device_batch(self, images: np.ndarray, labels: np.ndarray) -> Any:
        labels = np.asarray(labels, dtype=np.int32)
        if self.multi_process:  # this process's rows of the global batch
            put = jax.make_array_from_process_local_data
            return put(self.sharded, images), put(self.sharded, labels)
        return jax.device_put(images, self.sharded), jax.device_put(labels, self.sharded)

    def train_step(self, batch: Any) -> Any:
        self.state, loss = (self._step_compiled or self._step)(self.state, *batch)
        return loss

    def prepare_training(self, batch: Any) -> bool:
        """Lowers and compiles the train step for the state and this batch's shapes and
        shardings now (XLA), without running it; every training batch has those shapes."""
        self._step_compiled = self._step.lower(self.state, *batch).compile()
        return True

    def synchronize(self, token: Any) -> None:
        if token is not None:
            jax.block_until_ready(token)

    def loss_value(self, token: Any) -> float:
        return float(token)

    def prepare_evaluation(self) -> None:
        """Compiles the evaluation step for batches of ``process_batch`` images (of every
        process's, as one array, when the run has several)."""
        c, h, w = self.ctx.network.input_shape
        batch = self._eval_rows
        self._eval_compiled = self._eval.lower(
            self.state.params,
            self.state.batch_stats,
            jax.ShapeDtypeStruct((batch, h, w, c), jnp.float32, sharding=self.sharded),
            jax.ShapeDtypeStruct((batch,), jnp.int32, sharding=self.sharded),
        ).compile()

    def evaluate(self, batch: Any) -> tuple[float, int]:
        run = self._eval
        if self._eval_compiled is not None and batch[0].shape[0] == self._eval_rows:
            run = self._eval_compiled
        loss, correct = run(self.state.params, self.state.batch_stats, *batch)
        if self.multi_process:  # this process's devices' sums
            return _local_sum(loss, float), _local_sum(correct, int)
        return float(loss), int(correct)

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        if not self.multi_process:
            return list(values)
        from jax.experimental import multihost_utils

        gathered = multihost_utils.process_allgather(np.asarray(values, np.float32))
        return [float(v) for v in np.asarray(gathered, np.float64).sum(axis=0)]

    def reset_state(self) -> None:
        """Initial weights and statistics, zero momentum, step 0 (so the same dropout
        keys) and a fresh loss scale: the state of a new trainer."""
        self.state = self._initial_state()

    def memory_peak(self) -> dict[str, Any] | None:
        """XLA's allocator peak per GPU (``peak_bytes_in_use``); None on the CPU."""
        if self.devices[0].platform == "cpu":
            return None
        peaks = [int((d.memory_stats() or {}).get("peak_bytes_in_use", 0)) for d in self.devices]
        return {
            "allocator": "jax device.memory_stats peak_bytes_in_use",
            "peak_bytes": max(peaks),
            "per_device_peak_bytes": peaks,
        }

    def _variables(self) -> dict[str, Any]:
        return {"params": self.state.params, "batch_stats": self.state.batch_stats}

    def state_dict(self) -> dict[str, np.ndarray]:
        return canonical_state(self.network, jax.device_get(self._variables()))

    def replica_states(self) -> list[dict[str, np.ndarray]]:
        """One canonical state per device, read from that device's own copy."""
        states = []
        for device in self.devices:

            def local(array: jax.Array, device: jax.Device = device) -> np.ndarray:
                shard = next(s for s in array.addressable_shards if s.device == device)
                return np.asarray(shard.data)

            copy = jax.tree_util.tree_map(local, self._variables())
            states.append(canonical_state(self.network, copy))
        return states

    def close(self) -> None:
        if self.multi_process:
            jax.distributed.shutdown()


def _local_sum(array: jax.Array, kind: Any) -> Any:
    """The sum of the parts of ``array`` this process holds."""
    return kind(sum(np.asarray(s.data, np.float64).sum() for s in array.addressable_shards))
