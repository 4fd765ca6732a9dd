"""Sweeps on a real SLURM cluster (scripts/slurm_cluster.sh, one node here) with the fake
backend: submitted and stored, the submitter killed and resumed, a job cancelled and
retried, a job past its time limit, --status, and bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from fake_cli import harness_env, run_cli
from slurm_helpers import (  # noqa: F401 (slurm_cluster: a fixture)
    cancel_jobs,
    slurm_cluster,
    squeue_names,
    wait_for,
)

from harness.store.store import ResultStore

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

SWEEP = """
[sweep]
name = "{name}"
tools = ["fake"]
repeats = 1

[defaults]
warmup_steps = 1
steps = {steps}
synthetic = true
idle_baseline_s = 0
batch_size = 8
options = {{ step_s = "{step_s}" }}

[slurm]
poll_s = 0.5
{slurm}

[[workloads]]
dataset = {datasets}
model = "lenet"
"""
THREE = '["mnist", "fashion-mnist", "kmnist"]'


def _file(tmp_path: Path, *, name: str = "s", steps: int = 3, step_s: float = 0.01,
          datasets: str = THREE, slurm: str = "") -> Path:  # fmt: skip
    path = tmp_path / f"{name}.toml"
    path.write_text(
        SWEEP.format(name=name, steps=steps, step_s=step_s, datasets=datasets, slurm=slurm)
    )
    return path


def _sweep(*args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return run_cli("sweep", *args, "--executor", "slurm", timeout=timeout)


def _cells(logs: Path) -> dict[str, dict]:
    path = logs / "results.sqlite"
    if not path.is_file():
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    db.row_factory = sqlite3.Row
    try:
        rows = db.execute("SELECT * FROM sweep_cells ORDER BY position").fetchall()
    except sqlite3.OperationalError:  # not created yet
        rows = []
    finally:
        db.close()
    return {r["cell"]: dict(r) for r in rows}


def _job_logs(logs: Path) -> list[Path]:
    """One slurm-<id>.out per job that started: the jobs SLURM ran for the sweep."""
    return sorted(logs.glob(".slurm/*/*/slurm-*.out"))


def _runs_per_cell(logs: Path) -> dict[str, list[str]]:
    per_cell: dict[str, list[str]] = {}
    for run in ResultStore(logs / "results.sqlite").runs():
        per_cell.setdefault(run.spec.tags["sweep_cell"], []).append(run.summary.status)
    return per_cell


def test_a_sweep_runs_as_slurm_jobs_and_is_stored(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    out = _sweep(str(_file(tmp_path)), "--output-dir", str(logs))
    assert out.returncode == 0, out.stderr
    assert "3 job(s) submitted" in out.stderr
    assert "sweep s-" in out.stderr and "3 ok" in out.stderr
    cells = _cells(logs)
    assert len(cells) == 3
    assert all(c["status"] == "done" and c["run_status"] == "ok" for c in cells.values())
    assert all(c["job_id"] and c["job_state"] == "COMPLETED" for c in cells.values())
    assert len({c["job_id"] for c in cells.values()}) == 3
    assert _runs_per_cell(logs) == {key: ["ok"] for key in cells}
    for cell in cells.values():  # the run folders the jobs moved into the output directory
        result = json.loads((logs / cell["run_id"] / "result.json").read_text())
        assert result["summary"]["status"] == "ok" and result["sweep_id"]
        assert (logs / cell["run_id"] / "repeat-1" / "record.json").is_file()
    # each job ran on its node and ended with its own exit status file
    assert len(_job_logs(logs)) == 3 and len(list(logs.glob(".slurm/*/*/exit-*"))) == 3

    status = _sweep(str(_file(tmp_path)), "--output-dir", str(logs), "--status")
    assert status.returncode == 0, status.stderr
    for cell in cells.values():
        assert cell["job_id"] in status.stdout and cell["cell"] in status.stdout
    assert "3 ok" in status.stdout
    assert len(_job_logs(logs)) == 3  # --status submitted nothing


def test_a_killed_submitter_reattaches_and_runs_nothing_twice(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    sweep = _file(tmp_path, name="kill", steps=30, step_s=0.3)
    command = [sys.executable, "-m", "harness", "sweep", str(sweep), "--executor", "slurm",
               "--output-dir", str(logs)]  # fmt: skip
    with (tmp_path / "first.log").open("w") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=harness_env(),
            start_new_session=True,  # its own process group: killed alone, jobs go on
        )  # fmt: skip
        try:

            def submitted_and_running() -> dict | None:
                assert proc.poll() is None, (tmp_path / "first.log").read_text()
                cells = _cells(logs)
                ids = [c.get("job_id") for c in cells.values()]
                states = [c.get("job_state") for c in cells.values()]
                return cells if len(ids) == 3 and all(ids) and "RUNNING" in states else None

            before = wait_for(submitted_and_running, "three jobs, one running")
            os.killpg(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=60) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                cancel_jobs("harness-kill-")
    assert all(c["status"] == "running" for c in before.values())

    status = _sweep(str(sweep), "--output-dir", str(logs), "--status")
    assert status.returncode == 0, status.stderr
    for cell in before.values():
        assert cell["job_id"] in status.stdout

    again = _sweep(str(sweep), "--output-dir", str(logs))
    assert again.returncode == 0, again.stderr
    assert "resuming sweep" in again.stderr
    assert "0 job(s) submitted" in again.stderr  # re-attached (or found finished)
    after = _cells(logs)
    for key, cell in before.items():  # the same jobs, not submitted again
        assert after[key]["job_id"] == cell["job_id"]
        assert after[key]["attempts"] == 1
        assert after[key]["status"] == "done" and after[key]["run_status"] == "ok"
    assert _runs_per_cell(logs) == {key: ["ok"] for key in before}  # none run twice
    assert len(_job_logs(logs)) == 3
    assert not [name for name in squeue_names() if name.startswith("harness-kill-")]


def test_a_cancelled_job_is_stored_as_cancelled_and_retried(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    sweep = _file(tmp_path, name="cancel", steps=60, step_s=0.3, datasets='["mnist", "kmnist"]')
    command = [sys.executable, "-m", "harness", "sweep", str(sweep), "--executor", "slurm",
               "--output-dir", str(logs)]  # fmt: skip
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=harness_env(), start_new_session=True,
    )  # fmt: skip
    try:

        def running_job() -> dict | None:
            running = [c for c in _cells(logs).values() if c.get("job_state") == "RUNNING"]
            return running[0] if running else None

        victim = wait_for(running_job, "a running job")
        # held still (SIGSTOP), --status shows it live from SLURM
        subprocess.run(["scontrol", "suspend", victim["job_id"]], check=True, timeout=60)
        status = _sweep(str(sweep), "--output-dir", str(logs), "--status")
        assert status.returncode == 0, status.stderr
        line = next(x for x in status.stdout.splitlines() if victim["cell"] in x)
        assert "suspended on vm" in line and victim["job_id"] in line
        subprocess.run(["scancel", victim["job_id"]], check=True, timeout=60)
        output, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            cancel_jobs("harness-cancel-")
    assert proc.returncode == 1, output
    assert "cancelled" in output
    cells = _cells(logs)
    cancelled = cells[victim["cell"]]
    assert cancelled["status"] == "done" and cancelled["run_status"] == "cancelled"
    assert cancelled["job_state"] == "CANCELLED"
    assert f"SLURM job {victim['job_id']} cancelled" in cancelled["reason"]
    (other,) = [c for k, c in cells.items() if k != victim["cell"]]
    assert other["run_status"] == "ok"
    stored = {r.run_id: r for r in ResultStore(logs / "results.sqlite").runs()}
    assert stored[cancelled["run_id"]].summary.status == "cancelled"

    retry = _sweep(str(sweep), "--output-dir", str(logs), "--retry-failed")
    assert retry.returncode == 0, retry.stderr
    assert "1 job(s) submitted" in retry.stderr
    cells = _cells(logs)
    again = cells[victim["cell"]]
    assert again["run_status"] == "ok" and again["attempts"] == 2
    assert again["job_id"] != victim["job_id"]
    assert json.loads(again["superseded_json"]) == [cancelled["run_id"]]
    assert cells[other["cell"]]["run_id"] == other["run_id"]  # the ok cell was not rerun
    assert sorted(_runs_per_cell(logs)[victim["cell"]]) == ["cancelled", "ok"]


def test_a_job_past_its_time_limit_is_stored_as_timeout(tmp_path: Path) -> None:
    """SLURM's shortest limit is a minute, enforced within about another one."""
    logs = tmp_path / "logs"
    sweep = _file(tmp_path, name="late", steps=2000, step_s=0.5, datasets='"mnist"',
                  slurm='time = "1"')  # fmt: skip
    out = _sweep(str(sweep), "--output-dir", str(logs))
    assert out.returncode == 1, out.stderr
    (cell,) = _cells(logs).values()
    assert cell["run_status"] == "timeout" and cell["job_state"] == "TIMEOUT"
    assert "timeout" in cell["reason"]
    (run,) = ResultStore(logs / "results.sqlite").runs()
    assert run.summary.status == "timeout" and run.run_id == cell["run_id"]
    assert (logs / run.run_id / "result.json").is_file()  # what it measured is kept


def test_bad_input_is_one_line_before_anything_is_submitted(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    sweep = _file(tmp_path, name="bad", slurm='partition = "nosuchpartition"')
    out = _sweep(str(sweep), "--output-dir", str(logs))
    assert out.returncode == 2, out.stderr
    assert "SLURM refuses the resources" in out.stderr and "partition" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (logs / "results.sqlite").exists() and not (logs / ".slurm").exists()

    # a controller that does not answer (a config naming a port nobody listens on)
    conf = Path("/etc/slurm/slurm.conf").read_text()
    bad_conf = tmp_path / "slurm.conf"
    bad_conf.write_text(conf + "\nSlurmctldPort=6999\n")
    down = run_cli("sweep", str(_file(tmp_path)), "--executor", "slurm", "--output-dir",
                   str(logs), SLURM_CONF=str(bad_conf))  # fmt: skip
    assert down.returncode == 2, down.stderr
    assert "the SLURM controller does not answer" in down.stderr
    assert not (logs / "results.sqlite").exists()


SLOW_SBATCH = """#!/bin/bash
# sbatch that submits, then hangs before saying the job id (the submitter dies here)
case " $* " in *" --test-only "*) exec {real} "$@" ;; esac
out=$({real} "$@") || exit $?
touch {marker}
sleep 120
echo "$out"
"""


def test_a_submitter_killed_inside_sbatch_finds_the_job_instead_of_resubmitting(
    tmp_path: Path,
) -> None:
    logs = tmp_path / "logs"
    sweep = _file(tmp_path, name="window", steps=10, step_s=0.3, datasets='"mnist"')
    bin_dir, marker = tmp_path / "bin", tmp_path / "submitted"
    bin_dir.mkdir()
    wrapper = bin_dir / "sbatch"
    wrapper.write_text(SLOW_SBATCH.format(real=shutil.which("sbatch"), marker=marker))
    wrapper.chmod(0o755)
    env = harness_env(PATH=f"{bin_dir}:{os.environ['PATH']}")
    command = [sys.executable, "-m", "harness", "sweep", str(sweep), "--executor", "slurm",
               "--output-dir", str(logs)]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env, start_new_session=True)  # fmt: skip
    try:
        wait_for(marker.exists, "the job submitted")
        os.killpg(proc.pid, signal.SIGKILL)  # the submitter and the hanging sbatch
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    (cell,) = _cells(logs).values()
    assert cell["status"] == "running" and cell["job_id"] == "" and cell["attempts"] == 1

    again = _sweep(str(sweep), "--output-dir", str(logs))
    assert again.returncode == 0, again.stderr
    assert "0 job(s) submitted, 1 re-attached" in again.stderr
    (cell,) = _cells(logs).values()
    assert cell["run_status"] == "ok" and cell["job_id"] and cell["attempts"] == 1
    assert len(_job_logs(logs)) == 1  # one job for the cell, found by its name
    assert list(_runs_per_cell(logs).values()) == [["ok"]]
