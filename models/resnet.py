"""ResNet-18 and ResNet-50 v1.5 (the stride of a downsampling block sits on its 3x3
convolution: the bottleneck's second, the basic block's first).

"imagenet" variant (224x224): torchvision's resnet18 / resnet50; 11,689,512 /
25,557,032 parameters at 3x224x224, 1000 classes. Stem 7x7/2 conv 64, batch norm, ReLU,
3x3/2 max pool; four stages (widths 64, 128, 256, 512, first strides 1, 2, 2, 2) of
[2, 2, 2, 2] basic blocks (two 3x3 convolutions, expansion 1) or [3, 4, 6, 3]
bottlenecks (1x1, 3x3, 1x1, expansion 4); global average pool; dense.

"small" variant (28x28 and 32x32): the common CIFAR adaptation, a 3x3/1 conv 64 stem
with batch norm and ReLU and no max pool, then the same stages; 11,173,962 / 23,520,842
parameters at 3x32x32 with 10 classes.

A block is Sequential(residual=Residual(body, shortcut), relu=ReLU()), so weight
paths read layer2.0.residual.body.conv2, layer2.0.residual.shortcut.conv, ...
Initialisation is torchvision's: convolutions He normal (fan_out), batch norm 1/0, the
final dense layer PyTorch's default (zero_init_residual is off, as by default).
"""

from __future__ import annotations

from .common import ModelError, seq, variant_of, variant_refusal
from .layers import (
    BatchNorm,
    Conv2D,
    Dense,
    Flatten,
    GlobalAvgPool,
    MaxPool,
    Network,
    Node,
    ReLU,
    Residual,
    Sequential,
)

WIDTHS, STRIDES = (64, 128, 256, 512), (1, 2, 2, 2)
DEPTHS = {"resnet18": (2, 2, 2, 2), "resnet50": (3, 4, 6, 3)}  # blocks per stage
EXPANSION = 4  # the bottleneck's; the basic block's is 1
HE = "he_normal_fan_out"


def refusal(
    input_shape: tuple[int, int, int], num_classes: int, name: str = "resnet50"
) -> str | None:
    """Why ResNet ``name`` cannot take this input, or None."""
    return variant_refusal(name, input_shape, num_classes)


def _conv(filters: int, kernel: int, stride: int = 1, padding: int = 0) -> Conv2D:
    return Conv2D(filters, kernel, stride, padding, bias=False, init=HE)


def bottleneck(in_channels: int, width: int, stride: int) -> Sequential:
    """1x1 (width) -> 3x3 (width, stride) -> 1x1 (4 * width), residual add, ReLU."""
    out = width * EXPANSION
    body = seq(
        ("conv1", _conv(width, 1)),
        ("bn1", BatchNorm()),
        ("relu1", ReLU()),
        ("conv2", _conv(width, 3, stride, 1)),
        ("bn2", BatchNorm()),
        ("relu2", ReLU()),
        ("conv3", _conv(out, 1)),
        ("bn3", BatchNorm()),
    )
    shortcut = None
    if stride != 1 or in_channels != out:
        shortcut = seq(("conv", _conv(out, 1, stride)), ("bn", BatchNorm()))
    return seq(("residual", Residual(body, shortcut)), ("relu", ReLU()))


def basic(in_channels: int, width: int, stride: int) -> Sequential:
    """3x3 (width, stride) -> 3x3 (width), residual add, ReLU."""
    body = seq(
        ("conv1", _conv(width, 3, stride, 1)),
        ("bn1", BatchNorm()),
        ("relu1", ReLU()),
        ("conv2", _conv(width, 3, 1, 1)),
        ("bn2", BatchNorm()),
    )
    shortcut = None
    if stride != 1 or in_channels != width:
        shortcut = seq(("conv", _conv(width, 1, stride)), ("bn", BatchNorm()))
    return seq(("residual", Residual(body, shortcut)), ("relu", ReLU()))


def stages(in_channels: int = 64, name: str = "resnet50") -> list[tuple[str, Node]]:
    """The four named stages layer1..layer4 of ResNet ``name``."""
    block_of, expansion = (basic, 1) if name == "resnet18" else (bottleneck, EXPANSION)
    named: list[tuple[str, Node]] = []
    plan = zip(WIDTHS, DEPTHS[name], STRIDES, strict=True)
    for index, (width, blocks, stride) in enumerate(plan, start=1):
        layers = []
        for block in range(blocks):
            layers.append(block_of(in_channels, width, stride if block == 0 else 1))
            in_channels = width * expansion
        named.append((f"layer{index}", Sequential(tuple(layers))))
    return named


def build(input_shape: tuple[int, int, int], num_classes: int, name: str = "resnet50") -> Network:
    """ResNet ``name`` (resnet18, resnet50) for 224x224 (torchvision) or 28x28/32x32
    (CIFAR-style) inputs."""
    why = refusal(input_shape, num_classes, name)
    if why:
        raise ModelError(why)
    variant = variant_of(input_shape)
    if variant == "imagenet":
        stem = [
            ("conv1", _conv(64, 7, 2, 3)),
            ("bn1", BatchNorm()),
            ("relu", ReLU()),
            ("maxpool", MaxPool(3, 2, 1)),
        ]
        notes = ("torchvision's AdaptiveAvgPool2d((1, 1)) is written as GlobalAvgPool.",)
    else:
        stem = [("conv1", _conv(64, 3, 1, 1)), ("bn1", BatchNorm()), ("relu", ReLU())]
        notes = ("Small variant (not in torchvision): 3x3/1 stem conv, no stem max pool.",)
    body = seq(
        *stem,
        *stages(name=name),
        ("avgpool", GlobalAvgPool()),
        ("flatten", Flatten()),
        ("fc", Dense(num_classes)),
    )
    return Network(name, variant, tuple(input_shape), num_classes, body, notes)
