"""The model catalogue: architectures, counts, refusals, shape inference, initial weights.

Reference figures are not read from the code under test:
- ImageNet counts are torchvision's (resnet18, resnet50, vgg16, vgg19, alexnet,
  googlenet, 1000 classes) and Caffe's MNIST LeNet (431,080); MACs are torchvision's
  published GFLOPS, which are multiply-adds.
- Small-variant counts are derived by hand in SMALL_COUNTS' comments, and the CIFAR
  ResNet-18 and ResNet-50 figures are recomputed by an independent formula; the CIFAR
  ResNet-18's MACs are derived by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.models import (
    MODELS,
    ModelError,
    build,
    flops_per_image,
    infer,
    init_weights,
    is_buffer,
    macs_per_image,
    param_count,
    refusal,
    state_keys,
    summary_table,
    walk,
)
from harness.models.graph import output_shape, pool_output_size, pool_padding
from harness.models.layers import (
    BatchNorm,
    Concat,
    Conv2D,
    Dense,
    Flatten,
    GlobalAvgPool,
    MaxPool,
    Network,
    ReLU,
    Residual,
    Sequential,
)

MNIST, CIFAR, IMAGENET = (1, 28, 28), (3, 32, 32), (3, 224, 224)
PAIRS = [
    (n, s, c)
    for n in MODELS
    for s, c in ((MNIST, 10), (CIFAR, 10), (IMAGENET, 1000))
    if not (n == "lenet" and s != MNIST)
]

REFERENCE_COUNTS = {
    ("lenet", MNIST, 10): 431_080,
    ("resnet18", IMAGENET, 1000): 11_689_512,
    ("resnet50", IMAGENET, 1000): 25_557_032,
    ("vgg16", IMAGENET, 1000): 138_357_544,
    ("vgg19", IMAGENET, 1000): 143_667_240,
    ("alexnet", IMAGENET, 1000): 61_100_840,
    ("googlenet", IMAGENET, 1000): 6_624_904,
}

# Hand-derived; the 1-channel figures differ from the 3-channel ones only in the first
# convolution (2 fewer input channels times its filters times its kernel area), since
# every small variant ends in a global pool or reaches the same feature size.
SMALL_COUNTS = {
    # known CIFAR ResNet-50 figure; stem 3x3x64: 1-channel is 2*64*9 = 1,152 fewer
    ("resnet50", CIFAR): 23_520_842,
    ("resnet50", MNIST): 23_520_842 - 1_152,
    # torchvision VGG-16 convolutions 138,357,544 - 102,764,544 - 16,781,312 - 4,097,000
    # = 14,714,688, plus 512*512+512 + 512*512+512 + 512*10+10 = 530,442
    ("vgg16", CIFAR): 14_714_688 + 530_442,
    ("vgg16", MNIST): 14_714_688 + 530_442 - 1_152,
    # known CIFAR ResNet-18 figure (e.g. kuangliu/pytorch-cifar); stem as for ResNet-50
    ("resnet18", CIFAR): 11_173_962,
    ("resnet18", MNIST): 11_173_962 - 1_152,
    # VGG-19 = VGG-16 plus a 256-256 and two 512-512 3x3 convolutions:
    # 14,714,688 + 590,080 + 2 * 2,359,808 = 20,024,384 (torchvision's 143,667,240 less
    # its 123,642,856-parameter classifier), plus the 530,442 of the small head
    ("vgg19", CIFAR): 20_024_384 + 530_442,
    ("vgg19", MNIST): 20_024_384 + 530_442 - 1_152,
    # convs 1,792 + 110,784 + 663,936 + 884,992 + 590,080 = 2,251,584;
    # dense 4096*1024+1024 + 1024*1024+1024 + 1024*10+10 = 5,255,178
    ("alexnet", CIFAR): 2_251_584 + 5_255_178,
    ("alexnet", MNIST): 2_251_584 + 5_255_178 - 1_152,
    # torchvision 6,624,904 - stem (9,408+128 + 4,096+128 + 110,592+384 = 124,736)
    # - fc 1,025,000 + small stem (5,184+384) + fc 10,250
    ("googlenet", CIFAR): 6_624_904 - 124_736 - 1_025_000 + 5_568 + 10_250,
    ("googlenet", MNIST): 6_624_904 - 124_736 - 1_025_000 + 5_568 + 10_250 - 3_456,
}

PUBLISHED_GMACS = {
    "resnet18": 1.81,
    "resnet50": 4.09,
    "vgg16": 15.47,
    "vgg19": 19.63,
    "alexnet": 0.71,
    "googlenet": 1.50,
}


@pytest.mark.parametrize(("key", "expected"), REFERENCE_COUNTS.items(), ids=str)
def test_reference_param_counts(key, expected):
    name, shape, classes = key
    assert param_count(build(name, shape, classes)) == expected


@pytest.mark.parametrize(("key", "expected"), SMALL_COUNTS.items(), ids=str)
def test_small_variant_param_counts(key, expected):
    name, shape = key
    net = build(name, shape, 10)
    assert net.variant == "small"
    assert param_count(net) == expected


def _cifar_resnet50_count(channels: int, classes: int) -> int:
    """Independent count: stem, [3, 4, 6, 3] bottlenecks, dense."""
    total = channels * 64 * 9 + 2 * 64
    cin = 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for block in range(blocks):
            total += cin * width + width * width * 9 + width * 4 * width
            total += 2 * (width + width + 4 * width)  # three batch norms
            if block == 0:  # projection shortcut: 1x1 conv + batch norm
                total += cin * 4 * width + 2 * 4 * width
            cin = 4 * width
    return total + 2048 * classes + classes


def test_cifar_resnet50_independent_formula():
    assert _cifar_resnet50_count(3, 10) == 23_520_842
    assert param_count(build("resnet50", CIFAR, 10)) == _cifar_resnet50_count(3, 10)
    assert param_count(build("resnet50", (3, 32, 32), 100)) == _cifar_resnet50_count(3, 100)


def _cifar_resnet18_count(channels: int, classes: int) -> int:
    """Independent count: stem, [2, 2, 2, 2] basic blocks, dense."""
    total = channels * 64 * 9 + 2 * 64
    cin = 64
    for width in (64, 128, 256, 512):
        for block in range(2):
            total += cin * width * 9 + width * width * 9 + 2 * 2 * width
            if block == 0 and cin != width:  # projection shortcut: 1x1 conv + batch norm
                total += cin * width + 2 * width
            cin = width
    return total + 512 * classes + classes


def test_cifar_resnet18_independent_formula():
    assert _cifar_resnet18_count(3, 10) == 11_173_962
    assert param_count(build("resnet18", (3, 32, 32), 100)) == _cifar_resnet18_count(3, 100)


def test_cifar_resnet18_macs_by_hand():
    # stem 32*32*64*27; layer1: four 3x3 64->64 at 32x32; layers 2-4 each the same count:
    # a strided 3x3 (c -> 2c), three 3x3 (2c -> 2c) and a 1x1 projection at half the size
    stem = 32 * 32 * 64 * 27
    layer1 = 4 * 32 * 32 * 64 * 64 * 9
    layer2 = 16 * 16 * 128 * (64 * 9 + 3 * 128 * 9 + 64)
    assert macs_per_image(build("resnet18", CIFAR, 10)) == stem + layer1 + 3 * layer2 + 5_120


@pytest.mark.parametrize(("shape", "side"), [(CIFAR, 32), (IMAGENET, 224)], ids=str)
def test_vgg19_macs_by_hand(shape, side):
    # VGG-19 is VGG-16 plus a 3x3 256->256 convolution at side/4 and two 3x3 512->512 at
    # side/8 and side/16 (same padding; the small variant's ceil pools change nothing at 32)
    extra = (side // 4) ** 2 * 256 * 256 * 9
    extra += ((side // 8) ** 2 + (side // 16) ** 2) * 512 * 512 * 9
    classes = 10 if side == 32 else 1000
    vgg16, vgg19 = build("vgg16", shape, classes), build("vgg19", shape, classes)
    assert macs_per_image(vgg19) == macs_per_image(vgg16) + extra


@pytest.mark.parametrize("name", PUBLISHED_GMACS)
def test_imagenet_macs_match_published_gflops(name):
    net = build(name, IMAGENET, 1000)
    macs = macs_per_image(net)
    assert macs == pytest.approx(PUBLISHED_GMACS[name] * 1e9, rel=0.01)
    assert flops_per_image(net) == 2 * macs


def test_lenet_macs_by_hand():
    # conv1 24*24*20*25, conv2 8*8*50*(20*25), ip1 800*500, ip2 500*10
    assert macs_per_image(build("lenet", MNIST, 10)) == 288_000 + 1_600_000 + 400_000 + 5_000


@pytest.mark.parametrize(("name", "shape", "classes"), PAIRS)
def test_every_pair_builds_and_ends_in_class_scores(name, shape, classes):
    net = build(name, shape, classes)
    assert isinstance(net, Network)
    assert (net.name, net.input_shape, net.num_classes) == (name, shape, classes)
    assert output_shape(net) == (classes,)
    expected = "imagenet" if shape == IMAGENET else "small"
    assert net.variant == expected or name == "lenet"


def test_variants_accept_other_channel_counts():
    assert param_count(build("resnet50", (1, 224, 224), 1000)) == 25_557_032 - 2 * 64 * 49
    assert param_count(build("vgg16", (3, 28, 28), 10)) == SMALL_COUNTS[("vgg16", CIFAR)]


def test_imagenet_notes_record_omitted_adaptive_pools():
    assert any("AdaptiveAvgPool2d((6, 6))" in n for n in build("alexnet", IMAGENET, 1000).notes)
    for name in ("vgg16", "vgg19"):
        assert any("AdaptiveAvgPool2d((7, 7))" in n for n in build(name, IMAGENET, 1000).notes)
    for name in [n for n in MODELS if n != "lenet"]:
        assert build(name, CIFAR, 10).notes, name


def test_googlenet_is_torchvision_shaped():
    rows = {r.path: r for r in infer(build("googlenet", IMAGENET, 1000))}
    assert rows["conv1.bn"].layer.eps == 0.001
    assert rows["conv1.conv"].layer.bias is False
    assert rows["maxpool1"].out_shape == (64, 56, 56)  # ceil mode: 112 -> 56
    assert rows["inception3a.2.1.conv"].layer.kernel == 3  # the "5x5" branch
    assert rows["maxpool4"].out_shape == (832, 7, 7)
    assert rows["inception5b.3.1.relu"].out_shape == (128, 7, 7)
    assert rows["dropout"].layer.rate == 0.2


def test_resnet50_stride_on_3x3_conv():
    rows = {r.path: r for r in infer(build("resnet50", IMAGENET, 1000))}
    assert rows["layer2.0.residual.body.conv1"].layer.stride == 1
    assert rows["layer2.0.residual.body.conv2"].layer.stride == 2
    assert rows["layer2.0.residual.shortcut.conv"].layer.stride == 2
    assert "layer2.1.residual.shortcut.conv" not in rows
    assert rows["layer4.2.relu"].out_shape == (2048, 7, 7)


def test_resnet18_basic_blocks_as_torchvision():
    rows = {r.path: r for r in infer(build("resnet18", IMAGENET, 1000))}
    assert rows["layer2.0.residual.body.conv1"].layer.stride == 2
    assert rows["layer2.0.residual.body.conv2"].layer.stride == 1
    assert rows["layer2.0.residual.shortcut.conv"].layer.kernel == 1
    assert "layer1.0.residual.shortcut.conv" not in rows  # 64 -> 64, stride 1
    assert "layer2.1.residual.shortcut.conv" not in rows
    assert "layer2.0.residual.body.conv3" not in rows and "layer4.2.relu" not in rows
    assert rows["layer4.1.relu"].out_shape == (512, 7, 7)
    assert rows["fc"].layer.units == 1000


# --- refusals --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [CIFAR, IMAGENET, (1, 32, 32), (3, 28, 28), (1, 224, 224)])
def test_lenet_refuses_everything_but_mnist(shape):
    why = refusal("lenet", shape, 10)
    assert why and "MNIST family" in why and "1x28x28" in why
    with pytest.raises(ModelError, match="MNIST family"):
        build("lenet", shape, 10)
    with pytest.raises(ModelError):
        MODELS["lenet"].builder(shape, 10)


@pytest.mark.parametrize("name", [n for n in MODELS if n != "lenet"])
@pytest.mark.parametrize("shape", [(3, 64, 64), (3, 28, 32), (3, 227, 227), (3, 1, 1)])
def test_unsupported_sizes_refused(name, shape):
    why = refusal(name, shape, 10)
    assert why and "x".join(map(str, shape)) in why and "224x224" in why
    with pytest.raises(ModelError):
        build(name, shape, 10)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize(
    ("shape", "classes"),
    [
        ((0, 28, 28), 10),
        ((28, 28), 10),
        ((1, 28, 28, 1), 10),
        ("1x28x28", 10),
        ((1.0, 28, 28), 10),
        ((1, 28, 28), 0),
        ((1, 28, 28), True),
        ((1, 28, 28), 2.5),
    ],
)
def test_malformed_inputs_refused(name, shape, classes):
    assert refusal(name, shape, classes)
    with pytest.raises(ModelError):
        build(name, shape, classes)


def test_unknown_model_names_the_choices():
    why = refusal("resnet101", CIFAR, 10)
    assert why and all(n in why for n in MODELS)
    with pytest.raises(ModelError, match="lenet, alexnet, resnet50, googlenet, vgg16, resnet18"):
        build("resnet101", CIFAR, 10)
    assert issubclass(ModelError, ValueError)


def test_accepted_pairs_have_no_refusal():
    for name, shape, classes in PAIRS:
        assert refusal(name, shape, classes) is None


# --- walk and paths ----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "shape", "classes"), PAIRS)
def test_walk_paths_unique_and_well_formed(name, shape, classes):
    net = build(name, shape, classes)
    paths = [p for p, _ in walk(net)]
    assert len(paths) == len(set(paths))
    assert all(p and not p.startswith(".") and ".." not in p for p in paths)
    assert paths == [r.path for r in infer(net)]


def test_path_rules():
    tree = Sequential(
        (
            Conv2D(4, 3, padding=1),
            Residual(
                Sequential((Conv2D(4, 1), BatchNorm()), ("c", "bn")), Sequential((Conv2D(4, 1),))
            ),
            Residual(Sequential((ReLU(),))),
            Concat((Sequential((Conv2D(2, 1),)), Sequential((MaxPool(3, 1, 1), Conv2D(3, 1))))),
        ),
        names=("stem", "res", "ident", "cat"),
    )
    assert [p for p, _ in walk(tree)] == [
        "stem",
        "res.body.c",
        "res.body.bn",
        "res.shortcut.0",
        "ident.body.0",
        "cat.0.0",
        "cat.1.0",
        "cat.1.1",
    ]
    assert next(p for p, _ in walk(tree, "net")) == "net.stem"
    assert infer(tree, (3, 8, 8))[-1].out_shape == (3, 8, 8)


def test_known_paths_match_torchvision_where_possible():
    assert {"features.0", "features.28", "classifier.6"} <= {
        p for p, _ in walk(build("vgg16", IMAGENET, 1000))
    }
    assert {"features.34", "features.36", "classifier.6"} <= {
        p for p, _ in walk(build("vgg19", IMAGENET, 1000))
    }
    assert {"features.10", "classifier.1", "classifier.6"} <= {
        p for p, _ in walk(build("alexnet", IMAGENET, 1000))
    }
    assert [p for p, _ in walk(build("lenet", MNIST, 10))] == [
        "conv1",
        "pool1",
        "conv2",
        "pool2",
        "flatten",
        "ip1",
        "relu1",
        "ip2",
    ]


def test_walk_rejects_bad_names():
    with pytest.raises(ValueError, match="unique"):
        list(walk(Sequential((ReLU(), ReLU()), ("a", "a"))))
    with pytest.raises(ValueError):
        list(walk(Sequential((ReLU(),), ("a.b",))))
    with pytest.raises(ValueError, match="every layer"):
        list(walk(Sequential((ReLU(), ReLU()), ("a",))))


# --- shape inference ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((112, 3, 2, 0, True), 56),  # GoogLeNet maxpool1
        ((112, 3, 2, 0, False), 55),
        ((5, 2, 2, 1, True), 3),  # ceil would give 4, but that window starts in the right pad
        ((5, 2, 2, 0, True), 3),
        ((7, 2, 2, 0, True), 4),
        ((7, 2, 2, 0, False), 3),
        ((14, 2, 2, 0, True), 7),
        ((28, 3, 2, 1, False), 14),
    ],
)
def test_pool_output_size_is_pytorchs(args, expected):
    assert pool_output_size(*args) == expected


def test_pool_padding_reproduces_ceil_mode():
    for size, kernel, stride, pad in ((112, 3, 2, 0), (7, 2, 2, 0), (5, 2, 2, 1), (6, 3, 3, 1)):
        before, after = pool_padding(size, kernel, stride, pad, True)
        assert before == pad
        floor = (size + before + after - kernel) // stride + 1
        assert floor == pool_output_size(size, kernel, stride, pad, True)


def test_conv_dense_counts_on_a_small_tree():
    tree = Sequential(
        (Conv2D(8, 3, 2, 1, groups=1), BatchNorm(), ReLU(), GlobalAvgPool(), Flatten(), Dense(5))
    )
    rows = infer(tree, (4, 9, 9))
    assert [r.out_shape for r in rows] == [(8, 5, 5), (8, 5, 5), (8, 5, 5), (8, 1, 1), (8,), (5,)]
    assert [r.params for r in rows] == [8 * 4 * 9 + 8, 16, 0, 0, 0, 8 * 5 + 5]
    assert rows[0].macs == 5 * 5 * 8 * 4 * 9 and rows[-1].macs == 40
    grouped = infer(Sequential((Conv2D(6, 3, groups=2, bias=False),)), (4, 5, 5))[0]
    assert grouped.params == 6 * 2 * 9 and grouped.macs == 3 * 3 * 6 * 2 * 9


@pytest.mark.parametrize(
    ("tree", "shape", "match"),
    [
        (Sequential((Conv2D(4, 5),)), (1, 3, 3), "output would be"),
        (Sequential((MaxPool(2), MaxPool(2))), (1, 3, 3), "output would be"),
        (Sequential((MaxPool(2, padding=2),)), (1, 8, 8), "half the kernel"),
        (Sequential((Dense(3),)), (1, 4, 4), "Flatten"),
        (Sequential((Flatten(), Conv2D(2, 1))), (1, 4, 4), r"\(C, H, W\)"),
        (Sequential((Conv2D(4, 1, groups=3),)), (4, 4, 4), "groups"),
        (Residual(Sequential((Conv2D(4, 3),))), (4, 8, 8), "residual"),
        (
            Residual(Sequential((Conv2D(8, 1),)), Sequential((Conv2D(8, 1, 2),))),
            (4, 8, 8),
            "residual",
        ),
        (Concat((Sequential((Conv2D(2, 1),)), Sequential((Conv2D(2, 3),)))), (4, 8, 8), "Concat"),
    ],
)
def test_impossible_shapes_raise_clear_errors(tree, shape, match):
    with pytest.raises(ValueError, match=match):
        infer(tree, shape)


def test_floor_mode_vgg_would_fail_at_28():
    net = build("vgg16", MNIST, 10)
    floor = Sequential(
        tuple(
            MaxPool(2, 2) if isinstance(layer, MaxPool) else layer
            for layer in net.body.layers[0].layers
        )
    )
    with pytest.raises(ValueError, match="output would be 0x0"):
        infer(floor, MNIST)


def test_summary_table_lists_every_layer():
    net = build("lenet", MNIST, 10)
    table = summary_table(net)
    assert "431,080" in table and "20x24x24" in table and "Conv2D 20 5x5" in table
    assert all(path in table for path, _ in walk(net))


# --- initial weights ---------------------------------------------------------------------


@pytest.mark.parametrize(("name", "shape", "classes"), PAIRS)
def test_state_keys_are_cheap_and_consistent(name, shape, classes):
    net = build(name, shape, classes)
    keys = state_keys(net)
    assert len({k for k, _ in keys}) == len(keys)
    trainable = sum(math.prod(s) for k, s in keys if not is_buffer(k))
    assert trainable == param_count(net)


@pytest.mark.parametrize(
    ("name", "shape", "classes"),
    [p for p in PAIRS if p[1] != IMAGENET] + [("resnet50", IMAGENET, 1000)],
)
def test_init_matches_state_keys(name, shape, classes):
    net = build(name, shape, classes)
    state = init_weights(net, seed=0)
    assert [(k, v.shape) for k, v in state.items()] == state_keys(net)
    assert all(v.dtype == np.float32 for v in state.values())
    assert all(np.isfinite(v).all() for v in state.values())


def test_init_is_deterministic():
    net = build("googlenet", CIFAR, 10)
    first, again, other = init_weights(net, 7), init_weights(net, 7), init_weights(net, 8)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["conv1.conv.weight"], other["conv1.conv.weight"])


def test_resnet_init_statistics():
    state = init_weights(build("resnet50", CIFAR, 10), seed=1)
    w = state["layer3.0.residual.body.conv2.weight"]  # 256 x 256 x 3 x 3
    assert w.mean() == pytest.approx(0, abs=1e-3)
    assert w.std() == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.02)
    fc = state["fc.weight"]  # PyTorch default: U(-1/sqrt(2048), 1/sqrt(2048))
    bound = 1 / math.sqrt(2048)
    assert np.abs(fc).max() <= bound and np.abs(fc).max() > 0.95 * bound
    assert np.abs(state["fc.bias"]).max() <= bound and state["fc.bias"].any()
    bn = "layer1.0.residual.body.bn1"
    assert (state[f"{bn}.weight"] == 1).all() and (state[f"{bn}.bias"] == 0).all()
    assert (state[f"{bn}.running_mean"] == 0).all() and (state[f"{bn}.running_var"] == 1).all()
    assert "conv1.bias" not in state


def test_vgg_googlenet_lenet_init_statistics():
    vgg = init_weights(build("vgg16", CIFAR, 10), seed=2)
    assert vgg["features.0.weight"].shape == (64, 3, 3, 3)
    assert vgg["features.28.weight"].std() == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.02)
    assert not vgg["features.28.bias"].any() and not vgg["classifier.0.bias"].any()
    assert vgg["classifier.0.weight"].std() == pytest.approx(0.01, rel=0.02)

    goog = init_weights(build("googlenet", CIFAR, 10), seed=3)
    w = goog["inception4e.1.1.conv.weight"]
    assert w.std() == pytest.approx(0.01, rel=0.02) and np.abs(w).max() <= 2
    assert not goog["fc.bias"].any() and goog["conv1.bn.weight"].min() == 1

    lenet = init_weights(build("lenet", MNIST, 10), seed=4)
    bound = math.sqrt(3 / 800)  # Caffe xavier on ip1: fan_in = 50 * 4 * 4
    assert np.abs(lenet["ip1.weight"]).max() <= bound
    assert lenet["ip1.weight"].std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert lenet["conv1.weight"].shape == (20, 1, 5, 5) and not lenet["conv1.bias"].any()


def test_alexnet_default_init_bounds():
    state = init_weights(build("alexnet", IMAGENET, 10), seed=5)
    w, b = state["features.0.weight"], state["features.0.bias"]  # fan_in 3 * 11 * 11
    bound = 1 / math.sqrt(363)
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.05)


def test_catalogue_entries():
    assert list(MODELS) == [
        "lenet",
        "alexnet",
        "resnet50",
        "googlenet",
        "vgg16",
        "resnet18",
        "vgg19",
    ]
    for name, info in MODELS.items():
        assert info.name == name and info.title and info.description
        assert callable(info.builder)


def test_command_line_table_and_summary(capsys):
    from harness.models.__main__ import counts_table, main

    table = counts_table()
    assert "| resnet50 | cifar10 | 3x32x32 | 10 | small | 23,520,842 |" in table
    assert "| lenet | imagenet | 3x224x224 | 1000 | refused |" in table
    assert main(["vgg16", "3x224x224", "1000"]) == 0
    assert "138,357,544" in capsys.readouterr().out
    assert main(["lenet", "3x32x32"]) == 2
    assert "MNIST family" in capsys.readouterr().err
