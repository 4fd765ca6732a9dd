"""Sweep executors: where a sweep's runs execute (``sweep FILE --executor NAME``).

The runner plans the sweep, opens its state and hands the cells to an executor:

- ``local`` (the default): one run after another in this process (executors/local.py);
- ``slurm``: one SLURM job per run, watched from this process (executors/slurm.py;
  executors/sbatch.py talks to SLURM, executors/job.py is what a job runs).

Another engine (Kubernetes, a cloud batch service) is a plugin that registers an
:class:`Executor` through ``harness_register_executors``. Its ``run`` gets a
:class:`SweepContext` and must leave every cell it handled ``done`` through the state
(``state.mark_done``), storing each run in ``state.store``; it returns the exit code.
With ``ctx.skip_oom``, it calls ``harness.sweep.oom.skip_larger`` after a run that ran
out of memory, and leaves the cells that become skipped alone.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness import hookimpl

if TYPE_CHECKING:
    from rich.console import Console

    from harness.plugins import PluginManager
    from harness.run.orchestrator import Plan
    from harness.sweep.config import SweepConfig
    from harness.sweep.state import SweepState


@dataclass
class SweepContext:
    """What an executor gets: the sweep's state, the plans of the cells to run, and the
    sweep file (for executor settings such as its [slurm] table)."""

    state: SweepState | None  # None only for ``check`` of a sweep not yet stored
    plans: dict[str, Plan]  # cell key -> plan, for every cell that can run
    config: SweepConfig  # the sweep file, parsed
    console: Console
    pm: PluginManager
    notes: list[str]  # what reconciling the state found, printed in the header
    resumed: bool
    cells: list[Any]  # the sweep's cells (CellState, or Cell before the sweep is stored)
    # after a run out of memory, skip its group's larger batches (harness.sweep.oom)
    skip_oom: bool = True


@dataclass(frozen=True)
class Executor:
    """One way to execute a sweep's runs.

    ``run(ctx)`` runs the pending cells and returns the exit code. ``check(ctx)``
    (optional) refuses with a UsageError before anything starts (e.g. no scheduler).
    ``job_states(ctx)`` (optional) gives live job states by cell key, for
    ``sweep --status``. ``planned_as(spec)`` (optional): the RunSpec as this machine
    plans it (the run executes elsewhere). ``local_gpus``: plans check this machine's
    GPUs (an executor that runs elsewhere says False). ``keeps_jobs``: a cell left
    running by a stopped sweep still has a job, which ``run`` re-attaches to, instead of
    running it again.
    """

    name: str
    run: Callable[[SweepContext], int]
    description: str = ""
    check: Callable[[SweepContext], None] | None = None
    job_states: Callable[[SweepContext], dict[str, str]] | None = None
    planned_as: Callable[[Any], Any] | None = None
    local_gpus: bool = True
    keeps_jobs: bool = False


def _lazy(module: str, name: str) -> Callable[..., Any]:
    """``module.name``, imported when first called (executors import the orchestrator)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = name
    return call


LOCAL = Executor(
    "local",
    _lazy("harness.sweep.executors.local", "run"),
    "one run after another on this machine",
)
SLURM = Executor(
    "slurm",
    _lazy("harness.sweep.executors.slurm", "run"),
    "one SLURM job per run (sbatch), watched from here; resources from [slurm]",
    check=_lazy("harness.sweep.executors.sbatch", "check"),
    job_states=_lazy("harness.sweep.executors.slurm", "job_states"),
    planned_as=_lazy("harness.sweep.executors.sbatch", "planned_as"),
    local_gpus=False,
    keeps_jobs=True,
)


@hookimpl(trylast=True)  # first in registration order: a plugin cannot take these names
def harness_register_executors(register: Callable[[Executor], None]) -> None:
    register(LOCAL)
    register(SLURM)
