"""The layer vocabulary every network is written in and every backend translates.

A network is a tree: containers (Sequential, Residual, Concat) whose leaves are the
layers below. Conventions are PyTorch's, which is the reference implementation:

- tensors are described as (channels, height, width) per image;
- padding is explicit and symmetric, in pixels (never "same");
- pooling may use ceil mode, as torch.nn.MaxPool2d(ceil_mode=True) does;
- Flatten orders features channel-major (C, H, W), as torch.flatten on NCHW does;
- BatchNorm momentum is PyTorch's: running = (1 - momentum) * running + momentum * batch.
  Keras, Flax and Gluon call 1 - momentum their momentum;
- canonical weight layouts: conv weight (out, in // groups, kh, kw), dense weight
  (out, in), batch-norm weight/bias/running_mean/running_var of shape (channels,).

Every parameterised layer names its initialiser (see models.init); the harness draws
the initial weights once in NumPy, so every framework starts from the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Init = Literal[
    # weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the nn.Conv2d/nn.Linear default
    "torch_default",
    "he_normal_fan_out",  # weight ~ N(0, 2/fan_out), bias 0 (torchvision ResNet, VGG convs)
    "normal_0.01",  # weight ~ N(0, 0.01^2), bias 0 (torchvision VGG classifier)
    "trunc_normal_0.01",  # weight ~ N(0, 0.01^2) truncated at +-2, bias 0 (torchvision GoogLeNet)
    "caffe_xavier",  # weight ~ U(-sqrt(3/fan_in), sqrt(3/fan_in)), bias 0 (Caffe LeNet)
]


def pair(value: int | tuple[int, int]) -> tuple[int, int]:
    """(value, value) for an int, the tuple itself otherwise."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


@dataclass(frozen=True)
class Conv2D:
    filters: int
    kernel: int | tuple[int, int]
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    bias: bool = True
    groups: int = 1
    init: Init = "torch_default"


@dataclass(frozen=True)
class BatchNorm:
    eps: float = 1e-5
    momentum: float = 0.1


@dataclass(frozen=True)
class ReLU:
    pass


@dataclass(frozen=True)
class MaxPool:
    kernel: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None  # None: same as kernel
    padding: int | tuple[int, int] = 0
    ceil_mode: bool = False


@dataclass(frozen=True)
class AvgPool:
    """Average pooling; padded cells count in the average (PyTorch's default)."""

    kernel: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None
    padding: int | tuple[int, int] = 0
    ceil_mode: bool = False


@dataclass(frozen=True)
class GlobalAvgPool:
    """Mean over height and width; output (C, 1, 1)."""


@dataclass(frozen=True)
class Flatten:
    """(C, H, W) -> (C * H * W,), channel-major."""


@dataclass(frozen=True)
class Dense:
    units: int
    bias: bool = True
    init: Init = "torch_default"


@dataclass(frozen=True)
class Dropout:
    rate: float


@dataclass(frozen=True)
class Sequential:
    layers: tuple[Node, ...]
    # Optional names of the children, used in weight paths instead of their indices.
    names: tuple[str, ...] | None = None

    def child_names(self) -> tuple[str, ...]:
        if self.names is not None:
            if len(self.names) != len(self.layers):
                raise ValueError("Sequential.names must name every layer")
            return self.names
        return tuple(str(i) for i in range(len(self.layers)))


@dataclass(frozen=True)
class Residual:
    """out = body(x) + shortcut(x); shortcut None is the identity. No activation after."""

    body: Sequential
    shortcut: Sequential | None = None


@dataclass(frozen=True)
class Concat:
    """Runs every branch on the same input and concatenates their outputs on channels."""

    branches: tuple[Sequential, ...]


Layer = Conv2D | BatchNorm | ReLU | MaxPool | AvgPool | GlobalAvgPool | Flatten | Dense | Dropout
Node = Layer | Sequential | Residual | Concat


@dataclass(frozen=True)
class Network:
    """One network built for one input shape and one number of classes."""

    name: str  # catalogue name: lenet, alexnet, resnet50, ... (models.MODELS)
    variant: str  # "imagenet" (torchvision architecture) or "small" (28x28 / 32x32 inputs)
    input_shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int
    body: Sequential
    notes: tuple[str, ...] = field(default=())
