"""Every hook a harness plugin can implement. All names start with ``harness_``.

A plugin is a module (or object) registered under the entry-point group ``harness``,
e.g. in setup.cfg::

    [options.entry_points]
    harness =
        mytool = my_package.plugin

Plugin modules are imported by the orchestrator, which must stay light and never
import a deep-learning framework: a plugin imports only the standard library and
the harness at import time. Frameworks are imported by the trainer class that
``BackendInfo.trainer`` names, inside the worker process, and by the modules that the
hooks of plugin API 1.2 name (parity probe, ops kernels, model files) in the processes
that use them: the core names no framework, so an outside backend can do all that a
built-in one does.

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
    from harness.spec import RunSpec
    from harness.store.schema import RepeatRecord, RunResult
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
#: - 1.2: harness_parity_probe, harness_ops_kernels, harness_model_loader and
#:   harness_model_exporter (a backend takes part in ``verify``, ``ops`` and model files
#:   through them; without them it trains and infers only); ParityProbe, ModelFileError;
#:   Trainer.prepare_training; BackendInfo's compile_option and always_compiles.
#:
#: The promise: within one MAJOR version, a plugin written against an older MINOR keeps
#: working (what a later minor adds has a default; nothing is removed or made
#: required). A plugin may declare the version it was written against as a module (or
#: object) attribute ``HARNESS_PLUGIN_API = "1.0"``; the harness refuses it, with one
#: line naming both versions, when its MAJOR differs or its MINOR is newer than this.
#: (One change predates the promise: since 1.1 harness_repeat_finished and
#: harness_run_finished receive typed records where 1.0 passed dicts.)
PLUGIN_API_VERSION = "1.2"


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
    (harness.store.schema; ``repeat.to_json()`` gives its JSON). Do not change it.
    (Plugin API 1.0 passed the record's JSON-able dict.)
    """


@hookspec
def harness_run_finished(spec: RunSpec, result: RunResult) -> None:
    """A run has ended and its result (``result.json``) has been written and stored.

    ``result`` is a harness.store.schema.RunResult (attributes, ``to_json()``).
    (Plugin API 1.0 passed the result's JSON-able dict.)
    """


# What a backend supplies beyond training and inference (plugin API 1.2). Each hook is
# asked about one backend and answers with a lazy reference (``"module"`` or
# ``"module:attribute"``), imported only in the process that runs the framework; an
# implementation answers None for any backend that is not its own.


@hookspec(firstresult=True)
def harness_parity_probe(backend: BackendInfo) -> str | None:
    """The ``"module:Class"`` of ``backend``'s harness.backend.ParityProbe, or None.

    ``python -m harness verify`` compares a backend with the NumPy reference only when
    it has one. The class is imported and built (without arguments) in the parity
    process, in the backend's interpreter; it may import its framework there. Plugin
    API 1.2.
    """


@hookspec(firstresult=True)
def harness_ops_kernels(backend: BackendInfo) -> str | None:
    """The import name of ``backend``'s operation kernels module, or None (no ``ops``).

    The module (see harness.ops.kernels) has ``setup(job) -> dict`` and
    ``build(kernel, precision, job) -> Bench``, and optionally ``close()``; it is
    imported only in the ops worker, in the backend's interpreter. Plugin API 1.2.
    """


@hookspec(firstresult=True)
def harness_model_loader(backend: BackendInfo, format: str) -> str | None:
    """The ``"module:function"`` with which ``backend`` runs a user's model file of
    ``format`` (e.g. ``"onnx"`` for ``--onnx-file``), or None when it cannot.

    Called in the orchestrator. The function runs in the backend's interpreter, before
    any worker: ``function(path, shape)`` (``shape``: the user's C,H,W or None) returns
    a JSON-able dict with ``"shape"`` (the per-image C,H,W the run feeds the file), or
    raises harness.backend.ModelFileError with one line for the user. The backend's
    Inferencer runs the file (``spec.onnx_file`` for "onnx"). Plugin API 1.2.
    """


@hookspec(firstresult=True)
def harness_model_exporter(backend: BackendInfo, format: str) -> str | None:
    """The ``"module:function"`` with which ``backend`` writes a catalogue network as a
    model file of ``format`` (``python -m harness onnx`` asks for ``"onnx"``), or None.

    The function runs in the command's process (it may import the file format's
    package there, never a framework that takes the process over):
    ``function(network, weights, path, doc)`` writes ``path`` from the canonical
    ``weights`` and returns one line on what it wrote (e.g. ``"opset 17; checked"``);
    ValueError or KeyError: the weights do not fit the network. Plugin API 1.2.
    """
