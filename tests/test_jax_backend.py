"""The JAX (Flax) backend: parity with the catalogue and the reference, training, data
parallelism over several CPU devices, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
from harness.models.layers import (
    AvgPool,
    BatchNorm,
    Concat,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPool,
    Network,
    ReLU,
    Residual,
    Sequential,
)
from harness.models.reference import forward

pytestmark = pytest.mark.jax


def vocabulary_network(dropout: bool = True) -> Network:
    """A tiny network using every layer kind, on 3x12x12 inputs with 5 classes.

    Covers grouped convs, ceil-mode max pooling that needs extra -inf padding on signed
    inputs, padded max pooling, average pooling counting padding and with a ceil-mode
    window clipped at the edge, Concat, both Residual kinds, a Flatten of a 2x2 map.
    """

    def seq(*layers):
        return Sequential(tuple(layers))

    body = seq(
        Conv2D(6, 3, padding=1),
        BatchNorm(),
        ReLU(),
        Residual(seq(Conv2D(6, 3, padding=1, groups=2, bias=False), BatchNorm())),
        MaxPool(3, 2, ceil_mode=True),  # 12 -> 6
        Concat(
            (
                seq(MaxPool(3, 1, 1), Conv2D(4, 1)),
                seq(AvgPool(3, 1, 1, ceil_mode=True), Conv2D(3, 1, bias=False)),
            )
        ),
        AvgPool(3, 2, ceil_mode=True),  # 6 -> 3, the last window clipped to 2 pixels
        Residual(
            seq(Conv2D(8, 3, 2, 1, bias=False), BatchNorm(momentum=0.3)),
            seq(Conv2D(8, 1, 2, bias=False), BatchNorm(eps=1e-3)),
        ),
        Flatten(),
        *([Dropout(0.5)] if dropout else []),
        Dense(16),
        ReLU(),
        Dense(5),
    )
    return Network("vocabulary", "small", (3, 12, 12), 5, body)


def perturbed(weights: dict[str, np.ndarray], seed: int = 1) -> dict[str, np.ndarray]:
    """Weights whose batch-norm entries all differ, so any mix-up changes the output."""
    rng = np.random.default_rng(seed)
    out = dict(weights)
    for key, value in weights.items():
        name = key.rsplit(".", 1)[-1]
        if name in ("running_var", "weight") and key.replace(name, "running_mean") in weights:
            out[key] = rng.uniform(0.5, 1.5, value.shape).astype(np.float32)
        elif name in ("running_mean", "bias") and key.replace(name, "running_var") in weights:
            out[key] = rng.normal(0, 0.2, value.shape).astype(np.float32)
    return out


def flax_forward(network: Network, weights: dict, images: np.ndarray, train: bool = False):
    import jax

    from harness.backends.jax.network import build_module, to_variables

    module = build_module(network)
    variables = to_variables(network, weights)
    if train:
        apply = jax.jit(lambda v, x: module.apply(v, x, train=True, mutable=["batch_stats"])[0])
    else:
        apply = jax.jit(lambda v, x: module.apply(v, x, train=False))
    return np.asarray(apply(variables, nhwc(images)))


def assert_close(out: np.ndarray, ref: np.ndarray) -> None:
    """Equal up to float32 rounding, relative to the output's magnitude."""
    assert out.shape == ref.shape
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5 * scale)


# Parity with the catalogue and the reference ---------------------------------------------


def test_vocabulary_network_shapes() -> None:
    rows = {r.path: r for r in models.infer(vocabulary_network())}
    assert rows["4"].out_shape == (6, 6, 6) and rows["6"].out_shape == (7, 3, 3)
    assert rows["8"].in_shape == (8, 2, 2)  # the Flatten


@pytest.mark.parametrize(("model", "shape", "classes"), PAIRS)
def test_parameter_count_equals_the_catalogue(model: str, shape: tuple, classes: int) -> None:
    from harness.backends.jax.network import param_count

    network = models.build(model, shape, classes)
    assert param_count(network) == models.param_count(network)


@pytest.mark.parametrize("train", [False, True])
def test_every_layer_kind_matches_the_reference(train: bool) -> None:
    network = vocabulary_network(dropout=False)
    weights = perturbed(models.init_weights(network, 4))
    images = np.random.default_rng(2).standard_normal((4, 3, 12, 12)).astype(np.float32)
    assert_close(
        flax_forward(network, weights, images, train=train),
        forward(network, weights, images, training=train),
    )


def test_canonical_state_round_trips_exactly() -> None:
    from harness.backends.jax.network import canonical_state, to_variables

    for network in (models.build("googlenet", (3, 32, 32), 10), vocabulary_network()):
        weights = perturbed(models.init_weights(network, seed=3))
        variables = to_variables(network, weights)
        exported = canonical_state(network, variables)
        assert list(exported) == list(weights)
        for key, value in weights.items():
            np.testing.assert_array_equal(exported[key], value)
    params = variables["params"]  # the vocabulary network's
    assert params["0"]["kernel"].shape == (3, 3, 3, 6)  # HWIO
    assert params["3"]["body"]["0"]["kernel"].shape == (3, 3, 3, 6)  # groups=2: in 6 // 2
    assert params["10"]["kernel"].shape == (32, 16)  # (in, out)
    np.testing.assert_array_equal(variables["batch_stats"]["1"]["var"], weights["1.running_var"])
    with pytest.raises(ValueError, match="missing"):
        to_variables(network, {k: v for k, v in weights.items() if k != "10.bias"})
    with pytest.raises(ValueError, match="unexpected"):
        to_variables(network, {**weights, "extra.weight": np.zeros(1, np.float32)})
    bad = dict(weights, **{"10.weight": weights["10.weight"][:5]})
    with pytest.raises(ValueError, match="shapes"):
        to_variables(network, bad)


# Training -------------------------------------------------------------------------------


def make_trainer(network: Network, **spec_fields):
    """A JaxTrainer as the worker builds it; ``cpu_devices`` devices in this process."""
    from harness import datasets
    from harness.backend import WorkerContext
    from harness.backends.jax.trainer import JaxTrainer
    from harness.spec import RunSpec

    fields = {"batch_size": 8, "learning_rate": 0.01, **spec_fields}
    spec = RunSpec(tool="jax", model=network.name, dataset="mnist", **fields)
    source = datasets.open_source("mnist", "train", synthetic=True)
    ctx = WorkerContext(
        spec,
        network,
        source,
        None,
        lambda: models.init_weights(network, 0),
        local_devices=spec.devices,
        total_devices=spec.devices,
    )
    return JaxTrainer(ctx)


def fixed_batch(trainer, shape: tuple, n: int = 8):
    rng = np.random.default_rng(0)
    images = rng.standard_normal((n, *shape)).astype(np.float32)
    labels = rng.integers(0, trainer.network.num_classes, n).astype(np.int32)
    return trainer.device_batch(nhwc(images), labels)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_training_steps_lower_the_loss_on_a_fixed_batch(precision: str) -> None:
    network = models.build("lenet", (1, 28, 28), 10)
    trainer = make_trainer(network, precision=precision)
    batch = fixed_batch(trainer, (1, 28, 28))
    first = trainer.loss_value(trainer.train_step(batch))
    for _ in range(20):
        token = trainer.train_step(batch)
    trainer.synchronize(token)
    assert trainer.loss_value(token) < 0.5 * first
    loss_sum, correct = trainer.evaluate(batch)
    assert correct == 8 and loss_sum < 8 * first
    state = trainer.state_dict()
    initial = models.init_weights(network, 0)
    assert state.keys() == initial.keys()
    assert all(state[k].dtype == np.float32 for k in state)
    assert not np.allclose(state["conv1.weight"], initial["conv1.weight"])
    assert trainer.memory_peak() is None  # the CPU has no allocator peak
    assert trainer.framework_info()["framework"] == "jax"


def test_first_step_is_torch_sgd_and_running_stats_use_flax_momentum() -> None:
    """One step from the canonical weights: p - lr * grad, running stats (1 - m) r + m b."""
    import jax
    import optax

    from harness.backends.jax.network import build_module, canonical_state, to_variables
    from harness.models.reference import conv2d

    network = vocabulary_network(dropout=False)
    trainer = make_trainer(network, learning_rate=0.1)
    rng = np.random.default_rng(5)
    images = rng.standard_normal((8, 3, 12, 12)).astype(np.float32)
    labels = rng.integers(0, 5, 8).astype(np.int32)
    weights = models.init_weights(network, 0)
    module = build_module(network)
    variables = to_variables(network, weights)

    def loss(params):
        logits, _ = module.apply(
            {**variables, "params": params}, nhwc(images), train=True, mutable=["batch_stats"]
        )
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    grads = jax.grad(loss)(variables["params"])
    trainer.train_step(trainer.device_batch(nhwc(images), labels))
    state = trainer.state_dict()
    stepped = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, variables["params"], grads)
    expected = canonical_state(network, {**variables, "params": stepped})
    for key, value in expected.items():
        if not models.is_buffer(key):
            np.testing.assert_allclose(state[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
    conv = conv2d(
        images.astype(np.float64),
        weights["0.weight"].astype(np.float64),
        weights["0.bias"].astype(np.float64),
        padding=1,
    )
    mean, var = conv.mean(axis=(0, 2, 3)), conv.var(axis=(0, 2, 3))  # biased, as flax
    np.testing.assert_allclose(state["1.running_mean"], 0.1 * mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(state["1.running_var"], 0.9 + 0.1 * var, rtol=1e-4, atol=1e-6)


def test_fp16_loss_scale_skips_overflowing_steps() -> None:
    import jax.numpy as jnp

    from harness.backends.jax.precision import GROWTH_INTERVAL, INITIAL_SCALE, LossScale

    scale = LossScale.create()
    grads, finite = scale.unscale({"a": jnp.array([INITIAL_SCALE, jnp.inf])})
    assert not bool(finite)
    after = scale.adjust(finite)
    assert float(after.scale) == INITIAL_SCALE / 2 and int(after.good_steps) == 0
    grads, finite = scale.unscale({"a": jnp.array([INITIAL_SCALE, 2 * INITIAL_SCALE])})
    assert bool(finite) and np.asarray(grads["a"]).tolist() == [1.0, 2.0]
    ready = LossScale(scale.scale, jnp.asarray(GROWTH_INTERVAL - 1, jnp.int32))
    assert float(ready.adjust(finite).scale) == 2 * INITIAL_SCALE


def test_unknown_option_is_refused() -> None:
    with pytest.raises(ValueError, match="compile_cache"):
        make_trainer(models.build("lenet", (1, 28, 28), 10), options={"xla": "true"})


def test_out_of_memory_is_recognised() -> None:
    import jax

    from harness.backends.jax.trainer import JaxTrainer

    oom = jax.errors.JaxRuntimeError(
        "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 25.00GiB."
    )
    assert JaxTrainer.is_out_of_memory(oom)
    assert JaxTrainer.is_out_of_memory(MemoryError())
    assert not JaxTrainer.is_out_of_memory(jax.errors.JaxRuntimeError("INVALID_ARGUMENT: x"))


def test_plugin_registration_and_run_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.backends.jax import INFO, run_env
    from harness.plugins import PluginManager
    from harness.spec import RunSpec

    assert PluginManager().backend("jax") == INFO
    assert INFO.worker_env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/x --xla_force_host_platform_device_count=7")
    env = run_env(RunSpec("jax", "lenet", "mnist", cpu_devices=3, threads=7))
    assert env == {
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_dump_to=/x --xla_force_host_platform_device_count=3",
        "PJRT_NPROC": "6",  # the thread policy: 2 per device x 3 devices
    }
    assert run_env(RunSpec("jax", "lenet", "mnist", threads=2)) == {
        "JAX_PLATFORMS": "cpu",
        "PJRT_NPROC": "2",
    }
    assert run_env(RunSpec("jax", "lenet", "mnist", num_gpus=2, threads=2)) == {"PJRT_NPROC": "2"}


# Several devices in one process ------------------------------------------------------------

_TWO_DEVICES = """
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
import test_jax_backend as t
from harness import models
out = {{}}
for name, network in (("lenet", models.build("lenet", (1, 28, 28), 10)),
                      ("vocabulary", t.vocabulary_network())):
    shape = network.input_shape
    results = []
    for devices, batch in ((1, 8), (2, 4)):
        trainer = t.make_trainer(network, batch_size=batch, cpu_devices=devices)
        data = t.fixed_batch(trainer, shape, 8)
        for _ in range(3):
            token = trainer.train_step(data)
        results.append((trainer.loss_value(token), trainer.replica_states()))
    (loss1, [one]), (loss2, two) = results
    same = [max(float(np.abs(a[k] - b[k]).max()) for k in a) for a, b in zip(two, two[1:])]
    gap = max(float(np.abs(one[k] - two[0][k]).max()) for k in one if "running" not in k)
    out[name] = {{"replicas": len(two), "replica_gap": same, "gap_to_one_device": gap,
                  "losses": [loss1, loss2]}}
print(json.dumps(out))
"""


def test_two_cpu_devices_in_one_process(repo: Path) -> None:
    """2 devices x 4 images == 1 device x 8 images without batch norm; replicas in sync."""
    env = dict(
        os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2"
    )
    code = _TWO_DEVICES.format(tests=str(repo / "tests"))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for name in ("lenet", "vocabulary"):
        assert result[name]["replicas"] == 2
        assert result[name]["replica_gap"] == [0.0]  # bit-identical replicas
    lenet = result["lenet"]
    assert lenet["gap_to_one_device"] < 1e-5  # same global batch, same update
    assert lenet["losses"][0] == pytest.approx(lenet["losses"][1], rel=1e-5)


# The command line --------------------------------------------------------------------------


def test_cli_run_on_synthetic_data_with_a_compile_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    result = check_synthetic_run("jax", tmp_path, "-o", f"compile_cache={cache}")
    assert result["framework"]["framework"] == "jax"
    assert result["framework"]["compile_cache"] == str(cache.resolve())
    assert any(cache.iterdir())  # compiled executables were stored


def test_cli_trains_real_format_data(tmp_path: Path) -> None:
    check_real_data_training("jax", tmp_path, 2, 8, 0.5)


def test_cli_two_cpu_devices_keep_replicas_in_sync(tmp_path: Path) -> None:
    result = two_device_run("jax", tmp_path)
    assert result["launcher"] == "local" and result["processes"] == 1
    assert result["repeats"][0]["framework"]["devices"] == ["cpu:0 cpu", "cpu:1 cpu"]
    names = ["repeat1-rank0-replica0.npz", "repeat1-rank0-replica1.npz"]
    check_replicas_in_sync(result, tmp_path / "weights2", names)
