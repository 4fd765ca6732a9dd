"""The inference task in each framework's env (markers per tool, see
tests/inference_checks.py): synthetic runs over a batch-size list, real data with
``--weights`` (total inference time, accuracy against the NumPy reference), the exported
model file against the reference, and ONNX Runtime's ``--onnx-file``.

Frameworks are imported only inside the checks, so the core env collects this module.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from backend_checks import run_harness
from inference_checks import (
    check_exported_file,
    check_real_data,
    check_synthetic_batches,
    results_of,
    tool_params,
)


@tool_params()
def test_synthetic_batch_list(tool, tmp_path):
    check_synthetic_batches(tool, tmp_path)


@tool_params()
def test_real_data_total_time_and_accuracy(tool, tmp_path):
    check_real_data(tool, tmp_path)


@tool_params()
def test_exported_file_matches_the_reference(tool, tmp_path):
    check_exported_file(tool, tmp_path)


# ONNX Runtime: --onnx-file ------------------------------------------------------------


def _one_line_exit_2(out: subprocess.CompletedProcess[str], text: str) -> None:
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and text in " ".join(out.stderr.split()), out.stderr


def _export(tmp_path: Path, *, dynamic: bool = True) -> Path:
    """LeNet as an ONNX file (the batch dimension symbolic, or fixed at 2)."""
    from harness import models
    from harness.backends.onnxruntime.network import build_model

    network = models.build("lenet", (1, 28, 28), 10)
    model = build_model(network, models.init_weights(network, 0))
    if not dynamic:
        model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
    path = tmp_path / "user.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _onnx_file_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    common = ("--steps", "3", "--warmup-steps", "1", "--repeats", "1")
    return run_harness("onnxruntime", *common, "--output-dir", str(tmp_path / "out"), *args)


@pytest.mark.onnxruntime
def test_onnx_file_runs_on_synthetic_inputs(tmp_path):
    path = _export(tmp_path)
    (result,) = results_of(_onnx_file_run(tmp_path, "--onnx-file", str(path), "--batch-size", "2"))
    assert result["summary"]["status"] == "ok", result["summary"]["causes"]
    assert result["spec"]["model"] == "onnx-file" and result["spec"]["input_shape"] == [1, 28, 28]
    part = result["repeats"][0]["inference"]
    assert part["model_file"] == str(path.resolve())
    assert part["model_bytes"] == path.stat().st_size
    assert result["synthetic"] is True and result["repeats"][0]["timed"]["images"] == 3 * 2
    assert result["config"]["onnx_file"] == f"user.onnx ({path.stat().st_size} bytes)"


@pytest.mark.onnxruntime
def test_onnx_file_bad_input_is_one_line(tmp_path):
    missing = _onnx_file_run(tmp_path, "--onnx-file", str(tmp_path / "none.onnx"))
    _one_line_exit_2(missing, "no such file")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"this is not a protobuf \x00\xff" * 10)
    _one_line_exit_2(_onnx_file_run(tmp_path, "--onnx-file", str(corrupt)), "not a readable ONNX")
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "flat",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])],
    )
    flat = tmp_path / "flat.onnx"
    onnx.save(helper.make_model(graph), str(flat))
    _one_line_exit_2(_onnx_file_run(tmp_path, "--onnx-file", str(flat)), "rank 2")
    fixed = _export(tmp_path, dynamic=False)  # a fixed batch of 2, run with a batch of 2: ok
    shape = _onnx_file_run(tmp_path, "--onnx-file", str(fixed), "--input-shape", "3,28,28")
    _one_line_exit_2(shape, "not the 3 given")
    wrong_tool = run_harness("pytorch", "--onnx-file", str(fixed))
    _one_line_exit_2(wrong_tool, "pytorch cannot run ONNX files; tools that can: onnxruntime")


@pytest.mark.onnxruntime
def test_unavailable_provider_names_the_available_ones(tmp_path):
    out = run_harness(
        "onnxruntime", "--task", "inference", "--model", "lenet", "--dataset", "mnist",
        "--synthetic", "--steps", "2", "--warmup-steps", "1", "--repeats", "1",
        "-o", "provider=NoSuchExecutionProvider", "--output-dir", str(tmp_path),
    )  # fmt: skip
    assert out.returncode == 1, out.stderr[-2000:]
    (result,) = results_of(subprocess.CompletedProcess(out.args, 0, out.stdout, out.stderr))
    (cause,) = result["summary"]["causes"]
    assert "NoSuchExecutionProvider is not available" in cause and "CPUExecutionProvider" in cause


# Sweeps: both tasks in one sweep --------------------------------------------------------


SWEEP = """
[sweep]
name = "tasks"
tools = ["pytorch", "onnxruntime"]
hardware = ["cpu"]
repeats = 1

[defaults]
batch_size = 4
warmup_steps = 1
steps = 3
synthetic = true
idle_baseline_s = 0
task = ["train", "inference"]

[tool.onnxruntime]
task = "inference"
batch_size = [1, 4]

[[workloads]]
dataset = "mnist"
model = "lenet"
"""


@pytest.mark.pytorch
def test_a_sweep_runs_and_stores_both_tasks(tmp_path):
    """PyTorch trains and infers; onnxruntime's inference cells run where it is installed
    and are skipped, naming why, where it is not (the pytorch env)."""
    import sqlite3
    import sys

    (tmp_path / "tasks.toml").write_text(SWEEP)
    command = [sys.executable, "-m", "harness", "sweep", str(tmp_path / "tasks.toml")]
    out = subprocess.run(
        [*command, "--output-dir", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode in (0, 1), out.stderr[-3000:]
    db = sqlite3.connect(tmp_path / "out" / "results.sqlite")
    rows = db.execute(
        "SELECT tool, task, batch_size, status FROM runs ORDER BY tool, task"
    ).fetchall()
    assert ("pytorch", "inference", 4, "ok") in rows and ("pytorch", "train", 4, "ok") in rows
    cells = dict(db.execute("SELECT cell, status FROM sweep_cells").fetchall())
    assert cells["pytorch/lenet/mnist/CPU"] == "done"
    assert cells["pytorch/lenet/mnist/CPU/inference"] == "done"
    assert {k for k in cells if k.startswith("onnxruntime")} == {
        "onnxruntime/lenet/mnist/CPU/inference/batch1",
        "onnxruntime/lenet/mnist/CPU/inference/batch4",
    }
