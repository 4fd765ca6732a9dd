"""ImageNet-style folders: ``<root>/{train,val}/<class>/*.JPEG``, decoded with Pillow.

Class index = position of the class folder's name in sorted order (so n01440764
is 0 on the standard layout). Preprocessing, to 224x224 RGB:

- train: random-resized crop (area 8-100% of the image, aspect ratio 3/4..4/3,
  10 tries, else a centre crop) resized to 224x224, then a horizontal flip with
  probability 1/2, as in the usual ResNet/torchvision training recipe;
- val/test: resize the shorter side to 256, centre crop 224x224.

Bilinear resampling (Pillow's, anti-aliased on downscaling). JPEGs of the val split
are decoded at a reduced scale (Pillow ``draft``) when still >= 256 on the shorter
side. Images are decoded and normalised by a thread pool of ``num_workers`` threads,
``prefetch`` batches ahead of the consumer; the random choices of each image derive
from (seed, epoch, position), so the output does not depend on thread timing.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .base import Batch, Source
from .catalogue import DatasetError, DatasetInfo, check_split
from .normalise import Layout, Normaliser

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
RESIZE = 256  # shorter side before the centre crop of val/test images
SCALE = (0.08, 1.0)  # area range of the train crop
RATIO = (3 / 4, 4 / 3)  # aspect-ratio range of the train crop
PIL_MISSING = (
    "decoding ImageNet JPEGs needs Pillow, which is not installed: "
    "pip install 'dlbench-harness[imagenet]'"
)


def pil_image() -> Any:
    """The ``PIL.Image`` module, or DatasetError with the install command."""
    try:
        from PIL import Image
    except ImportError:
        raise DatasetError(PIL_MISSING) from None
    return Image


def split_dir(folder: Path, split: str) -> Path:
    """``folder/train`` or ``folder/val`` (the labelled validation set serves as test)."""
    check_split(split)
    return folder / ("train" if split == "train" else "val")


def class_names(root: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(root) if e.is_dir())


def scan(root: Path, num_classes: int) -> tuple[list[str], list[str], np.ndarray]:
    """(classes, image paths, labels int32) of one split folder, in sorted order."""
    classes = class_names(root)
    if not classes:
        raise DatasetError(f"{root}: no class folders (expected {root}/<class>/*.JPEG)")
    if len(classes) > num_classes:
        raise DatasetError(f"{root}: {len(classes)} class folders, more than {num_classes}")
    files: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        entries = sorted(
            e.path
            for e in os.scandir(root / name)
            if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)
        )
        files += entries
        labels += [label] * len(entries)
    if not files:
        raise DatasetError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) in class folders")
    return classes, files, np.asarray(labels, np.int32)


def random_crop_box(
    width: int, height: int, rng: np.random.Generator
) -> tuple[float, float, float, float]:
    """A random-resized-crop box (left, top, right, bottom) within a width x height image."""
    area = width * height
    log_lo, log_hi = math.log(RATIO[0]), math.log(RATIO[1])
    for _ in range(10):
        target = area * rng.uniform(*SCALE)
        ratio = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target * ratio))
        h = round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            return (left, top, left + w, top + h)
    # fall back to the largest centre crop whose ratio lies in RATIO
    ratio = width / height
    if ratio < RATIO[0]:
        w, h = width, round(width / RATIO[0])
    elif ratio > RATIO[1]:
        w, h = round(height * RATIO[1]), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return (left, top, left + w, top + h)


def centre_crop_box(
    width: int, height: int, size: int, resize: int = RESIZE
) -> tuple[float, float, float, float]:
    """The box that "resize shorter side to ``resize``, centre crop ``size``" keeps."""
    side = min(width, height) * size / resize
    left, top = (width - side) / 2, (height - side) / 2
    return (left, top, left + side, top + side)


def decode(path: str, train: bool, rng: np.random.Generator | None, size: int = 224) -> np.ndarray:
    """One image as a (size, size, 3) uint8 RGB array, preprocessed for ``train`` or val."""
    image_mod = pil_image()
    bilinear = getattr(image_mod, "Resampling", image_mod).BILINEAR
    try:
        with image_mod.open(path) as im:
            if train:
                assert rng is not None
                box = random_crop_box(*im.size, rng)
            else:
                im.draft("RGB", (RESIZE, RESIZE))  # JPEG: decode at a reduced scale
                box = centre_crop_box(*im.size, size)
            rgb = im.convert("RGB").resize((size, size), bilinear, box=box)
    except Exception as exc:  # Pillow raises many kinds on bad files
        raise DatasetError(
            f"{path}: cannot decode image ({type(exc).__name__}: {exc}); "
            "replace the file with a good copy or delete it"
        ) from exc
    arr = np.asarray(rgb)
    if train and rng is not None and rng.random() < 0.5:
        arr = arr[:, ::-1]
    return arr


class ImageFolderSource(Source):
    """A split of an ImageNet-style folder tree, decoded on the fly."""

    synthetic = False
    prefetch = 2  # batches decoded ahead of the one being consumed

    def __init__(
        self, info: DatasetInfo, split: str, folder: Path, *, seed: int = 0, num_workers: int = 0
    ) -> None:
        super().__init__(info, split, seed)
        pil_image()  # fail now, not in the first batch
        self.root = split_dir(folder, split)
        self.classes, self.files, self.labels = scan(self.root, info.num_classes)
        other = split_dir(folder, "test" if split == "train" else "train")
        if other.is_dir():
            theirs = class_names(other)
            if theirs != self.classes:
                extra = sorted(set(self.classes) ^ set(theirs))[:5]
                raise DatasetError(
                    f"{self.root} and {other} have different class folders "
                    f"(e.g. {', '.join(extra) or 'in another order'}); labels would disagree"
                )
        self.num_images = len(self.files)
        self.num_workers = num_workers
        self.train = split == "train"
        threads = f"{num_workers} decoding threads" if num_workers else "decoded inline"
        self.description = (
            f"real: {self.root} ({self.num_images} images, {len(self.classes)} classes, {threads})"
        )

    def _plans(
        self,
        batch_size: int,
        shuffle: bool,
        drop_last: bool,
        numbers: Iterable[int],
        shard: tuple[int, int],
    ) -> Iterator[tuple[np.ndarray, int, int]]:
        """(indices, epoch seed, position of the first) for every batch to come.

        Positions count in the whole epoch's order, so an image's random crop and flip
        do not depend on how the epoch is sharded.
        """
        spans = self._spans(batch_size, drop_last, shard)
        for epoch in numbers:
            rng = self.epoch_rng(epoch)
            order = self._order(shuffle, rng)
            epoch_seed = int(rng.integers(2**63))
            for start, stop in spans:
                yield order[start:stop], epoch_seed, start

    def _load_into(
        self, out: np.ndarray, norm: Normaliser, index: int, epoch_seed: int, position: int
    ) -> None:
        rng = np.random.default_rng((epoch_seed, position)) if self.train else None
        arr = decode(self.files[index], self.train, rng, self.info.image_shape[1])
        norm.image_hwc_into(arr, out)

    def _iterate(
        self,
        batch_size: int,
        layout: Layout,
        shuffle: bool,
        drop_last: bool,
        numbers: Iterable[int],
        shard: tuple[int, int],
    ) -> Iterator[Batch]:
        i = self.info
        norm = Normaliser(i.mean, i.std, i.image_shape, layout)
        plans = self._plans(batch_size, shuffle, drop_last, numbers, shard)
        if not self.num_workers:
            for sel, seed, start in plans:
                out = np.empty((len(sel), *norm.shape), np.float32)
                for j, index in enumerate(sel):
                    self._load_into(out[j], norm, int(index), seed, start + j)
                yield out, self.labels[sel]
            return
        pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="harness-decode")
        pending: deque[tuple[np.ndarray, np.ndarray, list[Future[None]]]] = deque()

        def submit(plan: tuple[np.ndarray, int, int]) -> None:
            sel, seed, start = plan
            out = np.empty((len(sel), *norm.shape), np.float32)
            futures = [
                pool.submit(self._load_into, out[j], norm, int(index), seed, start + j)
                for j, index in enumerate(sel)
            ]
            pending.append((out, self.labels[sel], futures))

        try:
            for _ in range(1 + self.prefetch):
                plan = next(plans, None)
                if plan is None:
                    break
                submit(plan)
            while pending:
                out, labels, futures = pending.popleft()
                plan = next(plans, None)
                if plan is not None:
                    submit(plan)
                for f in futures:
                    f.result()
                yield out, labels
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
