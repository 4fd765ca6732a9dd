"""Canonical weight names <-> torchvision's state-dict keys (harness.models.torchvision),
tested with state dicts laid out as torchvision's ResNet-18, ResNet-50 and GoogLeNet (aux
heads and num_batches_tracked included), written here from torchvision's architecture
tables."""

from __future__ import annotations

import numpy as np
import pytest

from harness.models import build, state_keys
from harness.models.torchvision import from_torchvision, to_torchvision, torchvision_key


def _bn(out: dict, prefix: str, channels: int) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        out[f"{prefix}.{name}"] = (channels,)
    out[f"{prefix}.num_batches_tracked"] = ()


def resnet50_layout() -> dict[str, tuple[int, ...]]:
    """torchvision.models.resnet50().state_dict(): key -> shape."""
    out: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}
    _bn(out, "bn1", 64)
    inplanes = 64
    for stage, (width, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], 1):
        for block in range(blocks):
            p = f"layer{stage}.{block}"
            out[f"{p}.conv1.weight"] = (width, inplanes, 1, 1)
            _bn(out, f"{p}.bn1", width)
            out[f"{p}.conv2.weight"] = (width, width, 3, 3)
            _bn(out, f"{p}.bn2", width)
            out[f"{p}.conv3.weight"] = (4 * width, width, 1, 1)
            _bn(out, f"{p}.bn3", 4 * width)
            if block == 0:
                out[f"{p}.downsample.0.weight"] = (4 * width, inplanes, 1, 1)
                _bn(out, f"{p}.downsample.1", 4 * width)
            inplanes = 4 * width
    out["fc.weight"], out["fc.bias"] = (1000, 2048), (1000,)
    return out


def resnet18_layout() -> dict[str, tuple[int, ...]]:
    """torchvision.models.resnet18().state_dict(): BasicBlock conv1 (3x3, stride), conv2."""
    out: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}
    _bn(out, "bn1", 64)
    inplanes = 64
    for stage, width in enumerate([64, 128, 256, 512], 1):
        for block in range(2):
            p = f"layer{stage}.{block}"
            out[f"{p}.conv1.weight"] = (width, inplanes, 3, 3)
            _bn(out, f"{p}.bn1", width)
            out[f"{p}.conv2.weight"] = (width, width, 3, 3)
            _bn(out, f"{p}.bn2", width)
            if block == 0 and stage > 1:
                out[f"{p}.downsample.0.weight"] = (width, inplanes, 1, 1)
                _bn(out, f"{p}.downsample.1", width)
            inplanes = width
    out["fc.weight"], out["fc.bias"] = (1000, 512), (1000,)
    return out


def _basic(out: dict, prefix: str, cin: int, cout: int, k: int) -> None:
    out[f"{prefix}.conv.weight"] = (cout, cin, k, k)
    _bn(out, f"{prefix}.bn", cout)


def googlenet_layout() -> dict[str, tuple[int, ...]]:
    """torchvision.models.googlenet(aux_logits=True, init_weights=True).state_dict()."""
    out: dict[str, tuple[int, ...]] = {}
    _basic(out, "conv1", 3, 64, 7)
    _basic(out, "conv2", 64, 64, 1)
    _basic(out, "conv3", 64, 192, 3)
    table = {
        "3a": (192, 64, 96, 128, 16, 32, 32),
        "3b": (256, 128, 128, 192, 32, 96, 64),
        "4a": (480, 192, 96, 208, 16, 48, 64),
        "4b": (512, 160, 112, 224, 24, 64, 64),
        "4c": (512, 128, 128, 256, 24, 64, 64),
        "4d": (512, 112, 144, 288, 32, 64, 64),
        "4e": (528, 256, 160, 320, 32, 128, 128),
        "5a": (832, 256, 160, 320, 32, 128, 128),
        "5b": (832, 384, 192, 384, 48, 128, 128),
    }
    for name, (cin, c1, c3r, c3, c5r, c5, proj) in table.items():
        p = f"inception{name}"
        _basic(out, f"{p}.branch1", cin, c1, 1)
        _basic(out, f"{p}.branch2.0", cin, c3r, 1)
        _basic(out, f"{p}.branch2.1", c3r, c3, 3)
        _basic(out, f"{p}.branch3.0", cin, c5r, 1)
        _basic(out, f"{p}.branch3.1", c5r, c5, 3)
        _basic(out, f"{p}.branch4.1", cin, proj, 1)
    for aux, cin in (("aux1", 512), ("aux2", 528)):
        _basic(out, f"{aux}.conv", cin, 128, 1)
        out[f"{aux}.fc1.weight"], out[f"{aux}.fc1.bias"] = (1024, 2048), (1024,)
        out[f"{aux}.fc2.weight"], out[f"{aux}.fc2.bias"] = (1000, 1024), (1000,)
    out["fc.weight"], out["fc.bias"] = (1000, 1024), (1000,)
    return out


LAYOUTS = {
    "resnet18": resnet18_layout,
    "resnet50": resnet50_layout,
    "googlenet": googlenet_layout,
}


def _filled(layout: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in layout.items()}


@pytest.mark.parametrize("model", list(LAYOUTS))
def test_torchvision_state_dict_loads_and_round_trips(model):
    network = build(model, (3, 224, 224), 1000)
    torchvision = _filled(LAYOUTS[model]())
    canonical = from_torchvision(network, torchvision)
    assert sorted(canonical) == sorted(k for k, _ in state_keys(network))
    for key, shape in state_keys(network):
        assert canonical[key].shape == shape
        np.testing.assert_array_equal(canonical[key], torchvision[torchvision_key(model, key)])
    kept = {
        k: v
        for k, v in torchvision.items()
        if not k.endswith("num_batches_tracked") and not k.startswith("aux")
    }
    back = to_torchvision(network, canonical)
    assert sorted(back) == sorted(kept)
    assert all(np.array_equal(back[k], kept[k]) for k in kept)


def test_names_that_differ():
    assert torchvision_key("resnet50", "layer2.0.residual.body.bn3.running_var") == (
        "layer2.0.bn3.running_var"
    )
    assert torchvision_key("resnet50", "layer2.0.residual.shortcut.conv.weight") == (
        "layer2.0.downsample.0.weight"
    )
    assert (
        torchvision_key("googlenet", "inception4e.3.1.bn.bias") == "inception4e.branch4.1.bn.bias"
    )
    assert torchvision_key("googlenet", "inception3a.1.1.conv.weight") == (
        "inception3a.branch2.1.conv.weight"
    )
    assert torchvision_key("resnet18", "layer3.0.residual.shortcut.bn.running_mean") == (
        "layer3.0.downsample.1.running_mean"
    )
    assert torchvision_key("vgg16", "features.28.weight") == "features.28.weight"


# torchvision's feature indices of the convolutions: each is followed by its ReLU, and the
# 5 max pools sit after the 2nd, 4th, 7th / 8th, 10th / 12th, 13th / 16th convolution
VGG_CONVS = {
    "vgg16": [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28],
    "vgg19": [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34],
}


@pytest.mark.parametrize("model", ["alexnet", "vgg16", "vgg19"])
def test_alexnet_and_vgg_keys_are_torchvision_s(model):
    network = build(model, (3, 224, 224), 1000)
    keys = [k for k, _ in state_keys(network)]
    assert all(torchvision_key(model, k) == k for k in keys)
    classifier = {"alexnet": [1, 4, 6], "vgg16": [0, 3, 6], "vgg19": [0, 3, 6]}[model]
    assert [k for k in keys if k.startswith("classifier")] == [
        f"classifier.{i}.{n}" for i in classifier for n in ("weight", "bias")
    ]
    if model in VGG_CONVS:
        assert [k for k in keys if k.startswith("features")] == [
            f"features.{i}.{n}" for i in VGG_CONVS[model] for n in ("weight", "bias")
        ]


def test_a_wrong_state_dict_is_refused_by_name():
    network = build("resnet50", (3, 224, 224), 1000)
    torchvision = _filled(resnet50_layout())
    del torchvision["layer3.1.bn2.running_var"]
    torchvision["layer4.0.downsample.0.weight"] = np.zeros((2048, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match=r"layer3\.1\.bn2\.running_var.*downsample\.0\.weight"):
        from_torchvision(network, torchvision)
