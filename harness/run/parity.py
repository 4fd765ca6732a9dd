"""Parity with the NumPy reference, inside one framework's interpreter.

``python -m harness verify`` prepares the reference cases (models.parity.reference_case,
one .npz per (model, input)) in its own process and starts this module once per tool,
in the interpreter that has the framework:

    python -m harness.run.parity --tool TOOL --cases DIR [--gpu]

It prints one JSON object per case on stdout: the largest relative error of the
inference and training-mode logits, of the losses and of the trained state (after the
case's steps), and the device and TF32 setting they were measured with. The backend's
own code is what runs: the forward pass of its parity probe (harness.backend.ParityProbe,
named by the harness_parity_probe hook) for the logits, its Trainer (built as the worker
builds it) for the training steps.

The tests of every backend use the same entry points, :func:`probe`,
:func:`forward_function` and :func:`trainer_steps`. The framework is imported only when
they are called.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness import models
from harness.backend import WorkerContext
from harness.errors import UsageError
from harness.models import parity as P
from harness.plugins import PluginManager
from harness.spec import RunSpec

if TYPE_CHECKING:
    from harness.backend import ParityProbe

Forward = Callable[..., Any]


@cache
def probe(tool: str) -> ParityProbe:
    """``tool``'s parity probe (the harness_parity_probe hook), built now: this process
    may import the framework. UsageError when the backend has none."""

    pm = PluginManager()
    found = pm.parity_probe(pm.backend(tool))
    if found is None:
        have = ", ".join(pm.backends_with("harness_parity_probe")) or "none"
        raise UsageError(f"{tool} has no parity probe; backends with one: {have}")
    return found


def forward_function(tool: str, gpu: bool = False) -> Forward:
    """(network, weights, NCHW images, training) -> logits, with ``tool``'s network."""
    forward = probe(tool).forward

    def run(network, weights, images, training):
        return forward(network, weights, images, training, gpu)

    return run


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

    ``float64`` (a test precision, not a user option; where the tool's probe has a
    float64 test mode, ParityProbe.float64_steps): the trainer's weights, buffers and
    inputs are converted to float64 after it is built, so its own step (loss, backward,
    SGD update) runs in float64."""
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
    if float64 and not probe(tool).float64_steps(network, len(batches)):
        raise ValueError(f"no float64 test mode for tool {tool!r} and {network.name}")
    trainer = info.load_trainer()(ctx)
    widen = probe(tool).float64(trainer) if float64 else None
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


def _tasks(tool: str) -> tuple[str, ...]:
    return PluginManager().backend(tool).tasks


def check_case(tool: str, path: Path, gpu: bool) -> dict[str, Any]:
    """Every error measure of one case file (see the module docstring)."""
    case = dict(np.load(path))
    name, c, h, w, classes = json.loads(path.with_suffix(".json").read_text())["pair"]
    network = P.without_dropout(models.build(name, (c, h, w), classes))
    weights = P.section(case, "weight")
    found = probe(tool)
    run = forward_function(tool, gpu)
    forward = P.relative_error(run(network, weights, case["images"], False), case["logits"])
    training = P.relative_error(run(network, weights, case["images"], True), case["train_logits"])
    steps = len(case["losses"])
    data = [(case[f"batch{s}/images"], case[f"batch{s}/labels"]) for s in range(steps)]
    loss_error = state_error = None  # an inference-only tool has no trainer
    where = "inference only"
    if "train" in _tasks(tool):
        losses, states = trainer_steps(tool, network, weights, data, float(case["lr"]), gpu)
        loss_error, state_error, where = P.training_errors(
            case, losses, states, found.biased_running_var
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
        header["tf32"] = probe(args.tool).tf32()
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
