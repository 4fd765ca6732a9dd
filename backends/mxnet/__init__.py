"""MXNet backend plugin. The framework is imported only by .trainer and .inference, in the
worker."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.backend import BackendInfo, BackendPlugin, Option
from harness.cpu import cpu_flags, thread_policy

if TYPE_CHECKING:
    from harness.spec import RunSpec

# oneDNN's bf16 kernels in MXNet 1.9 need AVX-512 (its "avx512_core" level); without it
# every bf16 primitive fails to be created ("could not create a primitive descriptor").
BF16_CPU_FLAGS = frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq"})


def run_env(spec: RunSpec) -> dict[str, str]:
    """The CPU thread policy (harness.cpu) in the variables MXNet 1.9 reads at start-up.

    MXNet's engine keeps a pool of ``MXNET_CPU_WORKER_NTHREADS`` worker threads per CPU
    context (default 1), and each operator runs an OpenMP team of ``OMP_NUM_THREADS``
    (which the orchestrator sets to the per-device share for every backend; unset, MXNet
    would take half the processors). The contexts run concurrently: one worker per
    device (the inter-op rule) with the per-device share each uses the run's total.
    """
    return {"MXNET_CPU_WORKER_NTHREADS": str(thread_policy(spec).inter_op)}


INFO = BackendInfo(
    name="mxnet",
    framework="MXNet",
    requires=("mxnet",),
    # MXNet 1.9 imports only with numpy<1.24 (the extra pins it): give it a venv of its own.
    install_hint="pip install 'dlbench-harness[mxnet]'",
    trainer="harness.backends.mxnet.trainer:MXNetTrainer",
    multi_node_refusal="MXNet's distributed kvstore needs its parameter-server launcher "
    "(tools/launch.py), which the harness does not run; train it on one node",
    tasks=("train", "inference"),
    inferencer="harness.backends.mxnet.inference:MXNetInferencer",
    # fp16 is AMP on GPUs only (MXNet has no fp16 GEMM on the CPU; not run on a GPU
    # yet); bf16 is AMP on the CPU (oneDNN) only: see precision_refusal.
    precisions=("fp32", "fp16", "bf16"),
    run_env=run_env,
    description="Gluon HybridBlocks built from harness.models, hybridized with static "
    "memory; several devices in one process: a list of contexts and a kvstore.",
    options=(
        Option("hybridize", "bool", True, "hybridize with static_alloc and static_shape"),
        Option(
            "kvstore",
            "str",
            "local (CPU), device (GPUs)",
            "the kvstore type",
            ("local", "device", "nccl", "dist_sync", "dist_device_sync", "dist_async"),
        ),
    ),
    compile_option="hybridize",  # --compile: Gluon's static graph, on by default anyway
)


def precision_refusal(spec: RunSpec, flags: frozenset[str] | None) -> str | None:
    """Why MXNet cannot run the precision on these devices (None: it can, or the CPU's
    flags are unknown): fp16 on GPUs only, bf16 on the CPU only, with AVX-512 there;
    inference (inference.py) in fp32 only."""
    from harness.run.task import task_for

    if not task_for(spec.task).trains and spec.precision != "fp32":
        return (
            f"MXNet inference runs fp32 only ({spec.precision} is an AMP training mode "
            "here): use --precision fp32"
        )
    if spec.precision == "fp16" and spec.num_gpus < 0:
        return "MXNet runs fp16 on GPUs only (no fp16 GEMM on the CPU): use fp32 or bf16"
    if spec.precision == "bf16" and spec.num_gpus > 0:
        return "MXNet runs bf16 (AMP with oneDNN) on the CPU only: use fp16 on GPUs"
    if spec.precision != "bf16" or spec.num_gpus > 0 or flags is None:
        return None
    missing = sorted(BF16_CPU_FLAGS - flags)
    if not missing:
        return None
    return (
        f"bf16 on the CPU needs AVX-512 for oneDNN's bf16 kernels; this CPU lacks "
        f"{', '.join(missing)}: use --precision fp32"
    )


PLUGIN = BackendPlugin(
    INFO,
    parity=f"{__name__}.parity:MXNetProbe",
    ops=f"{__name__}.ops",
    refuse=lambda spec, network: precision_refusal(spec, cpu_flags()),
)
