"""The plugin API: hooks called through pluggy (wrappers and tracing see them), the API
version a plugin declares, and a plugin written against API 1.0 that still trains.

tests/plugins/api_v1_plugin is that plugin: loaded through HARNESS_PLUGINS, as
tests/fake_cli.py loads the fake backend, it is listed and trains through the command
line. It is never updated: a change that breaks it breaks the 1.x promise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from plugin_helpers import Good, backend_info

from harness import hookimpl
from harness.backend import Trainer
from harness.hookspecs import PLUGIN_API_VERSION
from harness.plugins import TRACE_ENV, PluginManager, api_refusal

V1_PLUGIN = Path(__file__).resolve().parent / "plugins" / "api_v1_plugin"


class Other:
    __name__ = "other"

    @hookimpl
    def harness_register_backends(self, register: Any) -> None:
        register(backend_info("other"))

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


class Declares:
    def __init__(self, name: str, version: object) -> None:
        self.__name__ = name
        self.HARNESS_PLUGIN_API = version

    @hookimpl
    def harness_register_backends(self, register: Any) -> None:
        register(backend_info(self.__name__))


def test_the_declared_api_version_is_checked() -> None:
    assert PLUGIN_API_VERSION.startswith("1.")  # 2.0 must refuse tests/plugins/api_v1_plugin
    for accepted in ("1.0", "1.1"):
        assert api_refusal(accepted, current="1.1") is None
    major = api_refusal("2.0", current="1.1")
    assert major is not None and "\n" not in major
    assert "plugin API 2.0" in major and "plugin API 1.1" in major
    assert "another major version" in major
    assert "older minor" in (api_refusal("1.2", current="1.1") or "")
    assert "not a 'MAJOR.MINOR' string" in (api_refusal(1.0, current="1.1") or "")
    assert api_refusal("0.9", current="1.1") is not None
    assert api_refusal("2.0", current="2.3") is None

    plugins = (Declares("v1", "1.0"), Declares("v2", "2.0"), Declares("bad", "x"), Good())
    pm = PluginManager(entry_points=False, plugins=plugins)
    assert set(pm.backends) == {"v1", "good"}
    assert pm.load_errors["v2"] == api_refusal("2.0")
    assert f"plugin API {PLUGIN_API_VERSION}" in pm.load_errors["v2"]
    assert "'x'" in pm.load_errors["bad"]


def test_synchronize_has_a_default_and_the_core_methods_stay_abstract() -> None:
    assert Trainer.__abstractmethods__ == frozenset(
        {"framework_info", "device_batch", "train_step", "loss_value", "evaluate"}
    )
    assert Trainer.synchronize(None, None) is None  # type: ignore[arg-type]


V2_PLUGIN = """
from harness import hookimpl
from harness.backend import BackendInfo

HARNESS_PLUGIN_API = "2.0"


@hookimpl
def harness_register_backends(register):
    register(BackendInfo("apiv2", "API 2.0", (), "-", "harness_api_v2:Nothing"))
"""


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m harness ARGS`` with the 1.0 plugin and one written for API 2.0."""
    (tmp_path / "harness_api_v2.py").write_text(V2_PLUGIN)
    env = {k: v for k, v in os.environ.items() if k != TRACE_ENV}
    env["HARNESS_PLUGINS"] = "harness_api_v1,harness_api_v2"
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(V1_PLUGIN), str(tmp_path), env.get("PYTHONPATH")])
    )
    env["COLUMNS"] = "250"  # one load error per line, however long
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )


def test_a_plugin_for_api_1_0_is_listed_and_trains_beside_a_refused_one(tmp_path) -> None:
    listed = _cli(tmp_path, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    listing = json.loads(listed.stdout)
    tools = {row["tool"]: row for row in listing["tools"]}
    assert tools["apiv1"]["framework"].startswith("Plugin"), tools
    assert "pytorch" in tools  # built-ins still there
    expected = f"written for plugin API 2.0, this harness has plugin API {PLUGIN_API_VERSION}"
    assert listing["errors"]["harness_api_v2"].startswith(expected)
    assert "apiv2" not in tools
    table = _cli(tmp_path, "list")  # the table says the same
    assert "failed to load: " + expected[:40] in table.stdout

    run = _cli(
        tmp_path,
        *("--tool", "apiv1", "--model", "lenet", "--dataset", "mnist", "--synthetic"),
        *("--warmup-steps", "2", "--steps", "5", "--repeats", "1", "--batch-size", "16"),
        *("--validate", "--idle-baseline", "0", "--output-dir", str(tmp_path / "logs")),
        "--json",
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["summary"]["status"] == "ok"
    (repeat,) = result["repeats"]
    assert repeat["timed"]["steps"] == 5 and repeat["warmup"]["steps"] == 2
    assert repeat["framework"]["framework"] == "numpy"
    assert repeat["loss"]["last"] < repeat["loss"]["first"]
    (validation,) = repeat["validation"]
    assert validation["images"] > 0 and 0 <= validation["accuracy"] <= 1


def test_the_1_0_plugin_implements_only_what_1_0_required(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(V1_PLUGIN))
    import harness_api_v1

    assert harness_api_v1.HARNESS_PLUGIN_API == "1.0"
    methods = {k for k, v in vars(harness_api_v1.LinearTrainer).items() if callable(v)}
    assert methods - {"__init__", "_logits"} == set(Trainer.__abstractmethods__)
