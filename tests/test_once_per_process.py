"""Each thing done once per process (issue 11, item 2).

In the orchestrator process one plan_run and execute of a fake run build the network
once, check the model's input once, ask the plugins' refusal hook once, make no plugin
manager of their own (they use the one given), read each repeat's events once (the live
tail, never the file again) and summarise each repeat's monitor recording without
rebuilding it. The job file holds exactly what the worker reads.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fake_cli
import pytest

import harness.models
import harness.models.lenet
from harness import hookimpl, plugins
from harness.backend import BackendInfo, Trainer
from harness.errors import UsageError
from harness.launchers import Launcher, LaunchRequest
from harness.monitor import resources
from harness.monitor.monitor import Monitor
from harness.run import events, orchestrator, worker
from harness.run.events import EventTail
from harness.run.worker import Job
from harness.spec import RunSpec

sys.path.insert(0, str(fake_cli.FAKES))
import fake_backend  # tests/fakes, as HARNESS_PLUGINS loads it in the workers

real_read_events = events.read_events


class Counting:
    """A plugin that counts the refusal hook's calls."""

    def __init__(self) -> None:
        self.refusals = 0

    @hookimpl
    def harness_refuse_run(self, spec: Any, backend: Any, network: Any) -> str | None:
        self.refusals += 1
        return None


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts, in this process: network builds, checks of LeNet's input, plugin managers
    made, get_plugin_manager() calls and monitor recordings made. Reading an events
    file after the fact fails the test."""
    seen: Counter[str] = Counter()

    def counted(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            seen[name] += 1
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(harness.models, "build", counted("build", harness.models.build))
    lenet_check = harness.models.lenet.basic_refusal
    monkeypatch.setattr(harness.models.lenet, "basic_refusal", counted("check", lenet_check))
    init = plugins.PluginManager.__init__
    monkeypatch.setattr(plugins.PluginManager, "__init__", counted("plugin_manager", init))
    get_pm = plugins.get_plugin_manager
    monkeypatch.setattr(orchestrator, "get_plugin_manager", counted("get_plugin_manager", get_pm))
    monkeypatch.setattr(Monitor, "_recording", counted("recording", Monitor._recording))

    def no_second_reading(path: Any) -> Any:
        raise AssertionError(f"the events were read again from {path}")

    monkeypatch.setattr(events, "read_events", no_second_reading)
    monkeypatch.setattr(orchestrator, "read_events", no_second_reading, raising=False)
    # the worker, another process, finds the fake backend as an installed plugin would be
    for key, value in fake_cli.harness_env().items():
        monkeypatch.setenv(key, value)
    return seen


def fake_pm(*extra: object) -> plugins.PluginManager:
    return plugins.PluginManager(entry_points=False, plugins=(fake_backend, *extra))


def fake_spec(tmp_path: Path, **fields: Any) -> RunSpec:
    values: dict[str, Any] = {
        "tool": "fake",
        "model": "lenet",
        "dataset": "mnist",
        "synthetic": True,
        "warmup_steps": 1,
        "steps": 3,
        "repeats": 2,
        "batch_size": 8,
        "idle_baseline_s": 0.0,
        "output_dir": str(tmp_path / "logs"),
        "options": {"step_s": "0.001"},
    }
    values.update(fields)
    return RunSpec(**values)


def test_one_run_builds_checks_and_reads_each_thing_once(
    tmp_path: Path, counts: Counter[str]
) -> None:
    counter = Counting()
    pm = fake_pm(counter)
    counts.clear()  # the pm above is the test's own; count from here
    plan = orchestrator.plan_run(fake_spec(tmp_path), pm)
    assert plan.pm is pm
    assert plan.network is not None and plan.network.name == "lenet"

    live: list[dict[str, Any]] = []
    outcome = orchestrator.execute(
        plan, on_event=live.append, monitor_factory=resources.monitor_factory
    )
    result = outcome.result
    assert result.summary.status == "ok", result.summary

    # the network: built once (plan_run; the FLOPs count it), its input checked once
    assert counts["build"] == 1
    assert counts["check"] == 1
    assert counter.refusals == 1
    forward = harness.models.flops_per_image(plan.network)
    assert result.summary.flops.forward_per_image == forward
    # one plugin manager, the one given: none made, none looked up
    assert counts["plugin_manager"] == 0
    assert counts["get_plugin_manager"] == 0
    # one monitor recording per repeat (what stop() returned), summarised as it is
    assert counts["recording"] == plan.spec.repeats
    for record in result.repeats:
        assert record.resources.sampler["samples"] > 0
        assert record.resources.errors == []

    # the events: the live tail saw exactly what is in the files, and the records were
    # built from it (read_events would have failed the run's repeats above)
    in_files = [
        e
        for repeat in (1, 2)
        for e in real_read_events(outcome.run_dir / f"repeat-{repeat}" / "events.jsonl")
    ]
    assert live == in_files
    assert sum(e["event"] == "end" for e in live) == 2

    # the job file: exactly the Job's fields, which the worker reads
    job = json.loads((outcome.run_dir / "repeat-2" / "job.json").read_text())
    assert set(job) == {f.name for f in dataclasses.fields(Job)}
    assert Job.from_dict(job) == Job(
        spec=plan.spec,
        local_devices=plan.local_devices,
        events=str((outcome.run_dir / "repeat-2" / "events.jsonl").resolve()),
        repeat=2,
    )


def test_events_are_kept_without_a_live_listener(tmp_path: Path, counts: Counter[str]) -> None:
    plan = orchestrator.plan_run(fake_spec(tmp_path, repeats=1), fake_pm())
    outcome = orchestrator.execute(plan)  # no on_event, no monitor
    (record,) = outcome.result.repeats
    assert record.status == "ok", record
    assert record.timed.steps == 3 and record.warmup.steps == 1


def test_a_refused_model_is_built_once_and_a_usage_error(
    tmp_path: Path, counts: Counter[str]
) -> None:
    counter = Counting()
    pm = fake_pm(counter)
    counts.clear()
    with pytest.raises(UsageError, match=r"^cannot run lenet on cifar10: lenet is defined for"):
        orchestrator.plan_run(fake_spec(tmp_path, dataset="cifar10"), pm)
    assert (counts["build"], counts["check"], counter.refusals) == (1, 1, 0)


MULTI = BackendInfo(
    name="fake-multi",
    framework="Fake",
    requires=(),
    install_hint="-",
    trainer="fake_backend:FakeTrainer",
    multi_process_launcher="only-here",
)


class OnlyHere:
    """A backend and its launcher, registered with one plugin manager only."""

    @hookimpl
    def harness_register_backends(self, register: Callable[[BackendInfo], None]) -> None:
        register(MULTI)

    @hookimpl
    def harness_register_launchers(self, register: Callable[[Launcher], None]) -> None:
        def build(request: LaunchRequest) -> list[str]:
            return ["only-here", str(request.processes), *request.worker_args()]

        register(Launcher("only-here", build))


def test_the_plans_command_uses_the_plans_plugin_manager(
    tmp_path: Path, counts: Counter[str]
) -> None:
    plan = orchestrator.plan_run(
        fake_spec(tmp_path, tool="fake-multi", cpu_devices=2), fake_pm(OnlyHere())
    )
    assert plan.launcher == "only-here"
    assert plan.command("job.json") == ["only-here", "2", "-m", "harness.run.worker", "job.json"]
    assert counts["get_plugin_manager"] == 0


def test_the_last_event_without_a_newline_is_kept_by_the_final_poll(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    tail = EventTail(path)
    path.write_text('{"event": "start", "t": 1}\n{"event": "end", "t": 2}')
    assert [e["event"] for e in tail.poll()] == ["start"]
    assert [e["event"] for e in tail.poll(final=True)] == ["end"]
    assert tail.poll(final=True) == []
    # a torn last line (a killed worker) is skipped, as read_events skips it
    torn = tmp_path / "torn.jsonl"
    torn.write_text('{"event": "start", "t": 1}\n{"event": "steps", "seconds": [0.1')
    assert [e["event"] for e in EventTail(torn).poll(final=True)] == ["start"]
    assert [e["event"] for e in real_read_events(torn)] == ["start"]


def test_a_job_with_a_key_the_worker_does_not_read_is_refused(tmp_path: Path) -> None:
    job = Job(spec=fake_spec(tmp_path), local_devices=1, events="e.jsonl", repeat=3)
    assert Job.from_dict(json.loads(json.dumps(job.to_dict()))) == job
    with pytest.raises(ValueError, match=r"does not read: \['gpu_indices', 'run_id'\]"):
        Job.from_dict({**job.to_dict(), "run_id": "x", "gpu_indices": [0]})


def test_the_worker_reads_every_field_of_its_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in fake_cli.harness_env().items():
        monkeypatch.setenv(key, value)
    spec = fake_spec(tmp_path, cpu_devices=2, repeats=1)
    job = Job(spec=spec, local_devices=2, events=str(tmp_path / "events.jsonl"), repeat=3)
    ctx = worker.build_context(job, rank=0, world_size=1)
    assert (ctx.spec, ctx.local_devices, ctx.total_devices) == (spec, 2, 2)
    assert worker.run_job(job) == worker.EXIT_OK
    assert real_read_events(tmp_path / "events.jsonl")[-1]["event"] == "end"

    class OneReplica(Trainer):  # the abstract methods, unused here
        framework_info = device_batch = train_step = synchronize = lambda self, *a: None
        loss_value = evaluate = lambda self, *a: None

        def replica_states(self) -> list[dict[str, Any]]:
            return [{"w": [1.0]}]

    worker.dump_weights(OneReplica(ctx), tmp_path / "weights", job, rank=0)
    assert [p.name for p in (tmp_path / "weights").iterdir()] == ["repeat3-rank0-replica0.npz"]
