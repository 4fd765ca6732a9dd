"""The parity machinery without any framework: the NumPy training step (gradients by
finite differences, the SGD and batch-norm update rules written out by hand), the parity
weights and error measure, and ``python -m harness verify``'s usage errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from harness.cli.verify import pairs
from harness.models import build, init_weights, is_buffer, names
from harness.models import parity as P
from harness.models.layers import (
    AvgPool,
    BatchNorm,
    Concat,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    MaxPool,
    Network,
    ReLU,
    Residual,
    Sequential,
)
from harness.models.reference import forward
from harness.models.reference_training import cross_entropy, gradients, train


def vocabulary() -> Network:
    """Every layer kind: grouped, strided and padded convs, batch norm on maps and on
    features, ceil-mode and padded pools, Concat, both Residual kinds, Dropout."""

    def seq(*layers):
        return Sequential(tuple(layers))

    body = seq(
        Conv2D(4, 3, padding=1),
        BatchNorm(),
        ReLU(),
        Residual(seq(Conv2D(4, 3, padding=1, groups=2, bias=False), BatchNorm(momentum=0.3))),
        MaxPool(3, 2, ceil_mode=True),  # 9 -> 4
        Concat((seq(MaxPool(3, 1, 1), Conv2D(3, 1)), seq(AvgPool(3, 1, 1), Conv2D(2, 1)))),
        AvgPool(3, 2, 1, ceil_mode=True),  # 4 -> 3, the last window clipped
        Residual(
            seq(Conv2D(6, 3, 2, 1, bias=False), BatchNorm(eps=1e-3)),
            seq(Conv2D(6, 1, 2, bias=False), BatchNorm()),
        ),
        GlobalAvgPool(),
        Flatten(),
        Dropout(0.5),
        Dense(5),
    )
    return Network("vocabulary", "small", (3, 9, 9), 5, body)


def _loss(network, weights, x, y) -> float:
    from harness.models.reference import apply

    logits = apply(network.body, weights, x, training=True)
    return cross_entropy(logits, y)[0]


def test_gradients_equal_finite_differences():
    network = vocabulary()
    weights = {k: v.astype(np.float64) for k, v in init_weights(network, 3).items()}
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 3, 9, 9))
    y = np.array([0, 3, 4])
    loss, grads, _ = gradients(network, weights, x, y)
    assert loss == pytest.approx(_loss(network, weights, x, y), rel=1e-12)
    trainable = [k for k in weights if not is_buffer(k)]
    assert sorted(grads) == sorted(trainable)
    for key in trainable:  # one random direction per tensor
        direction = rng.standard_normal(weights[key].shape)
        eps = 1e-6
        plus = dict(weights, **{key: weights[key] + eps * direction})
        minus = dict(weights, **{key: weights[key] - eps * direction})
        numeric = (_loss(network, plus, x, y) - _loss(network, minus, x, y)) / (2 * eps)
        analytic = float((grads[key] * direction).sum())
        assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-9), key


def test_sgd_momentum_and_running_statistics_follow_the_recipe():
    """Two steps of a conv + batch norm + dense network, the update written out."""
    network = Network(
        "tiny",
        "small",
        (2, 3, 3),
        3,
        Sequential((Conv2D(2, 1), BatchNorm(momentum=0.2), GlobalAvgPool(), Flatten(), Dense(3))),
    )
    weights = {k: v.astype(np.float64) for k, v in init_weights(network, 1).items()}
    rng = np.random.default_rng(2)
    data = [(rng.standard_normal((2, 2, 3, 3)), np.array([0, 2])) for _ in range(2)]
    lr = 0.5
    losses, states = train(network, weights, data, lr=lr)
    _, g1, _ = gradients(network, weights, *data[0])
    after1 = {k: weights[k] - lr * g1[k] for k in g1}
    np.testing.assert_allclose(states[0]["4.weight"], after1["4.weight"], rtol=1e-12)
    _, g2, _ = gradients(network, {**weights, **after1}, *data[1])
    want = after1["4.weight"] - lr * (0.9 * g1["4.weight"] + g2["4.weight"])
    np.testing.assert_allclose(states[1]["4.weight"], want, rtol=1e-12)
    # running statistics: PyTorch's blend of the batch mean and UNBIASED batch variance
    conv = data[0][0].transpose(0, 2, 3, 1).reshape(-1, 2) @ weights["0.weight"][:, :, 0, 0].T
    conv += weights["0.bias"]
    mean, var = conv.mean(axis=0), conv.var(axis=0, ddof=1)
    np.testing.assert_allclose(states[0]["1.running_mean"], 0.2 * mean, rtol=1e-12)
    np.testing.assert_allclose(states[0]["1.running_var"], 0.8 + 0.2 * var, rtol=1e-12)
    _, biased = train(network, weights, data[:1], lr=lr, unbiased=False)
    np.testing.assert_allclose(biased[0]["1.running_var"], 0.8 + 0.2 * conv.var(axis=0), rtol=1e-12)
    assert len(losses) == 2 and losses[0] > 0


@pytest.mark.slow
def test_parity_weights_are_a_sharp_test():
    network = build("googlenet", (3, 32, 32), 10)
    weights = P.parity_weights(network)
    again = P.parity_weights(network)  # deterministic
    assert all(np.array_equal(again[k], v) for k, v in weights.items())
    x = P.images(network, 2)
    logits = P.reference_logits(network, weights, x, training=False)
    assert 1 <= np.abs(logits).max() <= 100  # the initial weights give < 1e-9
    assert np.abs(forward(network, init_weights(network, 0), x)).max() < 1e-6
    for path in P.batch_norm_paths(network)[:5]:
        mean, var = weights[f"{path}.running_mean"], weights[f"{path}.running_var"]
        assert np.abs(mean).max() > 0 and not np.allclose(var, 1)
        assert not np.allclose(mean, var)


def test_relative_error_has_no_absolute_floor():
    want = np.array([[1e-12, -2e-12]])
    assert P.relative_error(np.zeros_like(want), want) == 1.0
    assert P.relative_error(want * (1 + 3e-4), want) == pytest.approx(3e-4)
    assert P.relative_error(want[:, :1], want) == float("inf")
    assert P.relative_error(np.array([[np.nan, 0.0]]), want) == float("inf")
    with pytest.raises(ValueError, match="outside"):
        P.check_scale(want)


def test_state_error_is_relative_to_the_change():
    initial = {"w": np.array([100.0, 100.0])}
    want = {"w": np.array([100.1, 99.9])}
    assert P.state_error({"w": np.array([100.1, 99.9])}, want, initial) == (0.0, "")
    error, key = P.state_error({"w": np.array([100.11, 99.9])}, want, initial)
    assert key == "w" and error == pytest.approx(0.1)
    assert P.state_error({}, want, initial)[0] == float("inf")


def test_verify_default_pairs():
    assert pairs(["lenet", "vgg16"], "default") == [
        ("lenet", (1, 28, 28), 10),
        ("vgg16", (3, 32, 32), 10),
    ]
    assert len(pairs(names(), "all")) == 19


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--models", "resnet"], "unknown model 'resnet'"),
        (["--tools", "nosuch"], "unknown tool 'nosuch'"),
    ],
)
def test_verify_usage_errors_are_one_line(args, message):
    out = subprocess.run(
        [sys.executable, "-m", "harness", "verify", *args], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("forward", "state", "verdict"),
    [(2e-6, 1e-2, "pass"), (3e-4, 1e-2, "FAIL"), (2e-6, 0.5, "FAIL")],
)
def test_verify_judges_each_row_against_the_tolerances(tmp_path, forward, state, verdict):
    """A stand-in worker's rows are judged by the CPU tolerances (forward 1e-4, step 1e-1)."""
    import argparse
    import io
    import json

    from harness.cli.verify import _run_tool

    row = {
        "tool": "pytorch", "model": "lenet", "input": "1x28x28", "forward": forward,
        "forward_training": forward, "loss": 1e-7, "state": state, "worst": "step 1: ip1.weight",
    }  # fmt: skip
    worker = tmp_path / "worker"
    lines = [
        json.dumps({"header": {"tool": "pytorch", "device": "cpu", "tf32": None}}),
        json.dumps(row),
    ]
    worker.write_text("#!/bin/sh\ncat <<'EOF'\n" + "\n".join(lines) + "\nEOF\n")
    worker.chmod(0o755)
    out = io.StringIO()
    args = argparse.Namespace(gpu=False, timeout=60)
    ok = _run_tool("pytorch", str(worker), str(tmp_path), args, 1, out)
    assert ok is (verdict == "pass")
    last = out.getvalue().splitlines()[-1].split()
    assert last[:3] == ["pytorch", "lenet", "1x28x28"] and last[7] == verdict


# The study's table: every (network, dataset) cell it ran. Each is a pair of the parity
# matrix (backend_checks.PAIRS), whose forward every framework checks against the NumPy
# reference, and whose training it checks through the framework's own Trainer at 28x28
# and 32x32; each backend's CLI runs (synthetic, real data, 224x224 upscaled) cover the
# path from the command line to that Trainer.
STUDY_CELLS = [
    ("lenet", "mnist"),
    *[
        (m, d)
        for d in ("cifar10", "imagenet")
        for m in ("alexnet", "resnet50", "googlenet", "vgg16")
    ],
]


@pytest.mark.parametrize(("model", "dataset"), STUDY_CELLS)
def test_every_cell_of_the_study_is_a_pair_of_the_parity_matrix(model: str, dataset: str) -> None:
    from backend_checks import PAIRS

    from harness import datasets

    info = datasets.DATASETS[dataset]
    pair = (model, tuple(info.image_shape), info.num_classes)
    assert pair in PAIRS
    assert build(model, pair[1], pair[2]).name == model
