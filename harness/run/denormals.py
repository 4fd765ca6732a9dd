"""Denormal floats on the CPU: each framework's own way, or flushed to zero in every one.

Arithmetic on denormal (subnormal) floats is many times slower on x86 CPUs, and the
frameworks disagree on them: some flush them to zero by themselves, others keep them
(docs/user-guide/timing.md says which). A benchmark that trains on few synthetic batches
can drive values into that range: ResNet-50 trained on *one* batch in a framework that
keeps them ran about 10% slower after 30 steps than with them flushed (with the
harness's four batches no difference showed, docs/speed.md). Such a figure depends on
the run's length, and a comparison with a framework that flushes mixes two kinds of
arithmetic.

``--denormals flush`` makes every framework compute alike: the worker sets the CPU's
flush-to-zero (FTZ: results) and denormals-are-zero (DAZ: inputs) bits of MXCSR in its
main thread *before* a framework is imported, and the threads it starts afterwards
inherit the floating-point environment (POSIX ``pthread_create``). The default, ``keep``,
leaves each framework its own way. The worker records its main thread's mode once the
framework has started (:func:`state`); a framework's own flushing, done in its own
threads, does not show there.

Done with the C library's ``fegetenv``/``fesetenv`` (ctypes): no framework, no compiled
code. Only x86-64 Linux (glibc's ``fenv_t`` ends with MXCSR); elsewhere the state is
"unsupported" and nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import sys

MODES = ("keep", "flush")
_FTZ, _DAZ = 0x8000, 0x0040  # MXCSR bits: flush to zero, denormals are zero
_FENV_WORDS = 8  # x86-64 glibc fenv_t: 32 bytes, MXCSR in the last 4


def _libm() -> ctypes.CDLL | None:
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return None
    name = ctypes.util.find_library("m")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def _mxcsr(libm: ctypes.CDLL) -> ctypes.Array[ctypes.c_uint32] | None:
    env = (ctypes.c_uint32 * _FENV_WORDS)()
    return env if libm.fegetenv(ctypes.byref(env)) == 0 else None


def state() -> str:
    """The calling thread's mode: "flush" (FTZ and DAZ set), "keep" (neither), "partial"
    (one of them), or "unsupported" (not x86-64 Linux)."""
    libm = _libm()
    env = _mxcsr(libm) if libm is not None else None
    if env is None:
        return "unsupported"
    bits = env[-1] & (_FTZ | _DAZ)
    return "flush" if bits == _FTZ | _DAZ else "keep" if bits == 0 else "partial"


def apply(mode: str) -> str:
    """Sets ``mode`` ("flush" or "keep") in the calling thread, for the threads it starts
    from now on; returns :func:`state` after it."""
    if mode not in MODES:
        raise ValueError(f"denormals must be one of {', '.join(MODES)}, not {mode!r}")
    libm = _libm()
    env = _mxcsr(libm) if libm is not None else None
    if libm is None or env is None:
        return "unsupported"
    if mode == "flush":
        env[-1] |= _FTZ | _DAZ
    else:
        env[-1] &= ~(_FTZ | _DAZ) & 0xFFFFFFFF
    libm.fesetenv(ctypes.byref(env))
    return state()
