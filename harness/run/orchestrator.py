"""The orchestrator: turns a RunSpec into worker processes and a stored result.

It never imports a framework. For each repeat it writes a job file, starts the
worker through a launcher in the framework's interpreter, samples resources while
the worker lives, follows the worker's events, enforces the timeout, and records the
outcome, whatever it is, in ``<output>/<run-id>/`` and in the results store.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness import datasets, models
from harness.backend import BackendInfo
from harness.cpu import thread_policy
from harness.errors import UsageError
from harness.launchers import LaunchRequest
from harness.machine import environment, gpus
from harness.plugins import PluginManager, get_plugin_manager
from harness.results import configkey, flops
from harness.results.records import aggregate, repeat_record
from harness.results.store import ResultStore
from harness.run.events import EventTail
from harness.run.interpreters import Interpreter, find_interpreter
from harness.run.spec import RunSpec, resolve
from harness.run.worker import Job

_POLL_S = 0.2
_KILL_GRACE_S = 10.0
_LOG_TAIL_LINES = 20


@dataclass
class Plan:
    """Everything decided before the first worker starts.

    It carries what the orchestrator process makes once: the network (built and
    checked once, in :func:`plan_run`; the FLOPs are counted on it) and the plugin
    manager every later step uses."""

    spec: RunSpec
    backend: BackendInfo
    interpreter: Interpreter
    gpus: list[gpus.Gpu]
    processes: int  # worker processes per repeat
    local_devices: int  # data-parallel devices each process drives
    launcher: str
    env: dict[str, str] = field(default_factory=dict)  # variables set for the worker
    warnings: list[str] = field(default_factory=list)
    network: models.Network | None = None  # spec.model built for spec.dataset
    pm: PluginManager | None = None  # the plugin manager that planned the run

    def plugins(self) -> PluginManager:
        """The plan's plugin manager (the process-wide one for a plan made by hand)."""
        return self.pm if self.pm is not None else get_plugin_manager()

    def command(self, job_path: str) -> list[str]:
        launcher = self.plugins().launcher(self.launcher)
        return launcher.build(LaunchRequest(self.interpreter.python, job_path, self.processes))


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_run_id(spec: RunSpec) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    hardware = "cpu" if spec.num_gpus < 0 else f"{spec.num_gpus}gpu"
    return f"{stamp}-{spec.tool}-{spec.model}-{spec.dataset}-{hardware}-{secrets.token_hex(2)}"


def plan_run(spec: RunSpec, pm: PluginManager | None = None, *, check_gpus: bool = True) -> Plan:
    """Validate ``spec``, build its network, pick interpreter, GPUs and launcher.

    The one place the orchestrator process builds the network (the model's builder is
    the one check that it is defined for the dataset) and asks the plugins' refusal hook;
    the Plan carries the network and ``pm``. Raises UsageError."""
    pm = pm or get_plugin_manager()
    spec = resolve(spec, pm.backends)
    backend = pm.backend(spec.tool)
    info = datasets.DATASETS[spec.dataset]
    try:
        network = models.build(spec.model, info.image_shape, info.num_classes)
    except models.ModelError as exc:
        raise UsageError(f"cannot run {spec.model} on {spec.dataset}: {exc}") from None
    reason = pm.refusal(spec, backend, network)
    if reason:
        raise UsageError(f"{spec.tool} cannot run {spec.model} on {spec.dataset}: {reason}")
    interpreter = find_interpreter(backend, spec.python)
    warnings: list[str] = []
    selected: list[gpus.Gpu] = []
    if spec.num_gpus > 0:
        inventory = gpus.discover()
        try:
            selected = gpus.select(spec.num_gpus, spec.gpu, inventory)
        except Exception as exc:
            if check_gpus:
                raise
            warnings.append(str(exc))
            selected = [gpus.Gpu(i, "(not present)", "", 0) for i in range(spec.num_gpus)]
    devices = spec.devices
    launcher, processes, local = "local", 1, devices
    if devices > 1 and backend.multi_process_launcher:
        launcher, processes, local = backend.multi_process_launcher, devices, 1
    env = dict(backend.worker_env)
    if backend.run_env is not None:
        env.update(backend.run_env(spec))
    env.update(gpus.worker_env(selected))
    env["PYTHONUNBUFFERED"] = "1"
    # The CPU thread policy (harness.cpu): per-operator thread counts for OpenMP, MKL and
    # OpenBLAS; torchrun keeps them (it sets OMP_NUM_THREADS=1 only when it is unset).
    policy = thread_policy(spec)
    env.update(policy.env())
    if policy.intra_op_total != spec.threads:
        warnings.append(
            f"--threads {spec.threads} over {policy.devices} devices: "
            f"{policy.intra_op_per_device} per device, {policy.intra_op_total} in all"
        )
    if policy.intra_op_total > policy.cores_available:
        warnings.append(
            f"{policy.intra_op_total} intra-op threads on {policy.cores_available} cores "
            "available: threads will share cores"
        )
    pm.launcher(launcher)  # fails early if the plugin that provides it is missing
    return Plan(
        spec,
        backend,
        interpreter,
        selected,
        processes,
        local,
        launcher,
        env,
        warnings,
        network=network,
        pm=pm,
    )


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """Ends the worker's whole process group: SIGTERM, then SIGKILL after a grace."""
    for sig, wait in ((signal.SIGTERM, _KILL_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def _exit_cause(code: int, log: Path) -> str:
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else -code
        hint = " (SIGKILL: possibly the kernel's out-of-memory killer)" if code == -9 else ""
        what = f"the worker was killed by signal {name}{hint}"
    else:
        what = f"the worker exited with code {code} without reporting a result"
    tail = _log_tail(log, 5)
    return f"{what}; last output:\n{tail}" if tail else what


EventCallback = Callable[[dict[str, Any]], None]


def _wait(
    proc: subprocess.Popen[bytes],
    timeout_s: float | None,
    started: float,
    tail: EventTail,
    on_event: EventCallback | None,
    events: list[dict[str, Any]],
) -> tuple[int | None, str, str | None]:
    """Waits for the worker, collecting its events into ``events`` and forwarding them:
    (exit code, status, cause)."""
    try:
        while True:
            try:
                return proc.wait(timeout=_POLL_S), "ok", None
            except subprocess.TimeoutExpired:
                pass
            _take(tail.poll(), events, on_event)
            if timeout_s and time.monotonic() - started > timeout_s:
                _kill_tree(proc)
                return proc.returncode, "timeout", f"exceeded the {timeout_s:g} s timeout"
    except KeyboardInterrupt:
        _kill_tree(proc)
        return proc.returncode, "interrupted", "interrupted by the user (Ctrl-C)"


def _take(
    new: list[dict[str, Any]], events: list[dict[str, Any]], on_event: EventCallback | None
) -> None:
    events.extend(new)
    if on_event:
        for event in new:
            on_event(event)


def run_repeat(
    plan: Plan,
    run_dir: Path,
    run_id: str,
    repeat: int,
    *,
    on_event: EventCallback | None = None,
    monitor: Any = None,
) -> dict[str, Any]:
    """Runs one worker process to its end and returns its repeat record."""
    spec = plan.spec
    rep_dir = run_dir / f"repeat-{repeat}"
    rep_dir.mkdir(parents=True, exist_ok=True)
    events_path = rep_dir / "events.jsonl"
    job = Job(
        spec=spec,
        local_devices=plan.local_devices,
        events=str(events_path.resolve()),
        repeat=repeat,
    )
    job_path = rep_dir / "job.json"
    job_path.write_text(json.dumps(job.to_dict(), indent=2))
    command = plan.command(str(job_path.resolve()))
    (rep_dir / "command.txt").write_text(" ".join(command) + "\n")
    log_path = rep_dir / "worker.log"
    env = {**os.environ, **plan.env, "HARNESS_RUN_ID": run_id}

    if monitor is not None:
        monitor.prepare()  # the idle baseline, before the first worker exists
    started_wall, started = utc_now(), time.monotonic()
    tail = EventTail(events_path)  # the one reading of the events: live, then final
    events: list[dict[str, Any]] = []
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        if monitor is not None:
            monitor.start(root_pid=proc.pid)
        try:
            exit_code, status, cause = _wait(proc, spec.timeout_s, started, tail, on_event, events)
        finally:
            recording = monitor.stop() if monitor is not None else None
    ended = time.monotonic()
    _take(tail.poll(final=True), events, on_event)  # the worker has ended: the rest
    if status == "ok" and exit_code != 0:
        status, cause = "crashed", _exit_cause(exit_code or 0, log_path)
    elif status == "ok" and not any(e["event"] == "end" for e in events):
        status, cause = "crashed", "the worker exited without finishing its benchmark"
    record = repeat_record(events, status=status, cause=cause, global_batch=spec.global_batch)
    record.update(
        run_id=run_id,
        repeat=repeat,
        started_at=started_wall,
        exit_code=exit_code,
        process_wall_s=ended - started,
        command=command,
    )
    if monitor is not None and recording is not None:
        try:
            record["resources"] = monitor.summarize_repeat(
                recording, record, started, ended, rep_dir
            )
        except Exception as exc:  # a monitor fault must not lose the repeat
            record["resources"] = {"errors": [{"what": "summary", "error": repr(exc), "count": 1}]}
    (rep_dir / "record.json").write_text(json.dumps(record, indent=2, default=str))
    return record


@dataclass
class RunOutcome:
    run_id: str
    run_dir: Path
    result: dict[str, Any]


def execute(
    plan: Plan,
    *,
    pm: PluginManager | None = None,
    on_event: EventCallback | None = None,
    on_repeat: Callable[[int, dict[str, Any]], None] | None = None,
    monitor_factory: Callable[[Plan], Any] | None = None,
    sweep_id: str | None = None,
) -> RunOutcome:
    """Runs every repeat of ``plan`` and stores the result.

    ``pm``: the plugin manager whose observer hooks see the run; the plan's by default."""
    pm = pm or plan.plugins()
    spec = plan.spec
    run_id = new_run_id(spec)
    output = Path(spec.output_dir)
    run_dir = output / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    store = ResultStore(output / "results.sqlite")
    env_info = environment.collect()
    env_info["gpus"] = [g.to_dict() for g in plan.gpus]
    env_info["interpreter"] = dataclasses.asdict(plan.interpreter)
    result: dict[str, Any] = {
        "run_id": run_id,
        "started_at": utc_now(),
        "spec": spec.to_dict(),
        "hardware": spec.hardware,
        "gpu_name": plan.gpus[0].name if plan.gpus else None,
        "global_batch": spec.global_batch,
        "launcher": plan.launcher,
        "processes": plan.processes,
        "environment": env_info,
        "sweep_id": sweep_id,
    }
    (run_dir / "run.json").write_text(json.dumps(result, indent=2, default=str))
    pm.run_started(spec, run_dir)
    monitor = monitor_factory(plan) if monitor_factory else None
    repeats: list[dict[str, Any]] = []
    interrupted = False
    for repeat in range(1, spec.repeats + 1):
        record = run_repeat(plan, run_dir, run_id, repeat, on_event=on_event, monitor=monitor)
        repeats.append(record)
        store.add_repeat(run_id, repeat, record)
        pm.repeat_finished(spec, record)
        if on_repeat:
            on_repeat(repeat, record)
        if record["status"] == "interrupted":
            interrupted = True
            break
    result["finished_at"] = utc_now()
    result["repeats"] = repeats
    first_ok = next((r for r in repeats if r["status"] == "ok"), repeats[0] if repeats else {})
    result["framework"] = first_ok.get("framework")
    result["synthetic"] = (first_ok.get("data") or {}).get("synthetic")
    result["data"] = first_ok.get("data")
    result["summary"] = aggregate(repeats)
    if monitor is not None:
        result["summary"].update(monitor.aggregate(repeats))
    try:
        result["summary"]["flops"] = flops.for_result(result, network=plan.network)
    except Exception as exc:  # a FLOPs or peak fault must not lose the run
        result["summary"]["flops"] = {"error": repr(exc)}
    result["config"] = configkey.build_config(result)
    result["config_key"] = configkey.key_of(result["config"])
    (run_dir / "result.json").write_text(json.dumps(result, indent=2, default=str))
    store.add_run(result)
    pm.run_finished(spec, result)
    if interrupted:
        raise KeyboardInterrupt
    return RunOutcome(run_id, run_dir, result)
