"""AlexNet.

"imagenet" variant (224x224): torchvision's AlexNet, the one-weird-trick version with
64, 192, 384, 256, 256 filters; 61,100,840 parameters at 3x224x224, 1000 classes.
Weight paths features.N / classifier.N match torchvision's state_dict keys.

"small" variant (28x28 and 32x32): a CIFAR-scale AlexNet of this project, the same five
convolutions (64, 192, 384, 256, 256 filters) with 3x3 kernels, stride 1 and padding 1,
2x2 max pools after conv1, conv2 and conv5 (ceil mode, so 28 -> 14 -> 7 -> 4 and
32 -> 16 -> 8 -> 4 give the same 256x4x4 features), then torchvision's classifier shape
scaled down: dropout 0.5, dense 1024, ReLU, dropout 0.5, dense 1024, ReLU, dense classes.
Both variants use PyTorch's default initialisation, as torchvision does.
"""

from __future__ import annotations

from .common import ModelError, seq, variant_of, variant_refusal
from .layers import Conv2D, Dense, Dropout, Flatten, MaxPool, Network, ReLU, Sequential


def refusal(input_shape: tuple[int, int, int], num_classes: int) -> str | None:
    """Why AlexNet cannot take this input, or None."""
    return variant_refusal("alexnet", input_shape, num_classes)


def _classifier(hidden: int, num_classes: int) -> Sequential:
    return Sequential(
        (
            Dropout(0.5),
            Dense(hidden),
            ReLU(),
            Dropout(0.5),
            Dense(hidden),
            ReLU(),
            Dense(num_classes),
        )
    )


def build(input_shape: tuple[int, int, int], num_classes: int) -> Network:
    """AlexNet for 224x224 (torchvision) or 28x28/32x32 (small) inputs."""
    why = refusal(input_shape, num_classes)
    if why:
        raise ModelError(why)
    variant = variant_of(input_shape)
    if variant == "imagenet":
        features = Sequential(
            (
                Conv2D(64, 11, 4, 2),
                ReLU(),
                MaxPool(3, 2),
                Conv2D(192, 5, padding=2),
                ReLU(),
                MaxPool(3, 2),
                Conv2D(384, 3, padding=1),
                ReLU(),
                Conv2D(256, 3, padding=1),
                ReLU(),
                Conv2D(256, 3, padding=1),
                ReLU(),
                MaxPool(3, 2),
            )
        )
        hidden = 4096
        notes = (
            "torchvision's AdaptiveAvgPool2d((6, 6)) is omitted: at 224x224 the "
            "features are already 6x6, so it is the identity.",
        )
    else:
        features = Sequential(
            (
                Conv2D(64, 3, padding=1),
                ReLU(),
                MaxPool(2, 2, ceil_mode=True),
                Conv2D(192, 3, padding=1),
                ReLU(),
                MaxPool(2, 2, ceil_mode=True),
                Conv2D(384, 3, padding=1),
                ReLU(),
                Conv2D(256, 3, padding=1),
                ReLU(),
                Conv2D(256, 3, padding=1),
                ReLU(),
                MaxPool(2, 2, ceil_mode=True),
            )
        )
        hidden = 1024
        notes = (
            "Small variant (not in torchvision): 3x3 convolutions with 64, 192, 384, "
            "256, 256 filters, 2x2 ceil-mode max pools, dense 1024-1024-classes.",
        )
    body = seq(
        ("features", features),
        ("flatten", Flatten()),
        ("classifier", _classifier(hidden, num_classes)),
    )
    return Network("alexnet", variant, tuple(input_shape), num_classes, body, notes)
