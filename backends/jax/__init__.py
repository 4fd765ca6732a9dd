"""JAX (Flax) backend plugin. The framework is imported only by .trainer and .inference,
in the worker.

One process drives all the run's devices (no multi-process launcher): a jitted train
step over a ``jax.sharding.Mesh`` with the batch split across the devices.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from harness.backend import BackendInfo, BackendPlugin, Option
from harness.cpu import thread_policy

if TYPE_CHECKING:
    from harness.spec import RunSpec

_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
# Read by XLA's PjRt CPU client (xla/pjrt/cpu/cpu_client.cc, DefaultThreadPoolSize).
_POOL_SIZE_VAR = "PJRT_NPROC"


def run_env(spec: RunSpec) -> dict[str, str]:
    """Environment the worker needs before jax is imported.

    The CPU thread policy (harness.cpu): XLA's CPU client sizes its intra-op pool
    ("XLAEigen", shared by all its devices) and its client pool from ``PJRT_NPROC``
    (read once, when the client is created; default: the CPUs in the affinity mask),
    taking at least one thread per device. It is set to the run's intra-op total, i.e.
    per device x devices; on GPU runs that is the host-side pool.

    CPU runs pin JAX to the CPU platform and, for ``--cpu-devices N`` (N > 1), split the
    host into N XLA devices; any XLA_FLAGS the user set are kept (the flag is appended,
    replacing an earlier device-count flag of theirs).
    """
    policy = thread_policy(spec)
    env = {_POOL_SIZE_VAR: str(policy.intra_op_total)}
    if spec.num_gpus > 0:
        return env
    env["JAX_PLATFORMS"] = "cpu"
    if spec.cpu_devices > 1:
        flags = os.environ.get("XLA_FLAGS", "").split()
        kept = [f for f in flags if not f.startswith(_DEVICE_COUNT_FLAG)]
        env["XLA_FLAGS"] = " ".join([*kept, f"{_DEVICE_COUNT_FLAG}={spec.cpu_devices}"])
    return env


INFO = BackendInfo(
    name="jax",
    framework="JAX (Flax)",
    requires=("jax", "flax", "optax"),
    install_hint="pip install 'dlbench-harness[jax]'",
    trainer="harness.backends.jax.trainer:JaxTrainer",
    tasks=("train", "inference"),
    inferencer="harness.backends.jax.inference:JaxInferencer",
    multi_process_launcher=None,
    precisions=("fp32", "fp16", "bf16"),
    description="flax.linen modules built from harness.models, optax SGD, one jitted train "
    "step (shard_map over a device Mesh, batch split, parameters replicated).",
    worker_env={"XLA_PYTHON_CLIENT_PREALLOCATE": "false"},
    run_env=run_env,
    node_launcher="local",  # --nodes N: one process per node, jax.distributed.initialize
    options=(
        Option(
            "compile_cache",
            "str",
            "off",
            "JAX's persistent compilation cache: on, off or a folder",
            ("on", "off", "true", "false", "1", "0", "yes", "no"),
            any_value=True,
        ),
    ),
    always_compiles="jax.jit: XLA compiles the train step",
)


PLUGIN = BackendPlugin(
    INFO,
    parity=f"{__name__}.parity:JaxProbe",
    ops=f"{__name__}.ops",
)
