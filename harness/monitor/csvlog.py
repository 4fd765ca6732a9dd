"""The power-log: one CSV row per sample."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

from .nvml import decode_throttle
from .samples import Sample

GPU_COLUMNS = (
    "power_w",
    "energy_mj",
    "mem_used_mib",
    "proc_mem_mib",
    "util_pct",
    "sm_mhz",
    "temp_c",
    "throttle",
)
HOST_COLUMNS = ("host_cpu_pct", "tree_cpu_pct", "tree_rss_mib", "tree_procs", "cpu_energy_uj")


def csv_columns(gpu_indices: Sequence[int]) -> list[str]:
    """Header of the power-log for these NVML indices."""
    cols = ["t", "t_rel"]
    for i in gpu_indices:
        cols += [f"gpu{i}_{c}" for c in GPU_COLUMNS]
    return [*cols, *HOST_COLUMNS, "phase"]


def _fmt(v: float | int | None, digits: int = 3) -> str:
    if v is None:
        return ""
    if isinstance(v, int):
        return str(v)
    return f"{v:.{digits}f}"


def _phase_at(t: float, windows: Sequence) -> str:
    """Name of the shortest window holding t (so "timed" wins over "run")."""
    best = None
    for w in windows:
        if w.start <= t <= w.end and (best is None or w.end - w.start < best.end - best.start):
            best = w
    return "" if best is None else best.name


def write_csv(
    samples: Sequence[Sample], path: str | os.PathLike[str], windows: Sequence | None = None
) -> None:
    """Write samples as CSV; empty cells where a value was not available.

    gpu{i}_energy_mj is the NVML energy counter minus its first reading (energy since the
    log began); gpu{i}_throttle is the reason names joined by "|" ("none" when clear).
    """
    rows = list(samples)
    indices = list(
        getattr(samples, "gpu_indices", None) or range(max((len(s.gpus) for s in rows), default=0))
    )
    t0 = getattr(samples, "start_t", None)
    if t0 is None:
        t0 = rows[0].t if rows else 0.0
    first_energy: list[float | None] = [None] * len(indices)
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(csv_columns(indices))
        for s in rows:
            line = [f"{s.t:.4f}", f"{s.t - t0:.4f}"]
            for d in range(len(indices)):
                g = s.gpus[d] if d < len(s.gpus) else None
                if g is None:
                    line += [""] * len(GPU_COLUMNS)
                    continue
                energy = None
                if g.energy_mj is not None:
                    if first_energy[d] is None:
                        first_energy[d] = g.energy_mj
                    energy = g.energy_mj - first_energy[d]
                throttle = (
                    "" if g.throttle is None else ("|".join(decode_throttle(g.throttle)) or "none")
                )
                line += [
                    _fmt(g.power_w),
                    _fmt(energy, 1),
                    _fmt(g.mem_used_mib, 1),
                    _fmt(g.proc_mem_mib, 1),
                    _fmt(g.util_pct, 1),
                    _fmt(g.sm_mhz, 0),
                    _fmt(g.temp_c, 1),
                    throttle,
                ]
            line += [
                _fmt(s.host_cpu_pct, 1),
                _fmt(s.tree_cpu_pct, 1),
                _fmt(s.tree_rss_mib, 1),
                _fmt(s.tree_procs),
                _fmt(s.cpu_energy_uj, 0),
                _phase_at(s.t, windows or ()),
            ]
            out.writerow(line)
