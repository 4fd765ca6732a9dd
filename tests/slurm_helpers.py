"""The real single-node SLURM cluster of scripts/slurm_cluster.sh, for tests marked
``slurm`` (tox -e slurm starts it first; the fixture starts it too, or says why not).

    from slurm_helpers import slurm_cluster  # noqa: F401 (a fixture)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "slurm_cluster.sh"


def _why_not() -> str | None:
    """Why this machine cannot run the cluster, or None."""
    installed = all(shutil.which(c) for c in ("slurmctld", "slurmd", "sbatch", "munged"))
    if os.geteuid() != 0:
        return "starting SLURM's daemons needs root"
    if not installed and shutil.which("apt-get") is None:
        return "SLURM is not installed and there is no apt-get to install it"
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """Starts (or checks) the cluster; the partition's name."""
    why = _why_not()
    if why:
        pytest.skip(f"no SLURM cluster: {why}")
    out = subprocess.run(
        ["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, f"scripts/slurm_cluster.sh start failed:\n{out.stdout}{out.stderr}"
    return "debug"


def squeue_names() -> dict[str, str]:
    """job name -> state of this user's jobs that SLURM lists."""
    out = subprocess.run(
        ["squeue", "-h", "-o", "%j|%T"], capture_output=True, text=True, check=True, timeout=60
    )
    return dict(line.split("|", 1) for line in out.stdout.split() if "|" in line)


def cancel_jobs(prefix: str) -> None:
    """Cancels the jobs whose name starts with ``prefix`` (left by a failed test)."""
    for name in squeue_names():
        if name.startswith(prefix):
            subprocess.run(["scancel", "--name", name], timeout=60, check=False)


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 240.0) -> Any:
    """Polls ``condition()`` until it returns something true; fails naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")
