"""NumPy layers with forward and backward passes, and a model built from harness.models.

Arrays are NCHW. Each layer keeps what its backward pass needs from the last forward
pass, so ``backward`` must follow the ``forward`` it differentiates.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from harness.models import layers as L
from harness.models.graph import pool_geometry
from harness.models.tree import Fold

SUPPORTED = "Conv2D (groups=1), MaxPool, ReLU, Flatten, Dense and Dropout"


class Layer:
    """A layer without parameters; parameterised ones fill ``params`` and ``grads``."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}  # "weight"/"bias" in canonical layout
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Conv(Layer):
    """Convolution as one matrix product over im2col columns."""

    def __init__(self, spec: L.Conv2D, weight: np.ndarray, bias: np.ndarray | None) -> None:
        super().__init__()
        self.params["weight"] = weight
        if bias is not None:
            self.params["bias"] = bias
        self.stride, self.pad = L.pair(spec.stride), L.pair(spec.padding)

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        w = self.params["weight"]
        (ph, pw), (sh, sw) = self.pad, self.stride
        self.x_shape = x.shape
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        win = sliding_window_view(xp, w.shape[2:], axis=(2, 3))[:, :, ::sh, ::sw]
        n, _, oh, ow = win.shape[:4]
        self.cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, -1)
        out = self.cols @ w.reshape(len(w), -1).T
        if "bias" in self.params:
            out += self.params["bias"]
        return out.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        w = self.params["weight"]
        o, c, kh, kw = w.shape
        n, _, oh, ow = grad.shape
        g = grad.transpose(0, 2, 3, 1).reshape(-1, o)
        self.grads["weight"] = (g.T @ self.cols).reshape(w.shape)
        if "bias" in self.params:
            self.grads["bias"] = g.sum(axis=0)
        dcols = (g @ w.reshape(o, -1)).reshape(n, oh, ow, c, kh, kw)
        (ph, pw), (sh, sw) = self.pad, self.stride
        _, _, h, wd = self.x_shape
        dx = np.zeros((n, c, h + 2 * ph, wd + 2 * pw), dtype=grad.dtype)
        for i in range(kh):
            for j in range(kw):
                dx[:, :, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw] += dcols[
                    ..., i, j
                ].transpose(0, 3, 1, 2)
        return dx[:, :, ph : ph + h, pw : pw + wd]


class MaxPool(Layer):
    """Max pooling with -inf padding and ceil mode; the gradient goes to the first maximum."""

    def __init__(self, spec: L.MaxPool) -> None:
        super().__init__()
        self.spec = spec

    def _offsets(self, out: tuple[int, ...]):
        (kh, kw), (sh, sw) = self.geometry.kernel, self.geometry.stride
        for i in range(kh):
            for j in range(kw):
                yield (
                    slice(i, i + sh * (out[0] - 1) + 1, sh),
                    slice(j, j + sw * (out[1] - 1) + 1, sw),
                )

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        n, c, h, w = self.x_shape = x.shape
        self.geometry = pool_geometry(self.spec, h, w)
        out = self.geometry.out
        # Padded enough after the input for ceil-mode windows that run past it.
        xp = np.pad(x, ((0, 0), (0, 0), *self.geometry.pads), constant_values=-np.inf)
        best = np.full((n, c, *out), -np.inf, dtype=x.dtype)
        self.arg = np.zeros(best.shape, dtype=np.int32)
        for index, (rows, cols) in enumerate(self._offsets(out)):
            window = xp[:, :, rows, cols]
            better = window > best  # strictly: ties keep the first offset, as torch does
            best[better] = window[better]
            self.arg[better] = index
        self.padded_shape = xp.shape
        return best

    def backward(self, grad: np.ndarray) -> np.ndarray:
        dx = np.zeros(self.padded_shape, dtype=grad.dtype)
        for index, (rows, cols) in enumerate(self._offsets(grad.shape[2:])):
            dx[:, :, rows, cols] += np.where(self.arg == index, grad, 0)
        (ph, pw), (_, _, h, w) = self.geometry.padding, self.x_shape
        return dx[:, :, ph : ph + h, pw : pw + w]


class ReLU(Layer):
    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        self.mask = x > 0
        return np.where(self.mask, x, 0)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return np.where(self.mask, grad, 0)


class Flatten(Layer):
    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        self.shape = x.shape
        return x.reshape(len(x), -1)  # NCHW: channel-major, as the harness wants

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return grad.reshape(self.shape)


class Dense(Layer):
    def __init__(self, weight: np.ndarray, bias: np.ndarray | None) -> None:
        super().__init__()
        self.params["weight"] = weight
        if bias is not None:
            self.params["bias"] = bias

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        self.x = x
        out = x @ self.params["weight"].T
        return out + self.params["bias"] if "bias" in self.params else out

    def backward(self, grad: np.ndarray) -> np.ndarray:
        self.grads["weight"] = grad.T @ self.x
        if "bias" in self.params:
            self.grads["bias"] = grad.sum(axis=0)
        return grad @ self.params["weight"]


class Dropout(Layer):
    """Inverted dropout: in training, keep with probability 1 - rate and scale by 1/(1 - rate)."""

    def __init__(self, rate: float, rng: np.random.Generator) -> None:
        super().__init__()
        self.rate, self.rng = rate, rng

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        if not train or self.rate == 0:
            self.mask = None
            return x
        keep = self.rng.random(x.shape) >= self.rate
        self.mask = keep.astype(x.dtype) / x.dtype.type(1 - self.rate)
        return x * self.mask

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return grad if self.mask is None else grad * self.mask


class Model:
    """A harness.models network of plain Sequential containers, as a list of layers."""

    def __init__(
        self,
        network: L.Network,
        weights: dict[str, np.ndarray],
        *,
        dtype: type = np.float32,
        seed: int = 0,
    ) -> None:
        self.dtype = np.dtype(dtype)
        self.layers: list[tuple[str, Layer]] = _Translate(
            network.name, weights, self.dtype, np.random.default_rng(seed)
        ).fold(network)

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        x = np.asarray(x, dtype=self.dtype)
        for _, layer in self.layers:
            x = layer.forward(x, train)
        return x

    def backward(self, grad: np.ndarray) -> np.ndarray:
        """Fills every layer's ``grads``; returns the gradient of the input."""
        for _, layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad

    def parameters(self):
        """(canonical key, parameter, gradient of the last backward) for every parameter."""
        for path, layer in self.layers:
            for name, value in layer.params.items():
                yield f"{path}.{name}", value, layer.grads.get(name)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {key: value.astype(np.float32) for key, value, _ in self.parameters()}


class _Translate(Fold[list[tuple[str, Layer]]]):
    """The walk's rules for this backend: leaves become layers, a Sequential their list.

    Raises ValueError naming the first layer or container this backend cannot train.
    """

    def __init__(
        self, model: str, weights: dict[str, np.ndarray], dtype: np.dtype, rng: np.random.Generator
    ) -> None:
        self.model, self.weights, self.dtype, self.rng = model, weights, dtype, rng

    def visit(self, child: L.Node, path: str) -> list[tuple[str, Layer]]:
        if isinstance(child, (L.Residual, L.Concat)):  # refused before their children
            raise self._unsupported(child, path)
        return super().visit(child, path)

    def sequential(self, node, path, parts):
        return [row for _, part in parts for row in part]

    def leaf(self, spec: L.Layer, path: str) -> list[tuple[str, Layer]]:
        param = {
            name: np.array(self.weights[f"{path}.{name}"], dtype=self.dtype)
            for name in ("weight", "bias")
            if f"{path}.{name}" in self.weights
        }
        if isinstance(spec, L.Conv2D) and spec.groups == 1:
            layer: Layer = Conv(spec, param["weight"], param.get("bias"))
        elif isinstance(spec, L.Dense):
            layer = Dense(param["weight"], param.get("bias"))
        elif isinstance(spec, L.MaxPool):
            layer = MaxPool(spec)
        elif isinstance(spec, L.Dropout):
            layer = Dropout(spec.rate, self.rng)
        elif isinstance(spec, (L.ReLU, L.Flatten)):
            layer = {L.ReLU: ReLU, L.Flatten: Flatten}[type(spec)]()
        else:
            raise self._unsupported(spec, path)
        return [(path, layer)]

    def _unsupported(self, node: L.Node, path: str) -> ValueError:
        what = type(node).__name__
        if isinstance(node, L.Conv2D):
            what = f"Conv2D with groups={node.groups}"
        return ValueError(
            f"the numpy backend cannot train {self.model}: {path or '<root>'} is {what}; it "
            f"supports {SUPPORTED} in plain Sequential networks"
        )


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image losses and d(sum of losses)/d(logits)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(labels))
    grad = np.exp(log_probs)
    grad[rows, labels] -= 1
    return -log_probs[rows, labels], grad
