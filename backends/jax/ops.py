"""JAX kernels of the operation benchmarks (harness.ops); imported only in the worker.

Every kernel is a ``jax.jit`` function of its device-resident inputs; a window ends with
``block_until_ready`` on the last call's output (JAX dispatches asynchronously).
GEMM: ``jnp.matmul`` on (transposed) operands; sparse GEMM: ``jax.experimental.sparse``
``BCSR`` (falls back to ``BCOO`` where BCSR's product is missing) times a dense matrix;
convolution: ``lax.conv_general_dilated`` (NCHW, OIHW); LSTM/GRU: one layer written as
a ``lax.scan`` over the steps (gate GEMMs ``x W + h U + b``); backward: ``jax.grad``
of the output's sum w.r.t. the input and the weights. All-reduce: ``lax.psum`` in a
``shard_map`` over the host's XLA devices (``--cpu-devices N`` sets
``--xla_force_host_platform_device_count``) or the GPUs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from harness.ops import building
from harness.ops import kernels as k
from harness.ops.kernels import Bench, Unsupported
from harness.ops.suite import Kernel

_DTYPES = {"fp32": jnp.float32, "fp16": jnp.float16, "bf16": jnp.bfloat16}
_state: dict[str, Any] = {}


def setup(job: dict[str, Any]) -> dict[str, Any]:
    platform = "gpu" if job["device"] == "gpu" else "cpu"
    devices = jax.devices(platform)
    _state["devices"] = devices
    _state["device"] = devices[0]
    return {
        "name": "JAX",
        "version": jax.__version__,
        "device": str(devices[0]),
        "devices": len(devices),
    }


def _sync(token: Any) -> None:
    jax.block_until_ready(token)


def _to(array: np.ndarray, precision: str) -> jax.Array:
    return jax.device_put(jnp.asarray(array, _DTYPES[precision]), _state["device"])


def _numpy(value: Any) -> np.ndarray:
    return np.asarray(jnp.asarray(value, jnp.float32))


_DEVICE = building.Device(_to, _numpy, _sync)


def _gemm(kernel: Kernel, precision: str, job: dict[str, Any]) -> Bench:
    def multiply(a: jax.Array, b: jax.Array, ta: bool, tb: bool) -> Any:
        matmul = jax.jit(lambda a, b: jnp.matmul(a.T if ta else a, b.T if tb else b))
        return lambda: matmul(a, b)

    return building.gemm(kernel, precision, _DEVICE, multiply, "jnp.matmul (jit)")


def _sparse(kernel: Kernel, precision: str, job: dict[str, Any]) -> Bench:
    from jax.experimental import sparse

    rows, cols, values, b_np = k.sparse_inputs(kernel)
    s = kernel.shape
    indices = np.stack([rows, cols], axis=1).astype(np.int32)
    coo = sparse.BCOO(
        (jnp.asarray(values, _DTYPES[precision]), jnp.asarray(indices)), shape=(s["m"], s["k"])
    )
    b = _to(b_np, precision)
    tried = []
    for name, matrix in (("BCSR", lambda: sparse.BCSR.from_bcoo(coo)), ("BCOO", lambda: coo)):
        try:
            a = jax.device_put(matrix(), _state["device"])
            product = jax.jit(lambda a, b: a @ b)
            jax.block_until_ready(product(a, b))
            break
        except Exception as exc:  # this format has no product here: the next one
            tried.append(f"{name}: {building.first_line(exc, 150)}")
    else:
        raise Unsupported("jax.experimental.sparse: " + "; ".join(tried))

    def check() -> float:
        return k.max_error(
            _numpy(product(a, b)), k.sparse_reference(kernel, rows, cols, values, b_np)
        )

    detail = {
        "impl": f"jax.experimental.sparse.{name} @ dense (jit)",
        "nnz": int(a.nse),
        "fallback": tried or None,
    }
    return Bench(lambda: product(a, b), _sync, check=check, detail=detail)


def _conv(kernel: Kernel, precision: str, job: dict[str, Any]) -> Bench:
    x_np, w_np = k.conv_inputs(kernel)
    x, w = _to(x_np, precision), _to(w_np, precision)
    pad, stride = kernel.shape["pad"], kernel.shape["stride"]

    def forward(x: Any, w: Any) -> Any:
        return lax.conv_general_dilated(
            x,
            w,
            (stride, stride),
            [(pad, pad), (pad, pad)],
            dimension_numbers=("NCHW", "OIHW", "NCHW"),
        )

    if kernel.direction == "backward":
        fn = jax.jit(jax.grad(lambda x, w: jnp.sum(forward(x, w)), argnums=(0, 1)))
    else:
        fn = jax.jit(forward)

    def check() -> float:
        return k.max_error(_numpy(jax.jit(forward)(x, w)), k.conv_reference(kernel, x_np, w_np))

    return Bench(
        lambda: fn(x, w), _sync, check=check, detail={"impl": "lax.conv_general_dilated (jit)"}
    )


def _rnn(kernel: Kernel, precision: str, job: dict[str, Any]) -> Bench:
    s = kernel.shape
    hidden, gates = s["hidden"], 4 if s["cell"] == "lstm" else 3
    r = np.random.default_rng(0)
    scale = 1.0 / np.sqrt(hidden)
    params = {
        "w": _to(r.uniform(-scale, scale, (hidden, gates * hidden)), precision),
        "u": _to(r.uniform(-scale, scale, (hidden, gates * hidden)), precision),
        "b": _to(np.zeros(gates * hidden), precision),
    }
    x_np = k.rnn_inputs(kernel)
    x = _to(x_np, precision)
    lstm = s["cell"] == "lstm"

    def layer(params: Any, x: Any) -> Any:
        batch = x.shape[1]
        h0 = jnp.zeros((batch, hidden), x.dtype)
        xw = jnp.einsum("tbi,ig->tbg", x, params["w"]) + params["b"]  # input GEMM of all steps

        def lstm_step(carry: Any, xt: Any) -> Any:
            h, c = carry
            z = xt + h @ params["u"]
            i, f, g, o = jnp.split(z, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h

        def gru_step(h: Any, xt: Any) -> Any:
            xr, xz, xn = jnp.split(xt, 3, axis=-1)
            hr, hz, hn = jnp.split(h @ params["u"], 3, axis=-1)
            reset, update = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
            new = jnp.tanh(xn + reset * hn)
            h = (1 - update) * new + update * h
            return h, h

        if lstm:
            _, out = lax.scan(lstm_step, (h0, h0), xw)
        else:
            _, out = lax.scan(gru_step, h0, xw)
        return out

    if kernel.direction == "backward":
        fn = jax.jit(jax.grad(lambda p, x: jnp.sum(layer(p, x)), argnums=(0, 1)))
    else:
        fn = jax.jit(layer)

    def check() -> float:
        p = {name: _numpy(v) for name, v in params.items()}
        bias_h = np.zeros_like(p["b"])
        expected = k.rnn_reference(x_np, p["w"], p["u"], p["b"], bias_h, "ifgo" if lstm else "rzn")
        return k.max_error(_numpy(jax.jit(layer)(params, x)), expected)

    detail = {"impl": f"{s['cell'].upper()} as lax.scan (jit)"}
    return Bench(lambda: fn(params, x), _sync, check=check, detail=detail)


def _allreduce(kernel: Kernel, precision: str, job: dict[str, Any]) -> Bench:
    wanted = int(job["devices"])
    devices = _state["devices"][:wanted]
    if len(devices) < 2 or len(devices) < wanted:
        raise Unsupported(f"all-reduce over {wanted} devices: JAX sees {len(_state['devices'])}")
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    size, dtype = int(kernel.shape["size"]), _DTYPES[precision]
    mesh = Mesh(np.array(devices), ("i",))
    sharding = NamedSharding(mesh, P("i"))
    shard_map = getattr(jax, "shard_map", None)
    if shard_map is None:  # older JAX
        from jax.experimental.shard_map import shard_map
    reduce = jax.jit(
        shard_map(lambda v: lax.psum(v, "i"), mesh=mesh, in_specs=P("i"), out_specs=P("i"))
    )
    n = len(devices)
    zeros = jax.device_put(jnp.zeros((n * size,), dtype), sharding)  # one block per device

    def check() -> float:
        ones = jax.device_put(jnp.ones((n * size,), dtype), sharding)
        got = _numpy(reduce(ones)).reshape(n, size)[:, :1024]
        return k.max_error(got, np.full(got.shape, float(n)))

    detail = {"impl": "lax.psum in shard_map (jit)", "devices": len(devices)}
    if _state["device"].platform == "cpu":
        # XLA's CPU collectives deadlock in their rendezvous when many executions are
        # queued (seen with JAX 0.10): each call is waited for, and the result says so.
        detail["synchronised"] = "every call (queued CPU collectives deadlock)"
        return Bench(
            lambda: jax.block_until_ready(reduce(zeros)), _sync, check=check, detail=detail
        )
    return Bench(lambda: reduce(zeros), _sync, check=check, detail=detail)


build = building.dispatcher(
    gemm=_gemm, sparse_gemm=_sparse, conv=_conv, rnn=_rnn, allreduce=_allreduce
)
