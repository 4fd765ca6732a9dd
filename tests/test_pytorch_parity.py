"""PyTorch against the NumPy reference: the parity matrix of tests/parity_checks.py.

Runs in the pytorch tox env (``pytest -m pytorch``). torch is imported inside the tests,
so the core env can collect this module and deselect it.
"""

from __future__ import annotations

import pytest
from parity_checks import (
    check_forward,
    check_mutation_fails,
    check_training,
    mutation_params,
    pair_params,
    training_pair_params,
)

pytestmark = pytest.mark.pytorch


def run(network, weights, images, training):
    from harness.backends.pytorch.network import numpy_forward

    return numpy_forward(network, weights, images, training=training)


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
@pair_params()
def test_forward_matches_the_reference(request, name, shape, classes, training):
    check_forward(run, request, name, shape, classes, training)


@mutation_params()
def test_mutations_fail_the_check(request, mutation):
    check_mutation_fails(run, request, mutation)


@training_pair_params()
def test_training_matches_the_reference(request, name, shape, classes):
    check_training("pytorch", request, name, shape, classes)


def test_verify_command_reports_and_passes():
    """``python -m harness verify`` in its own processes: the table, pass, exit code 0."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "harness", "verify", "--tools", "pytorch"]
    out = subprocess.run([*command, "--models", "lenet"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith("pytorch")]
    assert len(rows) == 1 and rows[0][:3] == ["pytorch", "lenet", "1x28x28"]
    assert rows[0][-1] == "pass" and float(rows[0][3]) <= 1e-4
    assert out.stdout.strip().endswith("all pass")
