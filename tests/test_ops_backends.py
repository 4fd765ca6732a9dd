"""Operation benchmarks in every framework: the smoke suite end to end through the CLI.

Each test runs ``python -m harness ops --tool T --suite smoke --cpu-devices 2`` in the
framework's env (this interpreter) and checks what was stored: every kernel measured
and checked against NumPy, the sparse GEMM through a sparse kernel (or reported
unsupported, never a dense stand-in), the all-reduce over two CPU devices.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.ops import suite as suites
from harness.store.store import ResultStore

SPARSE_IMPL = {
    "pytorch": "torch.sparse",
    "tensorflow": "tf.sparse",
    "jax": "jax.experimental.sparse",
    "mxnet": "mx.nd.sparse",
}


def run_ops(tool: str, output: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "harness",
        "ops",
        "--tool",
        tool,
        "--suite",
        "smoke",
        "--min-time",
        "0.02",
        "--max-time",
        "0.1",
        "--output-dir",
        str(output),
        "--json",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def check_smoke(tool: str, tmp_path: Path) -> None:
    out = run_ops(tool, tmp_path, "--cpu-devices", "2")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    printed = json.loads(out.stdout.strip().splitlines()[-1])
    (result,) = ResultStore(tmp_path / "results.sqlite", readonly=True).ops()
    assert result.ops_id == printed["ops_id"] and result.tool == tool and result.status == "ok"
    assert [s.kind for s in result.sets] == list(suites.KINDS)
    assert result.framework and result.framework.get("version")
    ops = {(o.name, o.direction): o for s in result.sets for o in s.ops}
    expected = {(k.name, k.direction) for k in suites.load("smoke").kernels}
    assert set(ops) == expected
    for op in ops.values():
        if op.status == "unsupported":
            assert op.kernel == "sparse_gemm" and op.reason.startswith("unsupported: ")
            continue
        assert op.status == "ok", (op.name, op.reason)
        assert op.calls > 0 and op.time_us.mean and op.time_us.mean > 0
        if op.kernel == "allreduce":
            assert op.gb_per_s and op.gb_per_s > 0 and op.detail["devices"] == 2
            assert op.max_error == 0.0
        else:
            assert op.tflops and op.tflops > 0
        if op.kernel in ("gemm", "sparse_gemm", "conv", "rnn"):
            assert op.max_error is not None and op.max_error < 1e-4, (op.name, op.max_error)
    sparse = ops[("sparse-256x4x128-0.9", "forward")]
    if sparse.status == "ok":  # really sparse: a sparse kernel holding only the non-zeros
        assert SPARSE_IMPL[tool] in sparse.detail["impl"]
        assert sparse.detail["nnz"] == suites.nnz(sparse.shape) == round(0.1 * 256 * 128)
        assert sparse.flops == 2 * sparse.detail["nnz"] * 4
    for op_set in result.sets:
        assert op_set.status == "ok" and op_set.wall_s and op_set.total_us
        assert op_set.resources and op_set.resources["host"]["phases"]["set"]["samples"] > 0
    assert "µs per pass over the set" in out.stdout + out.stderr  # the tables, with totals


def check_one_device_skips_allreduce(tool: str, tmp_path: Path) -> None:
    out = run_ops(tool, tmp_path, "--ops", "allreduce,gemm-64x32x48-NN", "--scale", "0.5")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (result,) = ResultStore(tmp_path / "results.sqlite", readonly=True).ops()
    gemm, reduce = (s.ops for s in result.sets)
    assert [o.shape["m"] for o in gemm] == [32] and gemm[0].status == "ok"
    assert reduce[0].status == "skipped" and "two devices" in reduce[0].reason


@pytest.mark.pytorch
def test_pytorch_ops_smoke(tmp_path: Path) -> None:
    check_smoke("pytorch", tmp_path)


@pytest.mark.pytorch
def test_pytorch_ops_one_device(tmp_path: Path) -> None:
    check_one_device_skips_allreduce("pytorch", tmp_path)


@pytest.mark.tensorflow
def test_tensorflow_ops_smoke(tmp_path: Path) -> None:
    check_smoke("tensorflow", tmp_path)


@pytest.mark.jax
def test_jax_ops_smoke(tmp_path: Path) -> None:
    check_smoke("jax", tmp_path)


@pytest.mark.mxnet
def test_mxnet_ops_smoke(tmp_path: Path) -> None:
    check_smoke("mxnet", tmp_path)


@pytest.mark.pytorch
def test_pytorch_framework_peak_is_cached_and_used(tmp_path: Path) -> None:
    import os

    from harness.ops import peak

    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache")}
    command = [
        sys.executable,
        "-m",
        "harness",
        "peak",
        "--tool",
        "pytorch",
        "--sizes",
        "64,128",
        "--min-time",
        "0.05",
    ]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "pytorch peak fp32" in out.stdout
    value, source = peak.lookup("pytorch", "fp32", tmp_path / "cache" / "peak.json")
    assert value and value > 0 and "peak --tool pytorch" in source
    ops = [
        sys.executable,
        "-m",
        "harness",
        "ops",
        "--tool",
        "pytorch",
        "--suite",
        "smoke",
        "--ops",
        "gemm-64x32x48-NN",
        "--min-time",
        "0.02",
        "--max-time",
        "0.1",
        "--output-dir",
        str(tmp_path / "out"),
        "--json",
    ]
    out = subprocess.run(ops, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    (op,) = json.loads(out.stdout.strip().splitlines()[-1])["sets"][0]["ops"]
    assert op["percent_of_peak"] > 0 and "pytorch GEMM peak" in op["peak_source"]
