"""The plugin API: hooks called through pluggy (wrappers and tracing see them)."""

from __future__ import annotations

from typing import Any

from harness import hookimpl
from harness.backend import BackendInfo
from harness.plugins import TRACE_ENV, PluginManager


def _info(name: str) -> BackendInfo:
    return BackendInfo(name, name.title(), (), "-", "x:Y")


class Good:
    __name__ = "good"

    @hookimpl
    def harness_register_backends(self, register: Any) -> None:
        register(_info("good"))


class Other:
    __name__ = "other"

    @hookimpl
    def harness_register_backends(self, register: Any) -> None:
        register(_info("other"))

    @hookimpl
    def harness_run_finished(self, spec: Any, result: Any) -> None:
        raise ValueError("observer broke")


class Wrapping:
    """New-style wrappers around a registration hook and an observer hook."""

    __name__ = "wrapping"

    def __init__(self) -> None:
        self.seen: list[Any] = []

    @hookimpl(wrapper=True)
    def harness_register_backends(self, register: Any) -> Any:
        self.seen.append("register: before")
        result = yield
        self.seen.append("register: after")
        return result

    @hookimpl(wrapper=True)
    def harness_run_finished(self, spec: Any, result: Any) -> Any:
        self.seen.append(("run_finished", result))
        try:
            return (yield)
        except ValueError as exc:
            self.seen.append(("raised", str(exc)))
            raise


class OldStyle:
    __name__ = "old-style"

    def __init__(self) -> None:
        self.outcomes: list[Any] = []

    @hookimpl(hookwrapper=True)
    def harness_register_backends(self, register: Any) -> Any:
        outcome = yield
        self.outcomes.append(outcome.exception)


class BrokenWrapper:
    __name__ = "broken-wrapper"

    @hookimpl(wrapper=True)
    def harness_register_backends(self, register: Any) -> Any:
        raise RuntimeError("wrapper broke")
        yield  # a generator, as pluggy wants


def test_a_wrapper_runs_around_each_plugin_call_and_tracing_sees_them(capsys) -> None:
    wrapping = Wrapping()
    pm = PluginManager(entry_points=False, plugins=(wrapping, Good()))
    assert set(pm.backends) == {"good"}
    assert wrapping.seen == ["register: before", "register: after"]

    lines: list[str] = []
    pm.pluggy.trace.root.setwriter(lines.append)
    undo = pm.pluggy.enable_tracing()
    pm.run_finished(None, "the result")  # type: ignore[arg-type]
    undo()
    # no plugin implements it: one call, for the wrapper
    assert wrapping.seen[-1] == ("run_finished", "the result")
    assert any("harness_run_finished" in line for line in lines), lines
    assert capsys.readouterr().err == ""


def test_a_wrapper_sees_a_plugin_raise_and_the_plugin_alone_is_left_out(capsys) -> None:
    wrapping, old = Wrapping(), OldStyle()
    pm = PluginManager(entry_points=False, plugins=(wrapping, old, Good(), Other()))
    assert set(pm.backends) == {"good", "other"}
    assert old.outcomes == [None, None]  # one call per registering plugin
    assert pm._owners[("backend", "other")] == "other"
    pm.run_finished(None, "r")  # type: ignore[arg-type]
    assert ("raised", "observer broke") in wrapping.seen
    assert "plugin 'other' left out: harness_run_finished raised" in capsys.readouterr().err
    assert set(pm.load_errors) == {"other"}
    assert set(pm.backends) == {"good"}  # what the broken plugin registered goes with it


def test_a_broken_wrapper_is_left_out_and_the_plugin_it_wrapped_still_registers() -> None:
    pm = PluginManager(entry_points=False, plugins=(BrokenWrapper(), Good()))
    assert set(pm.backends) == {"good"}
    assert pm._owners[("backend", "good")] == "good"
    assert "wrapper broke" in pm.load_errors["broken-wrapper"]
    assert set(pm.load_errors) == {"broken-wrapper"}


def test_the_trace_variable_traces_from_the_registration_hooks_on(monkeypatch, capsys) -> None:
    monkeypatch.setenv(TRACE_ENV, "1")
    PluginManager(entry_points=False, plugins=(Good(),))
    err = capsys.readouterr().err
    assert "harness_register_backends" in err and "harness_register_launchers" in err
    assert "plugins: good" in err and "plugins: harness.launchers" in err
