"""Shared pieces of the model builders: the error type, input checks, small helpers."""

from __future__ import annotations

from .layers import Node, Sequential

IMAGENET_SIZE = 224  # the "imagenet" variants: torchvision's architectures
SMALL_SIZES = (28, 32)  # the "small" variants: MNIST family and CIFAR-10


class ModelError(ValueError):
    """A model cannot be built: unknown name, or an input it is not defined for."""


def seq(*named: tuple[str, Node]) -> Sequential:
    """A Sequential whose children carry the given names."""
    return Sequential(tuple(n for _, n in named), tuple(name for name, _ in named))


def shape_text(input_shape: object) -> str:
    """'3x32x32' for a (C, H, W) tuple, repr otherwise."""
    if isinstance(input_shape, tuple | list) and all(isinstance(d, int) for d in input_shape):
        return "x".join(map(str, input_shape))
    return repr(input_shape)


def basic_refusal(name: str, input_shape: object, num_classes: object) -> str | None:
    """Why ``input_shape``/``num_classes`` are malformed, whatever the model; None if fine."""
    if (
        not isinstance(input_shape, tuple | list)
        or len(input_shape) != 3
        or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in input_shape)
    ):
        return (
            f"{name} needs an input shape of three positive integers (C, H, W), got {input_shape!r}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        return f"{name} needs a positive integer number of classes, got {num_classes!r}"
    return None


def variant_refusal(name: str, input_shape: object, num_classes: object) -> str | None:
    """The rule shared by every model but lenet (any channel count):
    H = W in SMALL_SIZES selects the small variant, H = W = 224 the ImageNet one."""
    why = basic_refusal(name, input_shape, num_classes)
    if why:
        return why
    _, h, w = input_shape  # type: ignore[misc]
    if (h, w) in [(s, s) for s in (*SMALL_SIZES, IMAGENET_SIZE)]:
        return None
    return (
        f"{name} is defined for 28x28 and 32x32 inputs (MNIST family, CIFAR-10) and "
        f"224x224 inputs (ImageNet), not {shape_text(input_shape)}"
    )


def variant_of(input_shape: tuple[int, int, int]) -> str:
    """'imagenet' for 224x224 inputs, 'small' otherwise (call after variant_refusal)."""
    return "imagenet" if input_shape[1] == IMAGENET_SIZE else "small"
