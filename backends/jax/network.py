"""Translate a harness.models network into a flax.linen module working on NHWC arrays.

The tree is descended by harness.models.tree (a Forward: leaf layers here, Residual
sums and Concat joins on channels). Every container is a Block of its own and every
submodule is named after its path segment, so the variables tree mirrors the
state-dict keys: "layer1.0.residual.body.conv1.weight" lives
at ``params["layer1"]["0"]["residual"]["body"]["conv1"]["kernel"]``. Conversions:

- conv weight (out, in // groups, kh, kw) <-> flax kernel (kh, kw, in // groups, out);
- dense weight (out, in) <-> flax kernel (in, out);
- batch norm weight/bias -> params scale/bias; running_mean/var -> batch_stats mean/var.

Differences the framework forces (everything else follows models.layers exactly):

- Flatten: NHWC flattens (H, W, C). Instead of transposing activations, the rows of the
  first Dense kernel after a Flatten of a spatial map are permuted on load and save, so
  the network computes the channel-major flatten of the reference at no runtime cost;
- BatchNorm: flax's momentum is 1 - PyTorch's. Flax updates the running variance with
  the biased batch variance (PyTorch: unbiased, n / (n - 1) larger) and computes the
  batch variance as E[x^2] - E[x]^2 in float32 (flax's fast variance); normalisation
  itself uses the biased variance in both;
- max pooling pads with -inf by explicit (before, after) amounts from graph.pool_padding
  (XLA has no ceil mode); average pooling sums zero-padded windows and divides by
  PyTorch's clipped window size, so count_include_pad and ceil mode match exactly;
- Dropout draws its masks from JAX's PRNG (a key per step, per device and per layer),
  so masks differ from PyTorch's; the rate and inverted scaling are the same.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from harness.models import layers as L
from harness.models.graph import infer, pool_geometry, window
from harness.models.tree import CONTAINERS, Forward

Variables = dict[str, Any]
# Batch-norm entries: canonical name -> (flax collection, flax name).
_BN_NAMES = {
    "weight": ("params", "scale"),
    "bias": ("params", "bias"),
    "running_mean": ("batch_stats", "mean"),
    "running_var": ("batch_stats", "var"),
}


def _avg_pool(layer: L.AvgPool, x: jax.Array) -> jax.Array:
    """PyTorch's avg_pool2d (count_include_pad=True, ceil-mode windows clipped)."""
    geometry = pool_geometry(layer, *x.shape[1:3])
    total = jax.lax.reduce_window(
        x,
        0.0,
        jax.lax.add,
        (1, *geometry.kernel, 1),
        (1, *geometry.stride, 1),
        ((0, 0), *geometry.pads, (0, 0)),
    )
    divisor = np.outer(*geometry.divisors).astype(np.float32)[None, :, :, None]
    return (total / divisor).astype(x.dtype)


def _leaf(layer: L.Layer, name: str, x: jax.Array, train: bool, dtype: Any) -> jax.Array:
    """Applies one leaf layer inside the calling compact module."""
    if isinstance(layer, L.Conv2D):
        kernel, strides, (ph, pw) = window(layer)
        return nn.Conv(
            layer.filters,
            kernel,
            strides=strides,
            padding=((ph, ph), (pw, pw)),
            use_bias=layer.bias,
            feature_group_count=layer.groups,
            dtype=dtype,
            name=name,
        )(x)
    if isinstance(layer, L.BatchNorm):
        return nn.BatchNorm(
            use_running_average=not train,
            momentum=1.0 - layer.momentum,
            epsilon=layer.eps,
            dtype=dtype,
            name=name,
        )(x)
    if isinstance(layer, L.ReLU):
        return nn.relu(x)
    if isinstance(layer, L.MaxPool):
        geometry = pool_geometry(layer, *x.shape[1:3])
        return nn.max_pool(x, geometry.kernel, geometry.stride, padding=geometry.pads)
    if isinstance(layer, L.AvgPool):
        return _avg_pool(layer, x)
    if isinstance(layer, L.GlobalAvgPool):
        return jnp.mean(x, axis=(1, 2), keepdims=True)
    if isinstance(layer, L.Flatten):
        return x.reshape(x.shape[0], -1)
    if isinstance(layer, L.Dense):
        return nn.Dense(layer.units, use_bias=layer.bias, dtype=dtype, name=name)(x)
    if isinstance(layer, L.Dropout):
        return nn.Dropout(layer.rate, deterministic=not train, name=name)(x)
    raise TypeError(f"no Flax translation for {layer!r}")


class Block(nn.Module):
    """One container of the network tree (the root Sequential included)."""

    node: L.Sequential | L.Residual | L.Concat
    dtype: Any = None  # computation dtype of convs, dense and batch norm; None: float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return _Scope(self.dtype, train).run(self.node, x)


class _Scope(Forward[jax.Array]):
    """The walk over one Block: its leaves applied in place, named by their last path
    segment; each child container a nested Block of that name."""

    def __init__(self, dtype: Any, train: bool) -> None:
        self.dtype, self.train = dtype, train

    def visit(self, child: L.Node, path: str):
        if isinstance(child, CONTAINERS):
            return lambda x: Block(child, self.dtype, name=path)(x, self.train)
        return super().visit(child, path)

    def layer(self, layer: L.Layer, path: str, x: jax.Array) -> jax.Array:
        return _leaf(layer, path, x, self.train, self.dtype)

    def concatenate(self, path: str, outputs: list[jax.Array]) -> jax.Array:
        return jnp.concatenate(outputs, axis=-1)


def build_module(network: L.Network, dtype: Any = None) -> Block:
    """A linen module computing ``network`` on NHWC float inputs; call with ``train=``."""
    return Block(network.body, dtype)


def variable_shapes(network: L.Network) -> Variables:
    """The module's variables as ShapeDtypeStructs (nothing is allocated)."""
    c, h, w = network.input_shape
    dummy = jax.ShapeDtypeStruct((1, h, w, c), jnp.float32)
    return jax.eval_shape(build_module(network).init, jax.random.key(0), dummy)


def param_count(network: L.Network) -> int:
    """Trainable parameters of the Flax module (the ``params`` collection)."""
    return sum(
        int(np.prod(leaf.shape))
        for leaf in jax.tree_util.tree_leaves(variable_shapes(network)["params"])
    )


def _dense_after_flatten(network: L.Network) -> dict[str, tuple[int, int, int]]:
    """Dense paths fed by a Flatten of a (C, H, W) map with H * W > 1, with that shape."""
    found: dict[str, tuple[int, int, int]] = {}
    pending: tuple[int, ...] | None = None
    for row in infer(network):
        if isinstance(row.layer, L.Flatten):
            pending = row.in_shape if len(row.in_shape) == 3 else None
        elif isinstance(row.layer, L.Dense):
            if pending is not None and pending[1] * pending[2] > 1:
                found[row.path] = pending  # type: ignore[assignment]
            pending = None
    return found


def _split(key: str) -> tuple[tuple[str, ...], str]:
    path, name = key.rsplit(".", 1)
    return tuple(path.split(".")), name


def _to_flax(value: np.ndarray, layer: L.Layer, name: str, flat: tuple | None):
    """(collection, flax name, array) for one canonical entry."""
    if isinstance(layer, L.Conv2D):
        return (
            "params",
            "kernel" if name == "weight" else "bias",
            (value.transpose(2, 3, 1, 0) if name == "weight" else value),
        )
    if isinstance(layer, L.Dense):
        if name != "weight":
            return "params", "bias", value
        if flat is not None:  # rows in (H, W, C) order
            c, h, w = flat
            return (
                "params",
                "kernel",
                value.reshape(-1, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, -1),
            )
        return "params", "kernel", value.T
    collection, flax_name = _BN_NAMES[name]
    return collection, flax_name, value


def _entries(network: L.Network):
    """(key, path parts, entry name, layer, flatten shape or None) of every state entry."""
    from harness.models import state_keys

    layers = {row.path: row.layer for row in infer(network)}
    flats = _dense_after_flatten(network)
    for key, _ in state_keys(network):
        path, name = _split(key)
        dotted = ".".join(path)
        yield key, path, name, layers[dotted], flats.get(dotted)


def to_variables(network: L.Network, state: dict[str, np.ndarray]) -> Variables:
    """Canonical state dict -> flax variables (numpy leaves); every entry must be given."""
    expected = variable_shapes(network)
    out: Variables = {name: {} for name in expected}
    seen = set()
    for key, path, name, layer, flat in _entries(network):
        if key not in state:
            raise ValueError(f"weights do not match the network: missing {key!r}")
        collection, flax_name, value = _to_flax(np.asarray(state[key]), layer, name, flat)
        node = out[collection]
        for part in path:
            node = node.setdefault(part, {})
        node[flax_name] = np.ascontiguousarray(value, dtype=np.float32)
        seen.add(key)
    unexpected = sorted(set(state) - seen)
    if unexpected:
        raise ValueError(f"weights do not match the network: unexpected {unexpected}")
    want = jax.tree_util.tree_map(lambda s: tuple(s.shape), expected)
    got = jax.tree_util.tree_map(np.shape, out)
    if want != got:
        raise ValueError("weights do not match the network: shapes differ from the module's")
    return out


def canonical_state(
    network: L.Network, variables: Variables, dtype: Any = np.float32
) -> dict[str, np.ndarray]:
    """Flax variables -> canonical state dict (numpy of ``dtype``, canonical layouts)."""
    state: dict[str, np.ndarray] = {}
    for key, path, name, layer, flat in _entries(network):
        if isinstance(layer, (L.Conv2D, L.Dense)):
            collection, flax_name = "params", "kernel" if name == "weight" else "bias"
        else:
            collection, flax_name = _BN_NAMES[name]
        node = variables[collection]
        for part in path:
            node = node[part]
        value = np.asarray(node[flax_name], dtype=dtype)
        if name == "weight" and isinstance(layer, L.Conv2D):
            value = value.transpose(3, 2, 0, 1)
        elif name == "weight" and isinstance(layer, L.Dense):
            if flat is not None:
                c, h, w = flat
                value = value.reshape(h, w, c, -1).transpose(3, 2, 0, 1).reshape(-1, c * h * w)
            else:
                value = value.T
        state[key] = np.ascontiguousarray(value)
    return state


def numpy_forward(
    network: L.Network,
    state: dict[str, np.ndarray],
    images: np.ndarray,
    *,
    training: bool = False,
    device: Any = None,
) -> np.ndarray:
    """Logits (float32 NumPy) of ``network`` with canonical ``state`` for NCHW ``images``:
    the parity checks' entry point (``training``: batch statistics; dropout is off, as
    the parity checks have no dropout key: pass a network without dropout)."""
    module = build_module(network)
    variables = jax.device_put(to_variables(network, state), device)
    x = jax.device_put(np.ascontiguousarray(np.transpose(images, (0, 2, 3, 1)), np.float32), device)
    if training:
        run = jax.jit(lambda v, x: module.apply(v, x, train=True, mutable=["batch_stats"])[0])
    else:
        run = jax.jit(lambda v, x: module.apply(v, x, train=False))
    return np.asarray(run(variables, x), dtype=np.float32)
