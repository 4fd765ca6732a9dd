"""The NumPy reference forward pass (harness.models.reference), without any framework.

Expected values are computed by hand (small cases) or by deliberately naive loops that
follow PyTorch's definitions, never by the code under test.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from harness.models import build, init_weights
from harness.models.graph import output_shape
from harness.models.layers import (
    AvgPool,
    BatchNorm,
    Concat,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    MaxPool,
    Network,
    ReLU,
    Residual,
    Sequential,
)
from harness.models.reference import apply, avg_pool2d, conv2d, forward, max_pool2d


def net(shape: tuple[int, int, int], *layers, names: tuple[str, ...] | None = None) -> Network:
    return Network("test", "small", shape, 1, Sequential(tuple(layers), names))


def grid(*shape: int) -> np.ndarray:
    return np.arange(math.prod(shape), dtype=np.float64).reshape(shape)


# Convolution ---------------------------------------------------------------------------


def test_conv_known_kernel_on_4x4():
    x = grid(1, 1, 4, 4)
    weights = {"c.weight": np.array([[[[1.0, 0.0], [0.0, -1.0]]]]), "c.bias": np.array([0.5])}
    out = forward(net((1, 4, 4), Conv2D(1, 2), names=("c",)), weights, x)
    # x[i, j] - x[i + 1, j + 1] = -5 everywhere, plus the bias.
    np.testing.assert_array_equal(out, np.full((1, 1, 3, 3), -4.5, dtype=np.float32))


def test_conv_padding_and_stride():
    weights = {"0.weight": np.ones((1, 1, 3, 3))}
    out = forward(
        net((1, 4, 4), Conv2D(1, 3, stride=2, padding=1, bias=False)), weights, grid(1, 1, 4, 4)
    )
    # Window sums of x = arange(16) reshaped 4x4, zero padded by one pixel.
    np.testing.assert_array_equal(
        out[0, 0], [[0 + 1 + 4 + 5, 1 + 2 + 3 + 5 + 6 + 7], [4 + 5 + 8 + 9 + 12 + 13, 90]]
    )


def test_conv_groups_keep_channels_apart():
    x = grid(1, 2, 2, 2)
    weights = {"0.weight": np.array([2.0, 3.0]).reshape(2, 1, 1, 1)}
    out = forward(net((2, 2, 2), Conv2D(2, 1, groups=2, bias=False)), weights, x)
    np.testing.assert_array_equal(out[0, 0], 2 * x[0, 0])
    np.testing.assert_array_equal(out[0, 1], 3 * x[0, 1])


def naive_conv(x, w, b, stride, pad, groups):
    n, _, h, wd = x.shape
    o, cg, kh, kw = w.shape
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, o, oh, ow))
    for b_, f, i, j in itertools.product(range(n), range(o), range(oh), range(ow)):
        g = f // (o // groups)
        total = b[f]
        for ch, u, v in itertools.product(range(cg), range(kh), range(kw)):
            r, s = i * stride + u - pad, j * stride + v - pad
            if 0 <= r < h and 0 <= s < wd:
                total += x[b_, g * cg + ch, r, s] * w[f, ch, u, v]
        out[b_, f, i, j] = total
    return out


@pytest.mark.parametrize(
    ("stride", "pad", "groups", "kernel"),
    [(1, 0, 1, 3), (2, 1, 1, 3), (3, 2, 2, (2, 5)), (1, 1, 4, 3)],
)
def test_conv_matches_the_definition(stride, pad, groups, kernel):
    rng = np.random.default_rng(1)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = rng.standard_normal((2, 4, 7, 6))
    w = rng.standard_normal((8, 4 // groups, kh, kw))
    b = rng.standard_normal(8)
    got = conv2d(x, w, b, stride=stride, padding=pad, groups=groups)
    np.testing.assert_allclose(
        got, naive_conv(x, w, b, stride, pad, groups), rtol=1e-12, atol=1e-12
    )


# Pooling -------------------------------------------------------------------------------


def test_ceil_mode_max_pool_7x7_gives_4x4():
    x = grid(1, 1, 7, 7)
    out = forward(net((1, 7, 7), MaxPool(2, 2, ceil_mode=True)), {}, x)
    rows = cols = [1, 3, 5, 6]  # the last window holds row/column 6 only
    expected = np.array([[7 * r + c for c in cols] for r in rows], dtype=np.float32)
    np.testing.assert_array_equal(out[0, 0], expected)
    floor = forward(net((1, 7, 7), MaxPool(2, 2)), {}, x)
    np.testing.assert_array_equal(floor[0, 0], expected[:3, :3])


def test_max_pool_pads_with_minus_infinity():
    x = -1.0 - grid(1, 1, 4, 4)  # all negative: a zero padding would win
    out = max_pool2d(x, 3, 2, 1)
    np.testing.assert_array_equal(out[0, 0], [[-1, -2], [-5, -6]])


def test_avg_pool_counts_padding():
    out = avg_pool2d(np.ones((1, 1, 2, 2)), 2, 2, 1)
    np.testing.assert_array_equal(out[0, 0], np.full((2, 2), 0.25))


def test_avg_pool_ceil_mode_clips_the_last_window():
    out = avg_pool2d(grid(1, 1, 3, 3), 2, 2, 0, ceil_mode=True)
    np.testing.assert_array_equal(
        out[0, 0], [[(0 + 1 + 3 + 4) / 4, (2 + 5) / 2], [(6 + 7) / 2, 8 / 1]]
    )
    # With padding: divisors per axis 3, 3, 2 (clipped at input + padding), real cells 2, 3, 1.
    out = forward(net((1, 4, 4), AvgPool(3, 2, 1, ceil_mode=True)), {}, np.ones((1, 1, 4, 4)))
    axis = np.array([2 / 3, 1, 1 / 2])
    np.testing.assert_allclose(out[0, 0], np.outer(axis, axis), rtol=1e-6)


def naive_pool(x, k, s, p, ceil, kind):
    from harness.models.graph import pool_output_size

    n, c, h, w = x.shape
    oh, ow = pool_output_size(h, k, s, p, ceil), pool_output_size(w, k, s, p, ceil)
    out = np.zeros((n, c, oh, ow))
    for i, j in itertools.product(range(oh), range(ow)):
        r0, c0 = i * s - p, j * s - p
        r1, c1 = min(r0 + k, h + p), min(c0 + k, w + p)
        cells = x[:, :, max(r0, 0) : min(r1, h), max(c0, 0) : min(c1, w)]
        if kind == "max":
            out[:, :, i, j] = cells.max(axis=(2, 3))
        else:
            out[:, :, i, j] = cells.sum(axis=(2, 3)) / ((r1 - r0) * (c1 - c0))
    return out


@pytest.mark.parametrize(
    ("k", "s", "p", "ceil"),
    [
        (2, 2, 0, False),
        (3, 2, 1, True),
        (3, 2, 0, True),
        (3, 1, 1, True),
        (2, 3, 1, True),
        (4, 3, 2, False),
    ],
)
def test_pools_match_the_definition(k, s, p, ceil):
    x = np.random.default_rng(2).standard_normal((2, 3, 9, 8))
    np.testing.assert_allclose(max_pool2d(x, k, s, p, ceil), naive_pool(x, k, s, p, ceil, "max"))
    np.testing.assert_allclose(
        avg_pool2d(x, k, s, p, ceil), naive_pool(x, k, s, p, ceil, "avg"), rtol=1e-12
    )


# Batch norm ----------------------------------------------------------------------------


BN_WEIGHTS = {
    "0.weight": np.array([2.0, 1.0]),
    "0.bias": np.array([0.5, 0.0]),
    "0.running_mean": np.array([1.0, -1.0]),
    "0.running_var": np.array([4.0, 0.25]),
}


def test_batch_norm_inference_uses_running_statistics():
    x = np.array([5.0, 0.0]).reshape(1, 2, 1, 1)
    out = forward(net((2, 1, 1), BatchNorm(eps=0.0)), BN_WEIGHTS, x)
    # (5 - 1) / 2 * 2 + 0.5 and (0 + 1) / 0.5 * 1 + 0
    np.testing.assert_array_equal(out.ravel(), [4.5, 2.0])
    eps = forward(net((2, 1, 1), BatchNorm()), BN_WEIGHTS, x)
    np.testing.assert_allclose(
        eps.ravel(), [4 / math.sqrt(4 + 1e-5) * 2 + 0.5, 1 / math.sqrt(0.25 + 1e-5)], rtol=1e-6
    )


def test_batch_norm_training_uses_batch_statistics():
    # Over the batch, channel 0 sees 1 and 3, channel 1 sees 6 and 8: variance 1 each.
    x = np.array([[1.0, 6.0], [3.0, 8.0]]).reshape(2, 2, 1, 1)
    out = forward(net((2, 1, 1), BatchNorm(eps=0.0)), BN_WEIGHTS, x, training=True)
    np.testing.assert_array_equal(out[:, :, 0, 0], [[-1 * 2 + 0.5, -1.0], [1 * 2 + 0.5, 1.0]])
    # A constant channel normalises to 0, leaving the bias (eps keeps it finite).
    x[:, 1] = 7.0
    out = forward(net((2, 1, 1), BatchNorm()), BN_WEIGHTS, x, training=True)
    np.testing.assert_array_equal(out[:, 1].ravel(), [0.0, 0.0])


# Containers and the rest -----------------------------------------------------------------


def test_residual_adds_body_and_shortcut():
    x = np.array([-1.0, 2.0]).reshape(1, 1, 1, 2)
    identity = net((1, 1, 2), Residual(Sequential((ReLU(),))))
    np.testing.assert_array_equal(forward(identity, {}, x).ravel(), [-1.0, 4.0])
    projected = net(
        (1, 1, 2),
        Residual(Sequential((Conv2D(1, 1, bias=False),)), Sequential((Conv2D(1, 1, bias=False),))),
    )
    weights = {
        "0.body.0.weight": np.full((1, 1, 1, 1), 2.0),
        "0.shortcut.0.weight": np.full((1, 1, 1, 1), 3.0),
    }
    np.testing.assert_array_equal(forward(projected, weights, x).ravel(), [-5.0, 10.0])


def test_concat_stacks_branches_on_channels():
    x = np.array([-1.0, 2.0]).reshape(1, 1, 1, 2)
    node = Concat((Sequential((Conv2D(2, 1, bias=False),)), Sequential((ReLU(),))))
    weights = {"0.0.0.weight": np.array([2.0, -1.0]).reshape(2, 1, 1, 1)}
    out = forward(net((1, 1, 2), node), weights, x)
    np.testing.assert_array_equal(out[0, :, 0], [[-2.0, 4.0], [1.0, -2.0], [0.0, 2.0]])


def test_flatten_is_channel_major_and_dense_applies_weight_and_bias():
    x = grid(1, 2, 2, 2)  # value = 4 c + 2 h + w
    weight = np.zeros((2, 8))
    weight[0, 4] = 1.0  # picks channel 1, (0, 0): 4 (NHWC order would pick 2)
    weight[1] = 1.0
    out = forward(
        net((2, 2, 2), Flatten(), Dense(2)),
        {"1.weight": weight, "1.bias": np.array([0.5, -28.0])},
        x,
    )
    np.testing.assert_array_equal(out, [[4.5, 0.0]])


def test_global_average_pool_relu_and_dropout():
    x = np.array([[1.0, -3.0], [5.0, 2.0]]).reshape(1, 1, 2, 2)
    out = forward(net((1, 2, 2), GlobalAvgPool(), Flatten()), {}, x)
    np.testing.assert_array_equal(out, [[1.25]])
    for training in (False, True):  # dropout is the identity in both modes
        out = forward(net((1, 2, 2), Dropout(0.5), ReLU(), Flatten()), {}, x, training=training)
        np.testing.assert_array_equal(out, [[1.0, 0.0, 5.0, 2.0]])


def test_apply_runs_a_bare_node_with_a_prefix():
    node = Sequential((Dense(1, bias=False),), ("fc",))
    weights = {"head.fc.weight": np.array([[1.0, 2.0]])}
    np.testing.assert_array_equal(
        apply(node, weights, np.array([[3.0, 4.0]]), prefix="head"), [[11.0]]
    )


def test_errors_name_the_problem():
    lenet = build("lenet", (1, 28, 28), 10)
    with pytest.raises(ValueError, match="lenet takes images"):
        forward(lenet, init_weights(lenet, 0), np.zeros((2, 3, 28, 28), np.float32))
    weights = init_weights(lenet, 0)
    del weights["ip1.bias"]
    with pytest.raises(KeyError, match=r"ip1\.bias"):
        forward(lenet, weights, np.zeros((1, 1, 28, 28), np.float32))


# Catalogue networks --------------------------------------------------------------------


CATALOGUE = [
    ("lenet", (1, 28, 28), 10),
    ("alexnet", (3, 32, 32), 10),
    ("resnet50", (3, 32, 32), 10),
    ("googlenet", (3, 32, 32), 10),
    ("vgg16", (3, 32, 32), 10),
    ("vgg16", (1, 28, 28), 10),
    ("googlenet", (3, 224, 224), 1000),
]


@pytest.mark.parametrize(("name", "shape", "classes"), CATALOGUE)
def test_catalogue_output_shapes(name, shape, classes):
    network = build(name, shape, classes)
    batch = 1 if shape[1] == 224 else 2
    images = np.random.default_rng(3).standard_normal((batch, *shape)).astype(np.float32)
    weights = init_weights(network, 0)
    logits = forward(network, weights, images)
    assert logits.shape == (batch, *output_shape(network))
    assert logits.dtype == np.float32
    assert np.isfinite(logits).all()
    assert np.abs(logits).max() > 0


def test_deterministic():
    network = build("resnet50", (3, 32, 32), 10)
    images = np.random.default_rng(4).standard_normal((1, 3, 32, 32)).astype(np.float32)
    first = forward(network, init_weights(network, 7), images)
    np.testing.assert_array_equal(first, forward(network, init_weights(network, 7), images))


def test_inference_is_per_image_and_training_mixes_the_batch():
    body = (
        Conv2D(4, 3, padding=1),
        BatchNorm(),
        ReLU(),
        Residual(Sequential((Conv2D(4, 3, padding=1, bias=False), BatchNorm()))),
        Concat(
            (
                Sequential((MaxPool(3, 2, 1, ceil_mode=True),)),
                Sequential((AvgPool(2, 2, ceil_mode=True),)),
            )
        ),
        GlobalAvgPool(),
        Flatten(),
        Dense(3),
    )
    network = Network("tiny", "small", (2, 5, 5), 3, Sequential(body))
    weights = init_weights(network, 1)
    images = np.random.default_rng(5).standard_normal((3, 2, 5, 5)).astype(np.float32)
    every = forward(network, weights, images)
    np.testing.assert_allclose(forward(network, weights, images[1:2]), every[1:2], rtol=1e-6)
    train = forward(network, weights, images, training=True)
    assert train.shape == every.shape
    assert not np.allclose(train, every)
    assert not np.allclose(forward(network, weights, images[1:], training=True), train[1:])
