"""Runs an operation suite: one fresh worker process per kernel set, results stored.

For each set (the kernels of one kind) the runner writes ``job.json`` under
``<output-dir>/ops/<ops_id>/<kind>/``, starts ``python -m harness.ops.worker`` in the
framework's interpreter (harness.run.interpreters) with the backend's environment and
the CPU thread policy, reads the worker's lines as they come, and turns them into
:class:`OpResult` records with TFLOP/s (or GB/s) and the percentage of the device's
peak (harness.store.flops.device_peak: the GPU's published peak, or the CPU's peak
measured by ``python -m harness peak``). The run is stored as one
:class:`OpsResult` in ``<output-dir>/results.sqlite``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.cpu import policy_for
from harness.errors import UsageError
from harness.machine import environment, gpus, peak
from harness.monitor import Monitor, MonitorConfig, PhaseWindow, summarize, write_csv
from harness.monitor.nvml import nvml_module_name
from harness.ops import suite as suites
from harness.ops.suite import Kernel
from harness.plugins import get_plugin_manager
from harness.run import lifeline
from harness.run.interpreters import find_interpreter
from harness.spec import RunSpec
from harness.store.flops import device_peak
from harness.store.schema import OpResult, OpSet, OpsResult, Stat
from harness.store.store import ResultStore

ALLREDUCE_NEEDS = "needs two devices or more: --cpu-devices N or --num-gpus N"


@dataclass
class OpsSpec:
    tool: str
    suite: str = "deepbench"
    ops: str | None = None
    precision: str = "fp32"
    num_gpus: int = -1
    cpu_devices: int = 1
    scale: float = 1.0
    min_time_s: float = 1.0
    max_time_s: float = 5.0
    timeout_s: float = 1800.0
    output_dir: str = "logs"
    check: bool = True
    python: str | None = None
    threads: int | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def devices(self) -> int:
        return self.num_gpus if self.num_gpus > 0 else self.cpu_devices


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def plan_kernels(spec: OpsSpec) -> tuple[suites.Suite, list[tuple[str, list[Kernel]]]]:
    suite = suites.load(spec.suite)
    if spec.scale <= 0:
        raise UsageError(f"--scale must be positive, got {spec.scale}")
    kernels = [suites.scaled(k, spec.scale) for k in suites.select(suite.kernels, spec.ops)]
    return suite, suites.sets(kernels)


def _peak(spec: OpsSpec, gpu_names: list[str]) -> tuple[float | None, str]:
    try:
        cpu_peak = None
        if spec.num_gpus <= 0:  # the framework's own GEMM peak when measured, else NumPy's
            cpu_peak = peak.cpu_peak(spec.tool, spec.precision)
            if cpu_peak[0] is None:
                cpu_peak = None
        return device_peak(
            num_gpus=1 if spec.num_gpus > 0 else 0,
            cpu_devices=1,
            gpu_names=gpu_names[:1],
            precision=spec.precision,
            cpu_peak=cpu_peak,
        )
    except Exception as exc:  # no NumPy, unreadable cache: no percentage, said why
        return None, f"no peak: {exc}"


def op_result(
    line: dict[str, Any], spec: OpsSpec, peak: tuple[float | None, str], devices: int
) -> OpResult:
    """The record of one worker line (harness.ops.worker.run_kernel)."""
    kernel = Kernel.from_dict(line["kernel"])
    result = OpResult(
        kernel=kernel.kind,
        name=kernel.name,
        shape=dict(kernel.shape),
        precision=spec.precision,
        direction=kernel.direction,
        status=line.get("status", "failed"),
        reason=line.get("reason"),
        flops=suites.flops(kernel),
        detail=dict(line.get("detail") or {}),
        wall_s=line.get("wall_s"),
    )
    if result.status != "ok":
        return result
    result.calls = int(line["calls"])
    result.time_us = Stat.of(list(line["per_call_us"]))
    result.warmup_end, result.length = line.get("warmup_end"), line.get("length")
    result.max_error = line.get("max_error")
    per_call = line["seconds"] / line["calls"] if line["calls"] else None
    if not per_call:
        return result
    if result.flops is not None:
        result.tflops = result.flops / per_call / 1e12
        value, source = peak
        result.peak_source = source
        if value:
            result.peak_tflops = value / 1e12
            result.percent_of_peak = 100.0 * result.tflops / result.peak_tflops
    if kernel.kind == "allreduce":
        result.bytes = float(suites.allreduce_bytes(kernel, spec.precision))
        result.gb_per_s = result.bytes / per_call / 1e9
        result.bus_gb_per_s = result.gb_per_s * suites.bus_factor(devices)
    return result


def _environment(
    spec: OpsSpec, backend: Any, devices: int, gpu_env: dict[str, str]
) -> dict[str, str]:
    env = dict(backend.worker_env)
    run = RunSpec(
        spec.tool,
        "lenet",
        "mnist",
        num_gpus=spec.num_gpus,
        cpu_devices=devices if spec.num_gpus <= 0 else 1,
        threads=spec.threads,
    )
    if backend.run_env is not None:
        env.update(backend.run_env(run))
    env.update(gpu_env)
    env.update(policy_for(spec.threads, devices if spec.num_gpus <= 0 else 1).env())
    env["PYTHONUNBUFFERED"] = "1"
    env.update(spec.extra_env)
    return env


def _run_set(
    kind: str,
    kernels: list[Kernel],
    spec: OpsSpec,
    python: str,
    env: dict[str, str],
    folder: Path,
    devices: int,
    on_line: Callable[[dict[str, Any]], None],
    gpu_indices: list[int] | None = None,
    *,
    module: str,
) -> tuple[list[dict[str, Any]], str | None, float, dict[str, Any] | None]:
    """Runs one worker; returns its lines, the cause if it failed, its wall seconds and
    the resource monitor's summary of it (harness.monitor, as a training run's)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "ops.jsonl"
    out.unlink(missing_ok=True)
    job = {
        "tool": spec.tool,
        "module": module,
        "kind": kind,
        "kernels": [k.to_dict() for k in kernels],
        "precision": spec.precision,
        "device": "gpu" if spec.num_gpus > 0 else "cpu",
        "devices": devices,
        "min_time": spec.min_time_s,
        "max_time": spec.max_time_s,
        "check": spec.check,
        "out": str(out.resolve()),
    }
    job_path = folder / "job.json"
    job_path.write_text(json.dumps(job, indent=2))
    command = [python, "-m", "harness.ops.worker", str(job_path.resolve())]
    full_env = {**os.environ, **env, **lifeline.orchestrator_env(spec.output_dir)}
    lines: list[dict[str, Any]] = []
    read = 0
    started = time.monotonic()
    cause = None

    def poll() -> None:
        nonlocal read
        if not out.exists():
            return
        with out.open(encoding="utf-8") as handle:
            handle.seek(read)
            while True:
                text = handle.readline()
                if not text.endswith("\n"):
                    break
                read = handle.tell()
                line = json.loads(text)
                lines.append(line)
                on_line(line)

    with (folder / "worker.log").open("wb") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
        )
        monitor = _start_monitor(proc.pid, gpu_indices or [])
        try:
            while proc.poll() is None:
                poll()
                if time.monotonic() - started > spec.timeout_s:
                    os.killpg(proc.pid, 9)
                    proc.wait()
                    cause = f"timed out after {spec.timeout_s:g} s"
                    break
                time.sleep(0.1)
        except BaseException:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
            raise
    ended = time.monotonic()
    resources = _stop_monitor(monitor, started, ended, folder)
    poll()
    wall = ended - started
    if cause is None and proc.returncode != 0:
        tail = (folder / "worker.log").read_text(errors="replace").strip().splitlines()[-3:]
        cause = f"the worker exited with code {proc.returncode}: " + " | ".join(tail)[-400:]
    elif cause is None and not any(line.get("event") == "end" for line in lines):
        cause = "the worker ended before its last kernel"
    return lines, cause, wall, resources


def _start_monitor(pid: int, gpu_indices: list[int]) -> Any:
    """The resource monitor sampling the worker's process tree (None if it cannot)."""
    try:
        nvml = None
        if nvml_module_name() != "pynvml":
            nvml = importlib.import_module(nvml_module_name())
        monitor = Monitor(MonitorConfig(interval_s=0.1, gpu_indices=gpu_indices, nvml_module=nvml))
        monitor.start(root_pid=pid)
        return monitor
    except Exception:  # no monitor: the figures stay, the resources are empty
        return None


def _stop_monitor(
    monitor: Any, started: float, ended: float, folder: Path
) -> dict[str, Any] | None:
    if monitor is None:
        return None
    try:
        recording = monitor.stop()
        windows = [PhaseWindow("set", started, ended)]
        write_csv(recording, folder / "power.csv", windows)
        return summarize(recording, windows=windows)
    except Exception as exc:  # a monitor fault must not lose the set
        return {"errors": [{"what": "summary", "error": repr(exc)}]}


def ops_module(backend: Any, pm: Any) -> str:
    """The import name of the backend's kernels (the harness_ops_kernels hook; UsageError
    if it has none)."""
    module = pm.ops_kernels(backend)
    if module is None:
        have = ", ".join(pm.backends_with("harness_ops_kernels")) or "none installed"
        raise UsageError(f"tool {backend.name!r} has no operation kernels; tools with them: {have}")
    return module


def new_ops_id(spec: OpsSpec) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"ops-{stamp}-{spec.tool}-{os.getpid()}"


def execute(
    spec: OpsSpec,
    *,
    on_line: Callable[[str, OpResult], None] | None = None,
    on_set: Callable[[OpSet], None] | None = None,
    pm: Any = None,
) -> OpsResult:
    """Runs ``spec``; stores and returns the result (UsageError before any work)."""
    if spec.precision not in ("fp32", "fp16", "bf16"):
        raise UsageError(f"--precision must be fp32, fp16 or bf16, not {spec.precision!r}")
    if spec.cpu_devices < 1:
        raise UsageError("--cpu-devices must be at least 1")
    if spec.min_time_s <= 0 or spec.max_time_s < spec.min_time_s:
        raise UsageError("--min-time must be positive and at most --max-time")
    pm = pm or get_plugin_manager()
    backend = pm.backend(spec.tool)
    module = ops_module(backend, pm)
    suite, groups = plan_kernels(spec)
    interpreter = find_interpreter(backend, spec.python)
    selected: list[Any] = []
    if spec.num_gpus > 0:
        selected = gpus.select(spec.num_gpus, None, gpus.discover())
    devices = spec.devices
    gpu_names = [g.name for g in selected]
    peak = _peak(spec, gpu_names)
    ops_id = new_ops_id(spec)
    run_dir = Path(spec.output_dir) / "ops" / ops_id
    result = OpsResult(
        ops_id=ops_id,
        started_at=utc_now(),
        tool=spec.tool,
        suite=suite.name,
        scale=spec.scale,
        precision=spec.precision,
        hardware=f"{len(selected)}x{gpu_names[0]}" if selected else "cpu",
        devices=devices,
        gpu_name=gpu_names[0] if gpu_names else None,
        min_time_s=spec.min_time_s,
        max_time_s=spec.max_time_s,
        environment=environment.collect(gpu_indices=[g.index for g in selected]),
    )
    result.environment["interpreter"] = {"python": interpreter.python, "source": interpreter.source}
    for kind, kernels in groups:
        op_set = OpSet(kind=kind)
        set_devices = devices if kind == "allreduce" else 1
        if kind == "allreduce" and devices < 2:
            op_set.ops = [
                OpResult(
                    kernel=k.kind,
                    name=k.name,
                    shape=dict(k.shape),
                    precision=spec.precision,
                    status="skipped",
                    reason=f"skipped: all-reduce {ALLREDUCE_NEEDS}",
                )
                for k in kernels
            ]
            result.sets.append(op_set)
            if on_set:
                on_set(op_set)
            continue
        gpu_env = gpus.worker_env(selected if kind == "allreduce" else selected[:1])
        env = _environment(spec, backend, set_devices, gpu_env)

        def seen(line: dict[str, Any], kind: str = kind, set_devices: int = set_devices) -> None:
            if line.get("event") == "framework" and result.framework is None:
                result.framework = line.get("framework")
            elif line.get("event") == "op" and on_line:
                on_line(kind, op_result(line, spec, peak, set_devices))

        lines, cause, wall, resources = _run_set(
            kind,
            kernels,
            spec,
            interpreter.python,
            env,
            run_dir / kind,
            set_devices,
            seen,
            [g.index for g in selected],
            module=module,
        )
        op_set.resources = resources
        op_set.ops = [
            op_result(x, spec, peak, set_devices) for x in lines if x.get("event") == "op"
        ]
        done = {(o.name, o.direction) for o in op_set.ops}
        for k in kernels:
            if (k.name, k.direction) not in done:
                op_set.ops.append(
                    OpResult(
                        kernel=k.kind,
                        name=k.name,
                        shape=dict(k.shape),
                        precision=spec.precision,
                        direction=k.direction,
                        status="failed",
                        reason=cause or "not run",
                    )
                )
        op_set.wall_s = wall
        op_set.status, op_set.cause = ("failed", cause) if cause else ("ok", None)
        op_set.total_us = sum(o.time_us.mean or 0.0 for o in op_set.ops if o.status == "ok")
        result.sets.append(op_set)
        if on_set:
            on_set(op_set)
    result.finished_at = utc_now()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "result.json").write_text(result.to_json())
    ResultStore(Path(spec.output_dir) / "results.sqlite").add_ops(result)
    return result
