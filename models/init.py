"""Initial weights drawn once in NumPy, so every framework starts from the same numbers.

``init_weights`` returns a flat dict keyed like a PyTorch state_dict:

- Conv2D: "<path>.weight" (out, in // groups, kh, kw) and "<path>.bias" (out,) if any;
- Dense: "<path>.weight" (out, in) and "<path>.bias" (out,) if any;
- BatchNorm: "<path>.weight" (gamma = 1), "<path>.bias" (beta = 0),
  "<path>.running_mean" (0) and "<path>.running_var" (1), all (channels,).

PyTorch's BatchNorm also keeps an integer ``num_batches_tracked`` buffer; it is not
part of these dicts (load them into torch with ``strict=False`` or add it).

All arrays are float32. One ``numpy.random.Generator(PCG64(seed))`` draws every random
tensor in walk order (each layer's weight before its bias), so the same network and seed
always give the same arrays. Fans follow torch's ``_calculate_fan_in_and_fan_out``:
fan_in = in // groups * kh * kw and fan_out = out * kh * kw for convolutions,
fan_in = in and fan_out = out for dense layers.
"""

from __future__ import annotations

import math

import numpy as np

from .graph import infer
from .layers import BatchNorm, Conv2D, Dense, Init, Network, pair

BUFFERS = ("running_mean", "running_var")


def is_buffer(key: str) -> bool:
    """True for running statistics, which are state but not trainable parameters."""
    return key.rsplit(".", 1)[-1] in BUFFERS


def state_keys(network: Network) -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) of every entry of ``init_weights(network, seed)``, in the same order."""
    keys: list[tuple[str, tuple[int, ...]]] = []
    for row in infer(network):
        layer, path = row.layer, row.path
        if isinstance(layer, Conv2D):
            kh, kw = pair(layer.kernel)
            keys.append(
                (f"{path}.weight", (layer.filters, row.in_shape[0] // layer.groups, kh, kw))
            )
            if layer.bias:
                keys.append((f"{path}.bias", (layer.filters,)))
        elif isinstance(layer, Dense):
            keys.append((f"{path}.weight", (layer.units, row.in_shape[0])))
            if layer.bias:
                keys.append((f"{path}.bias", (layer.units,)))
        elif isinstance(layer, BatchNorm):
            channels = (row.in_shape[0],)
            keys += [
                (f"{path}.{name}", channels)
                for name in ("weight", "bias", "running_mean", "running_var")
            ]
    return keys


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of canonical layout, as torch computes them."""
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _uniform(rng: np.random.Generator, shape: tuple[int, ...], bound: float) -> np.ndarray:
    out = rng.random(shape, dtype=np.float32)
    out *= np.float32(2 * bound)
    out -= np.float32(bound)
    return out


def _normal(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    out = rng.standard_normal(shape, dtype=np.float32)
    out *= np.float32(std)
    return out


def _trunc_normal(
    rng: np.random.Generator, shape: tuple[int, ...], std: float, low: float, high: float
) -> np.ndarray:
    """N(0, std^2) restricted to [low, high] (absolute bounds, as torch's trunc_normal_)."""
    out = _normal(rng, shape, std)
    bad = (out < low) | (out > high)
    while bad.any():
        out[bad] = _normal(rng, (int(bad.sum()),), std)
        bad = (out < low) | (out > high)
    return out


def draw_weight(rng: np.random.Generator, init: Init, shape: tuple[int, ...]) -> np.ndarray:
    """One weight tensor of canonical layout drawn by the named scheme."""
    fan_in, fan_out = fans(shape)
    if init == "torch_default":
        return _uniform(rng, shape, 1 / math.sqrt(fan_in))
    if init == "he_normal_fan_out":
        return _normal(rng, shape, math.sqrt(2 / fan_out))
    if init == "normal_0.01":
        return _normal(rng, shape, 0.01)
    if init == "trunc_normal_0.01":
        return _trunc_normal(rng, shape, 0.01, -2.0, 2.0)
    if init == "caffe_xavier":
        return _uniform(rng, shape, math.sqrt(3 / fan_in))
    raise ValueError(f"unknown init scheme {init!r}")


def draw_bias(rng: np.random.Generator, init: Init, weight_shape: tuple[int, ...]) -> np.ndarray:
    """The bias that goes with a weight: torch_default draws it, every other scheme zeroes."""
    if init == "torch_default":
        return _uniform(rng, weight_shape[:1], 1 / math.sqrt(fans(weight_shape)[0]))
    return np.zeros(weight_shape[:1], dtype=np.float32)


def init_weights(network: Network, seed: int) -> dict[str, np.ndarray]:
    """Every parameter and buffer of ``network``, drawn deterministically from ``seed``."""
    rng = np.random.Generator(np.random.PCG64(seed))
    layers = {row.path: row.layer for row in infer(network)}
    state: dict[str, np.ndarray] = {}
    for key, shape in state_keys(network):
        path, name = key.rsplit(".", 1)
        layer = layers[path]
        if isinstance(layer, BatchNorm):
            fill = 1.0 if name in ("weight", "running_var") else 0.0
            state[key] = np.full(shape, fill, dtype=np.float32)
        elif isinstance(layer, (Conv2D, Dense)):
            if name == "weight":
                state[key] = draw_weight(rng, layer.init, shape)
            else:
                state[key] = draw_bias(rng, layer.init, state[f"{path}.weight"].shape)
    return state
