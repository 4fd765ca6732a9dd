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

The plugin API is versioned (:data:`PLUGIN_API_VERSION`); docs/plugins.md lists
every hook and base-class method with the version that added it, and says how hook
wrappers (``@hookimpl(wrapper=True)``) and pluggy's tracing work with the harness.
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

#: The plugin API this harness implements, "MAJOR.MINOR": the hooks below, the base
#: classes and data classes of harness.backend, harness.launchers.Launcher and
#: harness.sweep.executors.Executor, and ``harness.hookimpl``.
#:
#: - 1.0: the first release (harness_register_backends, harness_register_launchers and
#:   the three observer hooks; Trainer; BackendInfo's first nine fields).
#: - 1.1: harness_register_executors, harness_refuse_run; Inferencer; the Trainer's
#:   optional methods prepare_evaluation, reset_state, all_reduce_sum,
#:   device_step_times and replica_states; BackendInfo's run_env, options, tasks,
#:   inferencer and multi-node fields; hook wrappers and pluggy's tracing work.
#:
#: The promise: within one MAJOR version, a plugin written against an older MINOR keeps
#: working (what a later minor adds has a default; nothing is removed or made
#: required). A plugin may declare the version it was written against as a module (or
#: object) attribute ``HARNESS_PLUGIN_API = "1.0"``; the harness refuses it, with one
#: line naming both versions, when its MAJOR differs or its MINOR is newer than this.
#: (One change predates the promise: since 1.1 harness_repeat_finished and
#: harness_run_finished receive typed records where 1.0 passed dicts.)
PLUGIN_API_VERSION = "1.1"


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
    Plugin API 1.1.
    """


@hookspec(firstresult=True)
def harness_refuse_run(spec: RunSpec, backend: BackendInfo, network: Network) -> str | None:
    """Why ``backend`` cannot run ``spec`` with ``network`` (e.g. a layer it lacks), or None.

    Called by the orchestrator after the spec is validated and before any worker
    starts; the first reason returned becomes a one-line usage error (exit code 2),
    and sweeps list the run as skipped. Implementations must not import a framework.
    Plugin API 1.1.
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
    (Plugin API 1.0 passed the record's JSON-able dict.)
    """


@hookspec
def harness_run_finished(spec: RunSpec, result: RunResult) -> None:
    """A run has ended and its result (``result.json``) has been written and stored.

    ``result`` is a harness.results.schema.RunResult (attributes, ``to_json()``).
    (Plugin API 1.0 passed the result's JSON-able dict.)
    """
