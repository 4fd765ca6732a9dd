"""Writers of the datasets' real file formats, for tests of every env.

``write_learnable_mnist`` writes an MNIST-family dataset whose classes are easy to
tell apart (class k lights up the k-th horizontal band), so that a few epochs of real
training on it must raise accuracy far above chance in any framework.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file: magic (0, 0, 0x08, ndim), big-endian dims, data."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist_split(folder: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Writes ``<prefix>-images-idx3-ubyte.gz`` and the labels file for one split."""
    folder.mkdir(parents=True, exist_ok=True)
    prefix = "train" if split == "train" else "t10k"
    for stem, array in (("images-idx3", images), ("labels-idx1", labels)):
        (folder / f"{prefix}-{stem}-ubyte.gz").write_bytes(gzip.compress(idx_bytes(array)))


def learnable_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 uint8 images with noise; class k has a bright band at rows 2k+4..2k+6."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, k in enumerate(labels):
        images[i, 2 * k + 4 : 2 * k + 7, 4:24] = 255
    return images, labels


def write_learnable_mnist(
    data_dir: Path, name: str = "mnist", train: int = 256, test: int = 64
) -> Path:
    """A learnable MNIST-format dataset under ``data_dir/name``; returns data_dir."""
    folder = data_dir / name
    write_mnist_split(folder, "train", *learnable_digits(train, seed=1))
    write_mnist_split(folder, "test", *learnable_digits(test, seed=2))
    return data_dir
