"""Device setup for the TensorFlow trainer; must run before TensorFlow executes any op.

- GPU runs: the orchestrator's CUDA_VISIBLE_DEVICES lists exactly the selected GPUs;
  the first ``num_gpus`` visible ones are used, with memory growth switched on (no
  preallocation), and the run fails clearly if fewer are visible.
- CPU runs: GPUs are hidden; ``cpu_devices`` > 1 splits the physical CPU into that many
  logical devices (they share the same cores and thread pools) for MirroredStrategy.
"""

from __future__ import annotations

import contextlib
from typing import Any

import tensorflow as tf

from harness.cpu import report, thread_policy
from harness.spec import RunSpec


def _split_cpu(count: int) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    current = tf.config.get_logical_device_configuration(cpu)
    if count == 1 and not current:
        return
    if current is not None and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, wanted)
    except RuntimeError as exc:  # the runtime started before the trainer
        have = len(tf.config.list_logical_devices("CPU"))
        if have < count:
            raise RuntimeError(
                f"cannot split the CPU into {count} devices: TensorFlow was already "
                f"initialised with {have}; configure devices before any op runs"
            ) from exc


def set_threads(spec: RunSpec, local: int | None = None) -> None:
    """Applies the CPU thread policy (harness.cpu) to TensorFlow's two pools.

    The process's devices (logical CPUs or GPUs) share one intra-op pool and one inter-op
    pool, so each is sized per device x devices: intra-op ``intra_op_per_device x
    devices`` threads, inter-op one thread per device. Already initialised (tests in one
    process): the running pools stay, and :func:`threads` reads back what they are.
    ``local``: the devices this process drives when it is one of several on its node
    (--nodes on the CPU: one worker per CPU device).
    """
    policy = thread_policy(spec)
    devices = policy.devices if local is None else local
    with contextlib.suppress(RuntimeError):
        tf.config.threading.set_intra_op_parallelism_threads(policy.per_process(devices))
    with contextlib.suppress(RuntimeError):
        tf.config.threading.set_inter_op_parallelism_threads(policy.inter_op * devices)


def threads(devices: int) -> dict[str, Any]:
    """The pools' sizes read back from TensorFlow, in the policy's terms."""
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    return report(
        intra_op_total=intra,
        intra_op_per_device=intra // devices,
        inter_op=inter // devices,
        devices=devices,
        how="tf.config.threading.set_intra_op_parallelism_threads / "
        "set_inter_op_parallelism_threads (one pool each, shared by the "
        f"{devices} device(s): per device = pool / devices), read back with the getters",
    )


def configure(spec: RunSpec, local: int | None = None) -> list[str]:
    """Sets up threads and devices for ``spec``; returns the device names to use.

    ``local``: CPU devices of this process when it is one of several on its node (a
    multi-node CPU run has one worker per CPU device); None: ``spec.cpu_devices``."""
    set_threads(spec, local if spec.num_gpus < 0 else None)
    gpus = tf.config.list_physical_devices("GPU")
    if spec.num_gpus > 0:
        if len(gpus) < spec.num_gpus:
            raise RuntimeError(
                f"the run asks for {spec.num_gpus} GPU(s) but TensorFlow sees {len(gpus)} "
                "(is this a tensorflow-cpu install, or CUDA_VISIBLE_DEVICES too narrow?)"
            )
        chosen = gpus[: spec.num_gpus]
        try:
            tf.config.set_visible_devices(chosen, "GPU")
            for gpu in chosen:
                tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialised; TF_FORCE_GPU_ALLOW_GROWTH (worker_env) still applies
        return [f"/gpu:{i}" for i in range(spec.num_gpus)]
    if gpus:
        with contextlib.suppress(RuntimeError):
            tf.config.set_visible_devices([], "GPU")
    count = spec.cpu_devices if local is None else local
    _split_cpu(count)
    return [f"/cpu:{i}" for i in range(count)]


def describe(devices: list[str]) -> list[str]:
    """Human names of the devices, e.g. 'NVIDIA H100 80GB HBM3' or 'cpu:1 (logical)'."""
    names = []
    physical = tf.config.list_physical_devices("GPU")
    for device in devices:
        kind, _, index = device.strip("/").partition(":")
        if kind == "gpu" and int(index) < len(physical):
            details = tf.config.experimental.get_device_details(physical[int(index)])
            names.append(str(details.get("device_name", device)))
        else:
            logical = " (logical)" if len(devices) > 1 else ""
            names.append(f"cpu:{index}{logical}")
    return names


def framework_basics(gpu: bool, devices: list[str]) -> dict[str, Any]:
    """What the trainer's and the inferencer's ``framework_info`` both say first."""
    build = tf.sysconfig.get_build_info()
    return {
        "framework": "tensorflow",
        "version": tf.__version__,
        "cuda": build.get("cuda_version") if gpu else None,
        "cudnn": build.get("cudnn_version") if gpu else None,
        "devices": describe(devices),
    }
