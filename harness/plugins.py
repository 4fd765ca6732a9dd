"""A small typed facade over pluggy: the core never calls ``pm.hook`` untyped."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from harness import hookspecs, launchers
from harness.errors import UsageError

if TYPE_CHECKING:
    from harness.backend import BackendInfo
    from harness.launchers import Launcher
    from harness.models import Network
    from harness.run.spec import RunSpec

ENTRY_POINT_GROUP = "harness"
# Extra plugin modules to load, comma-separated import names: for developing a plugin
# before packaging it, and for tests. Workers inherit it with the environment.
PLUGINS_ENV = "HARNESS_PLUGINS"


class PluginManager:
    """Loads plugins and keeps what they registered."""

    def __init__(self, *, entry_points: bool = True, plugins: tuple[object, ...] = ()) -> None:
        self._pm = pluggy.PluginManager("harness")
        self._pm.add_hookspecs(hookspecs)
        self._pm.register(launchers, name="harness.launchers")
        for plugin in plugins:
            self._pm.register(plugin)
        self.load_errors: dict[str, str] = {}
        if entry_points:
            self._load_entry_points()
            self._load_env_plugins()
        self.backends: dict[str, BackendInfo] = {}
        self.launchers: dict[str, Launcher] = {}
        self._pm.hook.harness_register_backends(register=self._add_backend)
        self._pm.hook.harness_register_launchers(register=self._add_launcher)

    def _load_entry_points(self) -> None:
        # Load one by one so that a broken third-party plugin is reported, not fatal.
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if self._pm.get_plugin(ep.name) is not None:
                continue
            try:
                self._pm.register(ep.load(), name=ep.name)
            except Exception as exc:
                self.load_errors[ep.name] = f"{type(exc).__name__}: {exc}"

    def _load_env_plugins(self) -> None:
        import importlib
        import os

        for name in filter(None, (n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(","))):
            if self._pm.get_plugin(name) is not None:
                continue
            try:
                self._pm.register(importlib.import_module(name), name=name)
            except Exception as exc:
                self.load_errors[name] = f"{type(exc).__name__}: {exc}"

    def _add_backend(self, info: BackendInfo) -> None:
        if info.name in self.backends:
            raise ValueError(f"two plugins register the backend {info.name!r}")
        self.backends[info.name] = info

    def _add_launcher(self, launcher: Launcher) -> None:
        if launcher.name in self.launchers:
            raise ValueError(f"two plugins register the launcher {launcher.name!r}")
        self.launchers[launcher.name] = launcher

    def backend(self, name: str) -> BackendInfo:
        try:
            return self.backends[name]
        except KeyError:
            choices = ", ".join(sorted(self.backends)) or "none installed"
            hint = ""
            if name in self.load_errors:
                hint = f" (its plugin failed to load: {self.load_errors[name]})"
            raise UsageError(f"unknown tool {name!r}{hint}; choose from: {choices}") from None

    def launcher(self, name: str) -> Launcher:
        try:
            return self.launchers[name]
        except KeyError:
            choices = ", ".join(sorted(self.launchers))
            raise UsageError(f"unknown launcher {name!r}; registered: {choices}") from None

    def refusal(self, spec: RunSpec, backend: BackendInfo, network: Network) -> str | None:
        return self._pm.hook.harness_refuse_run(spec=spec, backend=backend, network=network)

    # Observer hooks ---------------------------------------------------------------

    def run_started(self, spec: RunSpec, run_dir: Path) -> None:
        self._pm.hook.harness_run_started(spec=spec, run_dir=run_dir)

    def repeat_finished(self, spec: RunSpec, repeat: dict[str, Any]) -> None:
        self._pm.hook.harness_repeat_finished(spec=spec, repeat=repeat)

    def run_finished(self, spec: RunSpec, result: dict[str, Any]) -> None:
        self._pm.hook.harness_run_finished(spec=spec, result=result)


@cache
def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, with every installed plugin loaded."""
    return PluginManager()
