"""Translate a harness.models network into Gluon HybridBlocks (NCHW, MXNet's native layout).

The tree is descended by harness.models.tree; this module translates leaf layers and
says what a Sequential, Residual and Concat become. Gluon names parameters by its own
global counters, so the builder returns, beside the block, a map from each canonical
key of harness.models.init to its gluon Parameter.
Gluon's layouts are the canonical ones: conv weight (out, in // groups, kh, kw), dense
weight (out, in); batch norm's gamma/beta are the canonical weight/bias.

Differences MXNet forces, against the PyTorch conventions of models.layers:

- BatchNorm momentum is converted (Gluon momentum = 1 - PyTorch momentum), but MXNet
  updates the running variance with the *biased* batch variance (PyTorch: unbiased,
  n / (n - 1) larger), and does so in the backward pass, not the forward pass;
- ceil-mode pooling uses ``pooling_convention='full'``, which keeps a last window that
  starts in the right padding; PyTorch drops it. Where the two sizes differ (never in
  the catalogue, whose ceil-mode pools have no padding or stride 1) the extra last
  row/column is cropped, which leaves every other window as PyTorch computes it;
- average pooling counts padded cells (count_include_pad), as PyTorch's default;
- dropout draws from MXNet's RNG (seeded from the run's seed), not PyTorch's stream.
"""

from __future__ import annotations

import math

import numpy as np
from mxnet import gluon, nd
from mxnet.gluon import nn
from mxnet.gluon.contrib.nn import HybridConcurrent

from harness.models import layers as L
from harness.models.graph import LayerShape, infer, pool_geometry, window
from harness.models.tree import fold

Params = dict[str, gluon.Parameter]

# canonical parameter name -> attribute of the gluon layer
_BN_NAMES = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "running_mean",
    "running_var": "running_var",
}


class Residual(gluon.HybridBlock):
    """body(x) + shortcut(x); an absent shortcut is the identity."""

    def __init__(self, body: gluon.HybridBlock, shortcut: gluon.HybridBlock | None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def hybrid_forward(self, F, x):
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.body(x) + identity


class Pool(gluon.HybridBlock):
    """Max or average pooling with PyTorch's output size (see the module docstring)."""

    def __init__(self, layer: L.MaxPool | L.AvgPool, shape: LayerShape) -> None:
        super().__init__()
        self.kernel, self.stride, self.pad = window(layer)
        self.pool_type = "max" if isinstance(layer, L.MaxPool) else "avg"
        self.convention = "full" if layer.ceil_mode else "valid"
        self.out = tuple(shape.out_shape[1:])
        self.crop = not _native_size_agrees(layer, shape.in_shape)

    def hybrid_forward(self, F, x):
        y = F.Pooling(
            x,
            kernel=self.kernel,
            stride=self.stride,
            pad=self.pad,
            pool_type=self.pool_type,
            pooling_convention=self.convention,
            count_include_pad=True,
        )
        if self.crop:
            y = F.slice(y, begin=(None, None, 0, 0), end=(None, None, *self.out))
        return y


def _mxnet_pool_size(size: int, kernel: int, stride: int, pad: int, full: bool) -> int:
    """MXNet's Pooling output size: 'full' is a plain ceil, 'valid' a floor."""
    span = size + 2 * pad - kernel
    return (-(-span // stride) if full else span // stride) + 1


def _native_size_agrees(layer: L.MaxPool | L.AvgPool, in_shape: tuple[int, ...]) -> bool:
    """Whether MXNet's own output size for this pool is PyTorch's (no cropping needed)."""
    _, height, width = in_shape
    geometry = pool_geometry(layer, height, width)
    native = tuple(
        _mxnet_pool_size(size, k, s, p, layer.ceil_mode)
        for size, k, s, p in zip(
            (height, width), geometry.kernel, geometry.stride, geometry.padding, strict=True
        )
    )
    return native == geometry.out


def _leaf(layer: L.Layer, shape: LayerShape, params: Params) -> gluon.HybridBlock:
    path = shape.path
    if isinstance(layer, L.Conv2D):
        kernel, strides, padding = window(layer)
        block = nn.Conv2D(
            layer.filters,
            kernel,
            strides,
            padding,
            groups=layer.groups,
            use_bias=layer.bias,
            in_channels=shape.in_shape[0],
        )
        names = ["weight", "bias"] if layer.bias else ["weight"]
        params.update({f"{path}.{n}": getattr(block, n) for n in names})
        return block
    if isinstance(layer, L.Dense):
        block = nn.Dense(layer.units, use_bias=layer.bias, in_units=shape.in_shape[0])
        names = ["weight", "bias"] if layer.bias else ["weight"]
        params.update({f"{path}.{n}": getattr(block, n) for n in names})
        return block
    if isinstance(layer, L.BatchNorm):
        block = nn.BatchNorm(
            axis=1, momentum=1.0 - layer.momentum, epsilon=layer.eps, in_channels=shape.in_shape[0]
        )
        params.update({f"{path}.{k}": getattr(block, v) for k, v in _BN_NAMES.items()})
        return block
    if isinstance(layer, L.ReLU):
        return nn.Activation("relu")
    if isinstance(layer, (L.MaxPool, L.AvgPool)):
        return Pool(layer, shape)
    if isinstance(layer, L.GlobalAvgPool):
        return nn.GlobalAvgPool2D()
    if isinstance(layer, L.Flatten):
        return nn.Flatten()
    if isinstance(layer, L.Dropout):
        return nn.Dropout(layer.rate)
    raise TypeError(f"no MXNet translation for {layer!r}")


def _holding(block: nn.HybridSequential, children: list[gluon.HybridBlock]):
    block.add(*children)
    return block


def build_block(network: L.Network) -> tuple[gluon.HybridBlock, Params]:
    """The network as one HybridBlock, and canonical key -> gluon Parameter."""
    shapes = {row.path: row for row in infer(network)}
    params: Params = {}
    block = fold(
        network,
        leaf=lambda layer, path: _leaf(layer, shapes[path], params),
        sequential=lambda parts: _holding(nn.HybridSequential(), [b for _, b in parts]),
        residual=Residual,
        # HybridConcurrent runs every branch on the input and concatenates on channels.
        concat=lambda branches: _holding(HybridConcurrent(axis=1), branches),
    )
    return block, params


def trainable_count(params: Params) -> int:
    """Parameters gluon trains (running statistics have grad_req 'null')."""
    return sum(math.prod(p.shape) for p in params.values() if p.grad_req != "null")


def load_canonical_state(params: Params, state: dict[str, np.ndarray]) -> None:
    """Copies canonical weights into every context; all keys must match exactly."""
    missing = sorted(set(params) - set(state))
    unexpected = sorted(set(state) - set(params))
    if missing or unexpected:
        raise ValueError(
            f"weights do not match the block: missing {missing}, unexpected {unexpected}"
        )
    for key, param in params.items():
        value = np.asarray(state[key], dtype=np.float32)
        if tuple(value.shape) != tuple(param.shape):
            raise ValueError(f"{key}: shape {value.shape}, the block wants {param.shape}")
        param.set_data(nd.array(value, dtype="float32"))


def canonical_state(params: Params, replica: int = 0) -> dict[str, np.ndarray]:
    """The weights held on one context (by index), in the canonical layout."""
    return {k: p.list_data()[replica].astype("float32").asnumpy() for k, p in params.items()}


def pool_sizes_agree(network: L.Network) -> bool:
    """Whether MXNet's own pooling sizes equal PyTorch's for every pool (no cropping)."""
    return all(
        _native_size_agrees(row.layer, row.in_shape)
        for row in infer(network)
        if isinstance(row.layer, (L.MaxPool, L.AvgPool))
    )


def numpy_forward(
    network: L.Network,
    state: dict[str, np.ndarray],
    images: np.ndarray,
    *,
    training: bool = False,
    context=None,
) -> np.ndarray:
    """Logits (float32 NumPy) of ``network`` with canonical ``state`` for NCHW ``images``:
    the parity checks' entry point (``training``: batch statistics, dropout active)."""
    import mxnet as mx

    context = context or mx.cpu()
    block, params = build_block(network)
    block.initialize(mx.init.Zero(), ctx=context)
    load_canonical_state(params, state)
    block.hybridize(static_alloc=True, static_shape=True)
    x = nd.array(np.ascontiguousarray(images, np.float32), ctx=context)
    if training:
        with mx.autograd.train_mode():
            out = block(x)
    else:
        out = block(x)
    return out.asnumpy().astype(np.float32)
