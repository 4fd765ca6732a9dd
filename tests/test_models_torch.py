"""The catalogue against real PyTorch: hand-written reference modules, torch's own pooling
sizes and torch's FLOP counter. Marked pytorch: runs in ``tox -e pytorch`` only."""

from __future__ import annotations

import itertools

import pytest

from harness.models import build, flops_per_image, output_shape, param_count, refusal
from harness.models.graph import pool_output_size, pool_padding

pytestmark = pytest.mark.pytorch
SHAPES = [((1, 28, 28), 10), ((3, 32, 32), 10), ((3, 224, 224), 1000), ((1, 32, 32), 100)]


def _references(torch):
    """name -> (channels, classes, small) -> torch module, from the architecture texts."""
    nn, F = torch.nn, torch.nn.functional

    def _basic(cin: int, cout: int, **kw) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(cin, cout, bias=False, **kw), nn.BatchNorm2d(cout, eps=1e-3), nn.ReLU()
        )

    class _Inception(nn.Module):
        def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, proj: int):
            super().__init__()
            self.branches = nn.ModuleList(
                [
                    _basic(cin, c1, kernel_size=1),
                    nn.Sequential(
                        _basic(cin, c3r, kernel_size=1), _basic(c3r, c3, kernel_size=3, padding=1)
                    ),
                    nn.Sequential(
                        _basic(cin, c5r, kernel_size=1), _basic(c5r, c5, kernel_size=3, padding=1)
                    ),
                    nn.Sequential(
                        nn.MaxPool2d(3, 1, 1, ceil_mode=True), _basic(cin, proj, kernel_size=1)
                    ),
                ]
            )

        def forward(self, x):
            return torch.cat([b(x) for b in self.branches], 1)

    def googlenet(cin: int, classes: int, small: bool) -> nn.Module:
        if small:
            stem = [_basic(cin, 192, kernel_size=3, padding=1)]
            pool3, pool4 = nn.MaxPool2d(3, 2, 1), nn.MaxPool2d(3, 2, 1)
        else:
            stem = [
                _basic(cin, 64, kernel_size=7, stride=2, padding=3),
                nn.MaxPool2d(3, 2, ceil_mode=True),
                _basic(64, 64, kernel_size=1),
                _basic(64, 192, kernel_size=3, padding=1),
                nn.MaxPool2d(3, 2, ceil_mode=True),
            ]
            pool3, pool4 = nn.MaxPool2d(3, 2, ceil_mode=True), nn.MaxPool2d(2, 2, ceil_mode=True)
        cfg = [
            (192, 64, 96, 128, 16, 32, 32),
            (256, 128, 128, 192, 32, 96, 64),
            pool3,
            (480, 192, 96, 208, 16, 48, 64),
            (512, 160, 112, 224, 24, 64, 64),
            (512, 128, 128, 256, 24, 64, 64),
            (512, 112, 144, 288, 32, 64, 64),
            (528, 256, 160, 320, 32, 128, 128),
            pool4,
            (832, 256, 160, 320, 32, 128, 128),
            (832, 384, 192, 384, 48, 128, 128),
        ]
        blocks = [c if isinstance(c, nn.Module) else _Inception(*c) for c in cfg]
        return nn.Sequential(
            *stem,
            *blocks,
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(1024, classes),
        )

    class _Bottleneck(nn.Module):
        def __init__(self, cin: int, width: int, stride: int):
            super().__init__()
            out = 4 * width
            self.body = nn.Sequential(
                nn.Conv2d(cin, width, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.Conv2d(width, width, 3, stride, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.Conv2d(width, out, 1, bias=False),
                nn.BatchNorm2d(out),
            )
            self.down: nn.Module = nn.Identity()
            if stride != 1 or cin != out:
                self.down = nn.Sequential(
                    nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out)
                )

        def forward(self, x):
            return F.relu(self.body(x) + self.down(x))

    class _Basic(nn.Module):
        def __init__(self, cin: int, width: int, stride: int):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(cin, width, 3, stride, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.Conv2d(width, width, 3, 1, 1, bias=False),
                nn.BatchNorm2d(width),
            )
            self.down: nn.Module = nn.Identity()
            if stride != 1 or cin != width:
                self.down = nn.Sequential(
                    nn.Conv2d(cin, width, 1, stride, bias=False), nn.BatchNorm2d(width)
                )

        def forward(self, x):
            return F.relu(self.body(x) + self.down(x))

    def resnet(cin: int, classes: int, small: bool, basic: bool = False) -> nn.Module:
        if small:
            layers = [nn.Conv2d(cin, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
        else:
            layers = [
                nn.Conv2d(cin, 64, 7, 2, 3, bias=False),
                nn.BatchNorm2d(64),
                nn.ReLU(),
                nn.MaxPool2d(3, 2, 1),
            ]
        width_in, block_of, expansion = 64, _Basic if basic else _Bottleneck, 1 if basic else 4
        depths = (2, 2, 2, 2) if basic else (3, 4, 6, 3)
        for width, blocks, stride in zip((64, 128, 256, 512), depths, (1, 2, 2, 2), strict=True):
            for block in range(blocks):
                layers.append(block_of(width_in, width, stride if block == 0 else 1))
                width_in = expansion * width
        return nn.Sequential(
            *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width_in, classes)
        )

    def vgg16(cin: int, classes: int, small: bool) -> nn.Module:
        layers: list[nn.Module] = []
        for v in (64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0):
            if v:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
                cin = v
            else:
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=small))
        hidden, flat = (512, 512) if small else (4096, 512 * 7 * 7)
        return nn.Sequential(
            *layers,
            nn.Flatten(),
            nn.Linear(flat, hidden),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(hidden, classes),
        )

    def alexnet(cin: int, classes: int, small: bool) -> nn.Module:
        if small:
            k, conv1, hidden, flat = 3, nn.Conv2d(cin, 64, 3, 1, 1), 1024, 256 * 4 * 4
            pool = nn.MaxPool2d(2, 2, ceil_mode=True)
        else:
            k, conv1, hidden, flat = 5, nn.Conv2d(cin, 64, 11, 4, 2), 4096, 256 * 6 * 6
            pool = nn.MaxPool2d(3, 2)
        return nn.Sequential(
            conv1,
            nn.ReLU(),
            pool,
            nn.Conv2d(64, 192, k, padding=k // 2),
            nn.ReLU(),
            pool,
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(),
            pool,
            nn.Flatten(),
            nn.Dropout(),
            nn.Linear(flat, hidden),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, classes),
        )

    def lenet(cin: int, classes: int, small: bool) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(cin, 20, 5),
            nn.MaxPool2d(2),
            nn.Conv2d(20, 50, 5),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(800, 500),
            nn.ReLU(),
            nn.Linear(500, classes),
        )

    return {
        "lenet": lenet,
        "alexnet": alexnet,
        "resnet18": lambda cin, classes, small: resnet(cin, classes, small, basic=True),
        "resnet50": resnet,
        "googlenet": googlenet,
        "vgg16": vgg16,
    }


@pytest.fixture(scope="module")
def torch():
    import torch

    return torch


# VGG-19's counts and MACs are checked in test_models.py (torchvision's figures and VGG-16's
# plus its three convolutions): its 143 M-parameter torch module would cost seconds here.
@pytest.mark.parametrize("name", ["lenet", "alexnet", "resnet18", "resnet50", "googlenet", "vgg16"])
@pytest.mark.parametrize(("shape", "classes"), SHAPES, ids=str)
def test_matches_hand_written_torch_module(torch, name, shape, classes):
    if refusal(name, shape, classes):
        return  # lenet takes 1x28x28 only; its refusals are tested in test_models.py
    from torch.utils.flop_counter import FlopCounterMode

    net = build(name, shape, classes)
    ref = _references(torch)[name](shape[0], classes, net.variant == "small").eval()
    assert param_count(net) == sum(p.numel() for p in ref.parameters())
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        out = ref(torch.zeros(1, *shape))
    assert tuple(out.shape[1:]) == output_shape(net)
    assert counter.get_total_flops() == flops_per_image(net)


def test_pool_sizes_and_padding_match_torch(torch):
    F = torch.nn.functional
    for size, k, s, p, ceil in itertools.product(
        range(1, 13), range(1, 5), range(1, 4), range(3), (False, True)
    ):
        if 2 * p > k or size + 2 * p < k:
            continue
        x = torch.randn(1, 1, size, size)
        got = F.max_pool2d(x, k, s, p, ceil_mode=ceil)
        assert got.shape[-1] == pool_output_size(size, k, s, p, ceil), (size, k, s, p, ceil)
        before, after = pool_padding(size, k, s, p, ceil)
        padded = F.pad(x, (before, after, before, after), value=float("-inf"))
        assert torch.equal(F.max_pool2d(padded, k, s), got), (size, k, s, p, ceil)
