"""Vectorised uint8 -> normalised float32 conversion, ``(x / 255 - mean) / std`` per channel.

Written as ``x * scale + offset`` over a view whose innermost axis is long
(H*W for NCHW, W*C for NHWC, with the per-channel factors tiled along it):
numpy's loops then run at memory speed (see scripts/bench_batches.py).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Layout = Literal["NCHW", "NHWC"]
LAYOUTS: tuple[str, ...] = ("NCHW", "NHWC")


class Normaliser:
    """Per-channel normalisation of uint8 batches of one image shape and layout."""

    def __init__(
        self,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        image_shape: tuple[int, int, int],
        layout: Layout,
    ) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; valid choices: {', '.join(LAYOUTS)}")
        c, h, w = image_shape
        mean_a, std_a = np.asarray(mean, np.float64), np.asarray(std, np.float64)
        if mean_a.shape != (c,) or std_a.shape != (c,):
            raise ValueError(f"mean/std need {c} values, got {len(mean)} and {len(std)}")
        scale = (1.0 / (255.0 * std_a)).astype(np.float32)
        offset = (-mean_a / std_a).astype(np.float32)
        self.layout = layout
        self.image_shape = image_shape
        if layout == "NCHW":
            self.shape: tuple[int, int, int] = (c, h, w)
            self._view = (c, h * w)
            self._scale, self._offset = scale[:, None], offset[:, None]
        else:
            self.shape = (h, w, c)
            self._view = (h, w * c)
            self._scale, self._offset = np.tile(scale, w), np.tile(offset, w)
        # (C,H,W)-shaped factors for one image given as an HWC array (ImageNet decoding)
        self._chw_scale = scale[:, None, None]
        self._chw_offset = offset[:, None, None]

    def __call__(self, batch: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Normalise a uint8 batch already in this layout; returns a C-contiguous float32 array."""
        n = batch.shape[0]
        if out is None:
            out = np.empty((n, *self.shape), np.float32)
        src = batch.reshape(n, *self._view)
        dst = out.reshape(n, *self._view)
        np.multiply(src, self._scale, out=dst)
        dst += self._offset
        return out

    def image_hwc_into(self, image: np.ndarray, out: np.ndarray) -> None:
        """Normalise one HWC uint8 image into ``out`` (one image in this layout)."""
        if self.layout == "NCHW":
            np.multiply(image.transpose(2, 0, 1), self._chw_scale, out=out)
            out += self._chw_offset
        else:
            self(image[None], out[None])
