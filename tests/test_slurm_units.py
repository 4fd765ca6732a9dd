"""The SLURM executor's parts that need no cluster: the [slurm] table, sbatch options and
the batch script, how SLURM's job states become run statuses (on `scontrol` text
captured from the test cluster), the executor registry, and no SLURM at all."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fake_cli import run_cli

from harness.errors import UsageError
from harness.plugins import PluginManager
from harness.store.store import ResultStore
from harness.sweep.config import SweepConfig, parse
from harness.sweep.executors import sbatch as slurm
from harness.sweep.state import SweepState

# `scontrol show job -o ID` on scripts/slurm_cluster.sh's cluster (trimmed after Partition)
TIMEOUT_TEXT = (
    "JobId=23 JobName=harness-sl3-20261201-135425-6bef-1.1 UserId=root(0) GroupId=root(0) "
    "MCS_label=N/A Priority=4294901737 Nice=0 Account=(null) QOS=(null) JobState=TIMEOUT "
    "Reason=TimeLimit Dependency=(null) Requeue=0 Restarts=0 BatchFlag=1 Reboot=0 "
    "ExitCode=143:0 RunTime=00:01:17 TimeLimit=00:01:00 TimeMin=N/A "
    "SubmitTime=2026-12-01T13:54:25 EligibleTime=2026-12-01T13:54:25 "
    "AccrueTime=2026-12-01T13:54:25 StartTime=2026-12-01T13:54:26 "
    "EndTime=2026-12-01T13:55:43 Deadline=N/A SuspendTime=None SecsPreSuspend=0 "
    "LastSchedEval=2026-12-01T13:54:26 Scheduler=Main Partition=debug "
    "AllocNode:Sid=localhost:5020 ReqNodeList=(null) ExcNodeList=(null) NodeList=vm "
    "BatchHost=vm NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1"
)
CANCELLED_TEXT = (
    "JobId=17 JobName=harness-sl2-20261201-135310-7c35-1.1 UserId=root(0) GroupId=root(0) "
    "MCS_label=N/A Priority=4294901743 Nice=0 Account=(null) QOS=(null) JobState=CANCELLED "
    "Reason=None Dependency=(null) Requeue=0 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=143:0 "
    "RunTime=00:00:08 TimeLimit=00:05:00 TimeMin=N/A NodeList=vm BatchHost=vm"
)
# A node lost mid-job: the same line as SLURM prints it with JobState=NODE_FAIL (the test
# cluster has one node, which a test must not take down).
NODE_FAIL_TEXT = TIMEOUT_TEXT.replace(
    "JobState=TIMEOUT Reason=TimeLimit", "JobState=NODE_FAIL Reason=NodeDown"
)

SWEEP = """
[sweep]
tools = ["fake"]
models = ["lenet"]
datasets = ["mnist"]

[defaults]
threads = 4

[slurm]
partition = "gpu"
account = "lab"
time = "30:00"
extra_args = ["--qos=high"]

[[hardware]]
name = "CPU"

[[hardware]]
name = "2 A100"
num_gpus = 2
slurm = { constraint = "a100", mem = "64G" }

[[hardware]]
num_gpus = 4
nodes = 2
"""


def _config(text: str = SWEEP) -> SweepConfig:
    import tomllib

    return parse(tomllib.loads(text), "test.toml")


def test_job_states_from_scontrol_become_run_statuses() -> None:
    for text, state, reason in (
        (TIMEOUT_TEXT, "TIMEOUT", "TimeLimit"),
        (CANCELLED_TEXT, "CANCELLED", "None"),
        (NODE_FAIL_TEXT, "NODE_FAIL", "NodeDown"),
    ):
        info = slurm.parse_scontrol(text)
        assert info is not None and (info.state, info.reason) == (state, reason)
        assert info.nodes == "vm" and info.exit_code == "143:0"
    assert slurm.parse_scontrol("slurm_load_jobs error: Invalid job id specified") is None
    final = slurm.final_status
    # SLURM stopped the run: its cause wins over the run's own "interrupted"
    assert final("CANCELLED", "interrupted", "143") == "cancelled"
    assert final("TIMEOUT", "interrupted", "143") == "timeout"
    assert final("NODE_FAIL", None, None) == "node_fail"
    assert final("PREEMPTED", None, None) == "preempted"
    assert final("OUT_OF_MEMORY", None, None) == "oom"
    assert final("CANCELLED", None, None) == "cancelled"  # cancelled while queued
    # a job that ended by itself keeps its run's status
    assert final("COMPLETED", "ok", "0") == "ok"
    assert final("FAILED", "error", "1") == "error"
    assert final("FAILED", None, "2") == "failed"  # the harness refused it on the node
    # SLURM forgot the job (MinJobAge): the run, else its exit file, else lost
    assert final(None, "ok", "0") == "ok"
    assert final(None, None, "1") == "failed"
    assert final(None, None, None) == "lost"


def test_squeue_lines_are_read() -> None:
    text = "41|PENDING|Priority||harness-s-1.1\n42|RUNNING|None|vm|harness-s-2.1\n"
    jobs = slurm.parse_squeue(text)
    assert jobs["41"].state == "PENDING" and jobs["41"].reason == "Priority"
    assert jobs["42"].nodes == "vm" and jobs["42"].name == "harness-s-2.1"


def test_sbatch_options_and_script(tmp_path: Path) -> None:
    config = _config()
    cpu, gpus, two_nodes = config.cells()
    args = slurm.sbatch_args(config, cpu)
    assert args[:6] == ["--nodes", "1", "--ntasks-per-node", "1", "--no-requeue", "--partition"]
    joined = " ".join(args)
    assert "--account lab" in joined and "--time 30:00" in joined
    assert "--cpus-per-task 4" in joined and "--gpus-per-node" not in joined
    assert args[-1] == "--qos=high"
    gpu_args = " ".join(slurm.sbatch_args(config, gpus))
    assert "--gpus-per-node 2" in gpu_args and "--constraint a100" in gpu_args
    assert "--mem 64G" in gpu_args
    # a hardware entry over two nodes: the run spans them, in one job of two nodes
    assert two_nodes.hardware == "2 nodes x 4 GPUs" and two_nodes.spec.nodes == 2
    node_args = slurm.sbatch_args(config, two_nodes)
    assert node_args[:2] == ["--nodes", "2"] and "--gpus-per-node" in node_args
    assert slurm.planned_as(two_nodes.spec).launcher == "srun"  # inside the job's allocation
    assert slurm.planned_as(cpu.spec) is cpu.spec

    folder = tmp_path / "job folder"
    script = slurm.job_script(folder, "harness-x-1.1", args, "/venv/bin/python", "/work")
    assert "#SBATCH --partition=gpu" in script and "#SBATCH --qos=high" in script
    assert f"#SBATCH --output={folder}/slurm-%j.out" in script
    assert "-m harness.sweep.executors.job" in script and "exit-$SLURM_JOB_ID" in script
    path = tmp_path / "job.sh"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            '[slurm]\npartiton = "gpu"',
            "unknown [slurm] key(s) partiton (did you mean 'partition'?)",
        ),
        ('[slurm]\ntime = "soon"', "time 'soon' is not minutes, \"MM:SS\""),
        ("[slurm]\ncpus_per_task = 0", "cpus_per_task must be positive"),
        ('[slurm]\nextra_args = "--qos=high"', "extra_args must be a list"),
        ('[[hardware]]\nname = "x"\nslurm = { constrant = "a" }', "did you mean 'constraint'?"),
        ('[[hardware]]\nname = "x"\nslurm = { poll_s = 2 }', "unknown [[hardware]] #1 slurm key"),
    ],
)
def test_mistakes_in_the_slurm_table(table: str, message: str) -> None:
    text = '[sweep]\ntools = ["fake"]\nmodels = ["lenet"]\ndatasets = ["mnist"]\n' + table
    with pytest.raises(UsageError) as error:
        _config(text)
    assert message in str(error.value)


def test_a_slurm_key_typo_is_one_line_and_exit_2(tmp_path: Path) -> None:
    sweep = tmp_path / "s.toml"
    sweep.write_text('[sweep]\ntools = ["fake"]\nmodels = ["lenet"]\ndatasets = ["mnist"]\n'
                     '[slurm]\naccout = "lab"\n')  # fmt: skip
    out = run_cli("sweep", str(sweep), "--executor", "slurm", "--output-dir", str(tmp_path / "l"))
    assert out.returncode == 2
    assert "did you mean 'account'?" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "l").exists()


def test_no_slurm_on_the_machine_is_one_line_and_exit_2(tmp_path: Path) -> None:
    sweep = tmp_path / "s.toml"
    sweep.write_text('[sweep]\ntools = ["fake"]\nmodels = ["lenet"]\ndatasets = ["mnist"]\n')
    empty = tmp_path / "bin"
    empty.mkdir()
    out = run_cli("sweep", str(sweep), "--executor", "slurm", "--output-dir",
                  str(tmp_path / "logs"), PATH=str(empty))  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "no SLURM on this machine (sbatch not found)" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "logs" / "results.sqlite").exists()


def test_executors_are_plugins(tmp_path: Path) -> None:
    pm = PluginManager(entry_points=False)
    assert {"local", "slurm"} <= set(pm.executors)
    with pytest.raises(UsageError, match="unknown executor 'k8s'; registered: local, slurm"):
        pm.executor("k8s")
    # a plugin's executor is chosen with --executor and gets the sweep's cells
    (tmp_path / "echo_executor.py").write_text(textwrap.dedent('''
        from harness import hookimpl
        from harness.sweep.executors import Executor

        def run(ctx):
            for cell in ctx.state.cells():
                print("would run", cell.key, "planned" if cell.key in ctx.plans else "")
            ctx.state.release("incomplete")
            return 0

        @hookimpl
        def harness_register_executors(register):
            register(Executor("echo", run, "prints the cells"))
    '''))  # fmt: skip
    sweep = tmp_path / "s.toml"
    sweep.write_text('[sweep]\ntools = ["fake"]\nmodels = ["lenet"]\ndatasets = ["mnist"]\n'
                     '[defaults]\nidle_baseline_s = 0\n')  # fmt: skip
    out = run_cli(
        "sweep", str(sweep), "--executor", "echo", "--output-dir", str(tmp_path / "logs"),
        HARNESS_PLUGINS="fake_backend,echo_executor",
        PYTHONPATH=f"{tmp_path}:{Path(__file__).parent / 'fakes'}",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "would run fake/lenet/mnist/CPU planned" in out.stdout


def test_an_older_store_gets_the_job_columns_and_reads_without_them(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    store = ResultStore(path)
    state = SweepState.create(
        store, name="old", source="x", fingerprint="f", config={}, cells=_config().cells()
    )
    db = sqlite3.connect(path)  # as a harness before job columns left it
    db.execute("ALTER TABLE sweep_cells DROP COLUMN job_id")
    db.execute("ALTER TABLE sweep_cells DROP COLUMN job_state")
    db.commit()
    db.close()
    readonly = SweepState(ResultStore(path, readonly=True), state.sweep_id)
    assert {c.job_id for c in readonly.cells()} == {None}
    cells = SweepState(ResultStore(path), state.sweep_id).cells()  # adds the columns
    writer = SweepState(ResultStore(path), state.sweep_id)
    writer.mark_submitting(cells[0])
    writer.set_job(cells[0], "77", "PENDING")
    again = writer.cells()[0]
    assert (again.status, again.job_id, again.job_state, again.attempts) == (
        "running",
        "77",
        "PENDING",
        1,
    )
    assert writer.reconcile(keep_jobs=True) == []  # left to the executor to re-attach
    # the local executor would run it a second time beside its job: refused
    local = run_cli("sweep", "--resume", state.sweep_id, "--output-dir", str(tmp_path))
    assert local.returncode == 2
    assert "has jobs in flight (job 77)" in local.stderr and "--executor slurm" in local.stderr
    notes = writer.reconcile()  # the local executor runs it again
    assert notes and "will run again" in notes[0]


def test_the_job_module_refuses_without_a_folder() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "harness.sweep.executors.job"], capture_output=True, text=True
    )
    assert out.returncode == 2 and "usage:" in out.stderr
