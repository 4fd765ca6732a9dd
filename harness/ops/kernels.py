"""What a backend's ``ops`` module provides, and the NumPy side every backend shares.

A backend's kernels module (named by its harness_ops_kernels hook) has:

- ``setup(job) -> dict``: configures the framework (threads, devices) before any op runs
  and returns what it says about itself (name, version, devices);
- ``build(kernel, precision, job) -> Bench``: the kernel's inputs on the device and a
  callable that runs it once; raises :class:`Unsupported` when the framework has no
  kernel for the case (never a dense stand-in for a sparse one).

The inputs are drawn here with NumPy (same seed for every framework), so that the
result of one call can be checked against NumPy's computation of the same operation.
Imported only in the worker (NumPy is imported by the functions that need it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from harness.ops.suite import Kernel, conv_output, forward_flops, nnz

CHECK_LIMIT = 2e9  # FLOPs above which NumPy's reference is skipped (its time, not ours)


class Unsupported(Exception):
    """The framework has no kernel for this case (the message says why)."""


class Bench:
    """One kernel ready to run: ``call()`` runs it once and returns a token that
    ``sync(token)`` waits for; ``check()`` compares one result with NumPy's."""

    def __init__(
        self,
        call: Callable[[], Any],
        sync: Callable[[Any], None],
        *,
        check: Callable[[], float | None] | None = None,
        begin: Callable[[int], None] | None = None,
        close: Callable[[], None] | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self.call = call
        self.sync = sync
        self._check = check
        self.begin = begin
        self._close = close
        self.detail = detail or {}

    def check(self) -> float | None:
        return self._check() if self._check is not None else None

    def close(self) -> None:
        if self._close is not None:
            self._close()


def numpy_dtype(precision: str) -> str:
    return {"fp32": "float32", "fp16": "float16", "bf16": "float32", "fp64": "float64"}[precision]


def rng(kernel: Kernel) -> Any:
    return np.random.default_rng(abs(hash(kernel.name)) % (2**32))


def max_error(result: Any, expected: Any) -> float:
    """max |result - expected| / max |expected| (in float64)."""
    got = np.asarray(result, dtype=np.float64)
    want = np.asarray(expected, dtype=np.float64)
    if got.shape != want.shape:
        raise ValueError(f"result shape {got.shape}, expected {want.shape}")
    scale = float(np.max(np.abs(want))) or 1.0
    return float(np.max(np.abs(got - want))) / scale


def gemm_inputs(kernel: Kernel) -> tuple[Any, Any]:
    """A and B as stored (A is k x m when transposed, B is n x k when transposed), fp32."""
    s = kernel.shape
    r = rng(kernel)
    a = r.standard_normal((s["k"], s["m"]) if s["transpose_a"] else (s["m"], s["k"]))
    b = r.standard_normal((s["n"], s["k"]) if s["transpose_b"] else (s["k"], s["n"]))
    return a.astype("float32"), b.astype("float32")


def gemm_reference(kernel: Kernel, a: Any, b: Any) -> Any:
    s = kernel.shape
    op_a = a.T if s["transpose_a"] else a
    op_b = b.T if s["transpose_b"] else b
    return op_a.astype("float64") @ op_b.astype("float64")


def sparse_inputs(kernel: Kernel) -> tuple[Any, Any, Any, Any]:
    """(rows, cols, values) of A's non-zeros in row-major order (exactly ``nnz`` of them)
    and the dense B, fp32."""
    s = kernel.shape
    r = rng(kernel)
    count = nnz(s)
    flat = np.sort(r.choice(s["m"] * s["k"], size=count, replace=False))
    rows, cols = (flat // s["k"]).astype(np.int64), (flat % s["k"]).astype(np.int64)
    values = r.standard_normal(count).astype("float32")
    b = r.standard_normal((s["k"], s["n"])).astype("float32")
    return rows, cols, values, b


def sparse_reference(kernel: Kernel, rows: Any, cols: Any, values: Any, b: Any) -> Any:
    out = np.zeros((kernel.shape["m"], kernel.shape["n"]))
    np.add.at(out, rows, values.astype(np.float64)[:, None] * b[cols].astype(np.float64))
    return out


def conv_inputs(kernel: Kernel) -> tuple[Any, Any]:
    """x (N, C, H, W) and the filters (K, C, R, S), fp32."""
    s = kernel.shape
    r = rng(kernel)
    x = r.standard_normal((s["n"], s["c"], s["h"], s["w"])).astype("float32")
    w = (
        r.standard_normal((s["k"], s["c"], s["r"], s["s"])) / (s["c"] * s["r"] * s["s"]) ** 0.5
    ).astype("float32")
    return x, w


def conv_reference(kernel: Kernel, x: Any, w: Any) -> Any:
    """Cross-correlation (what frameworks call convolution), NCHW, float64."""
    s = kernel.shape
    pad, stride = s["pad"], s["stride"]
    p = conv_output(s["h"], s["r"], pad, stride)
    q = conv_output(s["w"], s["s"], pad, stride)
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((s["n"], s["k"], p, q))
    w64 = w.astype(np.float64)
    for i in range(s["r"]):
        for j in range(s["s"]):
            patch = padded[:, :, i : i + stride * p : stride, j : j + stride * q : stride]
            out += np.einsum("nchw,kc->nkhw", patch, w64[:, :, i, j])
    return out


def rnn_inputs(kernel: Kernel) -> Any:
    """The input sequence (steps, batch, hidden), fp32."""
    s = kernel.shape
    return rng(kernel).standard_normal((s["steps"], s["batch"], s["hidden"])).astype("float32")


def rnn_reference(x: Any, w: Any, u: Any, bx: Any, bh: Any, order: str) -> Any:
    """The output sequence (steps, batch, hidden) of one LSTM or GRU layer, float64.

    ``w`` (input, G x hidden) and ``u`` (hidden, G x hidden) hold the gates' blocks in
    ``order``: LSTM ``i f g o`` (input, forget, cell, output gates, in any order), GRU
    ``r z n`` (reset, update, new): ``n = tanh(x W_n + bx_n + r (h U_n + bh_n))`` and
    ``h' = (1 - z) n + z h``; ``bx``/``bh`` are the input and recurrent biases."""

    def sigmoid(v: Any) -> Any:
        return 1.0 / (1.0 + np.exp(-v))

    x, w, u, bx, bh = (np.asarray(a, dtype=np.float64) for a in (x, w, u, bx, bh))
    hidden = u.shape[0]
    block = {name: slice(i * hidden, (i + 1) * hidden) for i, name in enumerate(order)}
    h = np.zeros((x.shape[1], hidden))
    c = np.zeros_like(h)
    out = []
    for xt in x:
        gx, gh = xt @ w + bx, h @ u + bh
        if len(order) == 4:
            z = gx + gh
            i, f = sigmoid(z[:, block["i"]]), sigmoid(z[:, block["f"]])
            g, o = np.tanh(z[:, block["g"]]), sigmoid(z[:, block["o"]])
            c = f * c + i * g
            h = o * np.tanh(c)
        else:
            r = sigmoid(gx[:, block["r"]] + gh[:, block["r"]])
            z = sigmoid(gx[:, block["z"]] + gh[:, block["z"]])
            n = np.tanh(gx[:, block["n"]] + r * gh[:, block["n"]])
            h = (1.0 - z) * n + z * h
        out.append(h)
    return np.stack(out)


def checkable(kernel: Kernel) -> bool:
    if kernel.kind == "allreduce":
        return True
    work = forward_flops(kernel.kind, kernel.shape)
    return work is not None and work <= CHECK_LIMIT
