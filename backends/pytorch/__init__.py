"""PyTorch backend plugin. The framework is imported only by .trainer, in the worker."""

from __future__ import annotations

import os
import shutil

from harness.backend import BackendInfo, BackendPlugin, Option
from harness.launchers import Launcher, LaunchRequest
from harness.models import Network
from harness.spec import RunSpec

#: The C++ compilers torch.compile's CPU code generator (Inductor) looks for.
CXX_COMPILERS = ("g++", "c++", "clang++")

INFO = BackendInfo(
    name="pytorch",
    framework="PyTorch",
    requires=("torch",),
    install_hint="pip install 'dlbench-harness[pytorch]'",
    trainer="harness.backends.pytorch.trainer:TorchTrainer",
    inferencer="harness.backends.pytorch.inference:TorchInferencer",
    tasks=("train", "inference"),
    multi_process_launcher="torchrun",
    node_launcher="torchrun",  # --nodes N: torchrun on each node, c10d rendezvous
    precisions=("fp32", "fp16", "bf16"),
    description="torch.nn modules built from harness.models; DistributedDataParallel over "
    "torchrun for several devices (nccl on GPUs, gloo on CPUs).",
    options=(
        Option(
            "compile",
            "bool",
            False,
            "torch.compile the model and the evaluation (opt-in; its compilation is "
            "reported apart: the first step less a steady one)",
        ),
        Option("channels_last", "bool", False, "channels-last memory format (GPUs)"),
        Option("cuda_events", "bool", False, "per-step device times from CUDA events (GPUs)"),
    ),
    compile_option="compile",  # --compile is -o compile=true
)


def torchrun_command(request: LaunchRequest) -> list[str]:
    """torchrun on this host, one process per device (``--standalone``: single node).

    One node of a multi-node run (``request.nodes`` > 1): ``--nnodes N`` with a c10d
    rendezvous at ``request.rendezvous`` (node 0's host), which every node's torchrun
    joins; the rendezvous numbers the nodes (torchrun ignores ``--node-rank`` with c10d),
    so RANK groups a node's processes but need not follow ``request.node_rank``.

    torchrun sets OMP_NUM_THREADS=1 in every rank only when the variable is unset; the
    orchestrator always sets it (harness.cpu: the per-device share), so that share
    reaches each rank, and the trainer sets it again with torch.set_num_threads.
    """
    if request.nodes > 1:
        if not request.rendezvous or request.node_rank is None:
            raise ValueError("a multi-node torchrun needs the node rank and the rendezvous")
        where = [
            f"--nnodes={request.nodes}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={request.rendezvous}",
            f"--rdzv-id={request.run_id or 'harness'}",
            "--max-restarts=0",
        ]
    else:
        where = ["--standalone"]
    return [
        request.python,
        "-m",
        "torch.distributed.run",
        *where,
        f"--nproc-per-node={request.processes}",
        *request.worker_args(),
    ]


def compile_refusal(spec: RunSpec, network: Network | None = None) -> str | None:
    """One line when ``--compile`` (``-o compile=true``) cannot work: a CPU run needs a C++ compiler
    (``$CXX`` or one of :data:`CXX_COMPILERS` on the PATH) for torch.compile's code."""
    if spec.options.get("compile", "").lower() not in ("1", "true", "yes", "on"):
        return None
    if spec.num_gpus > 0:
        return None
    found = os.environ.get("CXX") or next(filter(shutil.which, CXX_COMPILERS), None)
    if found and shutil.which(found):
        return None
    return (
        "--compile (-o compile=true) needs a C++ compiler for torch.compile on CPU ($CXX, "
        f"or one of {', '.join(CXX_COMPILERS)} on the PATH): install one (e.g. apt install "
        "g++), or drop the option"
    )


PLUGIN = BackendPlugin(
    INFO,
    parity=f"{__name__}.parity:TorchProbe",
    ops=f"{__name__}.ops",
    launchers=(
        Launcher(
            "torchrun",
            torchrun_command,
            "torch.distributed.run: one node (--standalone), or one node of --nodes N (c10d)",
        ),
    ),
    refuse=compile_refusal,
)
