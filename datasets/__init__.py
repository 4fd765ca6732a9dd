"""Framework-neutral datasets: the catalogue, readers of the real file formats,
numpy batch sources (real or labelled synthetic data) and downloads.

Installed as ``harness.datasets`` (the folder is the top-level ``datasets/``).
Imports numpy only; Pillow is imported when ImageNet JPEGs are decoded.
"""

from .catalogue import (
    DATA_DIR_ENV,
    DATASETS,
    DatasetError,
    DatasetInfo,
    RemoteFile,
    dataset_dir,
    default_data_dir,
    get,
)
from .download import ChecksumError, ProgressHook, download
from .resize import ResizedSource, resized_info
from .source import ArraySource, Source, SyntheticSource, open_source

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "ArraySource",
    "ChecksumError",
    "DatasetError",
    "DatasetInfo",
    "ProgressHook",
    "RemoteFile",
    "ResizedSource",
    "Source",
    "SyntheticSource",
    "dataset_dir",
    "default_data_dir",
    "download",
    "get",
    "open_source",
    "resized_info",
]
