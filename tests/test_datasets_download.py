"""harness.datasets.download from file:// URLs: checksums, mirrors, skipping, safe extraction."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from harness.datasets import (
    DATASETS,
    ChecksumError,
    DatasetError,
    RemoteFile,
    download,
    open_source,
)
from harness.datasets.download import safe_extract

MNIST_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def idx_gz(arr: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return gzip.compress(header + arr.astype(np.uint8).tobytes())


def mnist_blobs() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    blobs = {}
    for name, n in (("train", 30), ("t10k", 12)):
        blobs[f"{name}-images-idx3-ubyte.gz"] = idx_gz(rng.integers(0, 256, (n, 28, 28)))
        blobs[f"{name}-labels-idx1-ubyte.gz"] = idx_gz(rng.integers(0, 10, n))
    return blobs


@pytest.fixture
def served_mnist(tmp_path, monkeypatch):
    """A fake 'mnist' catalogue entry whose files are served from tmp_path/server."""
    server = tmp_path / "server"
    server.mkdir()
    blobs = mnist_blobs()
    files = []
    for name in MNIST_NAMES:
        (server / name).write_bytes(blobs[name])
        files.append(RemoteFile(f"{server.as_uri()}/{name}", name, md5=md5(blobs[name])))
    info = dataclasses.replace(DATASETS["mnist"], files=tuple(files))
    monkeypatch.setitem(DATASETS, "mnist", info)
    return server, blobs


def use_files(monkeypatch, name: str, *files: RemoteFile) -> None:
    monkeypatch.setitem(DATASETS, name, dataclasses.replace(DATASETS[name], files=files))


def test_download_verifies_and_reports_progress(tmp_path, served_mnist):
    _, blobs = served_mnist
    calls: list[tuple[str, int, int | None]] = []
    folder = download("mnist", tmp_path / "data", progress=lambda *a: calls.append(a))
    assert folder == tmp_path / "data" / "mnist"
    for name in MNIST_NAMES:
        assert (folder / name).read_bytes() == blobs[name]
        mine = [c for c in calls if c[0] == name]
        assert mine[0] == (name, 0, len(blobs[name]))
        assert mine[-1] == (name, len(blobs[name]), len(blobs[name]))
        assert [c[1] for c in mine] == sorted(c[1] for c in mine)
    assert sorted(p.name for p in folder.iterdir()) == sorted(MNIST_NAMES)  # no temp files
    src = open_source("mnist", "train", tmp_path / "data", synthetic=False)
    assert src.num_images == 30


def test_present_files_are_skipped(tmp_path, served_mnist):
    server, blobs = served_mnist
    download("mnist", tmp_path)
    for name in MNIST_NAMES:
        (server / name).unlink()  # a second download that fetched anything would fail
    calls = []
    download("mnist", tmp_path, progress=lambda *a: calls.append(a))
    assert sorted(calls) == sorted((n, len(blobs[n]), len(blobs[n])) for n in MNIST_NAMES)


def test_checksum_mismatch_deletes_and_names_both_digests(tmp_path, monkeypatch):
    server = tmp_path / "server"
    server.mkdir()
    (server / "f.bin").write_bytes(b"not what was published")
    wrong = "0" * 32
    use_files(monkeypatch, "kmnist", RemoteFile((server / "f.bin").as_uri(), "f.bin", md5=wrong))
    with pytest.raises(DatasetError) as err:
        download("kmnist", tmp_path / "data")
    msg = str(err.value)
    assert wrong in msg and md5(b"not what was published") in msg and "mismatch" in msg
    assert list((tmp_path / "data" / "kmnist").iterdir()) == []


def test_wrong_file_already_present_is_replaced(tmp_path, served_mnist):
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / MNIST_NAMES[0]).write_bytes(b"stale")
    download("mnist", tmp_path)
    assert (folder / MNIST_NAMES[0]).read_bytes() == served_mnist[1][MNIST_NAMES[0]]


def test_sha256_and_mirrors(tmp_path, monkeypatch):
    server = tmp_path / "server"
    server.mkdir()
    data = b"payload" * 1000
    (server / "good.bin").write_bytes(data)
    remote = RemoteFile(
        (server / "absent.bin").as_uri(),
        "good.bin",
        sha256=hashlib.sha256(data).hexdigest(),
        mirrors=((server / "good.bin").as_uri(),),
    )
    assert remote.checksum[0] == "sha256"
    use_files(monkeypatch, "fashion-mnist", remote)
    folder = download("fashion-mnist", tmp_path / "data")
    assert (folder / "good.bin").read_bytes() == data


def test_every_url_failing_names_them_all(tmp_path, monkeypatch):
    remote = RemoteFile(
        (tmp_path / "a.bin").as_uri(), "x.bin", md5="0" * 32, mirrors=("nosuchscheme://b",)
    )
    use_files(monkeypatch, "kmnist", remote)
    with pytest.raises(DatasetError) as err:
        download("kmnist", tmp_path / "data")
    assert "could not download x.bin" in str(err.value)
    assert "a.bin" in str(err.value) and "nosuchscheme://b" in str(err.value)


def test_remote_file_needs_a_checksum():
    with pytest.raises(ValueError, match="md5 or a sha256"):
        RemoteFile("https://example.org/x", "x")


def test_imagenet_cannot_be_downloaded(tmp_path):
    with pytest.raises(DatasetError) as err:
        download("imagenet", tmp_path)
    msg = str(err.value)
    assert "cannot be downloaded" in msg and "image-net.org" in msg
    assert str(tmp_path / "imagenet") in msg and "val/<class>" in msg
    assert not (tmp_path / "imagenet").exists()


# --- CIFAR tarball ----------------------------------------------------------------------


def cifar_members(per_batch: int = 3) -> dict[str, bytes]:
    rng = np.random.default_rng(1)
    out = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        entry = {
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
        }
        out[f"cifar-10-batches-py/{name}"] = pickle.dumps(entry, protocol=2)
    out["cifar-10-batches-py/batches.meta"] = pickle.dumps({b"label_names": [b"a"] * 10})
    return out


def make_tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path.read_bytes()


@pytest.fixture
def served_cifar(tmp_path, monkeypatch):
    members = cifar_members()
    tar_path = tmp_path / "cifar-10-python.tar.gz"
    blob = make_tar(tar_path, members)
    remote = RemoteFile(
        tar_path.as_uri(),
        "cifar-10-python.tar.gz",
        md5=md5(blob),
        members=tuple((k, md5(v)) for k, v in members.items()),
    )
    use_files(monkeypatch, "cifar10", remote)
    return members


def test_cifar_tarball_is_extracted_and_readable(tmp_path, served_cifar):
    folder = download("cifar10", tmp_path / "data")
    for name, data in served_cifar.items():
        assert (folder / name).read_bytes() == data
    src = open_source("cifar10", "train", tmp_path / "data", synthetic=False)
    assert (
        src.num_images == 15 and open_source("cifar10", "test", tmp_path / "data").num_images == 3
    )


def test_damaged_extracted_member_is_restored(tmp_path, served_cifar):
    folder = download("cifar10", tmp_path)
    batch = folder / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(b"damaged")
    download("cifar10", tmp_path)
    assert batch.read_bytes() == served_cifar["cifar-10-batches-py/data_batch_2"]


def test_member_checksum_is_checked_after_extraction(tmp_path, monkeypatch):
    members = cifar_members()
    tar_path = tmp_path / "c.tar.gz"
    blob = make_tar(tar_path, members)
    listed = tuple((k, "f" * 32) for k in members)
    remote = RemoteFile(tar_path.as_uri(), "c.tar.gz", md5=md5(blob), members=listed)
    use_files(monkeypatch, "cifar10", remote)
    with pytest.raises(ChecksumError, match="wrong md5 after extracting"):
        download("cifar10", tmp_path / "data")


@pytest.mark.parametrize(
    ("members", "links", "message"),
    [
        ({"../escaped.txt": b"x"}, None, "outside"),
        ({"ok/../../escaped.txt": b"x"}, None, "outside"),
        ({"/tmp/harness-abs-escape.txt": b"x"}, None, "outside"),
        ({"fine.txt": b"x"}, {"link": "/etc/passwd"}, "not a plain file"),
    ],
)
def test_unsafe_archives_are_refused(tmp_path, members, links, message):
    tar_path = tmp_path / "evil.tar.gz"
    make_tar(tar_path, members, links)
    target = tmp_path / "out" / "inner"
    target.mkdir(parents=True)
    with pytest.raises(DatasetError, match=message):
        safe_extract(tar_path, target)
    assert list(target.iterdir()) == []  # nothing extracted, not even the good members
    assert not (tmp_path / "out" / "escaped.txt").exists()
    assert not Path("/tmp/harness-abs-escape.txt").exists()


def test_unsafe_archive_through_download(tmp_path, monkeypatch):
    tar_path = tmp_path / "evil.tar.gz"
    blob = make_tar(tar_path, {"../../escaped.txt": b"x"})
    remote = RemoteFile(tar_path.as_uri(), "evil.tar.gz", md5=md5(blob), members=(("a", "0" * 32),))
    use_files(monkeypatch, "cifar10", remote)
    with pytest.raises(DatasetError, match="outside"):
        download("cifar10", tmp_path / "data")
    assert not (tmp_path / "escaped.txt").exists()


def test_corrupt_archive_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DatasetError, match="cannot extract"):
        safe_extract(bad, tmp_path)
