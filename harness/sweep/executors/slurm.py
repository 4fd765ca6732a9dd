"""The SLURM executor: one ``sbatch`` job per run, watched from the submitting process.

Each pending cell gets a job folder ``<output>/.slurm/<sweep>/<position>.<attempt>/``
(the output directory must be on a filesystem the nodes share) holding ``job.json``
(the cell's RunSpec), ``job.sh`` (the batch script), the job's log ``slurm-<id>.out``,
and what the job leaves: ``outcome.json`` (harness.sweep.executors.job) and
``exit-<id>`` (the script's exit status). The job runs the cell's run on its node and
moves the finished run folder into the output directory; only this process writes the
results store: when a job ends, its run is taken in (harness.run.recover.adopt).

Job end states come from ``squeue`` while a job is known there, then ``scontrol show
job`` (the controller keeps finished jobs for MinJobAge), then the job's own files:
no accounting database (``sacct``) is needed. A job cancelled, killed at its time
limit or lost with its node is stored as a run of status ``cancelled``, ``timeout`` or
``node_fail`` (sbatch.END_STATUS), which ``--retry-failed`` runs again.

Stopping this process (Ctrl-C, kill -9) leaves the jobs running; the same command
re-attaches to them. A cell is marked as being submitted (job id "") before ``sbatch``
runs, so a submitter killed in between finds the job by its name or its log instead of
submitting it again.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.markup import escape

from harness.run.orchestrator import new_run_id, utc_now
from harness.run.recover import adopt
from harness.store.schema import RunResult, RunSummary
from harness.store.store import ResultStore
from harness.sweep.executors import SweepContext
from harness.sweep.executors.sbatch import (
    END_STATUS,
    FRIENDLY,
    JobInfo,
    SlurmBusy,
    call,
    final_status,
    first_error,
    job_dir,
    job_name,
    job_script,
    list_jobs,
    sbatch_args,
    show_job,
)
from harness.sweep.progress import Eta, duration
from harness.sweep.runner import EXIT_FAILED_RUN, kind, label, print_footer, print_header, run_line
from harness.sweep.state import DONE, FAILED, PENDING, RUNNING, SKIPPED, CellState, SweepState

DEFAULT_POLL_S = 5.0


# Watching the jobs ---------------------------------------------------------------------


@dataclass
class _Tracked:
    cell: CellState
    folder: Path
    state: str = "PENDING"
    started: float | None = None  # monotonic, when first seen running
    gone_since: float | None = None  # monotonic, when first not known to SLURM


class _Watcher:
    """Submits the pending cells and follows their jobs to the end."""

    def __init__(self, ctx: SweepContext) -> None:
        assert ctx.state is not None
        self.ctx = ctx
        self.state: SweepState = ctx.state
        self.store: ResultStore = ctx.state.store
        self.output = self.store.path.parent
        self.console = ctx.console
        self.poll_s = float(ctx.config.slurm.get("poll_s", DEFAULT_POLL_S))
        self.tracked: dict[str, _Tracked] = {}  # job id -> tracked
        self.eta = Eta()
        self.total = 0
        self.done = 0
        self._counts = ""

    def say(self, text: str) -> None:
        self.console.print(escape(text), highlight=False, soft_wrap=True)

    # Submitting and re-attaching -----------------------------------------------------

    def attach_or_submit(self) -> None:
        cells = [c for c in self.state.cells() if c.key in self.ctx.plans or c.job_id]
        queue = list_jobs()
        by_name = {job.name: job for job in queue.values()}
        todo = [c for c in cells if c.status in (PENDING, RUNNING)]
        self.total = len(todo)
        attached = submitted = 0
        for cell in todo:
            if cell.status == RUNNING and cell.job_id is not None:
                job_id = cell.job_id or self._find(cell, by_name)
                if job_id:
                    if not cell.job_id:
                        self.state.set_job(cell, job_id, cell.job_state)
                    self._track(job_id, cell)
                    attached += 1
                    continue
                self._submit(cell)  # its submission never reached SLURM
            else:
                self.state.mark_submitting(cell)
                self._submit(cell)
            submitted += 1
        parts = [f"{submitted} job(s) submitted"] + ([f"{attached} re-attached"] * bool(attached))
        self.say(f"slurm: {', '.join(parts)}; output {self.output} (on a shared filesystem)")

    def _find(self, cell: CellState, by_name: dict[str, JobInfo]) -> str | None:
        """The job of a cell whose submitter died before it stored the job id."""
        job = by_name.get(job_name(self.state.sweep_id, cell))
        if job is not None:
            return job.job_id
        folder = job_dir(self.output, self.state.sweep_id, cell)
        logs = sorted(folder.glob("slurm-*.out")) if folder.is_dir() else []
        return logs[-1].stem.removeprefix("slurm-") if logs else None

    def _submit(self, cell: CellState) -> None:
        folder = job_dir(self.output, self.state.sweep_id, cell)
        folder.mkdir(parents=True, exist_ok=True)
        spec = cell.spec  # resolved again on the node, as `python -m harness` would
        job = {
            "sweep_id": self.state.sweep_id,
            "cell": cell.key,
            "output_dir": str(self.output.resolve()),
            "spec": spec.to_dict(),
        }
        (folder / "job.json").write_text(json.dumps(job, indent=2))
        name = job_name(self.state.sweep_id, cell)
        args = sbatch_args(self.ctx.config, cell)
        script = job_script(folder.resolve(), name, args, sys.executable, os.getcwd())
        (folder / "job.sh").write_text(script)
        out = call("sbatch", "--parsable", str(folder / "job.sh"))
        if out.returncode != 0:  # refused now though --test-only passed: store, go on
            cause = f"sbatch refused the job: {first_error(out.stderr + out.stdout)}"
            self.state.mark_done(cell, None, FAILED, cause)
            self.state.set_job(cell, None, None)
            self.say(f"{label(cell)}: {cause}")
            return
        job_id = out.stdout.strip().split(";")[0]
        self.state.set_job(cell, job_id, "PENDING")
        self._track(job_id, cell)

    def _track(self, job_id: str, cell: CellState) -> None:
        folder = job_dir(self.output, self.state.sweep_id, cell)
        self.tracked[job_id] = _Tracked(cell, folder, cell.job_state or "PENDING")

    # Polling -----------------------------------------------------------------------

    def watch(self) -> None:
        while self.tracked:
            try:
                self._poll()
            except SlurmBusy as exc:  # nothing is decided without an answer: ask again
                self.say(f"slurm: {exc}; asking again in {self.poll_s:g} s")
            self._print_counts()
            if self.tracked:
                time.sleep(self.poll_s)

    def _poll(self) -> None:
        queue = list_jobs()
        for job_id, tracked in list(self.tracked.items()):
            info = queue.get(job_id)
            if info is not None and info.state in FRIENDLY:
                tracked.gone_since = None
                self._live(job_id, tracked, info)
                continue
            ended = info if info is not None and info.state in END_STATUS else None
            ended = ended or show_job(job_id)
            if ended is not None and ended.state in FRIENDLY:  # squeue lagged
                self._live(job_id, tracked, ended)
                continue
            if self._end(job_id, tracked, ended):
                del self.tracked[job_id]

    def _live(self, job_id: str, tracked: _Tracked, info: JobInfo) -> None:
        if info.state != tracked.state:
            tracked.state = info.state
            self.state.set_job(tracked.cell, job_id, info.state)
        if info.state == "RUNNING" and tracked.started is None:
            tracked.started = time.monotonic()
            self.say(f"job {job_id} running on {info.nodes}: {label(tracked.cell)}")

    def _print_counts(self) -> None:
        states = [FRIENDLY.get(t.state, "running") for t in self.tracked.values()]
        queued, running = states.count("queued"), len(states) - states.count("queued")
        left = self._eta(running)
        text = (
            f"slurm: {queued} queued · {running} running · {self.done}/{self.total} done"
            f" · ETA {duration(left)}"
        )
        if text != self._counts and self.tracked:
            self._counts = text
            self.say(text)

    def _eta(self, running: int, but: str | None = None) -> float | None:
        kinds = [kind(t.cell) for job_id, t in self.tracked.items() if job_id != but]
        total = self.eta.left(kinds)
        return None if total is None else total / max(1, running)

    # A job ended -------------------------------------------------------------------

    def _end(self, job_id: str, tracked: _Tracked, info: JobInfo | None) -> bool:
        """Stores the cell's run; False to look again later (files not there yet)."""
        folder = tracked.folder
        outcome = _read_json(folder / "outcome.json")
        exit_file = folder / f"exit-{job_id}"
        if info is None and outcome is None and not exit_file.exists():
            # not known to SLURM and no trace: give a shared filesystem a moment
            tracked.gone_since = tracked.gone_since or time.monotonic()
            if time.monotonic() - tracked.gone_since < max(30.0, 3 * self.poll_s):
                return False
        if info is not None and info.state == "COMPLETED" and outcome is None:
            tracked.gone_since = tracked.gone_since or time.monotonic()
            if time.monotonic() - tracked.gone_since < max(10.0, 2 * self.poll_s):
                return False
        slurm_state = info.state if info is not None else None
        for note in adopt(self.store, self.output):  # the run folder(s) the job moved here
            if "taken in" in note and "stopped before" in note:
                self.say(f"taken into the store: {note}")
        run = self._run_of(outcome)
        status, cause, run_id = self._verdict(job_id, slurm_state, outcome, exit_file, run)
        cell = tracked.cell
        self.state.mark_done(cell, run_id, status, cause)
        self.state.set_job(cell, job_id, slurm_state or cell.job_state)
        seconds = time.monotonic() - tracked.started if tracked.started else 0.0
        self.eta.add(kind(cell), seconds)
        self.done += 1
        speed = run.summary.images_per_sec.mean if run is not None and status == "ok" else None
        left = self._eta(max(1, len(self.tracked) - 1), but=job_id)
        self.say(
            run_line(self.done, self.total, cell, status, speed, cause, seconds, left)
            + f" · job {job_id}"
        )
        return True

    def _run_of(self, outcome: dict[str, Any] | None) -> RunResult | None:
        runs = (outcome or {}).get("runs") or []
        for run_id in reversed(runs):
            found = self.store.runs(run_id=run_id)
            if found:
                return found[-1]
        return None

    def _verdict(
        self,
        job_id: str,
        slurm_state: str | None,
        outcome: dict[str, Any] | None,
        exit_file: Path,
        run: RunResult | None,
    ) -> tuple[str, str | None, str]:
        """(run status, cause, run id) of a job that ended; stores a run when the job
        left none or was stopped by SLURM."""
        said = f"SLURM job {job_id} {slurm_state.lower()}" if slurm_state else ""
        code = exit_file.read_text().strip() if exit_file.exists() else None
        status = final_status(slurm_state, run.status if run is not None else None, code)
        if run is not None and status == run.status:
            return run.status, "; ".join(run.summary.causes) or None, run.run_id
        if slurm_state is None:  # SLURM forgot the job (MinJobAge): its files say what happened
            said = (
                f"SLURM job {job_id} ended with exit status {code}"
                if code
                else f"SLURM job {job_id} ended unseen: SLURM no longer knows it and it left "
                "no exit status (node lost?)"
            )
        error = (outcome or {}).get("error")
        cause = "; ".join(filter(None, [said, error, _log_tail(exit_file.parent, job_id)]))
        return status, cause, self._store_stopped(run, status, cause, job_id)

    def _store_stopped(self, run: RunResult | None, status: str, cause: str, job_id: str) -> str:
        """The run with the job's end as its status (a new run when the job left none)."""
        cell_spec = self.tracked[job_id].cell.spec
        if run is None:
            run = RunResult(
                run_id=new_run_id(cell_spec),
                started_at=utc_now(),
                spec=cell_spec,
                hardware=cell_spec.hardware,
                global_batch=cell_spec.global_batch,
                sweep_id=self.state.sweep_id,
                environment={"slurm_job_id": job_id},
                summary=RunSummary(status=status),
            )
        run.finished_at = run.finished_at or utc_now()
        run.summary.status = status
        run.summary.causes.append(cause)
        run.environment["slurm_job_id"] = job_id
        folder = self.output / run.run_id
        if folder.is_dir():
            (folder / "result.json").write_text(run.to_json())
        self.store.add_run(run)
        return run.run_id


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _log_tail(folder: Path, job_id: str) -> str | None:
    """The last line of the job's log that says something went wrong, if any."""
    try:
        lines = (folder / f"slurm-{job_id}.out").read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines[-40:]):
        low = line.lower()
        if "error" in low or "cancelled" in low or "time limit" in low:
            return line.strip()[:300]
    return None


# The executor's entry points -----------------------------------------------------------


def run(ctx: SweepContext) -> int:
    """Submits every pending cell as a job and waits until every job has ended."""
    assert ctx.state is not None
    state = ctx.state
    print_header(state, ctx.notes, ctx.resumed, ctx.console)
    watcher = _Watcher(ctx)
    try:
        watcher.attach_or_submit()
        watcher.watch()
    except KeyboardInterrupt:
        ctx.console.print(
            "the jobs go on running; run the same command again to follow them "
            "(sweep --status shows them)",
            highlight=False,
        )
        raise
    cells = state.cells()
    finished = all(c.status in (DONE, SKIPPED) for c in cells)
    state.release("done" if finished else "incomplete")
    print_footer(state, cells, ctx.console)
    return EXIT_FAILED_RUN if any(c.status == DONE and c.run_status != "ok" for c in cells) else 0


def job_states(ctx: SweepContext) -> dict[str, str]:
    """Live words for the cells that have a job: queued (reason), running on NODE, ..."""
    out: dict[str, str] = {}
    cells = [c for c in ctx.cells if c.status == RUNNING and c.job_id]
    if not cells or shutil.which("squeue") is None:
        return out
    queue = list_jobs()
    for cell in cells:
        info = queue.get(cell.job_id) or show_job(cell.job_id)
        if info is None:
            out[cell.key] = "ended (not stored yet: run the sweep again)"
        elif info.state == "PENDING":
            out[cell.key] = f"queued ({info.reason})" if info.reason else "queued"
        elif info.state in FRIENDLY:
            where = f" on {info.nodes}" if info.nodes else ""
            out[cell.key] = f"{FRIENDLY[info.state]}{where}"
        else:
            out[cell.key] = f"ended: {info.state.lower()} (not stored yet: run the sweep again)"
    return out
