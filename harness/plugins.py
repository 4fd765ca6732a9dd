"""A small typed facade over pluggy: the core never calls ``pm.hook`` untyped.

Hooks are called through pluggy's hook callers, so plugins' hook wrappers
(``@hookimpl(wrapper=True)`` and old-style ``hookwrapper=True``) and pluggy's tracing
(``pm.pluggy.enable_tracing()``, or ``HARNESS_TRACE_HOOKS=1``) see every call. Each
plugin's implementation is called on its own, inside every wrapper
(``subset_hook_caller``), so that one that raises is reported and left out while the
others still run; a hook no plugin implements is called once, for the wrappers.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Callable
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from harness import hookspecs, launchers
from harness.backend import load_reference
from harness.errors import UsageError
from harness.hookspecs import PLUGIN_API_VERSION

if TYPE_CHECKING:
    from harness.backend import BackendInfo, ParityProbe
    from harness.launchers import Launcher
    from harness.models import Network
    from harness.spec import RunSpec
    from harness.store.schema import RepeatRecord, RunResult
    from harness.sweep.executors import Executor

ENTRY_POINT_GROUP = "harness"
# Extra plugin modules to load, comma-separated import names: for developing a plugin
# before packaging it, and for tests. Workers inherit it with the environment.
PLUGINS_ENV = "HARNESS_PLUGINS"
# The harness's own executors' plugin module, loaded by name on first use: the sweep
# package sits above this one (.importlinter), and workers never need it.
BUILTIN_EXECUTORS = "harness.sweep.executors"
# Any value but "" or "0": pluggy's trace of every hook call (arguments, results) on
# stderr, from the first registration hook on (a worker's goes to its log).
TRACE_ENV = "HARNESS_TRACE_HOOKS"
# The attribute in which a plugin declares the plugin API it was written against.
API_ATTRIBUTE = "HARNESS_PLUGIN_API"


def _major_minor(version: object) -> tuple[int, int] | None:
    parts = version.split(".") if isinstance(version, str) else []
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def api_refusal(declared: object, current: str = PLUGIN_API_VERSION) -> str | None:
    """Why a plugin declaring ``HARNESS_PLUGIN_API = declared`` cannot load into a harness
    with plugin API ``current`` (one line naming both), or None when it can: the same
    major version, and a minor no newer than the harness's."""
    have = _major_minor(current)
    assert have is not None, current
    wants = _major_minor(declared)
    if wants is None:
        return (
            f"declares {API_ATTRIBUTE} = {repr(declared)[:40]}, not a 'MAJOR.MINOR' string; "
            f"this harness has plugin API {current}"
        )
    if wants[0] != have[0]:
        return (
            f"written for plugin API {declared}, this harness has plugin API {current} "
            f"(another major version): use a release of the plugin for API {have[0]}.x"
        )
    if wants[1] > have[1]:
        return (
            f"written for plugin API {declared}, this harness has plugin API {current} "
            "(an older minor version): upgrade the harness"
        )
    return None


def _culprit(exc: BaseException, impls: list[pluggy.HookImpl]) -> str | None:
    """The plugin whose implementation (a wrapper or not) raised ``exc``: the innermost
    frame of the traceback that runs one of ``impls``; None if none does."""
    owners = {}
    for impl in impls:
        code = getattr(inspect.unwrap(impl.function), "__code__", None)
        if code is not None:
            owners[code] = impl.plugin_name
    found = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        found = owners.get(frame.f_code, found)
    return found


class PluginManager:
    """Loads plugins and keeps what they registered."""

    def __init__(self, *, entry_points: bool = True, plugins: tuple[object, ...] = ()) -> None:
        self._pm = pluggy.PluginManager("harness")
        self._pm.add_hookspecs(hookspecs)
        if os.environ.get(TRACE_ENV, "") not in ("", "0"):
            self._trace_to_stderr()
        self._pm.register(launchers, name="harness.launchers")
        self.load_errors: dict[str, str] = {}  # plugin name -> why it was left out
        for plugin in plugins:
            self._add(plugin, self._pm.get_canonical_name(plugin))
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

    def _trace_to_stderr(self) -> None:
        """pluggy's trace of every hook call on stderr, each call's plugins named."""
        hooktrace = self._pm.trace.root.get("hook")
        self._pm.add_hookcall_monitoring(
            lambda hook, impls, kwargs: hooktrace(
                "plugins:", ", ".join(i.plugin_name for i in reversed(impls))
            ),
            lambda outcome, hook, impls, kwargs: None,
        )
        self._pm.trace.root.setwriter(sys.stderr.write)
        self._pm.enable_tracing()  # outermost: the call's line comes before its plugins

    @property
    def pluggy(self) -> pluggy.PluginManager:
        """The pluggy PluginManager underneath: for tracing (``enable_tracing()``,
        ``trace.root.setwriter``) and introspection. Plugins registered through it skip
        the checks this class makes; hooks called through it skip its fault isolation."""
        return self._pm

    # Loading, each plugin on its own: one broken plugin is reported and left out --------

    def _add(self, plugin: object, name: str) -> bool:
        """Registers ``plugin`` as ``name`` unless the plugin API version it declares is
        one this harness cannot serve (reported in ``load_errors``)."""
        declared = getattr(plugin, API_ATTRIBUTE, None)
        why = None if declared is None else api_refusal(declared)
        if why is not None:
            self.load_errors[name] = why
            return False
        self._pm.register(plugin, name=name)
        return True

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

    # Calling hooks, plugin by plugin, through pluggy ------------------------------------

    def _implementations(self, hook: str) -> list[pluggy.HookImpl | None]:
        """The implementations of ``hook`` that are not wrappers, in registration order;
        ``[None]`` when there are none (the hook is still called once, for wrappers)."""
        impls = getattr(self._pm.hook, hook).get_hookimpls()
        return [i for i in impls if not (i.wrapper or i.hookwrapper)] or [None]

    def _call_plugin(
        self,
        hook: str,
        impl: pluggy.HookImpl | None,
        kwargs: Callable[[], dict[str, Any]],
        *,
        again: bool,
        warn: bool = False,
    ) -> tuple[bool, Any]:
        """Calls ``impl``'s plugin alone (None: no plugin), inside every wrapper, through
        pluggy: ``(True, its result)``, or ``(False, None)`` when it raised and was left
        out. A wrapper that raises is blamed and left out instead (by the traceback);
        ``again``: the plugin is then called once more, with fresh ``kwargs()``, without
        that wrapper. ``warn``: a plugin left out is also reported on stderr."""
        while impl is None or self._pm.is_registered(impl.plugin):
            others = [i.plugin for i in self._implementations(hook) if i not in (None, impl)]
            caller = self._pm.subset_hook_caller(hook, remove_plugins=others)
            impls = caller.get_hookimpls()
            try:
                return True, caller(**kwargs())
            except Exception as exc:
                culprit = _culprit(exc, impls) or (impl.plugin_name if impl else None)
                if culprit is None:
                    raise
                why = f"{hook} raised {type(exc).__name__}: {exc}"
                if warn:
                    print(f"warning: plugin {culprit!r} left out: {why}", file=sys.stderr)
                self._leave_out(culprit, why)
                if not again or impl is None or culprit == impl.plugin_name:
                    break
        return False, None

    def _register(self, hook: str, kind: str, registry: dict[str, Any]) -> None:
        """Calls one registration hook plugin by plugin; a plugin that raises or whose
        name clashes with an earlier plugin's is reported and left out."""
        for impl in self._implementations(hook):  # registration order: the first wins
            added: list[Any] = []

            def fresh(added: list[Any] = added) -> dict[str, Any]:
                added.clear()
                return {"register": added.append}

            ok, _ = self._call_plugin(hook, impl, fresh, again=True)
            if not ok or impl is None:
                continue
            plugin_name = impl.plugin_name
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
        seen: dict[str, str] = {}
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in seen or self._pm.get_plugin(ep.name) is not None:
                if seen.get(ep.name) not in (None, ep.value):  # the same one twice is fine
                    self.load_errors[f"{ep.name} ({ep.value})"] = (
                        f"another plugin already uses the entry-point name {ep.name!r} "
                        f"({seen[ep.name]}): rename one of them"
                    )
                continue
            seen[ep.name] = ep.value
            try:
                self._add(ep.load(), ep.name)
            except Exception as exc:
                self.load_errors[ep.name] = f"{type(exc).__name__}: {exc}"

    def _load_env_plugins(self) -> None:
        for name in filter(None, (n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(","))):
            if self._pm.get_plugin(name) is not None:
                continue
            try:
                self._add(importlib.import_module(name), name)
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
            builtin = importlib.import_module(BUILTIN_EXECUTORS)  # by name: sweep is above
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
        """Calls ``hook`` plugin by plugin, in pluggy's order, each inside every wrapper;
        one that raises is reported on stderr and left out, and the others still run.
        ``first`` (a firstresult hook): stop at the first non-None result."""
        for impl in reversed(self._implementations(hook)):
            ok, result = self._call_plugin(hook, impl, lambda: kwargs, again=False, warn=True)
            if ok and first and result is not None:
                return result
        return None

    def refusal(self, spec: RunSpec, backend: BackendInfo, network: Network) -> str | None:
        return self._call_each(
            "harness_refuse_run", first=True, spec=spec, backend=backend, network=network
        )

    # What a backend supplies beyond training and inference (plugin API 1.2) ---------

    def parity_probe(self, backend: BackendInfo) -> ParityProbe | None:
        """``backend``'s parity probe, imported and built now (in the parity process:
        it may import the framework); None when it has none."""

        reference = self._call_each("harness_parity_probe", first=True, backend=backend)
        return None if reference is None else load_reference(reference)()

    def ops_kernels(self, backend: BackendInfo) -> str | None:
        """The import name of ``backend``'s operation kernels module; None: no ``ops``."""
        return self._call_each("harness_ops_kernels", first=True, backend=backend)

    def model_loader(self, backend: BackendInfo, format: str) -> str | None:
        """``"module:function"`` reading a user's model file of ``format`` in
        ``backend``'s interpreter; None when ``backend`` cannot run such files."""
        return self._call_each("harness_model_loader", first=True, backend=backend, format=format)

    def model_exporter(self, format: str) -> tuple[BackendInfo, str] | None:
        """The first backend (by name) that writes catalogue networks as model files of
        ``format``, and its ``"module:function"``; None when none does."""
        for name in sorted(self.backends):
            backend = self.backends[name]
            found = self._call_each(
                "harness_model_exporter", first=True, backend=backend, format=format
            )
            if found is not None:
                return backend, found
        return None

    def backends_with(self, hook: str, **kwargs: Any) -> list[str]:
        """The names of the backends for which ``hook`` (one of the four above, asked
        about each backend with ``kwargs``) has an answer: for usage messages."""
        return sorted(
            name
            for name, backend in self.backends.items()
            if self._call_each(hook, first=True, backend=backend, **kwargs) is not None
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
