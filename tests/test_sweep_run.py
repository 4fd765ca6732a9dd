"""Sweeps end to end with the fake backend: planning, skipped runs, failures, and resuming
after the sweep process is killed (SIGKILL) or interrupted (SIGINT) in the middle."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_cli import harness_env, run_cli
from sweep_helpers import check_page_in_browser, end_orphan_workers

from harness.store.store import ResultStore
from harness.sweep.state import SweepState

MATRIX = """
[sweep]
name = "e2e"
tools = ["fake", "fake-missing"]
hardware = [-1, 64]
repeats = 2
models = ["lenet", "alexnet"]
datasets = ["mnist", "cifar10"]

[defaults]
warmup_steps = 1
steps = 3
synthetic = true
idle_baseline_s = 0
batch_size = 8

[[workloads]]
dataset = "cifar10"
model = "alexnet"
options = { behaviour = "raise" }
"""

RESUMABLE = """
[sweep]
name = "resume"
tools = ["fake"]
repeats = 2

[defaults]
warmup_steps = 1
steps = 8
synthetic = true
idle_baseline_s = 0
batch_size = 8
options = { step_s = "0.1" }

[[workloads]]
dataset = ["mnist", "fashion-mnist", "kmnist"]
model = "lenet"

[[workloads]]
dataset = "mnist"
model = "alexnet"
"""


def _file(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _cells(store: Path) -> dict[str, dict]:
    db = sqlite3.connect(store)
    db.row_factory = sqlite3.Row
    rows = db.execute("SELECT * FROM sweep_cells ORDER BY position").fetchall()
    db.close()
    return {r["cell"]: dict(r) for r in rows}


@pytest.mark.slow
def test_sweep_lists_skips_first_records_failures_and_reports(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    out = run_cli("sweep", str(_file(tmp_path, MATRIX)), "--output-dir", str(logs))
    assert out.returncode == 1, out.stderr  # one run failed
    err = " ".join(out.stderr.split())  # lines wrap at the console's width, paths vary
    assert "16 runs: 3 to run, 0 done, 13 skipped" in err
    for reason in ("asks for 64 GPU(s)", "needs Nonexistium", "cannot run lenet on cifar10"):
        assert err.index(reason) < err.index("[1/3]"), reason  # listed before the sweep starts
    assert "[1/3] fake · lenet · mnist · CPU: ok" in err
    assert "[3/3] fake · alexnet · cifar10 · CPU: error · - ·" in err  # and the sweep went on
    assert "RuntimeError: the fake framework failed" in err

    store = ResultStore(logs / "results.sqlite")
    (sweep,) = SweepState.all_sweeps(store)
    runs = store.runs(sweep_id=sweep["sweep_id"])
    statuses = {(r.spec.model, r.spec.dataset): r.summary.status for r in runs}
    assert statuses == {
        ("lenet", "mnist"): "ok",
        ("alexnet", "mnist"): "ok",
        ("alexnet", "cifar10"): "error",
    }
    by_cell = {r.spec.tags["sweep_cell"]: r for r in runs}
    cells = _cells(logs / "results.sqlite")
    assert sum(c["status"] == "skipped" for c in cells.values()) == 13
    assert cells["fake/lenet/cifar10/CPU"]["reason"].startswith("cannot run lenet on cifar10")
    failed = cells["fake/alexnet/cifar10/CPU"]
    assert (failed["status"], failed["run_status"]) == ("done", "error")
    assert failed["run_id"] == by_cell["fake/alexnet/cifar10/CPU"].run_id

    report = run_cli("report", "--store", str(logs), "--sweep", "latest", "--format", "markdown")
    assert report.returncode == 0, report.stderr
    mean = by_cell["fake/lenet/mnist/CPU"].summary.images_per_sec
    assert f"| images/sec | MNIST | LeNet | fake | {mean.mean:,.1f} ± " in report.stdout
    assert "| images/sec | CIFAR-10 | AlexNet | fake | error |" in report.stdout
    assert "## Not run (13)" in report.stdout

    listed = run_cli("sweep", "--list", "--output-dir", str(logs))
    assert sweep["sweep_id"] in listed.stdout and "3 done, 13 skipped" in listed.stdout


def test_dry_run_lists_the_plan_and_writes_nothing(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    out = run_cli("sweep", str(_file(tmp_path, MATRIX)), "--output-dir", str(logs), "--dry-run",
                  "--tools", "fake", "--set", "steps=5")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "sweep plan: 8 runs" in out.stderr
    assert "3 to run, 5 not" in out.stderr
    assert "(1) " in out.stderr and "1+5" in out.stderr  # reasons as footnotes; steps override
    assert not logs.exists()


def test_the_study_sweep_plans(tmp_path: Path) -> None:
    out = run_cli("sweep", "study", "--dry-run", "--output-dir", str(tmp_path / "logs"))
    assert out.returncode == 0, out.stderr
    assert "sweep plan: 108 runs" in out.stderr
    assert "10+938" in out.stderr and "10+390" in out.stderr and "10+300" in out.stderr
    assert not (tmp_path / "logs").exists()


def _wait_for_a_run_in_progress(store: Path, proc: subprocess.Popen) -> tuple[dict, dict]:
    """Waits until one cell is done and another is in its timed phase: (done, running)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the sweep ended before it could be stopped"
        if store.exists():
            try:
                cells = _cells(store)
            except sqlite3.OperationalError:  # not created yet
                cells = {}
            done = {k: c for k, c in cells.items() if c["status"] == "done"}
            running = [c for c in cells.values() if c["status"] == "running" and c["run_id"]]
            if done and running:
                events = store.parent / running[0]["run_id"] / "repeat-1" / "events.jsonl"
                if events.exists() and '"timed"' in events.read_text():
                    return done, running[0]
        time.sleep(0.05)
    raise AssertionError("no run reached its timed phase in time")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigkill", "sigint"])
def test_a_stopped_sweep_resumes_without_repeating_finished_runs(tmp_path: Path, how: str) -> None:
    logs = tmp_path / "logs"
    store_path = logs / "results.sqlite"
    sweep_file = _file(tmp_path, RESUMABLE)
    with (tmp_path / "first.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness", "sweep", str(sweep_file), "--output-dir", str(logs)],
            stdout=log, stderr=subprocess.STDOUT, env=harness_env(),
        )  # fmt: skip
        try:
            done_before, running = _wait_for_a_run_in_progress(store_path, proc)
            proc.send_signal(signal.SIGKILL if how == "sigkill" else signal.SIGINT)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    first_log = (tmp_path / "first.log").read_text()
    stopped = running["run_id"]
    if how == "sigkill":
        assert code == -signal.SIGKILL
        end_orphan_workers(logs / stopped)
    else:
        assert code == 130, first_log
        assert "interrupted" in first_log
    store = ResultStore(store_path)
    (sweep,) = SweepState.all_sweeps(store)
    sweep_id = sweep["sweep_id"]
    before = {r.run_id: r.summary.status for r in store.runs()}
    assert {c["run_id"] for c in done_before.values()} <= set(before)
    if how == "sigint":  # the orchestrator stored the interrupted run; the cell is pending
        assert before[stopped] == "interrupted"
        cell = _cells(store_path)[running["cell"]]
        assert cell["status"] == "pending" and json.loads(cell["superseded_json"]) == [stopped]
    else:  # killed mid-run: no runs row; its finished repeats may be in the repeats table
        assert stopped not in before

    resume_args = [str(sweep_file)] if how == "sigkill" else ["--resume", sweep_id]
    out = run_cli("sweep", *resume_args, "--output-dir", str(logs))
    assert out.returncode == 0, out.stderr
    assert f"resuming sweep {sweep_id}" in out.stderr
    if how == "sigkill":  # what the killed run had on disk is taken into the store first
        assert f"taken into the store: run {stopped}" in " ".join(out.stderr.split())
    left = 4 - len(done_before)
    assert f"{left} to run, {len(done_before)} done" in out.stderr

    cells = _cells(store_path)
    assert all(c["status"] == "done" and c["run_status"] == "ok" for c in cells.values())
    for key, cell in done_before.items():  # finished cells were not run again
        assert cells[key]["run_id"] == cell["run_id"]
        assert json.loads(cells[key]["superseded_json"]) == []
    again = cells[running["cell"]]
    assert again["run_id"] != stopped and json.loads(again["superseded_json"]) == [stopped]
    assert again["attempts"] == 2
    runs = store.runs()
    assert {r.sweep_id for r in runs} == {sweep_id}
    per_cell: dict[str, int] = {}
    for r in runs:
        if r.summary.status == "ok":
            key = r.spec.tags["sweep_cell"]
            per_cell[key] = per_cell.get(key, 0) + 1
    assert per_cell == dict.fromkeys(cells, 1)  # one finished run per cell, none repeated
    assert len(runs) == 5  # plus the interrupted one (stored, or taken in after kill -9)
    assert {r.run_id: r.status for r in runs}[stopped] == "interrupted"
    assert SweepState(store, sweep_id).info()["status"] == "done"

    report = run_cli("report", "--store", str(logs), "--sweep", sweep_id, "--format", "markdown")
    assert report.returncode == 0, report.stderr
    assert "interrupted" not in report.stdout  # the superseded run is not shown
    speeds = [line for line in report.stdout.splitlines() if line.startswith("| images/sec")]
    assert len(speeds) == 4 and all(" ± " in line for line in speeds)

    # the same file again starts a new sweep (the old one is done); another file or
    # different options cannot resume it
    other = _file(tmp_path, RESUMABLE.replace("steps = 8", "steps = 9"), "other.toml")
    bad = run_cli("sweep", str(other), "--resume", sweep_id, "--output-dir", str(logs))
    assert bad.returncode == 2 and "was planned from a different file" in bad.stderr


GPUS = """
[sweep]
name = "gpus"
tools = ["fake"]
repeats = 2

[defaults]
warmup_steps = 1
steps = 10
synthetic = true
idle_baseline_s = 0
batch_size = 8
options = { step_s = "0.03" }

[[hardware]]
num_gpus = -1

[[hardware]]
num_gpus = 1
gpu = "A100"

[[hardware]]
num_gpus = 2
gpu = "A100"

[[workloads]]
dataset = "mnist"
model = "lenet"
"""


@pytest.mark.slow
def test_a_sweep_on_scripted_gpus_reports_their_power_and_scaling(tmp_path: Path) -> None:
    """CPU, 1 and 2 GPUs on a machine of fake NVML GPUs (A100s drawing 200 W and 250 W):
    the monitor's figures flow through the sweep into the report and its charts."""
    logs = tmp_path / "logs"
    env = harness_env(HARNESS_NVML_MODULE="fake_gpu_machine")
    out = subprocess.run(
        [sys.executable, "-m", "harness", "sweep", str(_file(tmp_path, GPUS)),
         "--output-dir", str(logs)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "[3/3] fake · lenet · mnist · 2 GPUs [A100]: ok" in out.stderr
    report = run_cli("report", "--store", str(logs), "--sweep", "latest", "--format", "markdown")
    assert report.returncode == 0, report.stderr
    text = report.stdout
    assert "| metric | dataset | network | framework | CPU | 1 GPU [A100] | 2 GPUs [A100] |" in text
    assert "| GPU power (W) | MNIST | LeNet | fake | - | 200.0 ± 0.0 | 450.0 ± 0.0 |" in text
    assert re.search(r"\| MNIST \| LeNet \| fake \| [\d.]+x \|", text)  # CPU to 1 GPU
    scaling = re.search(r"\| MNIST \| LeNet \| fake \| ([\d.]+)x \| (\d+)% \|", text)
    assert scaling is not None  # 2 GPUs / 1 GPU and its efficiency
    assert abs(int(scaling.group(2)) - float(scaling.group(1)) / 2 * 100) <= 1  # rounding
    page = tmp_path / "report.html"
    html = run_cli("report", "--store", str(logs), "--sweep", "latest", "--format", "html",
                   "-o", str(page))  # fmt: skip
    assert html.returncode == 0, html.stderr
    check_page_in_browser(page, tmp_path, frameworks=1)


OOM_SWEEP = """
[sweep]
name = "oom"
tools = ["fake"]
repeats = 1

[defaults]
warmup_steps = 0
steps = 1
synthetic = true
idle_baseline_s = 0
batch_size = [4, 8, 16]
options = { oom_above = "4", step_s = "0" }

[[workloads]]
dataset = "mnist"
model = "lenet"
"""


@pytest.mark.slow
def test_a_batch_out_of_memory_skips_the_larger_ones_unless_told(tmp_path: Path) -> None:
    logs, sweep = tmp_path / "logs", _file(tmp_path, OOM_SWEEP)
    out = run_cli("sweep", str(sweep), "--output-dir", str(logs))
    assert out.returncode == 1, out.stderr  # batch 8 ran out of memory
    cells = _cells(logs / "results.sqlite")
    base = "fake/lenet/mnist/CPU/batch"
    assert [cells[f"{base}{b}"]["run_status"] for b in (4, 8)] == ["ok", "oom"]
    assert cells[f"{base}16"]["status"] == "skipped"  # never run: no run, no failure
    assert cells[f"{base}16"]["reason"].startswith("out of memory below this batch: batch 8")
    err = " ".join(out.stderr.split())
    assert "1 ok, 1 oom, 1 skipped" in err
    assert "largest batch that ran 4, smallest that ran out of memory 8 (1 larger skipped)" in err
    report = run_cli("report", "--store", str(logs), "--sweep", "latest", "--format", "markdown")
    assert "CPU · fp32 · train: largest batch that ran 4, smallest that ran out of memory 8" in (
        report.stdout
    )
    watch = run_cli("watch", "--store", str(logs), "--once")
    assert "1 skipped (1 after out of memory)" in " ".join(watch.stdout.split()), watch.stderr

    again = run_cli(
        "sweep", str(sweep), "--output-dir", str(logs), "--retry-failed", "--no-skip-oom"
    )
    assert again.returncode == 1, again.stderr
    cells = _cells(logs / "results.sqlite")
    assert [cells[f"{base}{b}"]["run_status"] for b in (4, 8, 16)] == ["ok", "oom", "oom"]
