"""Glue between the orchestrator and the resource monitor (harness.monitor).

Per repeat: sample while the worker lives, write the power-log (``power.csv``), and
summarise over the worker's phases. A run trained in epochs has one timed window per
epoch (validation runs in between); their figures are merged here, weighted by time.
Per run: the headline figures (mean over repeats) the summary, the store and the
reports use: ``gpu_power_w``, ``gpu_memory_mib``, ``energy_j``, ``joules_per_image``,
``host_cpu_percent``, ``host_rss_mib``, ``framework_memory_mib``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from harness.cpu import thread_policy
from harness.monitor import Monitor, MonitorConfig, PhaseWindow, Recording, summarize, write_csv
from harness.monitor.contention import describe
from harness.monitor.nvml import nvml_module_name
from harness.monitor.summary import ENERGY_DISAGREEMENT_THRESHOLD
from harness.store.schema import RepeatRecord, Resources, ResourceTimed, Stat, from_dict


def _mean_of(phase: dict[str, Any] | None, key: str) -> float | None:
    value = (phase or {}).get(key)
    return value.get("mean") if isinstance(value, dict) else None


def _max_of(phase: dict[str, Any] | None, key: str) -> float | None:
    value = (phase or {}).get(key)
    return value.get("max") if isinstance(value, dict) else None


def _weighted(phases: list[dict[str, Any]], key: str) -> float | None:
    pairs = [(p.get("duration_s") or 0.0, _mean_of(p, key)) for p in phases]
    pairs = [(d, v) for d, v in pairs if v is not None and d > 0]
    total = sum(d for d, _ in pairs)
    return sum(d * v for d, v in pairs) / total if total else None


def _total(phases: list[dict[str, Any]], key: str) -> float | None:
    values = [p.get(key) for p in phases]
    return None if not values or any(v is None for v in values) else float(sum(values))


def _peak(phases: list[dict[str, Any]], key: str) -> float | None:
    values = [v for v in (_max_of(p, key) for p in phases) if v is not None]
    return max(values) if values else None


def _largest(phases: list[dict[str, Any]], key: str) -> float | None:
    values = [p[key] for p in phases if p.get(key) is not None]
    return max(values) if values else None


def _per_device(phases: list[dict[str, Any]], key: str) -> dict[str, float] | None:
    """Each GPU's ``key`` summed over the windows, by NVML index; None unless all known."""
    out: dict[str, float] = {}
    for phase in phases:
        for dev in phase.get("per_device") or []:
            if dev.get(key) is None:
                return None
            name = str(dev["index"])
            out[name] = out.get(name, 0.0) + dev[key]
    return out or None


def _energy(
    summary: dict[str, Any], gpu: list[dict[str, Any]], host: list[dict[str, Any]], images: int
) -> dict[str, Any]:
    """The ResourceTimed energy fields of the timed windows: total, above idle, per image,
    the GPUs' counter against their power integral, per device, or why there is none."""
    base = summary.get("baseline") or {}
    if gpu:
        energy, dynamic = _total(gpu, "energy_j"), _total(gpu, "energy_dynamic_j")
        idle = base.get("gpu_power_w_total")
    else:
        energy, dynamic = _total(host, "cpu_energy_j"), _total(host, "cpu_energy_dynamic_j")
        idle = base.get("cpu_power_w")
    reason = None
    if energy is None and gpu:
        reason = "too few GPU power or energy readings in the timed phase"
    elif energy is None:  # no GPU figures, no RAPL: both reasons
        why_gpu = (summary.get("gpu") or {}).get("reason")
        why_cpu = (summary.get("host") or {}).get("cpu_energy_reason")
        reasons = [f"GPU: {why_gpu}" if why_gpu and why_gpu != "no GPUs requested" else ""]
        reasons.append(f"CPU: {why_cpu or 'too few RAPL readings in the timed phase'}")
        reason = "; ".join(r for r in reasons if r)
    several = gpu and len(gpu[0].get("per_device") or []) > 1
    return {
        "energy_j": energy,
        "energy_from": "gpu" if gpu else ("cpu" if energy is not None else None),
        "joules_per_image": energy / images if energy is not None and images else None,
        "idle_power_w": idle,
        "idle_baseline_s": base.get("duration_s"),
        "energy_dynamic_j": dynamic,
        "joules_per_image_dynamic": dynamic / images if dynamic is not None and images else None,
        "energy_counter_j": _total(gpu, "energy_counter_j") if gpu else None,
        "energy_integral_j": _total(gpu, "energy_integral_j") if gpu else None,
        "energy_disagreement": _largest(gpu, "energy_disagreement"),
        "energy_disagreement_flagged": any(p.get("energy_disagreement_flagged") for p in gpu),
        "energy_per_device_j": _per_device(gpu, "energy_j") if several else None,
        "energy_dynamic_per_device_j": _per_device(gpu, "energy_dynamic_j") if several else None,
        "energy_reason": reason,
    }


class RunMonitor:
    """One monitor for all repeats of a run; the idle baseline is taken once, first."""

    def __init__(self, plan: Any) -> None:
        spec = plan.spec
        self.idle_s = spec.idle_baseline_s
        nvml = None
        if nvml_module_name() != "pynvml":
            nvml = importlib.import_module(nvml_module_name())
        policy = thread_policy(spec)  # the cores the run uses, for host contention
        self.monitor = Monitor(
            MonitorConfig(
                interval_s=spec.monitor_interval_s,
                gpu_indices=[g.index for g in plan.gpus],
                nvml_module=nvml,
                cores_used=min(policy.intra_op_total, policy.cores_available),
            )
        )
        self._baseline_taken = False

    def prepare(self) -> None:
        """Called before each worker starts."""
        if not self._baseline_taken and self.idle_s > 0:
            others = self.monitor.idle_baseline(self.idle_s).get("others")
            if others and others.get("contended"):  # warned before measuring
                print(f"warning: {busy_note(others)}", file=sys.stderr, flush=True)
        self._baseline_taken = True

    def start(self, root_pid: int) -> None:
        self.monitor.start(root_pid=root_pid)

    def stop(self) -> Recording:
        """The repeat's recording: the one copy of its samples, which summarize_repeat reads."""
        return self.monitor.stop()

    def summarize_repeat(
        self,
        recording: Recording,
        record: RepeatRecord,
        started: float,
        ended: float,
        folder: Path,
    ) -> Resources:
        """The summary of ``recording`` (what stop() returned) over the repeat's phases, plus
        ``timed`` merged over its epochs; the power-log is written from it too."""
        windows = [PhaseWindow("run", started, ended)]
        timed_names = []
        for name in ("setup", "warmup", "timed", "validation"):
            spans = record.windows.get(name) or []
            for index, (start, end) in enumerate(spans, 1):
                label = name if len(spans) == 1 else f"{name}.{index}"
                windows.append(PhaseWindow(label, start, end))
                if name == "timed":
                    timed_names.append(label)
        images = {"run": record.timed.images + record.warmup.steps * record.global_batch}
        per_step = record.global_batch
        steps_left = record.timed.steps
        plan = record.plan or {}
        for label in timed_names:  # images per timed window: whole epochs, or all steps
            count = plan.get("steps_per_epoch") if len(timed_names) > 1 else steps_left
            images[label] = (count or 0) * per_step
        write_csv(recording, folder / "power.csv", windows)
        summary = summarize(recording, windows=windows, images=images)
        resources = from_dict(Resources, summary)
        resources.timed = self._merge_timed(summary, timed_names, record.timed.images)
        return resources

    @staticmethod
    def _merge_timed(summary: dict[str, Any], names: list[str], images: int) -> ResourceTimed:
        gpu = [summary.get("gpu", {}).get("phases", {}).get(n) for n in names]
        host = [summary.get("host", {}).get("phases", {}).get(n) for n in names]
        gpu = [p for p in gpu if p]
        host = [p for p in host if p]
        return ResourceTimed(
            windows=len(names),
            gpu_power_w=_weighted(gpu, "power_w"),
            gpu_power_max_w=_peak(gpu, "power_w"),
            gpu_memory_mib=_weighted(gpu, "memory_used_mib"),
            gpu_memory_max_mib=_peak(gpu, "memory_used_mib"),
            gpu_process_memory_max_mib=_peak(gpu, "process_memory_mib"),
            gpu_utilization_pct=_weighted(gpu, "utilization_pct"),
            throttled=any(p.get("throttled") for p in gpu),
            host_cpu_percent=_weighted(host, "cpu_percent"),
            **_energy(summary, gpu, host, images),
        )

    def aggregate(self, repeats: list[RepeatRecord]) -> dict[str, Any]:
        """Per-run figures (RunSummary fields): statistics over the repeats that finished ok."""
        ok = [r for r in repeats if r.ok and r.resources is not None]

        def over(get: Any) -> Stat:
            return Stat.of([v for v in (get(r) for r in ok) if v is not None])

        def timed(key: str) -> Any:
            return lambda r: getattr(r.resources.timed, key) if r.resources.timed else None

        def framework_mib(r: RepeatRecord) -> float | None:
            peak = (r.framework_memory or {}).get("peak_bytes")
            return peak / 2**20 if peak is not None else None

        def rss_peak(r: RepeatRecord) -> float | None:
            return _max_of(r.resources.host.get("phases", {}).get("run"), "rss_mib")

        out = {
            "gpu_power_w": over(timed("gpu_power_w")),
            "gpu_memory_mib": over(timed("gpu_memory_mib")),
            "energy_j": over(timed("energy_j")),
            "joules_per_image": over(timed("joules_per_image")),
            # one baseline per run, before the first repeat: its value once, not n times
            "idle_power_w": Stat.of(
                list(dict.fromkeys(v for r in ok if (v := timed("idle_power_w")(r)) is not None))
            ),
            "energy_dynamic_j": over(timed("energy_dynamic_j")),
            "joules_per_image_dynamic": over(timed("joules_per_image_dynamic")),
            "energy_disagreement": over(timed("energy_disagreement")),
            "host_cpu_percent": over(timed("host_cpu_percent")),
            "host_rss_mib": over(rss_peak),
            "framework_memory_mib": over(framework_mib),
        }
        out["resource_notes"] = self._notes(ok or repeats)
        return out

    @staticmethod
    def _notes(repeats: list[RepeatRecord]) -> list[str]:
        notes: list[str] = []
        for r in repeats:
            res = r.resources or Resources()
            gpu, host = res.gpu, res.host
            if gpu and not gpu.get("available") and gpu.get("reason"):
                notes.append(f"GPU figures: none ({gpu['reason']})")
            if host and not host.get("cpu_energy_available") and host.get("cpu_energy_reason"):
                notes.append(f"CPU energy: none ({host['cpu_energy_reason']})")
            if res.timed is not None and res.timed.throttled:
                notes.append(f"repeat {r.repeat}: GPU clocks were throttled (power/thermal)")
            if res.timed is not None:
                notes += energy_notes(r.repeat, res.timed)
            for other in gpu.get("contended") or []:
                notes.append(contention_note(other))
            if gpu.get("contention_reason"):
                notes.append(f"GPU contention: partly unchecked ({gpu['contention_reason']})")
            others = (res.baseline or {}).get("others")
            if others and others.get("contended"):
                notes.append(busy_note(others))
            for error in res.errors:
                notes.append(
                    f"monitor: {error.get('what')}: {error.get('error')} x{error.get('count')}"
                )
        return list(dict.fromkeys(notes))


def contention_note(other: dict[str, Any]) -> str:
    """``GPU contended by pid 123 (python) on GPU 0``: one other process on a run's GPU."""
    name = other.get("name") or "name unknown"
    return f"GPU contended by pid {other.get('pid')} ({name}) on GPU {other.get('gpu')}"


def energy_notes(repeat: int | None, timed: ResourceTimed) -> list[str]:
    """A repeat's energy caveats: counter and power integral apart, no dynamic energy."""
    notes = []
    if timed.energy_disagreement_flagged and timed.energy_disagreement is not None:
        notes.append(
            f"repeat {repeat}: GPU energy counter {timed.energy_counter_j or 0:,.1f} J and "
            f"power integral {timed.energy_integral_j or 0:,.1f} J differ by "
            f"{timed.energy_disagreement:.1%} (> {ENERGY_DISAGREEMENT_THRESHOLD:.0%})"
        )
    if timed.energy_j is not None and timed.energy_dynamic_j is None:
        notes.append("dynamic energy: none (no idle baseline: --idle-baseline 0, or no idle power)")
    return notes


def busy_note(others: dict[str, Any]) -> str:
    """The machine was busy during the idle baseline, before the first worker started."""
    return f"machine busy before measuring: {describe(others)}"


def host_contention_line(contention: dict[str, Any]) -> str:
    """``† CPU contended during warmup and timed: other processes took ...``."""
    phases = " and ".join(dict.fromkeys(p.split(".")[0] for p in contention.get("phases", [])))
    return f"† CPU contended during {phases or 'the run'}: {describe(contention)}"


def monitor_factory(plan: Any) -> RunMonitor:
    return RunMonitor(plan)
