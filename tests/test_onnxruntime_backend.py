"""The ONNX Runtime backend: the ONNX translation against the NumPy reference (the parity
matrix of tests/parity_checks.py), the execution-provider check, the session options,
I/O binding, reading a user model's input, the ``onnx`` export command and the refusal
to train.

Runs in the onnxruntime tox env (``pytest -m onnxruntime``); onnx and onnxruntime are
imported inside the tests, so the core env can collect this module and deselect it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from backend_checks import PAIRS
from parity_checks import (
    FORWARD_TOL,
    PAIR_IDS,
    case,
    check_forward,
    check_mutation_fails,
    mutation_params,
    pair_params,
)

from harness import models
from harness.models import parity as P

pytestmark = pytest.mark.onnxruntime


def run(network, weights, images, training):
    from harness.backends.onnxruntime.network import numpy_forward

    return numpy_forward(network, weights, images, training=training)


def harness_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "harness", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=cwd)


def one_line_exit_2(out: subprocess.CompletedProcess[str], text: str) -> None:
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and text in " ".join(out.stderr.split()), out.stderr


# Parity ------------------------------------------------------------------------------


@pair_params()
def test_forward_matches_the_reference(name, shape, classes, request):
    """All 13 (model, input) pairs in inference mode, parity weights (random batch-norm
    statistics), error relative to the logits' scale with no absolute floor."""
    check_forward(run, request, name, shape, classes, False)


@pytest.mark.parametrize(
    ("name", "shape", "classes"),
    [("lenet", (1, 28, 28), 10), ("resnet50", (3, 32, 32), 10), ("googlenet", (3, 32, 32), 10)],
)
def test_training_mode_forward_matches_the_reference(name, shape, classes, request):
    """Batch statistics (what ``verify`` compares as train-fwd), on the pairs whose cases
    the other tests compute anyway (ResNet-50 and GoogLeNet have batch norm, LeNet none):
    the backend itself never trains."""
    check_forward(run, request, name, shape, classes, True)


@mutation_params()
def test_mutations_fail_the_check(mutation, request):
    """A perturbed weight, swapped running statistics, pools padded on the wrong side."""
    check_mutation_fails(run, request, mutation)


@pytest.mark.parametrize(("name", "shape", "classes"), PAIRS, ids=PAIR_IDS)
def test_graph_is_valid_with_the_catalogue_parameters(name, shape, classes):
    """Every pair: onnx.checker (with shape inference) passes, the batch is dynamic, the
    output has the classes, and the initializers hold exactly the catalogue's parameters
    plus the running statistics under their canonical names."""
    import onnx

    from harness.backends.onnxruntime.network import OPSET, build_model

    network = models.build(name, shape, classes)
    keys = models.state_keys(network)
    weights = {k: np.zeros(s, np.float32) for k, s in keys}
    model = build_model(network, weights)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == OPSET
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == list(shape)
    out = model.graph.output[0].type.tensor_type.shape.dim
    assert out[0].dim_param == "batch" and out[1].dim_value == classes
    inits = {t.name: int(np.prod(t.dims)) for t in model.graph.initializer}
    assert set(inits) == {k for k, _ in keys}
    params = sum(n for k, n in inits.items() if not models.is_buffer(k))
    assert params == models.param_count(network)
    assert not [n for n in model.graph.node if n.op_type == "Dropout"]


def test_batch_dimension_is_dynamic(request):
    """One session runs batches of 1, 2 and 5 and each equals the reference."""
    from harness.backends.onnxruntime.network import build_model
    from harness.backends.onnxruntime.session import OrtSession

    c = case(request, "lenet", (1, 28, 28), 10)
    session = OrtSession(build_model(c.network, c.weights), provider="cpu")
    for batch in (1, 2, 5):
        x = P.images(c.network, batch, seed=batch)
        want = P.reference_logits(c.network, c.weights, x, training=False)
        assert P.relative_error(session.run(x), want) <= FORWARD_TOL


def test_wrong_weights_are_refused(request):
    from harness.backends.onnxruntime.network import build_model

    c = case(request, "lenet", (1, 28, 28), 10)
    weights = dict(c.weights)
    weights.pop("conv1.bias")
    weights["extra.weight"] = np.zeros(3, np.float32)
    weights["ip2.weight"] = weights["ip2.weight"][:5]
    with pytest.raises(ValueError) as info:
        build_model(c.network, weights)
    text = str(info.value)
    assert "missing ['conv1.bias']" in text and "extra.weight" in text
    assert "ip2.weight (5, 500) (want (10, 500))" in text


# Execution providers, session options, I/O binding ------------------------------------------


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_provider_is_listed_asked_for_and_checked(monkeypatch, request):
    """The CPU provider is asked for by name and is the one the session runs; one that is
    not available is refused naming those that are; a silent fallback (ONNX Runtime
    running the CPU where CUDA was asked for) is refused too."""
    import onnxruntime as ort

    from harness.backends.onnxruntime import session as S
    from harness.backends.onnxruntime.network import build_model

    c = case(request, "lenet", (1, 28, 28), 10)
    model = build_model(c.network, c.weights).SerializeToString()
    assert S.available_providers() == ort.get_available_providers()
    assert "CPUExecutionProvider" in S.available_providers()
    assert S.provider_name("auto") == "CPUExecutionProvider"
    assert S.provider_name("auto", gpu=True) == "CUDAExecutionProvider"
    assert S.provider_name("tensorrt") == "TensorrtExecutionProvider"
    session = S.OrtSession(model, provider="cpu")
    assert session.session.get_providers() == ["CPUExecutionProvider"]
    assert session.options["providers"] == ["CPUExecutionProvider"]
    with pytest.raises(S.ProviderError, match=r"available: .*CPUExecutionProvider") as info:
        S.OrtSession(model, provider="NoSuchExecutionProvider")
    assert "\n" not in str(info.value)
    if "CUDAExecutionProvider" not in S.available_providers():
        with pytest.raises(S.ProviderError, match="onnxruntime-gpu"):
            S.OrtSession(model, provider="cuda")
        # Pretend CUDA is available: ONNX Runtime then falls back to the CPU by itself.
        real = S.available_providers()
        monkeypatch.setattr(S, "available_providers", lambda: [*real, "CUDAExecutionProvider"])
        with pytest.raises(S.ProviderError, match="asked for CUDAExecutionProvider but the "):
            S.OrtSession(model, provider="cuda")


def test_session_options_follow_the_cpu_policy_and_are_recorded(request):
    """-o options and the thread policy reach the session and are read back from it."""
    from harness.backends.onnxruntime import INFO
    from harness.backends.onnxruntime.network import build_model
    from harness.backends.onnxruntime.session import OrtSession, settings_from
    from harness.cpu import policy_for

    assert INFO.tasks == ("inference",)
    assert {o.name for o in INFO.options} == {"provider", "graph_optimization", "io_binding"}
    c = case(request, "lenet", (1, 28, 28), 10)
    model = build_model(c.network, c.weights)
    policy = policy_for(2, 1, cores=2)
    settings = settings_from({"graph_optimization": "basic"}, policy, 1, gpu=False)
    session = OrtSession(model, settings)
    options = session.options
    assert options["graph_optimization"] == "basic"
    assert options["intra_op_num_threads"] == 2 and options["inter_op_num_threads"] == 1
    assert options["execution_mode"] == "ORT_SEQUENTIAL" and options["io_binding"] is True
    threads = session.threads()
    assert {k: threads[k] for k in policy.expected()} == policy.expected()
    settings = settings_from({"io_binding": "false"}, policy_for(1, 1, cores=2), 1, gpu=False)
    session = OrtSession(model, settings)
    assert session.options["intra_op_num_threads"] == 1
    assert session.options["io_binding"] is False


def test_io_binding_gives_the_plain_run_results(request):
    """The bound path (input copied once, output preallocated, run_with_iobinding) and
    plain run() agree exactly; a bound input runs again without rebinding."""
    from harness.backends.onnxruntime.network import build_model
    from harness.backends.onnxruntime.session import OrtSession

    c = case(request, "googlenet", (3, 32, 32), 10)
    model = build_model(c.network, c.weights).SerializeToString()
    bound = OrtSession(model, provider="cpu", io_binding=True)
    plain = OrtSession(model, provider="cpu", io_binding=False)
    assert bound.options["io_device"] == "cpu"
    want = plain.run(c.images)
    np.testing.assert_array_equal(bound.run(c.images), want)
    bound.run_bound()
    np.testing.assert_array_equal(bound.result(), want)
    assert P.relative_error(want, c.inference) <= FORWARD_TOL


# A user's ONNX file ---------------------------------------------------------------------


def test_read_input_from_the_graph_or_given(tmp_path, request):
    import onnx
    from onnx import TensorProto, helper

    from harness.backends.onnxruntime.network import (
        OnnxFileError,
        build_model,
        load_model,
        read_input,
    )

    c = case(request, "lenet", (1, 28, 28), 10)
    path = tmp_path / "lenet.onnx"
    onnx.save(build_model(c.network, c.weights), str(path))
    read = read_input(path)
    assert (read.name, read.shape, read.batch) == ("images", (1, 28, 28), "batch")
    assert read.output == "logits"
    assert read_input(load_model(path), given=(1, 28, 28)).shape == (1, 28, 28)
    with pytest.raises(OnnxFileError, match="H=28, not the 32 given"):
        read_input(path, given=(1, 32, 32))

    def model_with(input_type, name="free"):
        node = helper.make_node("Relu", ["x"], ["y"])
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
        graph = helper.make_graph([node], name, [input_type], [out])
        return helper.make_model(graph)

    free = model_with(helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"]))
    with pytest.raises(OnnxFileError, match="dimension H is h; give the input shape"):
        read_input(free)
    assert read_input(free, given=(3, 64, 48)).shape == (3, 64, 48)
    ints = model_with(helper.make_tensor_value_info("x", TensorProto.INT64, [1, 3, 8, 8]))
    with pytest.raises(OnnxFileError, match="INT64; only float32 images"):
        read_input(ints)
    flat = model_with(helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 784]))
    with pytest.raises(OnnxFileError, match="rank 2"):
        read_input(flat, given=(1, 28, 28))
    with pytest.raises(OnnxFileError, match="no such ONNX file"):
        read_input(tmp_path / "missing.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 100)
    with pytest.raises(OnnxFileError, match="not a readable ONNX model"):
        read_input(corrupt)


# The export command and the refusal to train --------------------------------------------


def _check_file(out: subprocess.CompletedProcess[str], path: Path) -> str:
    import onnx

    assert out.returncode == 0, out.stderr[-2000:]
    line = out.stdout.strip()
    size = path.stat().st_size
    assert line.startswith(f"{path}: ") and f"({size:,} bytes)" in line and "opset 17" in line
    assert "onnx.checker: ok" in line
    onnx.checker.check_model(str(path), full_check=True)
    return line


def test_export_command_writes_a_checked_file_that_runs_as_the_reference(tmp_path, request):
    """Canonical initial weights (LeNet) and saved weights (.npz with canonical keys, as
    --dump-weights writes them; here ResNet-50's parity weights): the file is written,
    passes onnx.checker, and reloaded in ONNX Runtime gives the reference's logits."""
    from harness.backends.onnxruntime.session import OrtSession

    lenet = tmp_path / "lenet.onnx"
    line = _check_file(harness_cli("onnx", "lenet", "--dataset", "mnist", "-o", str(lenet)), lenet)
    assert "initial weights, seed 0" in line
    network = models.build("lenet", (1, 28, 28), 10)
    x = P.images(network, 3)
    want = P.reference_logits(network, models.init_weights(network, 0), x, training=False)
    got = OrtSession(lenet.read_bytes(), provider="cpu").run(x)
    assert P.relative_error(got, want) <= FORWARD_TOL

    c = case(request, "resnet50", (3, 32, 32), 10)
    weights = tmp_path / "repeat1-rank0-replica0.npz"
    np.savez(weights, **c.weights)
    path = tmp_path / "resnet50.onnx"
    out = harness_cli(
        "onnx", "resnet50", "--dataset", "cifar10", "-o", str(path), "--weights", str(weights)
    )
    assert str(weights) in _check_file(out, path)
    got = OrtSession(str(path), provider="cpu").run(c.images)
    assert P.relative_error(got, c.inference) <= FORWARD_TOL


def test_export_command_refusals(tmp_path):
    out = harness_cli("onnx", "resnet51", "--dataset", "cifar10", "-o", str(tmp_path / "x.onnx"))
    one_line_exit_2(out, "unknown model 'resnet51'")
    out = harness_cli("onnx", "lenet", "--dataset", "cifar10", "-o", str(tmp_path / "x.onnx"))
    one_line_exit_2(out, "lenet is defined for the MNIST family")
    target = ("-o", str(tmp_path / "x.onnx"))
    out = harness_cli("onnx", "lenet", "--dataset", "mnist", *target, "--weights", "no.npz")
    one_line_exit_2(out, "no.npz: no such file")
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{"conv1.weight": np.zeros((2, 2), np.float32)})
    out = harness_cli("onnx", "lenet", "--dataset", "mnist", *target, "--weights", str(bad))
    one_line_exit_2(out, "weights do not match lenet 1x28x28: missing")
    out = harness_cli("onnx", "lenet", "--dataset", "mnist", "-o", str(tmp_path))
    one_line_exit_2(out, "is a folder")
    assert not (tmp_path / "x.onnx").exists()


def test_training_is_refused_and_the_tool_is_listed():
    out = harness_cli("--tool", "onnxruntime", "--model", "lenet", "--dataset", "mnist")
    one_line_exit_2(out, "onnxruntime runs inference only, it cannot train; tools that train:")
    out = harness_cli("list", "--options")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stderr.split())
    assert "onnxruntime provider=str" in text and "onnxruntime io_binding=bool default True" in text


def test_verify_command_checks_the_forward_passes():
    """``python -m harness verify``: an inference-only tool gets its forward columns
    checked and no training columns, and passes."""
    out = harness_cli("verify", "--tools", "onnxruntime", "--models", "lenet")
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith("onnxruntime")]
    assert len(rows) == 1 and rows[0][:3] == ["onnxruntime", "lenet", "1x28x28"]
    assert rows[0][5:] == ["-", "-", "pass"] and float(rows[0][3]) <= 1e-4
    assert out.stdout.strip().endswith("all pass")
