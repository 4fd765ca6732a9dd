"""What a SLURM job of a sweep runs: one cell's run, on the job's node.

    python -m harness.sweep.executors.job JOB_FOLDER

``JOB_FOLDER/job.json`` holds the cell's RunSpec, the sweep id and the sweep's output
directory (shared with the submitting host). The run goes through the orchestrator as
``python -m harness`` would, so the node's own GPUs are monitored, but into a folder on
the node (``$TMPDIR``): the results store it writes there is the job's alone (SQLite is
not safe for writers on several hosts). At the end, stopped or not, the run folder moves
into the shared output directory and ``JOB_FOLDER/outcome.json`` names it; the
submitting process stores it. Exit code: 0 ok, 1 a failed run, 2 a mistake, 128+N
after signal N (``scancel``, the time limit).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.monitor.resources import monitor_factory
from harness.run import signals
from harness.run.orchestrator import execute, plan_run
from harness.spec import RunSpec


def _scratch() -> Path:
    job = os.environ.get("SLURM_JOB_ID") or str(os.getpid())
    return Path(os.environ.get("TMPDIR") or tempfile.gettempdir()) / f"harness-job-{job}"


def publish(scratch: Path, output: Path, folder: Path) -> list[str]:
    """Moves every run folder in ``scratch`` into ``output`` (whole, by a rename on the
    shared filesystem, so a half-copied folder is never seen there); their run ids."""
    moved = []
    for run_dir in sorted(p for p in scratch.iterdir() if (p / "run.json").is_file()):
        part = folder / f"{run_dir.name}.part"
        if part.exists():
            shutil.rmtree(part)
        shutil.copytree(run_dir, part)
        os.replace(part, output / run_dir.name)
        moved.append(run_dir.name)
    return moved


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m harness.sweep.executors.job JOB_FOLDER", file=sys.stderr)
        return 2
    folder = Path(argv[0])
    job = json.loads((folder / "job.json").read_text())
    output = Path(job["output_dir"])
    spec = RunSpec.from_dict(job["spec"])
    scratch = _scratch()
    spec.output_dir = str(scratch)
    outcome: dict[str, Any] = {
        "job_id": os.environ.get("SLURM_JOB_ID"),
        "host": socket.gethostname(),
        "cell": job.get("cell"),
    }
    code = 0
    with signals.installed():
        try:
            plan = plan_run(spec)  # this node's GPUs and interpreters
            result = execute(plan, monitor_factory=monitor_factory, sweep_id=job["sweep_id"])
            outcome["status"] = result.result.status
            code = 0 if result.result.status == "ok" else 1
        except UsageError as exc:
            outcome["error"] = f"error: {exc}"
            code = UsageError.exit_code
        except KeyboardInterrupt as exc:  # scancel or the time limit (SIGTERM): stored
            outcome["error"] = signals.cause(exc)
            code = signals.exit_code(exc)
        except Exception as exc:
            outcome["error"] = f"{type(exc).__name__}: {exc}"
            code = 1
        finally:
            with signals.hold():
                outcome["runs"] = publish(scratch, output, folder) if scratch.is_dir() else []
                shutil.rmtree(scratch, ignore_errors=True)
                tmp = folder / "outcome.json.tmp"
                tmp.write_text(json.dumps(outcome, indent=2))
                os.replace(tmp, folder / "outcome.json")
    print(f"harness job: exit {code}; {folder / 'outcome.json'}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
