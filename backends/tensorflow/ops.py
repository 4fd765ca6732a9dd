"""TensorFlow kernels of the operation benchmarks (harness.ops); imported only in the worker.

Every kernel runs as a ``tf.function``. GEMM: ``tf.linalg.matmul`` with its transpose
flags; sparse GEMM: ``tf.sparse.sparse_dense_matmul`` of a ``tf.sparse.SparseTensor``;
convolution: ``tf.nn.conv2d`` in NHWC (TensorFlow's CPU kernels have no NCHW), the
input transposed once before timing; LSTM/GRU: ``tf.keras.layers.LSTM``/``GRU`` (one
layer); backward: ``tf.GradientTape`` gradients of the input and the weights.
All-reduce: ``MirroredStrategy`` over the CPU split into ``--cpu-devices`` logical
devices (or the GPUs), ``ReplicaContext.all_reduce``.

On the CPU, TensorFlow runs a function to its end before the call returns, so the
window's synchronisation has nothing to wait for; on GPUs it is
``tf.experimental.sync_devices()``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import tensorflow as tf

from harness.ops import building
from harness.ops import kernels as k
from harness.ops.kernels import Bench, Unsupported
from harness.ops.suite import Kernel

_DTYPES = {"fp32": tf.float32, "fp16": tf.float16, "bf16": tf.bfloat16}
_state: dict[str, Any] = {}


def setup(job: dict[str, Any]) -> dict[str, Any]:
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    gpu = job["device"] == "gpu"
    if gpu:
        found = tf.config.list_physical_devices("GPU")
        if not found:
            raise RuntimeError("TensorFlow sees no GPU")
        for device in found:
            tf.config.experimental.set_memory_growth(device, True)
    else:
        tf.config.set_visible_devices([], "GPU")
        devices = int(job.get("devices", 1))
        if devices > 1:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(devices)]
            )
    _state["gpu"] = gpu
    _state["device"] = "/GPU:0" if gpu else "/CPU:0"
    return {
        "name": "TensorFlow",
        "version": tf.__version__,
        "device": _state["device"],
        "threads": tf.config.threading.get_intra_op_parallelism_threads(),
    }


def _sync(_token: Any = None) -> None:
    if _state["gpu"]:
        tf.experimental.sync_devices()


def _to(array: np.ndarray, precision: str) -> tf.Tensor:
    with tf.device(_state["device"]):
        return tf.identity(tf.cast(tf.constant(array), _DTYPES[precision]))


def _numpy(tensor: Any) -> np.ndarray:
    return tf.cast(tensor, tf.float32).numpy()


_DEVICE = building.Device(_to, _numpy, _sync)


def build(kernel: Kernel, precision: str, job: dict[str, Any]) -> Bench:
    with tf.device(_state["device"]):
        return _build(kernel, precision, job)


def _gemm(kernel: Kernel, precision: str, job: dict[str, Any]) -> Bench:
    def multiply(a: tf.Tensor, b: tf.Tensor, ta: bool, tb: bool) -> Any:
        return tf.function(lambda: tf.linalg.matmul(a, b, transpose_a=ta, transpose_b=tb))

    return building.gemm(kernel, precision, _DEVICE, multiply, "tf.linalg.matmul")


def _sparse(kernel: Kernel, precision: str, job: dict[str, Any]) -> Bench:
    rows, cols, values, b_np = k.sparse_inputs(kernel)
    s = kernel.shape
    a = tf.sparse.SparseTensor(
        np.stack([rows, cols], axis=1), tf.cast(values, _DTYPES[precision]), (s["m"], s["k"])
    )
    b = _to(b_np, precision)
    product = tf.function(lambda: tf.sparse.sparse_dense_matmul(a, b))
    building.probe(
        product,
        (tf.errors.OpError, TypeError, ValueError),
        f"tf.sparse.sparse_dense_matmul ({precision})",
    )

    def check() -> float:
        return k.max_error(_numpy(product()), k.sparse_reference(kernel, rows, cols, values, b_np))

    detail = {
        "impl": "tf.sparse.sparse_dense_matmul (SparseTensor COO x dense)",
        "nnz": int(a.values.shape[0]),
    }
    return Bench(product, _sync, check=check, detail=detail)


def _conv(kernel: Kernel, precision: str, job: dict[str, Any]) -> Bench:
    x_np, w_np = k.conv_inputs(kernel)
    x = _to(np.ascontiguousarray(x_np.transpose(0, 2, 3, 1)), precision)  # NHWC
    w = _to(np.ascontiguousarray(w_np.transpose(2, 3, 1, 0)), precision)  # RSCK (HWIO)
    pad, stride = kernel.shape["pad"], kernel.shape["stride"]
    padding = [[0, 0], [pad, pad], [pad, pad], [0, 0]]

    def forward(x: Any, w: Any) -> Any:
        return tf.nn.conv2d(x, w, strides=stride, padding=padding)

    if kernel.direction == "backward":

        @tf.function
        def call() -> Any:
            with tf.GradientTape() as tape:
                tape.watch([x, w])
                y = forward(x, w)
            return tape.gradient(y, [x, w], output_gradients=tf.ones_like(y))

    else:
        call = tf.function(lambda: forward(x, w))

    def check() -> float:
        got = _numpy(forward(x, w)).transpose(0, 3, 1, 2)
        return k.max_error(got, k.conv_reference(kernel, x_np, w_np))

    return Bench(call, _sync, check=check, detail={"impl": "tf.nn.conv2d (NHWC)"})


def _rnn(kernel: Kernel, precision: str, job: dict[str, Any]) -> Bench:
    s = kernel.shape
    cls = tf.keras.layers.LSTM if s["cell"] == "lstm" else tf.keras.layers.GRU
    dtype = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[precision]
    tf.random.set_seed(0)
    layer = cls(s["hidden"], return_sequences=True, dtype=dtype)
    x_np = k.rnn_inputs(kernel)
    x = _to(np.ascontiguousarray(x_np.transpose(1, 0, 2)), precision)  # NTC
    layer(x)  # builds the weights

    def check() -> float:
        got = _numpy(layer(x)).transpose(1, 0, 2)
        kernel_w, recurrent, bias = (_numpy(v) for v in layer.weights)
        if s["cell"] == "lstm":  # gates i, f, c, o; one bias
            expected = k.rnn_reference(x_np, kernel_w, recurrent, bias, np.zeros_like(bias), "ifgo")
        else:  # reset_after: gates z, r, h; input and recurrent biases
            expected = k.rnn_reference(x_np, kernel_w, recurrent, bias[0], bias[1], "zrn")
        return k.max_error(got, expected)

    if kernel.direction == "backward":

        @tf.function
        def call() -> Any:
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x)
            return tape.gradient(tf.reduce_sum(y), [x, *layer.trainable_variables])

    else:
        call = tf.function(lambda: layer(x))
    return Bench(call, _sync, check=check, detail={"impl": f"tf.keras.layers.{cls.__name__}"})


def _allreduce(kernel: Kernel, precision: str, job: dict[str, Any]) -> Bench:
    devices = int(job["devices"])
    kind = "GPU" if _state["gpu"] else "CPU"
    names = [d.name for d in tf.config.list_logical_devices(kind)][:devices]
    if len(names) < 2:
        raise Unsupported(f"all-reduce needs two {kind} devices, TensorFlow has {len(names)}")
    if "strategy" not in _state:
        _state["strategy"] = tf.distribute.MirroredStrategy(names)
    strategy = _state["strategy"]
    size, dtype = int(kernel.shape["size"]), _DTYPES[precision]

    def values(fill: float) -> Any:
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.fill([size], tf.constant(fill, dtype))
        )

    zeros = values(0.0)

    @tf.function
    def reduce(v: Any) -> Any:
        return strategy.run(
            lambda t: tf.distribute.get_replica_context().all_reduce("sum", t), args=(v,)
        )

    def check() -> float:
        out = strategy.experimental_local_results(reduce(values(1.0)))
        got = np.stack([_numpy(t)[:1024] for t in out])
        return k.max_error(got, np.full(got.shape, float(len(names))))

    detail = {
        "impl": "MirroredStrategy ReplicaContext.all_reduce",
        "cross_device_ops": type(strategy.extended._cross_device_ops).__name__
        if getattr(strategy.extended, "_cross_device_ops", None)
        else None,
        "devices": len(names),
    }
    return Bench(lambda: reduce(zeros), _sync, check=check, detail=detail)


_build = building.dispatcher(
    gemm=_gemm, sparse_gemm=_sparse, conv=_conv, rnn=_rnn, allreduce=_allreduce
)
