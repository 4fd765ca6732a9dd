"""A small typed facade over pluggy: the core never calls ``pm.hook`` untyped."""

from __future__ import annotations

import sys
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
    from harness.results.schema import RepeatRecord, RunResult
    from harness.run.spec import RunSpec
    from harness.sweep.executors import Executor

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
        self.load_errors: dict[str, str] = {}  # plugin name -> why it was left out
        if entry_points:
            self._load_entry_points()
            self._load_env_plugins()
        self._check_unknown_hooks()
        self.backends: dict[str, BackendInfo] = {}
        self.launchers: dict[str, Launcher] = {}
        self._executors: dict[str, Executor] | None = None  # registered on first use
        self._owners: dict[tuple[str, str], str] = {}  # (kind, name) -> plugin name
        self._register("harness_register_backends", "backend", self.backends)
        self._register("harness_register_launchers", "launcher", self.launchers)

    # Loading, each plugin on its own: one broken plugin is reported and left out --------

    def _leave_out(self, plugin_name: str, why: str) -> None:
        """Reports ``plugin_name`` (in ``load_errors``) and unregisters it with all it gave."""
        self.load_errors.setdefault(plugin_name, why)
        plugin = self._pm.get_plugin(plugin_name)
        if plugin is not None:
            self._pm.unregister(plugin, name=plugin_name)
        for (kind, name), owner in list(getattr(self, "_owners", {}).items()):
            if owner == plugin_name:
                del self._owners[(kind, name)]
                registries = {"backend": self.backends, "launcher": self.launchers}
                registries.get(kind, self._executors or {}).pop(name, None)

    def _check_unknown_hooks(self) -> None:
        """pluggy's check_pending, per plugin: a hook no hookspec defines (a misspelt
        ``harness_register_backend``) is reported and its plugin left out."""
        for name, caller in list(vars(self._pm.hook).items()):
            if not name.startswith("harness_") or caller.has_spec():
                continue
            for impl in caller.get_hookimpls():
                if impl.optionalhook:
                    continue
                known = ", ".join(sorted(n for n in dir(hookspecs) if n.startswith("harness_")))
                self._leave_out(
                    impl.plugin_name, f"unknown hook {name!r} (no such hookspec; hooks: {known})"
                )
        self._pm.check_pending()  # nothing unknown is left

    def _register(self, hook: str, kind: str, registry: dict[str, Any]) -> None:
        """Calls one registration hook plugin by plugin; a plugin that raises or whose
        name clashes with an earlier plugin's is reported and left out."""
        caller = getattr(self._pm.hook, hook)
        for impl in caller.get_hookimpls():  # registration order: the first plugin wins
            plugin_name = impl.plugin_name
            added: list[Any] = []
            try:
                impl.function(register=added.append)
            except Exception as exc:
                self._leave_out(plugin_name, f"{hook} raised {type(exc).__name__}: {exc}")
                continue
            clash = next((item.name for item in added if (kind, item.name) in self._owners), None)
            if clash is None:
                names = [item.name for item in added]
                clash = next((n for n in names if names.count(n) > 1), None)
            if clash is not None:
                owner = self._owners.get((kind, clash), plugin_name)
                self._leave_out(
                    plugin_name, f"registers the {kind} {clash!r}, which {owner!r} registers too"
                )
                continue
            for item in added:
                registry[item.name] = item
                self._owners[(kind, item.name)] = plugin_name

    def _load_entry_points(self) -> None:
        # Load one by one so that a broken third-party plugin is reported, not fatal.
        from importlib.metadata import entry_points

        seen: dict[str, str] = {}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in seen or self._pm.get_plugin(ep.name) is not None:
                if seen.get(ep.name) not in (None, ep.value):  # the same one twice is fine
                    self.load_errors[f"{ep.name} ({ep.value})"] = (
                        f"another plugin already uses the entry-point name {ep.name!r} "
                        f"({seen[ep.name]}): rename one of them"
                    )
                continue
            seen[ep.name] = ep.value
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

    @property
    def executors(self) -> dict[str, Executor]:
        """Sweep executors; the built-in ones (harness.sweep.executors) and the plugins'
        are registered on first use, so that workers never import the sweep package."""
        if self._executors is None:
            from harness.sweep import executors as builtin

            if self._pm.get_plugin(builtin.__name__) is None:
                self._pm.register(builtin, name=builtin.__name__)
            self._executors = {}
            self._register("harness_register_executors", "executor", self._executors)
        return self._executors

    def executor(self, name: str) -> Executor:
        try:
            return self.executors[name]
        except KeyError:
            choices = ", ".join(sorted(self.executors))
            raise UsageError(f"unknown executor {name!r}; registered: {choices}") from None

    def _call_each(self, hook: str, *, first: bool = False, **kwargs: Any) -> Any:
        """Calls ``hook`` plugin by plugin; one that raises is reported on stderr and left
        out, and the others still run. ``first``: stop at the first non-None result."""
        caller = getattr(self._pm.hook, hook)
        for impl in reversed(caller.get_hookimpls()):
            try:
                result = impl.function(**{k: kwargs[k] for k in impl.argnames if k in kwargs})
            except Exception as exc:
                why = f"{hook} raised {type(exc).__name__}: {exc}"
                print(f"warning: plugin {impl.plugin_name!r} left out: {why}", file=sys.stderr)
                self._leave_out(impl.plugin_name, why)
                continue
            if first and result is not None:
                return result
        return None

    def refusal(self, spec: RunSpec, backend: BackendInfo, network: Network) -> str | None:
        return self._call_each(
            "harness_refuse_run", first=True, spec=spec, backend=backend, network=network
        )

    # Observer hooks ---------------------------------------------------------------

    def run_started(self, spec: RunSpec, run_dir: Path) -> None:
        self._call_each("harness_run_started", spec=spec, run_dir=run_dir)

    def repeat_finished(self, spec: RunSpec, repeat: RepeatRecord) -> None:
        self._call_each("harness_repeat_finished", spec=spec, repeat=repeat)

    def run_finished(self, spec: RunSpec, result: RunResult) -> None:
        self._call_each("harness_run_finished", spec=spec, result=result)


@cache
def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, with every installed plugin loaded."""
    return PluginManager()
