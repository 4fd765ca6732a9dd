"""The batch source every backend worker reads: real files when present, else labelled noise.

src = open_source("cifar10", "train", "data")
for images, labels in src.batches(128, layout="NCHW", epochs=1):
    ...  # images float32 (128, 3, 32, 32) normalised, labels int32 (128,)

# process 1 of 2 of a data-parallel run: its half of every global batch of 256
for images, labels in src.batches(128, epochs=1, shard=(1, 2)):
    ...
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from . import cifar, idx
from .catalogue import DatasetError, DatasetInfo, check_split, dataset_dir, get
from .normalise import LAYOUTS, Layout, Normaliser

Batch = tuple[np.ndarray, np.ndarray]
#: (index, count): one shard of ``count`` (processes or devices), see Source.
Shard = tuple[int, int]

#: Synthetic data keeps at most this many bytes of pre-generated batches (at least one).
SYNTHETIC_POOL_BYTES = 64 << 20
SYNTHETIC_POOL_MAX = 8


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


class ArraySource(Source):
    """A split held in memory as uint8 (N, C, H, W); normalised batch by batch."""

    synthetic = False

    def __init__(
        self,
        info: DatasetInfo,
        split: str,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        description: str,
        seed: int = 0,
    ) -> None:
        super().__init__(info, split, seed)
        if images.dtype != np.uint8 or images.shape[1:] != info.image_shape:
            raise ValueError(f"images must be uint8 (N, {info.image_shape}), got {images.shape}")
        if labels.shape != (len(images),):
            raise ValueError(f"{len(images)} images but labels of shape {labels.shape}")
        self._stores: dict[str, np.ndarray] = {"NCHW": images}
        self.labels = labels.astype(np.int32, copy=False)
        self.num_images = len(images)
        self.description = description
        self._normalisers: dict[str, Normaliser] = {}

    def images(self, layout: Layout = "NCHW") -> np.ndarray:
        """All uint8 images in ``layout`` (NHWC is made once, on first use)."""
        store = self._stores.get(layout)
        if store is None:
            nchw = self._stores["NCHW"]
            if nchw.shape[1] == 1:  # one channel: same bytes, other shape
                store = nchw.reshape(len(nchw), *nchw.shape[2:], 1)
            else:
                store = np.ascontiguousarray(nchw.transpose(0, 2, 3, 1))
            self._stores[layout] = store
        return store

    def _normaliser(self, layout: Layout) -> Normaliser:
        if layout not in self._normalisers:
            i = self.info
            self._normalisers[layout] = Normaliser(i.mean, i.std, i.image_shape, layout)
        return self._normalisers[layout]

    def _epoch(
        self,
        batch_size: int,
        layout: Layout,
        shuffle: bool,
        drop_last: bool,
        shard: tuple[int, int],
        epoch: int,
    ) -> Iterator[Batch]:
        store, norm = self.images(layout), self._normaliser(layout)
        order = self._order(shuffle, self.epoch_rng(epoch))
        for start, stop in self._spans(batch_size, drop_last, shard):
            if shuffle:
                sel = order[start:stop]
                yield norm(store[sel]), self.labels[sel]
            else:
                yield norm(store[start:stop]), self.labels[start:stop].copy()


class SyntheticSource(Source):
    """Random normal images and uniform labels, from a small seeded pool cycled for ever.

    Generating data costs nothing during a run; the arrays of the pool are handed
    out again and again, so consumers must not modify them in place.
    """

    synthetic = True

    def __init__(self, info: DatasetInfo, split: str, *, reason: str, seed: int = 0) -> None:
        super().__init__(info, split, seed)
        self.num_images = info.split_size(split)
        self.description = f"SYNTHETIC random data ({reason})"
        self._pools: dict[tuple[int, str, int, int], list[Batch]] = {}

    def pool(self, batch_size: int, layout: Layout, shard: Shard = (0, 1)) -> list[Batch]:
        """The pre-generated batches for this batch size, layout and shard.

        Each shard draws its own batches (seeded by seed, batch size, layout and shard),
        so the shards of a run train on different data, as with a real dataset.
        """
        key = (batch_size, layout, *shard)
        if key not in self._pools:
            c, h, w = self.info.image_shape
            shape = (batch_size, c, h, w) if layout == "NCHW" else (batch_size, h, w, c)
            nbytes = 4 * math.prod(shape)
            count = max(1, min(SYNTHETIC_POOL_MAX, SYNTHETIC_POOL_BYTES // nbytes))
            seed: tuple[int, ...] = (self.seed, batch_size, LAYOUTS.index(layout))
            if shard != (0, 1):
                seed = (*seed, *shard)
            rng = np.random.default_rng(seed)
            self._pools[key] = [
                (
                    rng.standard_normal(shape, dtype=np.float32),
                    rng.integers(0, self.info.num_classes, batch_size, dtype=np.int32),
                )
                for _ in range(count)
            ]
        return self._pools[key]

    def _iterate(
        self,
        batch_size: int,
        layout: Layout,
        shuffle: bool,
        drop_last: bool,
        numbers: Iterable[int],
        shard: tuple[int, int],
    ) -> Iterator[Batch]:
        pool = self.pool(batch_size, layout, shard)
        sizes = [stop - start for start, stop in self._spans(batch_size, drop_last, shard)]
        k = 0
        for _ in numbers:
            for size in sizes:
                images, labels = pool[k % len(pool)]
                yield (images, labels) if size == batch_size else (images[:size], labels[:size])
                k += 1


def probe(info: DatasetInfo, folder: Path, split: str) -> tuple[list[Path], list[Path]]:
    """(present, missing) files of one split under ``folder``; ImageNet: its split folder."""
    if info.family == "mnist":
        found = idx.find_split(folder, split)
        wanted = idx.split_files(folder, split)
        present = [p for p in found.values() if p is not None]
        missing = [wanted[k][0] for k, p in found.items() if p is None]
        return present, missing
    if info.family == "cifar":
        paths = cifar.batch_paths(folder, split)
        return [p for p in paths if p.is_file()], [p for p in paths if not p.is_file()]
    from . import imagenet

    path = imagenet.split_dir(folder, split)
    return ([path], []) if path.is_dir() else ([], [path])


def _missing_message(
    info: DatasetInfo, folder: Path, split: str, missing: list[Path], data_dir: str
) -> str:
    head = (
        f"{info.name}: no {split} data under {folder} (missing "
        f"{', '.join(str(p) for p in missing)}); expected layout there: {info.layout.rstrip('.')}."
    )
    if info.downloadable:
        command = f"python -m harness download {info.name} --data-dir {data_dir}"
        return f"{head} Download it with: {command}"
    return f"{head} {info.source}"


def open_source(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    *,
    synthetic: bool | None = None,
    seed: int = 0,
    num_workers: int = 0,
    image_size: int | None = None,
) -> Source:
    """Open one split of a dataset.

    ``synthetic``: None reads the real files when present and falls back to labelled
    random data when none are; True always gives random data; False requires the
    files (DatasetError saying where they belong and how to download them).
    A split with only some of its files is an error in every mode but True.
    ``num_workers`` threads decode ImageNet JPEGs (0: in the calling thread).
    ``data_dir`` defaults to ``$HARNESS_DATA_DIR`` or ``./data``.
    ``image_size``: upscale every batch to 3 x image_size x image_size in the pipeline
    (MNIST family and CIFAR-10; see datasets.resize); None: the native images.
    """
    if image_size is not None:
        from .resize import check_size, resized

        check_size(get(name), image_size)
        plain = open_source(
            name, split, data_dir, synthetic=synthetic, seed=seed, num_workers=num_workers
        )
        return resized(plain, image_size)
    info = get(name)
    check_split(split)
    if num_workers < 0:
        raise DatasetError(f"num_workers must be >= 0, got {num_workers}")
    if seed < 0:
        raise DatasetError(f"seed must be >= 0, got {seed}")
    folder = dataset_dir(name, data_dir)
    if synthetic:
        return SyntheticSource(info, split, reason="requested with synthetic=True", seed=seed)
    present, missing = probe(info, folder, split)
    if not present:
        if synthetic is False:
            raise DatasetError(_missing_message(info, folder, split, missing, str(folder.parent)))
        return SyntheticSource(info, split, reason=f"no files found under {folder}", seed=seed)
    if missing:
        raise DatasetError(
            f"{info.name} {split}: incomplete files under {folder}, missing "
            f"{', '.join(str(p) for p in missing)}; download again"
        )
    if info.family == "imagenet":
        from . import imagenet

        return imagenet.ImageFolderSource(info, split, folder, seed=seed, num_workers=num_workers)
    reader = idx if info.family == "mnist" else cifar
    try:
        images, labels = reader.load_split(info, folder, split)
    except MemoryError:  # reading the files, not the model: never an out-of-memory result
        raise DatasetError(
            f"{info.name} {split}: not enough host memory to read the files under {folder}; "
            "free memory, or check that the files are not corrupt (download them again)"
        ) from None
    return ArraySource(
        info,
        split,
        images,
        labels,
        description=f"real: {folder}, {split} split ({len(labels)} images)",
        seed=seed,
    )
