"""--image-size: the small datasets upscaled to 3xSxS inside the input pipeline.

The resize against an independent per-pixel bilinear reference, in both layouts; the
resized source keeps the inner source's images, labels and order; the spec, the CLI, the
sweep file and the configuration key take the option; a run through the fake backend
upscales real-format MNIST files for an ImageNet-shaped network.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from dataformats import write_learnable_mnist
from fake_cli import run_cli

from harness import datasets
from harness.backend import BackendInfo
from harness.datasets.resize import ResizedSource, Resizer, bilinear_matrix, resized_info
from harness.errors import UsageError
from harness.run.spec import resolve
from harness.spec import RunSpec
from harness.store import configkey
from harness.sweep import config as sweep_config


def _bilinear_reference(image: np.ndarray, size: int) -> np.ndarray:
    """One (H, W) plane resampled pixel by pixel: half-pixel centres, clamped borders."""
    h, w = image.shape
    out = np.empty((size, size))
    for i in range(size):
        y = min(max((i + 0.5) * h / size - 0.5, 0.0), h - 1)
        y0 = math.floor(y)
        y1, fy = min(y0 + 1, h - 1), y - y0
        for j in range(size):
            x = min(max((j + 0.5) * w / size - 0.5, 0.0), w - 1)
            x0 = math.floor(x)
            x1, fx = min(x0 + 1, w - 1), x - x0
            top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
            bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
            out[i, j] = top * (1 - fy) + bottom * fy
    return out


def test_bilinear_matrix_rows_are_weights_summing_to_one() -> None:
    r = bilinear_matrix(28, 224)
    assert r.shape == (224, 28)
    np.testing.assert_allclose(r.sum(axis=1), 1.0, rtol=1e-6)
    assert (r >= 0).all() and ((r > 0).sum(axis=1) <= 2).all()
    # an integer factor: 8 outputs per input pixel, the borders clamped
    assert r[0, 0] == 1.0 and r[-1, -1] == 1.0


@pytest.mark.parametrize("channels", [1, 3])
def test_resize_matches_the_per_pixel_reference_in_both_layouts(channels: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, channels, 7, 7), dtype=np.float32)
    size = 20
    nchw = Resizer((channels, 7, 7), size, "NCHW")(x)
    nhwc = Resizer((channels, 7, 7), size, "NHWC")(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    assert nchw.shape == (2, 3, size, size) and nhwc.shape == (2, size, size, 3)
    assert nchw.dtype == nhwc.dtype == np.float32
    assert nchw.flags.c_contiguous and nhwc.flags.c_contiguous
    for b in range(2):
        for c in range(3):
            ref = _bilinear_reference(x[b, c if channels == 3 else 0].astype(np.float64), size)
            np.testing.assert_allclose(nchw[b, c], ref, atol=1e-5)
            np.testing.assert_allclose(nhwc[b, :, :, c], ref, atol=1e-5)


def test_resized_info_repeats_grey_statistics_and_refuses_what_it_cannot_do() -> None:
    mnist = datasets.get("mnist")
    info = resized_info(mnist, 224)
    assert info.image_shape == (3, 224, 224) and info.num_classes == 10
    assert info.mean == mnist.mean * 3 and info.std == mnist.std * 3
    assert resized_info(mnist, None) is mnist
    assert resized_info(datasets.get("cifar10"), 224).mean == datasets.get("cifar10").mean
    with pytest.raises(datasets.DatasetError, match="upscales only"):
        resized_info(datasets.get("cifar10"), 16)
    with pytest.raises(datasets.DatasetError, match="MNIST family and CIFAR-10"):
        resized_info(datasets.get("imagenet"), 256)


def test_resized_source_keeps_images_labels_order_and_shards() -> None:
    info = datasets.get("cifar10")
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (40, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, 40).astype(np.int32)
    plain = datasets.ArraySource(info, "train", images, labels, description="mem", seed=3)
    big = ResizedSource(plain, 64)
    assert big.info.image_shape == (3, 64, 64) and big.num_images == 40
    assert not big.synthetic and "upscaled to 3x64x64" in big.description
    assert big.steps_per_epoch(8, shard=(1, 2)) == plain.steps_per_epoch(8, shard=(1, 2))
    resize = Resizer((3, 32, 32), 64, "NHWC")
    pairs = zip(
        plain.batches(8, layout="NHWC", epochs=2, shard=(1, 2)),
        big.batches(8, layout="NHWC", epochs=2, shard=(1, 2)),
        strict=True,
    )
    for (small, y0), (large, y1) in pairs:
        np.testing.assert_array_equal(y0, y1)
        np.testing.assert_array_equal(resize(small), large)
    with pytest.raises(datasets.DatasetError, match="batch size"):
        big.batches(0)  # checked when asked, as every source does


def test_open_source_upscales_real_files_and_synthetic_data(tmp_path) -> None:
    data = write_learnable_mnist(tmp_path)
    real = datasets.open_source("mnist", "train", data, synthetic=False, image_size=32)
    images, labels = next(real.batches(4, layout="NHWC"))
    assert images.shape == (4, 32, 32, 3) and labels.shape == (4,)
    np.testing.assert_allclose(images[..., 0], images[..., 2], atol=1e-6)  # grey, three times
    fake = datasets.open_source("mnist", "train", synthetic=True, image_size=224)
    assert fake.synthetic and next(fake.batches(2))[0].shape == (2, 3, 224, 224)
    with pytest.raises(datasets.DatasetError, match="upscales only"):
        datasets.open_source("cifar10", "train", synthetic=True, image_size=8)


TOOLS = {"t": BackendInfo(name="t", framework="T", requires=(), install_hint="-", trainer="x:Y")}


def test_spec_takes_the_size_and_native_sizes_are_no_option() -> None:
    spec = resolve(RunSpec("t", "alexnet", "cifar10", image_size=224), TOOLS)
    assert spec.image_size == 224
    assert resolve(RunSpec("t", "alexnet", "cifar10", image_size=32), TOOLS).image_size is None
    assert resolve(RunSpec("t", "alexnet", "imagenet", image_size=224), TOOLS).image_size is None
    assert resolve(RunSpec("t", "lenet", "mnist", image_size=28), TOOLS).image_size == 28  # RGB
    for bad, message in ((0, "positive"), (16, "upscales only"), (299, "imagenet")):
        dataset = "imagenet" if bad == 299 else "cifar10"
        with pytest.raises(UsageError, match=message):
            resolve(RunSpec("t", "alexnet", dataset, image_size=bad), TOOLS)


def test_image_size_is_part_of_the_configuration_key_only_when_set() -> None:
    from harness.store.schema import RunResult

    def config(**spec_fields) -> dict:
        spec = RunSpec("t", "alexnet", "cifar10", batch_size=8, **spec_fields)
        return configkey.build_config(RunResult(run_id="r", spec=spec))

    native, upscaled = config(), config(image_size=224)
    assert "image_size" not in native  # the keys runs stored before the option had
    assert upscaled["image_size"] == 224
    assert configkey.key_of(native) != configkey.key_of(upscaled)


def test_sweep_files_accept_image_size() -> None:
    sweep = sweep_config.parse(
        {
            "sweep": {"tools": ["pytorch"], "hardware": ["cpu"]},
            "defaults": {"steps": 5},
            "workloads": [
                {"dataset": "cifar10", "model": ["alexnet", "vgg16"], "image_size": 224},
                {"dataset": "mnist", "model": "lenet"},
            ],
        }
    )
    sizes = {(c.model, c.dataset): c.spec.image_size for c in sweep.cells()}
    assert sizes == {
        ("alexnet", "cifar10"): 224,
        ("vgg16", "cifar10"): 224,
        ("lenet", "mnist"): None,
    }
    head = {"tools": ["pytorch"], "hardware": ["cpu"]}
    with pytest.raises(UsageError, match="image_size"):
        sweep_config.parse({"sweep": head, "defaults": {"image_size": "big"}})


def test_an_upscaled_run_feeds_the_imagenet_network_real_files(tmp_path) -> None:
    data = write_learnable_mnist(tmp_path / "data")
    out = run_cli(
        "--tool", "fake", "--model", "alexnet", "--dataset", "mnist", "--image-size", "224",
        "--real", "--data-dir", str(data), "--batch-size", "4", "--warmup-steps", "1",
        "--steps", "3", "--repeats", "1", "--idle-baseline", "0",
        "--output-dir", str(tmp_path / "logs"), "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["spec"]["image_size"] == 224 and result["config"]["image_size"] == 224
    record = result["repeats"][0]
    assert record["status"] == "ok" and record["data_wait_s"] is not None
    assert "upscaled to 3x224x224" in record["data"]["description"]
    # the ImageNet AlexNet (0.7 GMAC per image), not the small one
    assert result["summary"]["flops"]["forward_per_image"] > 1e9
    refused = run_cli("--tool", "fake", "--model", "lenet", "--dataset", "mnist",
                      "--image-size", "224", "--dry-run")  # fmt: skip
    assert refused.returncode == 2 and "lenet" in refused.stderr
