"""The orchestrator: turns a RunSpec into worker processes and a stored result.

It never imports a framework. For each repeat it writes a job file, starts the
worker through a launcher in the framework's interpreter, samples resources while
the worker lives, follows the worker's events, enforces the timeout, and records the
outcome, whatever it is, in ``<output>/<run-id>/`` and in the results store.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness import datasets, models
from harness.backend import BackendInfo, check_options, compile_note
from harness.cpu import available_cores, thread_policy
from harness.errors import UsageError
from harness.launchers import LaunchRequest, free_port_block, pick_node_launcher
from harness.machine import environment, gpus, peak
from harness.monitor import contention
from harness.plugins import PluginManager, get_plugin_manager
from harness.run import autobatch, lifeline, recover, signals
from harness.run import repeats as repeat_budget
from harness.run.events import EventTail
from harness.run.inference import probe_onnx_file
from harness.run.interpreters import Interpreter, find_interpreter
from harness.run.spec import resolve
from harness.run.task import task_for
from harness.run.worker import Job
from harness.spec import RunSpec
from harness.store import bottleneck, configkey, flops
from harness.store.bottleneck import Bottleneck
from harness.store.records import aggregate, repeat_record
from harness.store.schema import Flops, RepeatRecord, Resources, RunResult
from harness.store.store import ResultStore
from harness.store.strictjson import dumps as strict_dumps

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
    processes: int  # worker processes per repeat (on each node)
    local_devices: int  # data-parallel devices each process drives
    launcher: str  # the launcher of the command (--nodes N: the one that starts the nodes)
    env: dict[str, str] = field(default_factory=dict)  # variables set for the worker
    warnings: list[str] = field(default_factory=list)
    network: models.Network | None = None  # spec.model built for spec.dataset
    pm: PluginManager | None = None  # the plugin manager that planned the run
    nodes: int = 1  # --nodes N
    node_launcher: str | None = None  # --nodes N: the launcher each node process uses

    def plugins(self) -> PluginManager:
        """The plan's plugin manager (the process-wide one for a plan made by hand)."""
        return self.pm if self.pm is not None else get_plugin_manager()

    def command(self, job_path: str) -> list[str]:
        launcher = self.plugins().launcher(self.launcher)
        if self.nodes == 1:
            return launcher.build(LaunchRequest(self.interpreter.python, job_path, self.processes))
        # a fresh rendezvous port (and the workers' ports after it) for every start; the
        # host: this one for local-nodes, else node 0's, found by the node processes
        port = free_port_block(self.nodes * self.processes + 1)
        host = "127.0.0.1" if self.launcher == "local-nodes" else ""
        request = LaunchRequest(
            self.interpreter.python,
            job_path,
            self.processes,
            nodes=self.nodes,
            rendezvous=f"{host}:{port}",
            node_launcher=self.node_launcher or "local",
            run_id=f"{os.getpid()}-{secrets.token_hex(4)}",
        )
        return launcher.build(request)


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
    check_options(backend, spec.options)  # -o against the backend's declared options
    network = None  # an --onnx-file run has no catalogue network
    if not spec.onnx_file:
        info = datasets.resized_info(datasets.DATASETS[spec.dataset], spec.image_size)
        try:
            network = models.build(spec.model, info.image_shape, info.num_classes)
        except models.ModelError as exc:
            raise UsageError(f"cannot run {spec.model} on {spec.dataset}: {exc}") from None
        reason = pm.refusal(spec, backend, network)
        if reason:
            raise UsageError(f"{spec.tool} cannot run {spec.model} on {spec.dataset}: {reason}")
    task_for(spec.task).check_before_workers(spec)  # what a worker would find out late
    # --nodes N: how the nodes start, checked before looking for an interpreter
    nodes_plan = _plan_nodes(spec, backend, pm) if spec.nodes > 1 else None
    interpreter = find_interpreter(backend, spec.python)
    if spec.onnx_file:  # its input, read in the backend's interpreter (the core has no onnx)
        spec = probe_onnx_file(spec, interpreter.python)
    warnings: list[str] = [compile_note(backend)] if spec.compile else []
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
    node_launcher = None
    if nodes_plan is not None:
        launcher, node_launcher, processes = nodes_plan
        local = devices // processes
    elif spec.launcher:
        warnings.append(f"--launcher {spec.launcher} applies to --nodes N > 1 only; ignored")
    env = dict(backend.worker_env)
    if backend.run_env is not None:
        env.update(backend.run_env(spec))
    env.update(gpus.worker_env(selected))
    env["PYTHONUNBUFFERED"] = "1"
    # The CPU thread policy (harness.cpu): per-operator thread counts for OpenMP, MKL and
    # OpenBLAS; launchers keep them (e.g. one sets OMP_NUM_THREADS=1 only when it is unset).
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
        nodes=spec.nodes,
        node_launcher=node_launcher,
    )


def _plan_nodes(spec: RunSpec, backend: BackendInfo, pm: PluginManager) -> tuple[str, str, int]:
    """--nodes N: (the launcher that starts the nodes, the one each node uses, worker
    processes per node); UsageError (one line) when the run cannot span nodes."""
    if not task_for(spec.task).spans_nodes:
        raise UsageError(f"--nodes {spec.nodes} applies to training runs only")
    if not backend.node_launcher:
        why = backend.multi_node_refusal or "its backend declares no node launcher"
        raise UsageError(f"{spec.tool} cannot train on several nodes (--nodes): {why}")
    name = pick_node_launcher(spec.launcher, spec.nodes)
    spanning = pm.launcher(name)
    if not spanning.spans_nodes:
        names = ", ".join(sorted(n for n, item in pm.launchers.items() if item.spans_nodes))
        raise UsageError(f"--launcher {name} does not start nodes; choose from: {names}")
    if backend.node_processes is not None:
        processes = backend.node_processes(spec)
    else:
        processes = spec.devices if backend.multi_process_launcher else 1
    if processes < 1 or spec.devices % processes:
        raise ValueError(f"{spec.tool}: {processes} processes cannot share {spec.devices} devices")
    pm.launcher(backend.node_launcher)
    return name, backend.node_launcher, processes


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


def measured_before_exit(events: list[dict[str, Any]]) -> bool:
    """Whether every rank ended its benchmark ("end" ok, no "error") before the process
    died: its figures are complete, and a death after it (a process group that aborted
    at teardown, SIGABRT) is recorded as the repeat's cause without losing them."""
    starts = [e for e in events if e["event"] == "start"]
    if not starts or any(e["event"] == "error" for e in events):
        return False
    world = max(int(e.get("world_size") or 1) for e in starts)
    ended = {e.get("rank", 0) for e in events if e["event"] == "end" and e.get("status") == "ok"}
    return ended >= set(range(world))


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
        signals.check()  # a signal that arrived while the worker was being started
        while True:
            try:
                return proc.wait(timeout=_POLL_S), "ok", None
            except subprocess.TimeoutExpired:
                pass
            _take(tail.poll(), events, on_event)
            if timeout_s and time.monotonic() - started > timeout_s:
                _kill_tree(proc)
                return proc.returncode, "timeout", f"exceeded the {timeout_s:g} s timeout"
    except KeyboardInterrupt as exc:  # SIGINT, SIGTERM or SIGHUP (harness.run.signals)
        _kill_tree(proc)
        return proc.returncode, "interrupted", signals.cause(exc)


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
    folder: str | None = None,
    model_file: str | None = None,
    export: bool = False,
) -> RepeatRecord:
    """Runs one worker process to its end and returns its repeat record.

    Inference runs (harness.run.inference): ``model_file`` is the file the worker
    benchmarks, or writes with ``export``; ``folder`` names the process's folder in the
    run folder (default ``repeat-N``)."""
    spec = plan.spec
    rep_dir = run_dir / (folder or f"repeat-{repeat}")
    rep_dir.mkdir(parents=True, exist_ok=True)
    events_path = rep_dir / "events.jsonl"
    job = Job(
        spec=spec,
        local_devices=plan.local_devices,
        events=str(events_path.resolve()),
        repeat=repeat,
        model_file=model_file,
        export=export,
    )
    job_path = rep_dir / "job.json"
    job_path.write_text(strict_dumps(job.to_dict(), indent=2))
    command = plan.command(str(job_path.resolve()))
    (rep_dir / "command.txt").write_text(" ".join(command) + "\n")
    log_path = rep_dir / "worker.log"
    env = {**os.environ, **plan.env, "HARNESS_RUN_ID": run_id}
    env.update(lifeline.orchestrator_env(spec.output_dir))  # the worker dies with us

    if monitor is not None:
        monitor.prepare()  # the idle baseline, before the first worker exists
    started_wall, started = utc_now(), time.monotonic()
    tail = EventTail(events_path)  # the one reading of the events: live, then final
    events: list[dict[str, Any]] = []
    with log_path.open("wb") as log:
        with signals.hold():  # a signal now is handled once the worker is known (_wait)
            proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
            if monitor is not None:
                monitor.start(root_pid=proc.pid)
        try:
            exit_code, status, cause = _wait(proc, spec.timeout_s, started, tail, on_event, events)
        finally:
            recording = monitor.stop() if monitor is not None else None
    # The worker has ended: a signal now waits until its record is written and stored
    # (execute checks for it after storing), so a finished repeat is never lost.
    with signals.hold():
        ended = time.monotonic()
        _take(tail.poll(final=True), events, on_event)  # the worker has ended: the rest
        if status == "ok" and exit_code != 0 and measured_before_exit(events):
            cause = "teardown failed after every rank had written its figures (kept): "
            cause += _exit_cause(exit_code or 0, log_path)
        elif status == "ok" and exit_code != 0:
            status, cause = "crashed", _exit_cause(exit_code or 0, log_path)
        elif status == "ok" and not any(e["event"] == "end" for e in events):
            status, cause = "crashed", "the worker exited without finishing its benchmark"
        record = repeat_record(
            events, status=status, cause=cause, global_batch=spec.global_batch, started=started
        )
        if not export:
            task_for(spec.task).repeat_part(events, record)
        record.run_id, record.repeat, record.started_at = run_id, repeat, started_wall
        if plan.nodes > 1:  # each node process's "node" event: its rank and host
            found = {e["node_rank"]: e for e in events if e["event"] == "node"}
            record.nodes = [
                {"node_rank": rank, "host": e.get("host"), "pid": e.get("pid")}
                for rank, e in sorted(found.items())
            ]
        record.exit_code, record.process_wall_s, record.command = (
            exit_code,
            ended - started,
            command,
        )
        if monitor is not None and recording is not None:
            try:
                record.resources = monitor.summarize_repeat(
                    recording, record, started, ended, rep_dir
                )
            except Exception as exc:  # a monitor fault must not lose the repeat
                error = {"what": "summary", "error": repr(exc), "count": 1}
                record.resources = Resources(errors=[error])
        if task_for(spec.task).trains:
            record.bottleneck = repeat_bottleneck(record, on_gpu=spec.num_gpus > 0)
        # strict JSON: NaN and infinity are written as null
        (rep_dir / "record.json").write_text(record.to_json())
    return record


def repeat_bottleneck(record: RepeatRecord, *, on_gpu: bool) -> Bottleneck:
    """The repeat's verdict (harness.store.bottleneck) from its data wait and the
    monitor's timed figures, over the cores this machine lets the run use."""
    timed = record.resources.timed if record.resources is not None else None
    return bottleneck.verdict(
        record.data_wait_fraction,
        timed.gpu_utilization_pct if timed is not None else None,
        timed.host_cpu_percent if timed is not None else None,
        available_cores(),
        on_gpu=on_gpu,
    )


class _NoModelFile(Exception):
    """The run's once-per-run step failed (inference: its model file): no repeat can run."""


@dataclass
class RunOutcome:
    run_id: str
    run_dir: Path
    result: RunResult


def wait_quiet(plan: Plan) -> None:
    """``--require-quiet``: wait until other processes leave the run's cores (at most
    ``spec.require_quiet_s``), else UsageError (exit 2); harness.monitor.contention."""
    policy = thread_policy(plan.spec)
    contention.wait_quiet(
        plan.spec.require_quiet_s,
        cores_used=min(policy.intra_op_total, policy.cores_available),
        say=lambda line: print(line, file=sys.stderr, flush=True),
    )


def execute(
    plan: Plan,
    *,
    pm: PluginManager | None = None,
    on_event: EventCallback | None = None,
    on_repeat: Callable[[int, RepeatRecord], None] | None = None,
    monitor_factory: Callable[[Plan], Any] | None = None,
    sweep_id: str | None = None,
) -> RunOutcome:
    """Runs every repeat of ``plan`` and stores the result.

    ``pm``: the plugin manager whose observer hooks see the run; the plan's by default."""
    pm = pm or plan.plugins()
    spec = plan.spec
    if spec.require_quiet_s > 0:  # before anything is written: a refusal leaves nothing
        wait_quiet(plan)
    run_id = new_run_id(spec)
    output = Path(spec.output_dir)
    run_dir = output / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    store = ResultStore(output / "results.sqlite")
    search = None
    if spec.batch_search:  # --batch-size auto: tries in fresh processes, then the run
        plan, search = autobatch.search(plan, run_dir, run_id, run_repeat)
        spec = plan.spec
    env_info = environment.collect(gpu_indices=[g.index for g in plan.gpus])
    env_info["gpus"] = [g.to_dict() for g in plan.gpus]
    env_info["interpreter"] = dataclasses.asdict(plan.interpreter)
    env_info[recover.OWNER_KEY] = recover.owner()  # so a later start knows it was ours
    if search is not None:
        env_info["batch_search"] = search
    if plan.nodes > 1:  # the hosts of each repeat's nodes are in its record (nodes)
        env_info["nodes"] = {
            "count": plan.nodes,
            "launcher": plan.launcher,
            "node_launcher": plan.node_launcher,
            "processes_per_node": plan.processes,
            "devices_per_node": plan.spec.devices,
            "monitored": "the orchestrator's host only",
        }
    result = RunResult(
        run_id=run_id,
        started_at=utc_now(),
        spec=spec,
        hardware=spec.hardware,
        gpu_name=plan.gpus[0].name if plan.gpus else None,
        global_batch=spec.global_batch,
        launcher=plan.launcher,
        processes=plan.processes * plan.nodes,
        environment=env_info,
        sweep_id=sweep_id,
    )
    (run_dir / "run.json").write_text(result.to_json())
    pm.run_started(spec, run_dir)
    monitor = monitor_factory(plan) if monitor_factory else None
    repeats: list[RepeatRecord] = []
    interrupted: KeyboardInterrupt | None = None
    try:
        # once per run (inference: the model file, in its own process)
        model_file, failed = task_for(spec.task).prepare(plan, run_dir, run_id, run_repeat)
        if failed is not None:
            with signals.hold():
                repeats.append(failed)
                store.add_repeat(run_id, 1, failed)
            if on_repeat:
                on_repeat(1, failed)
            raise _NoModelFile
        repeat = 0
        while repeat_budget.next_repeat(spec, repeats).more:  # harness.run.repeats
            repeat += 1
            record = run_repeat(
                plan,
                run_dir,
                run_id,
                repeat,
                on_event=on_event,
                monitor=monitor,
                model_file=model_file,
            )
            with signals.hold():  # a finished repeat is stored whole
                repeats.append(record)
                store.add_repeat(run_id, repeat, record)
            pm.repeat_finished(spec, record)
            if on_repeat:
                on_repeat(repeat, record)
            if record.status == "interrupted":
                interrupted = signals.Interrupted(signals.received() or signal.SIGINT)
                break
            signals.check()
    except KeyboardInterrupt as exc:  # between repeats: no worker to end, store the run
        interrupted = exc
    except _NoModelFile:  # the run's one record says why
        pass
    with signals.hold():  # storing the run is never cut in half; the signal is raised after
        _finish(plan, pm, run_dir, result, repeats, monitor, store, interrupted)
    if interrupted is not None:
        raise interrupted
    signals.check()
    return RunOutcome(run_id, run_dir, result)


def _finish(
    plan: Plan,
    pm: PluginManager,
    run_dir: Path,
    result: RunResult,
    repeats: list[RepeatRecord],
    monitor: Any,
    store: ResultStore,
    interrupted: KeyboardInterrupt | None,
) -> None:
    """Summarises the repeats and stores the run (``interrupted`` when it was stopped)."""
    spec = plan.spec
    result.finished_at = utc_now()
    result.repeats = repeats
    first_ok = next((r for r in repeats if r.ok), repeats[0] if repeats else None)
    if first_ok is not None:
        result.framework = first_ok.framework
        result.data = first_ok.data
        result.synthetic = first_ok.data.synthetic if first_ok.data else None
    summary = aggregate(repeats)
    if interrupted is not None and summary.status != "interrupted":
        # stopped between repeats: the run did not finish, whatever the repeats did
        summary.status = "interrupted"
        summary.causes.append(signals.cause(interrupted))
    if monitor is not None:
        summary = dataclasses.replace(summary, **monitor.aggregate(repeats))
        if plan.nodes > 1:
            note = (
                f"{plan.nodes} nodes: resources were measured on the orchestrator's host "
                f"({socket.gethostname()}) only; the other nodes were not monitored"
            )
            if plan.launcher != "local-nodes":  # the tasks are not the orchestrator's
                note += (
                    f" ({plan.launcher}'s tasks are not in the orchestrator's process tree: "
                    "its process-tree figures miss them; host-wide and GPU figures do not)"
                )
            summary.resource_notes.append(note)
    result.summary = summary
    try:
        cpu = None if spec.num_gpus > 0 else peak.cpu_peak(spec.tool, spec.precision)
        summary.flops = flops.for_result(result, cpu, network=plan.network)
    except Exception as exc:  # a FLOPs or peak fault must not lose the run
        summary.flops = Flops(error=repr(exc))
    task_for(spec.task).finish(summary, repeats)  # inference: its figures, its FLOPs
    result.config = configkey.build_config(result)
    result.config_key = configkey.key_of(result.config)
    # strict JSON: NaN and infinity are written as null
    (run_dir / "result.json").write_text(result.to_json())
    store.add_run(result)
    pm.run_finished(spec, result)
