"""Small in-process plugins shared by the plugin tests (tests/test_faults.py and
tests/test_plugin_api.py): registered with ``PluginManager(plugins=...)``."""

from __future__ import annotations

from typing import Any

from harness import hookimpl
from harness.backend import BackendInfo


def backend_info(name: str) -> BackendInfo:
    """A backend that only registers (its trainer is never loaded)."""
    return BackendInfo(name, name.title(), (), "-", "x:Y")


class Good:
    """A plugin that registers one backend, ``good``."""

    __name__ = "good"

    @hookimpl
    def harness_register_backends(self, register: Any) -> None:
        register(backend_info("good"))
