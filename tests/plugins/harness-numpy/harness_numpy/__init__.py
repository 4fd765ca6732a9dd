"""harness plugin: the ``numpy`` tool, a NumPy reference trainer.

Imports only the standard library and the harness; NumPy is imported by
``harness_numpy.trainer`` inside the worker process of a run, by ``harness_numpy.parity``
in ``verify``'s parity process and by ``harness_numpy.ops`` in the ops worker.
"""

from __future__ import annotations

from collections.abc import Callable

from harness import hookimpl
from harness.backend import BackendInfo

__version__ = "0.1.0"

INFO = BackendInfo(
    name="numpy",
    framework="NumPy (reference)",
    requires=("numpy",),
    install_hint="pip install tests/plugins/harness-numpy",
    trainer="harness_numpy.trainer:NumpyTrainer",
    description="Forward and backward passes written in NumPy, on the CPU, for LeNet "
    "and other plain CNNs (Conv2D, MaxPool, ReLU, Flatten, Dense, Dropout).",
)


@hookimpl
def harness_register_backends(register: Callable[[BackendInfo], None]) -> None:
    register(INFO)


# Plugin API 1.2: what ``verify`` and ``ops`` need, named lazily (imported only in the
# parity process and the ops worker, where NumPy may be imported).


@hookimpl
def harness_parity_probe(backend: BackendInfo) -> str | None:
    return "harness_numpy.parity:NumpyProbe" if backend.name == INFO.name else None


@hookimpl
def harness_ops_kernels(backend: BackendInfo) -> str | None:
    return "harness_numpy.ops" if backend.name == INFO.name else None
