"""The bottleneck verdict of a training run: input-bound, device-bound or host-bound.

A pure function of three figures of the timed phase (:func:`verdict`):

- the *data-wait share*: the time the loop waited for the host's input pipeline over
  the timed phase's wall time (``data_wait_fraction``; 0 on synthetic data, which is
  on the device before the loop starts);
- the *device utilisation*: the GPUs' mean busy percentage (NVML), None on CPU runs;
- the *host CPU busy share*: the run's process-tree CPU over the cores it may use
  (``host_cpu_percent / 100 / cores``).

The rules, in order (the thresholds are the constants below):

1. data wait >= :data:`INPUT_WAIT_SHARE` of the timed phase: **input-bound** (the
   device waited for batches: ``--data-workers``, a faster disk or decoding help);
2. on a GPU run: utilisation >= :data:`DEVICE_BUSY_PCT`: **device-bound**; below it
   **host-bound** (the host cannot issue work fast enough: Python, kernel launches,
   a saturated CPU), or *unknown* without a utilisation figure;
3. on a CPU run the CPU is the device: busy share >= :data:`CPU_BUSY_SHARE`:
   **device-bound** (the cores compute); below it **host-bound** (the cores are mostly
   idle yet nothing waits for data: per-step framework overhead, too few threads), or
   *unknown* without a host CPU figure (no monitor).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.store import stats

#: Data wait at or above this share of the timed phase makes a run input-bound: the
#: device idles a tenth of the time for want of batches.
INPUT_WAIT_SHARE = 0.10

#: GPU utilisation (NVML's percentage of time a kernel ran) at or above which a GPU run
#: that is not input-bound is device-bound; below it the host does not keep the GPU busy.
DEVICE_BUSY_PCT = 80.0

#: Host CPU busy share (of the run's cores) at or above which a CPU run that is not
#: input-bound is device-bound: its cores are computing half the time or more.
CPU_BUSY_SHARE = 0.50

VERDICTS = ("input-bound", "device-bound", "host-bound", "unknown")


@dataclass
class Bottleneck:
    """A verdict and the figures that led to it (stored in repeats and run summaries)."""

    verdict: str = "unknown"  # one of VERDICTS
    reason: str = ""  # the rule that decided, with its figures
    data_wait_share: float | None = None
    device_utilization_pct: float | None = None  # None: a CPU run, or no NVML figure
    host_cpu_share: float | None = None  # of the run's cores (1.0 = all busy)
    host_cpu_percent: float | None = None  # 100 = one core
    cores: int | None = None
    on_gpu: bool = False
    thresholds: dict[str, float] = field(default_factory=dict)


def thresholds() -> dict[str, float]:
    return {
        "input_wait_share": INPUT_WAIT_SHARE,
        "device_busy_pct": DEVICE_BUSY_PCT,
        "cpu_busy_share": CPU_BUSY_SHARE,
    }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def verdict(
    data_wait_share: float | None,
    device_utilization_pct: float | None,
    host_cpu_percent: float | None,
    cores: int | None,
    *,
    on_gpu: bool,
) -> Bottleneck:
    """The verdict from the timed phase's figures (see the module's rules)."""
    share = (
        host_cpu_percent / 100.0 / cores
        if host_cpu_percent is not None and cores and cores > 0
        else None
    )
    found = Bottleneck(
        data_wait_share=data_wait_share,
        device_utilization_pct=device_utilization_pct,
        host_cpu_share=share,
        host_cpu_percent=host_cpu_percent,
        cores=cores,
        on_gpu=on_gpu,
        thresholds=thresholds(),
    )
    wait = _pct(data_wait_share)
    cpu = f"host CPU {_pct(share)} of {cores or '?'} cores"
    if data_wait_share is not None and data_wait_share >= INPUT_WAIT_SHARE:
        found.verdict = "input-bound"
        found.reason = f"data wait {wait} of the timed phase >= {INPUT_WAIT_SHARE:.0%}; {cpu}"
    elif on_gpu:
        util = device_utilization_pct
        if util is None:
            found.reason = f"data wait {wait}; no GPU utilisation figure; {cpu}"
        else:
            found.verdict = "device-bound" if util >= DEVICE_BUSY_PCT else "host-bound"
            sign = ">=" if util >= DEVICE_BUSY_PCT else "<"
            found.reason = (
                f"data wait {wait}; GPU utilisation {util:.0f}% {sign} {DEVICE_BUSY_PCT:.0f}%"
                f"; {cpu}"
            )
    elif share is None:
        found.reason = f"data wait {wait}; no host CPU figure (no monitor)"
    else:
        busy = share >= CPU_BUSY_SHARE
        found.verdict = "device-bound" if busy else "host-bound"
        found.reason = (
            f"data wait {wait}; CPU run: {cpu} {'>=' if busy else '<'} {CPU_BUSY_SHARE:.0%}"
        )
    return found


def _mean(values: Sequence[float | None]) -> float | None:
    return stats.mean([v for v in values if v is not None])


def of_run(repeats: Sequence[Bottleneck]) -> Bottleneck | None:
    """A run's verdict: the rules applied to the mean figures of its (ok) repeats."""
    if not repeats:
        return None
    first = repeats[0]
    return verdict(
        _mean([b.data_wait_share for b in repeats]),
        _mean([b.device_utilization_pct for b in repeats]),
        _mean([b.host_cpu_percent for b in repeats]),
        first.cores,
        on_gpu=first.on_gpu,
    )


def text(found: Bottleneck) -> str:
    """``input-bound (data wait 42% of the timed phase >= 10%; ...)``."""
    return f"{found.verdict} ({found.reason})" if found.reason else found.verdict
