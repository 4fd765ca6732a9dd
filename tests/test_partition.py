"""Sharded sources: one epoch is a strict partition across shards, in every source type.

``Source.batches(b, shard=(index, count))`` is what each process (or device) of a
data-parallel run reads; the shards of one epoch must be disjoint, equally long, cover
the epoch's images, be reshuffled per epoch and agree in every process.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_datasets import identities, write_mnist

from harness import models
from harness.backend import Trainer, WorkerContext
from harness.datasets import DatasetError, SyntheticSource, open_source
from harness.datasets.base import shard_spans
from harness.run.events import Emitter
from harness.run.loop import run_benchmark
from harness.spec import RunSpec


def shard_ids(src, batch: int, shard: tuple[int, int], epochs: int = 1, **kw) -> list[list[int]]:
    """The image indices of every batch one shard yields."""
    return [identities(x).tolist() for x, _ in src.batches(batch, shard=shard, epochs=epochs, **kw)]


@pytest.mark.parametrize("count", [2, 3])
def test_array_source_shards_partition_each_epoch(tmp_path: Path, count: int) -> None:
    write_mnist(tmp_path / "mnist", n=50)
    batch, epochs = 4, 3
    size = batch * count
    steps = 50 // size
    # each shard opened separately, as each process does
    shards = [
        shard_ids(open_source("mnist", "train", tmp_path, seed=7), batch, (i, count), epochs)
        for i in range(count)
    ]
    whole = shard_ids(open_source("mnist", "train", tmp_path, seed=7), size, (0, 1), epochs)
    assert all(len(s) == steps * epochs for s in shards)  # the same number of batches
    src = open_source("mnist", "train", tmp_path, seed=7)
    assert src.steps_per_epoch(batch, shard=(1, count)) == steps
    epoch_sets = []
    for epoch in range(epochs):
        rows = range(epoch * steps, (epoch + 1) * steps)
        parts = [[i for r in rows for i in s[r]] for s in shards]
        flat = list(itertools.chain(*parts))
        assert len(flat) == len(set(flat)) == steps * size  # disjoint: each image once
        assert set(flat) <= set(range(50))
        for r in rows:  # the shards' r-th batches, in shard order, are the r-th global batch
            assert list(itertools.chain(*(s[r] for s in shards))) == whole[r]
        order = np.random.default_rng((7, epoch)).permutation(50)[: steps * size]
        assert [i for r in rows for i in whole[r]] == order.tolist()
        epoch_sets.append([i for r in rows for i in whole[r]])
    assert epoch_sets[0] != epoch_sets[1] != epoch_sets[2]  # reshuffled per epoch


def test_labels_travel_with_their_images_in_shards(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist", n=50)
    src = open_source("mnist", "train", tmp_path, seed=1)
    for x, y in src.batches(5, shard=(1, 2), layout="NHWC"):
        np.testing.assert_array_equal(y, identities(np.moveaxis(x, 3, 1)) % 10)


def test_unshuffled_shards_and_first_epoch(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist", n=50)
    src = open_source("mnist", "train", tmp_path)
    assert shard_ids(src, 4, (1, 3), shuffle=False)[:2] == [[4, 5, 6, 7], [16, 17, 18, 19]]
    # first_epoch picks the permutation; a new call starts again at epoch 0
    second = shard_ids(src, 5, (0, 1), epochs=2)[10:]
    assert shard_ids(src, 5, (0, 1), first_epoch=1) == second
    assert shard_ids(src, 5, (0, 1)) == shard_ids(src, 5, (0, 1))
    with pytest.raises(DatasetError, match="first_epoch"):
        src.batches(5, first_epoch=-1)


def test_without_drop_last_every_image_comes_once(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist", n=50)
    src = open_source("mnist", "train", tmp_path, seed=2)
    count = 4  # 50 = 3 global batches of 4 x 4, and 2 images left
    shards = [shard_ids(src, 4, (i, count), drop_last=False) for i in range(count)]
    assert [len(s) for s in shards] == [4, 4, 3, 3]  # the 2 left over go to shards 0, 1
    assert [len(s[-1]) for s in shards[:2]] == [1, 1]
    flat = [i for s in shards for b in s for i in b]
    assert sorted(flat) == list(range(50))
    assert [src.steps_per_epoch(4, False, (i, count)) for i in range(count)] == [4, 4, 3, 3]


def test_shard_spans_rule() -> None:
    assert shard_spans(20, 3, True, (1, 2)) == [(3, 6), (9, 12), (15, 18)]
    assert shard_spans(20, 3, False, (1, 2)) == [(3, 6), (9, 12), (15, 18), (19, 20)]
    assert shard_spans(20, 3, False, (0, 2)) == [(0, 3), (6, 9), (12, 15), (18, 19)]
    assert shard_spans(5, 3, True, (0, 2)) == []


def test_bad_shards_and_too_few_images(tmp_path: Path) -> None:
    write_mnist(tmp_path / "mnist", n=50)
    src = open_source("mnist", "train", tmp_path)
    for bad in [(2, 2), (-1, 2), (0, 0), (0,), "0/2", (0.0, 2), (True, 2)]:
        with pytest.raises(DatasetError, match="shard must be"):
            src.batches(4, shard=bad)  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match="global batch 10 x 6 shards exceeds the 50"):
        src.batches(10, shard=(0, 6))


def test_synthetic_shards_are_distinct_equal_and_reproducible(tmp_path: Path) -> None:
    def stream(index: int, count: int = 2, seed: int = 4) -> list[np.ndarray]:
        src = open_source("mnist", "train", tmp_path, synthetic=True, seed=seed)
        assert isinstance(src, SyntheticSource)
        return [x for x, _ in src.batches(2000, shard=(index, count))]

    zero, one = stream(0), stream(1)
    assert len(zero) == len(one) == 60_000 // 4000  # same number: the global batch rule
    assert not np.array_equal(zero[0], one[0])  # shards train on different data
    np.testing.assert_array_equal(stream(1)[3], one[3])  # every process draws the same
    assert not np.array_equal(stream(1, seed=5)[0], one[0])


def test_image_folder_shards_partition_each_epoch(tmp_path: Path) -> None:
    """Image i is a PNG whose red channel is 10 * i everywhere (crops keep it) and whose
    green channel is a gradient (crops change it)."""
    image = pytest.importorskip("PIL.Image")
    root = tmp_path / "imagenet"
    ramp = np.tile(np.arange(40, dtype=np.uint8) * 6, (30, 1))
    for i in range(12):
        folder = root / "train" / f"n{i % 2:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.stack([np.full((30, 40), 10 * i, np.uint8), ramp, ramp[::-1]], axis=-1)
        image.fromarray(pixels).save(folder / f"img{i:02d}.png")

    def ids(x: np.ndarray, src) -> list[int]:
        red = x[:, 0, 0, 0] * src.info.std[0] + src.info.mean[0]
        files = np.rint(red * 255 / 10).astype(int)
        return [int(src.files.index(str(next(root.glob(f"*/*/img{f:02d}.png"))))) for f in files]

    epochs, batch, count = 2, 2, 2
    shards = []
    for index in range(count):
        src = open_source("imagenet", "train", tmp_path, seed=9, num_workers=index)
        shards.append([ids(x, src) for x, _ in src.batches(batch, shard=(index, count), epochs=2)])
    steps = 12 // (batch * count)
    assert [len(s) for s in shards] == [steps * epochs] * count
    for epoch in range(epochs):
        rows = range(epoch * steps, (epoch + 1) * steps)
        flat = [i for s in shards for r in rows for i in s[r]]
        assert sorted(flat) == list(range(12))  # every image exactly once
    first = [i for r in range(steps) for s in shards for i in s[r]]
    second = [i for r in range(steps, 2 * steps) for s in shards for i in s[r]]
    assert first != second
    # random crops and flips depend on the image's place in the epoch, not on the shard
    whole = open_source("imagenet", "train", tmp_path, seed=9)
    parts = [open_source("imagenet", "train", tmp_path, seed=9) for _ in range(count)]
    streams = [p.batches(batch, shard=(i, count)) for i, p in enumerate(parts)]
    for x, _ in whole.batches(batch * count):
        np.testing.assert_array_equal(x, np.concatenate([next(s)[0] for s in streams]))


def test_numpy_plugin_reset_state_equals_a_fresh_trainer() -> None:
    """The example plugin's trainer (tests/plugins/harness-numpy) resets too: the core
    loop calls reset_state after warmup in epochs mode, with TINY's dropout included."""
    from test_numpy_plugin import TINY, NumpyTrainer, _context

    from harness.models import init_weights

    weights = init_weights(TINY, 1)
    rng = np.random.default_rng(0)
    batches = [
        (rng.standard_normal((2, 2, 5, 5)).astype(np.float32), np.array([0, 2])) for _ in range(3)
    ]
    used = NumpyTrainer(_context(TINY, weights, lr=0.1))
    for images, labels in batches:
        used.train_step(used.device_batch(images, labels))
    assert any(not np.array_equal(used.state_dict()[k], weights[k]) for k in weights)
    used.reset_state()
    for key, value in used.state_dict().items():
        np.testing.assert_array_equal(value, weights[key])
    fresh = NumpyTrainer(_context(TINY, weights, lr=0.1))
    for images, labels in batches:  # momentum and the dropout stream start again too
        a = used.loss_value(used.train_step(used.device_batch(images, labels)))
        b = fresh.loss_value(fresh.train_step(fresh.device_batch(images, labels)))
        assert a == b
    for key, value in fresh.state_dict().items():
        np.testing.assert_array_equal(used.state_dict()[key], value)


class Recorder(Trainer):
    """Trains nothing: records the images of every step and when reset_state ran."""

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self.steps: list[list[int]] = []
        self.reset_at: list[int] = []

    def framework_info(self) -> dict[str, Any]:
        return {"framework": "recorder"}

    def device_batch(self, images: np.ndarray, labels: np.ndarray) -> Any:
        return images, labels

    def train_step(self, batch: Any) -> Any:
        self.steps.append(identities(batch[0]).tolist())
        return 1.0

    def synchronize(self, token: Any) -> None:
        pass

    def loss_value(self, token: Any) -> float:
        return 1.0

    def evaluate(self, batch: Any) -> tuple[float, int]:
        return 0.0, 0

    def reset_state(self) -> None:
        self.reset_at.append(len(self.steps))


@pytest.mark.parametrize("warmup", [0, 3])
def test_the_loop_trains_each_image_once_per_epoch_on_every_rank(
    tmp_path: Path, warmup: int
) -> None:
    """Epochs mode, 2 processes: after warmup (reset) every epoch of the timed phase is a
    strict partition of the train split across the ranks, whatever warmup consumed."""
    write_mnist(tmp_path / "mnist", n=48)
    spec = RunSpec(
        tool="x", model="lenet", dataset="mnist", batch_size=4, epochs=2, warmup_steps=warmup,
        validate=False, data_dir=str(tmp_path), seed=5,
    )  # fmt: skip
    network = models.build("lenet", (1, 28, 28), 10)
    ranks = []
    for rank in range(2):
        train = open_source("mnist", "train", tmp_path, seed=5)
        ctx = WorkerContext(spec, network, train, None, lambda: {}, rank=rank, world_size=2,
                            total_devices=2)  # fmt: skip
        trainer = Recorder(ctx)
        run_benchmark(trainer, ctx, Emitter(None, rank=rank))
        assert trainer.reset_at == [warmup]
        ranks.append(trainer.steps[warmup:])
    steps = 48 // 8
    assert [len(r) for r in ranks] == [2 * steps, 2 * steps]
    epochs = []
    for epoch in range(2):
        images = [i for r in ranks for s in r[epoch * steps : (epoch + 1) * steps] for i in s]
        assert sorted(images) == list(range(48))  # each image exactly once in the epoch
        epochs.append(images)
    assert epochs[0] != epochs[1]
