"""Canonical weight names <-> torchvision's state-dict keys, so torchvision's pretrained
ImageNet weights load into every backend (``from_torchvision``) and harness weights
into torchvision (``to_torchvision``).

    from harness.models import build
    from harness.models.torchvision import from_torchvision
    net = build("resnet50", (3, 224, 224), 1000)
    weights = from_torchvision(net, {k: v.numpy() for k, v in sd.items()})  # sd: torch

AlexNet, VGG-16 and VGG-19 use torchvision's keys already (``features.N``,
``classifier.N``). ResNet-18, ResNet-50 and GoogLeNet differ only in the names of some
containers; the layouts
(conv (out, in, kh, kw), dense (out, in), batch norm per channel) are the same:

| model | canonical | torchvision |
|---|---|---|
| resnet18/50 | ``layerS.B.residual.body.convK`` / ``bnK`` | ``layerS.B.convK`` / ``bnK`` |
| resnet18/50 | ``layerS.B.residual.shortcut.conv`` / ``.bn`` | ``layerS.B.downsample.0`` / ``.1`` |
| googlenet | ``inceptionX.0`` | ``inceptionX.branch1`` |
| googlenet | ``inceptionX.1.N`` / ``inceptionX.2.N`` | ``inceptionX.branch2.N`` / ``branch3.N`` |
| googlenet | ``inceptionX.3.1`` (``3.0`` is the max pool) | ``inceptionX.branch4.1`` |

Everything else (stems, ``fc``) has the same name. Importing drops what the harness's
networks do not have: every ``num_batches_tracked`` counter and GoogLeNet's auxiliary
heads (``aux1.*``, ``aux2.*``, present in torchvision's pretrained file). Note that
torchvision's pretrained GoogLeNet sets ``transform_input=True``, a fixed rescaling of
the input channels the harness's network does not apply: feed it images normalised as
that transform expects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from .init import state_keys
from .layers import Network

# (canonical pattern, torchvision replacement), applied first match wins.
_RESNET = [
    (r"^(layer\d+\.\d+)\.residual\.body\.", r"\1."),
    (r"^(layer\d+\.\d+)\.residual\.shortcut\.conv\.", r"\1.downsample.0."),
    (r"^(layer\d+\.\d+)\.residual\.shortcut\.bn\.", r"\1.downsample.1."),
]
_RULES: dict[str, list[tuple[str, str]]] = {
    "resnet18": _RESNET,
    "resnet50": _RESNET,
    "googlenet": [
        (r"^(inception\w+)\.0\.", r"\1.branch1."),
        (r"^(inception\w+)\.1\.(\d+)\.", r"\1.branch2.\2."),
        (r"^(inception\w+)\.2\.(\d+)\.", r"\1.branch3.\2."),
        (r"^(inception\w+)\.3\.1\.", r"\1.branch4.1."),
    ],
}
_DROPPED = (re.compile(r"(^|\.)num_batches_tracked$"), re.compile(r"^aux[12]\."))


def torchvision_key(model: str, key: str) -> str:
    """torchvision's state-dict key for canonical ``key`` of ``model``."""
    for pattern, replacement in _RULES.get(model, []):
        new, count = re.subn(pattern, replacement, key)
        if count:
            return new
    return key


def to_torchvision(network: Network, state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Canonical weights as torchvision's state dict (without num_batches_tracked)."""
    return {torchvision_key(network.name, key): value for key, value in state.items()}


def from_torchvision(network: Network, state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """torchvision's state dict (NumPy arrays) as the canonical weights of ``network``.

    Raises ValueError naming missing, unexpected or misshapen entries."""
    wanted = {
        torchvision_key(network.name, key): (key, shape) for key, shape in state_keys(network)
    }
    out: dict[str, np.ndarray] = {}
    unexpected, misshapen = [], []
    for name, value in state.items():
        if any(p.search(name) for p in _DROPPED):
            continue
        if name not in wanted:
            unexpected.append(name)
            continue
        key, shape = wanted[name]
        array = np.asarray(value)
        if tuple(array.shape) != tuple(shape):
            misshapen.append(f"{name} {tuple(array.shape)} (wants {tuple(shape)})")
            continue
        out[key] = array.astype(np.float32)
    missing = [
        name for name, (key, _) in wanted.items() if key not in out and name not in misshapen
    ]
    missing = [m for m in missing if not any(s.startswith(m + " ") for s in misshapen)]
    if missing or unexpected or misshapen:
        raise ValueError(
            f"not torchvision's {network.name} for this network: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, misshapen {misshapen[:5]}"
        )
    return out
