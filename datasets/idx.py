"""Reader of the IDX format of MNIST, Fashion-MNIST and KMNIST (plain or gzip-compressed).

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the values in C order.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from .catalogue import DatasetError, DatasetInfo, check_split

#: IDX type code -> big-endian numpy dtype.
IDX_TYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}

_GZIP_MAGIC = b"\x1f\x8b"


def read_idx_bytes(path: Path) -> bytes:
    """The raw bytes of an IDX file, gunzipped when the file is gzip-compressed."""
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == _GZIP_MAGIC else raw
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DatasetError(f"{path}: cannot read ({exc}); delete it and download again") from exc
    except MemoryError:  # a corrupt gzip stream that inflates without end
        raise DatasetError(
            f"{path}: decompressing it needs more memory than there is, so it is corrupt; "
            "delete it and download again"
        ) from None


def parse_idx(data: bytes, path: Path | str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into an array (read-only, native dtype for multi-byte types)."""
    if len(data) < 4:
        raise DatasetError(f"{path}: not an IDX file (only {len(data)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in IDX_TYPES or ndim == 0:
        raise DatasetError(
            f"{path}: not an IDX file (magic number 0x{data[:4].hex()}); "
            "delete it and download again"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: IDX header truncated")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(IDX_TYPES[code])
    expected = header + math.prod(dims) * dtype.itemsize  # Python ints: no overflow
    if len(data) != expected:
        raise DatasetError(
            f"{path}: IDX header announces shape {dims} ({expected} bytes) but the file has "
            f"{len(data)} bytes; it is truncated or corrupt: delete it and download again"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr if dtype.itemsize == 1 else arr.astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (``.gz`` or plain); any malformed file is one DatasetError."""
    path = Path(path)
    data = read_idx_bytes(path)
    try:
        return parse_idx(data, path)
    except DatasetError:
        raise
    except MemoryError:  # never a model's out-of-memory: the file is wrong
        raise DatasetError(
            f"{path}: its header announces more data than memory holds, so it is corrupt; "
            "delete it and download again"
        ) from None
    except (ValueError, TypeError, OverflowError, struct.error) as exc:
        raise DatasetError(
            f"{path}: malformed IDX file ({type(exc).__name__}: {exc}); "
            "delete it and download again"
        ) from exc


def split_prefix(split: str) -> str:
    check_split(split)
    return "train" if split == "train" else "t10k"


def split_files(folder: Path, split: str) -> dict[str, list[Path]]:
    """Candidate paths (compressed first) of the images and labels file of one split."""
    prefix = split_prefix(split)
    out: dict[str, list[Path]] = {}
    for kind, stem in (("images", "images-idx3"), ("labels", "labels-idx1")):
        name = f"{prefix}-{stem}-ubyte"
        out[kind] = [folder / f"{name}.gz", folder / name]
    return out


def find_split(folder: Path, split: str) -> dict[str, Path | None]:
    """The existing images/labels file of one split (None where neither form exists)."""
    return {
        kind: next((p for p in paths if p.is_file()), None)
        for kind, paths in split_files(folder, split).items()
    }


def load_split(info: DatasetInfo, folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 1, H, W) uint8 and labels (N,) int32 of one split of an MNIST-family set.

    Every malformed file is one DatasetError naming it and the fix."""
    try:
        return _load_split(info, folder, split)
    except DatasetError as exc:
        if "download again" in str(exc) or "missing" in str(exc):
            raise
        fix = f"delete the files and download again: python -m harness download {info.name}"
        raise DatasetError(f"{exc}; {fix}") from None


def _load_split(info: DatasetInfo, folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    found = find_split(folder, split)
    missing = [str(split_files(folder, split)[k][0]) for k, p in found.items() if p is None]
    if missing:
        raise DatasetError(f"{info.name}: missing {', '.join(missing)}")
    img_path, lbl_path = found["images"], found["labels"]
    assert img_path is not None and lbl_path is not None
    images, labels = read_idx(img_path), read_idx(lbl_path)
    _, height, width = info.image_shape
    if images.dtype != np.uint8 or images.shape[1:] != (height, width):
        raise DatasetError(
            f"{img_path}: expected uint8 images of {height}x{width}, "
            f"got {images.dtype} of shape {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DatasetError(f"{lbl_path}: expected a 1-d uint8 label file, got {labels.shape}")
    if len(labels) != len(images):
        raise DatasetError(
            f"{info.name} {split}: {len(images)} images in {img_path.name} but "
            f"{len(labels)} labels in {lbl_path.name}"
        )
    if len(labels) and int(labels.max()) >= info.num_classes:
        raise DatasetError(
            f"{lbl_path}: label {int(labels.max())} outside 0..{info.num_classes - 1}"
        )
    return images.reshape(len(images), 1, height, width), labels.astype(np.int32)
