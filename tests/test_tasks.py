"""The Task objects (harness.run.task): the registry, which tools run a task, the metrics
each reports, the worker's dispatch, and no task-name comparison outside the module."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from harness.backend import BackendInfo
from harness.errors import InvalidValue, UsageError
from harness.run import worker
from harness.run.task import INFERENCE, TASKS, TRAINING, Inference, check_split, task_for
from harness.spec import RunSpec
from harness.store.schema import InferenceSummary, RunSummary

ROOT = Path(__file__).resolve().parents[1]
TOOLS = {
    "trains": BackendInfo("trains", "T", (), "-", "x:Y"),
    # lists inference but names no inferencer: it does not run the task
    "half": BackendInfo("half", "H", (), "-", "x:Y", tasks=("train", "inference")),
    "infers": BackendInfo("infers", "I", (), "-", "", tasks=("inference",), inferencer="m:C"),
}


def test_the_registry_and_its_lookup() -> None:
    assert TASKS == {"train": TRAINING, "inference": INFERENCE}
    assert task_for("inference") is INFERENCE and task_for("train") is TRAINING
    with pytest.raises(InvalidValue, match=r"unknown task 'serve'; choose from: train, inference"):
        task_for("serve")
    assert RunSpec("t", "m", "d").task == TRAINING.name  # a spec's default task
    assert (TRAINING.cell_suffix, INFERENCE.cell_suffix) == ("", "/inference")
    assert TRAINING.spans_nodes and not INFERENCE.spans_nodes


def test_which_tools_run_a_task_and_the_refusals() -> None:
    assert TRAINING.tools(TOOLS) == ["half", "trains"]
    assert INFERENCE.tools(TOOLS) == ["infers"]
    assert TRAINING.refusal("trains", TOOLS) is None
    assert TRAINING.refusal("infers", TOOLS) == (
        "infers runs inference only, it cannot train; tools that train: half, trains"
    )
    assert INFERENCE.refusal("half", TOOLS) == (
        "half has no inference task; tools that run inference: infers"
    )


def test_the_metrics_are_figures_of_the_summaries() -> None:
    summary = {f.name for f in dataclasses.fields(RunSummary)}
    inference = {f.name for f in dataclasses.fields(InferenceSummary)}
    assert set(TRAINING.metrics) <= summary
    assert set(INFERENCE.metrics) <= summary | inference
    assert "latency_p99_s" in INFERENCE.metrics and "latency_p99_s" not in TRAINING.metrics


def test_training_refuses_an_onnx_file() -> None:
    with pytest.raises(UsageError, match="give --task inference"):
        TRAINING.check_spec(RunSpec("t", "m", "d", onnx_file="x.onnx"), TOOLS)


def test_the_worker_runs_the_jobs_task(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    monkeypatch.setattr(Inference, "run_job", lambda self, job: seen.append(self.name) or 7)
    job = worker.Job(spec=RunSpec("t", "m", "d", task="inference"))
    assert worker.run_job(job) == 7 and seen == ["inference"]


def test_a_split_partly_there_names_the_missing_files_and_the_download(tmp_path: Path) -> None:
    spec = RunSpec("t", "lenet", "mnist")
    check_split(spec, tmp_path, "test", [], [tmp_path / "b"], required=False)  # synthetic then
    check_split(spec, tmp_path, "test", [tmp_path / "a"], [], required=True)  # all there
    with pytest.raises(UsageError, match=r"mnist test: incomplete files .*download again"):
        check_split(spec, tmp_path, "test", [tmp_path / "a"], [tmp_path / "b"], required=False)
    with pytest.raises(UsageError):
        check_split(spec, tmp_path, "test", [], [tmp_path / "b"], required=True)


def test_no_task_name_is_compared_outside_the_task_module() -> None:
    files = [
        *(ROOT / "harness" / "run").glob("*.py"),
        *(ROOT / "harness" / "sweep").rglob("*.py"),
        *(ROOT / "harness" / "cli").glob("*.py"),
        *(ROOT / "harness" / "report").glob("*.py"),
        *(ROOT / "backends").rglob("*.py"),
    ]
    pattern = re.compile(r"""[!=]= *["'](train|inference)["']""")
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in files
        if path.name != "task.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "task" in line and pattern.search(line)
    ]
    assert not found, found


def test_mxnet_refuses_inference_in_an_amp_precision() -> None:
    from harness.backends.mxnet import BF16_CPU_FLAGS, precision_refusal

    spec = RunSpec("mxnet", "lenet", "mnist", task="inference", precision="bf16")
    assert "MXNet inference runs fp32 only" in (precision_refusal(spec, BF16_CPU_FLAGS) or "")
    trains = dataclasses.replace(spec, task="train")
    assert precision_refusal(trains, BF16_CPU_FLAGS) is None
