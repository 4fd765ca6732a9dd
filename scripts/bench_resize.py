"""What ``--image-size 224`` costs in the input pipeline: native batches vs upscaled ones.

    python scripts/bench_resize.py [--batch-size 128] [--size 224] [--seconds 0.5] [--rounds 5]

For MNIST-shaped (1x28x28) and CIFAR-10-shaped (3x32x32) in-memory data (random uint8
images, shuffled and normalised per batch, as real files are), in both layouts, it
draws batches from the plain source and from the same source upscaled to 3xSxS
(harness.datasets.resize), alternating the two in ``--rounds`` rounds so that drift of
the machine hits both alike, and prints the median milliseconds per batch side by side
with their ratio. With PyTorch installed it also times ``torch.nn.functional.interpolate``
on the same batch, as a reference for the resize alone.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from functools import partial

import numpy as np

from harness.datasets import ArraySource, ResizedSource, get


def ms_per_batch(make: Callable[[], Iterator], seconds: float) -> float:
    """Mean milliseconds per batch over about ``seconds``, after one warm-up."""
    it = make()
    next(it)
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or n < 3:
        next(it)
        n += 1
    return 1000.0 * elapsed / n


def torch_reference(batch: np.ndarray, size: int, seconds: float) -> float | None:
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    x = torch.from_numpy(batch)

    def stream() -> Iterator:
        while True:
            out = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            yield out.expand(-1, 3, -1, -1).contiguous() if out.shape[1] == 1 else out

    return ms_per_batch(stream, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=10_000, help="images held in memory")
    args = parser.parse_args()
    b, s = args.batch_size, args.size
    rng = np.random.default_rng(0)
    print(
        f"batches of {b}, upscaled to 3x{s}x{s}; median ms per batch over {args.rounds} "
        f"alternating rounds of {args.seconds:g} s"
    )
    print(f"{'data':14} {'layout':6} {'native':>9} {'upscaled':>9} {'ratio':>7} {'images/s':>9}")
    for name in ("mnist", "cifar10"):
        info = get(name)
        images = rng.integers(0, 256, (args.images, *info.image_shape), dtype=np.uint8)
        labels = rng.integers(0, 10, args.images).astype(np.int32)
        plain = ArraySource(info, "train", images, labels, description="bench")
        upscaled = ResizedSource(plain, s)
        for layout in ("NCHW", "NHWC"):
            native_ms: list[float] = []
            resized_ms: list[float] = []
            for _ in range(args.rounds):
                for source, times in ((plain, native_ms), (upscaled, resized_ms)):
                    stream = partial(source.batches, b, layout=layout, epochs=None)
                    times.append(ms_per_batch(stream, args.seconds))
            native, resized = statistics.median(native_ms), statistics.median(resized_ms)
            print(
                f"{name:14} {layout:6} {native:9.2f} {resized:9.2f} {resized / native:6.1f}x "
                f"{1000.0 * b / resized:9.0f}"
            )
        batch = next(plain.batches(b, epochs=1))[0]
        ref = torch_reference(batch, s, args.seconds)
        if ref is not None:
            print(f"{name:14} NCHW   torch.nn.functional.interpolate alone: {ref:.2f} ms")


if __name__ == "__main__":
    main()
