"""Every hook a harness plugin can implement. All names start with ``harness_``.

A plugin is a module (or object) registered under the entry-point group ``harness``,
e.g. in setup.cfg::

    [options.entry_points]
    harness =
        mytool = my_package.plugin

Plugin modules are imported by the orchestrator, which must stay light and never
import a deep-learning framework: a plugin imports only the standard library and
the harness at import time. Frameworks are imported by the trainer class that
``BackendInfo.trainer`` names, inside the worker process.

Registration hooks receive a ``register`` callback instead of returning values, so
one plugin can provide several backends or launchers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from harness.backend import BackendInfo
    from harness.launchers import Launcher
    from harness.models import Network
    from harness.results.schema import RepeatRecord, RunResult
    from harness.run.spec import RunSpec
    from harness.sweep.executors import Executor

hookspec = pluggy.HookspecMarker("harness")


@hookspec
def harness_register_backends(register: Callable[[BackendInfo], None]) -> None:
    """Register the backends (``--tool`` values) this plugin provides.

    Called once, when the plugin manager is created, in every process that needs
    backends (the orchestrator and each worker). Call ``register(BackendInfo(...))``
    once per backend. Two plugins registering the same name is an error.
    """


@hookspec
def harness_register_launchers(register: Callable[[Launcher], None]) -> None:
    """Register launchers that start a run's worker processes.

    A backend names the launcher it needs for multi-process runs in
    ``BackendInfo.multi_process_launcher``. Called once, like the hook above.
    """


@hookspec
def harness_register_executors(register: Callable[[Executor], None]) -> None:
    """Register sweep executors (``sweep --executor NAME``): where a sweep's runs execute.

    The built-in ones are ``local`` (one run after another on this machine) and
    ``slurm`` (one SLURM job per run). Called the first time a sweep needs an executor.
    """


@hookspec(firstresult=True)
def harness_refuse_run(spec: RunSpec, backend: BackendInfo, network: Network) -> str | None:
    """Why ``backend`` cannot run ``spec`` with ``network`` (e.g. a layer it lacks), or None.

    Called by the orchestrator after the spec is validated and before any worker
    starts; the first reason returned becomes a one-line usage error (exit code 2),
    and sweeps list the run as skipped. Implementations must not import a framework.
    """


@hookspec
def harness_run_started(spec: RunSpec, run_dir: Path) -> None:
    """A run (all its repeats) is about to start; ``run_dir`` is its logs folder.

    Observers only: the return value is ignored.
    """


@hookspec
def harness_repeat_finished(spec: RunSpec, repeat: RepeatRecord) -> None:
    """One repeat (one worker process) has ended, successfully or not.

    ``repeat`` is the typed record stored in the results store
    (harness.results.schema; ``repeat.to_json()`` gives its JSON). Do not change it.
    """


@hookspec
def harness_run_finished(spec: RunSpec, result: RunResult) -> None:
    """A run has ended and its result (``result.json``) has been written and stored.

    ``result`` is a harness.results.schema.RunResult (attributes, ``to_json()``)."""
