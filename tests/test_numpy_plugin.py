"""The numpy reference trainer of the example plugin package tests/plugins/harness-numpy.

The package is imported from its folder (no install); tests/test_plugin_package.py
installs it for real.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from harness.backend import SGD_MOMENTUM, WorkerContext
from harness.models import build, init_weights
from harness.models.layers import (
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPool,
    Network,
    ReLU,
    Sequential,
)
from harness.models.reference import forward
from harness.plugins import PluginManager
from harness.spec import RunSpec

sys.path.insert(0, str(Path(__file__).resolve().parent / "plugins" / "harness-numpy"))
import harness_numpy
from harness_numpy.layers import Model, softmax_cross_entropy
from harness_numpy.trainer import NumpyTrainer

# Every supported layer, with overlapping and ceil-mode pools and strided, padded convs.
TINY = Network(
    "tiny",
    "small",
    (2, 5, 5),
    3,
    Sequential(
        (
            Conv2D(3, 3, padding=1),
            ReLU(),
            MaxPool(2, 2, ceil_mode=True),  # 5x5 -> 3x3
            Conv2D(4, 2, stride=1),
            MaxPool(3, 1, 1),  # 3x3 -> 2x2 -> 2x2
            Conv2D(4, 3, stride=2, padding=1),  # 2x2 -> 1x1
            Flatten(),
            Dropout(0.5),
            Dense(5),
            ReLU(),
            Dense(3),
        )
    ),
)


def _loss(weights: dict[str, np.ndarray], images: np.ndarray, labels: np.ndarray) -> float:
    """Summed loss in training mode; a fresh model with seed 0 draws the same dropout mask."""
    model = Model(TINY, weights, dtype=np.float64, seed=0)
    return float(softmax_cross_entropy(model.forward(images, train=True), labels)[0].sum())


def test_backward_matches_numerical_gradients():
    rng = np.random.default_rng(0)
    weights = {k: v.astype(np.float64) for k, v in init_weights(TINY, 1).items()}
    images = rng.standard_normal((3, 2, 5, 5))
    labels = np.array([0, 2, 1])
    model = Model(TINY, weights, dtype=np.float64, seed=0)
    logits = model.forward(images, train=True)
    grad_images = model.backward(softmax_cross_entropy(logits, labels)[1])
    analytic = {key: g for key, _, g in model.parameters()}
    assert sorted(analytic) == sorted(weights)

    eps = 1e-6
    for key, value in weights.items():
        numeric = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            plus, minus = dict(weights), dict(weights)
            plus[key], minus[key] = value.copy(), value.copy()
            plus[key][index] += eps
            minus[key][index] -= eps
            difference = _loss(plus, images, labels) - _loss(minus, images, labels)
            numeric[index] = difference / (2 * eps)
        assert np.abs(numeric).max() > 1e-3, key  # every parameter matters to the loss
        np.testing.assert_allclose(analytic[key], numeric, rtol=1e-5, atol=1e-8, err_msg=key)

    numeric_images = np.zeros_like(images)
    for index in np.ndindex(images.shape):
        plus, minus = images.copy(), images.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric_images[index] = (_loss(weights, plus, labels) - _loss(weights, minus, labels)) / (
            2 * eps
        )
    np.testing.assert_allclose(grad_images, numeric_images, rtol=1e-5, atol=1e-8)


def test_max_pool_gradient_goes_to_the_first_maximum():
    net = Network("p", "small", (1, 2, 3), 1, Sequential((MaxPool(2, 2, ceil_mode=True),)))
    model = Model(net, {}, dtype=np.float64)
    out = model.forward(np.zeros((1, 1, 2, 3)), train=True)  # every window is a tie
    assert out.shape == (1, 1, 1, 2)
    grad = model.backward(np.array([[[[1.0, 2.0]]]]))
    np.testing.assert_array_equal(grad[0, 0], [[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]])


def test_dropout_is_inverted_and_seeded():
    net = Network("d", "small", (1, 1, 1000), 1, Sequential((Flatten(), Dropout(0.25))))
    x = np.ones((2, 1, 1, 1000))
    out = Model(net, {}, dtype=np.float64, seed=3).forward(x, train=True)
    assert set(np.unique(out)) == {0.0, 1 / 0.75}
    assert 0.2 < (out == 0).mean() < 0.3
    np.testing.assert_array_equal(out, Model(net, {}, dtype=np.float64, seed=3).forward(x, True))
    np.testing.assert_array_equal(Model(net, {}, seed=3).forward(x, train=False), x.reshape(2, -1))


def test_forward_matches_the_numpy_reference():
    lenet = build("lenet", (1, 28, 28), 10)
    weights = init_weights(lenet, 0)
    images = np.random.default_rng(1).standard_normal((4, 1, 28, 28)).astype(np.float32)
    got = Model(lenet, weights, dtype=np.float64).forward(images, train=False)
    np.testing.assert_allclose(got, forward(lenet, weights, images), rtol=1e-5, atol=1e-6)
    weights = init_weights(TINY, 2)
    images = np.random.default_rng(2).standard_normal((4, 2, 5, 5)).astype(np.float32)
    got = Model(TINY, weights).forward(images, train=False)
    np.testing.assert_allclose(got, forward(TINY, weights, images), rtol=1e-5, atol=1e-6)


def _context(network: Network, weights: dict[str, np.ndarray], lr: float, **spec) -> WorkerContext:
    run = RunSpec(
        tool="numpy", model=network.name, dataset="mnist", learning_rate=lr, batch_size=2, **spec
    )
    return WorkerContext(
        spec=run,
        network=network,
        train=None,
        test=None,  # type: ignore[arg-type]
        initial_weights=lambda: {k: v.copy() for k, v in weights.items()},
    )


def test_sgd_with_momentum_by_hand():
    net = Network("linear", "small", (1, 1, 2), 2, Sequential((Flatten(), Dense(2))))
    w0 = np.array([[0.5, -1.0], [0.25, 2.0]], dtype=np.float32)
    b0 = np.array([0.1, -0.1], dtype=np.float32)
    trainer = NumpyTrainer(_context(net, {"1.weight": w0, "1.bias": b0}, lr=0.1))
    x = np.array([[1.0, 2.0], [-1.0, 0.5]], dtype=np.float32)
    y = np.array([1, 0])

    def grads(w, b):  # mean softmax cross-entropy, differentiated by hand
        z = x @ w.T + b
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        d = (p - np.eye(2)[y]) / 2
        loss = -np.log(p[np.arange(2), y]).mean()
        return d.T @ x, d.sum(axis=0), loss

    batch = trainer.device_batch(x.reshape(2, 1, 1, 2), y)
    gw1, gb1, loss1 = grads(w0, b0)
    token = trainer.train_step(batch)
    assert trainer.loss_value(token) == pytest.approx(loss1, rel=1e-6)
    w1, b1 = w0 - 0.1 * gw1, b0 - 0.1 * gb1  # the first buffer is the gradient itself
    np.testing.assert_allclose(trainer.state_dict()["1.weight"], w1, rtol=1e-6)
    np.testing.assert_allclose(trainer.state_dict()["1.bias"], b1, rtol=1e-6)

    gw2, gb2, _ = grads(w1, b1)
    trainer.train_step(batch)
    w2 = w1 - 0.1 * (SGD_MOMENTUM * gw1 + gw2)
    b2 = b1 - 0.1 * (SGD_MOMENTUM * gb1 + gb2)
    np.testing.assert_allclose(trainer.state_dict()["1.weight"], w2, rtol=1e-5)
    np.testing.assert_allclose(trainer.state_dict()["1.bias"], b2, rtol=1e-5)

    loss_sum, correct = trainer.evaluate(batch)
    z = x @ w2.T + b2
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    assert loss_sum == pytest.approx(-np.log(p[np.arange(2), y]).sum(), rel=1e-5)
    assert correct == int((z.argmax(axis=1) == y).sum())


def test_lenet_learns_a_fixed_batch():
    lenet = build("lenet", (1, 28, 28), 10)
    trainer = NumpyTrainer(_context(lenet, init_weights(lenet, 0), lr=0.01))
    rng = np.random.default_rng(0)
    batch = trainer.device_batch(
        rng.standard_normal((16, 1, 28, 28)).astype(np.float32),
        rng.integers(0, 10, 16).astype(np.int32),
    )
    losses = [trainer.loss_value(trainer.train_step(batch)) for _ in range(8)]
    assert losses[-1] < 0.5 * losses[0]
    state = trainer.state_dict()
    assert sorted(state) == sorted(init_weights(lenet, 0))
    assert all(v.dtype == np.float32 for v in state.values())


def test_refuses_networks_it_cannot_train():
    resnet = build("resnet50", (3, 32, 32), 10)
    with pytest.raises(ValueError, match=r"resnet50: bn1 is BatchNorm.*supports Conv2D"):
        NumpyTrainer(_context(resnet, init_weights(resnet, 0), lr=0.1))
    googlenet = build("googlenet", (3, 32, 32), 10)
    with pytest.raises(ValueError, match="BatchNorm"):
        Model(googlenet, init_weights(googlenet, 0))
    lenet = build("lenet", (1, 28, 28), 10)
    with pytest.raises(RuntimeError, match="CPU only"):
        NumpyTrainer(_context(lenet, init_weights(lenet, 0), lr=0.1, num_gpus=1))


def test_plugin_registers_the_numpy_tool():
    pm = PluginManager(entry_points=False, plugins=(harness_numpy,))
    info = pm.backend("numpy")
    assert info.framework == "NumPy (reference)"
    assert info.requires == ("numpy",)
    assert info.load_trainer() is NumpyTrainer


# Plugin API 1.2: the plugin takes part in ``verify`` and ``ops`` through its hooks ------


@pytest.fixture
def numpy_plugin(monkeypatch: pytest.MonkeyPatch):
    """The plugin loaded by name (HARNESS_PLUGINS) in every PluginManager of this test."""
    from harness.run import parity

    monkeypatch.setenv("HARNESS_PLUGINS", "harness_numpy")
    parity.probe.cache_clear()
    yield
    parity.probe.cache_clear()


def test_hooks_name_its_parity_probe_and_kernels(numpy_plugin) -> None:
    from harness_numpy.parity import NumpyProbe

    pm = PluginManager()
    numpy_info = pm.backend("numpy")
    assert isinstance(pm.parity_probe(numpy_info), NumpyProbe)
    assert pm.ops_kernels(numpy_info) == "harness_numpy.ops"
    assert pm.model_loader(numpy_info, "onnx") is None
    assert "numpy" in pm.backends_with("harness_parity_probe")
    assert "numpy" in pm.backends_with("harness_ops_kernels")


def test_parity_case_passes_in_float32_and_float64(numpy_plugin, tmp_path: Path) -> None:
    """The core's parity driver (harness.run.parity) on a reference case, through the
    plugin's probe and trainer: the rows ``verify`` prints, and the float64 steps."""
    import json

    from harness.models import parity as P
    from harness.run import parity

    network = build("lenet", (1, 28, 28), 10)
    case = P.reference_case(network)
    np.savez(tmp_path / "00-lenet.npz", **case)
    (tmp_path / "00-lenet.json").write_text(json.dumps({"pair": ["lenet", 1, 28, 28, 10]}))
    row = parity.check_case("numpy", tmp_path / "00-lenet.npz", gpu=False)
    tol = P.TOLERANCES["cpu"]
    assert max(row["forward"], row["forward_training"]) <= tol["forward"], row
    assert row["loss"] <= tol["train"] and row["state"] <= tol["train"], row

    probe = parity.probe("numpy")
    steps = len(case["losses"])
    assert probe.float64_steps(network, steps) == steps
    data = [(case[f"batch{s}/images"], case[f"batch{s}/labels"]) for s in range(steps)]
    weights, lr = P.section(case, "weight"), float(case["lr"])
    losses, states = parity.trainer_steps("numpy", network, weights, data, lr, float64=True)
    loss_error, state_error, where = P.training_errors(
        case, losses, states, probe.biased_running_var, per_tensor=True
    )
    assert loss_error <= probe.float64_tolerance, losses
    assert state_error <= probe.float64_tolerance, where


def test_ops_kernels_time_gemm_only() -> None:
    from harness_numpy import ops

    from harness.ops import suite as suites
    from harness.ops.kernels import Unsupported
    from harness.ops.worker import run_kernel

    smoke = suites.load("smoke")
    gemm = next(k for k in smoke.kernels if k.kind == "gemm" and k.shape["transpose_a"])
    job = {"device": "cpu", "precision": "fp32", "min_time": 0.01, "max_time": 0.05}
    assert ops.setup(job)["name"] == "NumPy"
    line = run_kernel(ops, gemm, job)
    assert line["status"] == "ok" and line["max_error"] < 1e-5, line
    conv = next(k for k in smoke.kernels if k.kind == "conv")
    with pytest.raises(Unsupported, match="forward GEMMs only"):
        ops.build(conv, "fp32", job)
    with pytest.raises(Unsupported, match="bf16"):
        ops.build(gemm, "bf16", job)
