"""The MXNet backend: parity with the catalogue and the reference, the SGD recipe, data
parallelism over CPU contexts, the CLI. Marked mxnet: runs in ``tox -e mxnet`` only."""

from __future__ import annotations

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
    lenet_run,
    run_harness,
    two_device_run,
)

from harness import models
from harness.models import layers as L
from harness.models.reference import apply, forward

pytestmark = pytest.mark.mxnet


def _loaded(network: L.Network, weights: dict[str, np.ndarray]):
    import mxnet as mx

    from harness.backends.mxnet.network import build_block, load_canonical_state

    block, params = build_block(network)
    block.initialize(mx.init.Zero())
    load_canonical_state(params, weights)
    block.hybridize(static_alloc=True, static_shape=True)
    return block, params


def _close(actual: np.ndarray, expected: np.ndarray, tol: float = 1e-4) -> None:
    """rtol 1e-4, atol 1e-4 relative to the logits' scale (some inits give tiny logits)."""
    scale = max(1.0, float(np.abs(expected).max())) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale)


# Parity with the catalogue and the reference ---------------------------------------------


@pytest.mark.parametrize(("model", "shape", "classes"), PAIRS)
def test_parameter_count_equals_the_catalogue(model: str, shape: tuple, classes: int) -> None:
    from harness.backends.mxnet.network import build_block, pool_sizes_agree, trainable_count

    network = models.build(model, shape, classes)
    block, params = build_block(network)
    assert trainable_count(params) == models.param_count(network)
    assert sorted(params) == sorted(k for k, _ in models.state_keys(network))
    gluon_trainable = [p for p in block.collect_params().values() if p.grad_req != "null"]
    assert len(gluon_trainable) == sum(not models.is_buffer(k) for k in params)
    # MXNet's 'full' pooling gives PyTorch's ceil-mode sizes everywhere in the catalogue.
    assert pool_sizes_agree(network)


def test_pools_beyond_the_catalogue_follow_pytorch() -> None:
    """Ceil-mode windows starting in the right padding are dropped (cropped); average
    pooling counts padding and clips its divisor at the right padding, as torch."""
    import mxnet as mx

    from harness.backends.mxnet.network import pool_sizes_agree

    cases = [
        ((2, 5, 5), (L.MaxPool(2, 2, 1, ceil_mode=True), L.AvgPool(3, 2, 1, ceil_mode=True))),
        ((2, 4, 4), (L.AvgPool(3, 2, 1, ceil_mode=True),)),
        ((2, 7, 7), (L.AvgPool(3, 2, 1), L.MaxPool(3, 2, 1, ceil_mode=True))),
    ]
    for shape, pools in cases:
        body = L.Sequential((L.Conv2D(3, 1), *pools, L.Flatten(), L.Dense(4)))
        network = L.Network("pools", "small", shape, 4, body)
        weights = models.init_weights(network, seed=0)
        block, _ = _loaded(network, weights)
        images = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
        _close(block(mx.nd.array(images)).asnumpy(), forward(network, weights, images))
    assert not pool_sizes_agree(
        L.Network(
            "p",
            "small",
            (1, 5, 5),
            1,
            L.Sequential((L.MaxPool(2, 2, 1, ceil_mode=True), L.Flatten(), L.Dense(1))),
        )
    )


def test_canonical_state_round_trips_exactly() -> None:
    import mxnet as mx

    from harness.backends.mxnet.network import (
        build_block,
        canonical_state,
        load_canonical_state,
    )

    network = models.build("googlenet", (3, 32, 32), 10)
    weights = models.init_weights(network, seed=3)
    block, params = build_block(network)
    block.initialize(mx.init.Zero(), ctx=[mx.cpu(0), mx.cpu(1)])
    load_canonical_state(params, weights)
    for replica in (0, 1):
        exported = canonical_state(params, replica)
        assert exported.keys() == weights.keys()
        for key, value in weights.items():
            np.testing.assert_array_equal(exported[key], value)
    with pytest.raises(ValueError, match="missing"):
        load_canonical_state(params, {k: v for k, v in weights.items() if "fc" not in k})
    wrong = dict(weights, **{"fc.weight": np.zeros((10, 3), np.float32)})
    with pytest.raises(ValueError, match="shape"):
        load_canonical_state(params, wrong)


# Training ------------------------------------------------------------------------------


def _trainer(
    network: L.Network, devices: int = 1, batch_size: int = 8, lr: float = 0.01, **spec_fields
):
    from harness import datasets
    from harness.backend import WorkerContext
    from harness.backends.mxnet.trainer import MXNetTrainer
    from harness.spec import RunSpec

    spec = RunSpec(
        tool="mxnet",
        model=network.name,
        dataset="mnist",
        batch_size=batch_size,
        learning_rate=lr,
        cpu_devices=devices,
        **spec_fields,
    )
    source = datasets.open_source("mnist", "train", synthetic=True)
    ctx = WorkerContext(
        spec,
        network,
        source,
        None,
        lambda: models.init_weights(network, 0),
        local_devices=devices,
        total_devices=devices,
    )
    return MXNetTrainer(ctx)


def _fixed_batch(n: int, shape=(1, 28, 28), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((n, *shape)).astype(np.float32),
        rng.integers(0, 10, n).astype(np.int32),
    )


def test_training_steps_lower_the_loss_on_a_fixed_batch() -> None:
    trainer = _trainer(models.build("lenet", (1, 28, 28), 10))
    batch = trainer.device_batch(*_fixed_batch(8))
    first = trainer.loss_value(trainer.train_step(batch))
    for _ in range(20):
        token = trainer.train_step(batch)
    trainer.synchronize(token)
    assert trainer.loss_value(token) < 0.5 * first
    loss_sum, correct = trainer.evaluate(batch)
    assert correct == 8 and loss_sum < 8 * first
    assert trainer.memory_peak() is None  # no allocator peak counter on the CPU


def _mean_loss_grads(network: L.Network, weights: dict[str, np.ndarray], images, labels):
    """Gradients of the mean softmax cross-entropy, by plain (imperative) autograd."""
    import mxnet as mx

    from harness.backends.mxnet.network import build_block, load_canonical_state

    block, params = build_block(network)
    block.initialize(mx.init.Zero())
    load_canonical_state(params, weights)
    x, y = mx.nd.array(images), mx.nd.array(labels)
    with mx.autograd.record():
        logits = block(x)
        loss = -mx.nd.pick(mx.nd.log_softmax(logits), y).mean()
    loss.backward()
    return {k: p.grad().asnumpy() for k, p in params.items()}


def test_sgd_update_is_pytorchs_momentum_sgd_on_the_mean_loss() -> None:
    """w -= lr * buf, buf = 0.9 * buf + grad(mean loss): MXNet's momentum form and
    rescale_grad = 1 / global batch give exactly this."""
    network = models.build("lenet", (1, 28, 28), 10)
    images, labels = _fixed_batch(8)
    lr = 0.01
    trainer = _trainer(network, lr=lr)
    batch = trainer.device_batch(images, labels)
    expected = models.init_weights(network, 0)
    buffers = {k: np.zeros_like(v) for k, v in expected.items()}
    for _ in range(3):
        grads = _mean_loss_grads(network, expected, images, labels)
        for key in expected:
            buffers[key] = 0.9 * buffers[key] + grads[key]
            expected[key] = expected[key] - lr * buffers[key]
        trainer.train_step(batch)
    state = trainer.state_dict()
    for key, value in expected.items():
        np.testing.assert_allclose(state[key], value, rtol=1e-4, atol=1e-6)


def test_two_cpu_contexts_give_the_single_device_update() -> None:
    network = models.build("lenet", (1, 28, 28), 10)
    images, labels = _fixed_batch(8)
    single = _trainer(network, devices=1, batch_size=8)
    double = _trainer(network, devices=2, batch_size=4)
    assert double.ctx.global_batch == 8
    for trainer in (single, double):
        batch = trainer.device_batch(images, labels)
        for _ in range(3):
            token = trainer.train_step(batch)
        trainer.synchronize(token)
    assert double.loss_value(token) == pytest.approx(single.loss_value(token), rel=1e-5)
    reference = single.state_dict()
    replicas = double.replica_states()
    assert len(replicas) == 2
    for state in replicas:
        for key, value in reference.items():
            np.testing.assert_allclose(state[key], value, rtol=1e-5, atol=1e-6)
    info = double.framework_info()
    assert info["devices"] == ["cpu(0)", "cpu(1)"] and "local" in info["strategy"]


def _bn_net() -> L.Network:
    body = L.Sequential(
        (
            L.Conv2D(4, 3, bias=False),
            L.BatchNorm(momentum=0.1),
            L.ReLU(),
            L.GlobalAvgPool(),
            L.Flatten(),
            L.Dense(10),
        )
    )
    return L.Network("bn", "small", (1, 8, 8), 10, body)


def test_batch_norm_running_statistics_conventions() -> None:
    """PyTorch's momentum 0.1 becomes Gluon's 0.9; the variance MXNet tracks is biased."""
    network = _bn_net()
    images, labels = _fixed_batch(8, (1, 8, 8))
    trainer = _trainer(network)
    trainer.train_step(trainer.device_batch(images, labels))
    state = trainer.state_dict()
    initial = models.init_weights(network, 0)
    conv = apply(network.body.layers[0], initial, images.astype(np.float64), prefix="0")
    mean, var = conv.mean(axis=(0, 2, 3)), conv.var(axis=(0, 2, 3))
    np.testing.assert_allclose(state["1.running_mean"], 0.1 * mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(state["1.running_var"], 0.9 + 0.1 * var, rtol=1e-4, atol=1e-6)


def test_replicas_share_device_zeros_running_statistics() -> None:
    network = _bn_net()
    trainer = _trainer(network, devices=2, batch_size=4)
    batch = trainer.device_batch(*_fixed_batch(8, (1, 8, 8)))
    for _ in range(2):
        trainer.train_step(batch)
    first, second = trainer.replica_states()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    assert not np.allclose(first["1.running_mean"], 0.0)
    loss_sum, correct = trainer.evaluate(batch)
    assert np.isfinite(loss_sum) and 0 <= correct <= 8


def test_out_of_memory_is_recognised() -> None:
    from mxnet.base import MXNetError

    from harness.backends.mxnet.trainer import MXNetTrainer

    gpu = MXNetError(
        "[12:00:00] src/storage/./pooled_storage_manager.h:161: cudaMalloc "
        "retry failed: out of memory"
    )
    cpu = MXNetError("src/storage/./cpu_device_storage.h:72: Failed to allocate CPU Memory")
    assert MXNetTrainer.is_out_of_memory(gpu)
    assert MXNetTrainer.is_out_of_memory(cpu)
    assert MXNetTrainer.is_out_of_memory(MemoryError())
    assert not MXNetTrainer.is_out_of_memory(MXNetError("Shape inconsistent, Provided = [3]"))


def test_plugin_module_does_not_import_mxnet() -> None:
    code = (
        "import sys, harness.backends.mxnet as m; "
        "assert 'mxnet' not in sys.modules; print(m.INFO.trainer)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "harness.backends.mxnet.trainer:MXNetTrainer"


def test_run_env_gives_each_cpu_context_one_engine_worker() -> None:
    from harness.backends.mxnet import run_env
    from harness.spec import RunSpec

    def env(**fields) -> dict[str, str]:
        return run_env(RunSpec(tool="mxnet", model="lenet", dataset="mnist", **fields))

    # OMP_NUM_THREADS (the per-device share) comes from the orchestrator's thread policy.
    one_worker = {"MXNET_CPU_WORKER_NTHREADS": "1"}
    assert env() == env(cpu_devices=2, threads=3) == env(num_gpus=2) == one_worker


# The CLI -------------------------------------------------------------------------------


def test_cli_run_on_synthetic_data(tmp_path: Path) -> None:
    result = check_synthetic_run("mxnet", tmp_path)
    assert result["framework"]["framework"] == "mxnet"
    assert result["framework"]["hybridized"] is True


def test_cli_trains_real_format_data_and_validates(tmp_path: Path) -> None:
    check_real_data_training("mxnet", tmp_path, 3, 8, 0.8)


def test_cli_two_cpu_devices_train_in_sync(tmp_path: Path) -> None:
    result = two_device_run("mxnet", tmp_path)
    assert result["processes"] == 1
    assert result["repeats"][0]["framework"]["devices"] == ["cpu(0)", "cpu(1)"]
    names = ["repeat1-rank0-replica0.npz", "repeat1-rank0-replica1.npz"]
    check_replicas_in_sync(result, tmp_path / "weights2", names)


def test_cli_bf16_amp_runs_on_the_cpu_and_fp16_is_refused(tmp_path: Path) -> None:
    from harness.backends.mxnet import BF16_CPU_FLAGS
    from harness.cpu import cpu_flags

    args = ("--synthetic", "--precision", "bf16", "--warmup-steps", "1", "--steps", "3")
    if BF16_CPU_FLAGS.issubset(cpu_flags() or ()):
        result = lenet_run("mxnet", tmp_path, *args)
        assert result["summary"]["status"] == "ok"
        assert result["spec"]["precision"] == "bf16"
    else:  # this CPU has no AVX-512: one clear line before any worker starts
        no_avx512 = run_harness(
            "mxnet", "--model", "lenet", "--dataset", "mnist", "--output-dir", str(tmp_path),
            *args,
        )  # fmt: skip
        assert no_avx512.returncode == 2
        assert "needs AVX-512" in no_avx512.stderr
        assert "Traceback" not in no_avx512.stderr
    refused = run_harness(
        "mxnet", "--model", "lenet", "--dataset", "mnist", "--precision", "fp16",
        "--output-dir", str(tmp_path),
    )  # fmt: skip
    assert refused.returncode == 2
    assert "MXNet runs fp16 on GPUs only" in refused.stderr and "Traceback" not in refused.stderr
