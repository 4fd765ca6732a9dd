"""MXNet kernels of the operation benchmarks (harness.ops); imported only in the worker.

MXNet's engine runs operators asynchronously; a window ends with ``mx.nd.waitall()``.
GEMM: ``mx.nd.dot`` with its transpose flags; sparse GEMM: ``mx.nd.sparse.dot`` of a
``CSRNDArray`` and a dense array; convolution: ``mx.nd.Convolution`` (NCHW); LSTM/GRU:
``gluon.rnn.LSTM``/``GRU`` (one layer, TNC, MXNet's fused RNN operator); backward:
``autograd.record`` and ``backward()``, gradients of the input and the weights.
All-reduce: a ``device`` kvstore's ``pushpull`` over ``--cpu-devices`` CPU contexts (or
the GPUs).
"""

from __future__ import annotations

from typing import Any

import mxnet as mx
import numpy as np

from harness.ops import building
from harness.ops import kernels as k
from harness.ops.kernels import Bench, Unsupported
from harness.ops.suite import Kernel

_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
_state: dict[str, Any] = {}


def setup(job: dict[str, Any]) -> dict[str, Any]:
    gpu = job["device"] == "gpu"
    if gpu and mx.context.num_gpus() < 1:
        raise RuntimeError("MXNet sees no GPU")
    _state["gpu"] = gpu
    _state["ctx"] = mx.gpu(0) if gpu else mx.cpu(0)
    return {"name": "MXNet", "version": mx.__version__, "device": str(_state["ctx"])}


def _sync(_token: Any = None) -> None:
    mx.nd.waitall()


def _dtype(precision: str) -> str:
    if precision == "bf16":
        raise Unsupported("MXNet 1.9's NDArray operators have no bfloat16 type")
    return _DTYPES[precision]


def _to(array: np.ndarray, precision: str) -> Any:
    return mx.nd.array(array, ctx=_state["ctx"], dtype=_dtype(precision))


def _numpy(value: Any) -> np.ndarray:
    return value.astype("float32").asnumpy()


_DEVICE = building.Device(_to, _numpy, _sync)


def _gemm(kernel: Kernel, precision: str, job: dict[str, Any]) -> Bench:
    def multiply(a: Any, b: Any, ta: bool, tb: bool) -> Any:
        return lambda: mx.nd.dot(a, b, transpose_a=ta, transpose_b=tb)

    return building.gemm(kernel, precision, _DEVICE, multiply, "mx.nd.dot")


def _sparse(kernel: Kernel, precision: str, job: dict[str, Any]) -> Bench:
    rows, cols, values, b_np = k.sparse_inputs(kernel)
    s = kernel.shape
    indptr = np.zeros(s["m"] + 1, dtype=np.int64)
    np.add.at(indptr, rows + 1, 1)
    indptr = np.cumsum(indptr)
    a = mx.nd.sparse.csr_matrix(
        (values.astype(_dtype(precision)), cols, indptr), shape=(s["m"], s["k"]), ctx=_state["ctx"]
    )
    b = _to(b_np, precision)
    building.probe(
        lambda: mx.nd.sparse.dot(a, b).wait_to_read(),
        (mx.base.MXNetError,),
        f"mx.nd.sparse.dot (CSR, {precision})",
    )

    def call() -> Any:
        return mx.nd.sparse.dot(a, b)

    def check() -> float:
        return k.max_error(_numpy(call()), k.sparse_reference(kernel, rows, cols, values, b_np))

    detail = {
        "impl": "mx.nd.sparse.dot (CSRNDArray x dense)",
        "stype": a.stype,
        "nnz": int(a.data.shape[0]),
    }
    return Bench(call, _sync, check=check, detail=detail)


def _conv(kernel: Kernel, precision: str, job: dict[str, Any]) -> Bench:
    x_np, w_np = k.conv_inputs(kernel)
    x, w = _to(x_np, precision), _to(w_np, precision)
    s = kernel.shape
    options = {
        "kernel": (s["r"], s["s"]),
        "stride": (s["stride"],) * 2,
        "pad": (s["pad"],) * 2,
        "num_filter": s["k"],
        "no_bias": True,
    }

    def forward() -> Any:
        return mx.nd.Convolution(x, w, **options)

    if kernel.direction == "backward":
        x.attach_grad()
        w.attach_grad()

        def call() -> Any:
            with mx.autograd.record():
                y = forward()
            y.backward()
            return None

    else:
        call = forward

    def check() -> float:
        return k.max_error(_numpy(forward()), k.conv_reference(kernel, x_np, w_np))

    return Bench(call, _sync, check=check, detail={"impl": "mx.nd.Convolution"})


def _rnn(kernel: Kernel, precision: str, job: dict[str, Any]) -> Bench:
    s = kernel.shape
    cls = mx.gluon.rnn.LSTM if s["cell"] == "lstm" else mx.gluon.rnn.GRU
    layer = cls(s["hidden"], input_size=s["hidden"], layout="TNC", dtype=_dtype(precision))
    mx.random.seed(0)
    layer.initialize(mx.init.Xavier(), ctx=_state["ctx"])
    x_np = k.rnn_inputs(kernel)
    x = _to(x_np, precision)

    def check() -> float:
        got = _numpy(layer(x))
        p = {
            name.rpartition("_l0_")[2]: _numpy(v.data())
            for name, v in layer.collect_params().items()
        }
        order = "ifgo" if s["cell"] == "lstm" else "rzn"
        expected = k.rnn_reference(
            x_np, p["i2h_weight"].T, p["h2h_weight"].T, p["i2h_bias"], p["h2h_bias"], order
        )
        return k.max_error(got, expected)

    if kernel.direction == "backward":
        x.attach_grad()

        def call() -> Any:
            with mx.autograd.record():
                y = layer(x)
            y.backward()
            return None

    else:

        def call() -> Any:
            return layer(x)

    return Bench(call, _sync, check=check, detail={"impl": f"mx.gluon.rnn.{cls.__name__}"})


def _allreduce(kernel: Kernel, precision: str, job: dict[str, Any]) -> Bench:
    devices = int(job["devices"])
    if devices < 2:
        raise Unsupported("all-reduce needs two devices or more")
    contexts = [mx.gpu(i) if _state["gpu"] else mx.cpu(i) for i in range(devices)]
    size, dtype = int(kernel.shape["size"]), _dtype(precision)
    if "kv" not in _state:
        _state["kv"] = mx.kv.create("device")
        _state["key"] = 0
    kv = _state["kv"]
    _state["key"] += 1
    key = _state["key"]
    kv.init(key, mx.nd.zeros(size, ctx=contexts[0], dtype=dtype))
    arrays = [mx.nd.zeros(size, ctx=c, dtype=dtype) for c in contexts]

    def call() -> None:
        kv.pushpull(key, arrays, out=arrays)

    def check() -> float:
        for a in arrays:
            a[:] = 1.0
        call()
        got = np.stack([_numpy(a)[:1024] for a in arrays])
        return k.max_error(got, np.full(got.shape, float(devices)))

    detail = {"impl": "kvstore('device').pushpull", "devices": devices}
    return Bench(call, _sync, check=check, detail=detail)


build = building.dispatcher(
    gemm=_gemm, sparse_gemm=_sparse, conv=_conv, rnn=_rnn, allreduce=_allreduce
)
