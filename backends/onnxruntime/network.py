"""Translate a harness.models network into an ONNX graph, with the ``onnx`` package only.

The tree is descended by harness.models.tree (``Forward``: this module translates leaf
layers into ONNX nodes and says what a Residual and a Concat become); the value carried
through the walk is the name of the tensor computed so far. Canonical weights
(harness.models.init: "<path>.weight", "<path>.bias", "<path>.running_mean",
"<path>.running_var", PyTorch's layouts, which are ONNX's) become initializers under
their canonical names, so an exported file names its weights as every backend does.

- Input ``images`` (batch, C, H, W) float32 and output ``logits`` (batch, classes): the
  batch dimension is symbolic (``batch``), so one file serves every batch size.
- Inference mode: BatchNormalization with the running statistics; Dropout is left out
  (the identity). ``training=True`` (parity tests only) normalises with the batch's
  mean and biased variance, written out with ReduceMean, as the NumPy reference does.
- Pools: ceil mode and PyTorch's rule for a last window starting in the padding are
  written as a floor-mode pool with explicit (before, after) pads from
  ``models.graph.pool_geometry`` (max pooling ignores pads); average pooling counts
  padded cells (PyTorch's count_include_pad) and a ceil-mode window clipped at the right
  padding is rescaled by PyTorch's divisor.
- Opset 17 (ONNX Runtime 1.12 and later, TensorRT 8.5 and later) with IR version 8, so
  the file loads in older onnxruntime-gpu builds too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from harness.models import layers as L
from harness.models.graph import LayerShape, infer, pool_geometry, window
from harness.models.init import state_keys
from harness.models.tree import Forward

OPSET = 17
IR_VERSION = 8  # the IR version of opset 17 (onnx.helper.VERSION_TABLE)
INPUT, OUTPUT, BATCH = "images", "logits", "batch"
PRODUCER = "harness"


class _Graph(Forward[str]):
    """Leaf layers -> ONNX nodes; the walk carries tensor names."""

    def __init__(
        self, shapes: Mapping[str, LayerShape], weights: Mapping[str, np.ndarray], training: bool
    ) -> None:
        self.shapes, self.weights, self.training = shapes, weights, training
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, onnx.TensorProto] = {}
        self.used: set[str] = set()
        self.count = 0

    # Helpers ------------------------------------------------------------------------

    def name(self, path: str, what: str) -> str:
        self.count += 1
        return f"{path or 'root'}/{what}_{self.count}"

    def node(self, op: str, inputs: list[str], path: str, **attrs: Any) -> str:
        out = self.name(path, op)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def weight(self, path: str, name: str) -> str:
        key = f"{path}.{name}" if path else name
        if key not in self.weights:
            raise KeyError(f"weight {key!r} is missing from the state dict")
        if key not in self.initializers:
            value = np.ascontiguousarray(self.weights[key], dtype=np.float32)
            self.initializers[key] = numpy_helper.from_array(value, key)
        self.used.add(key)
        return key

    def constant(self, key: str, value: np.ndarray) -> str:
        if key not in self.initializers:
            self.initializers[key] = numpy_helper.from_array(np.asarray(value), key)
        return key

    # The walk's rules -------------------------------------------------------------------

    def add(self, path: str, body: str, shortcut: str) -> str:
        return self.node("Add", [body, shortcut], path)

    def concatenate(self, path: str, outputs: list[str]) -> str:
        return self.node("Concat", outputs, path, axis=1)

    def layer(self, layer: L.Layer, path: str, x: str) -> str:
        if isinstance(layer, L.Conv2D):
            (kh, kw), (sh, sw), (ph, pw) = window(layer)
            inputs = [x, self.weight(path, "weight")]
            if layer.bias:
                inputs.append(self.weight(path, "bias"))
            return self.node(
                "Conv",
                inputs,
                path,
                kernel_shape=[kh, kw],
                strides=[sh, sw],
                pads=[ph, pw, ph, pw],
                group=layer.groups,
                dilations=[1, 1],
            )
        if isinstance(layer, L.BatchNorm):
            return self.batch_norm(layer, path, x)
        if isinstance(layer, L.ReLU):
            return self.node("Relu", [x], path)
        if isinstance(layer, (L.MaxPool, L.AvgPool)):
            return self.pool(layer, path, x)
        if isinstance(layer, L.GlobalAvgPool):
            return self.node("GlobalAveragePool", [x], path)
        if isinstance(layer, L.Flatten):
            return self.node("Flatten", [x], path, axis=1)
        if isinstance(layer, L.Dense):
            inputs = [x, self.weight(path, "weight")]
            if layer.bias:
                inputs.append(self.weight(path, "bias"))
            return self.node("Gemm", inputs, path, transB=1)
        if isinstance(layer, L.Dropout):
            return x  # inference: the identity
        raise TypeError(f"{path or '<root>'}: no ONNX translation for {layer!r}")

    def batch_norm(self, layer: L.BatchNorm, path: str, x: str) -> str:
        scale, bias = self.weight(path, "weight"), self.weight(path, "bias")
        if not self.training:
            mean, var = self.weight(path, "running_mean"), self.weight(path, "running_var")
            return self.node(
                "BatchNormalization", [x, scale, bias, mean, var], path, epsilon=layer.eps
            )
        # Batch statistics (the reference's training-mode forward): mean and biased
        # variance over (N, H, W), written out; running statistics are not read.
        axes = [0, 2, 3]
        mean = self.node("ReduceMean", [x], path, axes=axes, keepdims=1)
        centred = self.node("Sub", [x, mean], path)
        var = self.node(
            "ReduceMean", [self.node("Mul", [centred, centred], path)], path, axes=axes, keepdims=1
        )
        eps = self.constant(f"{path}/eps", np.asarray(layer.eps, np.float32))
        std = self.node("Sqrt", [self.node("Add", [var, eps], path)], path)
        channel = self.constant("channel_axes", np.asarray([1, 2], np.int64))  # (C,) -> (C,1,1)
        gamma = self.node("Unsqueeze", [scale, channel], path)
        beta = self.node("Unsqueeze", [bias, channel], path)
        normal = self.node("Div", [centred, std], path)
        return self.node("Add", [self.node("Mul", [normal, gamma], path), beta], path)

    def pool(self, layer: L.MaxPool | L.AvgPool, path: str, x: str) -> str:
        _, height, width = self.shapes[path].in_shape
        geometry = pool_geometry(layer, height, width)
        (top, bottom), (left, right) = geometry.pads
        attrs: dict[str, Any] = {
            "kernel_shape": list(geometry.kernel),
            "strides": list(geometry.stride),
            "pads": [top, left, bottom, right],
        }
        if isinstance(layer, L.MaxPool):
            return self.node("MaxPool", [x], path, **attrs)
        # Every window lies inside the explicit pads, so ONNX divides by the whole kernel;
        # PyTorch's divisor is smaller where a ceil-mode window is clipped at its padding.
        out = self.node("AveragePool", [x], path, count_include_pad=1, **attrs)
        kh, kw = geometry.kernel
        rows, cols = (np.asarray(d, np.float64) for d in geometry.divisors)
        factor = (kh * kw) / np.outer(rows, cols)
        if np.all(factor == 1.0):
            return out
        key = self.constant(f"{path}/divisor", factor.astype(np.float32)[None, None])
        return self.node("Mul", [out, key], path)


def build_model(
    network: L.Network,
    weights: Mapping[str, np.ndarray],
    *,
    training: bool = False,
    doc: str = "",
) -> onnx.ModelProto:
    """``network`` as an ONNX model with ``weights`` (a canonical state dict) as its
    initializers. Every weight the network needs must be given and no other (ValueError
    naming them); shapes must be the canonical ones."""
    expected = dict(state_keys(network))
    needed = {k for k in expected if not (training and k.rsplit(".", 1)[-1].startswith("running"))}
    missing = sorted(needed - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = [
        f"{k} {tuple(np.shape(weights[k]))} (want {expected[k]})"
        for k in sorted(needed & set(weights))
        if tuple(np.shape(weights[k])) != expected[k]
    ]
    if missing or unexpected or wrong:
        raise ValueError(
            f"weights do not match {network.name} {'x'.join(map(str, network.input_shape))}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shapes {wrong[:5]}"
        )
    shapes = {row.path: row for row in infer(network)}
    graph = _Graph(shapes, weights, training)
    logits = graph.run(network, INPUT)
    if not graph.nodes or graph.nodes[-1].output[0] != logits:
        logits = graph.node("Identity", [logits], "output")
    graph.nodes[-1].output[0] = OUTPUT  # the last node writes the graph's output
    classes = network.num_classes
    onnx_graph = helper.make_graph(
        graph.nodes,
        f"{network.name}-{'x'.join(map(str, network.input_shape))}",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [BATCH, *network.input_shape])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [BATCH, classes])],
        initializer=list(graph.initializers.values()),
    )
    model = helper.make_model(
        onnx_graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER,
        doc_string=doc or f"harness.models {network.name} ({network.variant})",
    )
    model.ir_version = IR_VERSION
    return model


def numpy_forward(
    network: L.Network,
    state: dict[str, np.ndarray],
    images: np.ndarray,
    *,
    training: bool = False,
    provider: str = "cpu",
) -> np.ndarray:
    """Logits (float32 NumPy) of ``network`` with canonical ``state`` for NCHW ``images``,
    computed by an ONNX Runtime session on ``provider``: the parity checks' entry point
    (``training``: batch statistics; dropout is always off)."""
    from .session import OrtSession

    model = build_model(network, state, training=training)
    session = OrtSession(model.SerializeToString(), provider=provider, io_binding=False)
    return session.run(np.ascontiguousarray(images, np.float32))


# A user's ONNX model ----------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInput:
    """The one image input of an ONNX model: its name and per-image (C, H, W) shape."""

    name: str
    shape: tuple[int, int, int]
    batch: int | str | None  # the batch dimension as the file gives it (a name: dynamic)
    output: str


class OnnxFileError(ValueError):
    """An ONNX file that cannot be benchmarked: missing, corrupt, or an unsupported input."""


def load_model(path: str | Path, *, weights: bool = True) -> onnx.ModelProto:
    """The model in ``path`` (OnnxFileError for a missing or unreadable file, one line);
    ``weights=False`` leaves external data unread (enough for its shapes)."""
    path = Path(path)
    if not path.is_file():
        raise OnnxFileError(f"{path}: no such ONNX file")
    try:
        return onnx.load(str(path), load_external_data=weights)
    except Exception as exc:  # protobuf's DecodeError and friends
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OnnxFileError(f"{path}: not a readable ONNX model ({why})") from None


def read_input(
    model: onnx.ModelProto | str | Path, given: tuple[int, int, int] | None = None
) -> ModelInput:
    """The image input of ``model`` (a ModelProto or a file): one float input of rank 4
    (N, C, H, W) that is not an initializer, and one output. Its (C, H, W) comes from
    the graph; dimensions the graph leaves symbolic must be ``given`` (and given ones must
    agree with fixed ones). OnnxFileError (one line) otherwise."""
    if not isinstance(model, onnx.ModelProto):
        model = load_model(model, weights=False)
    graph = model.graph
    constants = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in constants]
    where = graph.name or "model"
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise OnnxFileError(f"{where}: needs exactly one image input, has {len(inputs)}: {names}")
    if len(graph.output) < 1:
        raise OnnxFileError(f"{where}: has no output")
    tensor = inputs[0].type.tensor_type
    name = inputs[0].name
    if not inputs[0].type.HasField("tensor_type") or tensor.elem_type != TensorProto.FLOAT:
        kind = TensorProto.DataType.Name(tensor.elem_type) if tensor.elem_type else "not a tensor"
        raise OnnxFileError(f"{where}: input {name!r} is {kind}; only float32 images are supported")
    dims: list[int | str | None] = [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim
    ]
    if not tensor.HasField("shape") and given is not None:
        dims = [None, None, None, None]
    if len(dims) != 4:
        raise OnnxFileError(
            f"{where}: input {name!r} has rank {len(dims)}; only (N, C, H, W) images are supported"
        )
    shape: list[int] = []
    for axis, (dim, want) in enumerate(zip(dims[1:], given or (None, None, None), strict=True)):
        fixed = dim if isinstance(dim, int) and dim > 0 else None
        if fixed is not None and want is not None and fixed != want:
            raise OnnxFileError(
                f"{where}: input {name!r} has {'CHW'[axis]}={fixed}, not the {want} given"
            )
        value = fixed or want
        if value is None:
            raise OnnxFileError(
                f"{where}: input {name!r} dimension {'CHW'[axis]} is {dim or 'unknown'}; "
                "give the input shape (C,H,W)"
            )
        if value < 1:
            raise OnnxFileError(f"{where}: input {name!r} has a non-positive dimension {value}")
        shape.append(value)
    batch = dims[0] if dims[0] not in (0, None) else None
    return ModelInput(name, (shape[0], shape[1], shape[2]), batch, graph.output[0].name)
