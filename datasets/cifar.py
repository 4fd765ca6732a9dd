"""Reader of the CIFAR-10 "python version": pickled dict batches in cifar-10-batches-py/.

Each batch is a dict with b"data" (N x 3072 uint8: 1024 red, 1024 green, 1024
blue values per image, rows top to bottom) and b"labels" (N ints). The files are
unpickled by a restricted unpickler that only admits what numpy arrays need, so
a tampered file cannot run code.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from .catalogue import DatasetError, DatasetInfo, check_split

BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)


def _numpy_reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # bytes in protocol-2 pickles
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}") from None


def batch_names(split: str) -> tuple[str, ...]:
    check_split(split)
    return TRAIN_BATCHES if split == "train" else TEST_BATCHES


def batch_paths(folder: Path, split: str) -> list[Path]:
    """Paths of the batch files of one split, under ``folder/cifar-10-batches-py``."""
    return [folder / BATCH_DIR / n for n in batch_names(split)]


def read_batch(path: Path, pixels: int = 3 * 32 * 32) -> tuple[np.ndarray, np.ndarray]:
    """(data N x pixels uint8, labels N int32) of one pickled batch file."""
    try:
        return _check_batch(path, _unpickle(path), pixels)
    except DatasetError as exc:
        if "download again" in str(exc):
            raise
        raise DatasetError(f"{exc}; {_FIX}") from None  # every message says the fix
    except MemoryError:  # a corrupt array header; never a model's out-of-memory
        raise DatasetError(
            f"{path}: it announces more data than memory holds, so it is corrupt; {_FIX}"
        ) from None
    except Exception as exc:  # anything else a malformed batch makes NumPy raise
        raise DatasetError(
            f"{path}: malformed CIFAR batch ({type(exc).__name__}: {exc}); {_FIX}"
        ) from exc


_FIX = "delete the cifar-10-batches-py folder and download again"


def _unpickle(path: Path) -> Any:
    try:
        with path.open("rb") as f:
            return _SafeUnpickler(f, encoding="bytes").load()
    except MemoryError:
        raise
    except Exception as exc:  # unpickling arbitrary bytes raises many kinds
        raise DatasetError(
            f"{path}: not a readable CIFAR batch ({type(exc).__name__}: {exc}); {_FIX}"
        ) from exc


def _check_batch(path: Path, entry: Any, pixels: int) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(entry, dict) or b"data" not in entry or b"labels" not in entry:
        keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise DatasetError(f"{path}: expected a dict with b'data' and b'labels', got {keys}")
    data, labels = entry[b"data"], np.asarray(entry[b"labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DatasetError(f"{path}: b'data' is not a 2-d uint8 array")
    if data.shape[1] != pixels:
        raise DatasetError(f"{path}: {data.shape[1]} values per image, expected {pixels}")
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise DatasetError(
            f"{path}: {len(data)} images but labels of shape {labels.shape} ({labels.dtype})"
        )
    return data, labels.astype(np.int32)


def load_split(info: DatasetInfo, folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int32 of one split of CIFAR-10."""
    paths = batch_paths(folder, split)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(f"{info.name}: missing {', '.join(missing)}")
    parts = [read_batch(p, int(np.prod(info.image_shape))) for p in paths]
    data = np.concatenate([d for d, _ in parts])
    labels = np.concatenate([lb for _, lb in parts])
    if len(labels) and (labels.min() < 0 or labels.max() >= info.num_classes):
        raise DatasetError(
            f"{info.name} {split}: labels outside 0..{info.num_classes - 1} "
            f"(min {labels.min()}, max {labels.max()}) in {folder / BATCH_DIR}; {_FIX}"
        )
    return data.reshape(len(data), *info.image_shape), labels
