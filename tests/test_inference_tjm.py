"""The TensorFlow, JAX and MXNet inferencers (issue 14): the exported model file gives the
NumPy reference's logits with parity weights (batch-norm statistics not 0/1), it is the
framework's own format (TensorFlow's and MXNet's load in a process that cannot import
the harness), and the precision is in it. The task end to end (batch lists, real data,
accuracy) is checked for every inference tool by tests/inference_checks.py.

Each case carries its framework's marker and runs in that tox env (``tox -e jax`` runs
the jax cases); one framework per process, imported inside the tests.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from parity_checks import FORWARD_TOL, case

from harness import models
from harness.backend import WorkerContext
from harness.models import parity as P
from harness.spec import RunSpec

INFERENCERS = {
    "tensorflow": "harness.backends.tensorflow.inference:TFInferencer",
    "jax": "harness.backends.jax.inference:JaxInferencer",
    "mxnet": "harness.backends.mxnet.inference:MXNetInferencer",
}
TOOLS = [pytest.param(tool, marks=getattr(pytest.mark, tool)) for tool in INFERENCERS]
# LeNet (no batch norm) and a 32x32 network with batch norm and padded/ceil-mode pools
# (ResNet-50 compiles too slowly under XLA and MXNet on a 2-core CI machine).
NETWORKS = [("lenet", (1, 28, 28), 10), ("googlenet", (3, 32, 32), 10)]


def inferencer(tool: str, network, weights, **spec_fields):
    module, _, name = INFERENCERS[tool].partition(":")
    cls = getattr(importlib.import_module(module), name)
    spec = RunSpec(tool=tool, model=network.name, dataset="cifar10", batch_size=2, **spec_fields)
    return cls(WorkerContext(spec, network, None, None, lambda: weights))  # type: ignore[arg-type]


def exported(tool: str, tmp_path: Path, network, weights) -> Path:
    """The model file written by one inferencer (as the run's export process does)."""
    writer = inferencer(tool, network, weights)
    path = tmp_path / f"model{writer.suffix}"
    writer.export(weights, path)
    return path


def logits_from_file(tool: str, path: Path, network, weights, images: np.ndarray) -> np.ndarray:
    """A second inferencer (as a repeat's worker) loads, prepares and runs the file."""
    reader = inferencer(tool, network, weights)
    reader.load(path)
    reader.prepare(len(images))
    out = reader.infer(reader.device_batch(images))
    reader.synchronize()
    return reader.to_numpy(out)


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize(("name", "shape", "classes"), NETWORKS, ids=["lenet", "googlenet-32"])
def test_exported_file_gives_the_reference_logits(tool, name, shape, classes, request, tmp_path):
    """Parity weights (batch-norm statistics not 0/1) through the file equal the NumPy
    reference in inference mode; the file moved off the reference fails the same check."""
    c = case(request, name, shape, classes)
    path = exported(tool, tmp_path, c.network, c.weights)
    got = logits_from_file(tool, path, c.network, c.weights, c.images.astype(np.float32))
    assert got.dtype == np.float32 and got.shape == (len(c.images), classes)
    error = P.relative_error(got, c.inference)
    assert error <= FORWARD_TOL, f"{tool} {name}: relative error {error:.3g}"
    # Batch statistics instead of running ones would be wrong here (checks the mode).
    assert P.relative_error(got, c.training) > 100 * FORWARD_TOL or name == "lenet"


@pytest.mark.parametrize("tool", TOOLS)
def test_a_file_with_other_weights_gives_other_logits(tool, request, tmp_path):
    """What the file holds is what runs: weights moved before export change the logits
    by far more than the tolerance (the loaded model is not rebuilt from the context)."""
    c = case(request, "googlenet", (3, 32, 32), 10)
    key = next(k for k in c.weights if k.endswith("running_mean"))
    moved = dict(c.weights)
    moved[key] = c.weights[key] + 1.0
    path = exported(tool, tmp_path, c.network, moved)
    got = logits_from_file(tool, path, c.network, c.weights, c.images.astype(np.float32))
    assert P.relative_error(got, c.inference) > 100 * FORWARD_TOL


@pytest.mark.parametrize("tool", [p for p in TOOLS if p.values[0] != "mxnet"])
def test_bf16_inference_computes_in_bf16(tool, request, tmp_path):
    """--precision bf16 is baked into the file's computation (as in training): logits
    near the reference, but off by bf16's rounding, far more than fp32's error."""
    c = case(request, "lenet", (1, 28, 28), 10)
    writer = inferencer(tool, c.network, c.weights, precision="bf16")
    path = tmp_path / f"model{writer.suffix}"
    writer.export(c.weights, path)
    reader = inferencer(tool, c.network, c.weights, precision="bf16")
    reader.load(path)
    reader.prepare(len(c.images))
    got = reader.to_numpy(reader.infer(reader.device_batch(c.images.astype(np.float32))))
    assert got.dtype == np.float32
    assert 1e-4 < P.relative_error(got, c.inference) < 5e-2


_NO_HARNESS = "import sys\nsys.modules['harness'] = None  # any harness import fails\n"
_LOADERS = {
    "tensorflow": """
        import tensorflow as tf
        model = tf.saved_model.load(folder)
        serve = model.signatures["serving_default"]
        out = serve(images=tf.constant(np.transpose(x, (0, 2, 3, 1))))
        np.save(output, next(iter(out.values())).numpy())
    """,
    "mxnet": """
        import mxnet as mx
        block = mx.gluon.SymbolBlock.imports(
            folder + "/network-symbol.json", ["data"], folder + "/network-0000.params"
        )
        np.save(output, block(mx.nd.array(x)).asnumpy())
    """,
}


@pytest.mark.parametrize("tool", [p for p in TOOLS if p.values[0] in _LOADERS])
def test_the_file_loads_without_the_harness(tool, request, tmp_path):
    """The format is the framework's own: a process that cannot import the harness loads
    it with the framework's loader alone and computes the reference's logits."""
    c = case(request, "googlenet", (3, 32, 32), 10)
    path = exported(tool, tmp_path, c.network, c.weights)
    np.save(tmp_path / "x.npy", c.images.astype(np.float32))
    script = _NO_HARNESS + textwrap.dedent(f"""
        import numpy as np
        folder, output = {str(path)!r}, {str(tmp_path / "y.npy")!r}
        x = np.load({str(tmp_path / "x.npy")!r})
    """) + textwrap.dedent(_LOADERS[tool])  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = np.load(tmp_path / "y.npy")
    assert P.relative_error(got, c.inference) <= FORWARD_TOL


@pytest.mark.jax
def test_jax_file_is_flax_msgpack_of_the_variables(request, tmp_path):
    """The JAX file is flax.serialization's msgpack of the module's variables (readable
    by flax alone), and a file of another network is refused at load."""
    from flax import serialization

    from harness.backends.jax.network import to_variables

    c = case(request, "lenet", (1, 28, 28), 10)
    path = exported("jax", tmp_path, c.network, c.weights)
    restored = serialization.msgpack_restore(path.read_bytes())
    want = to_variables(c.network, c.weights)
    assert set(restored) == set(want) == {"params"}
    for (kp, got), (_, value) in zip(
        _leaves(restored["params"]), _leaves(want["params"]), strict=True
    ):
        np.testing.assert_array_equal(got, value, err_msg=kp)
    other = models.build("alexnet", (1, 28, 28), 10)
    with pytest.raises(ValueError, match="keys"):
        inferencer("jax", other, {}).load(path)


def _leaves(tree: dict, prefix: str = "") -> list[tuple[str, np.ndarray]]:
    out = []
    for key in sorted(tree):
        value = tree[key]
        path = f"{prefix}/{key}"
        out.extend(_leaves(value, path) if isinstance(value, dict) else [(path, value)])
    return out


@pytest.mark.mxnet
def test_mxnet_refuses_amp_precisions_with_one_line():
    """Refused before any process starts (the refusal hook), and by the inferencer."""
    from harness.backends.mxnet import BF16_CPU_FLAGS, precision_refusal

    def spec(task: str) -> RunSpec:
        return RunSpec(tool="mxnet", model="lenet", dataset="mnist", precision="bf16", task=task)

    assert precision_refusal(spec("train"), BF16_CPU_FLAGS) is None  # AVX-512: trains
    assert "fp32 only" in (precision_refusal(spec("inference"), BF16_CPU_FLAGS) or "")
    network = models.build("lenet", (1, 28, 28), 10)
    with pytest.raises(RuntimeError, match="fp32 only"):
        inferencer("mxnet", network, {}, precision="bf16")


@pytest.mark.tensorflow
def test_tensorflow_xla_option_compiles_the_served_function(request, tmp_path):
    """``-o xla=true`` (the trainer's option): the function compiled with XLA gives the
    reference's logits."""
    c = case(request, "lenet", (1, 28, 28), 10)
    path = exported("tensorflow", tmp_path, c.network, c.weights)
    reader = inferencer("tensorflow", c.network, c.weights, options={"xla": "true"})
    reader.load(path)
    reader.prepare(len(c.images))
    batch = reader.device_batch(c.images.astype(np.float32))
    got = reader.to_numpy(reader.infer(batch))
    assert P.relative_error(got, c.inference) <= FORWARD_TOL
    assert reader.framework_info()["xla"] is True
