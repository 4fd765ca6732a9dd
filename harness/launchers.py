"""Launchers turn a worker invocation into the command line that starts it.

A run with one process uses the built-in ``local`` launcher. A backend that needs
several processes (one per device) names a launcher, registered by a
plugin through ``harness_register_launchers``.

A run over several nodes (``--nodes N``) is started in two levels:

1. a *node-spanning* launcher starts one node process per node:
   ``local-nodes`` (N node processes on this host: tests, one big machine) or ``srun``
   (one task per node of the SLURM allocation). Its command runs
   ``python -m harness.run.node`` (the arguments of :meth:`LaunchRequest.node_args`);
2. each node process builds its own workers' command with the backend's *per-node*
   launcher (a plugin's, or ``local`` for one worker per device or per node),
   from a request that carries the node's rank and the rendezvous endpoint, and runs it.

Both levels are :class:`Launcher` plugins built from a :class:`LaunchRequest`.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from harness import hookimpl
from harness.errors import UsageError

# Testing aid: SLURM tasks of a multi-node run all on the allocation's first node
# (``srun --nodes 1 --ntasks N --overlap``), so a one-node cluster runs N "nodes".
SRUN_ONE_NODE_ENV = "HARNESS_SRUN_ONE_NODE"


@dataclass(frozen=True)
class LaunchRequest:
    """What a launcher needs to start a run's workers (or, spanning nodes, its nodes).

    ``processes`` counts worker processes per node (one node: the run's processes).
    """

    python: str  # interpreter that has the framework
    spec_path: str  # the run spec (job file) the worker reads
    processes: int  # worker processes to start on each node
    nodes: int = 1  # nodes of the run
    node_rank: int | None = None  # the node this command starts; None: all (or one node)
    # "host:port" where the nodes meet (a framework's store or coordinator, or the base
    # of its worker ports); an empty host means the host of node 0, found when
    # the node processes start (the first node of the SLURM step)
    rendezvous: str | None = None
    # Variables the started processes must see beyond the environment the launcher
    # process inherits; a launcher that reaches other machines must forward them.
    env: Mapping[str, str] = field(default_factory=dict)
    node_launcher: str = "local"  # spanning launchers: the launcher each node process uses
    run_id: str | None = None  # a name unique to this start (rendezvous id)

    def worker_args(self) -> list[str]:
        """Arguments after the interpreter that start one worker."""
        return ["-m", "harness.run.worker", self.spec_path]

    def node_args(self) -> list[str]:
        """Arguments after the interpreter that start one node process of a multi-node
        run (``harness.run.node``); its node rank comes from its environment."""
        args = ["-m", "harness.run.node", "--nodes", str(self.nodes)]
        args += ["--processes", str(self.processes), "--launcher", self.node_launcher]
        if self.rendezvous:
            args += ["--rendezvous", self.rendezvous]
        if self.run_id:
            args += ["--run-id", self.run_id]
        return [*args, self.spec_path]


@dataclass(frozen=True)
class Launcher:
    name: str
    build: Callable[[LaunchRequest], list[str]]
    description: str = ""
    # True: the launcher starts the node processes of a multi-node run (--launcher NAME)
    spans_nodes: bool = False


def _local(request: LaunchRequest) -> list[str]:
    if request.processes != 1:
        raise ValueError("the local launcher starts exactly one worker process")
    return [request.python, *request.worker_args()]


def _local_nodes(request: LaunchRequest) -> list[str]:
    """All the run's node processes on this host (``harness.run.node --spawn``)."""
    return [request.python, *request.node_args()[:2], "--spawn", *request.node_args()[2:]]


def _srun(request: LaunchRequest) -> list[str]:
    """One SLURM task per node; with ``HARNESS_SRUN_ONE_NODE=1`` (a testing aid) all
    tasks on one node, so a one-node cluster can run a multi-node start."""
    srun = shutil.which("srun") or "srun"
    one_node = os.environ.get(SRUN_ONE_NODE_ENV, "").lower() in ("1", "true", "yes", "on")
    if one_node:
        layout = ["--nodes=1", f"--ntasks={request.nodes}", "--overlap"]
    else:
        layout = [f"--nodes={request.nodes}", "--ntasks-per-node=1"]
    return [
        srun,
        *layout,
        "--kill-on-bad-exit=1",
        "--export=ALL",
        f"--job-name=harness-{request.run_id or 'run'}",
        request.python,
        *request.node_args(),
    ]


LOCAL = Launcher("local", _local, "one worker process in the framework's interpreter")
LOCAL_NODES = Launcher(
    "local-nodes",
    _local_nodes,
    "the node processes of a --nodes N run, all on this host (testing, one big machine)",
    spans_nodes=True,
)
SRUN = Launcher(
    "srun",
    _srun,
    "SLURM: one task per node of the allocation (HARNESS_SRUN_ONE_NODE=1: all on one)",
    spans_nodes=True,
)


def in_slurm_allocation() -> bool:
    """Whether this process runs inside a SLURM allocation (salloc, sbatch, srun)."""
    return bool(os.environ.get("SLURM_JOB_ID"))


def pick_node_launcher(name: str | None, nodes: int) -> str:
    """The node-spanning launcher of a ``--nodes N`` run (UsageError, one line, when
    there is none): the one asked for, else ``srun`` inside a SLURM allocation."""
    if name:
        if name == "srun" and shutil.which("srun") is None:
            raise UsageError("--launcher srun: srun is not installed on this machine")
        return name
    if in_slurm_allocation() and shutil.which("srun") is not None:
        return "srun"
    raise UsageError(
        f"--nodes {nodes} needs a SLURM allocation (salloc/sbatch) or --launcher "
        "local-nodes to start the nodes on this host"
    )


def free_port_block(count: int, host: str = "") -> int:
    """A port P such that P .. P + count - 1 are free on this host now (a rendezvous
    port and the workers' ports after it)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 60000 - count)
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no block of {count} free ports found")


def expand_hostlist(text: str) -> list[str]:
    """SLURM's compressed host list ("node[01-03,7],gpu5") as names, in order."""
    hosts: list[str] = []
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\])?[^,\[]*", text):
        match = re.fullmatch(r"([^\[]*)\[([^\]]*)\](.*)", part)
        if not match:
            hosts.append(part)
            continue
        prefix, ranges, suffix = match.groups()
        for item in ranges.split(","):
            low, _, high = item.partition("-")
            if not high:
                hosts.append(f"{prefix}{low}{suffix}")
                continue
            width = len(low)
            hosts.extend(f"{prefix}{n:0{width}d}{suffix}" for n in range(int(low), int(high) + 1))
    return hosts


def expand_tasks_per_node(text: str) -> list[int]:
    """SLURM's tasks per node ("2(x3),1") as one count per node."""
    counts: list[int] = []
    for item in text.split(","):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", item.strip())
        if match:
            counts += [int(match.group(1))] * int(match.group(2) or 1)
    return counts


def slurm_task_hosts(environ: Mapping[str, str] | None = None) -> list[str]:
    """The host of each task of the current SLURM step, by task id (block layout);
    empty outside a step."""
    environ = os.environ if environ is None else environ
    nodelist = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST")
    if not nodelist:
        return []
    hosts = expand_hostlist(nodelist)
    per_node = expand_tasks_per_node(environ.get("SLURM_STEP_TASKS_PER_NODE", ""))
    if len(per_node) != len(hosts):
        return hosts
    return [host for host, count in zip(hosts, per_node, strict=True) for _ in range(count)]


@hookimpl
def harness_register_launchers(register: Callable[[Launcher], None]) -> None:
    register(LOCAL)
    register(LOCAL_NODES)
    register(SRUN)
