"""What every batch source shares: :class:`Source`, the base of the sources of
datasets.source, datasets.imagenet and datasets.resize, its ``Batch`` and ``Shard``, and
how a shard's batches are laid out (:func:`shard_spans`)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import numpy as np

from .catalogue import DatasetError, DatasetInfo
from .normalise import LAYOUTS, Layout

Batch = tuple[np.ndarray, np.ndarray]
#: (index, count): one shard of ``count`` (processes or devices), see Source.
Shard = tuple[int, int]


class Source:
    """Batches of one split of one dataset.

    Attributes: ``info``, ``split``, ``synthetic`` (True: random data, not the dataset),
    ``description`` (one line for logs and results), ``num_images`` (the split's size;
    for synthetic data the size of the real split, so an epoch has the real length).
    Epoch ``k`` is shuffled by ``numpy.random.default_rng((seed, k))``, a function of
    the seed and the epoch number only: two sources opened with the same arguments
    yield the same batches, in every process, however far each has read ahead. Every
    ``batches`` call starts at epoch ``first_epoch`` (default 0).

    Shards (several processes or devices): ``batches(b, shard=(index, count))`` yields
    shard ``index`` of ``count``. The global batch is ``b * count``; each epoch has
    ``num_images // (b * count)`` global batches (drop_last), the same permutation in
    every shard, and shard ``index`` takes the ``index``-th contiguous block of ``b``
    images of each global batch. So the shards of one epoch are disjoint, each yields
    the same number of batches, their union is the epoch (each image exactly once), and
    the union of their ``i``-th batches is the ``i``-th batch that ``batches(b * count)``
    yields: device ``d`` sees the same images whether the devices belong to one process
    or to ``count`` processes.
    """

    info: DatasetInfo
    split: str
    synthetic: bool
    description: str
    num_images: int

    def __init__(self, info: DatasetInfo, split: str, seed: int) -> None:
        self.info, self.split, self.seed = info, split, seed

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.info.name}/{self.split}: {self.description}>"

    def steps_per_epoch(
        self, batch_size: int, drop_last: bool = True, shard: Shard | None = None
    ) -> int:
        """Batches one shard (default: the whole split) yields per epoch."""
        _check_batch_size(batch_size)
        return len(self._spans(batch_size, drop_last, _check_shard(shard)))

    def batches(
        self,
        batch_size: int,
        *,
        layout: Layout = "NCHW",
        shuffle: bool = True,
        drop_last: bool = True,
        epochs: int | None = 1,
        shard: Shard | None = None,
        first_epoch: int = 0,
    ) -> Iterator[Batch]:
        """Yield ``(images float32, labels int32)``; ``epochs=None`` cycles for ever.

        Images are normalised with the dataset's mean/std and shaped (B, C, H, W) or
        (B, H, W, C). Each epoch is reshuffled when ``shuffle``. With ``drop_last`` an
        incomplete final (global) batch is skipped, otherwise it is yielded shorter.

        ``shard=(index, count)``: this shard's ``batch_size`` images of every global
        batch of ``batch_size * count`` (see the class docstring). Without ``drop_last``
        the incomplete final global batch is split as evenly as possible (contiguous
        parts whose sizes differ by at most one); a shard whose part is empty yields
        one batch fewer.

        ``first_epoch``: the number of the first epoch yielded (its permutation is
        drawn from ``(seed, first_epoch)``); later epochs count on from it.
        """
        if layout not in LAYOUTS:
            raise DatasetError(f"unknown layout {layout!r}; valid choices: {', '.join(LAYOUTS)}")
        if epochs is not None and (not isinstance(epochs, int) or epochs < 0):
            raise DatasetError(f"epochs must be None or an integer >= 0, got {epochs!r}")
        if not isinstance(first_epoch, int) or first_epoch < 0:
            raise DatasetError(f"first_epoch must be an integer >= 0, got {first_epoch!r}")
        index, count = _check_shard(shard)
        if self.steps_per_epoch(batch_size, drop_last, (index, count)) == 0 and epochs != 0:
            what = f"batch size {batch_size}"
            if count > 1:
                what = f"global batch {batch_size} x {count} shards"
            raise DatasetError(
                f"{what} exceeds the {self.num_images} images of "
                f"{self.info.name} {self.split}: no full batch (use drop_last=False)"
            )
        numbers = (
            itertools.count(first_epoch)
            if epochs is None
            else range(first_epoch, first_epoch + epochs)
        )
        return self._iterate(batch_size, layout, shuffle, drop_last, numbers, (index, count))

    def _iterate(
        self,
        batch_size: int,
        layout: Layout,
        shuffle: bool,
        drop_last: bool,
        numbers: Iterable[int],
        shard: tuple[int, int],
    ) -> Iterator[Batch]:
        for epoch in numbers:
            yield from self._epoch(batch_size, layout, shuffle, drop_last, shard, epoch)

    def _epoch(
        self,
        batch_size: int,
        layout: Layout,
        shuffle: bool,
        drop_last: bool,
        shard: tuple[int, int],
        epoch: int,
    ) -> Iterator[Batch]:
        raise NotImplementedError

    def epoch_rng(self, epoch: int) -> np.random.Generator:
        """The generator of epoch ``epoch``: seeded by (seed, epoch), nothing else."""
        return np.random.default_rng((self.seed, epoch))

    def _order(self, shuffle: bool, rng: np.random.Generator) -> np.ndarray:
        if shuffle:
            return rng.permutation(self.num_images)
        return np.arange(self.num_images)

    def _spans(
        self, batch_size: int, drop_last: bool, shard: tuple[int, int]
    ) -> list[tuple[int, int]]:
        """(start, stop) positions in the epoch's order of each batch of one shard."""
        return shard_spans(self.num_images, batch_size, drop_last, shard)


def shard_spans(
    num_images: int, batch_size: int, drop_last: bool, shard: Shard = (0, 1)
) -> list[tuple[int, int]]:
    """Positions ``(start, stop)`` in an epoch's order of the batches of one shard.

    Global batch ``i`` covers positions ``[i * G, (i + 1) * G)`` with
    ``G = batch_size * count``; shard ``index`` takes ``[i * G + index * batch_size, ...
    + batch_size)``. Without ``drop_last`` the final incomplete global batch is split
    into ``count`` contiguous parts as evenly as possible (empty parts are left out).
    """
    index, count = shard
    size = batch_size * count
    full = num_images // size
    spans = [
        (i * size + index * batch_size, i * size + (index + 1) * batch_size) for i in range(full)
    ]
    rest = num_images - full * size
    if rest and not drop_last:
        base, extra = divmod(rest, count)
        start = full * size + index * base + min(index, extra)
        stop = start + base + (1 if index < extra else 0)
        if stop > start:
            spans.append((start, stop))
    return spans


def _check_shard(shard: Shard | None) -> Shard:
    if shard is None:
        return (0, 1)
    ok = isinstance(shard, (tuple, list)) and len(shard) == 2
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) for v in shard)
    if not ok or not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
        raise DatasetError(f"shard must be (index, count) with 0 <= index < count, got {shard!r}")
    return (int(shard[0]), int(shard[1]))


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise DatasetError(f"batch size must be a positive integer, got {batch_size!r}")
