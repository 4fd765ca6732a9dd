"""MXNet backend plugin. The framework is imported only by .trainer, in the worker."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from harness import hookimpl
from harness.backend import BackendInfo

if TYPE_CHECKING:
    from harness.spec import RunSpec


def run_env(spec: RunSpec) -> dict[str, str]:
    """With N CPU contexts, give each device's operators an equal share of the cores.

    MXNet runs the contexts' operators concurrently, each with OpenMP's default of every
    core; ``--threads`` (which sets OMP_NUM_THREADS itself) overrides this share.
    """
    if spec.num_gpus > 0 or spec.cpu_devices <= 1 or spec.threads:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // spec.cpu_devices))}


INFO = BackendInfo(
    name="mxnet",
    framework="MXNet",
    requires=("mxnet",),
    # MXNet 1.9 imports only with numpy<1.24 (the extra pins it): give it a venv of its own.
    install_hint="pip install 'harness[mxnet]'",
    trainer="harness.backends.mxnet.trainer:MXNetTrainer",
    # fp16 needs a GPU (MXNet has no fp16 GEMM on the CPU) and is untested here;
    # bf16 is AMP on the CPU (oneDNN) only.
    precisions=("fp32", "bf16"),
    run_env=run_env,
    description="Gluon HybridBlocks built from harness.models, hybridized with static "
    "memory; several devices in one process: a list of contexts and a kvstore.",
)


@hookimpl
def harness_register_backends(register: Callable[[BackendInfo], None]) -> None:
    register(INFO)
