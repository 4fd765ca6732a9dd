"""harness.datasets: catalogue, IDX and CIFAR readers, batch sources, synthetic data.

Every file is written here in the real on-disk format, then read back.
"""

from __future__ import annotations

import gzip
import itertools
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.datasets import (
    DATASETS,
    ArraySource,
    DatasetError,
    SyntheticSource,
    cifar,
    get,
    idx,
    open_source,
)
from harness.datasets.normalise import Normaliser
from harness.errors import UsageError

# --- writers of the real formats -------------------------------------------------------


def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    """An IDX file: magic (0, 0, type, ndim), big-endian uint32 dims, big-endian data."""
    dtype = {0x08: ">u1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4"}[code]
    header = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(dtype).tobytes()


def write_mnist(
    folder: Path, split: str = "train", n: int = 50, gz: bool = True, hw: int = 28
) -> tuple[np.ndarray, np.ndarray]:
    """Image i is filled with the value i (so batches reveal their indices), label i % 10."""
    folder.mkdir(parents=True, exist_ok=True)
    images = np.repeat(np.arange(n, dtype=np.uint8), hw * hw).reshape(n, hw, hw)
    images[:, 0, 0] = 255  # one bright pixel per image
    labels = (np.arange(n) % 10).astype(np.uint8)
    prefix = "train" if split == "train" else "t10k"
    for stem, arr in (("images-idx3", images), ("labels-idx1", labels)):
        data = idx_bytes(arr)
        name = f"{prefix}-{stem}-ubyte"
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return images, labels


def write_cifar_batch(path: Path, data: np.ndarray, labels: list[int], **extra: object) -> None:
    entry = {b"batch_label": b"test", b"labels": labels, b"data": data, b"filenames": []}
    entry.update({k.encode(): v for k, v in extra.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(entry, protocol=2))


def write_cifar(folder: Path, per_batch: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """All six batches; returns the raw N x 3072 rows of each split."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    for name in (*cifar.TRAIN_BATCHES, *cifar.TEST_BATCHES):
        split = "test" if name == "test_batch" else "train"
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(x) for x in rng.integers(0, 10, per_batch)]
        write_cifar_batch(folder / cifar.BATCH_DIR / name, data, labels)
        rows[split].append(np.column_stack([data.astype(np.int64), labels]))
    return {k: np.concatenate(v) for k, v in rows.items()}


def reference(images_u8: np.ndarray, name: str) -> np.ndarray:
    """(x / 255 - mean) / std per channel, NCHW, float64."""
    info = get(name)
    mean = np.asarray(info.mean)[None, :, None, None]
    std = np.asarray(info.std)[None, :, None, None]
    return (images_u8 / 255.0 - mean) / std


def collect(it) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*it, strict=True)
    return np.concatenate(xs), np.concatenate(ys)


# --- catalogue ------------------------------------------------------------------------


def test_catalogue_has_the_five_datasets_with_their_shapes():
    assert set(DATASETS) == {"mnist", "fashion-mnist", "kmnist", "cifar10", "imagenet"}
    for name in ("mnist", "fashion-mnist", "kmnist"):
        info = get(name)
        assert (info.family, info.image_shape, info.num_classes) == ("mnist", (1, 28, 28), 10)
        assert (info.train_size, info.test_size) == (60_000, 10_000)
        assert [f.filename for f in info.files] == [
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        ]
    c = get("cifar10")
    assert (c.image_shape, c.num_classes, c.train_size, c.test_size) == (
        (3, 32, 32),
        10,
        50_000,
        10_000,
    )
    assert c.files[0].md5 == "c58f30108f718f92721af3b95e74349a"
    assert len(c.files[0].members) == 7
    i = get("imagenet")
    assert (i.image_shape, i.num_classes, i.train_size, i.test_size) == (
        (3, 224, 224),
        1000,
        1_281_167,
        50_000,
    )
    assert not i.downloadable and "train/<class>" in i.layout
    assert get("mnist").files[0].md5 == "f68b3c2dcbeaaa9fbdd348bbdeb94873"


def test_catalogue_entries_are_consistent():
    for info in DATASETS.values():
        c = info.channels
        assert len(info.mean) == len(info.std) == c
        assert all(0 < m < 1 for m in info.mean) and all(0 < s < 1 for s in info.std)
        assert not info.class_names or len(info.class_names) == info.num_classes
        for f in info.files:
            assert f.url.startswith(("https://", "http://")) and f.url.endswith(f.filename)
            algo, digest = f.checksum
            assert algo == "md5" and len(digest) == 32 and int(digest, 16) >= 0
            assert all(len(m) == 32 for _, m in f.members)


def test_get_unknown_names_the_choices():
    with pytest.raises(DatasetError) as err:
        get("cifar100")
    assert "cifar10" in str(err.value) and "fashion-mnist" in str(err.value)
    assert isinstance(err.value, ValueError) and isinstance(err.value, UsageError)


# --- IDX ------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    data = idx_bytes(arr)
    path = tmp_path / ("a.gz" if gz else "a")
    path.write_bytes(gzip.compress(data) if gz else data)
    out = idx.read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, arr)


def test_idx_multibyte_types_are_big_endian(tmp_path):
    arr = np.array([[1, -2], [70000, 3]], dtype=np.int32)
    (tmp_path / "x").write_bytes(idx_bytes(arr, 0x0C))
    out = idx.read_idx(tmp_path / "x")
    np.testing.assert_array_equal(out, arr)
    assert out.dtype.isnative


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b"\x01\x02" + b[2:], "not an IDX file"),
        (lambda b: b[:2] + b"\x42" + b[3:], "not an IDX file"),
        (lambda b: b[:-5], "truncated or corrupt"),
        (lambda b: b + b"\x00", "truncated or corrupt"),
        (lambda b: b[:6], "truncated"),
        (lambda b: b"", "not an IDX file"),
    ],
)
def test_idx_corrupt_files_are_clear_errors(tmp_path, mangle, message):
    good = idx_bytes(np.zeros((3, 28, 28), np.uint8))
    path = tmp_path / "bad"
    path.write_bytes(mangle(good))
    with pytest.raises(DatasetError, match=message):
        idx.read_idx(path)


def test_idx_broken_gzip_is_a_clear_error(tmp_path):
    blob = gzip.compress(idx_bytes(np.zeros((3, 28, 28), np.uint8)))
    (tmp_path / "cut.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetError, match="cannot read"):
        idx.read_idx(tmp_path / "cut.gz")
    (tmp_path / "junk.gz").write_bytes(b"\x1f\x8bnot gzip at all")
    with pytest.raises(DatasetError, match="download again"):
        idx.read_idx(tmp_path / "junk.gz")


# --- MNIST family through open_source ----------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "kmnist"])
def test_mnist_family_real_files(tmp_path, name, gz):
    images, labels = write_mnist(tmp_path / name, "train", 50, gz=gz)
    src = open_source(name, "train", tmp_path, synthetic=False)
    assert isinstance(src, ArraySource) and not src.synthetic
    assert src.num_images == 50
    assert src.description.startswith("real: ") and str(tmp_path / name) in src.description
    x, y = next(src.batches(10, shuffle=False))
    assert x.shape == (10, 1, 28, 28) and x.dtype == np.float32 and x.flags.c_contiguous
    assert y.dtype == np.int32
    np.testing.assert_allclose(x, reference(images[:10, None], name), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(y, labels[:10])


def test_layouts_agree(tmp_path):
    write_mnist(tmp_path / "mnist")
    write_cifar(tmp_path / "cifar10")
    for name in ("mnist", "cifar10"):
        nchw, _ = collect(open_source(name, "train", tmp_path).batches(4, shuffle=False))
        nhwc, _ = collect(
            open_source(name, "train", tmp_path).batches(4, layout="NHWC", shuffle=False)
        )
        assert nhwc.shape == (nchw.shape[0], *nchw.shape[2:], nchw.shape[1])
        assert nhwc.flags.c_contiguous
        np.testing.assert_array_equal(nhwc, nchw.transpose(0, 2, 3, 1))


def test_test_split_reads_t10k_files(tmp_path):
    write_mnist(tmp_path / "mnist", "train", 50)
    write_mnist(tmp_path / "mnist", "test", 20)
    src = open_source("mnist", "test", tmp_path)
    assert src.num_images == 20 and "test split" in src.description


def identities(x: np.ndarray, name: str = "mnist") -> np.ndarray:
    """Recover write_mnist's image index from a normalised batch (pixel (1, 1) == index)."""
    info = get(name)
    pixel = x[:, 0, 1, 1] * info.std[0] + info.mean[0]
    return np.rint(pixel * 255).astype(int)


def test_shuffle_is_seeded_and_covers_the_epoch(tmp_path):
    write_mnist(tmp_path / "mnist", n=50)

    def order(seed: int, epochs: int = 1) -> np.ndarray:
        src = open_source("mnist", "train", tmp_path, seed=seed)
        x, y = collect(src.batches(10, epochs=epochs))
        assert np.array_equal(y, identities(x) % 10)  # labels travel with their images
        return identities(x)

    a = order(3)
    assert sorted(a) == list(range(50))
    assert not np.array_equal(a, np.arange(50))
    np.testing.assert_array_equal(a, order(3))
    assert not np.array_equal(a, order(4))
    two = order(3, epochs=2)
    assert sorted(two[:50]) == sorted(two[50:]) == list(range(50))
    assert not np.array_equal(two[:50], two[50:])  # reshuffled each epoch


def test_drop_last_epochs_and_steps(tmp_path):
    write_mnist(tmp_path / "mnist", n=50)
    src = open_source("mnist", "train", tmp_path)
    assert src.steps_per_epoch(16) == 3 and src.steps_per_epoch(16, drop_last=False) == 4
    sizes = [len(y) for _, y in src.batches(16)]
    assert sizes == [16, 16, 16]
    sizes = [len(y) for _, y in src.batches(16, drop_last=False, shuffle=False)]
    assert sizes == [16, 16, 16, 2]
    assert len(list(src.batches(10, epochs=3))) == 15
    assert list(src.batches(10, epochs=0)) == []
    forever = list(itertools.islice(src.batches(10, epochs=None), 23))
    assert len(forever) == 23
    x, _ = collect(forever[:20])
    ids = identities(x)
    for e in range(4):  # each full epoch of the endless stream is a permutation
        assert sorted(ids[e * 50 : (e + 1) * 50]) == list(range(50))


def test_bad_batch_arguments(tmp_path):
    write_mnist(tmp_path / "mnist", n=50)
    src = open_source("mnist", "train", tmp_path)
    with pytest.raises(DatasetError, match="exceeds the 50 images"):
        src.batches(64)
    assert [len(y) for _, y in src.batches(64, drop_last=False)] == [50]
    with pytest.raises(DatasetError, match="positive integer"):
        src.batches(0)
    with pytest.raises(DatasetError, match="NHWC"):
        src.batches(8, layout="CHWN")
    with pytest.raises(DatasetError, match="epochs"):
        src.batches(8, epochs=-1)
    with pytest.raises(DatasetError, match="split"):
        open_source("mnist", "val", tmp_path)
    with pytest.raises(DatasetError, match="seed"):
        open_source("mnist", "train", tmp_path, seed=-1)
    with pytest.raises(DatasetError, match="num_workers"):
        open_source("mnist", "train", tmp_path, num_workers=-2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"hw": 32}, "28x28"), ({"n": 0}, None)],
)
def test_mnist_wrong_shapes(tmp_path, kwargs, message):
    write_mnist(tmp_path / "mnist", **kwargs)
    if message:
        with pytest.raises(DatasetError, match=message):
            open_source("mnist", "train", tmp_path)
    else:
        assert open_source("mnist", "train", tmp_path).num_images == 0


def test_mnist_label_problems(tmp_path):
    folder = tmp_path / "mnist"
    write_mnist(folder, n=50)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(49, np.uint8)))
    )
    with pytest.raises(DatasetError, match=r"50 images .* but 49 labels"):
        open_source("mnist", "train", tmp_path)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.full(50, 10, np.uint8)))
    )
    with pytest.raises(DatasetError, match=r"label 10 outside 0..9"):
        open_source("mnist", "train", tmp_path)


def test_partial_files_are_an_error_not_a_fallback(tmp_path):
    write_mnist(tmp_path / "mnist")
    (tmp_path / "mnist" / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match=r"incomplete.*train-labels-idx1-ubyte.gz"):
        open_source("mnist", "train", tmp_path)
    assert open_source("mnist", "train", tmp_path, synthetic=True).synthetic


# --- CIFAR-10 ---------------------------------------------------------------------------


def test_cifar_real_batches(tmp_path):
    rows = write_cifar(tmp_path / "cifar10", per_batch=4)
    src = open_source("cifar10", "train", tmp_path, synthetic=False)
    assert src.num_images == 20 and not src.synthetic
    x, y = collect(src.batches(5, shuffle=False))
    # row layout: 1024 red, then 1024 green, then 1024 blue values, each row-major 32x32
    raw = rows["train"][:, :3072].astype(np.uint8).reshape(20, 3, 32, 32)
    np.testing.assert_allclose(x, reference(raw, "cifar10"), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(y, rows["train"][:, 3072])
    assert x.shape == (20, 3, 32, 32)
    test = open_source("cifar10", "test", tmp_path)
    assert test.num_images == 4
    _, yt = collect(test.batches(2, shuffle=False))
    np.testing.assert_array_equal(yt, rows["test"][:, 3072])


def test_cifar_shuffle_keeps_images_with_labels(tmp_path):
    rows = write_cifar(tmp_path / "cifar10", per_batch=8)
    x, y = collect(open_source("cifar10", "train", tmp_path, seed=1).batches(8))
    info = get("cifar10")
    raw = x * np.asarray(info.std)[None, :, None, None] + np.asarray(info.mean)[None, :, None, None]
    raw = np.rint(raw * 255).astype(np.int64).reshape(len(x), 3072)
    table = {tuple(r[:3072]): r[3072] for r in rows["train"]}
    assert [table[tuple(r)] for r in raw] == list(y)
    assert not np.array_equal(raw, rows["train"][:, :3072])


def test_cifar_corrupt_batches(tmp_path):
    folder = tmp_path / "cifar10"
    write_cifar(folder)
    batch = folder / cifar.BATCH_DIR / "data_batch_3"
    good = batch.read_bytes()
    batch.write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetError, match="data_batch_3: not a readable CIFAR batch"):
        open_source("cifar10", "train", tmp_path)
    batch.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}))
    with pytest.raises(DatasetError, match="b'labels'"):
        open_source("cifar10", "train", tmp_path)
    write_cifar_batch(batch, np.zeros((2, 3000), np.uint8), [0, 1])
    with pytest.raises(DatasetError, match="3000 values per image"):
        open_source("cifar10", "train", tmp_path)
    write_cifar_batch(batch, np.zeros((2, 3072), np.uint8), [0])
    with pytest.raises(DatasetError, match="2 images but labels"):
        open_source("cifar10", "train", tmp_path)
    write_cifar_batch(batch, np.zeros((2, 3072), np.uint8), [0, 12])
    with pytest.raises(DatasetError, match="labels outside"):
        open_source("cifar10", "train", tmp_path)
    (folder / cifar.BATCH_DIR / "data_batch_5").unlink()
    with pytest.raises(DatasetError, match=r"incomplete.*data_batch_5"):
        open_source("cifar10", "train", tmp_path)


def py2_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch pickled the way Python 2's cPickle wrote the real CIFAR files (protocol 2,
    str objects, numpy.core.multiarray._reconstruct), written opcode by opcode."""

    def string(b: bytes) -> bytes:  # BINSTRING: a Python 2 str
        return b"T" + struct.pack("<I", len(b)) + b

    n, width = data.shape
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
        + string(b"b")
        + b"\x87R(K\x01"
        + b"J" + struct.pack("<i", n) + b"J" + struct.pack("<i", width) + b"\x86"
        + b"cnumpy\ndtype\n" + string(b"u1") + b"K\x00K\x01\x87R(K\x03" + string(b"|")
        + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbI00\n"
        + string(data.tobytes())
        + b"tb"
    )  # fmt: skip
    items = b"".join(b"J" + struct.pack("<i", v) for v in labels)
    return (
        b"\x80\x02}(" + string(b"data") + array + string(b"labels") + b"](" + items + b"e"
        + string(b"batch_label") + string(b"training batch 1 of 5") + b"u."
    )  # fmt: skip


def test_cifar_reads_python2_pickles(tmp_path):
    rows = write_cifar(tmp_path / "cifar10", per_batch=2)
    data = np.random.default_rng(9).integers(0, 256, (3, 3072), dtype=np.uint8)
    path = tmp_path / "cifar10" / cifar.BATCH_DIR / "test_batch"
    path.write_bytes(py2_batch(data, [7, 0, 3]))
    got, labels = cifar.read_batch(path)
    np.testing.assert_array_equal(got, data)
    np.testing.assert_array_equal(labels, [7, 0, 3])
    src = open_source("cifar10", "test", tmp_path)
    x, _ = collect(src.batches(3, shuffle=False))
    np.testing.assert_allclose(x, reference(data.reshape(3, 3, 32, 32), "cifar10"), atol=1e-5)
    assert len(rows["train"]) == open_source("cifar10", "train", tmp_path).num_images


class _Evil:
    def __reduce__(self):
        return (print, ("pickle ran code",))


def test_cifar_pickle_cannot_run_code(tmp_path, capsys):
    folder = tmp_path / "cifar10"
    write_cifar(folder)
    (folder / cifar.BATCH_DIR / "test_batch").write_bytes(
        pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=2)
    )
    with pytest.raises(DatasetError, match="forbidden global"):
        open_source("cifar10", "test", tmp_path)
    assert "pickle ran code" not in capsys.readouterr().out


# --- synthetic data -------------------------------------------------------------------


def test_synthetic_fallback_is_labelled(tmp_path):
    src = open_source("cifar10", "train", tmp_path)
    assert isinstance(src, SyntheticSource) and src.synthetic
    assert src.description.startswith("SYNTHETIC")
    assert str(tmp_path / "cifar10") in src.description
    assert src.num_images == 50_000 and src.steps_per_epoch(128) == 390
    assert open_source("mnist", "test", tmp_path).num_images == 10_000
    forced = open_source("cifar10", "train", tmp_path, synthetic=True)
    assert "synthetic=True" in forced.description


def test_synthetic_forced_even_with_real_files(tmp_path):
    write_mnist(tmp_path / "mnist")
    assert open_source("mnist", "train", tmp_path, synthetic=True).synthetic
    assert not open_source("mnist", "train", tmp_path).synthetic


def test_synthetic_batches(tmp_path):
    src = open_source("mnist", "train", tmp_path, seed=5)
    batches = list(src.batches(1000))
    assert len(batches) == 60
    x, y = batches[0]
    assert x.shape == (1000, 1, 28, 28) and x.dtype == np.float32
    assert y.shape == (1000,) and y.dtype == np.int32 and y.min() >= 0 and y.max() <= 9
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05
    assert len(set(np.bincount(y, minlength=10) > 50)) == 1  # every class drawn
    again = list(open_source("mnist", "train", tmp_path, seed=5).batches(1000))
    np.testing.assert_array_equal(again[7][0], batches[7][0])
    other = next(open_source("mnist", "train", tmp_path, seed=6).batches(1000))
    assert not np.array_equal(other[0], x)
    nhwc = next(src.batches(8, layout="NHWC"))[0]
    assert nhwc.shape == (8, 28, 28, 1)
    tail = list(src.batches(7000, drop_last=False))
    assert [len(b[1]) for b in tail] == [7000] * 8 + [4000]
    assert len(list(itertools.islice(src.batches(30000, epochs=None), 9))) == 9


def test_synthetic_imagenet_needs_no_files_or_pillow(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    src = open_source("imagenet", "train", tmp_path)
    assert src.synthetic and src.num_images == 1_281_167
    x, y = next(src.batches(2, layout="NHWC"))
    assert x.shape == (2, 224, 224, 3) and y.max() < 1000


def test_synthetic_false_explains_where_and_how(tmp_path):
    with pytest.raises(DatasetError) as err:
        open_source("kmnist", "train", tmp_path / "d", synthetic=False)
    msg = str(err.value)
    assert str(tmp_path / "d" / "kmnist") in msg
    assert f"python -m harness download kmnist --data-dir {tmp_path / 'd'}" in msg
    assert "train-images-idx3" in msg
    with pytest.raises(DatasetError, match=r"cannot download|image-net.org") as err:
        open_source("imagenet", "test", tmp_path, synthetic=False)
    assert "val/<class>" in str(err.value)


def test_pillow_missing_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "imagenet" / "val" / "n0").mkdir(parents=True)
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(DatasetError, match=r"pip install 'dlbench-harness\[imagenet\]'"):
        open_source("imagenet", "test", tmp_path)


def test_default_data_dir_from_environment(tmp_path, monkeypatch):
    write_mnist(tmp_path / "mnist")
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    assert not open_source("mnist").synthetic
    monkeypatch.delenv("HARNESS_DATA_DIR")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "mnist").rename(tmp_path / "data" / "mnist")
    assert not open_source("mnist").synthetic


# --- normalisation --------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_normaliser_matches_the_formula(layout):
    rng = np.random.default_rng(0)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    batch = rng.integers(0, 256, (4, 3, 5, 7), dtype=np.uint8)
    expected = (batch / 255.0 - np.reshape(mean, (1, 3, 1, 1))) / np.reshape(std, (1, 3, 1, 1))
    norm = Normaliser(mean, std, (3, 5, 7), layout)
    if layout == "NHWC":
        batch, expected = batch.transpose(0, 2, 3, 1).copy(), expected.transpose(0, 2, 3, 1)
    out = norm(batch)
    assert out.dtype == np.float32 and out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    one = np.empty(out.shape[1:], np.float32)
    hwc = batch[1] if layout == "NHWC" else batch[1].transpose(1, 2, 0)
    norm.image_hwc_into(hwc, one)
    np.testing.assert_allclose(one, expected[1], rtol=1e-5, atol=1e-5)
