"""The inference task's core (no framework): the command line, batch-size lists, the
task's refusals, the configuration key, the records and the store, the terminal summary,
sweep cells, and the figures the orchestrator derives from a worker's events."""

from __future__ import annotations

import io
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from harness.backend import BackendInfo, Inferencer
from harness.cli.main import build_parser
from harness.cli.run import spec_from_args, specs_from_args
from harness.errors import InvalidValue, UsageError
from harness.run import inference
from harness.run.spec import resolve
from harness.run.worker import Job
from harness.spec import RunSpec, batch_sizes
from harness.store import configkey
from harness.store.records import repeat_record
from harness.store.schema import (
    InferenceRepeat,
    InferenceSummary,
    RepeatRecord,
    RunResult,
    RunSummary,
    Stat,
)
from harness.store.store import ResultStore

TOOLS = {
    "trains": BackendInfo("trains", "T", (), "-", "x:Y"),
    "both": BackendInfo(
        "both", "B", (), "-", "x:Y", tasks=("train", "inference"), inferencer="m:C"
    ),
    "infers": BackendInfo("infers", "I", (), "-", "", tasks=("inference",), inferencer="m:C"),
}


def parse(*argv: str):
    parser, _ = build_parser()
    return parser.parse_args(["run", *argv])


# The command line -----------------------------------------------------------------------


def test_task_and_batch_list_give_one_spec_per_size() -> None:
    args = parse(
        "--tool", "both", "--model", "lenet", "--dataset", "mnist", "--task", "inference",
        "--batch-size", "1, 8,64",
    )  # fmt: skip
    specs = specs_from_args(args)
    assert [s.batch_size for s in specs] == [1, 8, 64]
    assert {s.task for s in specs} == {"inference"}
    one = specs_from_args(parse("--tool", "t", "--model", "lenet", "--dataset", "mnist"))
    assert len(one) == 1 and one[0].batch_size is None and one[0].task == "train"
    single = spec_from_args(
        parse("--tool", "t", "--model", "m", "--dataset", "d", "--batch-size", "64")
    )
    assert single.batch_size == 64


@pytest.mark.parametrize("text", ["0", "-1", "1,0", "1,x", "1.5", "", "8,,16", "true"])
def test_bad_batch_lists_are_refused(text: str) -> None:
    with pytest.raises(InvalidValue, match="--batch-size"):
        batch_sizes(text)


def test_batch_list_keeps_order_and_drops_repeats() -> None:
    assert batch_sizes("64,1,64,8") == [64, 1, 8]
    assert batch_sizes([4, 2]) == [4, 2]
    with pytest.raises(InvalidValue):
        batch_sizes([1, True])


def test_a_bad_batch_list_is_one_line_and_exit_2_before_any_process(tmp_path: Path) -> None:
    """The fake plugin's tool never starts: the list is refused while parsing."""
    command = [
        sys.executable, "-m", "harness", "--tool", "pytorch", "--model", "lenet", "--dataset",
        "mnist", "--task", "inference", "--batch-size", "8,-2", "--output-dir", str(tmp_path),
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--batch-size" in lines[0] and "'-2'" in lines[0]
    assert not list(tmp_path.iterdir())  # no run folder, no store


def test_onnx_file_replaces_model_and_dataset() -> None:
    spec = spec_from_args(
        parse("--tool", "onnxruntime", "--onnx-file", "m.onnx", "--input-shape", "3,8,8")
    )
    assert (spec.model, spec.dataset, spec.task) == ("onnx-file", "synthetic", "inference")
    assert spec.input_shape == [3, 8, 8]
    with pytest.raises(UsageError, match="give neither"):
        spec_from_args(parse("--tool", "onnxruntime", "--onnx-file", "m.onnx", "--model", "x"))
    with pytest.raises(UsageError, match="--input-shape"):
        spec_from_args(parse("--tool", "onnxruntime", "--onnx-file", "m", "--input-shape", "3,8"))
    with pytest.raises(UsageError, match="--model and --dataset"):
        spec_from_args(parse("--tool", "pytorch"))


# The task's rules ------------------------------------------------------------------------


def spec(**fields) -> RunSpec:
    return RunSpec(
        **{"tool": "both", "model": "lenet", "dataset": "mnist", "task": "inference"} | fields
    )


def test_a_tool_without_the_task_is_refused_naming_those_with_it() -> None:
    with pytest.raises(UsageError, match=r"trains has no inference task; .*: both, infers$"):
        resolve(spec(tool="trains"), TOOLS)
    with pytest.raises(UsageError, match=r"cannot train; tools that train: both, trains"):
        resolve(spec(tool="infers", task="train"), TOOLS)
    assert resolve(spec(tool="infers"), TOOLS).task == "inference"
    with pytest.raises(InvalidValue, match="unknown task"):
        resolve(spec(task="serve"), TOOLS)


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"epochs": 1}, "--epochs applies to training"),
        ({"validate": True}, "--validate applies to training"),
        ({"dump_weights": "w"}, "--dump-weights applies to training"),
        ({"num_gpus": 2}, "one device"),
        ({"cpu_devices": 2}, "one device"),
        ({"input_shape": [1, 2, 3]}, "--onnx-file only"),
        ({"onnx_file": "x.onnx"}, "both cannot run ONNX files; tools that can: onnxruntime"),
    ],
)
def test_inference_refusals(fields: dict, text: str) -> None:
    with pytest.raises(UsageError, match=text):
        resolve(spec(**fields), TOOLS)


def test_onnx_file_checks(tmp_path: Path) -> None:
    from harness.plugins import get_plugin_manager

    tools = {"onnxruntime": get_plugin_manager().backend("onnxruntime")}  # its model loader
    with pytest.raises(UsageError, match="no such file"):
        resolve(spec(tool="onnxruntime", onnx_file=str(tmp_path / "x.onnx")), tools)
    path = tmp_path / "x.onnx"
    path.write_bytes(b"x")
    with pytest.raises(UsageError, match="give --task inference"):
        resolve(spec(tool="onnxruntime", onnx_file=str(path), task="train"), tools)
    with pytest.raises(UsageError, match="positive"):
        resolve(spec(tool="onnxruntime", onnx_file=str(path), input_shape=[0, 2, 2]), tools)
    out = resolve(spec(tool="onnxruntime", onnx_file=str(path), batch_size=None), tools)
    assert (out.model, out.dataset, out.batch_size, out.synthetic) == (
        "onnx-file",
        "synthetic",
        1,
        True,
    )
    assert out.onnx_file == str(path.resolve()) and out.threads


def test_weights_file_is_checked_before_workers(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        inference.check_before_workers(spec(weights=str(tmp_path / "w.npz"), synthetic=True))
    bad = tmp_path / "w.npz"
    bad.write_text("not a zip")
    with pytest.raises(UsageError, match=r"not a readable \.npz"):
        inference.check_before_workers(spec(weights=str(bad), synthetic=True))
    with pytest.raises(UsageError, match="test split"):
        inference.check_before_workers(spec(batch_size=20000, synthetic=True))


def test_the_job_carries_the_model_file() -> None:
    job = Job(spec=spec(), model_file="/r/model", export=True)
    again = Job.from_dict(job.to_dict())
    assert again == job and again.spec.task == "inference"


def test_the_inferencer_interface() -> None:
    abstract = {
        "framework_info",
        "export",
        "load",
        "device_batch",
        "infer",
        "synchronize",
        "to_numpy",
    }
    assert Inferencer.__abstractmethods__ == frozenset(abstract)
    with pytest.raises(UsageError, match="no inference task"):
        TOOLS["trains"].load_inferencer()


# Configuration key -----------------------------------------------------------------------


def _result(**fields) -> RunResult:
    run_spec = RunSpec(
        "both", "lenet", "mnist", batch_size=8, learning_rate=0.01, threads=2, **fields
    )
    return RunResult(
        run_id="r",
        started_at="2026-01-01T00:00:00+00:00",
        spec=run_spec,
        synthetic=True,
        environment={"cpu": "C", "harness_version": "0"},
    )


def test_inference_and_training_never_share_a_key() -> None:
    train, infer = _result(), _result(task="inference")
    train_config = configkey.build_config(train)
    assert "task" not in train_config and "weights" not in train_config  # old keys kept
    infer_config = configkey.build_config(infer)
    assert infer_config["task"] == "inference" and infer_config["learning_rate"] is None
    assert configkey.key_of(train_config) != configkey.key_of(infer_config)
    trained = configkey.build_config(_result(task="inference", weights="/a/b/trained.npz"))
    assert trained["weights"] == "trained.npz" and configkey.key_of(trained) != configkey.key_of(
        infer_config
    )
    other_batch = _result(task="inference")
    other_batch.spec.batch_size = 16
    assert configkey.config_key(other_batch) != configkey.config_key(infer)


# Records, store, summary -----------------------------------------------------------------


def _windows_events(windows: list[list[float]]) -> list[dict]:
    return [
        {"event": "model", "t": 0, "file": "/r/model.onnx", "bytes": 1234, "format": "onnx"},
        {"event": "inference_setup", "t": 0, "load_s": 0.01, "prepare_s": 0.2},
        {"event": "framework", "t": 0, "settings": {"provider": "CPUExecutionProvider"}},
        {"event": "first_inference", "t": 0, "seconds": 0.05},
        {"event": "test_pass", "t": 0, "images": 70, "seconds": 0.5, "accuracy": 0.25},
        {"event": "steps", "t": 0, "phase": "timed", "first": 0, "windows": windows},
        {"event": "end", "t": 0, "status": "ok"},
    ]


def test_repeat_part_from_events() -> None:
    windows = [[1, 0.001 * (i + 1)] for i in range(1000)]
    events = _windows_events(windows)
    record = repeat_record(events, status="ok", cause=None, global_batch=4)
    part = inference.repeat_part(events, record)
    assert part.latency_basis == "batch"  # every window one batch: exact per batch
    assert part.latency_p50_s == pytest.approx(0.5005)
    assert part.latency_p999_s == pytest.approx(0.999001)
    assert part.latency_mean_s == pytest.approx(0.5005)
    assert part.total_inference_s == pytest.approx(0.01 + 0.2 + 0.5)
    assert (part.model_bytes, part.accuracy, part.test_images) == (1234, 0.25, 70)
    assert record.framework and record.framework["settings"]["provider"] == "CPUExecutionProvider"
    windowed = _windows_events([[10, 0.1], [10, 0.3]])
    record = repeat_record(windowed, status="ok", cause=None, global_batch=4)
    part = inference.repeat_part(windowed, record)
    # windows are for throughput: their mean latency is kept, no percentile is invented
    assert part.latency_basis == "window" and part.latency_p50_s is None
    assert part.latency_p99_s is None and part.latency_mean_s == pytest.approx(0.02)


def test_inference_times_each_request_alone_by_default() -> None:
    from harness.plugins import PluginManager
    from harness.run.spec import resolve
    from harness.spec import RunSpec

    tools = PluginManager().backends
    spec = resolve(RunSpec("pytorch", "lenet", "mnist", task="inference"), tools)
    assert spec.sync_every == 1  # per request
    windows = resolve(RunSpec("pytorch", "lenet", "mnist", task="inference", sync_every=8), tools)
    assert windows.sync_every == 8  # for throughput, asked for
    assert resolve(RunSpec("pytorch", "lenet", "mnist"), tools).sync_every is None  # training


def _inference_result() -> RunResult:
    events = _windows_events([[1, 0.002], [1, 0.004], [1, 0.003]])
    record = repeat_record(events, status="ok", cause=None, global_batch=8)
    record.repeat = 1
    record.inference = inference.repeat_part(events, record)
    result = _result(task="inference")
    result.repeats = [record]
    result.summary = RunSummary(status="ok", repeats=1, repeats_ok=1)
    result.summary.inference = inference.summary_part([record])
    result.summary.images_per_sec = Stat.of([record.timed.images_per_sec or 0.0])
    result.config = configkey.build_config(result)
    result.config_key = configkey.key_of(result.config)
    return result


def test_schema_round_trip_and_old_documents() -> None:
    result = _inference_result()
    again = RunResult.from_json(result.to_json())
    assert again == result
    assert isinstance(again.summary.inference, InferenceSummary)
    assert isinstance(again.repeats[0].inference, InferenceRepeat)
    assert again.summary.inference.total_inference_s.mean == pytest.approx(0.71)
    old = _result().to_json()  # a training document of the same version: no inference parts
    assert RunResult.from_json(old).summary.inference is None
    assert RepeatRecord.from_json({"status": "ok"}).inference is None  # version 0


def test_store_columns_and_an_older_file(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    store = ResultStore(path)
    training = _result()
    training.run_id = "t1"
    store.add_run(training)
    db = sqlite3.connect(path)  # a file of the same version from before the task existed
    for column in ("task", "latency_p50_s", "latency_p99_s", "total_inference_s"):
        db.execute(f"ALTER TABLE runs DROP COLUMN {column}")
    db.commit()
    db.close()
    assert [r.run_id for r in ResultStore(path, readonly=True).runs(task="train")] == ["t1"]
    store = ResultStore(path)  # opened for writing: the columns come back, filled
    store.add_run(_inference_result())
    db = sqlite3.connect(path)
    rows = db.execute("SELECT run_id, task, latency_p50_s, total_inference_s FROM runs").fetchall()
    assert sorted(rows) == [
        ("r", "inference", pytest.approx(0.003), pytest.approx(0.71)),
        ("t1", "train", None, None),
    ]
    assert [r.run_id for r in store.runs(task="inference")] == ["r"]


def test_summary_shows_the_inference_figures() -> None:
    from harness.cli.summary import print_summary

    buffer = io.StringIO()
    print_summary(Console(file=buffer, width=200), _inference_result(), "logs/r")
    text = buffer.getvalue()
    assert "latency p50" in text and "inference · batch 8" in text
    assert "model file: /r/model.onnx (1.2 kB, onnx)" in text
    assert "load 10.00 ms · session/compile 200.00 ms · first inference 50.00 ms" in text
    assert "p99.9 4.00 ms" in text and "each batch a request, timed alone" in text
    assert "total inference time: 0.710 s" in text and "70 images" in text and "25.00%" in text


# Sweeps ----------------------------------------------------------------------------------


def test_sweep_task_and_batch_lists_make_cells() -> None:
    from harness.sweep.config import parse as parse_sweep

    data = {
        "sweep": {
            "name": "s",
            "tools": ["pytorch", "onnxruntime"],
            "models": ["lenet"],
            "datasets": ["mnist"],
            "hardware": ["cpu"],
        },
        "defaults": {"steps": 3},
        "tool": {"onnxruntime": {"task": "inference", "batch_size": [1, 8]}},
        "workloads": [{"dataset": "mnist", "model": "lenet", "task": ["train", "inference"]}],
    }
    cells = parse_sweep(data, "s.toml").cells()
    keys = [c.key for c in cells]
    assert keys == [
        "pytorch/lenet/mnist/CPU",
        "pytorch/lenet/mnist/CPU/inference",
        "onnxruntime/lenet/mnist/CPU/batch1",  # refused when planned: inference only
        "onnxruntime/lenet/mnist/CPU/batch8",
        "onnxruntime/lenet/mnist/CPU/inference/batch1",
        "onnxruntime/lenet/mnist/CPU/inference/batch8",
    ]
    data["workloads"] = []
    cells = parse_sweep(data, "s.toml").cells()
    assert [c.key for c in cells][1:] == [
        "onnxruntime/lenet/mnist/CPU/inference/batch1",
        "onnxruntime/lenet/mnist/CPU/inference/batch8",
    ]
    assert [c.spec.tags["sweep_cell"] for c in cells][1:] == [c.key for c in cells][1:]
    data["defaults"] = {"batch_size": [1, 0]}
    with pytest.raises(UsageError, match="batch_size"):
        parse_sweep(data, "s.toml")
