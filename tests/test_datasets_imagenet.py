"""ImageNet-style folders read through open_source; needs Pillow (pip install pillow)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from harness.datasets import DatasetError, get, open_source
from harness.datasets.imagenet import ImageFolderSource, centre_crop_box, random_crop_box

Image = pytest.importorskip("PIL.Image")

COLOURS = {"n01": (200, 30, 30), "n02": (30, 200, 30), "n03": (30, 30, 200)}
SIZES = [(300, 200), (180, 400), (256, 256)]


def write_tree(root: Path, split: str, per_class: int = 3) -> None:
    """Solid-colour JPEGs (one colour per class, assorted sizes), a PNG and a stray file."""
    for name, colour in COLOURS.items():
        folder = root / split / name
        folder.mkdir(parents=True)
        for k in range(per_class):
            img = Image.new("RGB", SIZES[k % len(SIZES)], colour)
            img.save(folder / f"{name}_{k}.JPEG", quality=95)
        (folder / "notes.txt").write_text("not an image")
    Image.new("L", (64, 90), 128).save(root / split / "n03" / "grey.png")


def normalised(colour: tuple[int, int, int]) -> np.ndarray:
    info = get("imagenet")
    return (np.asarray(colour) / 255 - np.asarray(info.mean)) / np.asarray(info.std)


@pytest.fixture
def tree(tmp_path) -> Path:
    write_tree(tmp_path / "imagenet", "train")
    write_tree(tmp_path / "imagenet", "val", per_class=2)
    return tmp_path


def test_folders_classes_and_labels(tree):
    src = open_source("imagenet", "train", tree, synthetic=False)
    assert isinstance(src, ImageFolderSource) and not src.synthetic
    assert src.classes == ["n01", "n02", "n03"]
    assert src.num_images == 10  # 3 JPEGs per class + the PNG; notes.txt ignored
    assert "real: " in src.description and "10 images, 3 classes" in src.description
    val = open_source("imagenet", "test", tree)
    assert val.root == tree / "imagenet" / "val" and val.num_images == 7
    np.testing.assert_array_equal(val.labels, [0, 0, 1, 1, 2, 2, 2])


@pytest.mark.parametrize("split", ["train", "test"])
def test_batches_hold_the_class_colour(tree, split):
    src = open_source("imagenet", split, tree, num_workers=2)
    x, y = next(src.batches(src.num_images, shuffle=False))
    assert x.shape == (src.num_images, 3, 224, 224) and x.dtype == np.float32
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y, src.labels)
    for image, label, path in zip(x, y, src.files, strict=True):
        grey = path.endswith("grey.png")  # the PNG of class n03, greyscale -> RGB
        colour = (128, 128, 128) if grey else COLOURS[src.classes[label]]
        expected = np.broadcast_to(normalised(colour)[:, None, None], image.shape)
        np.testing.assert_allclose(image, expected, atol=0.08)


def test_val_is_a_centre_crop(tmp_path):
    # 512x256, columns 0..127 red, 128..383 green, 384..511 blue: shorter side -> 256 keeps
    # the scale, the 224-wide centre crop spans columns 144..367: green only.
    arr = np.zeros((256, 512, 3), np.uint8)
    arr[:, :128, 0] = arr[:, 128:384, 1] = arr[:, 384:, 2] = 255
    folder = tmp_path / "imagenet" / "val" / "n01"
    folder.mkdir(parents=True)
    Image.fromarray(arr).save(folder / "wide.png")
    x, _ = next(open_source("imagenet", "test", tmp_path).batches(1, shuffle=False))
    np.testing.assert_allclose(x[0].mean(axis=(1, 2)), normalised((0, 255, 0)), atol=1e-4)
    assert centre_crop_box(512, 256, 224) == (144.0, 16.0, 368.0, 240.0)


def noise_tree(root: Path, n: int = 6) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        folder = root / "imagenet" / split / "n01"
        folder.mkdir(parents=True)
        for k in range(n):
            Image.fromarray(rng.integers(0, 256, (120 + 10 * k, 160, 3), dtype=np.uint8)).save(
                folder / f"{k}.png"
            )


def test_train_augmentation_is_seeded_and_thread_independent(tmp_path):
    noise_tree(tmp_path)

    def run(seed: int, workers: int, layout: str = "NCHW") -> np.ndarray:
        src = open_source("imagenet", "train", tmp_path, seed=seed, num_workers=workers)
        x, _ = zip(*src.batches(2, layout=layout, epochs=2), strict=True)
        return np.concatenate(x)

    a = run(1, 0)
    assert a.shape == (12, 3, 224, 224)
    np.testing.assert_array_equal(a, run(1, 3))
    np.testing.assert_array_equal(run(1, 2, "NHWC"), a.transpose(0, 2, 3, 1))
    assert not np.array_equal(a, run(2, 0))
    assert not np.array_equal(a[:6], a[6:])  # new crops and order in the second epoch


def test_val_layouts_drop_last_and_endless(tmp_path):
    noise_tree(tmp_path, n=5)
    src = open_source("imagenet", "test", tmp_path, num_workers=2)
    nchw, _ = zip(*src.batches(2, shuffle=False, drop_last=False), strict=True)
    assert [len(b) for b in nchw] == [2, 2, 1]
    nhwc, _ = zip(*src.batches(2, layout="NHWC", shuffle=False, drop_last=False), strict=True)
    np.testing.assert_array_equal(np.concatenate(nhwc), np.concatenate(nchw).transpose(0, 2, 3, 1))
    stream = src.batches(2, epochs=None)
    assert len(list(itertools.islice(stream, 7))) == 7
    stream.close()  # stops the decoding threads


def test_corrupt_image_names_the_file(tmp_path):
    noise_tree(tmp_path, n=3)
    bad = tmp_path / "imagenet" / "train" / "n01" / "1.png"
    bad.write_bytes(b"\x89PNG but not really")
    for workers in (0, 2):
        src = open_source("imagenet", "train", tmp_path, num_workers=workers)
        with pytest.raises(DatasetError, match=r"1\.png: cannot decode"):
            list(src.batches(1, shuffle=False))


def test_class_folders_must_agree(tmp_path):
    noise_tree(tmp_path, n=1)
    (tmp_path / "imagenet" / "val" / "n02").mkdir()
    with pytest.raises(DatasetError, match=r"different class folders.*n02"):
        open_source("imagenet", "train", tmp_path)


def test_empty_split_folder(tmp_path):
    (tmp_path / "imagenet" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no class folders"):
        open_source("imagenet", "train", tmp_path)
    (tmp_path / "imagenet" / "train" / "n01").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        open_source("imagenet", "train", tmp_path)


def test_random_crop_boxes_respect_scale_and_ratio():
    for seed in range(300):
        rng = np.random.default_rng(seed)
        w, h = int(rng.integers(50, 800)), int(rng.integers(50, 800))
        left, top, right, bottom = random_crop_box(w, h, rng)
        assert 0 <= left < right <= w and 0 <= top < bottom <= h
        cw, ch = right - left, bottom - top
        if (cw, ch) != (w, h):
            assert 0.07 <= cw * ch / (w * h) <= 1.0
            assert 0.7 <= cw / ch <= 1.4
    # a strip no crop fits in: the fallback is a centre crop of the allowed ratio
    box = random_crop_box(1000, 10, np.random.default_rng(0))
    assert box[1] == 0 and box[3] == 10 and box[2] - box[0] == round(10 * 4 / 3)


def test_train_flips_about_half_the_images(tmp_path):
    from harness.datasets.imagenet import decode

    arr = np.zeros((200, 200, 3), np.uint8)
    arr[:, 100:] = 255  # dark left half, bright right half
    Image.fromarray(arr).save(tmp_path / "halves.png")
    flipped = kept = 0
    for seed in range(40):
        out = decode(str(tmp_path / "halves.png"), True, np.random.default_rng(seed))
        assert out.shape == (224, 224, 3) and out.dtype == np.uint8
        left, right = out[:, :20].mean(), out[:, -20:].mean()
        flipped += left > right + 100
        kept += right > left + 100
    assert flipped >= 5 and kept >= 5
