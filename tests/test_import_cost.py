"""`python -m harness --help` stays cheap: it imports neither NumPy nor a framework."""

from __future__ import annotations

import json
import subprocess
import sys

from harness.cli.commands import COMMANDS

HEAVY = ("numpy", "torch", "tensorflow", "jax", "flax", "mxnet")

_PROBE = (
    "import json, runpy, sys\n"
    "sys.argv = ['harness', '--help']\n"
    "try:\n"
    "    runpy.run_module('harness', run_name='__main__', alter_sys=True)\n"
    "except SystemExit as e:\n"
    "    assert e.code in (0, None), e.code\n"
    "sys.stderr.write('MODULES=' + json.dumps(sorted(sys.modules)) + '\\n')\n"
)


def _modules_after_help() -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    assert "usage:" in proc.stdout
    line = next(x for x in proc.stderr.splitlines() if x.startswith("MODULES="))
    return json.loads(line.removeprefix("MODULES="))


def test_help_imports_no_numpy_nor_framework():
    modules = _modules_after_help()
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert not heavy, f"python -m harness --help imported {heavy}"
    # nor the machinery of a run: that is imported by the command that needs it
    assert "harness.run.orchestrator" not in modules
    assert "harness.monitor" not in modules
    # nor any command's module: harness.cli.main loads only the one it runs
    assert not {f"harness.cli.{name}" for name in COMMANDS} & set(modules)
