"""Shape inference, parameter and operation counts, and pooling geometry.

Paths follow the rules of models.tree, whose walk this module re-exports; weight keys
are "<path>.<parameter>", as in a PyTorch state_dict (see models.init).

Shapes are per image: (C, H, W) for feature maps, (features,) after Flatten or Dense.
Output sizes follow PyTorch exactly:

- convolution: floor((size + 2 * pad - kernel) / stride) + 1;
- pooling: the same with floor or ceil; in ceil mode a window that would start beyond
  the input and its left padding is dropped (torch's ``pooling_output_shape``), and the
  padding may be at most half the kernel. A pool's stride defaults to its kernel
  (``window``, the one place that says so).

Counts: parameters are the trainable ones only (conv and dense weights and biases,
batch-norm scale and shift; running statistics are buffers, not counted). MACs are the
multiply-accumulates of convolutions and dense layers (bias additions, batch norm,
activations, pooling and residual additions are not counted); FLOPs are 2 * MACs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .layers import (
    AvgPool,
    BatchNorm,
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
    pair,
)
from .tree import LEAVES as LEAVES  # re-exported: models.tree is their home
from .tree import Forward
from .tree import walk as walk

Shape = tuple[int, ...]


@dataclass(frozen=True)
class LayerShape:
    """What one leaf layer sees and costs, per image."""

    path: str
    layer: Layer
    in_shape: Shape
    out_shape: Shape
    params: int  # trainable parameters
    macs: int  # multiply-accumulates per image


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """PyTorch's Conv2d output size along one axis (may be < 1 for impossible inputs)."""
    return (size + 2 * padding - kernel) // stride + 1


def pool_output_size(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> int:
    """PyTorch's MaxPool2d/AvgPool2d output size along one axis."""
    span = size + 2 * padding - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    # Ceil mode: the last window must start inside the input or its left padding.
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def pool_padding(
    size: int, kernel: int, stride: int, padding: int, ceil_mode: bool
) -> tuple[int, int]:
    """Explicit (before, after) padding with which a floor-mode pool gives PyTorch's size.

    For frameworks without ceil mode: pad max pooling with -inf by these amounts.
    """
    out = pool_output_size(size, kernel, stride, padding, ceil_mode)
    return padding, max(padding, (out - 1) * stride + kernel - size - padding)


Pair = tuple[int, int]


class PoolGeometry(NamedTuple):
    """One pooling layer on one (height, width) input, per axis (height, width)."""

    kernel: Pair
    stride: Pair  # the kernel where the layer gives None
    padding: Pair  # the layer's symmetric padding
    out: Pair  # PyTorch's output size
    pads: tuple[Pair, Pair]  # (before, after) for a floor-mode pool: see pool_padding
    # Average pooling: PyTorch's divisor per output index (count_include_pad, and a
    # ceil-mode window clipped at the right padding).
    divisors: tuple[tuple[int, ...], tuple[int, ...]]


def window(layer: Conv2D | MaxPool | AvgPool) -> tuple[Pair, Pair, Pair]:
    """(kernel, stride, padding) as (height, width) pairs; a pool's stride of None is its
    kernel (PyTorch's default, and this the one place that says so)."""
    stride = layer.kernel if layer.stride is None else layer.stride
    return pair(layer.kernel), pair(stride), pair(layer.padding)


def pool_geometry(layer: MaxPool | AvgPool, height: int, width: int) -> PoolGeometry:
    """Kernel, stride, padding, output size, explicit pads and average divisors."""
    kernel, stride, padding = window(layer)
    axes = list(zip((height, width), kernel, stride, padding, strict=True))
    out = [pool_output_size(*axis, layer.ceil_mode) for axis in axes]
    pads = [pool_padding(*axis, layer.ceil_mode) for axis in axes]
    divisors = [
        tuple(min(i * s - p + k, size + p) - (i * s - p) for i in range(n))
        for (size, k, s, p), n in zip(axes, out, strict=True)
    ]
    return PoolGeometry(
        kernel, stride, padding, (out[0], out[1]), (pads[0], pads[1]), (divisors[0], divisors[1])
    )


def describe(layer: Layer) -> str:
    """A short human-readable description, e.g. 'Conv2D 64 7x7/2 p3'."""
    if isinstance(layer, Conv2D):
        (kh, kw), (sh, sw), (ph, pw) = window(layer)
        text = f"Conv2D {layer.filters} {kh}x{kw}"
        text += f"/{sh}" if sh == sw else f"/{sh}x{sw}"
        if ph or pw:
            text += f" p{ph}" if ph == pw else f" p{ph}x{pw}"
        if layer.groups != 1:
            text += f" g{layer.groups}"
        return text + ("" if layer.bias else " nobias")
    if isinstance(layer, (MaxPool, AvgPool)):
        (kh, kw), (sh, sw), (ph, pw) = window(layer)
        text = f"{type(layer).__name__} {kh}x{kw}/{sh}" + (f"x{sw}" if sw != sh else "")
        if ph or pw:
            text += f" p{ph}" if ph == pw else f" p{ph}x{pw}"
        return text + (" ceil" if layer.ceil_mode else "")
    if isinstance(layer, Dense):
        return f"Dense {layer.units}" + ("" if layer.bias else " nobias")
    if isinstance(layer, Dropout):
        return f"Dropout {layer.rate:g}"
    if isinstance(layer, BatchNorm):
        return f"BatchNorm eps={layer.eps:g}"
    return type(layer).__name__


def _fail(path: str, layer: Layer, shape: Shape, why: str) -> ValueError:
    return ValueError(f"{path or '<root>'} ({describe(layer)}) cannot take input {shape}: {why}")


def _need_map(path: str, layer: Layer, shape: Shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise _fail(path, layer, shape, "needs a (C, H, W) feature map")
    return shape  # type: ignore[return-value]


def _leaf(path: str, layer: Layer, shape: Shape) -> LayerShape:
    """Output shape, parameters and MACs of one leaf layer."""
    params = macs = 0
    if isinstance(layer, Conv2D):
        c, h, w = _need_map(path, layer, shape)
        kh, kw = pair(layer.kernel)
        sh, sw = pair(layer.stride)
        ph, pw = pair(layer.padding)
        if c % layer.groups or layer.filters % layer.groups:
            raise _fail(path, layer, shape, f"channels not divisible by groups={layer.groups}")
        oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
        if oh < 1 or ow < 1:
            raise _fail(path, layer, shape, f"output would be {oh}x{ow}")
        per_out = c // layer.groups * kh * kw
        params = layer.filters * per_out + (layer.filters if layer.bias else 0)
        macs = oh * ow * layer.filters * per_out
        out: Shape = (layer.filters, oh, ow)
    elif isinstance(layer, (MaxPool, AvgPool)):
        c, h, w = _need_map(path, layer, shape)
        (kh, kw), _, (ph, pw), (oh, ow), *_ = pool_geometry(layer, h, w)
        if 2 * ph > kh or 2 * pw > kw:
            raise _fail(path, layer, shape, "padding must be at most half the kernel")
        if oh < 1 or ow < 1:
            raise _fail(path, layer, shape, f"output would be {oh}x{ow}")
        out = (c, oh, ow)
    elif isinstance(layer, BatchNorm):
        c, _, _ = _need_map(path, layer, shape)
        params, out = 2 * c, shape
    elif isinstance(layer, GlobalAvgPool):
        out = (_need_map(path, layer, shape)[0], 1, 1)
    elif isinstance(layer, Flatten):
        if len(shape) < 1:
            raise _fail(path, layer, shape, "nothing to flatten")
        size = 1
        for dim in shape:
            size *= dim
        out = (size,)
    elif isinstance(layer, Dense):
        if len(shape) != 1:
            raise _fail(path, layer, shape, "needs a flat (features,) input; add Flatten")
        params = layer.units * shape[0] + (layer.units if layer.bias else 0)
        macs, out = layer.units * shape[0], (layer.units,)
    elif isinstance(layer, (ReLU, Dropout)):
        out = shape
    else:
        raise TypeError(f"{path}: unknown layer {layer!r}")
    return LayerShape(path, layer, shape, out, params, macs)


class _Shapes(Forward[Shape]):
    """Shape inference as a walk: one LayerShape row per leaf, in execution order."""

    def __init__(self) -> None:
        self.rows: list[LayerShape] = []

    def layer(self, layer: Layer, path: str, shape: Shape) -> Shape:
        row = _leaf(path, layer, shape)
        self.rows.append(row)
        return row.out_shape

    def add(self, path: str, body: Shape, shortcut: Shape) -> Shape:
        if body != shortcut:
            raise ValueError(
                f"{path or '<root>'}: residual body gives {body} but shortcut gives {shortcut}"
            )
        return body

    def concatenate(self, path: str, outputs: list[Shape]) -> Shape:
        if not outputs:
            raise ValueError(f"{path or '<root>'}: Concat has no branches")
        if any(len(o) != 3 for o in outputs) or len({o[1:] for o in outputs}) != 1:
            raise ValueError(
                f"{path or '<root>'}: Concat branches must give (C, H, W) "
                f"maps of equal height and width, got {outputs}"
            )
        return (sum(o[0] for o in outputs), *outputs[0][1:])


def infer(network: Network | Node, input_shape: Shape | None = None) -> list[LayerShape]:
    """Shapes, parameters and MACs of every leaf layer, in walk order.

    ``input_shape`` defaults to the network's; it is required for a bare node.
    Raises ValueError when some layer cannot take the shape it gets.
    """
    if isinstance(network, Network):
        node: Node = network.body
        shape = tuple(input_shape or network.input_shape)
    else:
        if input_shape is None:
            raise ValueError("infer() on a bare node needs input_shape")
        node, shape = network, tuple(input_shape)
    if not shape or any(not isinstance(d, int) or d < 1 for d in shape):
        raise ValueError(f"input shape must be positive integers, got {shape}")
    shapes = _Shapes()
    shapes.run(node, shape)  # checks every name before the first shape
    return shapes.rows


def output_shape(network: Network) -> Shape:
    """The per-image output shape, e.g. (num_classes,)."""
    rows = infer(network)
    return rows[-1].out_shape if rows else tuple(network.input_shape)


def param_count(network: Network) -> int:
    """Trainable parameters (running statistics excluded)."""
    return sum(row.params for row in infer(network))


def macs_per_image(network: Network) -> int:
    """Multiply-accumulates of the conv and dense layers for one image, forward pass."""
    return sum(row.macs for row in infer(network))


def flops_per_image(network: Network) -> int:
    """2 * macs_per_image: batch norm, activations and pooling are not counted."""
    return 2 * macs_per_image(network)


def summary_table(network: Network) -> str:
    """A plain-text table: path, layer, output shape, parameters, and totals."""
    rows = infer(network)
    lines = [
        (r.path, describe(r.layer), "x".join(map(str, r.out_shape)), f"{r.params:,}") for r in rows
    ]
    head = ("path", "layer", "output", "params")
    widths = [max(len(x[i]) for x in [head, *lines]) for i in range(4)]

    def fmt(cells: tuple[str, ...]) -> str:
        return "  ".join(
            [
                *(c.ljust(w) for c, w in zip(cells[:3], widths, strict=False)),
                cells[3].rjust(widths[3]),
            ]
        ).rstrip()

    title = (
        f"{network.name} ({network.variant}) input "
        f"{'x'.join(map(str, network.input_shape))}, {network.num_classes} classes"
    )
    rule = "-" * len(fmt(head))
    total = sum(r.params for r in rows)
    macs = sum(r.macs for r in rows)
    return "\n".join(
        [
            title,
            fmt(head),
            rule,
            *map(fmt, lines),
            rule,
            f"total params {total:,}; MACs per image {macs:,}",
        ]
    )
