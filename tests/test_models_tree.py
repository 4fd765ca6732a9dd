"""The one walk over the layer vocabulary (harness.models.tree) and the constants that
live once: every translator descends the tree through it, with the canonical names."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from harness.models import build, init_weights, names, state_keys, walk
from harness.models.graph import infer, pool_geometry, pool_output_size, pool_padding
from harness.models.layers import (
    AvgPool,
    Concat,
    Conv2D,
    MaxPool,
    Network,
    ReLU,
    Residual,
    Sequential,
)
from harness.models.reference import forward
from harness.models.tree import CONTAINERS, Fold, Forward, children

ROOT = Path(__file__).resolve().parents[1]
# Every translator of the vocabulary: none may descend the tree itself.
TRANSLATORS = [
    "models/graph.py",
    "models/reference.py",
    "backends/pytorch/network.py",
    "backends/tensorflow/network.py",
    "backends/jax/network.py",
    "backends/mxnet/network.py",
    "tests/plugins/harness-numpy/harness_numpy/layers.py",
]
# VGG-19 at 224x224 is VGG-16's tree with three more convolutions, and drawing its
# 143 M weights costs 3 s: its small variant stands for it.
SHAPES = {
    "lenet": [(1, 28, 28)],
    "vgg19": [(3, 32, 32)],
    "default": [(3, 32, 32), (3, 224, 224)],
}


def catalogue():
    for name in names():
        for shape in SHAPES.get(name, SHAPES["default"]):
            yield build(name, shape, 10)


TREE = Sequential(
    (
        Conv2D(4, 3, padding=1),
        Residual(Sequential((ReLU(), Conv2D(4, 1))), Sequential((Conv2D(4, 1),))),
        Residual(Sequential((ReLU(),), ("act",))),
        Concat((Sequential((Conv2D(2, 1),)), Sequential((MaxPool(3, 1, 1), Conv2D(3, 1))))),
    ),
    ("stem", "res", "same", "mix"),
)
TREE_NODES = [  # every node, containers after their children (the fold's order)
    "stem",
    "res.body.0",
    "res.body.1",
    "res.body",
    "res.shortcut.0",
    "res.shortcut",
    "res",
    "same.body.act",
    "same.body",
    "same",
    "mix.0.0",
    "mix.0",
    "mix.1.0",
    "mix.1.1",
    "mix.1",
    "mix",
    "",
]


class Record(Fold[list[str]]):
    """Every node's path, children before their container."""

    def leaf(self, layer, path):
        return [path]

    def sequential(self, node, path, parts):
        return [p for _, part in parts for p in part] + [path]

    def residual(self, node, path, body, shortcut):
        return body + (shortcut or []) + [path]

    def concat(self, node, path, branches):
        return [p for branch in branches for p in branch] + [path]


class Trace(Forward[int]):
    """The order a Forward runs things in: leaves, then each Residual/Concat combination."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def layer(self, layer, path, x):
        self.log.append(path)
        return x + 1

    def add(self, path, body, shortcut):
        self.log.append(f"add {path}")
        return body + shortcut

    def concatenate(self, path, outputs):
        self.log.append(f"cat {path}")
        return sum(outputs)


class SkipShortcuts(Record):
    """A mutant translator: it never visits a Residual's shortcut."""

    def visit(self, child, path):
        return [] if path.endswith("shortcut") else super().visit(child, path)


def leaves_of(nodes: list[str], network: Sequential | Network) -> list[str]:
    leaf_paths = {path for path, _ in walk(network)}
    return [p for p in nodes if p in leaf_paths]


def test_children_follow_the_naming_rules():
    seq = Sequential((ReLU(), ReLU()))
    assert [n for n, _ in children(seq)] == ["0", "1"]
    assert [n for n, _ in children(Sequential((ReLU(),), ("act",)))] == ["act"]
    res = Residual(seq, Sequential((ReLU(),)))
    assert [(n, c) for n, c in children(res)] == [("body", seq), ("shortcut", res.shortcut)]
    assert [n for n, _ in children(Residual(seq))] == ["body"]
    assert [n for n, _ in children(Concat((seq, seq, seq)))] == ["0", "1", "2"]
    for bad in (("a", "a"), ("a.b", "c"), ("", "c")):
        with pytest.raises(ValueError, match=r"x\.y: child names must be unique"):
            children(Sequential((ReLU(), ReLU()), bad), "x.y")


def test_fold_visits_every_node_once_children_first_with_canonical_paths():
    assert Record().fold(TREE) == TREE_NODES
    assert Record().fold(TREE, "net")[0] == "net.stem"


def test_forward_runs_leaves_in_walk_order_and_combines_after_both_sides():
    trace = Trace()
    assert trace.fold(TREE) and trace.log == []  # building runs nothing
    # stem 1; res (1 + 2) + (1 + 1) = 5; same (5 + 1) + 5 = 11; mix (11 + 1) + (11 + 2)
    assert trace.run(TREE, 0) == 25
    order = trace.log
    assert order == [
        "stem",
        "res.body.0",
        "res.body.1",
        "res.shortcut.0",
        "add res",
        "same.body.act",
        "add same",
        "mix.0.0",
        "mix.1.0",
        "mix.1.1",
        "cat mix",
    ]
    assert [p for p in order if " " not in p] == [p for p, _ in walk(TREE)]


@pytest.mark.parametrize("network", list(catalogue()), ids=lambda n: f"{n.name}")
def test_every_catalogue_network_is_walked_whole(network: Network):
    nodes = Record().fold(network)
    assert len(nodes) == len(set(nodes))
    leaves = [p for p, _ in walk(network)]
    assert leaves_of(nodes, network) == leaves
    assert [row.path for row in infer(network)] == leaves  # the shape walk
    weighted = list(dict.fromkeys(key.rsplit(".", 1)[0] for key, _ in state_keys(network)))
    assert weighted == [p for p in leaves if p in weighted]
    assert set(init_weights(network, 0)) == {key for key, _ in state_keys(network)}


def test_a_translator_that_skips_a_node_is_caught():
    """The check above fails for a mutant that drops every Residual shortcut."""
    network = build("resnet50", (3, 32, 32), 10)
    nodes = SkipShortcuts().fold(network)
    with pytest.raises(AssertionError):
        assert leaves_of(nodes, network) == [p for p, _ in walk(network)]
    with pytest.raises(AssertionError):
        assert leaves_of(SkipShortcuts().fold(TREE), TREE) == [p for p, _ in walk(TREE)]


def test_a_forward_that_drops_a_branch_changes_the_reference(monkeypatch):
    """The reference runs through the shared walk: a broken walk shows in its numbers."""
    from harness.models import tree

    network = build("googlenet", (3, 32, 32), 10)
    weights = init_weights(network, 0)
    images = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    before = forward(network, weights, images)
    real = tree.children

    def reversed_branches(node, prefix=""):
        pairs = real(node, prefix)
        return pairs[::-1] if isinstance(node, Concat) else pairs

    monkeypatch.setattr(tree, "children", reversed_branches)
    after = forward(network, weights, images)
    assert np.abs(after - before).max() > 0.1 * np.abs(before).max()
    monkeypatch.undo()
    np.testing.assert_array_equal(forward(network, weights, images), before)


def test_an_unknown_node_or_missing_rule_is_named():
    with pytest.raises(TypeError, match="0: not a layer or container"):
        list(walk(Sequential(("nope",))))  # type: ignore[arg-type]

    class LeavesOnly(Fold[int]):
        def leaf(self, layer, path):
            return 1

    with pytest.raises(TypeError, match=r"res\.body: LeavesOnly has no rule for Sequential"):
        LeavesOnly().fold(TREE)


@pytest.mark.parametrize(
    "layer",
    [MaxPool(3), MaxPool(3, 2, 1, True), AvgPool((3, 2), (2, 1), (1, 0), True), AvgPool(2)],
)
@pytest.mark.parametrize("size", [(7, 9), (8, 8)])
def test_pool_geometry_is_pytorchs(layer, size):
    geometry = pool_geometry(layer, *size)
    stride = layer.kernel if layer.stride is None else layer.stride
    k, s, p = (np.broadcast_to(v, 2).tolist() for v in (layer.kernel, stride, layer.padding))
    assert (list(geometry.kernel), list(geometry.stride), list(geometry.padding)) == (k, s, p)
    for axis in (0, 1):
        args = (size[axis], k[axis], s[axis], p[axis], layer.ceil_mode)
        assert geometry.out[axis] == pool_output_size(*args)
        assert geometry.pads[axis] == pool_padding(*args)
        start = np.arange(geometry.out[axis]) * s[axis] - p[axis]
        clipped = np.minimum(start + k[axis], size[axis] + p[axis]) - start
        assert list(geometry.divisors[axis]) == clipped.tolist()


def _code(path: str) -> str:
    """The file without comments and docstrings (roughly: lines inside triple quotes)."""
    text = (ROOT / path).read_text()
    text = re.sub(r'"""(?:.|\n)*?"""', "", text)
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


@pytest.mark.parametrize("path", TRANSLATORS)
def test_translators_leave_the_descent_to_the_walk(path):
    code = _code(path)
    for pattern in ("child_names(", "node.body", "node.shortcut", "node.branches", "node.layers"):
        assert pattern not in code, f"{path} descends the tree itself ({pattern!r})"
    if path != "models/graph.py":
        assert "stride is None" not in code, f"{path}: a pool's stride default is graph.window's"


def test_loss_scale_values_live_once():
    """Only backends/loss_scale.py writes the fp16 loss-scale numbers down."""
    pattern = re.compile(r"2\.0?\s*\*\*\s*16|65536|(INITIAL_SCALE|GROWTH_INTERVAL)\s*=")
    for path in sorted((ROOT / "backends").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        if rel != "backends/loss_scale.py":
            assert not pattern.search(_code(rel)), f"{rel} has its own loss-scale values"


def test_containers_are_the_vocabularys():
    assert set(CONTAINERS) == {Sequential, Residual, Concat}
