"""The framework-independent half of a backend's ``build`` (see :mod:`harness.ops.kernels`).

A backend's ops module keeps only its framework calls: which builder serves each kernel
kind (:func:`dispatcher`), how a GEMM multiplies its device operands (:func:`gemm`), and
which of its errors mean "no such kernel here" (:func:`probe`). The inputs, the check
against NumPy and the ``Bench`` around the call are built here, the same for every one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.ops import kernels as k
from harness.ops.kernels import Bench, Unsupported
from harness.ops.suite import Kernel

Builder = Callable[[Kernel, str, dict[str, Any]], Bench]
#: A framework's "this NumPy array on the device, in this precision".
ToDevice = Callable[[Any, str], Any]
#: A framework's "this device result as a float32 NumPy array".
ToNumpy = Callable[[Any], Any]


@dataclass(frozen=True)
class Device:
    """How a backend moves arrays: ``to`` the device, back to ``numpy``, and ``sync``."""

    to: ToDevice
    numpy: ToNumpy
    sync: Callable[[Any], None]


#: Given the device operands and the transpose flags, the call that multiplies them once.
Multiply = Callable[[Any, Any, bool, bool], Callable[[], Any]]


def dispatcher(
    *, gemm: Builder, sparse_gemm: Builder, conv: Builder, rnn: Builder, allreduce: Builder
) -> Builder:
    """The backend's ``build``: the builder of the kernel's kind (one for every kind)."""
    builders = {
        "gemm": gemm,
        "sparse_gemm": sparse_gemm,
        "conv": conv,
        "rnn": rnn,
        "allreduce": allreduce,
    }

    def build(kernel: Kernel, precision: str, job: dict[str, Any]) -> Bench:
        return builders[kernel.kind](kernel, precision, job)

    return build


def gemm(kernel: Kernel, precision: str, device: Device, multiply: Multiply, impl: str) -> Bench:
    """A GEMM bench: the NumPy operands on the device, ``multiply``'s call, its check."""
    a_np, b_np = k.gemm_inputs(kernel)
    a, b = device.to(a_np, precision), device.to(b_np, precision)
    call = multiply(a, b, kernel.shape["transpose_a"], kernel.shape["transpose_b"])

    def check() -> float:
        return k.max_error(device.numpy(call()), k.gemm_reference(kernel, a_np, b_np))

    return Bench(call, device.sync, check=check, detail={"impl": impl})


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's text (frameworks' messages run for pages)."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__


def probe(call: Callable[[], Any], errors: tuple[type[BaseException], ...], what: str) -> None:
    """Runs ``call`` once: one of the framework's ``errors`` means it has no kernel for
    the case, raised as :class:`Unsupported` saying ``what`` failed and why."""
    try:
        call()
    except errors as exc:
        raise Unsupported(f"{what}: {first_line(exc)}") from None
