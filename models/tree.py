"""One walk over the layer vocabulary, shared by every translator.

A network is a tree of containers (Sequential, Residual, Concat) over leaf layers. This
module is the only place that descends it and names its parts; the backends, the NumPy
reference and the shape/FLOP counter (models.graph) translate leaf layers only, and say
what each container becomes.

Path rules (backends and weight files rely on them):

- a leaf layer's path is the names of the containers leading to it, joined with ".",
  with no leading dot; the network's top-level Sequential contributes no segment;
- a Sequential names its children by ``child_names()``: their given names, or their
  indices "0", "1", ... when it has none; names must be unique, non-empty, dot-free;
- a Residual names its children ``body`` and ``shortcut`` (an identity shortcut has no
  layers, so no path);
- a Concat names its branches by index: "0", "1", ...

Three ways to use it, all one recursion (``Fold.fold``):

- ``fold(network, leaf=..., sequential=..., residual=..., concat=...)``: builds a result
  bottom-up from plain functions (PyTorch modules, Gluon blocks, the leaf list of
  ``walk``);
- ``Fold``: the same as a class, whose ``visit(child, path)`` hook a translator may
  override (the NumPy plugin refuses containers there before their children);
- ``Forward``: runs a value through the tree in execution order: ``layer(layer, path,
  x)`` for every leaf, ``add`` for a Residual (its body's output, then the shortcut's or
  the input itself), ``concatenate`` for a Concat (TensorFlow, the NumPy reference,
  shape inference; a Flax Block overrides ``visit`` to give each container a scope).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from . import layers as L
from .layers import Layer, Network, Node

T = TypeVar("T")
X = TypeVar("X")

LEAVES = (
    L.Conv2D,
    L.BatchNorm,
    L.ReLU,
    L.MaxPool,
    L.AvgPool,
    L.GlobalAvgPool,
    L.Flatten,
    L.Dense,
    L.Dropout,
)
CONTAINERS = (L.Sequential, L.Residual, L.Concat)
Container = L.Sequential | L.Residual | L.Concat


def join(prefix: str, name: str) -> str:
    """The path of child ``name`` of the node at ``prefix``."""
    return f"{prefix}.{name}" if prefix else name


def children(node: Container, prefix: str = "") -> list[tuple[str, Node]]:
    """(name, child) of a container, in execution order, by the path rules above.

    Raises ValueError for Sequential child names that are empty, contain ".", or repeat
    (``prefix``, the container's path, names it in the message).
    """
    if isinstance(node, L.Sequential):
        names = node.child_names()
        if len(set(names)) != len(names) or any(not n or "." in n for n in names):
            raise ValueError(
                f"{prefix or '<root>'}: child names must be unique, "
                f"non-empty and dot-free, got {names}"
            )
        return list(zip(names, node.layers, strict=True))
    if isinstance(node, L.Residual):
        pairs: list[tuple[str, Node]] = [("body", node.body)]
        return pairs if node.shortcut is None else [*pairs, ("shortcut", node.shortcut)]
    return [(str(index), branch) for index, branch in enumerate(node.branches)]


class Fold(Generic[T]):
    """A bottom-up translation: ``fold(node)`` is one T per node, children first.

    Subclasses define ``leaf`` and the container rules their networks need; a rule
    left undefined raises TypeError naming the container and its path.
    """

    def fold(self, node: Node | Network, path: str = "") -> T:
        """The translation of ``node`` (of a Network: of its body) at ``path``."""
        if isinstance(node, Network):
            node = node.body
        if isinstance(node, LEAVES):
            return self.leaf(node, path)
        if not isinstance(node, CONTAINERS):
            raise TypeError(f"{path or '<root>'}: not a layer or container: {node!r}")
        parts = [
            (name, self.visit(child, join(path, name))) for name, child in children(node, path)
        ]
        if isinstance(node, L.Sequential):
            return self.sequential(node, path, parts)
        if isinstance(node, L.Residual):
            return self.residual(node, path, parts[0][1], parts[1][1] if len(parts) > 1 else None)
        return self.concat(node, path, [part for _, part in parts])

    def visit(self, child: Node, path: str) -> T:
        """The translation of one child; descends. Override to give children a scope."""
        return self.fold(child, path)

    def leaf(self, layer: Layer, path: str) -> T:
        raise NotImplementedError

    def sequential(self, node: L.Sequential, path: str, parts: list[tuple[str, T]]) -> T:
        raise self.refuse(node, path)

    def residual(self, node: L.Residual, path: str, body: T, shortcut: T | None) -> T:
        raise self.refuse(node, path)

    def concat(self, node: L.Concat, path: str, branches: list[T]) -> T:
        raise self.refuse(node, path)

    def refuse(self, node: Node, path: str) -> TypeError:
        return TypeError(f"{path or '<root>'}: {type(self).__name__} has no rule for {node!r}")


class _Rules(Fold[Any]):
    """A Fold whose rules are plain functions (see ``fold``)."""

    def __init__(self, **rules: Callable[..., Any] | None) -> None:
        self.rules = rules

    def _rule(self, name: str, node: Node | None, path: str) -> Callable[..., Any]:
        rule = self.rules[name]
        if rule is None:
            raise self.refuse(node, path)
        return rule

    def leaf(self, layer, path):
        return self._rule("leaf", layer, path)(layer, path)

    def sequential(self, node, path, parts):
        return self._rule("sequential", node, path)(parts)

    def residual(self, node, path, body, shortcut):
        return self._rule("residual", node, path)(body, shortcut)

    def concat(self, node, path, branches):
        return self._rule("concat", node, path)(branches)


def fold(
    node: Node | Network,
    *,
    leaf: Callable[[Layer, str], T],
    sequential: Callable[[list[tuple[str, T]]], T] | None = None,
    residual: Callable[[T, T | None], T] | None = None,
    concat: Callable[[list[T]], T] | None = None,
    path: str = "",
) -> T:
    """``node`` translated bottom-up: ``leaf(layer, path)`` for every leaf layer, then
    ``sequential([(name, part), ...])``, ``residual(body, shortcut or None)`` and
    ``concat([branch, ...])`` with the children's results. A rule not given refuses
    its container (TypeError naming the path)."""
    rules = _Rules(leaf=leaf, sequential=sequential, residual=residual, concat=concat)
    return rules.fold(node, path)


class Forward(Fold[Callable[[X], X]], Generic[X]):
    """Runs a value through the tree: ``run(node, x)``.

    Subclasses define ``layer(layer, path, x)``; ``add`` (a Residual: the body's output,
    then the shortcut's or the input itself) defaults to ``body + shortcut``;
    ``concatenate`` (a Concat: the branches' outputs in order) has no default.
    """

    def run(self, node: Node | Network, x: X, path: str = "") -> X:
        """``node`` applied to ``x``; the whole tree is checked before any layer runs."""
        return self.fold(node, path)(x)

    def layer(self, layer: Layer, path: str, x: X) -> X:
        raise NotImplementedError

    def add(self, path: str, body: X, shortcut: X) -> X:
        return body + shortcut  # type: ignore[operator]

    def concatenate(self, path: str, outputs: list[X]) -> X:
        raise NotImplementedError

    # The Fold rules: closures that run in execution order.

    def leaf(self, layer: Layer, path: str) -> Callable[[X], X]:
        return lambda x: self.layer(layer, path, x)

    def sequential(self, node, path, parts: list[tuple[str, Callable[[X], X]]]):
        def run(x: X) -> X:
            for _, part in parts:
                x = part(x)
            return x

        return run

    def residual(self, node, path, body, shortcut):
        return lambda x: self.add(path, body(x), x if shortcut is None else shortcut(x))

    def concat(self, node, path, branches: list[Callable[[X], X]]):
        return lambda x: self.concatenate(path, [branch(x) for branch in branches])


def _flat(parts: list[list[tuple[str, Layer]]]) -> list[tuple[str, Layer]]:
    return [row for part in parts for row in part]


def walk(node: Node | Network, prefix: str = "") -> Iterator[tuple[str, Layer]]:
    """Yield (path, layer) for every leaf layer under ``node``, in execution order.

    Raises ValueError for child names that are empty, contain ".", or repeat, and
    TypeError for anything that is neither a layer nor a container.
    """
    yield from fold(
        node,
        leaf=lambda layer, path: [(path, layer)],
        sequential=lambda parts: _flat([part for _, part in parts]),
        residual=lambda body, shortcut: body + (shortcut or []),
        concat=_flat,
        path=prefix,
    )
