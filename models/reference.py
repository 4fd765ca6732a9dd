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
- MaxPool: padding counts as -inf; ceil mode follows models.graph.pool_geometry;
- AvgPool: padded cells count (count_include_pad=True). A ceil-mode window that runs
  past the right padding is clipped there and its divisor shrinks with it, exactly as
  torch's avg_pool2d computes ``pool_size``;
- GlobalAvgPool: mean over height and width; Flatten: channel-major, (N, C*H*W);
- Dense: ``x @ weight.T + bias``; ReLU: ``max(x, 0)``;
- Dropout: the identity, in inference AND in training. The reference is deterministic,
  so a training-mode comparison must switch the framework's dropout off;
- Residual: ``body(x) + shortcut(x)`` (no activation); Concat: channel concatenation.

Weights are a canonical state dict (models.init): keys "<path>.<name>" with the paths
of models.tree, conv weights (out, in // groups, kh, kw), dense weights (out, in).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from . import layers as L
from .graph import PoolGeometry, pool_geometry
from .tree import Forward

Weights = Mapping[str, np.ndarray]
Size = int | tuple[int, int]


def forward(
    network: L.Network, weights: Weights, images: np.ndarray, *, training: bool = False
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
    node: L.Node, weights: Weights, x: np.ndarray, *, training: bool = False, prefix: str = ""
) -> np.ndarray:
    """Runs any node (container or layer) on a batch ``x`` (float64 recommended).

    ``prefix`` is the node's path in the network, used to find its weights.
    """
    return _Reference(weights, training).run(node, x, prefix)


class _Reference(Forward[np.ndarray]):
    """The walk's leaf rule and Concat rule for NumPy arrays (Residual: body + shortcut)."""

    def __init__(self, weights: Weights, training: bool) -> None:
        self.weights, self.training = weights, training

    def layer(self, layer: L.Layer, path: str, x: np.ndarray) -> np.ndarray:
        return _layer(layer, self.weights, x, self.training, path)

    def concatenate(self, path: str, outputs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(outputs, axis=1)


def _param(weights: Weights, path: str, name: str) -> np.ndarray:
    key = f"{path}.{name}" if path else name
    try:
        return np.asarray(weights[key], dtype=np.float64)
    except KeyError:
        raise KeyError(f"weight {key!r} is missing from the state dict") from None


def _layer(
    layer: L.Layer, weights: Weights, x: np.ndarray, training: bool, path: str
) -> np.ndarray:
    if isinstance(layer, L.Conv2D):
        bias = _param(weights, path, "bias") if layer.bias else None
        return conv2d(
            x,
            _param(weights, path, "weight"),
            bias,
            stride=layer.stride,
            padding=layer.padding,
            groups=layer.groups,
        )
    if isinstance(layer, L.BatchNorm):
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
    if isinstance(layer, L.ReLU):
        return np.maximum(x, 0.0)
    if isinstance(layer, L.MaxPool):
        return max_pool2d(x, layer.kernel, layer.stride, layer.padding, layer.ceil_mode)
    if isinstance(layer, L.AvgPool):
        return avg_pool2d(x, layer.kernel, layer.stride, layer.padding, layer.ceil_mode)
    if isinstance(layer, L.GlobalAvgPool):
        return x.mean(axis=(2, 3), keepdims=True)
    if isinstance(layer, L.Flatten):
        return x.reshape(len(x), -1)
    if isinstance(layer, L.Dense):
        out = x @ _param(weights, path, "weight").T
        return out + _param(weights, path, "bias") if layer.bias else out
    if isinstance(layer, L.Dropout):
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
    (sh, sw), (ph, pw) = L.pair(stride), L.pair(padding)
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


def _geometry(layer: L.MaxPool | L.AvgPool, x: np.ndarray) -> PoolGeometry:
    """models.graph.pool_geometry for an NCHW batch; padding over half the kernel raises."""
    geometry = pool_geometry(layer, x.shape[2], x.shape[3])
    k, p = geometry.kernel, geometry.padding
    if 2 * p[0] > k[0] or 2 * p[1] > k[1]:
        raise ValueError(f"pool padding {p} must be at most half the kernel {k}")
    return geometry


def _windows(x: np.ndarray, geometry: PoolGeometry, fill: float):
    """Strided views of ``x`` padded with ``fill``, one per kernel offset, of the output's size."""
    (pad_h, pad_w), k, s, out = geometry.pads, geometry.kernel, geometry.stride, geometry.out
    xp = np.pad(x, ((0, 0), (0, 0), pad_h, pad_w), constant_values=fill)
    for i in range(k[0]):
        for j in range(k[1]):
            yield xp[
                :, :, i : i + s[0] * (out[0] - 1) + 1 : s[0], j : j + s[1] * (out[1] - 1) + 1 : s[1]
            ]


def max_pool2d(
    x: np.ndarray, kernel: Size, stride: Size | None = None, padding: Size = 0, ceil_mode=False
) -> np.ndarray:
    """torch.nn.functional.max_pool2d: padding is -inf, windows past the edge ignored."""
    geometry = _geometry(L.MaxPool(kernel, stride, padding, ceil_mode), x)
    result = np.full((*x.shape[:2], *geometry.out), -np.inf, dtype=x.dtype)
    for window in _windows(x, geometry, -np.inf):
        np.maximum(result, window, out=result)
    return result


def avg_pool2d(
    x: np.ndarray, kernel: Size, stride: Size | None = None, padding: Size = 0, ceil_mode=False
) -> np.ndarray:
    """torch.nn.functional.avg_pool2d with count_include_pad=True (torch's default)."""
    geometry = _geometry(L.AvgPool(kernel, stride, padding, ceil_mode), x)
    total = np.zeros((*x.shape[:2], *geometry.out), dtype=x.dtype)
    for window in _windows(x, geometry, 0.0):
        total += window
    div_h, div_w = (np.asarray(d, dtype=np.float64) for d in geometry.divisors)
    return total / np.outer(div_h, div_w)
