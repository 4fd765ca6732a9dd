"""``python -m harness`` in a subprocess with the fake backend of tests/fakes loaded
through HARNESS_PLUGINS, exactly as an installed plugin would be."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FAKES = Path(__file__).resolve().parent / "fakes"


def harness_env(**extra: str) -> dict[str, str]:
    """This environment plus the fake backend (and ``extra``, e.g. a fake NVML module)."""
    env = dict(os.environ)
    env["HARNESS_PLUGINS"] = "fake_backend"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FAKES), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -m harness ARGS`` with the fake backend; ``env`` adds variables."""
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True,
        text=True,
        env=harness_env(**env),
        cwd=cwd,
        timeout=timeout,
    )
