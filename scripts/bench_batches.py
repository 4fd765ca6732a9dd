"""How fast harness.datasets hands out batches, to show the input pipeline is not the bottleneck.

    python scripts/bench_batches.py [--seconds 2] [--batch-size 128] [--imagenet 64]

Measures CIFAR-shaped in-memory data (50,000 random uint8 images, shuffled,
normalised per batch) in both layouts, a naive normalisation for comparison, and
synthetic data. With --imagenet N it also writes N random 500x375 JPEGs to a
temporary folder and measures decoding throughput (needs Pillow).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from harness.datasets import ArraySource, get, open_source


def rate(make: Callable[[], Iterator], seconds: float) -> float:
    """Batches per second drawn from a fresh iterator for about ``seconds``."""
    it = make()
    next(it)  # warm-up: pools, NHWC copy, first allocation
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        next(it)
        n += 1
    return n / elapsed


def naive_batches(images: np.ndarray, labels: np.ndarray, batch: int, name: str) -> Iterator:
    """What a straightforward loader does: float64 maths, then cast."""
    info = get(name)
    mean = np.asarray(info.mean)[None, :, None, None]
    std = np.asarray(info.std)[None, :, None, None]
    rng = np.random.default_rng(0)
    while True:
        order = rng.permutation(len(images))
        for s in range(0, len(images) - batch + 1, batch):
            sel = order[s : s + batch]
            yield ((images[sel] / 255.0 - mean) / std).astype(np.float32), labels[sel]


def bench_imagenet(count: int, batch: int, seconds: float) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for split in ("train", "val"):
            folder = Path(tmp) / "imagenet" / split / "n00000000"
            folder.mkdir(parents=True)
            for k in range(count):
                pixels = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{k}.JPEG", quality=90)
        for split in ("train", "test"):
            for workers in sorted({0, 4, os.cpu_count() or 1}):
                src = open_source("imagenet", split, tmp, num_workers=workers)
                per_s = rate(lambda s=src: s.batches(batch, epochs=None), seconds) * batch
                print(f"imagenet {split:5} JPEG decode, {workers:2} threads: {per_s:9.0f} images/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--imagenet", type=int, default=0, metavar="N")
    args = parser.parse_args()
    b, secs = args.batch_size, args.seconds

    info = get("cifar10")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (info.train_size, *info.image_shape), dtype=np.uint8)
    labels = rng.integers(0, 10, info.train_size).astype(np.int32)
    src = ArraySource(info, "train", images, labels, description="bench")
    synthetic = open_source("cifar10", "train", synthetic=True)

    rows = {
        "in-memory NCHW (vectorised)": rate(lambda: src.batches(b, epochs=None), secs),
        "in-memory NHWC (vectorised)": rate(
            lambda: src.batches(b, layout="NHWC", epochs=None), secs
        ),
        "in-memory NCHW (naive float64)": rate(
            lambda: naive_batches(images, labels, b, "cifar10"), secs
        ),
        "synthetic NCHW": rate(lambda: synthetic.batches(b, epochs=None), secs),
    }
    print(f"CIFAR-10 shaped batches of {b} (3x32x32 float32), {secs:g} s each:")
    for label, per_s in rows.items():
        print(f"  {label:32} {per_s:10.0f} batches/s  {per_s * b:12.0f} images/s")
    ratio = rows["in-memory NCHW (vectorised)"] / rows["in-memory NCHW (naive float64)"]
    print(f"  vectorised / naive: {ratio:.1f}x")
    if args.imagenet:
        bench_imagenet(args.imagenet, min(b, args.imagenet), secs)


if __name__ == "__main__":
    main()
