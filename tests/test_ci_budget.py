"""The CI budget: scripts/ci_times.py reads tox's result, prints every environment's
time, and fails a full run over the total; the README states the same budget as
.ci/budget.toml (the check reads one, users read the other)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "ci_times.py"


_spec = importlib.util.spec_from_file_location("ci_times", SCRIPT)
ci_times = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ci_times)


def _result(**walls: float) -> dict:
    """A tox --result-json document with these environments' wall times."""
    envs = {
        name: {
            "result": {"success": True, "exit_code": 0, "duration": wall},
            "setup": [{"elapsed": 1.0}],
            "test": [{"command": ["coverage", "run", "-m", "pytest", "-m", name], "elapsed": 2}],
        }
        for name, wall in walls.items()
    }
    envs[".pkg"] = {"result": {"success": True, "duration": 3.0}}  # packaging: not shown
    return {"testenvs": envs}


def _run(tmp_path: Path, result: dict, elapsed: float, *flags: str):
    path = tmp_path / "result.json"
    path.write_text(json.dumps(result))
    started = str(time.time() - elapsed)
    command = [sys.executable, str(SCRIPT), str(path), "--started", started, *flags]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_times_are_printed_and_a_run_within_the_budget_passes(tmp_path: Path) -> None:
    total, _ = ci_times.load_budget()
    out = _run(tmp_path, _result(lint=2.0, core=100.0), 150, "--enforce")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[1].split()[:2] == ["lint", "2"] and lines[2].split()[:2] == ["core", "100"]
    assert lines[3].split()[:3] == ["total", "150", str(total)]
    assert ".pkg" not in out.stdout


def test_a_full_run_over_the_budget_fails_and_names_the_environments_over_their_share(
    tmp_path: Path,
) -> None:
    total, shares = ci_times.load_budget()
    result = _result(core=shares["core"] + 50.0, lint=1.0)
    out = _run(tmp_path, result, total + 60, "--enforce")
    assert out.returncode == 1
    assert "over its share" in out.stdout.splitlines()[1]
    assert "over their share: core" in out.stderr and "lint" not in out.stderr
    # one environment run by hand (no --enforce) is never failed for the total
    assert _run(tmp_path, result, total + 60).returncode == 0


def test_the_readme_states_the_budget_the_check_enforces() -> None:
    total, shares = ci_times.load_budget()
    readme = (REPO / "README.md").read_text()
    stated = dict(re.findall(r"^\| `?([a-z]+)`? \|[^|\n]*\|[^|\n]*\| (\d+) \|$", readme, re.M))
    assert {name: int(s) for name, s in stated.items() if name in shares} == shares
    assert f"budget: {total} s" in readme or f"{total // 60} minutes" in readme


def test_marker_rows_show_the_background_run_by_its_own_time() -> None:
    start = ["bash", "scripts/alongside.sh", "start", "d", "coverage", "run", "-m", "pytest"]
    result = {
        "testenvs": {
            "frameworks": {
                "result": {"success": True, "duration": 100.0},
                "test": [
                    {"command": [*start, "-m", "slurm", "tests"], "elapsed": 0.1},
                    {"command": ["coverage", "run", "-m", "pytest", "-m", "jax"], "elapsed": 60},
                    {
                        "command": ["bash", "scripts/alongside.sh", "wait", "d"],
                        "output": "...\nalongside: finished after 42 s, collected after 61 s\n",
                        "elapsed": 1.0,
                    },
                ],
            }
        }
    }
    assert ci_times.marker_times(result) == [
        ("frameworks", "slurm (in the background)", 42.0),
        ("frameworks", "jax", 60),
    ]


ALONGSIDE = REPO / "scripts" / "alongside.sh"


def test_alongside_collects_the_output_and_status_of_a_background_command(tmp_path: Path) -> None:
    folder = str(tmp_path / "bg")
    started = subprocess.run(
        ["bash", str(ALONGSIDE), "start", folder, "bash", "-c", "echo from-the-background; exit 3"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    waited = subprocess.run(
        ["bash", str(ALONGSIDE), "wait", folder], capture_output=True, text=True, timeout=30
    )
    assert waited.returncode == 3
    assert "from-the-background" in waited.stdout and "finished after" in waited.stdout


def test_alongside_fails_when_the_background_command_was_killed(tmp_path: Path) -> None:
    folder = tmp_path / "bg"
    subprocess.run(
        ["bash", str(ALONGSIDE), "start", str(folder), "sleep", "60"], check=True, timeout=30
    )
    os.killpg(int((folder / "pid").read_text()), signal.SIGKILL)  # its own session
    waited = subprocess.run(
        ["bash", str(ALONGSIDE), "wait", str(folder)], capture_output=True, text=True, timeout=30
    )
    assert waited.returncode == 1
    assert "ended without a status" in waited.stderr
