"""A NumPy reference training step: what every backend's trainer is compared to.

    from harness.models.reference_training import train
    losses, states = train(network, weights, [(images, labels)] * 3, lr=0.1)

The harness's recipe (harness.backend): softmax cross-entropy averaged over the batch,
SGD with momentum 0.9 in PyTorch's form (``buf = 0.9 * buf + grad``, the first step
``buf = grad``; ``w -= lr * buf``), no weight decay; batch norm in training mode
normalises with the batch's biased variance and blends its running statistics with
PyTorch's momentum, ``running = (1 - momentum) * running + momentum * batch``, from the
UNBIASED batch variance (``unbiased=False``: the biased one, as Flax and MXNet do).

Forward and backward are written out for every layer of models.layers, in float64, on
NCHW arrays, with PyTorch's semantics (models.reference): max pooling sends the gradient
to the first maximum of each window; ReLU's gradient is 0 at 0; Dropout is the identity
(compare against a framework with dropout off, models.parity.without_dropout).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

from . import layers as L
from .graph import pool_geometry
from .init import is_buffer
from .reference import avg_pool2d, conv2d, max_pool2d
from .tree import CONTAINERS, children, join

Backward = Callable[[np.ndarray], np.ndarray]
MOMENTUM = 0.9  # harness.backend.SGD_MOMENTUM (the core module is not imported here)


class _Tape:
    """Runs a node forward in training mode; returns its output and its backward."""

    def __init__(self, weights: Mapping[str, np.ndarray], unbiased: bool) -> None:
        self.w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
        self.unbiased = unbiased
        self.grads: dict[str, np.ndarray] = {}
        self.stats: dict[str, np.ndarray] = {}  # updated running statistics
        # path: (momentum, biased batch variance, values per channel)
        self.batch_vars: dict[str, tuple[float, np.ndarray, int]] = {}

    def grad(self, key: str, value: np.ndarray) -> None:
        self.grads[key] = self.grads.get(key, 0.0) + value

    def run(self, node: L.Node, x: np.ndarray, path: str) -> tuple[np.ndarray, Backward]:
        if isinstance(node, CONTAINERS):
            parts = children(node, path)
            if isinstance(node, L.Sequential):
                backs = []
                for name, child in parts:
                    x, back = self.run(child, x, join(path, name))
                    backs.append(back)

                def sequential(g: np.ndarray) -> np.ndarray:
                    for back in reversed(backs):
                        g = back(g)
                    return g

                return x, sequential
            if isinstance(node, L.Residual):
                body, body_back = self.run(node.body, x, join(path, "body"))
                if node.shortcut is None:
                    return body + x, lambda g: body_back(g) + g
                short, short_back = self.run(node.shortcut, x, join(path, "shortcut"))
                return body + short, lambda g: body_back(g) + short_back(g)
            outs = [self.run(child, x, join(path, name)) for name, child in parts]
            edges = np.cumsum([0] + [out.shape[1] for out, _ in outs])

            def concat(g: np.ndarray) -> np.ndarray:
                return sum(back(g[:, edges[i] : edges[i + 1]]) for i, (_, back) in enumerate(outs))

            return np.concatenate([out for out, _ in outs], axis=1), concat
        return self.leaf(node, x, path)

    def leaf(self, layer: L.Layer, x: np.ndarray, path: str) -> tuple[np.ndarray, Backward]:
        w = self.w
        if isinstance(layer, L.Conv2D):
            weight = w[f"{path}.weight"]
            bias = w[f"{path}.bias"] if layer.bias else None
            y = conv2d(
                x, weight, bias, stride=layer.stride, padding=layer.padding, groups=layer.groups
            )

            def conv(g: np.ndarray) -> np.ndarray:
                gx, gw = conv2d_backward(x, weight, g, layer.stride, layer.padding, layer.groups)
                self.grad(f"{path}.weight", gw)
                if layer.bias:
                    self.grad(f"{path}.bias", g.sum(axis=(0, 2, 3)))
                return gx

            return y, conv
        if isinstance(layer, L.Dense):
            weight = w[f"{path}.weight"]
            y = x @ weight.T + (w[f"{path}.bias"] if layer.bias else 0.0)

            def dense(g: np.ndarray) -> np.ndarray:
                self.grad(f"{path}.weight", g.T @ x)
                if layer.bias:
                    self.grad(f"{path}.bias", g.sum(axis=0))
                return g @ weight

            return y, dense
        if isinstance(layer, L.BatchNorm):
            return self.batch_norm(layer, x, path)
        if isinstance(layer, L.ReLU):
            y = np.maximum(x, 0.0)
            return y, lambda g: g * (y > 0)
        if isinstance(layer, L.MaxPool):
            y = max_pool2d(x, layer.kernel, layer.stride, layer.padding, layer.ceil_mode)
            return y, lambda g: max_pool_backward(layer, x, y, g)
        if isinstance(layer, L.AvgPool):
            y = avg_pool2d(x, layer.kernel, layer.stride, layer.padding, layer.ceil_mode)
            return y, lambda g: avg_pool_backward(layer, x, g)
        if isinstance(layer, L.GlobalAvgPool):
            h, wd = x.shape[2:]
            return x.mean(axis=(2, 3), keepdims=True), lambda g: np.broadcast_to(
                g / (h * wd), x.shape
            ).copy()
        if isinstance(layer, L.Flatten):
            return x.reshape(len(x), -1), lambda g: g.reshape(x.shape)
        if isinstance(layer, L.Dropout):
            return x, lambda g: g
        raise TypeError(f"{path or '<root>'}: the reference has no training rule for {layer!r}")

    def batch_norm(self, layer: L.BatchNorm, x: np.ndarray, path: str):
        axes = tuple(a for a in range(x.ndim) if a != 1)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        count = x.size // x.shape[1]
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        inv = 1.0 / np.sqrt(var + layer.eps)
        xhat = (x - mean.reshape(shape)) * inv.reshape(shape)
        gamma = self.w[f"{path}.weight"]
        y = xhat * gamma.reshape(shape) + self.w[f"{path}.bias"].reshape(shape)
        m = layer.momentum
        batch_var = var * count / (count - 1) if self.unbiased else var
        self.stats[f"{path}.running_mean"] = (1 - m) * self.w[f"{path}.running_mean"] + m * mean
        self.stats[f"{path}.running_var"] = (1 - m) * self.w[f"{path}.running_var"] + m * batch_var
        self.batch_vars[path] = (m, var, count)  # for the other convention's running_var

        def backward(g: np.ndarray) -> np.ndarray:
            self.grad(f"{path}.bias", g.sum(axis=axes))
            self.grad(f"{path}.weight", (g * xhat).sum(axis=axes))
            gxhat = g * gamma.reshape(shape)
            total = gxhat.sum(axis=axes).reshape(shape)
            dot = (gxhat * xhat).sum(axis=axes).reshape(shape)
            return (inv.reshape(shape) / count) * (count * gxhat - total - xhat * dot)

        return y, backward


def conv2d_backward(
    x: np.ndarray,
    weight: np.ndarray,
    g: np.ndarray,
    stride: int | tuple[int, int],
    padding: int | tuple[int, int],
    groups: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients (input, weight) of models.reference.conv2d for the output gradient ``g``.

    The input's gradient is a full correlation of the (stride-dilated) output gradient
    with the flipped kernel, one models.reference.conv2d; with groups, or padding
    beyond the kernel, it is summed per kernel offset instead."""
    n, _, h, w = x.shape
    out_c, cg, kh, kw = weight.shape
    (sh, sw), (ph, pw) = L.pair(stride), L.pair(padding)
    oh, ow = g.shape[2:]
    fast = groups == 1 and ph <= kh - 1 and pw <= kw - 1
    if fast:
        dilated = np.zeros((n, out_c, (oh - 1) * sh + 1, (ow - 1) * sw + 1), g.dtype)
        dilated[:, :, ::sh, ::sw] = g
        extra_h, extra_w = (h + 2 * ph - kh) % sh, (w + 2 * pw - kw) % sw
        dilated = np.pad(
            dilated,
            (
                (0, 0),
                (0, 0),
                (kh - 1 - ph, kh - 1 - ph + extra_h),
                (kw - 1 - pw, kw - 1 - pw + extra_w),
            ),
        )
        flipped = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        gx_fast = conv2d(dilated, flipped)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))).transpose(0, 2, 3, 1)  # NHWC
    gxp = None if fast else np.zeros_like(xp)
    gw = np.zeros_like(weight, dtype=np.result_type(x, weight))
    gflat = g.transpose(0, 2, 3, 1).reshape(-1, out_c)
    og = out_c // groups
    for grp in range(groups):
        gg = gflat[:, grp * og : (grp + 1) * og]
        chans = slice(grp * cg, (grp + 1) * cg)
        for i in range(kh):
            for j in range(kw):
                rows = slice(i, i + sh * (oh - 1) + 1, sh)
                cols = slice(j, j + sw * (ow - 1) + 1, sw)
                window = xp[:, rows, cols, chans].reshape(-1, cg)
                gw[grp * og : (grp + 1) * og, :, i, j] = gg.T @ window
                if not fast:
                    wij = weight[grp * og : (grp + 1) * og, :, i, j]
                    gxp[:, rows, cols, chans] += (gg @ wij).reshape(n, oh, ow, cg)
    if fast:
        return gx_fast, gw
    gx = gxp[:, ph : ph + h, pw : pw + w, :].transpose(0, 3, 1, 2)
    return np.ascontiguousarray(gx), gw


def _offsets(geometry):
    (kh, kw), (sh, sw), (oh, ow) = geometry.kernel, geometry.stride, geometry.out
    for i in range(kh):
        for j in range(kw):
            yield (slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw))


def _crop(gp: np.ndarray, geometry, h: int, w: int) -> np.ndarray:
    (top, _), (left, _) = geometry.pads
    return np.ascontiguousarray(gp[:, :, top : top + h, left : left + w])


def max_pool_backward(layer: L.MaxPool, x: np.ndarray, y: np.ndarray, g: np.ndarray):
    """The gradient of max pooling: each window's gradient to its first maximum (in
    row-major kernel order, as PyTorch's kernels pick it)."""
    geometry = pool_geometry(layer, *x.shape[2:])
    pad_h, pad_w = geometry.pads
    xp = np.pad(x, ((0, 0), (0, 0), pad_h, pad_w), constant_values=-np.inf)
    gp = np.zeros_like(xp)
    taken = np.zeros(y.shape, dtype=bool)
    for rows, cols in _offsets(geometry):
        hit = (xp[:, :, rows, cols] == y) & ~taken
        taken |= hit
        gp[:, :, rows, cols] += np.where(hit, g, 0.0)
    return _crop(gp, geometry, *x.shape[2:])


def avg_pool_backward(layer: L.AvgPool, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The gradient of average pooling (PyTorch's divisors, models.reference.avg_pool2d)."""
    geometry = pool_geometry(layer, *x.shape[2:])
    pad_h, pad_w = geometry.pads
    gp = np.zeros(np.pad(x, ((0, 0), (0, 0), pad_h, pad_w)).shape)
    share = g / np.outer(*(np.asarray(d, np.float64) for d in geometry.divisors))
    for rows, cols in _offsets(geometry):
        gp[:, :, rows, cols] += share
    return _crop(gp, geometry, *x.shape[2:])


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy and its gradient with respect to the logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = len(labels)
    rows = np.arange(n)
    grad = np.exp(log_p)
    grad[rows, labels] -= 1.0
    return float(-log_p[rows, labels].mean()), grad / n


def gradients(
    network: L.Network,
    weights: Mapping[str, np.ndarray],
    images: np.ndarray,
    labels: np.ndarray,
    *,
    unbiased: bool = True,
) -> tuple[float, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(loss, gradient per trainable key, updated running statistics) of one batch."""
    loss, grads, stats, _ = _step(network, weights, images, labels, unbiased)
    return loss, grads, stats


def _step(network, weights, images, labels, unbiased):
    tape = _Tape(weights, unbiased)
    logits, back = tape.run(network.body, np.asarray(images, np.float64), "")
    loss, grad = cross_entropy(logits, np.asarray(labels))
    back(grad)
    return loss, tape.grads, tape.stats, tape.batch_vars


def train(
    network: L.Network,
    weights: Mapping[str, np.ndarray],
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    lr: float,
    unbiased: bool = True,
    other_running_var: list[dict[str, np.ndarray]] | None = None,
) -> tuple[list[float], list[dict[str, np.ndarray]]]:
    """Steps of SGD with momentum from ``weights``, one per batch: the loss of each step
    (before its update) and the state (float64, parameters and running statistics)
    after each. ``other_running_var``, a list, receives after each step the running
    variances the other convention (biased if ``unbiased``, else unbiased) would hold:
    running statistics never feed back into training, so one pass gives both."""
    state = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    other = {k: v for k, v in state.items() if k.endswith(".running_var")}
    buffers: dict[str, np.ndarray] = {}
    losses, states = [], []
    for images, labels in batches:
        loss, grads, stats, batch_vars = _step(network, state, images, labels, unbiased)
        state = dict(state)
        for key in state:
            if is_buffer(key):
                continue
            grad = grads.get(key, np.zeros_like(state[key]))
            buffers[key] = grad if key not in buffers else MOMENTUM * buffers[key] + grad
            state[key] = state[key] - lr * buffers[key]
        state.update(stats)
        if other_running_var is not None:
            for path, (m, var, count) in batch_vars.items():
                key = f"{path}.running_var"
                blended = var if unbiased else var * count / (count - 1)
                other[key] = (1 - m) * other[key] + m * blended
            other_running_var.append(dict(other))
        losses.append(loss)
        states.append(state)
    return losses, states
