"""Every backend with 2 devices: one epoch is a strict partition of the training set
across the devices (each image once, reshuffled per epoch), validation split across
the devices equals validation in one piece, and reset_state returns to a fresh trainer.

Each test carries its framework's marker and runs in that framework's tox env.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import partition_checks as pc
import pytest


@pytest.mark.pytorch
def test_pytorch_two_processes_partition_the_epoch(tmp_path: Path) -> None:
    pc.check(pc.run("pytorch", tmp_path, local=1, processes=2), devices=2)


@pytest.mark.pytorch
def test_pytorch_reset_state_equals_a_fresh_trainer(tmp_path: Path) -> None:
    (record,) = pc.check(pc.run("pytorch", tmp_path, local=1), devices=1)
    pc.check_reset_matches_fresh(record)


@pytest.mark.tensorflow
def test_tensorflow_two_devices_partition_the_epoch(tmp_path: Path) -> None:
    (record,) = pc.check(pc.run("tensorflow", tmp_path, local=2), devices=2)
    pc.check_reset_matches_fresh(record)
    assert record["eval_traces"] == [1, 1]  # traced once, by prepare_evaluation


@pytest.mark.jax
def test_jax_two_devices_partition_the_epoch(tmp_path: Path) -> None:
    (record,) = pc.check(pc.run("jax", tmp_path, local=2), devices=2)
    pc.check_reset_matches_fresh(record)
    assert record["eval_traces"] == [0, 0]  # compiled ahead of time, never lazily


@pytest.mark.mxnet
def test_mxnet_two_devices_partition_the_epoch(tmp_path: Path) -> None:
    (record,) = pc.check(pc.run("mxnet", tmp_path, local=2), devices=2)
    pc.check_reset_matches_fresh(record)


@pytest.mark.pytorch
def test_pytorch_compile_prepares_the_evaluation_ahead() -> None:
    """With ``compile=true`` prepare_evaluation compiles the evaluation forward; the
    first validation batch then compiles nothing (eager PyTorch has nothing to prepare)."""
    import numpy as np
    import torch._dynamo

    from harness import datasets, models
    from harness.backend import WorkerContext
    from harness.backends.pytorch.trainer import TorchTrainer
    from harness.spec import RunSpec

    network = models.build("lenet", (1, 28, 28), 10)
    test = datasets.open_source("mnist", "test", synthetic=True)
    spec = RunSpec(
        tool="pytorch", model="lenet", dataset="mnist", batch_size=4, learning_rate=0.01,
        options={"compile": "true"},
    )  # fmt: skip
    ctx = WorkerContext(spec, network, test, test, lambda: models.init_weights(network, 0))
    trainer = TorchTrainer(ctx)
    torch._dynamo.reset()
    trainer.prepare_evaluation()
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert graphs >= 1
    images, labels = next(test.batches(4))
    loss, correct = trainer.evaluate(trainer.device_batch(images, labels))
    assert np.isfinite(loss) and 0 <= correct <= 4
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs


_DDP_BATCH_NORM = """
import json, sys
import numpy as np
import torch
from harness import models
from harness.backend import WorkerContext
from harness.backends.pytorch.trainer import TorchTrainer
from harness.models import layers as L
from harness.spec import RunSpec
from harness.run.worker import _rank

rank, world = _rank()
body = L.Sequential((L.Conv2D(4, 3, bias=False), L.BatchNorm(), L.ReLU(), L.GlobalAvgPool(),
                     L.Flatten(), L.Dense(10)))
net = L.Network("bn", "small", (1, 8, 8), 10, body)
spec = RunSpec(tool="pytorch", model="bn", dataset="mnist", batch_size=4, learning_rate=0.01)
ctx = WorkerContext(spec, net, None, None, lambda: models.init_weights(net, 0), rank=rank,
                    world_size=world, total_devices=world)
trainer = TorchTrainer(ctx)
rng = np.random.default_rng(rank)  # each rank its own data: its own batch statistics
images = (rng.standard_normal((4, 1, 8, 8)) * (1 + rank)).astype(np.float32)
batch = trainer.device_batch(images, np.arange(4, dtype=np.int32))
trainer.synchronize(trainer.train_step(batch))
own = trainer.module.state_dict()["1.running_var"].numpy().tolist()
loss, correct = trainer.evaluate(batch)
synced = trainer.state_dict()["1.running_var"].tolist()
total = trainer.all_reduce_sum([loss, float(correct), 4.0])
row = {"rank": rank, "own": own, "synced": synced, "total": total}
with open(f"{sys.argv[1]}/rank{rank}.json", "w") as out:  # not the ranks' shared stdout
    json.dump(row, out)
trainer.close()
"""


@pytest.mark.pytorch
def test_pytorch_ranks_evaluate_with_rank_zeros_batch_norm_statistics(tmp_path: Path) -> None:
    """After a DDP step each rank holds its own running statistics; evaluation first
    copies rank 0's to every rank (as MXNet copies device 0's), and all_reduce_sum sums."""
    script = tmp_path / "ddp_bn.py"
    script.write_text(_DDP_BATCH_NORM)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    done = subprocess.run(
        [*command, "--nproc-per-node=2", str(script), str(tmp_path)],
        capture_output=True, text=True, timeout=600, env=dict(os.environ),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    rows = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    zero, one = sorted(rows, key=lambda r: r["rank"])
    assert zero["own"] != one["own"]  # the ranks' statistics drifted apart in training
    assert zero["synced"] == one["synced"] == pytest.approx(zero["own"], rel=1e-6)
    assert zero["total"] == one["total"] and zero["total"][2] == 8.0
