"""Sweeps: a TOML file lists tools, models, datasets and hardware; every combination
runs once through the orchestrator, and a stopped sweep resumes where it stopped.

    from harness.sweep import SweepRequest, run_sweep
    run_sweep(SweepRequest(source="study", dry_run=True), console)

Modules: config (the file format, cells), state (the sweep's rows in the results
store), runner (planning, running, resuming), progress (bars, ETA).
"""

from harness.sweep.config import (
    Cell,
    Hardware,
    SweepConfig,
    builtin_names,
    fingerprint,
    load,
    parse,
)
from harness.sweep.runner import SweepRequest, run_sweep

__all__ = [
    "Cell",
    "Hardware",
    "SweepConfig",
    "SweepRequest",
    "builtin_names",
    "fingerprint",
    "load",
    "parse",
    "run_sweep",
]
