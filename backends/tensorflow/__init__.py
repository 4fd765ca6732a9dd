"""TensorFlow backend plugin. The framework is imported only by .trainer and .inference,
in the worker."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.backend import BackendInfo, BackendPlugin, Option

if TYPE_CHECKING:
    from harness.spec import RunSpec


def node_processes(spec: RunSpec) -> int:
    """--nodes N: MultiWorkerMirroredStrategy drives a worker's GPUs, but only one CPU
    device per worker: one process per node on GPUs, one per CPU device on the CPU."""
    return 1 if spec.num_gpus > 0 else spec.cpu_devices


INFO = BackendInfo(
    name="tensorflow",
    framework="TensorFlow",
    requires=("tensorflow",),
    install_hint="pip install 'dlbench-harness[tensorflow]'",
    trainer="harness.backends.tensorflow.trainer:TFTrainer",
    tasks=("train", "inference"),
    inferencer="harness.backends.tensorflow.inference:TFInferencer",
    precisions=("fp32", "fp16", "bf16"),
    description="tf.nn ops on tf.Variables built from harness.models, NHWC, one tf.function "
    "step (-o xla=true: XLA); MirroredStrategy in one process for several devices.",
    worker_env={
        "TF_CPP_MIN_LOG_LEVEL": "2",  # warnings and errors only
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",  # no preallocation, comparable memory figures
    },
    options=(Option("xla", "bool", False, "compile the train step with XLA (jit_compile)"),),
    node_launcher="local",  # --nodes N: MultiWorkerMirroredStrategy, TF_CONFIG per worker
    node_processes=node_processes,
    always_compiles="tf.function: the train step runs as a traced graph; -o xla=true: XLA",
)


PLUGIN = BackendPlugin(
    INFO,
    parity=f"{__name__}.parity:TFProbe",
    ops=f"{__name__}.ops",
)
