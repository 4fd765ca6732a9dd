"""TensorFlow backend plugin. The framework is imported only by .trainer, in the worker."""

from __future__ import annotations

from collections.abc import Callable

from harness import hookimpl
from harness.backend import BackendInfo, Option

INFO = BackendInfo(
    name="tensorflow",
    framework="TensorFlow",
    requires=("tensorflow",),
    install_hint="pip install 'dlbench-harness[tensorflow]'",
    trainer="harness.backends.tensorflow.trainer:TFTrainer",
    precisions=("fp32", "fp16", "bf16"),
    description="tf.nn ops on tf.Variables built from harness.models, NHWC, one tf.function "
    "step (-o xla=true: XLA); MirroredStrategy in one process for several devices.",
    worker_env={
        "TF_CPP_MIN_LOG_LEVEL": "2",  # warnings and errors only
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",  # no preallocation, comparable memory figures
    },
    options=(Option("xla", "bool", False, "compile the train step with XLA (jit_compile)"),),
)


@hookimpl
def harness_register_backends(register: Callable[[BackendInfo], None]) -> None:
    register(INFO)
