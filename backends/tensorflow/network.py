"""Translate a harness.models network into TensorFlow ops on tf.Variables, in NHWC.

The tree is descended by harness.models.tree (a Forward: leaf layers here, Residual
sums and Concat joins on channels). No Keras layers: every layer of models.layers
becomes one or two ``tf.nn`` ops, so
padding, pooling and batch norm follow the harness's (PyTorch's) conventions exactly:

- Conv2D: ``tf.nn.conv2d``. TF's "SAME" is used only where it yields exactly PyTorch's
  windows (same output size and start offset: e.g. 3x3 stride 1 padding 1); elsewhere
  (e.g. stride 2, where "SAME" pads asymmetrically) the symmetric padding is explicit.
  Weights are HWIO: canonical (out, in, kh, kw) transposed to (kh, kw, in, out).
  Groups > 1 run as grouped ``tf.nn.conv2d``.
- Dense: ``x @ kernel`` with kernel (in, out), the canonical (out, in) transposed.
- MaxPool: "SAME" where its windows equal PyTorch's (SAME max pooling ignores padded
  cells, as -inf padding does); otherwise padded with -inf by
  ``models.graph.pool_padding`` (which also reproduces ceil mode), then "VALID".
- AvgPool: zero padding (padded cells count, as PyTorch's default), a VALID average,
  and a constant correction where a ceil-mode window runs past the right padding
  (PyTorch shrinks the divisor there).
- Flatten: NHWC maps are transposed to NCHW first, so features are channel-major and
  the dense weight after it keeps its canonical row order.
- BatchNorm: ``FusedBatchNormV3`` with the layer's exact epsilon (the
  ``tf.nn.fused_batch_norm`` wrapper would raise eps below 1.001e-5 to 1.001e-5). In
  training it returns the batch mean and the UNBIASED batch variance, exactly what
  PyTorch blends into its running statistics; the trainer applies
  ``running = (1 - momentum) * running + momentum * batch`` with PyTorch's momentum
  (Keras would call ``1 - momentum`` its momentum). The forward pass returns those
  statistics instead of assigning them, so data-parallel replicas can be reduced first.
- Dropout: ``tf.nn.experimental.stateless_dropout``, seeded from (seed, step, layer,
  replica). The masks are as random as PyTorch's but not the same numbers.

Differences TensorFlow forces: none in the arithmetic above; dropout masks (RNG streams)
differ from every other framework's, and oneDNN/cuDNN kernels sum in their own order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from harness.models import layers as L
from harness.models.graph import (
    LayerShape,
    conv_output_size,
    infer,
    pool_geometry,
    pool_output_size,
    window,
)
from harness.models.init import is_buffer, state_keys
from harness.models.tree import Forward

# How a canonical array maps to the variable's layout: conv (out, in, kh, kw) <-> HWIO,
# dense (out, in) <-> (in, out); everything else is stored as it is.
_TO_TF = {"conv": (2, 3, 1, 0), "dense": (1, 0)}
_TO_CANONICAL = {"conv": (3, 2, 0, 1), "dense": (1, 0)}


def weight_kinds(network: L.Network) -> dict[str, str]:
    """Canonical key -> "conv", "dense" or "plain" (how its layout is translated)."""
    layers = {row.path: row.layer for row in infer(network)}
    kinds: dict[str, str] = {}
    for key, _ in state_keys(network):
        path, name = key.rsplit(".", 1)
        layer = layers[path]
        if name == "weight" and isinstance(layer, L.Conv2D):
            kinds[key] = "conv"
        elif name == "weight" and isinstance(layer, L.Dense):
            kinds[key] = "dense"
        else:
            kinds[key] = "plain"
    return kinds


def to_framework(array: np.ndarray, kind: str, dtype: Any = np.float32) -> np.ndarray:
    """A canonical array in the layout its TensorFlow variable uses."""
    axes = _TO_TF.get(kind)
    out = array if axes is None else np.transpose(array, axes)
    return np.ascontiguousarray(out, dtype=dtype)


def to_canonical(array: np.ndarray, kind: str, dtype: Any = np.float32) -> np.ndarray:
    """A variable's value back in the canonical layout of harness.models.init."""
    axes = _TO_CANONICAL.get(kind)
    out = array if axes is None else np.transpose(array, axes)
    return np.ascontiguousarray(out, dtype=dtype)


def _pad4(ph: tuple[int, int], pw: tuple[int, int]) -> list[list[int]]:
    return [[0, 0], list(ph), list(pw), [0, 0]]


def _conv_pads(size: int, kernel: int, stride: int, padding: int) -> tuple[int, int]:
    """(before, after) padding a convolution's windows actually touch (after <= before)."""
    out = conv_output_size(size, kernel, stride, padding)
    return padding, max(0, (out - 1) * stride + kernel - size - padding)


def _padding_mode(*axes: tuple[int, int, int, int], ceil: bool) -> str:
    """ "VALID" or "SAME" where TensorFlow's built-in padding gives exactly PyTorch's
    windows (same output size, same start offset), else "PAD" (pad explicitly).

    ``axes`` are (size, kernel, stride, padding); ``ceil``: a pool in ceil mode.
    Equal windows mean equal results: cells past the last window are never read.
    """
    valid = same = True
    for size, kernel, stride, padding in axes:
        out = pool_output_size(size, kernel, stride, padding, ceil)
        valid &= padding == 0 and out == (size - kernel) // stride + 1
        same_out = -(-size // stride)
        same_before = max((same_out - 1) * stride + kernel - size, 0) // 2
        same &= same_out == out and same_before == padding
    return "VALID" if valid else "SAME" if same else "PAD"


def _avg_correction(shape: LayerShape, layer: L.AvgPool) -> np.ndarray | None:
    """Factor (1, oh, ow, 1) turning a kernel-area average into PyTorch's, or None if 1."""
    geometry = pool_geometry(layer, *shape.in_shape[1:])
    factors = [
        k / np.asarray(divisor)
        for k, divisor in zip(geometry.kernel, geometry.divisors, strict=True)
    ]
    table = np.outer(*factors)
    if np.all(table == 1.0):
        return None
    return table.reshape(1, *table.shape, 1).astype(np.float32)


class TFNetwork:
    """A harness network as a function of tf.Variables (created by ``create_variables``).

    ``forward(x, training=...)`` takes NHWC images and returns (logits float32,
    {bn path: (batch mean, unbiased batch variance)}); the dict is empty in inference.
    """

    def __init__(self, network: L.Network, *, explicit_padding: bool = False) -> None:
        self.network = network
        # Convolutions whose padding TF's "SAME"/"VALID" cannot express: a padded
        # tf.nn.conv2d (explicit_padding, best on GPUs: cuDNN pads natively) or tf.pad
        # followed by a VALID convolution (far faster on CPUs, where oneDNN has no
        # explicit-padding backward kernel).
        self.explicit_padding = explicit_padding
        self.shapes = {row.path: row for row in infer(network)}
        self.kinds = weight_kinds(network)
        self.keys = list(self.kinds)
        self.trainable_keys = [k for k in self.keys if not is_buffer(k)]
        self.bn_paths = [p for p, r in self.shapes.items() if isinstance(r.layer, L.BatchNorm)]
        self.variables: dict[str, tf.Variable] = {}
        dropouts = [p for p, r in self.shapes.items() if isinstance(r.layer, L.Dropout)]
        self._dropout_index = {path: i for i, path in enumerate(dropouts)}

    def create_variables(self, state: dict[str, np.ndarray], dtype: Any = np.float32) -> None:
        """Variables from a canonical state dict; call under the device/strategy scope.
        (``dtype``: float32, the master weights of every precision; float64 only in the
        parity tests' float64 mode.)"""
        missing = [k for k in self.keys if k not in state]
        unexpected = [k for k in state if k not in self.kinds]
        if missing or unexpected:
            raise ValueError(
                f"weights do not match the network: missing {missing}, unexpected {unexpected}"
            )
        self.variables = {
            key: tf.Variable(
                to_framework(state[key], kind, dtype),
                trainable=not is_buffer(key),
                name=key.replace(".", "/"),
            )
            for key, kind in self.kinds.items()
        }

    def trainable(self) -> list[tf.Variable]:
        return [self.variables[k] for k in self.trainable_keys]

    def assign(self, state: dict[str, np.ndarray]) -> None:
        """Loads canonical weights into the existing variables (every key required)."""
        for key, kind in self.kinds.items():
            self.variables[key].assign(to_framework(state[key], kind))

    def forward(
        self,
        x: tf.Tensor,
        *,
        training: bool,
        seed: tf.Tensor | None = None,
        dtype: tf.DType = tf.float32,
    ) -> tuple[tf.Tensor, dict[str, tuple[tf.Tensor, tf.Tensor]]]:
        """Logits for NHWC ``x``; ``seed`` (int64 [2]) drives dropout in training."""
        run = _Run(self, training, seed, dtype)
        out = run.run(self.network, tf.cast(x, dtype))
        wide = tf.float64 if out.dtype == tf.float64 else tf.float32  # fp16/bf16: float32
        return tf.cast(out, wide), run.stats


class _Run(Forward[tf.Tensor]):
    """One trace of the forward pass: the walk's leaf and Concat rules, collecting BN
    statistics (a Residual is the walk's default, body + shortcut)."""

    def __init__(
        self, net: TFNetwork, training: bool, seed: tf.Tensor | None, dtype: tf.DType
    ) -> None:
        self.net = net
        self.training = training
        self.seed = seed
        self.dtype = dtype
        self.stats: dict[str, tuple[tf.Tensor, tf.Tensor]] = {}

    def var(self, path: str, name: str, cast: bool = True) -> tf.Tensor:
        value = self.net.variables[f"{path}.{name}"]
        return tf.cast(value, self.dtype) if cast else tf.convert_to_tensor(value)

    def concatenate(self, path: str, outputs: list[tf.Tensor]) -> tf.Tensor:
        return tf.concat(outputs, axis=-1)

    def layer(self, layer: L.Layer, path: str, x: tf.Tensor) -> tf.Tensor:
        handler: Callable[[Any, str, tf.Tensor], tf.Tensor] | None = _HANDLERS.get(type(layer))
        if handler is None:
            raise TypeError(f"no TensorFlow translation for {layer!r}")
        return handler(self, layer, path, x)

    # One method per layer type -----------------------------------------------------

    def conv(self, layer: L.Conv2D, path: str, x: tf.Tensor) -> tf.Tensor:
        _, h, w = self.net.shapes[path].in_shape
        (kh, kw), (sh, sw), (ph, pw) = window(layer)
        mode = _padding_mode((h, kh, sh, ph), (w, kw, sw, pw), ceil=False)
        weight = self.var(path, "weight")
        if mode == "PAD" and self.net.explicit_padding:  # symmetric: cuDNN's own padding
            out = tf.nn.conv2d(x, weight, [1, sh, sw, 1], _pad4((ph, ph), (pw, pw)))
        elif mode == "PAD":
            pads = _pad4(_conv_pads(h, kh, sh, ph), _conv_pads(w, kw, sw, pw))
            out = tf.nn.conv2d(tf.pad(x, pads), weight, [1, sh, sw, 1], "VALID")
        else:
            out = tf.nn.conv2d(x, weight, [1, sh, sw, 1], mode)
        return tf.nn.bias_add(out, self.var(path, "bias")) if layer.bias else out

    def batch_norm(self, layer: L.BatchNorm, path: str, x: tf.Tensor) -> tf.Tensor:
        scale, offset = self.var(path, "weight", False), self.var(path, "bias", False)
        if self.training:
            empty = tf.constant([], tf.float32)
            y, mean, var, *_ = tf.raw_ops.FusedBatchNormV3(
                x=x,
                scale=scale,
                offset=offset,
                mean=empty,
                variance=empty,
                epsilon=layer.eps,
                exponential_avg_factor=1.0,
                data_format="NHWC",
                is_training=True,
            )
            self.stats[path] = (mean, var)
            return y
        y, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x,
            scale=scale,
            offset=offset,
            mean=self.var(path, "running_mean", False),
            variance=self.var(path, "running_var", False),
            epsilon=layer.eps,
            data_format="NHWC",
            is_training=False,
        )
        return y

    def relu(self, layer: L.ReLU, path: str, x: tf.Tensor) -> tf.Tensor:
        return tf.nn.relu(x)

    def max_pool(self, layer: L.MaxPool, path: str, x: tf.Tensor) -> tf.Tensor:
        _, h, w = self.net.shapes[path].in_shape
        kernel, stride, (ph, pw), _, (pad_h, pad_w), _ = pool_geometry(layer, h, w)
        mode = _padding_mode(
            (h, kernel[0], stride[0], ph), (w, kernel[1], stride[1], pw), ceil=layer.ceil_mode
        )
        if mode != "PAD":  # SAME max pooling ignores its padding, as -inf padding does
            return tf.nn.max_pool2d(x, kernel, stride, mode)
        x = tf.pad(x, _pad4(pad_h, pad_w), constant_values=float("-inf"))
        return tf.nn.max_pool2d(x, kernel, stride, "VALID")

    def avg_pool(self, layer: L.AvgPool, path: str, x: tf.Tensor) -> tf.Tensor:
        _, h, w = self.net.shapes[path].in_shape
        kernel, stride, _, _, (pad_h, pad_w), _ = pool_geometry(layer, h, w)
        if any(pad_h + pad_w):
            x = tf.pad(x, _pad4(pad_h, pad_w))
        out = tf.nn.avg_pool2d(x, kernel, stride, "VALID")
        correction = _avg_correction(self.net.shapes[path], layer)
        return out if correction is None else out * tf.constant(correction, out.dtype)

    def global_avg_pool(self, layer: L.GlobalAvgPool, path: str, x: tf.Tensor) -> tf.Tensor:
        return tf.reduce_mean(x, axis=[1, 2], keepdims=True)

    def flatten(self, layer: L.Flatten, path: str, x: tf.Tensor) -> tf.Tensor:
        shape = self.net.shapes[path].in_shape
        if len(shape) == 3 and shape[1] * shape[2] > 1:
            x = tf.transpose(x, [0, 3, 1, 2])  # channel-major, as PyTorch flattens NCHW
        return tf.reshape(x, [-1, self.net.shapes[path].out_shape[0]])

    def dense(self, layer: L.Dense, path: str, x: tf.Tensor) -> tf.Tensor:
        out = tf.matmul(x, self.var(path, "weight"))
        return tf.nn.bias_add(out, self.var(path, "bias")) if layer.bias else out

    def dropout(self, layer: L.Dropout, path: str, x: tf.Tensor) -> tf.Tensor:
        if not self.training or layer.rate == 0:
            return x
        if self.seed is None:
            raise ValueError("a training forward pass through Dropout needs a seed")
        seed = tf.random.experimental.stateless_fold_in(self.seed, self.net._dropout_index[path])
        return tf.nn.experimental.stateless_dropout(x, layer.rate, seed=seed)


_HANDLERS: dict[type, Callable[..., tf.Tensor]] = {
    L.Conv2D: _Run.conv,
    L.BatchNorm: _Run.batch_norm,
    L.ReLU: _Run.relu,
    L.MaxPool: _Run.max_pool,
    L.AvgPool: _Run.avg_pool,
    L.GlobalAvgPool: _Run.global_avg_pool,
    L.Flatten: _Run.flatten,
    L.Dense: _Run.dense,
    L.Dropout: _Run.dropout,
}


def param_count(net: TFNetwork) -> int:
    """Trainable parameters of the created variables."""
    return int(sum(np.prod(v.shape) for v in net.trainable()))


def numpy_forward(
    network: L.Network,
    state: dict[str, np.ndarray],
    images: np.ndarray,
    *,
    training: bool = False,
    device: str = "/CPU:0",
    explicit_padding: bool = False,
) -> np.ndarray:
    """Logits (float32 NumPy) of ``network`` with canonical ``state`` for NCHW ``images``:
    the parity checks' entry point (``training``: batch statistics, dropout active)."""
    with tf.device(device):
        net = TFNetwork(network, explicit_padding=explicit_padding)
        net.create_variables(state)
        x = tf.constant(np.ascontiguousarray(np.transpose(images, (0, 2, 3, 1)), np.float32))
        seed = tf.constant([0, 0], tf.int64)
        logits, _ = net.forward(x, training=training, seed=seed)
    return logits.numpy()
