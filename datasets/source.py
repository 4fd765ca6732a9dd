"""The batch source every backend worker reads: real files when present, else labelled noise.

src = open_source("cifar10", "train", "data")
for images, labels in src.batches(128, layout="NCHW", epochs=1):
    ...  # images float32 (128, 3, 32, 32) normalised, labels int32 (128,)

# process 1 of 2 of a data-parallel run: its half of every global batch of 256
for images, labels in src.batches(128, epochs=1, shard=(1, 2)):
    ...
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from . import cifar, idx, imagenet
from .base import Batch, Shard, Source
from .catalogue import DatasetError, DatasetInfo, check_split, dataset_dir, get
from .normalise import LAYOUTS, Layout, Normaliser
from .resize import check_size, resized

#: Synthetic data keeps at most this many bytes of pre-generated batches (at least one).
SYNTHETIC_POOL_BYTES = 64 << 20
SYNTHETIC_POOL_MAX = 8


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
