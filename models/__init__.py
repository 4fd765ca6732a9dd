"""The model catalogue: framework-neutral networks every backend translates.

    from harness.models import build, param_count
    net = build("resnet50", (3, 32, 32), 10)   # a layers.Network
    param_count(net)                            # 23,520,842

Each model has an "imagenet" variant (224x224 inputs, torchvision's architecture) and a
"small" one (28x28 and 32x32 inputs); LeNet is Caffe's MNIST LeNet, 1x28x28 only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from . import alexnet, googlenet, lenet, resnet, vgg
from .common import ModelError
from .graph import (
    LayerShape,
    flops_per_image,
    infer,
    macs_per_image,
    output_shape,
    param_count,
    summary_table,
)
from .init import init_weights, is_buffer, state_keys
from .layers import Network
from .tree import Fold, Forward, walk

__all__ = [
    "MODELS",
    "Fold",
    "Forward",
    "LayerShape",
    "ModelError",
    "ModelInfo",
    "Network",
    "build",
    "flops_per_image",
    "infer",
    "init_weights",
    "is_buffer",
    "macs_per_image",
    "names",
    "output_shape",
    "param_count",
    "refusal",
    "state_keys",
    "summary_table",
    "walk",
]

Builder = Callable[[tuple[int, int, int], int], Network]
Check = Callable[[tuple[int, int, int], int], "str | None"]


@dataclass(frozen=True)
class ModelInfo:
    """One catalogue entry."""

    name: str
    title: str
    description: str
    builder: Builder
    check: Check  # the reason an input is refused, or None


MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        ModelInfo(
            "lenet",
            "LeNet",
            "Caffe's MNIST LeNet; MNIST family (1x28x28) only",
            lenet.build,
            lenet.refusal,
        ),
        ModelInfo(
            "alexnet",
            "AlexNet",
            "torchvision AlexNet at 224x224; a CIFAR-scale AlexNet at 28x28 and 32x32",
            alexnet.build,
            alexnet.refusal,
        ),
        ModelInfo(
            "resnet50",
            "ResNet-50",
            "torchvision ResNet-50 v1.5 at 224x224; CIFAR-style 3x3 stem at 28x28 and 32x32",
            resnet.build,
            resnet.refusal,
        ),
        ModelInfo(
            "googlenet",
            "GoogLeNet",
            "torchvision GoogLeNet (batch norm, no aux "
            "heads) at 224x224; CIFAR-style stem at 28x28 and 32x32",
            googlenet.build,
            googlenet.refusal,
        ),
        ModelInfo(
            "vgg16",
            "VGG-16",
            "torchvision VGG-16 at 224x224; 512-512 classifier at 28x28 and 32x32",
            vgg.build,
            vgg.refusal,
        ),
        ModelInfo(
            "resnet18",
            "ResNet-18",
            "torchvision ResNet-18 at 224x224; CIFAR-style 3x3 stem at 28x28 and 32x32",
            partial(resnet.build, name="resnet18"),
            partial(resnet.refusal, name="resnet18"),
        ),
        ModelInfo(
            "vgg19",
            "VGG-19",
            "torchvision VGG-19 at 224x224; 512-512 classifier at 28x28 and 32x32",
            partial(vgg.build, name="vgg19"),
            partial(vgg.refusal, name="vgg19"),
        ),
    )
}


def names() -> list[str]:
    """The catalogue's model names."""
    return list(MODELS)


def _unknown(name: str) -> str:
    return f"unknown model {name!r}; choose one of: {', '.join(MODELS)}"


def refusal(name: str, input_shape: tuple[int, int, int], num_classes: int) -> str | None:
    """Why model ``name`` cannot be built for this input (or is unknown); None if it can."""
    info = MODELS.get(name)
    if info is None:
        return _unknown(name)
    return info.check(input_shape, num_classes)


def build(name: str, input_shape: tuple[int, int, int], num_classes: int) -> Network:
    """The network ``name`` for this input; ModelError names the reason if it cannot be.

    The input is checked once, by the model's builder (the same check as :func:`refusal`):
    callers that build need not ask :func:`refusal` first."""
    info = MODELS.get(name)
    if info is None:
        raise ModelError(_unknown(name))
    return info.builder(input_shape, num_classes)
