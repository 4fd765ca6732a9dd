"""A NumPy reference forward pass: the numbers every framework backend is compared to.

    from harness.models import build, init_weights
    from harness.models.reference import forward
    net = build("resnet50", (3, 32, 32), 10)
    logits = forward(net, init_weights(net, 0), images)   # images (N, 3, 32, 32) float32

Every layer of models.layers is computed with PyTorch's semantics, in float64, on
NCHW arrays; the result is returned as float32:

- Conv2D: cross-correlation with stride, symmetric zero padding, groups and bias;
- BatchNorm: ``(x - mean) / sqrt(var + eps) * weight + bias`` over the channel axis
  (axis 1). Inference uses the running statistics; ``training=True`` uses the batch's
  mean and biased variance, as torch does for normalising. Running statistics are
  never updated: this is a pure function;
- MaxPool: padding counts as -inf; ceil mode follows models.graph.pool_output_size;
- AvgPool: padded cells count (count_include_pad=True). A ceil-mode window that runs
  past the right padding is clipped there and its divisor shrinks with it, exactly as
  torch's avg_pool2d computes ``pool_size``;
- GlobalAvgPool: mean over height and width; Flatten: channel-major, (N, C*H*W);
- Dense: ``x @ weight.T + bias``; ReLU: ``max(x, 0)``;
- Dropout: the identity, in inference AND in training. The reference is deterministic,
  so a training-mode comparison must switch the framework's dropout off;
- Residual: ``body(x) + shortcut(x)`` (no activation); Concat: channel concatenation.

Weights are a canonical state dict (models.init): keys "<path>.<name>" with the paths
of models.graph.walk, conv weights (out, in // groups, kh, kw), dense weights (out, in).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .graph import pool_output_size
from .layers import (
    AvgPool,
    BatchNorm,
    Concat,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    Layer,
    MaxPool,
    Network,
    Node,
    ReLU,
    Residual,
    Sequential,
    pair,
)

Weights = Mapping[str, np.ndarray]


def forward(
    network: Network, weights: Weights, images: np.ndarray, *, training: bool = False
) -> np.ndarray:
    """Logits (N, num_classes) float32 of ``network`` for NCHW ``images``.

    ``training`` switches BatchNorm to batch statistics; nothing else changes.
    Raises ValueError for images of the wrong shape, KeyError for a missing weight.
    """
    images = np.asarray(images)
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(network.input_shape):
        want = "x".join(map(str, network.input_shape))
        raise ValueError(
            f"{network.name} takes images (N, {want.replace('x', ', ')}) "
            f"in NCHW, got {images.shape}"
        )
    out = apply(network.body, weights, images.astype(np.float64), training=training)
    return out.astype(np.float32)


def apply(
    node: Node, weights: Weights, x: np.ndarray, *, training: bool = False, prefix: str = ""
) -> np.ndarray:
    """Runs any node (container or layer) on a batch ``x`` (float64 recommended).

    ``prefix`` is the node's path in the network, used to find its weights.
    """
    if isinstance(node, Sequential):
        for name, child in zip(node.child_names(), node.layers, strict=True):
            x = apply(child, weights, x, training=training, prefix=_join(prefix, name))
        return x
    if isinstance(node, Residual):
        body = apply(node.body, weights, x, training=training, prefix=_join(prefix, "body"))
        if node.shortcut is None:
            return body + x
        return body + apply(
            node.shortcut, weights, x, training=training, prefix=_join(prefix, "shortcut")
        )
    if isinstance(node, Concat):
        outs = [
            apply(b, weights, x, training=training, prefix=_join(prefix, str(i)))
            for i, b in enumerate(node.branches)
        ]
        return np.concatenate(outs, axis=1)
    return _layer(node, weights, x, training, prefix)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _param(weights: Weights, path: str, name: str) -> np.ndarray:
    key = f"{path}.{name}" if path else name
    try:
        return np.asarray(weights[key], dtype=np.float64)
    except KeyError:
        raise KeyError(f"weight {key!r} is missing from the state dict") from None


def _layer(layer: Layer, weights: Weights, x: np.ndarray, training: bool, path: str) -> np.ndarray:
    if isinstance(layer, Conv2D):
        bias = _param(weights, path, "bias") if layer.bias else None
        return conv2d(
            x,
            _param(weights, path, "weight"),
            bias,
            stride=layer.stride,
            padding=layer.padding,
            groups=layer.groups,
        )
    if isinstance(layer, BatchNorm):
        mean = var = None
        if not training:
            mean = _param(weights, path, "running_mean")
            var = _param(weights, path, "running_var")
        return batch_norm(
            x,
            _param(weights, path, "weight"),
            _param(weights, path, "bias"),
            mean,
            var,
            eps=layer.eps,
        )
    if isinstance(layer, ReLU):
        return np.maximum(x, 0.0)
    if isinstance(layer, MaxPool):
        return max_pool2d(x, layer.kernel, layer.stride, layer.padding, layer.ceil_mode)
    if isinstance(layer, AvgPool):
        return avg_pool2d(x, layer.kernel, layer.stride, layer.padding, layer.ceil_mode)
    if isinstance(layer, GlobalAvgPool):
        return x.mean(axis=(2, 3), keepdims=True)
    if isinstance(layer, Flatten):
        return x.reshape(len(x), -1)
    if isinstance(layer, Dense):
        out = x @ _param(weights, path, "weight").T
        return out + _param(weights, path, "bias") if layer.bias else out
    if isinstance(layer, Dropout):
        return x
    raise TypeError(f"{path or '<root>'}: the reference has no rule for {layer!r}")


# Layers as functions ------------------------------------------------------------------


def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    groups: int = 1,
) -> np.ndarray:
    """torch.nn.functional.conv2d on NCHW ``x`` with weight (out, in // groups, kh, kw).

    Sums one matrix product per kernel offset, so memory stays at the output's size.
    """
    n, c, h, w = x.shape
    out_c, cg, kh, kw = weight.shape
    (sh, sw), (ph, pw) = pair(stride), pair(padding)
    if c != cg * groups or out_c % groups:
        raise ValueError(
            f"conv weight {weight.shape} with groups={groups} does not fit {c} input channels"
        )
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))).transpose(0, 2, 3, 1)  # NHWC
    og = out_c // groups
    out = np.zeros((n * oh * ow, out_c), dtype=np.result_type(x, weight))
    for g in range(groups):
        xg = xp[..., g * cg : (g + 1) * cg]
        wg = weight[g * og : (g + 1) * og]  # (og, cg, kh, kw)
        acc = out[:, g * og : (g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                window = xg[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw]
                acc += window.reshape(-1, cg) @ wg[:, :, i, j].T
    if bias is not None:
        out += bias
    out = out.reshape(n, oh, ow, out_c)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def batch_norm(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    *,
    eps: float = 1e-5,
) -> np.ndarray:
    """Normalises over axis 1 (channels); batch statistics when running ones are None."""
    axes = tuple(a for a in range(x.ndim) if a != 1)
    if running_mean is None or running_var is None:
        mean, var = x.mean(axis=axes), x.var(axis=axes)  # biased variance, as torch
    else:
        mean, var = running_mean, running_var
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale = (weight / np.sqrt(var + eps)).reshape(shape)
    return (x - mean.reshape(shape)) * scale + bias.reshape(shape)


def _pool_geometry(
    h: int,
    w: int,
    kernel: int | tuple[int, int],
    stride: int | tuple[int, int] | None,
    padding: int | tuple[int, int],
    ceil_mode: bool,
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]:
    """(kernel, stride, padding, output size) per axis, with torch's output sizes."""
    k = pair(kernel)
    s = pair(kernel if stride is None else stride)
    p = pair(padding)
    if 2 * p[0] > k[0] or 2 * p[1] > k[1]:
        raise ValueError(f"pool padding {p} must be at most half the kernel {k}")
    out = (
        pool_output_size(h, k[0], s[0], p[0], ceil_mode),
        pool_output_size(w, k[1], s[1], p[1], ceil_mode),
    )
    return k, s, p, out


def _padded(x: np.ndarray, k, s, p, out, fill: float) -> np.ndarray:
    """``x`` padded so that every output window fits: p before, enough after."""
    after = [
        max(0, (o - 1) * st + kk - size - pp)
        for o, st, kk, size, pp in zip(out, s, k, x.shape[2:], p, strict=True)
    ]
    return np.pad(x, ((0, 0), (0, 0), (p[0], after[0]), (p[1], after[1])), constant_values=fill)


def _windows(xp: np.ndarray, k, s, out):
    """Strided views of ``xp``, one per kernel offset, each of the output's size."""
    for i in range(k[0]):
        for j in range(k[1]):
            yield xp[
                :, :, i : i + s[0] * (out[0] - 1) + 1 : s[0], j : j + s[1] * (out[1] - 1) + 1 : s[1]
            ]


def max_pool2d(
    x: np.ndarray,
    kernel: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    ceil_mode: bool = False,
) -> np.ndarray:
    """torch.nn.functional.max_pool2d: padding is -inf, windows past the edge ignored."""
    k, s, p, out = _pool_geometry(x.shape[2], x.shape[3], kernel, stride, padding, ceil_mode)
    xp = _padded(x, k, s, p, out, -np.inf)
    result = np.full((*x.shape[:2], *out), -np.inf, dtype=x.dtype)
    for window in _windows(xp, k, s, out):
        np.maximum(result, window, out=result)
    return result


def _avg_divisors(size: int, kernel: int, stride: int, padding: int, out: int) -> np.ndarray:
    """torch's pool_size per output index: the window clipped to input + padding."""
    start = np.arange(out) * stride - padding
    end = np.minimum(start + kernel, size + padding)
    return (end - start).astype(np.float64)


def avg_pool2d(
    x: np.ndarray,
    kernel: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    ceil_mode: bool = False,
) -> np.ndarray:
    """torch.nn.functional.avg_pool2d with count_include_pad=True (torch's default)."""
    h, w = x.shape[2:]
    k, s, p, out = _pool_geometry(h, w, kernel, stride, padding, ceil_mode)
    xp = _padded(x, k, s, p, out, 0.0)
    total = np.zeros((*x.shape[:2], *out), dtype=x.dtype)
    for window in _windows(xp, k, s, out):
        total += window
    div_h = _avg_divisors(h, k[0], s[0], p[0], out[0])
    div_w = _avg_divisors(w, k[1], s[1], p[1], out[1])
    return total / np.outer(div_h, div_w)
