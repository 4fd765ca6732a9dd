"""Multi-node data-parallel training (``--nodes N``, issue 16).

Unmarked tests run in the core env: the command lines the launchers build, SLURM's
host lists, the node process's layout, the bad-input lines, and the fake backend over
two node processes on this host (hosts recorded, a failing node ends the others).
Framework tests (markers pytorch, tensorflow, jax) train LeNet over two node processes
on this host (``--launcher local-nodes``) and compare with one node driving as many
devices (tests/multinode_checks.py). The ``slurm`` tests do the same through a real
SLURM (``srun``, all tasks on this one node: ``HARNESS_SRUN_ONE_NODE=1``), started by
scripts/slurm_cluster.sh; they are skipped, saying why, only when it cannot start.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import multinode_checks as mc
import pytest

from harness.backends.pytorch import torchrun_command
from harness.errors import UsageError
from harness.launchers import (
    LOCAL_NODES,
    SRUN,
    SRUN_ONE_NODE_ENV,
    LaunchRequest,
    expand_hostlist,
    expand_tasks_per_node,
    free_port_block,
    slurm_task_hosts,
)
from harness.run import node

REPO = Path(__file__).resolve().parent.parent
PY = "/venv/bin/python"


def _request(**kw) -> LaunchRequest:
    fields = dict(processes=2, nodes=3, rendezvous="127.0.0.1:4000", node_launcher="torchrun")
    fields.update(kw)
    return LaunchRequest(PY, "/runs/job.json", run_id="r1", **fields)


# --- command lines --------------------------------------------------------------------


def test_old_requests_and_the_local_launcher_are_unchanged() -> None:
    request = LaunchRequest(PY, "/runs/job.json", 2)
    assert (request.nodes, request.node_rank, request.rendezvous) == (1, None, None)
    assert request.worker_args() == ["-m", "harness.run.worker", "/runs/job.json"]
    assert torchrun_command(request) == [
        PY, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
        "-m", "harness.run.worker", "/runs/job.json",
    ]  # fmt: skip


def test_local_nodes_starts_every_node_process_on_this_host() -> None:
    assert LOCAL_NODES.spans_nodes
    assert LOCAL_NODES.build(_request()) == [
        PY, "-m", "harness.run.node", "--spawn", "--nodes", "3", "--processes", "2",
        "--launcher", "torchrun", "--rendezvous", "127.0.0.1:4000", "--run-id", "r1",
        "/runs/job.json",
    ]  # fmt: skip


def test_srun_starts_one_task_per_node_or_all_on_one_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(SRUN_ONE_NODE_ENV, raising=False)
    command = SRUN.build(_request(rendezvous=":4000"))
    assert Path(command[0]).name == "srun"
    assert command[1:3] == ["--nodes=3", "--ntasks-per-node=1"]
    assert "--kill-on-bad-exit=1" in command and "--export=ALL" in command
    tail = command[command.index(PY) :]
    assert tail == [
        PY, "-m", "harness.run.node", "--nodes", "3", "--processes", "2", "--launcher",
        "torchrun", "--rendezvous", ":4000", "--run-id", "r1", "/runs/job.json",
    ]  # fmt: skip
    monkeypatch.setenv(SRUN_ONE_NODE_ENV, "1")  # the testing aid: one node, 3 tasks
    assert SRUN.build(_request())[1:4] == ["--nodes=1", "--ntasks=3", "--overlap"]


def test_torchrun_joins_a_c10d_rendezvous_on_each_node() -> None:
    command = torchrun_command(_request(node_rank=1, rendezvous="head:4000"))
    assert command[:3] == [PY, "-m", "torch.distributed.run"]
    assert "--standalone" not in command
    for arg in ("--nnodes=3", "--rdzv-backend=c10d", "--rdzv-endpoint=head:4000",
                "--rdzv-id=r1", "--nproc-per-node=2", "--max-restarts=0"):  # fmt: skip
        assert arg in command
    assert command[-3:] == ["-m", "harness.run.worker", "/runs/job.json"]
    with pytest.raises(ValueError, match="rendezvous"):
        torchrun_command(_request(node_rank=None))


def test_slurm_host_lists() -> None:
    assert expand_hostlist("node[01-03,7],gpu5,x[9-10]-ib") == [
        "node01", "node02", "node03", "node7", "gpu5", "x9-ib", "x10-ib",
    ]  # fmt: skip
    assert expand_hostlist("vm") == ["vm"]
    assert expand_tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    env = {"SLURM_STEP_NODELIST": "n[1-2]", "SLURM_STEP_TASKS_PER_NODE": "2,1"}
    assert slurm_task_hosts(env) == ["n1", "n1", "n2"]
    assert slurm_task_hosts({"SLURM_JOB_NODELIST": "a,b"}) == ["a", "b"]
    assert slurm_task_hosts({}) == []


def test_node_layout_gives_every_rank_an_address(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLURM_PROCID", "SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST"):
        monkeypatch.delenv(name, raising=False)
    env, endpoint = node.layout_env(2, 2, 1, "127.0.0.1:5000")
    assert endpoint == env["HARNESS_COORDINATOR"] == "127.0.0.1:5000"
    assert env["HARNESS_NODES"] == "2" and env["HARNESS_NODE_RANK"] == "1"
    assert env["HARNESS_PEERS"].split(",") == [f"127.0.0.1:{5001 + r}" for r in range(4)]
    # a SLURM step: node 0's host is the rendezvous host, each rank on its node's host
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_STEP_NODELIST", "n[3-4]")
    monkeypatch.setenv("SLURM_STEP_TASKS_PER_NODE", "1(x2)")
    env, endpoint = node.layout_env(2, 2, 1, ":5000")
    assert endpoint == "n3:5000"
    assert env["HARNESS_PEERS"] == "n3:5001,n3:5002,n4:5003,n4:5004"
    assert node.node_rank({"SLURM_PROCID": "1"}) == 1
    assert node.node_rank({"HARNESS_NODE_RANK": "0", "SLURM_PROCID": "1"}) == 0


def test_free_port_block_is_free() -> None:
    import socket

    base = free_port_block(3)
    for port in range(base, base + 3):
        with socket.socket() as sock:
            sock.bind(("", port))


# --- bad input: one line, exit 2 ------------------------------------------------------

QUICK = ("--model", "lenet", "--dataset", "mnist", "--synthetic", "--steps", "2",
         "--warmup-steps", "1", "--repeats", "1")  # fmt: skip


def _one_line_exit_2(out: subprocess.CompletedProcess[str], *words: str) -> None:
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--nodes", "2"), ("--nodes 2 needs a SLURM allocation", "--launcher local-nodes")),
        (("--nodes", "0"), ("--nodes",)),
        (("--nodes", "2", "--launcher", "local"), ("does not start nodes", "local-nodes")),
        (("--nodes", "2", "--launcher", "nosuch"), ("nosuch",)),
    ],
)
def test_nodes_without_a_way_to_start_them(
    tmp_path: Path, args: tuple[str, ...], words: tuple[str, ...]
) -> None:
    out = mc.harness(
        "--tool", "fake-nodes", *QUICK, "--output-dir", str(tmp_path), *args,
        env=mc.plugin_env(), timeout=120,
    )  # fmt: skip
    _one_line_exit_2(out, *words)
    assert not list(tmp_path.glob("*/result.json"))


def test_a_backend_without_a_node_launcher_is_refused(tmp_path: Path) -> None:
    out = mc.harness(
        "--tool", "fake", *QUICK, "--nodes", "2", "--launcher", "local-nodes",
        "--output-dir", str(tmp_path), env=mc.plugin_env(), timeout=120,
    )  # fmt: skip
    _one_line_exit_2(out, "fake cannot train on several nodes")


def test_mxnet_refuses_several_nodes_with_its_reason() -> None:
    from harness.backends.mxnet import INFO
    from harness.run.orchestrator import _plan_nodes
    from harness.spec import RunSpec

    spec = RunSpec("mxnet", "lenet", "mnist", nodes=2, launcher="local-nodes")
    with pytest.raises(UsageError, match=r"mxnet cannot train on several nodes.*kvstore"):
        _plan_nodes(spec, INFO, None)  # type: ignore[arg-type]


# --- the fake backend over two node processes on this host ----------------------------


def test_fake_backend_over_two_local_nodes(tmp_path: Path) -> None:
    out = mc.harness(
        "--tool", "fake-nodes", *QUICK, "--batch-size", "8", "--cpu-devices", "2",
        "--nodes", "2", "--launcher", "local-nodes", "--output-dir", str(tmp_path),
        env=mc.plugin_env(), timeout=300,
    )  # fmt: skip
    result = mc.result_of(out)
    record = result["repeats"][0]
    assert result["summary"]["status"] == "ok"
    assert result["global_batch"] == record["global_batch"] == 8 * 2 * 2
    assert result["processes"] == 2 and result["hardware"] == "2 nodes x CPU x2"
    assert record["timed"]["images"] == 2 * 32
    assert [n["node_rank"] for n in record["nodes"]] == [0, 1]
    assert "harness.run.node" in record["command"] and "--spawn" in record["command"]
    assert result["config"]["nodes"] == 2  # its own configuration key
    events = [json.loads(line) for line in Path(_events(tmp_path)).read_text().splitlines()]
    starts = {e["rank"]: e for e in events if e["event"] == "start"}
    assert sorted(starts) == [0, 1]  # one worker per node (the local per-node launcher)
    for rank, start in starts.items():
        assert start["world_size"] == 2 and start["node_rank"] == rank
        assert start["nodes"] == 2 and start["total_devices"] == 4
        host, port = start["coordinator"].rsplit(":", 1)
        assert start["peers"] == [f"{host}:{int(port) + 1}", f"{host}:{int(port) + 2}"]


def test_a_plugin_launcher_starts_the_nodes(tmp_path: Path) -> None:
    """The plugin guide's example (tests/multinode_checks.shell_nodes)."""
    out = mc.harness(
        "--tool", "fake-nodes", *QUICK, "--batch-size", "8", "--nodes", "3",
        "--launcher", "shell-nodes", "--output-dir", str(tmp_path),
        env=mc.plugin_env(), timeout=300,
    )  # fmt: skip
    result = mc.result_of(out)
    record = result["repeats"][0]
    assert result["launcher"] == "shell-nodes" and record["command"][0] == "bash"
    assert result["global_batch"] == 24
    assert [n["node_rank"] for n in record["nodes"]] == [0, 1, 2]


def test_a_failing_node_ends_the_others(tmp_path: Path) -> None:
    """Rank 1 exits at its first step, rank 0 hangs: the node processes end the hanging
    one, so the repeat is recorded as crashed, not as a timeout."""
    out = mc.harness(
        "--tool", "fake-nodes", *QUICK, "--batch-size", "8", "--nodes", "2",
        "--launcher", "local-nodes", "-o", "exit_rank=1", "--timeout", "300",
        "--output-dir", str(tmp_path), env=mc.plugin_env(), timeout=400,
    )  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    record = result["repeats"][0]
    assert record["status"] == "crashed", record["cause"]
    assert record["exit_code"] == 7


def _events(tmp_path: Path) -> Path:
    (path,) = tmp_path.glob("*/repeat-1/events.jsonl")
    return path


# --- real frameworks over two node processes on this host -----------------------------


def _local_nodes_against_one_node(tool: str, tmp_path: Path, devices: int) -> None:
    data = mc.indexed_data(tmp_path)
    many = mc.lenet_epoch(
        tool, data, tmp_path / "nodes", nodes=2, devices=devices, launcher="local-nodes"
    )
    replicas = mc.check_nodes_run(
        many, tmp_path / "nodes", nodes=2, devices=devices, launcher="local-nodes"
    )
    one = mc.lenet_epoch(tool, data, tmp_path / "one", nodes=1, devices=2 * devices)
    mc.check_same_as_one_node(many, replicas, one, tmp_path / "one")


@pytest.mark.pytorch
def test_pytorch_two_local_nodes(tmp_path: Path) -> None:
    _local_nodes_against_one_node("pytorch", tmp_path, devices=1)


@pytest.mark.tensorflow
def test_tensorflow_two_local_nodes(tmp_path: Path) -> None:
    _local_nodes_against_one_node("tensorflow", tmp_path, devices=1)


@pytest.mark.jax
def test_jax_two_local_nodes_of_two_devices(tmp_path: Path) -> None:
    _local_nodes_against_one_node("jax", tmp_path, devices=2)


# --- real SLURM -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def slurm_cluster() -> None:
    """A running single-node SLURM (scripts/slurm_cluster.sh start); skipped, with the
    script's reason, only when it cannot start."""
    script = REPO / "scripts" / "slurm_cluster.sh"
    if not script.exists():
        pytest.skip("scripts/slurm_cluster.sh is missing")
    done = subprocess.run(
        ["bash", str(script), "start"], capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        pytest.skip(f"SLURM cannot start here: {reason[-1] if reason else done.returncode}")
    assert shutil.which("srun") and shutil.which("salloc")


def _slurm_env() -> dict[str, str]:
    env = dict(os.environ, **{SRUN_ONE_NODE_ENV: "1"})
    env.pop("SLURM_JOB_ID", None)
    return env


def _slurm_two_nodes(tool: str, tmp_path: Path, devices: int, *, in_allocation: bool) -> None:
    """Two SLURM tasks (node processes) on this node. ``in_allocation``: the harness
    runs inside ``salloc`` and picks srun itself; else ``--launcher srun``."""
    data = mc.indexed_data(tmp_path)
    out = tmp_path / "nodes"
    if in_allocation:
        prefix = ("salloc", "--nodes=1", "--ntasks=2", "--job-name=harness-test")
        result = mc.lenet_epoch(
            tool, data, out, nodes=2, devices=devices, env=_slurm_env(), prefix=prefix
        )
    else:
        result = mc.lenet_epoch(
            tool, data, out, nodes=2, devices=devices, launcher="srun", env=_slurm_env()
        )
    mc.check_nodes_run(result, out, nodes=2, devices=devices, launcher="srun")
    record = result["repeats"][0]
    assert Path(record["command"][0]).name == "srun"
    assert "--ntasks=2" in record["command"]  # the testing aid's layout


@pytest.mark.slurm
def test_slurm_pytorch_two_nodes_inside_an_allocation(tmp_path: Path, slurm_cluster) -> None:
    _slurm_two_nodes("pytorch", tmp_path, devices=1, in_allocation=True)


@pytest.mark.slurm
def test_slurm_tensorflow_two_nodes(tmp_path: Path, slurm_cluster) -> None:
    _slurm_two_nodes("tensorflow", tmp_path, devices=1, in_allocation=False)


@pytest.mark.slurm
def test_slurm_jax_two_nodes(tmp_path: Path, slurm_cluster) -> None:
    _slurm_two_nodes("jax", tmp_path, devices=2, in_allocation=False)


def test_worker_reads_the_node_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.run.worker import node_layout

    for name in node.NODE_ENV:
        monkeypatch.delenv(name, raising=False)
    assert node_layout() == {}
    env, _ = node.layout_env(2, 1, 1, "127.0.0.1:7000")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert node_layout() == {
        "nodes": 2,
        "node_rank": 1,
        "peers": ("127.0.0.1:7001", "127.0.0.1:7002"),
        "coordinator": "127.0.0.1:7000",
    }
