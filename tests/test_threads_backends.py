"""One CPU thread policy in every backend: for the same request (``--threads 2`` with one
and with two CPU devices, and ``--threads 1``, below every framework's default on a
machine with more than one core) each framework, read back in a real run, reports exactly
the settings harness.cpu computes. Each test runs in its framework's tox env (``-m NAME``).

XLA:CPU has no inter-op setting: JAX is the one backend that reports ``inter_op`` None.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from backend_checks import lenet_run

from harness import cpu

# (--threads, --cpu-devices) requests
CASES = ((2, 1), (2, 2), (1, 1))


def effective_threads(tool: str, tmp_path: Path, threads: int, devices: int) -> dict:
    """framework_info["threads"] of a tiny LeNet run with ``--threads`` and ``--cpu-devices``."""
    result = lenet_run(
        tool, tmp_path / f"t{threads}d{devices}", "--synthetic", "--threads", str(threads),
        "--cpu-devices", str(devices), "--batch-size", "8", "--warmup-steps", "1",
        "--steps", "1", "--sync-every", "1",
    )  # fmt: skip
    assert result["summary"]["status"] == "ok"
    assert result["spec"]["threads"] == threads
    threads = result["repeats"][0]["framework"]["threads"]
    assert tuple(threads) == cpu.REPORT_KEYS
    assert threads["how"]
    return threads


def expected(threads: int, devices: int, *, inter_op: bool = True) -> dict:
    want = cpu.policy_for(threads, devices).expected()
    if not inter_op:
        want["inter_op"] = None
    return want


def check(tool: str, tmp_path: Path, *, inter_op: bool = True) -> None:
    for threads, devices in CASES:
        got = effective_threads(tool, tmp_path, threads, devices)
        want = expected(threads, devices, inter_op=inter_op)
        assert {k: v for k, v in got.items() if k != "how"} == want, got


@pytest.mark.pytorch
def test_pytorch_applies_the_thread_policy(tmp_path: Path) -> None:
    check("pytorch", tmp_path)


@pytest.mark.tensorflow
def test_tensorflow_applies_the_thread_policy(tmp_path: Path) -> None:
    check("tensorflow", tmp_path)


@pytest.mark.jax
def test_jax_applies_the_thread_policy(tmp_path: Path) -> None:
    check("jax", tmp_path, inter_op=False)


@pytest.mark.mxnet
def test_mxnet_applies_the_thread_policy(tmp_path: Path) -> None:
    check("mxnet", tmp_path)


def test_the_request_differs_between_one_and_two_devices() -> None:
    # Guards the backend tests above: the two requests must not expect the same figures.
    one, two, single = (expected(t, d) for t, d in CASES)
    assert one["intra_op_per_device"] == 2 and two["intra_op_per_device"] == 1
    assert one["intra_op_total"] == two["intra_op_total"] == 2
    assert single["intra_op_total"] == 1
