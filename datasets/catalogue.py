"""What the harness knows about each dataset: shapes, classes, sizes, statistics, files.

Figures and checksums are those published by the datasets' authors and used by
torchvision's dataset classes (``torchvision/datasets/mnist.py`` and ``cifar.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.errors import UsageError

Family = Literal["mnist", "cifar", "imagenet"]
Split = Literal["train", "test"]
SPLITS: tuple[str, ...] = ("train", "test")

#: Environment variable naming the default data dir; ``./data`` when unset.
DATA_DIR_ENV = "HARNESS_DATA_DIR"


class DatasetError(UsageError, ValueError):
    """A dataset problem the user can fix: unknown name, missing or corrupt files."""


@dataclass(frozen=True)
class RemoteFile:
    """One file to download into ``<data dir>/<dataset>/``.

    ``mirrors`` are tried in order after ``url``. ``members`` lists
    ``(relative path, md5)`` of what an archive holds after extraction; an
    archive is extracted into the dataset folder when ``members`` is not empty.
    """

    url: str
    filename: str
    md5: str | None = None
    sha256: str | None = None
    mirrors: tuple[str, ...] = ()
    members: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not (self.md5 or self.sha256):
            raise ValueError(f"{self.filename}: a RemoteFile needs an md5 or a sha256")

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.url, *self.mirrors)

    @property
    def checksum(self) -> tuple[str, str]:
        """(algorithm, hex digest) to verify; sha256 wins when both are given."""
        return ("sha256", self.sha256) if self.sha256 else ("md5", self.md5 or "")


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about one dataset; ``mean``/``std`` apply to pixels scaled to 0..1."""

    name: str
    title: str
    family: Family
    image_shape: tuple[int, int, int]  # (C, H, W) as fed to the network
    num_classes: int
    train_size: int
    test_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    files: tuple[RemoteFile, ...]
    source: str  # where it comes from, licence, how to obtain it
    layout: str  # what lies under <data dir>/<name>/
    class_names: tuple[str, ...] = field(default=())

    @property
    def channels(self) -> int:
        return self.image_shape[0]

    @property
    def downloadable(self) -> bool:
        return bool(self.files)

    def split_size(self, split: str) -> int:
        check_split(split)
        return self.train_size if split == "train" else self.test_size


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; valid choices: {', '.join(SPLITS)}")


def _idx_files(base: str, md5s: tuple[str, str, str, str], mirrors: tuple[str, ...] = ()):
    names = (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    )
    return tuple(
        RemoteFile(base + n, n, md5=m, mirrors=tuple(b + n for b in mirrors))
        for n, m in zip(names, md5s, strict=True)
    )


_IDX_LAYOUT = (
    "{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz (the .gz files as downloaded, "
    "or the same names without .gz, uncompressed)"
)

_CIFAR10_MEMBERS = (
    ("cifar-10-batches-py/data_batch_1", "c99cafc152244af753f735de768cd75f"),
    ("cifar-10-batches-py/data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
    ("cifar-10-batches-py/data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
    ("cifar-10-batches-py/data_batch_4", "634d18415352ddfa80567beed471001a"),
    ("cifar-10-batches-py/data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
    ("cifar-10-batches-py/test_batch", "40351d587109b95175f43aff81a1287e"),
    ("cifar-10-batches-py/batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
)

_ALL: tuple[DatasetInfo, ...] = (
    DatasetInfo(
        name="mnist",
        title="MNIST handwritten digits",
        family="mnist",
        image_shape=(1, 28, 28),
        num_classes=10,
        train_size=60_000,
        test_size=10_000,
        mean=(0.1307,),
        std=(0.3081,),
        files=_idx_files(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            (
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "d53e105ee54ea40749a09fcbcd1e9432",
                "9fb629c4189551a2d022fa330f9573f3",
                "ec29112dd5afa0611ce80d1b7f02629c",
            ),
            mirrors=("http://yann.lecun.com/exdb/mnist/",),
        ),
        source="Y. LeCun, C. Cortes, C. Burges, http://yann.lecun.com/exdb/mnist/ "
        "(CC BY-SA 3.0); fetched from the mirror torchvision uses.",
        layout=_IDX_LAYOUT,
        class_names=tuple(str(d) for d in range(10)),
    ),
    DatasetInfo(
        name="fashion-mnist",
        title="Fashion-MNIST (Zalando article images)",
        family="mnist",
        image_shape=(1, 28, 28),
        num_classes=10,
        train_size=60_000,
        test_size=10_000,
        mean=(0.2860,),
        std=(0.3530,),
        files=_idx_files(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            (
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "25c81989df183df01b3e8a0aad5dffbe",
                "bef4ecab320f06d8554ea6380940ec79",
                "bb300cfdad3c16e7a12a480ee83cd310",
            ),
        ),
        source="Zalando Research, https://github.com/zalandoresearch/fashion-mnist (MIT).",
        layout=_IDX_LAYOUT,
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    ),
    DatasetInfo(
        name="kmnist",
        title="Kuzushiji-MNIST (cursive Japanese characters)",
        family="mnist",
        image_shape=(1, 28, 28),
        num_classes=10,
        train_size=60_000,
        test_size=10_000,
        mean=(0.1918,),
        std=(0.3483,),
        files=_idx_files(
            "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
            (
                "bdb82020997e1d708af4cf47b453dcf7",
                "e144d726b3acfaa3e44228e80efcd344",
                "5c965bf0a639b31b8f53240b1b52f4d7",
                "7320c461ea6c1c855c0b718fb2a4b134",
            ),
        ),
        source="ROIS-DS Center for Open Data in the Humanities, "
        "https://github.com/rois-codh/kmnist (CC BY-SA 4.0).",
        layout=_IDX_LAYOUT,
        class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    ),
    DatasetInfo(
        name="cifar10",
        title="CIFAR-10 tiny colour images",
        family="cifar",
        image_shape=(3, 32, 32),
        num_classes=10,
        train_size=50_000,
        test_size=10_000,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        files=(
            RemoteFile(
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "cifar-10-python.tar.gz",
                md5="c58f30108f718f92721af3b95e74349a",
                members=_CIFAR10_MEMBERS,
            ),
        ),
        source="A. Krizhevsky, https://www.cs.toronto.edu/~kriz/cifar.html "
        "(the python version of the batches).",
        layout="cifar-10-batches-py/{data_batch_1..data_batch_5,test_batch} "
        "(pickled dicts, as extracted from cifar-10-python.tar.gz)",
        class_names=(
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ),
    ),
    DatasetInfo(
        name="imagenet",
        title="ImageNet ILSVRC-2012 classification",
        family="imagenet",
        image_shape=(3, 224, 224),
        num_classes=1000,
        train_size=1_281_167,
        test_size=50_000,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        files=(),
        source="ILSVRC-2012, https://image-net.org/download.php: free for non-commercial "
        "research after registering and accepting the terms, so the harness cannot "
        "download it. The 'test' split reads the labelled validation set (val/).",
        layout="train/<class>/*.JPEG and val/<class>/*.JPEG, one folder per class "
        "(e.g. n01440764); class index = position of the folder name in sorted order. "
        "The official validation tarball is flat: move its images into class folders "
        "(using the ground-truth labels of the devkit) before use.",
    ),
)

#: Every dataset the harness knows, by name.
DATASETS: dict[str, DatasetInfo] = {d.name: d for d in _ALL}


def get(name: str) -> DatasetInfo:
    """The catalogue entry for ``name``; DatasetError naming the valid choices otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(
            f"unknown dataset {name!r}; valid choices: {', '.join(DATASETS)}"
        ) from None


def default_data_dir() -> Path:
    """``$HARNESS_DATA_DIR`` when set, else ``./data``."""
    return Path(os.environ.get(DATA_DIR_ENV) or "data")


def dataset_dir(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the files of ``name`` lie: ``<data dir>/<name>``."""
    base = Path(data_dir) if data_dir is not None else default_data_dir()
    return base / get(name).name
