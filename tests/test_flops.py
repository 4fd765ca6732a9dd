"""FLOPs, FLOP/s and MFU: the arithmetic, the GPU peak table, and where they are shown."""

from __future__ import annotations

import pytest
from sweep_helpers import make_result, with_spec

from harness import models
from harness.datasets import DATASETS
from harness.store import flops
from harness.store.schema import RunResult


def test_forward_flops_are_two_per_multiply_accumulate() -> None:
    for model, dataset in (("lenet", "mnist"), ("resnet50", "cifar10"), ("alexnet", "imagenet")):
        info = DATASETS[dataset]
        net = models.build(model, info.image_shape, info.num_classes)
        assert flops.forward_flops_per_image(model, dataset) == 2 * models.macs_per_image(net)
    assert flops.train_flops_per_image(10.0) == 30.0


def test_flop_rates_and_mfu_arithmetic() -> None:
    forward = flops.forward_flops_per_image("resnet50", "cifar10")
    out = flops.summarize(
        model="resnet50",
        dataset="cifar10",
        images_per_sec=1000.0,
        devices=4,
        peak_per_device=100e12,
        peak_source="published peak",
    )
    assert out.forward_per_image == forward
    assert out.train_per_image == 3 * forward
    assert out.achieved_total == pytest.approx(1000.0 * 3 * forward)
    assert out.achieved_per_device == pytest.approx(1000.0 * 3 * forward / 4)
    assert out.mfu == pytest.approx(1000.0 * 3 * forward / 4 / 100e12)
    assert out.peak_source == "published peak" and out.note is None
    failed = flops.summarize(
        model="resnet50",
        dataset="cifar10",
        images_per_sec=None,
        devices=1,
        peak_per_device=None,
        peak_source="no peak measured: run `python -m harness peak`",
    )
    assert failed.achieved_total is None and failed.mfu is None
    assert failed.peak_source is None and "harness peak" in failed.note


@pytest.mark.parametrize(
    ("name", "entry"),
    [
        ("NVIDIA A100-SXM4-40GB", "A100"),
        ("NVIDIA A100 80GB PCIe", "A100"),
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H100 NVL", "H100 NVL"),
        ("NVIDIA H200", "H200 SXM"),
        ("NVIDIA H200 NVL", "H200 NVL"),
        ("NVIDIA GH200 480GB", "GH200"),
        ("Tesla V100-SXM2-16GB", "V100 SXM2"),
        ("Tesla V100-PCIE-32GB", "V100 PCIe"),
        ("Tesla V100S-PCIE-32GB", "V100S PCIe"),
        ("Tesla T4", "T4"),
        ("NVIDIA A10", "A10"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40", "L40"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA GeForce RTX 3090", "GeForce RTX 3090"),
        ("NVIDIA GeForce RTX 3090 Ti", "GeForce RTX 3090 Ti"),
        ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090"),
        ("NVIDIA RTX A6000", "RTX A6000"),
        ("NVIDIA A10G", None),  # not an A10
        ("NVIDIA GeForce RTX 4090 D", None),
        ("NVIDIA B200", None),
    ],
)
def test_gpu_names_find_their_published_peaks(name: str, entry: str | None) -> None:
    found = flops.gpu_peak(name)
    assert (found.name if found else None) == entry


def test_peak_per_precision() -> None:
    value, source = flops.gpu_peak_for("NVIDIA A100-SXM4-80GB", "fp32")
    assert value == 156e12 and "TF32" in source and "published" in source
    value, source = flops.gpu_peak_for("NVIDIA A100-SXM4-80GB", "bf16")
    assert value == 312e12 and "published dense BF16" in source
    assert flops.gpu_peak_for("NVIDIA H200", "fp16")[0] == 989.4e12
    assert flops.gpu_peak_for("Tesla V100-SXM2-16GB", "fp32")[0] == 15.7e12  # no TF32
    assert flops.gpu_peak_for("NVIDIA GeForce RTX 4090", "fp16")[0] == 165.2e12
    value, source = flops.gpu_peak_for("Tesla T4", "bf16")
    assert value is None and "no bf16" in source
    value, source = flops.gpu_peak_for("Mystery GPU", "fp32")
    assert value is None and "Mystery GPU" in source


def test_device_peaks_for_gpus_and_cpus() -> None:
    two = flops.device_peak(
        num_gpus=2,
        cpu_devices=1,
        gpu_names=["NVIDIA A100-SXM4-40GB", "NVIDIA H100 80GB HBM3"],
        precision="bf16",
    )
    assert two[0] == pytest.approx((312e12 + 989.4e12) / 2)  # mixed GPUs: their mean
    unknown = flops.device_peak(
        num_gpus=2, cpu_devices=1, gpu_names=["NVIDIA A100", "Other"], precision="fp16"
    )
    assert unknown[0] is None and "Other" in unknown[1]
    cpu = flops.device_peak(
        num_gpus=-1, cpu_devices=2, gpu_names=[], precision="fp32", cpu_peak=(100e9, "measured")
    )
    assert cpu == (50e9, "measured, divided by 2 CPU devices")
    missing = flops.device_peak(
        num_gpus=-1, cpu_devices=1, gpu_names=[], precision="fp32", cpu_peak=(None, "no peak")
    )
    assert missing == (None, "no peak")


def gpu_result(ips: float = 2000.0) -> RunResult:
    r = make_result("pytorch", "resnet50", "cifar10", num_gpus=2, ips=(ips, 20.0))
    return with_spec(r, precision="fp16")


def test_for_result_of_a_gpu_run() -> None:
    out = flops.for_result(gpu_result())
    train = 3 * flops.forward_flops_per_image("resnet50", "cifar10")
    assert out.achieved_total == pytest.approx(2000.0 * train)
    assert out.achieved_per_device == pytest.approx(1000.0 * train)
    assert out.peak_per_device == 312e12
    assert out.mfu == pytest.approx(1000.0 * train / 312e12)
    cpu = make_result("jax", "lenet", "mnist", ips=(500.0, 5.0))
    out = flops.for_result(cpu, cpu_peak=(1e11, "measured here"))
    assert out.mfu == pytest.approx(
        500.0 * 3 * flops.forward_flops_per_image("lenet", "mnist") / 1e11
    )


def test_report_and_export_show_flops_and_mfu(tmp_path) -> None:
    from harness.report.data import METRICS, Row, build
    from harness.report.text import markdown
    from harness.results.export import flat

    r = gpu_result()
    r.summary.flops = flops.for_result(r)
    data = build([r])
    row, column = Row("cifar10", "resnet50", "pytorch"), data.columns[0]
    tflops = data.value("tflops", row, column)
    assert tflops.mean == pytest.approx(r.summary.flops.achieved_total / 1e12)
    assert tflops.std == pytest.approx(tflops.mean * 20.0 / 2000.0)  # images/sec's relative std
    mfu = data.value("mfu", row, column)
    assert mfu.mean == pytest.approx(100 * r.summary.flops.mfu)
    assert [m.key for m in METRICS][-2:] == ["tflops", "mfu"]
    text = markdown(data)
    assert f"| MFU (%) | CIFAR-10 | ResNet-50 | pytorch | {mfu.mean:,.1f} ± " in text
    assert any("3 x forward" in note for note in data.notes)
    row = flat(r)
    assert row["mfu"] == r.summary.flops.mfu and row["peak_flops_per_device"] == 312e12
    assert row["train_flops_per_image"] == 3 * row["forward_flops_per_image"]


def test_flops_text() -> None:
    assert flops.flops_text(1.234e13) == "12.34 TFLOP/s"
    assert flops.flops_text(5e9) == "5.00 GFLOP/s"
    assert flops.flops_text(2e15) == "2.00 PFLOP/s"
    assert flops.flops_text(None) == "-"
