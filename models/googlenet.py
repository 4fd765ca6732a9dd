"""GoogLeNet (Inception v1), torchvision's batch-norm version without auxiliary heads.

"imagenet" variant (224x224): torchvision's googlenet(aux_logits=False); 6,624,904
parameters at 3x224x224, 1000 classes. Every convolution is BasicConv2d: conv without
bias, batch norm (eps 0.001), ReLU. Max pools use ceil mode. As in torchvision, the
"5x5" branch of each inception block uses a 3x3 kernel. Dropout 0.2 before the dense
layer. Weights: truncated normal, std 0.01, for convolutions and the dense layer.

"small" variant (28x28 and 32x32): the common CIFAR adaptation, a 3x3 conv 192 + batch
norm + ReLU stem with no early pools, inception 3a, 3b, max pool 3/2 pad 1, 4a-4e, max
pool 3/2 pad 1, 5a, 5b, global average pool, dropout 0.2, dense; same inception block.

An inception block is a Concat of four branches 0..3 (torchvision's branch1..branch4):
inception3a.0.conv, inception3a.1.0.conv, inception3a.1.1.conv, ..., inception3a.3.1.conv.
"""

from __future__ import annotations

from .common import ModelError, seq, variant_of, variant_refusal
from .layers import (
    BatchNorm,
    Concat,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    MaxPool,
    Network,
    Node,
    ReLU,
    Sequential,
)

INIT = "trunc_normal_0.01"
# name: (1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool projection), as torchvision.
INCEPTIONS = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


def refusal(input_shape: tuple[int, int, int], num_classes: int) -> str | None:
    """Why GoogLeNet cannot take this input, or None."""
    return variant_refusal("googlenet", input_shape, num_classes)


def basic_conv(filters: int, kernel: int, stride: int = 1, padding: int = 0) -> Sequential:
    """torchvision's BasicConv2d: conv (no bias), batch norm eps 0.001, ReLU."""
    return seq(
        ("conv", Conv2D(filters, kernel, stride, padding, bias=False, init=INIT)),
        ("bn", BatchNorm(eps=0.001)),
        ("relu", ReLU()),
    )


def inception(c1: int, c3r: int, c3: int, c5r: int, c5: int, proj: int) -> Concat:
    """Four branches concatenated on channels; the "5x5" branch uses 3x3 (torchvision)."""
    return Concat(
        (
            basic_conv(c1, 1),
            Sequential((basic_conv(c3r, 1), basic_conv(c3, 3, padding=1))),
            Sequential((basic_conv(c5r, 1), basic_conv(c5, 3, padding=1))),
            Sequential((MaxPool(3, 1, 1, ceil_mode=True), basic_conv(proj, 1))),
        )
    )


def _blocks(*names: str) -> list[tuple[str, Node]]:
    return [(f"inception{n}", inception(*INCEPTIONS[n])) for n in names]


def build(input_shape: tuple[int, int, int], num_classes: int) -> Network:
    """GoogLeNet for 224x224 (torchvision) or 28x28/32x32 (CIFAR-style) inputs."""
    why = refusal(input_shape, num_classes)
    if why:
        raise ModelError(why)
    variant = variant_of(input_shape)
    notes = [
        "Dense bias is 0; torchvision leaves it at PyTorch's default uniform init.",
        "No auxiliary heads (as torchvision's aux_logits=False) and no "
        "transform_input (off by default in torchvision without pretrained weights).",
    ]
    if variant == "imagenet":
        stem: list[tuple[str, Node]] = [
            ("conv1", basic_conv(64, 7, 2, 3)),
            ("maxpool1", MaxPool(3, 2, ceil_mode=True)),
            ("conv2", basic_conv(64, 1)),
            ("conv3", basic_conv(192, 3, padding=1)),
            ("maxpool2", MaxPool(3, 2, ceil_mode=True)),
        ]
        pool3, pool4 = MaxPool(3, 2, ceil_mode=True), MaxPool(2, 2, ceil_mode=True)
        notes.append("torchvision's AdaptiveAvgPool2d((1, 1)) is written as GlobalAvgPool.")
    else:
        stem = [("conv1", basic_conv(192, 3, padding=1))]
        pool3, pool4 = MaxPool(3, 2, 1), MaxPool(3, 2, 1)
        notes.append(
            "Small variant (not in torchvision): 3x3 conv 192 stem, no early "
            "pools, max pools 3/2 pad 1 after 3b and 4e."
        )
    body = seq(
        *stem,
        *_blocks("3a", "3b"),
        ("maxpool3", pool3),
        *_blocks("4a", "4b", "4c", "4d", "4e"),
        ("maxpool4", pool4),
        *_blocks("5a", "5b"),
        ("avgpool", GlobalAvgPool()),
        ("flatten", Flatten()),
        ("dropout", Dropout(0.2)),
        ("fc", Dense(num_classes, init=INIT)),
    )
    return Network("googlenet", variant, tuple(input_shape), num_classes, body, tuple(notes))
