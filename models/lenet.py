"""LeNet as in Caffe's MNIST example (examples/mnist/lenet_train_test.prototxt).

conv1 20@5x5 -> max pool 2/2 -> conv2 50@5x5 -> max pool 2/2 -> ip1 500 -> ReLU -> ip2.
There is no activation after the convolutions, as in Caffe. Weights use Caffe's xavier
filler (uniform, variance normalised by fan-in), biases are 0. 431,080 parameters at
1x28x28 with 10 classes. Defined for the MNIST family (1x28x28) only.
"""

from __future__ import annotations

from .common import ModelError, basic_refusal, seq, shape_text
from .layers import Conv2D, Dense, Flatten, MaxPool, Network, ReLU

INPUT = (1, 28, 28)


def refusal(input_shape: tuple[int, int, int], num_classes: int) -> str | None:
    """Why LeNet cannot take this input, or None."""
    why = basic_refusal("lenet", input_shape, num_classes)
    if why:
        return why
    if tuple(input_shape) != INPUT:
        return (
            f"lenet is defined for the MNIST family (1x28x28 inputs) only, "
            f"not {shape_text(tuple(input_shape))}"
        )
    return None


def build(input_shape: tuple[int, int, int], num_classes: int) -> Network:
    """Caffe's MNIST LeNet; raises ModelError for any input other than 1x28x28."""
    why = refusal(input_shape, num_classes)
    if why:
        raise ModelError(why)
    xavier = "caffe_xavier"
    body = seq(
        ("conv1", Conv2D(20, 5, init=xavier)),
        ("pool1", MaxPool(2, 2)),
        ("conv2", Conv2D(50, 5, init=xavier)),
        ("pool2", MaxPool(2, 2)),
        ("flatten", Flatten()),
        ("ip1", Dense(500, init=xavier)),
        ("relu1", ReLU()),
        ("ip2", Dense(num_classes, init=xavier)),
    )
    notes = ("Caffe pools in ceil mode; at 28x28 floor and ceil give the same sizes.",)
    return Network("lenet", "small", INPUT, num_classes, body, notes)
