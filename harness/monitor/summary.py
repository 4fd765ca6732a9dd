"""Turn samples into per-phase averages, peaks and energy (a JSON-able dict)."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from .contention import summarize_load
from .nvml import decode_throttle, is_throttled
from .samples import GpuSample, Sample

Series = tuple[list[float], list[float]]

ENERGY_DISAGREEMENT_THRESHOLD = 0.05
"""Largest relative gap |integral - counter| / counter between a GPU's NVML energy
counter and the integral of its sampled power over a window before the window's energy
is flagged (a note in the summary and the report). The counter is the figure used; the
integral is a check on it: sampling at 10 Hz smears steps in power over one interval,
and recent GPUs report power averaged over about one second, so short windows with
bursty power can differ by a few percent without either being wrong; beyond 5%, one of
them is (a counter that lags or resets, a sampler that missed ticks)."""


@dataclass(frozen=True)
class PhaseWindow:
    """A named span [start, end] in time.monotonic() seconds (the samples' clock)."""

    name: str
    start: float
    end: float


# -- small numeric helpers ---------------------------------------------------
def _r(x: float | None) -> float | None:
    """Round to 6 significant digits for a tidy JSON; None stays None."""
    return None if x is None else float(f"{x:.6g}")


def _stats(values: Sequence[float]) -> dict[str, float | None] | None:
    if not values:
        return None
    return {"mean": _r(sum(values) / len(values)), "max": _r(max(values))}


def _series(rows: Sequence[Sample], get: Callable[[Sample], float | None]) -> Series:
    ts: list[float] = []
    vs: list[float] = []
    for s in rows:
        v = get(s)
        if v is not None:
            ts.append(s.t)
            vs.append(v)
    return ts, vs


def _interp(ts: list[float], vs: list[float], t: float) -> float:
    """Linear interpolation, clamped to the first and last point."""
    if t <= ts[0]:
        return vs[0]
    if t >= ts[-1]:
        return vs[-1]
    i = bisect_right(ts, t)
    t0, t1, v0, v1 = ts[i - 1], ts[i], vs[i - 1], vs[i]
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0) if t1 > t0 else v1


def _counter_delta(series: Series, a: float, b: float) -> float | None:
    """Growth of a cumulative counter over [a, b]; None if too few points or it went back."""
    ts, vs = series
    if len(ts) < 2 or b <= ts[0] or a >= ts[-1]:
        return None
    d = _interp(ts, vs, b) - _interp(ts, vs, a)
    return d if d >= 0 else None


def _integrate(series: Series, a: float, b: float) -> float | None:
    """Trapezoid integral of the piecewise-linear series over [a, b] (clipped to the data)."""
    ts, vs = series
    if len(ts) < 2 or b <= ts[0] or a >= ts[-1]:
        return None
    lo, hi = max(a, ts[0]), min(b, ts[-1])
    pts = [(lo, _interp(ts, vs, lo))]
    pts += [(t, v) for t, v in zip(ts, vs, strict=True) if lo < t < hi]
    pts.append((hi, _interp(ts, vs, hi)))
    return sum((t1 - t0) * (v0 + v1) / 2 for (t0, v0), (t1, v1) in pairwise(pts))


def _gpu_get(d: int, attr: str) -> Callable[[Sample], float | None]:
    def get(s: Sample) -> float | None:
        g: GpuSample | None = s.gpus[d] if d < len(s.gpus) else None
        return None if g is None else getattr(g, attr)

    return get


# -- per-phase parts -----------------------------------------------------------
def disagreement(counter_j: float | None, integral_j: float | None) -> float | None:
    """|integral - counter| / counter; None without both (or with a zero counter)."""
    if counter_j is None or integral_j is None or counter_j <= 0:
        return None
    return abs(integral_j - counter_j) / counter_j


def _dynamic(energy: float | None, idle_w: float | None, seconds: float) -> float | None:
    """Energy above idle: ``energy`` - idle power x ``seconds`` (None without either)."""
    return None if energy is None or idle_w is None else energy - idle_w * seconds


def _device_phase(
    d: int,
    index: int,
    rows: Sequence[Sample],
    inside: Sequence[Sample],
    w: PhaseWindow,
    idle_w: float | None = None,
    covered: float = 0.0,
) -> dict[str, Any]:
    def vals(attr: str) -> list[float]:
        get = _gpu_get(d, attr)
        return [v for v in map(get, inside) if v is not None]

    counter = _counter_delta(_series(rows, _gpu_get(d, "energy_mj")), w.start, w.end)
    counter_j = None if counter is None else counter / 1000.0
    integral_j = _integrate(_series(rows, _gpu_get(d, "power_w")), w.start, w.end)
    # the counter where the GPU has one, else the integral of sampled power
    energy = counter_j if counter_j is not None else integral_j
    source = (
        "nvml_counter"
        if counter_j is not None
        else ("integrated_power" if integral_j is not None else None)
    )
    gap = disagreement(counter_j, integral_j)
    mask = 0
    for m in vals("throttle"):
        mask |= int(m)
    reasons = decode_throttle(mask)
    return {
        "index": index,
        "power_w": _stats(vals("power_w")),
        "energy_j": _r(energy),
        "energy_source": source,
        "energy_counter_j": _r(counter_j),
        "energy_integral_j": _r(integral_j),
        "energy_disagreement": _r(gap),
        "energy_disagreement_flagged": gap is not None and gap > ENERGY_DISAGREEMENT_THRESHOLD,
        "idle_power_w": idle_w,
        "energy_dynamic_j": _r(_dynamic(energy, idle_w, covered)),
        "memory_used_mib": _stats(vals("mem_used_mib")),
        "process_memory_mib": _stats(vals("proc_mem_mib")),
        "utilization_pct": _stats(vals("util_pct")),
        "sm_clock_mhz": _stats(vals("sm_mhz")),
        "temperature_c": _stats(vals("temp_c")),
        "throttle_reasons": reasons,
        "throttled": is_throttled(reasons),
    }


def _per_sample_sum(inside: Sequence[Sample], n: int, attr: str, need_all: bool) -> list[float]:
    out = []
    for s in inside:
        vs = [getattr(g, attr) for g in s.gpus[:n]]
        known = [v for v in vs if v is not None]
        if known and (not need_all or len(known) == n):
            out.append(sum(known))
    return out


def _gpu_phase(
    rows: Sequence[Sample],
    inside: Sequence[Sample],
    w: PhaseWindow,
    indices: Sequence[int],
    foreign: bool,
    idle_w: dict[str, Any] | None = None,
    covered: float = 0.0,
) -> dict[str, Any]:
    n = len(indices)
    idle = idle_w or {}
    devs = [
        _device_phase(d, idx, rows, inside, w, idle.get(str(idx)), covered)
        for d, idx in enumerate(indices)
    ]
    sources = {dv["energy_source"] for dv in devs}

    def summed(key: str) -> float | None:
        values = [dv[key] for dv in devs]
        return None if not devs or None in values else sum(values)

    total = summed("energy_j")
    gaps = [dv["energy_disagreement"] for dv in devs if dv["energy_disagreement"] is not None]

    def pooled(attr: str) -> dict[str, float | None] | None:
        return _stats(
            [v for d in range(n) for v in map(_gpu_get(d, attr), inside) if v is not None]
        )

    proc = _stats(_per_sample_sum(inside, n, "proc_mem_mib", need_all=False))
    reasons = sorted({r for dv in devs for r in dv["throttle_reasons"]})
    out: dict[str, Any] = {
        "power_w": _stats(_per_sample_sum(inside, n, "power_w", need_all=True)),
        "energy_j": _r(total),
        "energy_source": (sources.pop() if len(sources) == 1 else "mixed")
        if total is not None
        else None,
        "energy_counter_j": _r(summed("energy_counter_j")),
        "energy_integral_j": _r(summed("energy_integral_j")),
        # the largest device's gap (opposite gaps on two GPUs must not cancel out)
        "energy_disagreement": max(gaps) if gaps else None,
        "energy_disagreement_flagged": any(dv["energy_disagreement_flagged"] for dv in devs),
        "energy_dynamic_j": _r(summed("energy_dynamic_j")),
        "memory_used_mib": _stats(_per_sample_sum(inside, n, "mem_used_mib", need_all=True)),
        "process_memory_mib": proc,
        "utilization_pct": pooled("util_pct"),
        "sm_clock_mhz": pooled("sm_mhz"),
        "temperature_c": pooled("temp_c"),
        "throttle_reasons": reasons,
        "throttled": is_throttled(reasons),
        "per_device": devs,
    }
    if proc is None:
        out["process_memory_reason"] = (
            "NVML listed compute processes but none of the tracked pids (another user's "
            "process, or a container PID namespace that hides host pids)"
            if foreign
            else "no tracked process was listed by NVML with a memory figure in this window"
        )
    return out


def _host_phase(
    rows: Sequence[Sample],
    inside: Sequence[Sample],
    w: PhaseWindow,
    energy_reason: str | None,
    idle_w: float | None = None,
    covered: float = 0.0,
) -> dict[str, Any]:
    def vals(attr: str) -> list[float]:
        return [v for v in (getattr(s, attr) for s in inside) if v is not None]

    uj = _counter_delta(_series(rows, lambda s: s.cpu_energy_uj), w.start, w.end)
    out: dict[str, Any] = {
        "cpu_percent": _stats(vals("tree_cpu_pct")),
        "system_cpu_percent": _stats(vals("host_cpu_pct")),
        "rss_mib": _stats(vals("tree_rss_mib")),
        "processes_max": max(vals("tree_procs"), default=None),
        "cpu_energy_j": _r(None if uj is None else uj / 1e6),
        "cpu_idle_power_w": idle_w,
        "cpu_energy_dynamic_j": _r(_dynamic(None if uj is None else uj / 1e6, idle_w, covered)),
    }
    if uj is None:
        out["cpu_energy_reason"] = energy_reason or "too few RAPL readings in this window"
    return out


def _window_rows(rows: Sequence[Sample], ts: list[float], w: PhaseWindow) -> Sequence[Sample]:
    return rows[bisect_left(ts, w.start) : bisect_right(ts, w.end)]


def _covered(ts: list[float], w: PhaseWindow) -> float:
    if not ts:
        return 0.0
    return max(0.0, min(w.end, ts[-1]) - max(w.start, ts[0]))


def _contended(meta: Any, windows: Sequence[PhaseWindow]) -> list[dict[str, Any]]:
    """Other processes seen on the run's GPUs, each with the windows it overlapped."""
    out = []
    for entry in getattr(meta, "contended", None) or []:
        first, last = entry.get("first_t"), entry.get("last_t")
        phases = [
            w.name
            for w in windows
            if first is not None and last is not None and first <= w.end and last >= w.start
        ]
        out.append({**entry, "phases": phases})
    return out


# -- public ---------------------------------------------------------------------
def summarize(
    samples: Sequence[Sample],
    windows: Sequence[PhaseWindow],
    images: dict[str, int] | None = None,
    baseline: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Averages, peaks and energy per window; see the package docstring for the schema.

    `samples` is what Monitor.stop() returns (a Recording, whose metadata is used) or a
    plain list of Sample. `images` maps a window name to the images processed in it.
    """
    rows = sorted(samples, key=lambda s: s.t)
    ts = [s.t for s in rows]
    meta = samples if hasattr(samples, "gpu_available") else None
    ngpu = max((len(s.gpus) for s in rows), default=0)
    indices = list(getattr(meta, "gpu_indices", None) or range(ngpu))
    available = bool(getattr(meta, "gpu_available", ngpu > 0)) and bool(indices)
    reason = getattr(meta, "gpu_reason", None if available else "no GPU readings")
    base = baseline if baseline is not None else getattr(meta, "baseline", None)
    images = images or {}

    gpu_phases: dict[str, Any] = {}
    host_phases: dict[str, Any] = {}
    phases: dict[str, Any] = {}
    for w in windows:
        inside = _window_rows(rows, ts, w)
        covered = _covered(ts, w)
        head = {
            "start": w.start,
            "end": w.end,
            "duration_s": _r(w.end - w.start),
            "covered_s": _r(covered),
            "samples": len(inside),
        }
        if not inside:
            head["note"] = "no samples in this window"
        cpu_reason = getattr(meta, "cpu_energy_reason", None)
        cpu_idle = (base or {}).get("cpu_power_w")
        host = {**head, **_host_phase(rows, inside, w, cpu_reason, cpu_idle, covered)}
        host_phases[w.name] = host
        n_img = images.get(w.name)
        energy, source = host["cpu_energy_j"], "cpu" if host["cpu_energy_j"] is not None else None
        dynamic, idle_total = host["cpu_energy_dynamic_j"], host["cpu_idle_power_w"]
        if available:
            foreign = bool(getattr(meta, "foreign_gpu_processes", False))
            idle_gpus = (base or {}).get("gpu_power_w")
            gpu = {**head, **_gpu_phase(rows, inside, w, indices, foreign, idle_gpus, covered)}
            gpu["images"] = n_img
            gpu["joules_per_image"] = (
                _r(gpu["energy_j"] / n_img) if n_img and gpu["energy_j"] is not None else None
            )
            idle = (base or {}).get("gpu_power_w_total")
            if idle is not None and gpu["energy_j"] is not None:
                gpu["energy_above_baseline_j"] = _r(gpu["energy_j"] - idle * covered)
            gpu_phases[w.name] = gpu
            energy, source = gpu["energy_j"], "gpu"
            dynamic, idle_total = gpu["energy_dynamic_j"], idle
        host["cpu_joules_per_image"] = (
            _r(host["cpu_energy_j"] / n_img) if n_img and host["cpu_energy_j"] is not None else None
        )
        phases[w.name] = {
            "start": w.start,
            "end": w.end,
            "samples": len(inside),
            "images": n_img,
            "energy_j": energy,
            "energy_from": source,
            "joules_per_image": _r(energy / n_img) if n_img and energy is not None else None,
            # above idle: energy - the idle baseline's power x the time covered
            "idle_power_w": idle_total,
            "energy_dynamic_j": dynamic,
            "joules_per_image_dynamic": _r(dynamic / n_img)
            if n_img and dynamic is not None
            else None,
        }

    return {
        "interval_s": getattr(meta, "interval_s", None),
        "phases": phases,
        "gpu": {
            "available": available,
            "reason": None if available else reason,
            "indices": indices if available else [],
            "driver_version": getattr(meta, "driver_version", None),
            "devices": list(getattr(meta, "devices", [])),
            "unsupported_metrics": list(getattr(meta, "unsupported", [])),
            "throttled": any(p["throttled"] for p in gpu_phases.values()),
            # other processes on the run's GPUs: [{gpu, pid, name, kind, memory_mib,
            # samples, first_t, last_t, phases}], empty when none was seen
            "contended": _contended(meta, windows),
            "contention_reason": getattr(meta, "contention_reason", None),
            "phases": gpu_phases,
        },
        "host": {
            "cpu_energy_available": any(s.cpu_energy_uj is not None for s in rows),
            "cpu_energy_reason": getattr(meta, "cpu_energy_reason", None),
            # other processes' CPU time and VM steal over warmup and timed (None: no
            # readings); harness.monitor.contention
            "contention": summarize_load(
                getattr(meta, "host_load", []),
                windows,
                len(getattr(meta, "cpu_cores", [])),
                getattr(meta, "cores_used", 0.0),
                list(getattr(meta, "others_top", [])),
            ),
            "phases": host_phases,
        },
        "baseline": base,
        "errors": list(getattr(meta, "errors", [])),
        "sampler": dict(getattr(meta, "sampler", {})),
    }


def baseline_from(samples: Sequence[Sample]) -> dict[str, Any]:
    """Idle averages over all of `samples` (what Monitor.idle_baseline() returns)."""
    rows = list(samples)
    if not rows:
        return {"duration_s": 0.0, "samples": 0}
    w = PhaseWindow("baseline", rows[0].t, rows[-1].t)
    s = summarize(samples, [w])
    duration = w.end - w.start
    host = s["host"]["phases"]["baseline"]
    out: dict[str, Any] = {
        "duration_s": _r(duration),
        "samples": len(rows),
        "host_cpu_percent": (host["system_cpu_percent"] or {}).get("mean"),
        "cpu_power_w": _r(host["cpu_energy_j"] / duration)
        if host["cpu_energy_j"] is not None and duration > 0
        else None,
    }
    if out["cpu_power_w"] is None:
        out["cpu_power_reason"] = host.get("cpu_energy_reason")
    gpu = s["gpu"]["phases"].get("baseline")
    if gpu is None:
        out["gpu_power_w_total"] = None
        out["gpu_reason"] = s["gpu"]["reason"]
        return out

    def mean(d: dict[str, Any] | None) -> float | None:
        return None if d is None else d["mean"]

    out["gpu_power_w_total"] = mean(gpu["power_w"])
    for key, src in (
        ("gpu_power_w", "power_w"),
        ("gpu_memory_used_mib", "memory_used_mib"),
        ("gpu_utilization_pct", "utilization_pct"),
        ("gpu_temperature_c", "temperature_c"),
    ):
        out[key] = {str(dv["index"]): mean(dv[src]) for dv in gpu["per_device"]}
    return out
