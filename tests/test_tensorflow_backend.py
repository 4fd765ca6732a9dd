"""The TensorFlow backend: parity with the NumPy reference, the training recipe, the CLI.

Marked tensorflow: runs in ``tox -e tensorflow``, where a missing TensorFlow fails.
In-process tests use one CPU device; data parallelism (two logical CPU devices, which
must be configured before TensorFlow starts) is tested through the CLI in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from backend_checks import (
    PAIRS,
    check_real_data_training,
    check_replicas_in_sync,
    check_synthetic_run,
    nhwc,
    two_device_run,
)

from harness import models
from harness.backend import SGD_MOMENTUM, WorkerContext
from harness.models import layers as L
from harness.models.reference import forward as reference_forward
from harness.spec import RunSpec

pytestmark = pytest.mark.tensorflow
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="module")
def tf():
    import tensorflow

    return tensorflow


@pytest.fixture(scope="module")
def network_module(tf):
    from harness.backends.tensorflow import network

    return network


def make_trainer(
    net: L.Network,
    batch: int,
    *,
    lr: float = 0.01,
    precision: str = "fp32",
    options: dict[str, str] | None = None,
    seed: int = 0,
):
    from harness.backends.tensorflow.trainer import TFTrainer

    spec = RunSpec(
        tool="tensorflow",
        model=net.name,
        dataset="cifar10",
        batch_size=batch,
        learning_rate=lr,
        precision=precision,
        options=options or {},
        seed=seed,
    )
    ctx = WorkerContext(
        spec=spec,
        network=net,
        train=None,
        test=None,  # type: ignore[arg-type]
        initial_weights=lambda: models.init_weights(net, seed),
    )
    return TFTrainer(ctx)


def random_batch(net: L.Network, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """NCHW images and int32 labels."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *net.input_shape), dtype=np.float32)
    return x, rng.integers(0, net.num_classes, n).astype(np.int32)


def with_bn_statistics(net: L.Network, seed: int = 0) -> dict[str, np.ndarray]:
    """Canonical weights whose running statistics are not the trivial 0 and 1."""
    state = models.init_weights(net, seed)
    rng = np.random.default_rng(seed + 1)
    for key, value in state.items():
        if key.endswith("running_mean"):
            state[key] = rng.normal(0.0, 0.2, value.shape).astype(np.float32)
        elif key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 1.5, value.shape).astype(np.float32)
    return state


def assert_close_to_reference(got: np.ndarray, want: np.ndarray, rtol: float = 1e-4) -> None:
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


# --- the plugin ------------------------------------------------------------------------


def test_plugin_registers_without_importing_tensorflow():
    code = (
        "import sys\n"
        "from harness.plugins import PluginManager\n"
        "info = PluginManager().backend('tensorflow')\n"
        "assert 'tensorflow' not in sys.modules, 'the plugin imported tensorflow'\n"
        "print(info.framework, info.trainer, ','.join(info.precisions),"
        " info.worker_env['TF_FORCE_GPU_ALLOW_GROWTH'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [
        "TensorFlow",
        "harness.backends.tensorflow.trainer:TFTrainer",
        "fp32,fp16,bf16",
        "true",
    ]


# --- parity with the catalogue and the reference ---------------------------------------


@pytest.mark.parametrize(("name", "shape", "classes"), PAIRS, ids=str)
def test_parameter_counts_match_the_catalogue(network_module, name, shape, classes):
    net = models.build(name, shape, classes)
    zeros = {k: np.zeros(s, np.float32) for k, s in models.state_keys(net)}
    tfnet = network_module.TFNetwork(net)
    tfnet.create_variables(zeros)
    trainable = sum(int(np.prod(v.shape)) for v in tfnet.variables.values() if v.trainable)
    assert trainable == network_module.param_count(tfnet) == models.param_count(net)
    buffers = sum(int(np.prod(s)) for k, s in models.state_keys(net) if models.is_buffer(k))
    assert (
        sum(int(np.prod(v.shape)) for v in tfnet.variables.values() if not v.trainable) == buffers
    )


# The default translation's forward passes are the parity matrix's
# (tests/test_tensorflow_parity.py); here the GPU translation (explicit conv padding,
# chosen on GPUs), run on the CPU.
@pytest.mark.parametrize(
    ("name", "shape", "classes", "batch"),
    [
        ("lenet", (1, 28, 28), 10, 4),
        ("resnet50", (3, 32, 32), 10, 2),
        ("googlenet", (3, 32, 32), 10, 2),
        ("alexnet", (3, 32, 32), 10, 2),
        ("vgg16", (1, 28, 28), 10, 2),
    ],
    ids=str,
)
def test_explicit_padding_matches_the_reference(tf, network_module, name, shape, classes, batch):
    explicit_padding = True
    net = models.build(name, shape, classes)
    state = with_bn_statistics(net)
    tfnet = network_module.TFNetwork(net, explicit_padding=explicit_padding)
    tfnet.create_variables(state)
    x, _ = random_batch(net, batch)
    logits, stats = tfnet.forward(tf.constant(nhwc(x)), training=False)
    assert stats == {}
    assert_close_to_reference(logits.numpy(), reference_forward(net, state, x))


@pytest.mark.parametrize(("name", "shape"), [("lenet", (1, 28, 28)), ("resnet50", (3, 32, 32))])
def test_training_mode_forward_uses_batch_statistics(tf, network_module, name, shape):
    net = models.build(name, shape, 10)
    state = with_bn_statistics(net)
    tfnet = network_module.TFNetwork(net)
    tfnet.create_variables(state)
    x, _ = random_batch(net, 4)
    seed = tf.constant([0, 0], tf.int64)
    logits, stats = tfnet.forward(tf.constant(nhwc(x)), training=True, seed=seed)
    assert sorted(stats) == sorted(tfnet.bn_paths)
    want = reference_forward(net, state, x, training=True)
    assert_close_to_reference(logits.numpy(), want, rtol=5e-4)


def single_layer(layer: L.Layer, shape: tuple[int, int, int]) -> L.Network:
    return L.Network("probe", "small", shape, 1, L.Sequential((layer,)))


def layer_cases() -> list[tuple[L.Layer, tuple[int, int, int]]]:
    cases: list[tuple[L.Layer, tuple[int, int, int]]] = []
    for size in (5, 6, 7, 8):
        for k in (1, 2, 3, 5):
            for s in (1, 2, 3):
                for p in (0, 1, 2):
                    if (size + 2 * p - k) // s + 1 >= 1:
                        cases.append((L.Conv2D(3, k, s, p), (2, size, size)))
                    if 2 * p <= k and size + 2 * p >= k:
                        for ceil in (False, True):
                            cases.append((L.MaxPool(k, s, p, ceil), (2, size, size)))
                            cases.append((L.AvgPool(k, s, p, ceil), (2, size, size)))
    cases.append((L.Conv2D(6, 3, 2, 1, groups=2), (4, 8, 8)))
    cases.append((L.Conv2D(4, (3, 1), (2, 1), (1, 0), bias=False), (2, 7, 6)))
    cases.append((L.MaxPool((3, 2), (2, 1), (1, 0), True), (2, 7, 6)))
    return cases


@pytest.mark.parametrize("explicit_padding", [False, True], ids=["pad", "explicit"])
def test_every_padding_and_pooling_case_matches_the_reference(tf, network_module, explicit_padding):
    failures = []
    for layer, shape in layer_cases():
        net = single_layer(layer, shape)
        state = models.init_weights(net, 0)
        tfnet = network_module.TFNetwork(net, explicit_padding=explicit_padding)
        tfnet.create_variables(state)
        x, _ = random_batch(net, 2)
        got = tfnet.forward(tf.constant(nhwc(x)), training=False)[0].numpy()
        want = nhwc(reference_forward(net, state, x))
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-5, atol=1e-5):
            failures.append((layer, shape))
    assert not failures, failures


def test_padding_mode_uses_tensorflow_padding_only_where_exact(network_module):
    mode = network_module._padding_mode
    assert mode((32, 3, 1, 1), (32, 3, 1, 1), ceil=False) == "SAME"
    assert mode((32, 1, 2, 0), (32, 1, 2, 0), ceil=False) == "VALID"
    assert mode((32, 3, 2, 1), (32, 3, 2, 1), ceil=False) == "PAD"  # SAME would pad 0/1
    assert mode((224, 7, 2, 3), (224, 7, 2, 3), ceil=False) == "PAD"  # SAME pads 2/3
    assert mode((28, 3, 1, 1), (28, 3, 1, 1), ceil=True) == "SAME"  # GoogLeNet branch pool


# --- weights: canonical layouts --------------------------------------------------------


def test_state_dict_round_trips_canonical_weights(tf):
    net = models.build("googlenet", (3, 32, 32), 10)
    trainer = make_trainer(net, 2)
    initial = models.init_weights(net, 0)
    state = trainer.state_dict()
    assert list(state) == list(initial)
    for key, value in initial.items():
        assert state[key].shape == value.shape and state[key].dtype == np.float32, key
        np.testing.assert_array_equal(state[key], value, err_msg=key)
    other = with_bn_statistics(net, seed=5)
    trainer.load_state_dict(other)
    again = trainer.state_dict()
    for key, value in other.items():
        np.testing.assert_array_equal(again[key], value, err_msg=key)
    assert len(trainer.replica_states()) == 1


def test_conv_and_dense_layouts(network_module):
    conv = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    assert network_module.to_framework(conv, "conv").shape == (4, 5, 3, 2)
    assert network_module.to_framework(conv, "conv")[1, 2, 0, 1] == conv[1, 0, 1, 2]
    dense = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert network_module.to_framework(dense, "dense").shape == (3, 2)
    for array, kind in ((conv, "conv"), (dense, "dense"), (dense[0], "plain")):
        back = network_module.to_canonical(network_module.to_framework(array, kind), kind)
        np.testing.assert_array_equal(back, array)


# --- the training recipe ---------------------------------------------------------------


def softmax_grad(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """d(mean cross-entropy)/d(logits)."""
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(labels)), labels] -= 1.0
    return p / len(labels)


def test_sgd_momentum_and_loss_follow_the_recipe(tf):
    """The last bias moves by PyTorch's SGD: buf = 0.9 buf + g, w -= lr buf, g of mean CE."""
    net = models.build("lenet", (1, 28, 28), 10)
    lr = 0.05
    trainer = make_trainer(net, 8, lr=lr)
    x, y = random_batch(net, 8)
    batch = trainer.device_batch(nhwc(x), y)
    w0 = trainer.state_dict()
    logits0 = reference_forward(net, w0, x)
    g1 = softmax_grad(logits0, y).sum(axis=0)
    loss = trainer.loss_value(trainer.train_step(batch))
    ce = -np.log(
        np.exp(logits0 - logits0.max(1, keepdims=True))
        / np.exp(logits0 - logits0.max(1, keepdims=True)).sum(1, keepdims=True)
    )
    assert loss == pytest.approx(ce[np.arange(8), y].mean(), rel=1e-4)
    w1 = trainer.state_dict()
    np.testing.assert_allclose(w1["ip2.bias"], w0["ip2.bias"] - lr * g1, rtol=1e-4, atol=1e-6)
    g2 = softmax_grad(reference_forward(net, w1, x), y).sum(axis=0)
    trainer.train_step(batch)
    want = w1["ip2.bias"] - lr * (SGD_MOMENTUM * g1 + g2)
    np.testing.assert_allclose(trainer.state_dict()["ip2.bias"], want, rtol=1e-4, atol=1e-6)


def test_batch_norm_running_statistics_use_pytorch_momentum(tf):
    """lr 0: weights stay, running stats blend 0.1 of the batch mean / unbiased variance."""
    from harness.models.reference import conv2d

    net = models.build("resnet50", (3, 32, 32), 10)
    trainer = make_trainer(net, 4, lr=1e-30)
    state = trainer.state_dict()
    x, y = random_batch(net, 4)
    trainer.synchronize(trainer.train_step(trainer.device_batch(nhwc(x), y)))
    after = trainer.state_dict()
    features = conv2d(
        x.astype(np.float64), state["conv1.weight"].astype(np.float64), padding=1
    )  # what bn1 sees
    mean = features.mean(axis=(0, 2, 3))
    var = features.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(after["bn1.running_mean"], 0.1 * mean, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(after["bn1.running_var"], 0.9 + 0.1 * var, rtol=1e-4)
    np.testing.assert_array_equal(after["conv1.weight"], state["conv1.weight"])


@pytest.mark.parametrize(
    ("name", "shape", "precision", "options", "lr"),
    [
        ("lenet", (1, 28, 28), "fp32", {}, 0.01),
        ("lenet", (1, 28, 28), "fp32", {"xla": "true"}, 0.01),
        ("lenet", (1, 28, 28), "bf16", {}, 0.01),
        ("lenet", (1, 28, 28), "fp16", {}, 0.01),
        ("alexnet", (3, 32, 32), "fp32", {}, 0.01),  # dropout
        # at 0.01 this batch of 8 noise images makes ResNet-50 diverge in PyTorch too
        ("resnet50", (3, 32, 32), "fp32", {}, 0.001),
    ],
    ids=str,
)
def test_a_few_steps_lower_the_loss(tf, name, shape, precision, options, lr):
    net = models.build(name, shape, 10)
    trainer = make_trainer(net, 8, lr=lr, precision=precision, options=options)
    x, y = random_batch(net, 8)
    batch = trainer.device_batch(nhwc(x), y)
    losses = [trainer.loss_value(trainer.train_step(batch)) for _ in range(6)]
    assert all(np.isfinite(losses)), losses
    assert losses[-1] < losses[0], losses
    loss_sum, correct = trainer.evaluate(batch)
    assert np.isfinite(loss_sum) and 0 <= correct <= 8
    assert trainer.memory_peak() is None  # CPU: no allocator peak
    info = trainer.framework_info()
    assert info["framework"] == "tensorflow" and info["devices"] == ["cpu:0"]
    assert info["xla"] is (options.get("xla") == "true")


def test_xla_step_matches_the_plain_step(tf):
    net = models.build("lenet", (1, 28, 28), 10)
    x, y = random_batch(net, 8)
    finals = []
    for options in ({}, {"xla": "true"}):
        trainer = make_trainer(net, 8, options=options)
        batch = trainer.device_batch(nhwc(x), y)
        for _ in range(3):
            trainer.train_step(batch)
        finals.append(trainer.state_dict())
    for key in finals[0]:
        np.testing.assert_allclose(finals[1][key], finals[0][key], rtol=1e-4, atol=1e-6)


def test_fp16_loss_scale_backs_off_on_overflow(tf):
    net = models.build("lenet", (1, 28, 28), 10)
    trainer = make_trainer(net, 4, precision="fp16")
    x, y = random_batch(net, 4)
    batch = trainer.device_batch(nhwc(x) * 1e4, y)  # overflowing fp16 gradients
    before = trainer.state_dict()
    trainer.train_step(batch)
    assert float(trainer.scale.numpy()) < 2.0**16
    after = trainer.state_dict()
    for key in before:  # the overflowed step was skipped
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)


def test_out_of_memory_is_recognised(tf):
    from harness.backends.tensorflow.trainer import TFTrainer

    oom = tf.errors.ResourceExhaustedError(
        None, None, "OOM when allocating tensor with shape[128,64,112,112] on GPU:0"
    )
    assert TFTrainer.is_out_of_memory(oom)
    assert TFTrainer.is_out_of_memory(MemoryError())
    assert not TFTrainer.is_out_of_memory(tf.errors.InvalidArgumentError(None, None, "bad"))
    assert not TFTrainer.is_out_of_memory(ValueError("shapes differ"))


# --- the CLI, end to end ---------------------------------------------------------------


def test_cli_synthetic_run(tmp_path):
    result = check_synthetic_run("tensorflow", tmp_path)
    assert result["repeats"][0]["framework"]["framework"] == "tensorflow"


def test_cli_real_data_epochs_with_validation(tmp_path):
    check_real_data_training("tensorflow", tmp_path, 3, 8, 0.8)


def test_cli_data_parallel_on_two_cpu_devices(tmp_path):
    result = two_device_run("tensorflow", tmp_path)
    framework = result["repeats"][0]["framework"]
    assert framework["distributed"] == "MirroredStrategy" and len(framework["devices"]) == 2
    names = ["repeat1-rank0-replica0.npz", "repeat1-rank0-replica1.npz"]
    first = check_replicas_in_sync(result, tmp_path / "weights2", names)[0]
    # the same global batch on one device gives the same weights
    one = two_device_run("tensorflow", tmp_path, devices=1, batch=16)
    assert one["repeats"][0]["framework"]["distributed"] is None
    (single,) = (dict(np.load(f)) for f in (tmp_path / "weights1").glob("*.npz"))
    for key, value in first.items():
        np.testing.assert_allclose(single[key], value, rtol=1e-4, atol=1e-5, err_msg=key)
