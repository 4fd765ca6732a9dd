"""Parity with the NumPy reference, inside one framework's interpreter.

``python -m harness verify`` prepares the reference cases (models.parity.reference_case,
one .npz per (model, input)) in its own process and starts this module once per tool,
in the interpreter that has the framework:

    python -m harness.run.parity --tool pytorch --cases DIR [--gpu]

It prints one JSON object per case on stdout: the largest relative error of the
inference and training-mode logits, of the losses and of the trained state (after the
case's steps), and the device and TF32 setting they were measured with. The backend's
own code is what runs: ``numpy_forward`` of its network module for the logits, its
Trainer (built as the worker builds it) for the training steps.

The tests of every backend use the same two entry points, :func:`forward_function` and
:func:`trainer_steps`. The framework is imported only when they are called.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Forward = Callable[..., Any]


def forward_function(tool: str, gpu: bool = False) -> Forward:
    """(network, weights, NCHW images, training) -> logits, with ``tool``'s network module."""
    module = importlib.import_module(f"harness.backends.{tool}.network")
    numpy_forward = module.numpy_forward
    device: dict[str, Any] = {}
    if gpu:
        device = _gpu_device(tool)

    def run(network, weights, images, training):
        return numpy_forward(network, weights, images, training=training, **device)

    return run


def _gpu_device(tool: str) -> dict[str, Any]:
    if tool == "pytorch":
        return {"device": "cuda"}
    if tool == "tensorflow":
        return {"device": "/GPU:0"}
    if tool == "jax":
        import jax

        return {"device": jax.devices("gpu")[0]}
    if tool == "mxnet":
        import mxnet as mx

        return {"context": mx.gpu(0)}
    if tool == "onnxruntime":
        return {"provider": "cuda"}
    raise ValueError(f"no GPU placement known for tool {tool!r}")


def trainer_steps(
    tool: str,
    network: Any,
    weights: dict,
    batches: Sequence[tuple[Any, Any]],
    lr: float,
    gpu: bool = False,
    float64: bool = False,
) -> tuple[list[float], list[dict]]:
    """Runs ``tool``'s Trainer from ``weights``, one step per (NCHW images, labels) batch;
    (the loss of each step, the canonical state after each).

    ``float64`` (a test precision, not a user option; tools in :data:`FLOAT64` only):
    the trainer's weights, buffers and inputs are converted to float64 after it is
    built, so its own step (loss, backward, SGD update) runs in float64."""
    import numpy as np

    from harness.backend import WorkerContext
    from harness.plugins import PluginManager
    from harness.run.spec import RunSpec

    info = PluginManager().backend(tool)
    size = len(batches[0][0])
    dataset = "mnist" if network.input_shape[0] == 1 else "cifar10"
    spec = RunSpec(
        tool=tool,
        model=network.name,
        dataset=dataset,
        num_gpus=1 if gpu else -1,
        batch_size=size,
        learning_rate=lr,
    )
    ctx = WorkerContext(
        spec=spec,
        network=network,
        train=None,  # type: ignore[arg-type]
        test=None,
        initial_weights=lambda: {k: np.array(v, np.float32) for k, v in weights.items()},
    )
    trainer = info.load_trainer()(ctx)
    if float64 and tool not in FLOAT64:
        raise ValueError(f"no float64 test mode for tool {tool!r}; only {sorted(FLOAT64)}")
    widen = FLOAT64[tool](trainer) if float64 else None
    losses, states = [], []
    try:
        for images, labels in batches:
            if trainer.layout == "NHWC":
                images = np.ascontiguousarray(np.transpose(images, (0, 2, 3, 1)))
            images = np.asarray(images, np.float64 if float64 else np.float32)
            batch = trainer.device_batch(images, np.asarray(labels))
            token = trainer.train_step(batch)
            losses.append(trainer.loss_value(token))
            state = widen() if widen else trainer.state_dict()
            states.append({k: np.array(v, copy=True) for k, v in state.items()})  # no views
    finally:
        trainer.close()
    return losses, states


def _torch_float64(trainer: Any) -> Callable[[], dict]:
    """PyTorch's trainer in float64: its module doubled in place (the optimiser holds the
    same Parameters) and its batches too; the state read back without the float32 cast."""
    import torch

    trainer.module.double()
    device_batch = trainer.device_batch

    def batch(images, labels):
        x, y = device_batch(images, labels)
        return x.to(torch.float64), y

    trainer.device_batch = batch
    return lambda: {
        k: v.detach().cpu().numpy().copy()
        for k, v in trainer.module.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }


def _mxnet_float64(trainer: Any) -> Callable[[], dict]:
    """MXNet's trainer in float64: its block cast (the optimiser's states are created
    at the first update, in the parameters' dtype), its batches too, and its losses read
    without the float32 cast of its ``loss_value``."""
    trainer.block.cast("float64")
    device_batch = trainer.device_batch

    def batch(images, labels):
        xs, ys = device_batch(images, labels)
        return [x.astype("float64") for x in xs], ys

    trainer.device_batch = batch
    # the trainer's loss_value sums in float32; read the float64 per-image losses here
    trainer.loss_value = lambda token: (
        sum(float(loss.asnumpy().astype("float64").sum()) for loss in token)
        / trainer.ctx.global_batch
    )
    return lambda: {
        k: p.list_data()[0].asnumpy().astype("float64") for k, p in trainer.params.items()
    }


def _jax_float64(trainer: Any) -> Callable[[], dict]:
    """JAX's trainer in float64: 64-bit mode on (until the trainer closes), its state
    (weights, batch statistics, momentum) widened and its batches too; the fp32 module
    computes in its inputs' dtype, and the loss is taken in the logits' dtype."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from harness.backends.jax.network import canonical_state

    jax.config.update("jax_enable_x64", True)
    close = trainer.close

    def restore() -> None:
        try:
            close()
        finally:
            jax.config.update("jax_enable_x64", False)

    trainer.close = restore
    # widened on the host: an eager astype compiles one XLA kernel per leaf shape
    wide = lambda tree: jax.tree_util.tree_map(  # noqa: E731
        lambda a: np.asarray(a, np.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a,
        tree,
    )
    state = trainer.state
    trainer.state = jax.device_put(
        state._replace(
            params=wide(state.params),
            batch_stats=wide(state.batch_stats),
            opt_state=wide(state.opt_state),
        ),
        trainer.replicated,
    )
    return lambda: canonical_state(
        trainer.network, jax.device_get(trainer._variables()), dtype=np.float64
    )


def _tf_float64(trainer: Any) -> Callable[[], dict]:
    """TensorFlow's trainer in float64: its variables made again in float64 (weights,
    running statistics, momentum), its computation dtype float64 and its step traced
    afresh; the trainer casts gradients and SGD constants to each variable's dtype.
    Networks without batch norm only (:data:`FLOAT64_WITHOUT_BATCH_NORM`)."""
    import numpy as np
    import tensorflow as tf

    from harness.backends.tensorflow.network import to_canonical

    if trainer.strategy is not None:
        raise ValueError("the float64 test mode runs on one device")
    net = trainer.net
    with trainer._scope():
        net.create_variables(trainer.ctx.initial_weights(), dtype=np.float64)
        trainer.params = net.trainable()
        trainer.buffers = [
            tf.Variable(tf.zeros(p.shape, tf.float64), trainable=False) for p in trainer.params
        ]
    trainer.dtype = tf.float64
    trainer._grads_fn = trainer._grads
    trainer._train = tf.function(trainer._train_step)
    return lambda: {
        key: to_canonical(var.numpy(), net.kinds[key], np.float64)
        for key, var in net.variables.items()
    }


# Tools whose trainer can run a float64 test step.
FLOAT64: dict[str, Callable[[Any], Callable[[], dict]]] = {
    "pytorch": _torch_float64,
    "mxnet": _mxnet_float64,
    "jax": _jax_float64,
    "tensorflow": _tf_float64,
}
# TensorFlow's trainer normalises with FusedBatchNormV3, which has no float64 kernel
# (half, bfloat16 and float only): its float64 steps are those of networks without one.
FLOAT64_WITHOUT_BATCH_NORM = {"tensorflow"}
# Relative tolerance of the float64 steps: models.parity.FLOAT64_TOLERANCE (1e-6) unless
# the framework's float64 kernels fall short of it. MXNet's do, by a little: its batch
# norm keeps float32 precision somewhere (running statistics off by 2**-22 after a step,
# losses by 1.5e-6 on ResNet-50), so 1e-5; and on ResNet-50 that is enough for its third
# step to cross ReLU kinks the reference does not (2e-2 on some layer4 weights), so
# MXNet's ResNet-50 is checked over two float64 steps (FLOAT64_STEPS).
FLOAT64_TOLERANCES = {"pytorch": 1e-6, "mxnet": 1e-5, "jax": 1e-6, "tensorflow": 1e-6}
FLOAT64_STEPS = {("mxnet", "resnet50"): 2}


def tf32(tool: str) -> bool | None:
    """Whether the framework may compute float32 matmuls/convolutions in TF32 on the GPU
    (None: unknown)."""
    if tool == "pytorch":
        import torch

        return bool(torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32)
    if tool == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.experimental.tensor_float_32_execution_enabled())
    if tool == "jax":
        import jax

        precision = getattr(jax.config, "jax_default_matmul_precision", None)
        return precision in (None, "default", "bfloat16", "tensorfloat32", "fastest")
    if tool == "mxnet":
        return os.environ.get("MXNET_CUDA_ALLOW_TENSOR_CORE", "1") != "0"
    if tool == "onnxruntime":
        return True  # the CUDA execution provider's use_tf32 defaults to 1
    return None


def _tasks(tool: str) -> tuple[str, ...]:
    from harness.plugins import PluginManager

    return PluginManager().backend(tool).tasks


def check_case(tool: str, path: Path, gpu: bool) -> dict[str, Any]:
    """Every error measure of one case file (see the module docstring)."""
    import numpy as np

    from harness import models
    from harness.models import parity as P

    case = dict(np.load(path))
    name, c, h, w, classes = json.loads(path.with_suffix(".json").read_text())["pair"]
    network = P.without_dropout(models.build(name, (c, h, w), classes))
    weights = P.section(case, "weight")
    run = forward_function(tool, gpu)
    forward = P.relative_error(run(network, weights, case["images"], False), case["logits"])
    training = P.relative_error(run(network, weights, case["images"], True), case["train_logits"])
    steps = len(case["losses"])
    data = [(case[f"batch{s}/images"], case[f"batch{s}/labels"]) for s in range(steps)]
    loss_error = state_error = None  # an inference-only tool (onnxruntime) has no trainer
    where = "inference only"
    if "train" in _tasks(tool):
        losses, states = trainer_steps(tool, network, weights, data, float(case["lr"]), gpu)
        loss_error, state_error, where = P.training_errors(
            case, losses, states, tool in P.BIASED_RUNNING_VAR
        )
    return {
        "tool": tool,
        "model": name,
        "input": f"{c}x{h}x{w}",
        "forward": forward,
        "forward_training": training,
        "loss": loss_error,
        "state": state_error,
        "worst": where,
        "steps": steps,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.run.parity")
    parser.add_argument("--tool", required=True)
    parser.add_argument("--cases", required=True, help="folder of reference case files")
    parser.add_argument("--gpu", action="store_true")
    args = parser.parse_args(argv)
    files = sorted(Path(args.cases).glob("*.npz"))
    header = {"tool": args.tool, "device": "gpu" if args.gpu else "cpu", "tf32": None}
    if args.gpu:
        header["tf32"] = tf32(args.tool)
    print(json.dumps({"header": header}), flush=True)
    for path in files:
        try:
            row = check_case(args.tool, path, args.gpu)
        except Exception as exc:  # one broken case is that case's result
            pair = json.loads(path.with_suffix(".json").read_text())["pair"]
            row = {
                "tool": args.tool,
                "model": pair[0],
                "input": "x".join(map(str, pair[1:4])),
                "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
            }
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
