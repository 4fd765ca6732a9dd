"""Upscaling the small datasets for the ImageNet-shaped networks (``--image-size S``).

The study trained AlexNet, ResNet-50, GoogLeNet and VGG-16 in their ImageNet form on
MNIST-family and CIFAR-10 images upscaled to 224x224 RGB. Here:

- :func:`resized_info` is the dataset as the network is fed it: ``3xSxS``, with a
  grey-scale dataset's mean and std repeated over the three channels;
- :class:`ResizedSource` wraps a :class:`~datasets.source.Source` and resizes every
  batch it yields, *inside the input pipeline*: each batch is normalised at its native
  size (cheap), then interpolated bilinearly to ``SxS`` and a grey channel is repeated
  three times. Normalising first gives the same result as resizing first, up to
  rounding: the normalisation is per-channel affine and interpolation weights sum to 1.

Interpolation: bilinear with half-pixel centres, borders clamped (``align_corners=False``:
what PIL's and torchvision's ``Resize`` do when upscaling; there is nothing to
antialias). It is written as two matrix products (``Ry @ x @ Rx.T``) over the whole
batch, which NumPy hands to BLAS.

Cost: real data is resized in the loop's prefetch thread, batch by batch, so when the
pipeline cannot keep up the run's ``data_wait_s`` shows it; synthetic data is resized
once, when the loop builds its device-resident pool. ``scripts/bench_resize.py``
measures the resize beside the plain pipeline.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from .base import Batch, Shard, Source
from .catalogue import DatasetError, DatasetInfo
from .normalise import LAYOUTS, Layout

#: The datasets --image-size applies to (ImageNet is decoded at 224x224 already).
FAMILIES = ("mnist", "cifar")


def check_size(info: DatasetInfo, size: int) -> None:
    """DatasetError unless ``info``'s images can be upscaled to ``size`` x ``size``."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise DatasetError(f"image size must be a positive integer, got {size!r}")
    _, h, w = info.image_shape
    if info.family not in FAMILIES:
        raise DatasetError(
            f"--image-size applies to the MNIST family and CIFAR-10; {info.name} is read at "
            f"{h}x{w} already"
        )
    if size < max(h, w):
        raise DatasetError(
            f"--image-size {size} is smaller than the {h}x{w} images of {info.name}: "
            "it upscales only"
        )


def resized_info(info: DatasetInfo, size: int | None) -> DatasetInfo:
    """``info`` as a network fed ``3 x size x size`` images sees it; None: ``info``."""
    if size is None:
        return info
    check_size(info, size)
    c = info.channels
    mean = info.mean * 3 if c == 1 else info.mean
    std = info.std * 3 if c == 1 else info.std
    return dataclasses.replace(info, image_shape=(3, size, size), mean=mean, std=std)


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float32 weights: ``R @ v`` resamples ``v`` to ``n_out`` points.

    Half-pixel centres, borders clamped: output ``i`` samples the input at
    ``(i + 0.5) * n_in / n_out - 0.5`` (PyTorch's ``align_corners=False``)."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    out = np.zeros((n_out, n_in), np.float64)
    rows = np.arange(n_out)
    np.add.at(out, (rows, lo), 1.0 - frac)
    np.add.at(out, (rows, hi), frac)
    return out.astype(np.float32)


class Resizer:
    """Resizes normalised float32 batches of one layout from ``CxHxW`` to ``3xSxS``.

    Each axis is one matrix product over the whole batch (one BLAS call, not one per
    image): first along H on the small images, then along W, whose product writes the
    output in place. A grey channel is resized once and then repeated."""

    def __init__(self, image_shape: tuple[int, int, int], size: int, layout: Layout) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; valid choices: {', '.join(LAYOUTS)}")
        c, h, w = image_shape
        if c not in (1, 3):
            raise ValueError(f"resizing needs 1 or 3 channels, got {c}")
        self.channels, self.h, self.w, self.size, self.layout = c, h, w, size, layout
        self._ry = bilinear_matrix(h, size)  # (S, H)
        self._rx_t = np.ascontiguousarray(bilinear_matrix(w, size).T)  # (W, S)
        # NHWC: W and C in one product, writing (S, 3) pixels: three channels kept apart,
        # or one channel repeated three times
        spread = np.eye(3, dtype=np.float32) if c == 3 else np.ones((1, 3), np.float32)
        self._rx_t_hwc = np.kron(self._rx_t, spread)  # (W*C, S*3)

    def _along_h(self, planes: np.ndarray, inner: int) -> np.ndarray:
        """(N, H, inner) -> (N, S, inner): the H axis resampled, as one product."""
        n = planes.shape[0]
        t = self._ry @ planes.transpose(1, 0, 2).reshape(self.h, n * inner)  # (S, N*inner)
        return np.ascontiguousarray(t.reshape(self.size, n, inner).transpose(1, 0, 2))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """(B, C, H, W) or (B, H, W, C) float32 -> (B, 3, S, S) or (B, S, S, 3)."""
        n, s, c, w = batch.shape[0], self.size, self.channels, self.w
        x = np.asarray(batch, np.float32)
        if self.layout == "NHWC":
            rows = self._along_h(x.reshape(n, self.h, w * c), w * c)  # (N, S, W*C)
            return (rows.reshape(n * s, w * c) @ self._rx_t_hwc).reshape(n, s, s, 3)
        rows = self._along_h(x.reshape(n * c, self.h, w), w)  # (N*C, S, W)
        planes = (rows.reshape(n * c * s, w) @ self._rx_t).reshape(n, c, s, s)
        if c == 3:
            return planes
        out = np.empty((n, 3, s, s), np.float32)
        out[:] = planes  # the grey plane, three times
        return out


class ResizedSource(Source):
    """``inner``'s batches, resized to ``3 x size x size`` as they are yielded.

    The same images, labels, order, shards and epochs as ``inner``: only the pixels
    change. ``info`` is :func:`resized_info` of ``inner.info``."""

    def __init__(self, inner: Source, size: int) -> None:
        super().__init__(resized_info(inner.info, size), inner.split, inner.seed)
        self.inner = inner
        self.size = size
        self.synthetic = inner.synthetic
        self.num_images = inner.num_images
        grey = ", grey repeated to RGB" if inner.info.channels == 1 else ""
        self.description = (
            f"{inner.description}; upscaled to 3x{size}x{size} in the input pipeline "
            f"(bilinear{grey})"
        )
        self._resizers: dict[str, Resizer] = {}

    def resizer(self, layout: Layout) -> Resizer:
        if layout not in self._resizers:
            self._resizers[layout] = Resizer(self.inner.info.image_shape, self.size, layout)
        return self._resizers[layout]

    def steps_per_epoch(
        self, batch_size: int, drop_last: bool = True, shard: Shard | None = None
    ) -> int:
        return self.inner.steps_per_epoch(batch_size, drop_last, shard)

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
        """``inner.batches(...)`` with every image resized (see the module docstring)."""
        stream = self.inner.batches(
            batch_size,
            layout=layout,
            shuffle=shuffle,
            drop_last=drop_last,
            epochs=epochs,
            shard=shard,
            first_epoch=first_epoch,
        )  # checks its arguments now, as Source.batches does
        return self._resized(stream, self.resizer(layout))

    @staticmethod
    def _resized(stream: Iterator[Batch], resize: Resizer) -> Iterator[Batch]:
        for images, labels in stream:
            yield resize(images), labels


def resized(source: Source, size: int | None) -> Source:
    """``source`` upscaled to ``3 x size x size``; None: ``source`` itself."""
    return source if size is None else ResizedSource(source, size)
