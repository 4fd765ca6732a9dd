"""Talking to SLURM for the SLURM executor (harness.sweep.executors.slurm): its commands
(``squeue``, ``scontrol``, ``sbatch``) and what they print, the job's sbatch options from
the sweep file, the batch script, and the checks made before anything is submitted.
"""

from __future__ import annotations

import dataclasses
import getpass
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.sweep.config import SweepConfig
from harness.sweep.executors import SweepContext
from harness.sweep.state import DONE, PENDING, SKIPPED, CellState

_CALL_TIMEOUT_S = 60
JOB_MODULE = "harness.sweep.executors.job"

# SLURM job states that end a job, and the run status stored when the job did not end
# its run itself. COMPLETED and FAILED keep the run's own status when it has one.
END_STATUS = {
    "COMPLETED": "error",  # ended without a run: the harness could not start it
    "FAILED": "failed",
    "CANCELLED": "cancelled",
    "TIMEOUT": "timeout",
    "DEADLINE": "timeout",
    "NODE_FAIL": "node_fail",
    "BOOT_FAIL": "node_fail",
    "PREEMPTED": "preempted",
    "OUT_OF_MEMORY": "oom",
    "SPECIAL_EXIT": "failed",
    "REVOKED": "cancelled",
}
# End states that override the status of the run the job stored (it was stopped).
STOPPED = {"CANCELLED", "TIMEOUT", "DEADLINE", "NODE_FAIL", "BOOT_FAIL", "PREEMPTED", "REVOKED"}
FRIENDLY = {
    "PENDING": "queued",
    "CONFIGURING": "starting",
    "RUNNING": "running",
    "COMPLETING": "finishing",
    "SUSPENDED": "suspended",
    "REQUEUED": "queued",
    "RESIZING": "running",
    "SIGNALING": "running",
    "STAGE_OUT": "finishing",
    "STOPPED": "stopped",
}


# Talking to SLURM ------------------------------------------------------------------


def call(*args: str, timeout: float = _CALL_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """A SLURM command; a missing one is a UsageError (no SLURM here)."""
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise UsageError(
            f"--executor slurm: no SLURM on this machine ({args[0]} not found); run the "
            "sweep on a login node of the cluster, or without --executor"
        ) from None
    except subprocess.TimeoutExpired:
        raise UsageError(
            f"--executor slurm: {args[0]} did not answer in {timeout:.0f} s: is the SLURM "
            "controller up? (scontrol ping)"
        ) from None


def first_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower():
            return line.removeprefix("sbatch: error: ").removeprefix("sbatch: ")
    return lines[0] if lines else "(no message)"


@dataclass
class JobInfo:
    """What SLURM says about one job."""

    job_id: str
    state: str  # PENDING, RUNNING, COMPLETED, CANCELLED, TIMEOUT, NODE_FAIL, ...
    reason: str = ""
    nodes: str = ""
    name: str = ""
    exit_code: str = ""


def parse_squeue(text: str) -> dict[str, JobInfo]:
    """``squeue -h -o '%i|%T|%r|%N|%j'`` lines, by job id."""
    jobs = {}
    for line in text.splitlines():
        parts = line.strip().split("|", 4)
        if len(parts) == 5 and parts[0]:
            job_id, state, reason, nodes, name = parts
            jobs[job_id] = JobInfo(job_id, state.split()[0], reason, nodes, name)
    return jobs


def parse_scontrol(text: str) -> JobInfo | None:
    """``scontrol show job -o ID``: the job's state (``JobState=CANCELLED Reason=...``)."""
    fields = dict(re.findall(r"(\w+)=(\S*)", text))
    if "JobId" not in fields or "JobState" not in fields:
        return None
    return JobInfo(
        fields["JobId"],
        fields["JobState"],
        fields.get("Reason", ""),
        fields.get("NodeList", ""),
        fields.get("JobName", ""),
        fields.get("ExitCode", ""),
    )


def list_jobs() -> dict[str, JobInfo]:
    """This user's jobs that SLURM still lists (queued, running, just ended)."""
    out = call("squeue", "-h", "-u", getpass.getuser(), "-o", "%i|%T|%r|%N|%j")
    if out.returncode != 0:
        raise SlurmBusy(f"squeue failed: {first_error(out.stderr + out.stdout)}")
    return parse_squeue(out.stdout)


class SlurmBusy(UsageError):
    """SLURM did not answer this time (a controller restarting): ask again later."""


def show_job(job_id: str) -> JobInfo | None:
    """A job the controller still remembers (MinJobAge after its end), else None."""
    out = call("scontrol", "show", "job", "-o", job_id)
    if out.returncode == 0:
        return parse_scontrol(out.stdout)
    if "invalid job id" in (out.stderr + out.stdout).lower():
        return None
    raise SlurmBusy(f"scontrol show job {job_id}: {first_error(out.stderr + out.stdout)}")


# Resources and scripts ---------------------------------------------------------------


def resources(config: SweepConfig, cell: Any) -> dict[str, Any]:
    """The [slurm] table, updated by the cell's hardware entry's ``slurm`` table."""
    merged = dict(config.slurm)
    merged.pop("poll_s", None)
    for hardware in config.hardware:
        if hardware.label == cell.hardware:
            merged.update(hardware.slurm)
    return merged


def sbatch_args(config: SweepConfig, cell: Any) -> list[str]:
    """The sbatch options of ``cell``'s job: [slurm], its hardware entry, and defaults
    (the run's nodes, its GPUs per node, its threads as CPUs, no requeue)."""
    res = resources(config, cell)
    spec = cell.spec
    args = ["--nodes", str(getattr(spec, "nodes", None) or 1)]  # the run's nodes
    args += ["--ntasks-per-node", "1", "--no-requeue"]
    for key, option in (
        ("partition", "--partition"),
        ("account", "--account"),
        ("time", "--time"),
        ("constraint", "--constraint"),
        ("mem", "--mem"),
    ):
        if res.get(key):
            args += [option, str(res[key])]
    cpus = res.get("cpus_per_task") or spec.threads
    if cpus:
        args += ["--cpus-per-task", str(cpus)]
    gpus = res.get("gpus") or (str(spec.num_gpus) if spec.num_gpus > 0 else None)
    if gpus:
        args += ["--gpus-per-node", str(gpus)]
    return args + list(res.get("extra_args") or [])


def planned_as(spec: Any) -> Any:
    """The spec as the submitting host plans it: a multi-node run starts its nodes with
    ``srun`` inside the job's allocation, which the submitting host is not in."""
    if getattr(spec, "nodes", 1) > 1 and not getattr(spec, "launcher", None):
        return dataclasses.replace(spec, launcher="srun")
    return spec


def job_name(sweep_id: str, cell: CellState) -> str:
    return f"harness-{sweep_id}-{cell.position + 1}.{cell.attempts}"


def job_dir(output_dir: Path, sweep_id: str, cell: CellState) -> Path:
    return output_dir / ".slurm" / sweep_id / f"{cell.position + 1}.{cell.attempts}"


def job_script(folder: Path, name: str, args: list[str], python: str, cwd: str) -> str:
    """The batch script: the run (harness.sweep.executors.job), then its exit status in
    ``exit-$SLURM_JOB_ID`` (written even after SIGTERM: the run stores itself first)."""
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={name}",
        f"#SBATCH --output={folder}/slurm-%j.out",
        f"#SBATCH --chdir={cwd}",
        *(f"#SBATCH {shlex.join([a])}" for a in _joined(args)),
        "# written by the harness (sweep --executor slurm)",
        "trap 'true' TERM  # the run gets SIGTERM too; wait for it to store what it has",
        f"{q(python)} -m {JOB_MODULE} {q(str(folder))}",
        "rc=$?",
        f'echo "$rc" > {q(str(folder))}/exit-$SLURM_JOB_ID.tmp',
        f"mv -f {q(str(folder))}/exit-$SLURM_JOB_ID.tmp {q(str(folder))}/exit-$SLURM_JOB_ID",
        'exit "$rc"',
    ]
    return "\n".join(lines) + "\n"


def _joined(args: list[str]) -> list[str]:
    """["--time", "5"] -> ["--time=5"]: one #SBATCH line per option."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        nxt = args[i + 1] if i + 1 < len(args) else None
        if arg.startswith("--") and "=" not in arg and nxt is not None and not nxt.startswith("-"):
            out.append(f"{arg}={nxt}")
            i += 2
        else:
            out.append(arg)
            i += 1
    return out


# Checks before anything is submitted --------------------------------------------------


def check(ctx: SweepContext) -> None:
    """SLURM answers, and accepts every distinct resource set (``sbatch --test-only``)."""
    for command in ("sbatch", "squeue", "scontrol"):
        if shutil.which(command) is None:
            raise UsageError(
                f"--executor slurm: no SLURM on this machine ({command} not found); run the "
                "sweep on a login node of the cluster, or without --executor"
            )
    ping = call("scontrol", "ping")
    if ping.returncode != 0 or "UP" not in ping.stdout:
        said = first_error(ping.stdout + ping.stderr)
        raise UsageError(f"--executor slurm: the SLURM controller does not answer ({said})")
    tried: set[tuple[str, ...]] = set()
    for cell in ctx.cells:
        if getattr(cell, "status", PENDING) in (DONE, SKIPPED):
            continue
        args = tuple(sbatch_args(ctx.config, cell))
        if args in tried:
            continue
        tried.add(args)
        out = call("sbatch", "--test-only", *args, "--wrap", "true")
        if out.returncode != 0:
            raise UsageError(
                f"--executor slurm: SLURM refuses the resources of {cell.key} "
                f"({shlex.join(args)}): {first_error(out.stderr + out.stdout)}"
            )


def final_status(slurm_state: str | None, run_status: str | None, exit_code: str | None) -> str:
    """The status stored for a job that ended: the run's own, unless SLURM stopped it
    (cancelled, time limit, node failure, ...) or it left no run."""
    if slurm_state in STOPPED:
        return END_STATUS[slurm_state]
    if run_status is not None:
        return run_status
    if slurm_state in END_STATUS:
        return END_STATUS[slurm_state]
    return "failed" if exit_code else "lost"  # SLURM forgot it; "lost": not even an exit file
