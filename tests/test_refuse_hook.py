"""A plugin can refuse a run before any worker starts (harness_refuse_run)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness import hookimpl
from harness.backend import BackendInfo
from harness.errors import UsageError
from harness.models import layers
from harness.plugins import PluginManager
from harness.run.orchestrator import plan_run
from harness.spec import RunSpec

PICKY = BackendInfo(name="picky", framework="Picky", requires=(), install_hint="-", trainer="x:Y")


class PickyPlugin:
    @hookimpl
    def harness_register_backends(self, register: Callable[[BackendInfo], None]) -> None:
        register(PICKY)

    @hookimpl
    def harness_refuse_run(self, spec, backend, network) -> str | None:
        if backend.name != "picky":
            return None
        has_bn = any(isinstance(n, layers.BatchNorm) for n in _leaves(network.body))
        return "it has no batch norm" if has_bn else None


def _leaves(node):
    from harness.models.graph import walk

    return [layer for _, layer in walk(node)]


def test_refusal_is_a_usage_error_before_any_worker() -> None:
    pm = PluginManager(entry_points=False, plugins=(PickyPlugin(),))
    plan = plan_run(RunSpec(tool="picky", model="lenet", dataset="mnist"), pm)
    assert plan.processes == 1
    with pytest.raises(
        UsageError, match="picky cannot run resnet50 on cifar10: it has no batch norm"
    ):
        plan_run(RunSpec(tool="picky", model="resnet50", dataset="cifar10"), pm)
