"""Data semantics with several devices, checked the same way in every backend.

A small MNIST-format dataset whose image ``i`` carries ``i`` in its pixel (0, 0) lets a
test read back which images each device held. ``drive`` (run in a subprocess, or under
torchrun for PyTorch) builds the worker's context and the backend's trainer as the
worker does, trains whole epochs from its shard of the train split, records the images
every device held, validates its shard of the test split (reduced with
``all_reduce_sum``), then checks ``reset_state``. The test then checks the records.

Framework-neutral: frameworks are imported by the trainers and by ``HOLDINGS`` only.

    python tests/partition_checks.py TOOL DATA_DIR OUT_DIR LOCAL_DEVICES
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dataformats import learnable_digits, write_mnist_split

TRAIN, TEST = 40, 24  # images: 40 = 5 global batches of 2 x 4, 24 = 3
BATCH, EPOCHS, SEED = 4, 2, 3


def write_indexed_mnist(data_dir: Path) -> Path:
    """Learnable digits; image i of each split has the value i in its pixel (0, 0)."""
    folder = data_dir / "mnist"
    for split, n, seed in (("train", TRAIN, 1), ("test", TEST, 2)):
        images, labels = learnable_digits(n, seed)
        images[:, 0, 0] = np.arange(n)
        write_mnist_split(folder, split, images, labels)
    return data_dir


def identities(images: np.ndarray) -> list[int]:
    """The indices written by write_indexed_mnist, from normalised NCHW or NHWC images
    of one channel (pixel (0, 0) is ``[:, 0, 0, 0]`` in both layouts)."""
    from harness.datasets import get

    info = get("mnist")
    pixel = images[:, 0, 0, 0] * info.std[0] + info.mean[0]
    return [int(v) for v in np.rint(pixel * 255)]


# What each device this process drives holds of a device batch, in device order.


def _torch(trainer: Any, batch: Any) -> list[np.ndarray]:
    return [batch[0].cpu().numpy()]


def _jax(trainer: Any, batch: Any) -> list[np.ndarray]:
    shards = {s.device: np.asarray(s.data) for s in batch[0].addressable_shards}
    return [shards[device] for device in trainer.devices]


def _tensorflow(trainer: Any, batch: Any) -> list[np.ndarray]:
    if trainer.strategy is None:
        return [batch[0].numpy()]
    return [t.numpy() for t in trainer.strategy.experimental_local_results(batch[0])]


def _mxnet(trainer: Any, batch: Any) -> list[np.ndarray]:
    return [x.asnumpy() for x in batch[0]]


def eval_traces(tool: str, trainer: Any) -> int | None:
    """How many times the evaluation step has been traced or compiled lazily (by a call
    rather than by prepare_evaluation), where the framework can tell; else None."""
    if tool == "tensorflow":
        return int(trainer._eval.experimental_get_tracing_count())
    if tool == "jax":  # prepare_evaluation compiles ahead of time, outside jit's cache
        assert trainer._eval_compiled is not None
        return int(trainer._eval._cache_size())
    return None


HOLDINGS: dict[str, Callable[[Any, Any], list[np.ndarray]]] = {
    "pytorch": _torch,
    "jax": _jax,
    "tensorflow": _tensorflow,
    "mxnet": _mxnet,
}


def _job(tool: str, data_dir: Path, local: int, world: int) -> Any:
    from harness.run.worker import Job
    from harness.spec import RunSpec

    spec = RunSpec(
        tool=tool,
        model="lenet",
        dataset="mnist",
        batch_size=BATCH,
        learning_rate=0.01,
        cpu_devices=local * world,
        data_dir=str(data_dir),
        synthetic=False,
        epochs=EPOCHS,
        validate=True,
        seed=SEED,
        data_workers=0,
    )
    return Job(spec=spec, local_devices=local)  # local * world devices: spec.cpu_devices


def _max_gap(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def drive(tool: str, data_dir: Path, out: Path, local: int) -> None:
    """One process of the check; writes ``out/rank<r>.json``."""
    from harness import models
    from harness.models.reference import forward
    from harness.run.worker import _rank, build_context

    rank, world = _rank()
    job = _job(tool, data_dir, local, world)
    ctx = build_context(job, rank, world)
    backend_cls = _trainer_class(tool)
    trainer = backend_cls(ctx)
    hold = HOLDINGS[tool]
    trainer.prepare_evaluation()
    traces_prepared = eval_traces(tool, trainer)
    shard = (ctx.rank, ctx.world_size)
    steps = ctx.train.steps_per_epoch(ctx.process_batch, shard=shard)
    held: list[list[list[int]]] = []  # [step][device] -> image indices
    for images, labels in ctx.train.batches(
        ctx.process_batch, layout=trainer.layout, epochs=EPOCHS, shard=shard
    ):
        batch = trainer.device_batch(images, labels)
        held.append([identities(x) for x in hold(trainer, batch)])
        trainer.synchronize(trainer.train_step(batch))
    assert ctx.test is not None
    sums = [0.0, 0.0, 0.0]
    for images, labels in ctx.test.batches(
        ctx.process_batch, layout=trainer.layout, shuffle=False, shard=shard
    ):
        loss, correct = trainer.evaluate(trainer.device_batch(images, labels))
        sums = [sums[0] + loss, sums[1] + correct, sums[2] + len(labels)]
    reduced = trainer.all_reduce_sum(sums)
    traces = [traces_prepared, eval_traces(tool, trainer)]
    # the same weights on the whole test split in one piece, by the NumPy reference
    state = trainer.state_dict()
    whole, labels = next(iter(ctx.test.batches(TEST, shuffle=False)))
    logits = forward(ctx.network, state, whole, training=False).astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    losses = np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(TEST), labels]
    reference = [float(losses.sum()), int((logits.argmax(axis=1) == labels).sum()), TEST]
    # reset_state: the initial weights, then the same two steps as a fresh trainer
    initial = models.init_weights(ctx.network, ctx.spec.seed)
    trained_gap = _max_gap(state, initial)
    probe = next(iter(ctx.train.batches(ctx.process_batch, layout=trainer.layout, shard=shard)))
    fresh = backend_cls(ctx) if world == 1 else None  # DDP: one trainer per process
    fresh_state = fresh_losses = None
    if fresh is not None:
        batch = fresh.device_batch(*probe)
        fresh_losses = [fresh.loss_value(fresh.train_step(batch)) for _ in range(2)]
        fresh_state = fresh.state_dict()
    trainer.reset_state()
    reset_gap = _max_gap(trainer.state_dict(), initial)
    batch = trainer.device_batch(*probe)
    losses_after = [trainer.loss_value(trainer.train_step(batch)) for _ in range(2)]
    after_gap = None if fresh_state is None else _max_gap(trainer.state_dict(), fresh_state)
    record = {
        "rank": rank,
        "world": world,
        "steps_per_epoch": steps,
        "held": held,
        "validation": reduced,
        "eval_traces": traces,
        "reference": reference,
        "trained_gap": trained_gap,
        "reset_gap": reset_gap,
        "losses_after_reset": losses_after,
        "fresh_losses": fresh_losses,
        "gap_to_fresh": after_gap,
    }
    (out / f"rank{rank}.json").write_text(json.dumps(record))
    trainer.close()


def _trainer_class(tool: str) -> type:
    from harness.plugins import PluginManager

    return PluginManager().backend(tool).load_trainer()


def check(out: Path, devices: int) -> list[dict[str, Any]]:
    """The records of a run over ``devices`` devices: each epoch a strict partition of
    the (global-batch-trimmed) train split, reshuffled, validation equal to one piece."""
    records = sorted(
        (json.loads(p.read_text()) for p in out.glob("rank*.json")), key=lambda r: r["rank"]
    )
    assert records and sum(len(r["held"][0]) for r in records) == devices
    steps = records[0]["steps_per_epoch"]
    global_batch = BATCH * devices
    assert steps == TRAIN // global_batch
    for r in records:
        assert r["steps_per_epoch"] == steps and len(r["held"]) == EPOCHS * steps
    # per device (global device order: rank-major), per epoch: the images it trained on
    device_batches = [
        [step[d] for step in r["held"]] for r in records for d in range(len(r["held"][0]))
    ]
    orders = []
    for epoch in range(EPOCHS):
        part = [
            list(itertools.chain(*batches[epoch * steps : (epoch + 1) * steps]))
            for batches in device_batches
        ]
        for images in part:
            assert len(images) == steps * BATCH  # every device the same number
        flat = list(itertools.chain(*part))
        assert len(set(flat)) == len(flat) == TRAIN  # disjoint, each image once
        assert set(flat) == set(range(TRAIN))
        # global batch i, in device order, is images [i*G, (i+1)*G) of the epoch's order
        order = [
            img
            for i in range(steps)
            for batches in device_batches
            for img in batches[epoch * steps + i]
        ]
        # the source's documented permutation of this epoch, the same in every process
        assert order == np.random.default_rng((SEED, epoch)).permutation(TRAIN).tolist()
        orders.append(order)
    assert orders[0] != orders[1]  # reshuffled per epoch
    for r in records:
        loss, correct, images = r["validation"]
        want_loss, want_correct, want_images = r["reference"]
        assert images == want_images == TEST  # 24 = 3 global batches of 8
        assert loss == pytest_approx(want_loss)
        assert abs(correct - want_correct) <= 1  # an argmax tie may flip in float32
        assert r["trained_gap"] > 1e-3  # training moved the weights
        assert r["reset_gap"] == 0.0  # reset_state: exactly the initial weights
        before, after = r["eval_traces"]
        assert after == before  # validation neither traced nor compiled the step again
    return records


def pytest_approx(value: float) -> Any:
    import pytest

    return pytest.approx(value, rel=1e-4, abs=1e-4)


def check_reset_matches_fresh(record: dict[str, Any]) -> None:
    """After reset_state, two steps equal two steps of a fresh trainer."""
    assert record["gap_to_fresh"] is not None and record["gap_to_fresh"] < 1e-6
    assert record["losses_after_reset"] == pytest_approx_list(record["fresh_losses"])


def pytest_approx_list(values: list[float]) -> Any:
    import pytest

    return pytest.approx(values, rel=1e-6)


def run(tool: str, tmp_path: Path, local: int, processes: int = 1) -> Path:
    """Runs ``drive`` in fresh processes (``processes`` > 1: under torchrun); returns
    the folder of the rank records."""
    import subprocess

    data = write_indexed_mnist(tmp_path / "data")
    out = tmp_path / f"out-{local}x{processes}"
    out.mkdir()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu")
    if tool == "jax":
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={local}"
    command = [sys.executable, __file__, tool, str(data), str(out), str(local)]
    if processes > 1:
        launcher = ["-m", "torch.distributed.run", "--standalone"]
        command[1:1] = [*launcher, f"--nproc-per-node={processes}"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


if __name__ == "__main__":
    tool_arg, data_arg, out_arg, local_arg = sys.argv[1:5]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    drive(tool_arg, Path(data_arg), Path(out_arg), int(local_arg))
