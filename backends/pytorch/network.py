"""Translate a harness.models network into torch.nn modules.

The tree is descended by harness.models.tree (this module translates leaf layers and
says what a Sequential, Residual and Concat become). Module names follow the walk's
paths, so the module's ``state_dict`` keys are the canonical keys of
harness.models.init (PyTorch's layouts are the canonical ones; only the
``num_batches_tracked`` counters are extra).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from harness.models import layers as L
from harness.models.graph import LayerShape, infer, window
from harness.models.tree import fold


class Residual(nn.Module):
    def __init__(self, body: nn.Module, shortcut: nn.Module | None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.body(x) + identity


class Concat(nn.ModuleList):
    """The branches, named "0", "1", ..., run on the same input; outputs joined on channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self], dim=1)


def _leaf(layer: L.Layer, shape: LayerShape) -> nn.Module:
    if isinstance(layer, L.Conv2D):
        return nn.Conv2d(
            shape.in_shape[0], layer.filters, *window(layer), groups=layer.groups, bias=layer.bias
        )
    if isinstance(layer, L.BatchNorm):
        channels = shape.in_shape[0]
        norm = nn.BatchNorm2d if len(shape.in_shape) == 3 else nn.BatchNorm1d
        return norm(channels, eps=layer.eps, momentum=layer.momentum)
    if isinstance(layer, L.ReLU):
        return nn.ReLU(inplace=True)
    if isinstance(layer, (L.MaxPool, L.AvgPool)):
        pool = nn.MaxPool2d if isinstance(layer, L.MaxPool) else nn.AvgPool2d
        return pool(*window(layer), ceil_mode=layer.ceil_mode)
    if isinstance(layer, L.GlobalAvgPool):
        return nn.AdaptiveAvgPool2d(1)
    if isinstance(layer, L.Flatten):
        return nn.Flatten()
    if isinstance(layer, L.Dense):
        return nn.Linear(shape.in_shape[0], layer.units, bias=layer.bias)
    if isinstance(layer, L.Dropout):
        return nn.Dropout(layer.rate)
    raise TypeError(f"no PyTorch translation for {layer!r}")


def build_module(network: L.Network) -> nn.Module:
    """An nn.Module whose state_dict keys are the network's canonical weight keys."""
    shapes = {row.path: row for row in infer(network)}
    return fold(
        network,
        leaf=lambda layer, path: _leaf(layer, shapes[path]),
        sequential=lambda parts: nn.Sequential(OrderedDict(parts)),
        residual=Residual,
        concat=Concat,
    )


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


def numpy_forward(
    network: L.Network,
    state: dict[str, np.ndarray],
    images: np.ndarray,
    *,
    training: bool = False,
    device: str = "cpu",
) -> np.ndarray:
    """Logits (float32 NumPy) of ``network`` with canonical ``state`` for NCHW ``images``:
    the parity checks' entry point (``training``: batch statistics, dropout active)."""
    module = build_module(network)
    load_canonical_state(module, state)
    module.train(training).to(device)
    with torch.no_grad():
        out = module(torch.from_numpy(np.ascontiguousarray(images, np.float32)).to(device))
    return out.float().cpu().numpy()
