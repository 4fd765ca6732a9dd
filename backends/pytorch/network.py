"""Translate a harness.models network into torch.nn modules.

Module names follow the weight paths of harness.models.graph.walk, so the module's
``state_dict`` keys are the canonical keys of harness.models.init (PyTorch's layouts
are the canonical ones; only the ``num_batches_tracked`` counters are extra).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from harness.models import layers as L
from harness.models.graph import LayerShape, infer


class Residual(nn.Module):
    def __init__(self, body: nn.Module, shortcut: nn.Module | None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.body(x) + identity


class Concat(nn.Module):
    def __init__(self, branches: list[nn.Module]) -> None:
        super().__init__()
        for index, branch in enumerate(branches):
            self.add_module(str(index), branch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.children()], dim=1)


def _leaf(layer: L.Layer, shape: LayerShape) -> nn.Module:
    if isinstance(layer, L.Conv2D):
        return nn.Conv2d(
            shape.in_shape[0],
            layer.filters,
            L.pair(layer.kernel),
            stride=L.pair(layer.stride),
            padding=L.pair(layer.padding),
            bias=layer.bias,
            groups=layer.groups,
        )
    if isinstance(layer, L.BatchNorm):
        channels = shape.in_shape[0]
        norm = nn.BatchNorm2d if len(shape.in_shape) == 3 else nn.BatchNorm1d
        return norm(channels, eps=layer.eps, momentum=layer.momentum)
    if isinstance(layer, L.ReLU):
        return nn.ReLU(inplace=True)
    if isinstance(layer, L.MaxPool):
        stride = layer.kernel if layer.stride is None else layer.stride
        return nn.MaxPool2d(layer.kernel, stride, layer.padding, ceil_mode=layer.ceil_mode)
    if isinstance(layer, L.AvgPool):
        stride = layer.kernel if layer.stride is None else layer.stride
        return nn.AvgPool2d(layer.kernel, stride, layer.padding, ceil_mode=layer.ceil_mode)
    if isinstance(layer, L.GlobalAvgPool):
        return nn.AdaptiveAvgPool2d(1)
    if isinstance(layer, L.Flatten):
        return nn.Flatten()
    if isinstance(layer, L.Dense):
        return nn.Linear(shape.in_shape[0], layer.units, bias=layer.bias)
    if isinstance(layer, L.Dropout):
        return nn.Dropout(layer.rate)
    raise TypeError(f"no PyTorch translation for {layer!r}")


def _build(node: L.Node, prefix: str, shapes: dict[str, LayerShape]) -> nn.Module:
    def join(name: str) -> str:
        return f"{prefix}.{name}" if prefix else name

    if isinstance(node, L.Sequential):
        children = OrderedDict(
            (name, _build(child, join(name), shapes))
            for name, child in zip(node.child_names(), node.layers, strict=True)
        )
        return nn.Sequential(children)
    if isinstance(node, L.Residual):
        shortcut = (
            None if node.shortcut is None else _build(node.shortcut, join("shortcut"), shapes)
        )
        return Residual(_build(node.body, join("body"), shapes), shortcut)
    if isinstance(node, L.Concat):
        return Concat([_build(b, join(str(i)), shapes) for i, b in enumerate(node.branches)])
    return _leaf(node, shapes[prefix])


def build_module(network: L.Network) -> nn.Module:
    """An nn.Module whose state_dict keys are the network's canonical weight keys."""
    shapes = {row.path: row for row in infer(network)}
    return _build(network.body, "", shapes)


def load_canonical_state(module: nn.Module, state: dict[str, np.ndarray]) -> None:
    """Copies canonical weights in; every parameter and running statistic must be given."""
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    missing, unexpected = module.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(
            f"weights do not match the module: missing {missing}, unexpected {unexpected}"
        )


def canonical_state(module: nn.Module) -> dict[str, np.ndarray]:
    return {
        k: v.detach().float().cpu().numpy()
        for k, v in module.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
