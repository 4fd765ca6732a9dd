"""The batch source every backend worker reads: real files when present, else labelled noise.

src = open_source("cifar10", "train", "data")
for images, labels in src.batches(128, layout="NCHW", epochs=1):
    ...  # images float32 (128, 3, 32, 32) normalised, labels int32 (128,)
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from . import cifar, idx
from .catalogue import DatasetError, DatasetInfo, check_split, dataset_dir, get
from .normalise import LAYOUTS, Layout, Normaliser

Batch = tuple[np.ndarray, np.ndarray]

#: Synthetic data keeps at most this many bytes of pre-generated batches (at least one).
SYNTHETIC_POOL_BYTES = 64 << 20
SYNTHETIC_POOL_MAX = 8


class Source:
    """Batches of one split of one dataset.

    Attributes: ``info``, ``split``, ``synthetic`` (True: random data, not the dataset),
    ``description`` (one line for logs and results), ``num_images`` (the split's size;
    for synthetic data the size of the real split, so an epoch has the real length).
    The shuffling order comes from a generator seeded once with ``seed``: two sources
    opened with the same arguments yield the same batches.
    """

    info: DatasetInfo
    split: str
    synthetic: bool
    description: str
    num_images: int

    def __init__(self, info: DatasetInfo, split: str, seed: int) -> None:
        self.info, self.split, self.seed = info, split, seed
        self._rng = np.random.default_rng(seed)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.info.name}/{self.split}: {self.description}>"

    def steps_per_epoch(self, batch_size: int, drop_last: bool = True) -> int:
        """Batches in one epoch of this split."""
        _check_batch_size(batch_size)
        if drop_last:
            return self.num_images // batch_size
        return math.ceil(self.num_images / batch_size)

    def batches(
        self,
        batch_size: int,
        *,
        layout: Layout = "NCHW",
        shuffle: bool = True,
        drop_last: bool = True,
        epochs: int | None = 1,
    ) -> Iterator[Batch]:
        """Yield ``(images float32, labels int32)``; ``epochs=None`` cycles for ever.

        Images are normalised with the dataset's mean/std and shaped (B, C, H, W) or
        (B, H, W, C). Each epoch is reshuffled when ``shuffle``. With ``drop_last`` an
        incomplete final batch is skipped, otherwise it is yielded shorter.
        """
        if layout not in LAYOUTS:
            raise DatasetError(f"unknown layout {layout!r}; valid choices: {', '.join(LAYOUTS)}")
        if epochs is not None and (not isinstance(epochs, int) or epochs < 0):
            raise DatasetError(f"epochs must be None or an integer >= 0, got {epochs!r}")
        if self.steps_per_epoch(batch_size, drop_last) == 0 and epochs != 0:
            raise DatasetError(
                f"batch size {batch_size} exceeds the {self.num_images} images of "
                f"{self.info.name} {self.split}: no full batch (use drop_last=False)"
            )
        return self._iterate(batch_size, layout, shuffle, drop_last, epochs)

    def _iterate(
        self, batch_size: int, layout: Layout, shuffle: bool, drop_last: bool, epochs: int | None
    ) -> Iterator[Batch]:
        epoch = 0
        while epochs is None or epoch < epochs:
            yield from self._epoch(batch_size, layout, shuffle, drop_last)
            epoch += 1

    def _epoch(
        self, batch_size: int, layout: Layout, shuffle: bool, drop_last: bool
    ) -> Iterator[Batch]:
        raise NotImplementedError

    def _order(self, shuffle: bool) -> np.ndarray:
        if shuffle:
            return self._rng.permutation(self.num_images)
        return np.arange(self.num_images)

    def _spans(self, batch_size: int, drop_last: bool) -> range:
        return range(0, self.steps_per_epoch(batch_size, drop_last) * batch_size, batch_size)


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
        self, batch_size: int, layout: Layout, shuffle: bool, drop_last: bool
    ) -> Iterator[Batch]:
        store, norm = self.images(layout), self._normaliser(layout)
        order = self._order(shuffle)
        for start in self._spans(batch_size, drop_last):
            if shuffle:
                sel = order[start : start + batch_size]
                yield norm(store[sel]), self.labels[sel]
            else:
                stop = start + batch_size
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
        self._pools: dict[tuple[int, str], list[Batch]] = {}

    def pool(self, batch_size: int, layout: Layout) -> list[Batch]:
        """The pre-generated batches for this batch size and layout."""
        key = (batch_size, layout)
        if key not in self._pools:
            c, h, w = self.info.image_shape
            shape = (batch_size, c, h, w) if layout == "NCHW" else (batch_size, h, w, c)
            nbytes = 4 * math.prod(shape)
            count = max(1, min(SYNTHETIC_POOL_MAX, SYNTHETIC_POOL_BYTES // nbytes))
            rng = np.random.default_rng((self.seed, batch_size, LAYOUTS.index(layout)))
            self._pools[key] = [
                (
                    rng.standard_normal(shape, dtype=np.float32),
                    rng.integers(0, self.info.num_classes, batch_size, dtype=np.int32),
                )
                for _ in range(count)
            ]
        return self._pools[key]

    def _iterate(
        self, batch_size: int, layout: Layout, shuffle: bool, drop_last: bool, epochs: int | None
    ) -> Iterator[Batch]:
        pool = self.pool(batch_size, layout)
        full, rest = divmod(self.num_images, batch_size)
        tail = 0 if drop_last else rest
        k, epoch = 0, 0
        while epochs is None or epoch < epochs:
            for _ in range(full):
                yield pool[k % len(pool)]
                k += 1
            if tail:
                images, labels = pool[k % len(pool)]
                yield images[:tail], labels[:tail]
                k += 1
            epoch += 1


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
) -> Source:
    """Open one split of a dataset.

    ``synthetic``: None reads the real files when present and falls back to labelled
    random data when none are; True always gives random data; False requires the
    files (DatasetError saying where they belong and how to download them).
    A split with only some of its files is an error in every mode but True.
    ``num_workers`` threads decode ImageNet JPEGs (0: in the calling thread).
    ``data_dir`` defaults to ``$HARNESS_DATA_DIR`` or ``./data``.
    """
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
    images, labels = reader.load_split(info, folder, split)
    return ArraySource(
        info,
        split,
        images,
        labels,
        description=f"real: {folder}, {split} split ({len(labels)} images)",
        seed=seed,
    )
