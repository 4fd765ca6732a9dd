"""The bottleneck verdict, compilation apart from warmup, and the time to first step."""

from __future__ import annotations

from typing import Any

import pytest
from backend_checks import lenet_run
from dataformats import write_learnable_mnist
from sweep_helpers import make_result
from test_loop import constant, make, run

from harness.report import data as report_data
from harness.report.html import html
from harness.store import bottleneck, metrics
from harness.store.bottleneck import verdict
from harness.store.records import aggregate, repeat_record
from harness.store.schema import RepeatRecord

# --- the verdict ----------------------------------------------------------------------


def test_input_bound_first_whatever_the_device():
    for util, cpu in ((99.0, 190.0), (10.0, 10.0), (None, None)):
        found = verdict(0.25, util, cpu, 2, on_gpu=util is not None)
        assert found.verdict == "input-bound"
        assert "data wait 25%" in found.reason and ">= 10%" in found.reason


def test_gpu_runs_split_on_utilisation_at_the_threshold():
    limit = bottleneck.DEVICE_BUSY_PCT
    busy = verdict(0.01, limit, 50.0, 4, on_gpu=True)
    idle = verdict(0.01, limit - 0.1, 390.0, 4, on_gpu=True)
    assert busy.verdict == "device-bound" and idle.verdict == "host-bound"
    assert idle.host_cpu_share == pytest.approx(390 / 400)
    assert "GPU utilisation 80% < 80%" in idle.reason and "98% of 4 cores" in idle.reason
    assert verdict(0.0, None, 100.0, 4, on_gpu=True).verdict == "unknown"


def test_cpu_runs_split_on_the_cores_busy_share():
    wait = bottleneck.INPUT_WAIT_SHARE - 0.001
    assert verdict(wait, None, 100.0, 2, on_gpu=False).verdict == "device-bound"  # 50%
    found = verdict(wait, None, 60.0, 2, on_gpu=False)
    assert found.verdict == "host-bound" and found.device_utilization_pct is None
    assert verdict(0.0, None, None, 2, on_gpu=False).verdict == "unknown"
    assert verdict(None, None, 100.0, None, on_gpu=False).verdict == "unknown"  # no cores


def test_the_verdict_states_its_thresholds():
    found = verdict(0.0, None, 200.0, 2, on_gpu=False)
    assert found.thresholds == {
        "input_wait_share": bottleneck.INPUT_WAIT_SHARE,
        "device_busy_pct": bottleneck.DEVICE_BUSY_PCT,
        "cpu_busy_share": bottleneck.CPU_BUSY_SHARE,
    }
    assert set(bottleneck.VERDICTS) >= {found.verdict}
    assert bottleneck.text(found).startswith("device-bound (data wait 0%")


def test_a_run_judges_the_mean_figures_of_its_repeats():
    repeats = [
        verdict(0.05, None, 100.0, 2, on_gpu=False),
        verdict(0.20, None, 100.0, 2, on_gpu=False),
    ]
    found = bottleneck.of_run(repeats)
    assert found is not None and found.verdict == "input-bound"
    assert found.data_wait_share == pytest.approx(0.125)
    assert bottleneck.of_run([]) is None


def test_old_records_still_read_and_new_ones_round_trip():
    old = RepeatRecord.from_json({"schema_version": 1, "status": "ok"})
    assert old.bottleneck is None and old.compile_s is None
    assert old.time_to_first_step_s is None
    record = RepeatRecord(status="ok", bottleneck=verdict(0.3, None, 50.0, 2, on_gpu=False))
    again = RepeatRecord.from_json(record.to_json())
    assert again.bottleneck == record.bottleneck
    summary = aggregate([again])
    assert summary.bottleneck is not None and summary.bottleneck.verdict == "input-bound"


# --- compilation and the first step (the scripted loop of test_loop) -------------------


def test_compilation_is_estimated_from_the_first_step(tmp_path):
    trainer, ctx, emitter, clock = make(
        tmp_path, lambda i: 2.0 if i == 0 else 0.01, warmup_steps=3, steps=10
    )
    events, record = run(tmp_path, trainer, ctx, emitter, clock)
    assert not any(e["event"] == "compile" for e in events)
    assert record.warmup.first_step_s == pytest.approx(2.0)
    assert record.compile_basis == "first step"
    assert record.compile_s == pytest.approx(1.99)
    # no launch time given and no setup phase (the loop alone): no time to first step;
    # launched a second before warmup: that second plus the first step
    assert record.time_to_first_step_s is None
    warmup = next(e["t"] for e in events if e["event"] == "phase" and e["name"] == "warmup")
    launched = repeat_record(events, status="ok", cause=None, global_batch=8, started=warmup - 1)
    assert launched.time_to_first_step_s == pytest.approx(3.0)
    summary = aggregate([record])
    assert summary.compile_s.mean == pytest.approx(1.99)
    assert summary.first_step_s.mean == pytest.approx(2.0)


def test_a_backend_that_compiles_ahead_is_timed_alone(tmp_path):
    trainer, ctx, emitter, clock = make(tmp_path, constant(0.01), warmup_steps=2, steps=4)
    seen: list[Any] = []

    def prepare_training(batch: Any) -> bool:
        seen.append(batch)
        clock.now += 3.0
        return True

    trainer.prepare_training = prepare_training  # type: ignore[method-assign]
    events, record = run(tmp_path, trainer, ctx, emitter, clock)
    compile_event = next(e for e in events if e["event"] == "compile")
    assert compile_event["seconds"] == pytest.approx(3.0)
    assert record.compile_s == pytest.approx(3.0) and record.compile_basis == "ahead"
    assert record.warmup.seconds == pytest.approx(0.02)  # compilation is not warmup
    assert len(seen) == 1 and record.timed.steps == 4


# --- the summary and the report show them ------------------------------------------------


def test_metrics_declare_the_new_figures():
    names = {m.name for m in metrics.for_task("train")}
    assert {"data_wait_fraction", "compile_s", "time_to_first_step_s", "first_step_s"} <= names
    assert metrics.get("data_wait_fraction").text(0.125) == "12.5 %"


def test_the_report_lists_each_runs_verdict():
    result = make_result("pytorch", "lenet", "mnist", ips=(100.0, 1.0))
    result.summary.bottleneck = verdict(0.4, None, 100.0, 2, on_gpu=False)
    data = report_data.build([result])
    assert len(data.bottlenecks) == 1
    assert data.bottlenecks[0][1].startswith("input-bound (data wait 40%")
    assert "<h2>Bottleneck</h2>" in html(data)


# --- a real run: synthetic against real data ------------------------------------------


@pytest.mark.pytorch
def test_real_data_waits_where_synthetic_does_not(tmp_path):
    data = write_learnable_mnist(tmp_path / "data", train=512, test=64)
    args = ("--warmup-steps", "1", "--steps", "4", "--batch-size", "64")
    synthetic = lenet_run("pytorch", tmp_path / "s", "--synthetic", *args)
    real = lenet_run(
        "pytorch", tmp_path / "r", "--real", "--data-dir", str(data), "--data-workers", "0",
        *args,
    )  # fmt: skip
    waits = []
    for result in (synthetic, real):
        record = result["repeats"][0]
        assert record["bottleneck"]["verdict"] in bottleneck.VERDICTS
        assert record["bottleneck"]["reason"]
        assert result["summary"]["bottleneck"]["verdict"] in bottleneck.VERDICTS
        assert record["time_to_first_step_s"] > record["warmup"]["first_step_s"] > 0
        assert record["compile_basis"] == "first step"
        waits.append(record["data_wait_fraction"])
    assert waits[0] == 0.0 and waits[1] > waits[0]


@pytest.mark.pytorch
def test_torch_compile_without_a_cxx_compiler_is_refused_in_one_line(monkeypatch):
    from harness.backends.pytorch import compile_refusal
    from harness.spec import RunSpec

    spec = RunSpec(tool="pytorch", model="lenet", dataset="mnist", options={"compile": "true"})
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    why = compile_refusal(spec)
    assert why is not None and "C++ compiler" in why and "\n" not in why
    assert compile_refusal(RunSpec(tool="pytorch", model="lenet", dataset="mnist")) is None


# --- --compile ------------------------------------------------------------------------


def _compile_tools() -> dict[str, Any]:
    from harness.backend import BackendInfo
    from harness.plugins import get_plugin_manager

    plain = BackendInfo("plain", "P", (), "-", "x:Y")  # declares no way to compile
    return {**get_plugin_manager().backends, "plain": plain}


def test_compile_reaches_the_backend_option_or_is_accepted_as_is():
    from harness.backend import compile_note
    from harness.run.spec import resolve
    from harness.spec import RunSpec

    tools = _compile_tools()

    def options(tool: str, **given: str) -> dict[str, str]:
        spec = RunSpec(tool, "lenet", "mnist", compile=True, options=given)
        return resolve(spec, tools).options

    assert options("pytorch") == {"compile": "true"}
    assert options("pytorch", compile="on") == {"compile": "on"}  # -o compile=on agrees
    assert options("mxnet") == {"hybridize": "true"}
    assert options("jax") == {} and options("tensorflow", xla="true") == {"xla": "true"}
    plain = resolve(RunSpec("pytorch", "lenet", "mnist"), tools)
    assert plain.options == {} and not plain.compile  # opt-in
    assert compile_note(tools["pytorch"]).startswith("--compile: pytorch -o compile=true: ")
    assert "jax compiles every run anyway (jax.jit" in compile_note(tools["jax"])


def test_compile_is_refused_where_it_cannot_apply():
    from harness.errors import UsageError
    from harness.run.spec import resolve
    from harness.spec import RunSpec

    tools = _compile_tools()
    with pytest.raises(UsageError, match=r"^plain cannot compile its training step"):
        resolve(RunSpec("plain", "lenet", "mnist", compile=True), tools)
    off = RunSpec("mxnet", "lenet", "mnist", compile=True, options={"hybridize": "false"})
    with pytest.raises(UsageError, match="also gives -o hybridize=false: keep one"):
        resolve(off, tools)
    infer = RunSpec("jax", "lenet", "mnist", task="inference", compile=True)
    with pytest.raises(UsageError, match="--compile applies to training"):
        resolve(infer, tools)
