"""``python -m harness onnx MODEL --dataset D -o FILE``: a catalogue network as an ONNX file.

The network is built for the dataset's images (``--image-size S``: upscaled ones, as a
run with that flag builds it) and written by the model exporter of the backend that
declares one for the format (the harness_model_exporter hook: inference mode, a
dynamic batch dimension, the file checked after it is written) with the canonical
initial weights of ``--seed`` or the weights a training run saved (``--dump-weights
DIR`` writes one ``.npz`` per replica).

The format's package is imported by the exporter only when the command runs; where it
is missing the command says how to install it (exit 2).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console

from harness import datasets, models
from harness.backend import load_reference
from harness.cli.commands import SUMMARY
from harness.errors import UsageError
from harness.plugins import get_plugin_manager
from harness.run.paths import check_writable_file

Command = Callable[[argparse.Namespace, Console], int]
FORMAT = "onnx"  # the model file format this command writes


def add_command(sub: argparse._SubParsersAction, handlers: dict[str, Command]) -> None:
    parser = sub.add_parser(
        "onnx",
        help=SUMMARY["onnx"],
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("model", help="lenet, alexnet, resnet50, googlenet, vgg16, resnet18, vgg19")
    parser.add_argument("--dataset", required=True, help="whose images the network takes")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="the .onnx file")
    parser.add_argument(
        "--force", action="store_true", help="replace an existing -o file (never a results store)"
    )
    parser.add_argument(
        "--weights",
        metavar="FILE.npz",
        help="canonical weights saved by a run's --dump-weights (default: the initial ones)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the initial weights (without --weights)"
    )
    parser.add_argument(
        "--image-size", type=int, metavar="S", help="the network for 3xSxS images, as a run's"
    )
    handlers["onnx"] = cmd_onnx


def _network(args: argparse.Namespace):  # -> harness.models.Network
    if args.model not in models.MODELS:
        raise UsageError(f"unknown model {args.model!r}; choose from: {', '.join(models.MODELS)}")
    if args.dataset not in datasets.DATASETS:
        names = ", ".join(datasets.DATASETS)
        raise UsageError(f"unknown dataset {args.dataset!r}; choose from: {names}")
    if args.image_size is not None and args.image_size < 1:
        raise UsageError(f"--image-size must be a positive number, got {args.image_size}")
    if args.seed < 0:
        raise UsageError(f"--seed must be zero or more, got {args.seed}")
    info = datasets.DATASETS[args.dataset]
    try:
        info = datasets.resized_info(info, args.image_size)
    except datasets.DatasetError as exc:
        raise UsageError(str(exc)) from None
    try:
        return models.build(args.model, info.image_shape, info.num_classes)
    except models.ModelError as exc:
        raise UsageError(f"cannot build {args.model} for {args.dataset}: {exc}") from None


def _weights(args: argparse.Namespace, network) -> tuple[dict, str]:
    """(canonical state dict, where it came from)."""
    if args.weights is None:
        return models.init_weights(network, args.seed), f"initial weights, seed {args.seed}"
    path = Path(args.weights)
    if not path.is_file():
        raise UsageError(f"--weights {path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as data:
            state = {key: np.asarray(data[key]) for key in data.files}
    except Exception as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"--weights {path}: not a readable .npz of weights ({why})") from None
    return state, str(path)


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def cmd_onnx(args: argparse.Namespace, console: Console) -> int:
    network = _network(args)

    check_writable_file(args.output, "-o")

    found = get_plugin_manager().model_exporter(FORMAT)
    if found is None:
        raise UsageError(
            f"the onnx command needs a backend that writes {FORMAT} files; none is installed"
        )
    backend, reference = found
    state, source = _weights(args, network)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)  # checked writable before any work
    try:
        export = load_reference(reference)
        written = export(network, state, output, f"harness.models {network.name}; {source}")
    except ImportError as exc:
        missing = exc.name or FORMAT
        raise UsageError(
            f"the onnx command needs {backend.framework}'s packages ({missing} is missing): "
            f"{backend.install_hint}"
        ) from None
    except (ValueError, KeyError) as exc:
        raise UsageError(f"--weights {args.weights}: {exc}") from None
    c, h, w = network.input_shape
    print(
        f"{output}: {_size(output.stat().st_size)} ({output.stat().st_size:,} bytes), "
        f"{network.name} ({network.variant}) input images (batch, {c}, {h}, {w}) "
        f"-> logits (batch, {network.num_classes}); {source}; {written}",
        flush=True,
    )
    return 0
