"""MXNet against the NumPy reference: the parity matrix of tests/parity_checks.py.

Runs in the mxnet tox env (``pytest -m mxnet``); the framework is imported inside
the tests, so the core env can collect this module and deselect it.
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

pytestmark = pytest.mark.mxnet


def run(network, weights, images, training):
    from harness.backends.mxnet.network import numpy_forward

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
    check_training("mxnet", request, name, shape, classes)
