"""Signals against real worker processes (issue 13, item 1).

SIGINT, SIGTERM and SIGHUP end a run or a sweep the same way: the worker's process
group is ended, finished repeats and the run are stored as ``interrupted``, and the exit
code is 128 + the signal. The harness installs its handlers itself, so a harness started
with the signals ignored still stops. Workers die with their orchestrator even after
``kill -9``, and the next start ends workers a killed harness left behind.

Every process started here gets its signal dispositions set explicitly (the tests must
not depend on what the shell running pytest left them as).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fake_cli import harness_env, run_cli

from harness.run import lifeline
from harness.run import signals as harness_signals

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _defaults() -> None:
    for sig in HANDLED:
        signal.signal(sig, signal.SIG_DFL)


def _ignored() -> None:
    """As a background job of a non-interactive shell starts: the signals ignored."""
    for sig in HANDLED:
        signal.signal(sig, signal.SIG_IGN)


def _start(
    tmp_path: Path, *extra: str, preexec: Callable[[], None] = _defaults
) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "harness", "--tool", "fake", "--model", "lenet"]
    args += ["--dataset", "mnist", "--synthetic", "--warmup-steps", "1", "--idle-baseline", "0"]
    args += ["--output-dir", str(tmp_path / "logs"), *extra]
    return subprocess.Popen(
        args,
        env=harness_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec,
    )


def _wait_for(predicate: Callable[[], object], what: str, timeout: float = 60) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _timed_events(tmp_path: Path, repeat: int) -> Path | None:
    for path in (tmp_path / "logs").glob(f"*/repeat-{repeat}/events.jsonl"):
        if '"timed"' in path.read_text():
            return path
    return None


def _worker_pid(events: Path) -> int:
    return next(e["pid"] for e in map(json.loads, events.open()) if e["event"] == "start")


def _gone(pid: int) -> bool:
    return not lifeline._exists(pid)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "code", "preexec"),
    [
        (signal.SIGINT, 130, _defaults),
        (signal.SIGTERM, 143, _defaults),
        (signal.SIGHUP, 129, _defaults),
        (signal.SIGINT, 130, _ignored),  # inherited SIG_IGN: the harness installs its own
        (signal.SIGTERM, 143, _ignored),
    ],
    ids=["sigint", "sigterm", "sighup", "sigint-inherited-ignored", "sigterm-inherited-ignored"],
)
def test_a_signal_ends_the_run_and_stores_what_finished(
    tmp_path: Path, sig: int, code: int, preexec: Callable[[], None]
) -> None:
    # repeat 1 finishes (6 steps of 0.3 s); repeat 2 is stopped in its timed phase
    proc = _start(tmp_path, "--steps", "6", "--repeats", "3", "-o", "step_s=0.3", preexec=preexec)
    try:
        events = _wait_for(lambda: _timed_events(tmp_path, 2), "repeat 2's timed phase", 240)
        worker = _worker_pid(events)  # type: ignore[arg-type]
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    assert "finished repeats are stored" in stderr
    assert _wait_for(lambda: _gone(worker), "the worker to end", 10)
    db = sqlite3.connect(tmp_path / "logs" / "results.sqlite")
    rows = db.execute("SELECT repeat, status FROM repeats ORDER BY repeat").fetchall()
    assert rows == [(1, "ok"), (2, "interrupted")]
    assert db.execute("SELECT status FROM runs").fetchall() == [("interrupted",)]
    (result,) = (tmp_path / "logs").glob("*/result.json")
    stored = json.loads(result.read_text())
    assert signal.Signals(sig).name in stored["repeats"][1]["cause"]


def test_a_signal_during_the_idle_baseline_still_stores_the_run(tmp_path: Path) -> None:
    """Before any worker exists: nothing to end, the run is stored as interrupted."""
    proc = subprocess.Popen(
        [
            *[sys.executable, "-m", "harness", "--tool", "fake", "--model", "lenet"],
            *["--dataset", "mnist", "--synthetic", "--steps", "2", "--repeats", "1"],
            *["--idle-baseline", "30", "--output-dir", str(tmp_path / "logs2")],
        ],
        env=harness_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_defaults,
    )
    try:
        _wait_for(lambda: list((tmp_path / "logs2").glob("*/run.json")), "run.json", 60)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    db = sqlite3.connect(tmp_path / "logs2" / "results.sqlite")
    assert db.execute("SELECT status FROM runs").fetchall() == [("interrupted",)]


def test_the_worker_dies_with_its_orchestrator_after_kill_9(tmp_path: Path) -> None:
    proc = _start(tmp_path, "--steps", "3", "--repeats", "1", "-o", "behaviour=hang")
    try:
        events = _wait_for(lambda: _timed_events(tmp_path, 1), "the timed phase")
        worker = _worker_pid(events)  # type: ignore[arg-type]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _wait_for(lambda: _gone(worker), "the orphaned worker to die", 10)


def test_the_next_start_ends_stale_workers_of_the_same_output_dir(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    env = dict(os.environ)
    # a worker whose orchestrator (a pid no process has) is gone
    env[lifeline.ORCHESTRATOR_ENV] = "999999999:1:999999999"
    env[lifeline.OUTPUT_ENV] = str(logs.resolve())
    stale = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"],
        env=env,
        start_new_session=True,
        preexec_fn=_defaults,
    )
    other_env = dict(env, **{lifeline.OUTPUT_ENV: str(tmp_path / "elsewhere")})
    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"],
        env=other_env,
        start_new_session=True,
    )
    try:
        _wait_for(lambda: lifeline.stale_workers(logs), "the stale process to be visible", 10)
        out = run_cli(
            *["--tool", "fake", "--model", "lenet", "--dataset", "mnist", "--synthetic"],
            *["--steps", "2", "--warmup-steps", "1", "--repeats", "1", "--idle-baseline", "0"],
            *["--output-dir", str(logs)],
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert f"ended stale worker pid {stale.pid}" in " ".join(out.stderr.split())
        assert stale.wait(timeout=10) != 0
        assert other.poll() is None  # another output directory's process is left alone
    finally:
        for p in (stale, other):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_a_sweep_stopped_by_sigterm_exits_143_and_is_interrupted(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(
        '[sweep]\nname = "sig"\ntools = ["fake"]\nrepeats = 1\n'
        "[defaults]\nwarmup_steps = 1\nsteps = 200\nsynthetic = true\nidle_baseline_s = 0\n"
        'options = { step_s = "0.1" }\n'
        '[[workloads]]\ndataset = "mnist"\nmodel = "lenet"\n'
    )
    logs = tmp_path / "logs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "sweep", str(sweep), "--output-dir", str(logs)],
        env=harness_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ignored,
    )
    try:
        _wait_for(lambda: _timed_events(tmp_path, 1), "the timed phase", 120)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    db = sqlite3.connect(logs / "results.sqlite")
    assert db.execute("SELECT status FROM sweeps").fetchall() == [("interrupted",)]
    assert db.execute("SELECT status FROM runs").fetchall() == [("interrupted",)]


def test_interrupted_carries_the_exit_code_by_convention() -> None:
    assert harness_signals.Interrupted(signal.SIGINT).exit_code == 130
    assert harness_signals.Interrupted(signal.SIGTERM).exit_code == 143
    assert harness_signals.Interrupted(signal.SIGHUP).exit_code == 129
    assert isinstance(harness_signals.Interrupted(signal.SIGTERM), KeyboardInterrupt)
    assert harness_signals.exit_code(KeyboardInterrupt()) == 130


def test_installed_handlers_replace_inherited_ones_and_are_restored() -> None:
    before = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with harness_signals.installed():
            assert signal.getsignal(signal.SIGTERM) is harness_signals._handler
            with pytest.raises(harness_signals.Interrupted) as caught:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
            assert caught.value.exit_code == 143
            os.kill(os.getpid(), signal.SIGTERM)  # a second signal does not cut the clean-up
            time.sleep(0.05)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)
