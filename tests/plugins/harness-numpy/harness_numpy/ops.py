"""The numpy tool's operation kernels (``python -m harness ops --tool numpy``): GEMM with
``numpy.matmul`` on the CPU; every other kind is unsupported. Named by the
harness_ops_kernels hook and imported only in the ops worker.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from harness.ops import kernels as k
from harness.ops.kernels import Bench, Unsupported
from harness.ops.suite import Kernel

_DTYPES = {"fp32": np.float32, "fp16": np.float16}


def setup(job: dict[str, Any]) -> dict[str, Any]:
    if job["device"] != "cpu":
        raise RuntimeError("the numpy backend runs on the CPU only: use --num-gpus -1")
    return {
        "name": "NumPy",
        "version": np.__version__,
        "device": "cpu",
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or None,
    }


def build(kernel: Kernel, precision: str, job: dict[str, Any]) -> Bench:
    if kernel.kind != "gemm" or kernel.direction != "forward":
        raise Unsupported(f"the numpy backend times forward GEMMs only, not {kernel.label}")
    if precision not in _DTYPES:
        raise Unsupported(f"NumPy has no {precision} GEMM")
    a_np, b_np = k.gemm_inputs(kernel)
    a, b = a_np.astype(_DTYPES[precision]), b_np.astype(_DTYPES[precision])
    op_a = a.T if kernel.shape["transpose_a"] else a
    op_b = b.T if kernel.shape["transpose_b"] else b

    def call() -> np.ndarray:
        return np.matmul(op_a, op_b)

    def check() -> float:
        return k.max_error(call(), k.gemm_reference(kernel, a_np, b_np))

    return Bench(call, lambda _token: None, check=check, detail={"impl": "numpy.matmul"})
