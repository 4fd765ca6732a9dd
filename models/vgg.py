"""VGG-16 and VGG-19 (configurations D and E, no batch norm).

"imagenet" variant (224x224): torchvision's vgg16 / vgg19; 138,357,544 / 143,667,240
parameters at 3x224x224, 1000 classes. Weight paths features.N / classifier.N match
torchvision's state_dict keys.

"small" variant (28x28 and 32x32): the same 13 / 16 convolutions and 5 max pools, the pools in
ceil mode so that 28x28 inputs stay valid (28 -> 14 -> 7 -> 4 -> 2 -> 1; at 32x32 ceil
mode changes nothing), then a CIFAR-style classifier on the 512 features: dense 512, ReLU,
dropout 0.5, dense 512, ReLU, dropout 0.5, dense classes.

Initialisation is torchvision's for both: convolutions He normal (fan_out) with zero
bias, dense layers N(0, 0.01^2) with zero bias.
"""

from __future__ import annotations

from .common import ModelError, seq, variant_of, variant_refusal
from .layers import Conv2D, Dense, Dropout, Flatten, MaxPool, Network, Node, ReLU, Sequential

CONFIG_D = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
CONFIG_E = (
    *(64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"),
    *(512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
)
CONFIGS = {"vgg16": CONFIG_D, "vgg19": CONFIG_E}


def refusal(input_shape: tuple[int, int, int], num_classes: int, name: str = "vgg16") -> str | None:
    """Why VGG ``name`` cannot take this input, or None."""
    return variant_refusal(name, input_shape, num_classes)


def _features(config: tuple[int | str, ...], ceil_mode: bool) -> Sequential:
    layers: list[Node] = []
    for item in config:
        if item == "M":
            layers.append(MaxPool(2, 2, ceil_mode=ceil_mode))
        else:
            layers += [Conv2D(int(item), 3, padding=1, init="he_normal_fan_out"), ReLU()]
    return Sequential(tuple(layers))


def build(input_shape: tuple[int, int, int], num_classes: int, name: str = "vgg16") -> Network:
    """VGG ``name`` (vgg16, vgg19) for 224x224 (torchvision) or 28x28/32x32 (small) inputs."""
    why = refusal(input_shape, num_classes, name)
    if why:
        raise ModelError(why)
    variant = variant_of(input_shape)
    hidden = 4096 if variant == "imagenet" else 512
    classifier = Sequential(
        (
            Dense(hidden, init="normal_0.01"),
            ReLU(),
            Dropout(0.5),
            Dense(hidden, init="normal_0.01"),
            ReLU(),
            Dropout(0.5),
            Dense(num_classes, init="normal_0.01"),
        )
    )
    if variant == "imagenet":
        notes = (
            "torchvision's AdaptiveAvgPool2d((7, 7)) is omitted: at 224x224 the "
            "features are already 7x7, so it is the identity.",
        )
    else:
        notes = (
            "Small variant (not in torchvision): ceil-mode pools, 512-512-classes "
            "classifier on the 512x1x1 features.",
        )
    body = seq(
        ("features", _features(CONFIGS[name], ceil_mode=variant == "small")),
        ("flatten", Flatten()),
        ("classifier", classifier),
    )
    return Network(name, variant, tuple(input_shape), num_classes, body, notes)
