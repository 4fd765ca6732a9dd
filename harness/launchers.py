"""Launchers turn a worker invocation into the command line that starts it.

A run with one process uses the built-in ``local`` launcher. A backend that needs
several processes (PyTorch DDP) names a launcher, e.g. ``torchrun``, registered by a
plugin through ``harness_register_launchers``; multi-node or SLURM launchers can be
added the same way without touching the core.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness import hookimpl


@dataclass(frozen=True)
class LaunchRequest:
    python: str  # interpreter that has the framework
    spec_path: str  # the run spec the worker reads
    processes: int  # worker processes to start (1 unless the backend is multi-process)

    def worker_args(self) -> list[str]:
        """Arguments after the interpreter that start one worker."""
        return ["-m", "harness.run.worker", self.spec_path]


@dataclass(frozen=True)
class Launcher:
    name: str
    build: Callable[[LaunchRequest], list[str]]
    description: str = ""


def _local(request: LaunchRequest) -> list[str]:
    if request.processes != 1:
        raise ValueError("the local launcher starts exactly one worker process")
    return [request.python, *request.worker_args()]


LOCAL = Launcher("local", _local, "one worker process in the framework's interpreter")


@hookimpl
def harness_register_launchers(register: Callable[[Launcher], None]) -> None:
    register(LOCAL)
