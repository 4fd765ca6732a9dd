"""Multi-node runs (``--nodes N``) checked the same way in every framework, and a fake
backend that trains over nodes without a framework (for the core env).

The checks run ``python -m harness`` twice on learnable MNIST-format files whose image
i carries i in its pixel (0, 0): over ``nodes`` nodes (node processes on this host, or
SLURM tasks) and on one node with as many devices as the nodes have in all. One epoch
of the documented permutation, split device by device, is then the same data for the
same device number in both runs, so the weights agree and the validation (each process
its shard, summed over the nodes) equals the one-node run's: a node reading the wrong
shard, or a sum that missed a node, would not. The multi-node run's replicas (every
device of every node) must be identical, and its global batch, images and images/sec
count every device of every node.

As a plugin (``HARNESS_PLUGINS=multinode_checks``) it registers ``fake-nodes``: the fake
trainer of tests/fakes, over nodes with the core's ``local`` per-node launcher;
``-o exit_rank=R`` makes rank R exit at its first step while the others hang (as ranks
waiting in a collective would); and ``shell-nodes``, the launcher example of docs/plugins.md.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes"))
from fake_backend import OPTIONS, FakeTrainer

from harness import hookimpl
from harness.backend import BackendInfo, Option
from harness.launchers import Launcher, LaunchRequest

TESTS = Path(__file__).resolve().parent
BATCH = 4  # per device


class NodeFakeTrainer(FakeTrainer):
    """The fake trainer; ``-o exit_rank=R``: rank R exits, the other ranks hang."""

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.exit_rank = int(ctx.spec.options.get("exit_rank", "-1"))

    def framework_info(self) -> dict[str, Any]:
        info = super().framework_info()
        info.update(rank=self.ctx.rank, nodes=self.ctx.nodes, node_rank=self.ctx.node_rank)
        info.update(peers=list(self.ctx.peers), coordinator=self.ctx.coordinator)
        info.update(total_devices=self.ctx.total_devices)
        return info

    def train_step(self, batch: Any) -> Any:
        if self.exit_rank >= 0:
            if self.ctx.rank == self.exit_rank:
                os._exit(7)
            time.sleep(3600)
        return super().train_step(batch)


FAKE_NODES = BackendInfo(
    name="fake-nodes",
    framework="Fake",
    requires=(),
    install_hint="nothing to install",
    trainer="multinode_checks:NodeFakeTrainer",
    options=(*OPTIONS, Option("exit_rank", "int", -1, "this rank exits, the others hang")),
    node_launcher="local",
)


@hookimpl
def harness_register_backends(register: Callable[[BackendInfo], None]) -> None:
    register(FAKE_NODES)


def shell_nodes(request: LaunchRequest) -> list[str]:
    """The launcher example of docs/plugins.md without numactl: N node processes started by bash,
    each given its rank in HARNESS_NODE_RANK; the first failure is the exit code."""
    starts = [
        f"HARNESS_NODE_RANK={rank} "
        f"{shlex.join([request.python, *request.node_args()])} & pids+=($!)"
        for rank in range(request.nodes)
    ]
    wait = 'for p in "${pids[@]}"; do wait "$p" || exit $?; done'
    return ["bash", "-c", "; ".join([*starts, wait])]


@hookimpl
def harness_register_launchers(register: Callable[[Launcher], None]) -> None:
    register(Launcher("shell-nodes", shell_nodes, "node processes from bash", spans_nodes=True))


def plugin_env(**extra: str) -> dict[str, str]:
    """This environment with the fake backends (tests/fakes and this module) loaded."""
    env = dict(os.environ)
    env["HARNESS_PLUGINS"] = "fake_backend,multinode_checks"
    paths = [str(TESTS / "fakes"), str(TESTS), env.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    env.pop("SLURM_JOB_ID", None)  # tests decide whether they are in an allocation
    env.update(extra)
    return env


def harness(
    *args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = (), timeout=600
) -> subprocess.CompletedProcess[str]:
    """``[PREFIX] python -m harness --idle-baseline 0 --json ARGS``."""
    command = [*prefix, sys.executable, "-m", "harness", "--idle-baseline", "0", "--json"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def result_of(out: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def indexed_data(tmp_path: Path) -> Path:
    """tests/partition_checks' learnable MNIST files: 40 train, 24 test images."""
    from partition_checks import write_indexed_mnist

    return write_indexed_mnist(tmp_path / "data")


def lenet_epoch(
    tool: str,
    data: Path,
    out: Path,
    *,
    nodes: int,
    devices: int,
    launcher: str | None = None,
    env: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One epoch of LeNet on the indexed files, validated, each replica's weights dumped
    to ``out/weights``; the result JSON."""
    args = [
        "--tool", tool, "--model", "lenet", "--dataset", "mnist", "--real",
        "--data-dir", str(data), "--epochs", "1", "--validate", "--batch-size", str(BATCH),
        "--warmup-steps", "1", "--repeats", "1", "--seed", "3", "--data-workers", "0",
        "--cpu-devices", str(devices), "--output-dir", str(out / "logs"),
        "--dump-weights", str(out / "weights"),
    ]  # fmt: skip
    if nodes > 1:
        args += ["--nodes", str(nodes)]
    if launcher:
        args += ["--launcher", launcher]
    return result_of(harness(*args, env=env, prefix=prefix))


def weights(folder: Path) -> list[dict[str, np.ndarray]]:
    files = sorted(folder.glob("repeat1-*.npz"))
    return [dict(np.load(f)) for f in files]


def check_nodes_run(
    result: dict[str, Any], out: Path, *, nodes: int, devices: int, launcher: str
) -> list[dict[str, np.ndarray]]:
    """A multi-node run's own figures: global batch, images, images/sec, the nodes and
    their hosts recorded, every replica of every node the same weights."""
    total = nodes * devices
    record = result["repeats"][0]
    assert result["summary"]["status"] == "ok"
    assert result["spec"]["nodes"] == nodes
    assert result["global_batch"] == record["global_batch"] == BATCH * total
    assert result["hardware"].startswith(f"{nodes} nodes x ")
    assert result["launcher"] == launcher
    steps = 40 // (BATCH * total)  # one epoch of 40 images, whole global batches
    assert record["timed"]["steps"] == steps
    assert record["timed"]["images"] == steps * BATCH * total
    speed = record["timed"]["images"] / record["timed"]["seconds"]
    assert record["timed"]["images_per_sec"] == _approx(speed)
    layout = result["environment"]["nodes"]
    assert layout["count"] == nodes and layout["devices_per_node"] == devices
    assert layout["monitored"] == "the orchestrator's host only"
    assert [n["node_rank"] for n in record["nodes"]] == list(range(nodes))
    assert all(n["host"] for n in record["nodes"])
    assert any("not monitored" in note for note in result["summary"]["resource_notes"])
    replicas = weights(out / "weights")
    assert len(replicas) == total  # one file per device of every node
    for other in replicas[1:]:
        for key, value in replicas[0].items():
            np.testing.assert_array_equal(other[key], value, err_msg=key)
    return replicas


def check_same_as_one_node(
    nodes_result: dict[str, Any],
    nodes_weights: list[dict[str, np.ndarray]],
    single_result: dict[str, Any],
    single_out: Path,
) -> None:
    """The multi-node run trained and validated on exactly the data of the one-node run
    with as many devices: the same weights (to float rounding) and validation."""
    single = weights(single_out / "weights")[0]
    initial_gap = 0.0
    from harness import models

    initial = models.init_weights(models.build("lenet", (1, 28, 28), 10), 3)
    for key, value in single.items():
        np.testing.assert_allclose(nodes_weights[0][key], value, rtol=1e-4, atol=1e-6)
        initial_gap = max(initial_gap, float(np.abs(value - initial[key]).max()))
    assert initial_gap > 1e-3  # training moved the weights: the comparison means something
    (many,) = nodes_result["repeats"][0]["validation"]
    (one,) = single_result["repeats"][0]["validation"]
    assert many["images"] == one["images"] > 0
    assert many["loss"] == _approx(one["loss"])
    assert many["accuracy"] == _approx(one["accuracy"])
    assert nodes_result["global_batch"] == single_result["global_batch"]


def _approx(value: float) -> Any:
    import pytest

    return pytest.approx(value, rel=1e-4, abs=1e-6)
