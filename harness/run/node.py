"""The node process of a multi-node run: starts one node's workers.

A node-spanning launcher (harness.launchers: ``local-nodes``, ``srun``) starts one of
these per node::

    python -m harness.run.node --nodes N --processes P --launcher L \
        [--rendezvous HOST:PORT] [--run-id ID] [--spawn] JOB.json

``--spawn`` (``local-nodes``): start the N node processes on this host, node rank i in
``HARNESS_NODE_RANK``, and wait for them. Otherwise the node's rank is
``HARNESS_NODE_RANK`` or SLURM's task id (``SLURM_PROCID``, one task per node), and the
nodes' hosts ``HARNESS_NODE_HOSTS`` (comma-separated, node 0 first) or the SLURM step's. The node
process writes a ``node`` event (its rank and host) to the job's events file, then runs
the node's P workers with the per-node launcher L: ``local`` starts P copies of the
worker with the usual launcher variables (RANK, LOCAL_RANK, WORLD_SIZE,
LOCAL_WORLD_SIZE); another launcher (a plugin's) gets the node's rank and the
rendezvous and starts them itself. Every worker also gets the run's layout (:data:`NODE_ENV`):

- ``HARNESS_NODES``, ``HARNESS_NODE_RANK``, ``HARNESS_PROCESSES_PER_NODE``;
- ``HARNESS_COORDINATOR``: HOST:PORT of the rendezvous (a framework's coordinator, process 0);
- ``HARNESS_PEERS``: one HOST:PORT per worker rank, ports after the rendezvous port
  (a framework's cluster of workers).

When one worker fails, the others are ended (they would wait in a collective until
their timeout); the exit code is the first failure's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from harness.launchers import LaunchRequest, slurm_task_hosts
from harness.plugins import PluginManager
from harness.run import lifeline
from harness.run.events import Emitter

NODE_ENV = (
    "HARNESS_NODES",
    "HARNESS_NODE_RANK",
    "HARNESS_PROCESSES_PER_NODE",
    "HARNESS_COORDINATOR",
    "HARNESS_PEERS",
)
_POLL_S = 0.2
_GRACE_S = 10.0


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m harness.run.node")
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--launcher", default="local")
    parser.add_argument("--rendezvous", default="")
    parser.add_argument("--run-id", default=None)
    parser.add_argument("--spawn", action="store_true")
    parser.add_argument("job")
    return parser.parse_args(argv)


def node_rank(environ: dict[str, str] | None = None) -> int:
    """This node's rank: HARNESS_NODE_RANK, else the SLURM task id."""
    environ = dict(os.environ) if environ is None else environ
    for name in ("HARNESS_NODE_RANK", "SLURM_PROCID"):
        if environ.get(name, "").isdigit():
            return int(environ[name])
    raise RuntimeError("no node rank: neither HARNESS_NODE_RANK nor SLURM_PROCID is set")


def node_hosts(nodes: int, rendezvous_host: str) -> list[str]:
    """The host of each node: HARNESS_NODE_HOSTS (a launcher's comma-separated list),
    else the SLURM step's task hosts, else the rendezvous host (all on one host)."""
    hosts = [h for h in os.environ.get("HARNESS_NODE_HOSTS", "").split(",") if h]
    if not hosts and "SLURM_PROCID" in os.environ:
        hosts = slurm_task_hosts()
    if len(hosts) >= nodes:
        return hosts[:nodes]
    return [rendezvous_host or "127.0.0.1"] * nodes


def layout_env(
    nodes: int, processes: int, rank: int, rendezvous: str
) -> tuple[dict[str, str], str]:
    """The HARNESS_* variables of node ``rank`` and the resolved rendezvous HOST:PORT."""
    host, _, port = rendezvous.rpartition(":")
    hosts = node_hosts(nodes, host)
    host = host or hosts[0]
    base = int(port) if port.isdigit() else 29500
    peers = [f"{hosts[r // processes]}:{base + 1 + r}" for r in range(nodes * processes)]
    endpoint = f"{host}:{base}"
    env = {
        "HARNESS_NODES": str(nodes),
        "HARNESS_NODE_RANK": str(rank),
        "HARNESS_PROCESSES_PER_NODE": str(processes),
        "HARNESS_COORDINATOR": endpoint,
        "HARNESS_PEERS": ",".join(peers),
    }
    return env, endpoint


def _emit_node(job_path: str, rank: int) -> None:
    """A ``node`` event (rank -1: no worker's) naming this node's host."""
    try:
        events = json.loads(Path(job_path).read_text()).get("events")
    except (OSError, ValueError):
        return
    emitter = Emitter(events, rank=-1)
    emitter.emit("node", node_rank=rank, host=socket.gethostname(), pid=os.getpid())
    emitter.close()


class _Children:
    """The processes this node process started; ended together on failure or signal."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, command: list[str], env: dict[str, str]) -> None:
        self.procs.append(subprocess.Popen(command, env=env))

    def end(self) -> None:
        for sig, grace in ((signal.SIGTERM, _GRACE_S), (signal.SIGKILL, 5.0)):
            alive = [p for p in self.procs if p.poll() is None]
            for proc in alive:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)
            deadline = time.monotonic() + grace
            while any(p.poll() is None for p in alive) and time.monotonic() < deadline:
                time.sleep(0.05)

    def wait(self) -> int:
        """Waits for all; the first failure ends the others and gives the exit code."""
        while True:
            codes = [p.poll() for p in self.procs]
            failed = [c for c in codes if c not in (None, 0)]
            if failed:
                self.end()
                return failed[0] if failed[0] > 0 else 128 - failed[0]
            if all(c == 0 for c in codes):
                return 0
            time.sleep(_POLL_S)


def _on_signal(children: _Children) -> None:
    def handler(signum: int, frame: object) -> None:
        children.end()
        sys.exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, handler)


def spawn(args: argparse.Namespace, argv: list[str]) -> int:
    """``--spawn``: this host's N node processes, ranks 0 .. N-1."""
    children = _Children()
    _on_signal(children)
    own = [a for a in argv if a != "--spawn"]
    for rank in range(args.nodes):
        env = {**os.environ, "HARNESS_NODE_RANK": str(rank)}
        children.start([sys.executable, "-m", "harness.run.node", *own], env)
    return children.wait()


def run_node(args: argparse.Namespace) -> int:
    """One node: its P workers through the per-node launcher."""
    rank = node_rank()
    layout, endpoint = layout_env(args.nodes, args.processes, rank, args.rendezvous)
    _emit_node(args.job, rank)
    base = {**os.environ, **layout}
    # The workers die with this process (srun ends it with the step, or with the
    # orchestrator on this host), never by watching an orchestrator on another host.
    base.update(lifeline.orchestrator_env(os.environ.get(lifeline.OUTPUT_ENV, ".")))
    launcher = PluginManager().launcher(args.launcher)
    children = _Children()
    _on_signal(children)
    world = args.nodes * args.processes
    copies = args.processes if args.launcher == "local" else 1
    for local in range(copies):
        request = LaunchRequest(
            sys.executable,
            args.job,
            args.processes if copies == 1 else 1,
            nodes=args.nodes,
            node_rank=rank,
            rendezvous=endpoint,
            env=layout,
            run_id=args.run_id,
        )
        env = dict(base)
        if args.launcher == "local":
            env.update(
                RANK=str(rank * args.processes + local),
                LOCAL_RANK=str(local),
                WORLD_SIZE=str(world),
                LOCAL_WORLD_SIZE=str(args.processes),
            )
        children.start(launcher.build(request), env)
    return children.wait()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parse(argv)
    if "SLURM_PROCID" not in os.environ or "HARNESS_NODE_RANK" in os.environ:
        lifeline.guard_worker()  # on the orchestrator's host: die with it
    if args.spawn:
        return spawn(args, argv)
    return run_node(args)


if __name__ == "__main__":
    sys.exit(main())
