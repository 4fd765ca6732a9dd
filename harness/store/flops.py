"""FLOP/s and model FLOPs utilisation (MFU) of a training run. Imports no framework.

Definitions (one multiply-accumulate, MAC, counts as 2 FLOPs):

- forward FLOPs per image: ``harness.models.flops_per_image`` = 2 x the MACs of the
  convolutions and dense layers (batch norm, activations, pooling, residual additions
  and the loss are not counted: they are a few percent of a CNN's work);
- training FLOPs per image: 3 x forward. The backward pass computes two products per
  layer (the gradient of the input and the gradient of the weights), each as large as
  the forward one, so backward is about 2 x forward (the usual convention of MLPerf's
  and PaLM's MFU); the optimiser update is not counted;
- achieved FLOP/s (total) = images/sec (mean over the repeats) x training FLOPs per image;
  per device = total / data-parallel devices;
- MFU = achieved per device / the device's peak for the run's precision.

Peaks per device: GPUs from :data:`GPU_PEAKS`, the vendors' published dense peaks (no
structured sparsity). fp16 and bf16 runs use the tensor-core dense peak (with FP32
accumulation, which is what frameworks use: on GeForce cards that is half the
FP16-accumulate figure); fp32 runs use the TF32 tensor-core peak on GPUs that have one
(Ampere and later), because cuDNN, frameworks and XLA run fp32 convolutions in TF32 there
by default; on older GPUs the FP32 (CUDA core) peak. CPUs: the GEMM peak that
``python -m harness peak`` measured on this machine (:mod:`harness.machine.peak`), divided by the
run's CPU devices; without one, MFU is None and the result says how to measure it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.store.schema import Flops

if TYPE_CHECKING:
    from harness.models import Network
    from harness.store.schema import RunResult

TRAIN_FACTOR = 3  # training FLOPs = forward + backward (2 x forward)
TERA = 1e12
# a CPU run given no measured peak (harness.machine.peak.cpu_peak looks it up)
NO_PEAK = "no peak measured: run `python -m harness peak`"


@dataclass(frozen=True)
class GpuPeak:
    """Published dense peaks in TFLOP/s; None where the GPU has no such unit."""

    name: str
    fp32: float  # CUDA cores
    tf32: float | None  # tensor cores, dense
    fp16: float | None  # tensor cores, dense, FP32 accumulate
    bf16: float | None  # tensor cores, dense, FP32 accumulate


# (pattern on the upper-cased NVML name without "NVIDIA"/"TESLA"/"GEFORCE", peaks);
# the first match wins, so specific names come before general ones.
GPU_PEAKS: tuple[tuple[str, GpuPeak], ...] = (
    (r"\bGH200\b", GpuPeak("GH200", 67.0, 494.7, 989.4, 989.4)),
    (r"\bH200\b.*\bNVL\b", GpuPeak("H200 NVL", 60.0, 417.5, 835.5, 835.5)),
    (r"\bH200\b", GpuPeak("H200 SXM", 67.0, 494.7, 989.4, 989.4)),
    (r"\bH100\b.*\bNVL\b", GpuPeak("H100 NVL", 60.0, 417.5, 835.5, 835.5)),
    (r"\bH100\b.*\bPCIE\b", GpuPeak("H100 PCIe", 51.2, 378.0, 756.0, 756.0)),
    (r"\bH100\b", GpuPeak("H100 SXM", 67.0, 494.7, 989.4, 989.4)),
    (r"\bA100\b", GpuPeak("A100", 19.5, 156.0, 312.0, 312.0)),
    (r"\bA40\b", GpuPeak("A40", 37.4, 74.8, 149.7, 149.7)),
    (r"\bA30\b", GpuPeak("A30", 10.3, 82.0, 165.0, 165.0)),
    (r"\bA10\b", GpuPeak("A10", 31.2, 62.5, 125.0, 125.0)),
    (r"\bL40S\b", GpuPeak("L40S", 91.6, 183.0, 362.0, 362.0)),
    (r"\bL40\b", GpuPeak("L40", 90.5, 90.5, 181.0, 181.0)),
    (r"\bL4\b", GpuPeak("L4", 30.3, 60.0, 121.0, 121.0)),
    (r"\bRTX A6000\b", GpuPeak("RTX A6000", 38.7, 77.4, 154.8, 154.8)),
    (r"\bRTX 4090\b(?! D)", GpuPeak("GeForce RTX 4090", 82.6, 82.6, 165.2, 165.2)),
    (r"\bRTX 3090 TI\b", GpuPeak("GeForce RTX 3090 Ti", 40.0, 40.0, 80.0, 80.0)),
    (r"\bRTX 3090\b", GpuPeak("GeForce RTX 3090", 35.6, 35.6, 71.0, 71.0)),
    (r"\bV100S\b", GpuPeak("V100S PCIe", 16.4, None, 130.0, None)),
    (r"\bV100\b.*\bPCIE\b", GpuPeak("V100 PCIe", 14.0, None, 112.0, None)),
    (r"\bV100\b", GpuPeak("V100 SXM2", 15.7, None, 125.0, None)),
    (r"\bT4\b", GpuPeak("T4", 8.1, None, 65.0, None)),
)


def gpu_peak(name: str) -> GpuPeak | None:
    """The table entry for an NVML device name, or None when it is not in the table."""
    text = re.sub(r"\b(NVIDIA|TESLA|GEFORCE)\b", " ", name.upper().replace("-", " "))
    text = " ".join(text.split())
    for pattern, peak in GPU_PEAKS:
        if re.search(pattern, text):
            return peak
    return None


def gpu_peak_for(name: str, precision: str) -> tuple[float | None, str]:
    """(peak FLOP/s per device, where it comes from) for a GPU and a precision."""
    peak = gpu_peak(name)
    if peak is None:
        return None, f"no published peak for GPU {name!r} in harness.store.flops.GPU_PEAKS"
    if precision == "fp32":
        if peak.tf32 is not None:
            return peak.tf32 * TERA, (
                f"published dense TF32 tensor-core peak of the {peak.name} "
                "(fp32 convolutions run in TF32 by default on this GPU)"
            )
        return peak.fp32 * TERA, f"published FP32 peak of the {peak.name}"
    value = getattr(peak, precision, None)
    if value is None:
        return None, f"the {peak.name} has no {precision} tensor cores (no published peak)"
    return value * TERA, f"published dense {precision.upper()} tensor-core peak of the {peak.name}"


def forward_flops_per_image(model: str, dataset: str, network: Network | None = None) -> int:
    """2 x MACs of one forward pass of ``model`` on one ``dataset`` image.

    ``network``: that model already built for that dataset (the orchestrator's plan holds
    it), so it is not built again; None builds it."""
    # the catalogues load NumPy: only where FLOPs are counted (`ops --help` stays without it)
    from harness import datasets, models

    if network is None:
        info = datasets.DATASETS[dataset]
        network = models.build(model, info.image_shape, info.num_classes)
    elif network.name != model:
        raise ValueError(f"the network given is {network.name!r}, not {model!r}")
    return models.flops_per_image(network)


def train_flops_per_image(forward: float) -> float:
    return TRAIN_FACTOR * forward


def device_peak(
    *,
    num_gpus: int,
    cpu_devices: int,
    gpu_names: list[str],
    precision: str,
    cpu_peak: tuple[float | None, str] | None = None,
) -> tuple[float | None, str]:
    """(peak FLOP/s of one data-parallel device, its source or why there is none).

    ``cpu_peak``: (the measured GEMM peak of the whole CPU for ``precision``, its source),
    as ``harness.machine.peak.cpu_peak`` looks it up; None: no peak measured.
    """
    if num_gpus > 0:
        peaks = [gpu_peak_for(n, precision) for n in gpu_names] or [(None, "no GPU recorded")]
        missing = next((src for value, src in peaks if value is None), None)
        if missing:
            return None, missing
        values = [v for v, _ in peaks if v is not None]
        sources = list(dict.fromkeys(src for _, src in peaks))
        return sum(values) / len(values), "; ".join(sources)
    if cpu_peak is None:
        return None, NO_PEAK
    whole, source = cpu_peak
    if whole is None:
        return None, source
    devices = max(1, cpu_devices)
    if devices > 1:
        source += f", divided by {devices} CPU devices"
    return whole / devices, source


def summarize(
    *,
    model: str,
    dataset: str,
    images_per_sec: float | None,
    devices: int,
    peak_per_device: float | None,
    peak_source: str,
    network: Network | None = None,
) -> Flops:
    """``RunResult.summary.flops``: the FLOPs, FLOP/s and MFU of a run."""
    forward = forward_flops_per_image(model, dataset, network)
    train = train_flops_per_image(forward)
    total = images_per_sec * train if images_per_sec is not None else None
    per_device = total / max(1, devices) if total is not None else None
    mfu = per_device / peak_per_device if per_device is not None and peak_per_device else None
    return Flops(
        forward_per_image=forward,
        train_per_image=train,
        achieved_total=total,
        achieved_per_device=per_device,
        peak_per_device=peak_per_device,
        peak_source=peak_source if peak_per_device else None,
        mfu=mfu,
        note=None if peak_per_device else peak_source,
    )


def for_result(
    result: RunResult,
    cpu_peak: tuple[float | None, str] | None = None,
    *,
    network: Network | None = None,
) -> Flops:
    """The flops summary of an orchestrator result (spec, environment, summary).

    ``network``: the run's network, already built (see :func:`forward_flops_per_image`)."""
    spec = result.spec
    num_gpus = spec.num_gpus
    cpu_devices = spec.cpu_devices or 1
    names = [str(g.get("name", "?")) for g in result.environment.get("gpus") or []]
    if num_gpus > 0 and not names and result.gpu_name:
        names = [result.gpu_name] * num_gpus
    peak, source = device_peak(
        num_gpus=num_gpus,
        cpu_devices=cpu_devices,
        gpu_names=names,
        precision=spec.precision,
        cpu_peak=cpu_peak,
    )
    return summarize(
        model=spec.model,
        dataset=spec.dataset,
        images_per_sec=result.summary.images_per_sec.mean,
        devices=spec.total_devices,  # every device of every node (--nodes)
        peak_per_device=peak,
        peak_source=source,
        network=network,
    )


def flops_text(value: float | None) -> str:
    """12.3 TFLOP/s, 456.7 GFLOP/s, 89.0 MFLOP/s; None as "-"."""
    if value is None:
        return "-"
    for scale, unit in ((1e15, "PFLOP/s"), (1e12, "TFLOP/s"), (1e9, "GFLOP/s")):
        if abs(value) >= scale:
            return f"{value / scale:,.2f} {unit}"
    return f"{value / 1e6:,.2f} MFLOP/s"
